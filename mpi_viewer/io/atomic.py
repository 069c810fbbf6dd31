"""The one atomic writer: every file mpi-viewer writes appears complete or not at all.

A write goes to a temporary file with a unique name in the target's own folder, is
flushed to disk (``fsync``), given the permissions a plain ``open()`` would give
(``0o666`` less the user's umask, not ``mkstemp``'s private ``0o600``) and renamed
over the target. Two processes writing the same output never crash and never mix:
each writes its own temporary file and the last rename wins (or, with
``replace=False``, the second one is refused with one line and the first one's file
stays whole). A write that fails (read-only or full folder, a folder or a file in
the way, a name too long) leaves nothing behind and raises
:class:`~mpi_viewer.errors.InputError` in one line naming the file.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from mpi_viewer.errors import InputError, OutputError

__all__ = [
    "written_together",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable_target",
    "default_file_mode",
    "write_error",
]

#: Longest file name (bytes) most file systems accept.
NAME_MAX = 255


def default_file_mode() -> int:
    """``0o666`` less the process umask: what ``open(path, "w")`` would create."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # not thread-safe, hence /proc first
    os.umask(mask)
    return 0o666 & ~mask


def write_error(path: str | os.PathLike, exc: BaseException) -> OutputError:
    """An :class:`InputError` in one line for an ``OSError`` met while writing ``path``."""
    p = Path(path)
    code = getattr(exc, "errno", None)
    reasons = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: f"permission denied (folder {p.parent} is not writable)",
        errno.EPERM: f"permission denied (folder {p.parent} is not writable)",
        errno.ENAMETOOLONG: "the file name is too long",
        errno.EISDIR: "is a folder, not a file",
        errno.ENOTDIR: f"{_first_file_in(p.parent) or p.parent} is a file, not a folder",
        errno.ENOENT: f"folder {p.parent} does not exist",
        errno.EEXIST: "exists already (another process wrote it first)",
    }
    reason = reasons.get(code) or (
        getattr(exc, "strerror", None) or " ".join(str(exc).split()) or type(exc).__name__
    )
    return OutputError(f"{p}: cannot write: {reason}")


def _first_file_in(folder: Path) -> Path | None:
    """The first component of ``folder`` that exists and is not a folder (``-o file.csv/out.csv``)."""
    for q in [*reversed(folder.parents), folder]:
        if q.exists() and not q.is_dir():
            return q
    return None


def check_writable_target(path: str | os.PathLike, *, folder: bool = False) -> Path:
    """Refuse, before any work, a target that cannot be written as a file.

    The target must not be a folder; its folder must exist (and not be a file); its
    name must be valid UTF-8 and at most 255 bytes; the folder must be writable.
    ``folder=True``: the target is a folder to create or replace (a report).
    Returns the path.
    """
    from mpi_viewer.io.guards import check_name

    p = Path(path)
    check_name(p)
    if p.is_dir() and not folder:
        raise InputError(f"{p}: cannot write: is a folder, not a file")
    if folder and p.exists() and not p.is_dir():
        raise InputError(f"{p}: cannot write: exists and is not a folder")
    if len(os.fsencode(p.name)) > NAME_MAX:
        raise InputError(
            f"{str(p)[:60]}…: cannot write: the file name is too long ({len(os.fsencode(p.name))} bytes, at most {NAME_MAX})"
        )
    parent = p.parent
    if not parent.is_dir():
        blocker = _first_file_in(parent)
        if blocker is not None:
            raise InputError(f"{p}: cannot write: {blocker} is a file, not a folder")
        raise InputError(f"{p}: cannot write: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{p}: cannot write: permission denied (folder {parent} is not writable)")
    return p


def _make_folders(p: Path) -> None:
    from mpi_viewer.io.guards import check_name

    check_name(p)
    if p.parent.is_dir():
        return
    blocker = _first_file_in(p.parent)
    if blocker is not None:
        raise InputError(f"{p}: cannot write: {blocker} is a file, not a folder")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"{p}: cannot write: cannot create folder {p.parent} ({exc.strerror or exc})"
        ) from None


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike,
    writer: Callable[[Path], None],
    *,
    replace: bool = True,
    suffix: str | None = None,
    mkdir: bool = False,
) -> Path:
    """Write a file atomically with ``writer(temporary_path)``.

    Parameters
    ----------
    path : str or Path
        The target. Its folder must exist.
    writer : callable
        Writes the whole file at the path it is given (e.g. ``sitk.WriteImage``).
    replace : bool
        Rename over an existing target (default). ``False``: the target must not
        exist when the rename happens (a hard link is made, which fails if another
        process created the file meanwhile).
    suffix : str, optional
        The temporary file's ending, for writers that choose the format from it
        (default: the target's extensions, e.g. ``.nii.gz``).
    mkdir : bool
        Create the target's missing folders first.

    Raises
    ------
    InputError
        The target cannot be written (one line naming it); nothing is left behind.
    """
    if mkdir:
        _make_folders(Path(path))
    p = check_writable_target(path)
    if suffix is None:
        suffix = "".join(s for s in p.suffixes[-2:] if len(s) <= 8) or ".tmp"
    prefix = "." + p.name[:40] + "."
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=p.parent)
    except OSError as exc:
        raise write_error(p, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            writer(tmp)
            os.chmod(tmp, default_file_mode())
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            if replace:
                os.replace(tmp, p)
            else:
                try:
                    os.link(tmp, p)
                except OSError as exc:
                    if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EXDEV) and not p.exists():
                        os.replace(tmp, p)  # file systems without hard links
                    else:
                        raise
        except OutputError:
            raise
        except OSError as exc:
            raise write_error(p, exc) from None
        except RuntimeError as exc:  # ITK writers
            raise OutputError(f"{p}: cannot write: {_itk_reason(exc, p)}") from None
        _fsync_folder(p.parent)
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    return p


def _itk_reason(exc: BaseException, p: Path) -> str:
    try:
        st = os.statvfs(p.parent)
        if st.f_bavail * st.f_frsize < 1 << 20 and st.f_blocks:
            return "no space left on the device"
    except OSError:
        pass
    if "Unable to determine ImageIO" in str(exc):
        return "no image format for this file name (use .nii.gz, .nii, .nrrd, .mha or .mhd)"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    detail = next((ln for ln in lines if "rror" in ln or "annot" in ln), lines[-1] if lines else "")
    return detail[:160] or "the image writer failed"


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, *, replace: bool = True, mkdir: bool = False
) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, _write, replace=replace, suffix=".tmp", mkdir=mkdir)


def atomic_write_text(
    path: str | os.PathLike, text: str, *, replace: bool = True, mkdir: bool = False
) -> Path:
    """Write ``text`` (UTF-8, line endings as given) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), replace=replace, mkdir=mkdir)


def atomic_write_image(
    path: str | os.PathLike, image, *, compress: bool | None = None, mkdir: bool = False
) -> Path:
    """Write a SimpleITK image atomically (format from the extension)."""
    import SimpleITK as sitk

    from mpi_viewer.io.guards import quiet_native_output

    p = Path(path)
    if compress is None:
        compress = p.name.lower().endswith((".gz", ".mha", ".nrrd"))

    def _write(tmp: Path) -> None:
        with quiet_native_output():
            sitk.WriteImage(image, str(tmp), useCompression=compress)
            # ITK does not always report a failed write (a full disk under gzip): read it back
            try:
                back = sitk.ReadImage(str(tmp))
                ok = back.GetSize() == image.GetSize()
            except RuntimeError:
                ok = False
        if not ok:
            raise OutputError(
                f"{p}: cannot write: {_itk_reason(RuntimeError('incomplete image file'), p)}"
            )

    return atomic_write(p, _write, mkdir=mkdir)


class written_together:  # noqa: N801 - a context manager
    """Outputs of one command, all or none: when the block fails, the outputs it created
    (files that did not exist before it) are removed again. Files that existed are
    replaced atomically or kept, so they need no undoing."""

    def __init__(self, *paths) -> None:
        self.paths = [Path(p) for p in paths if p]
        self.existed = {p: p.exists() for p in self.paths}

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if exc is None:
            return
        for p in self.paths:
            if not self.existed[p] and p.is_file():
                try:
                    p.unlink()
                except OSError:
                    pass
