"""Guards at the edges: what may be read, how much, and what may be written.

Reading never blocks and never grows without bound: only regular files are opened
(a FIFO or ``/dev/zero`` is refused by its type, before ``open``), small text inputs
(CSV, JSON) are read up to a cap, and image sizes are checked against the header
before anything is allocated. Detached data files (MetaImage ``ElementDataFile``,
NRRD ``data file``) must lie in their header's folder or below; they and the sidecar
JSON are inputs like the header (:func:`input_files_of`), hashed with it in sessions.
Outputs never replace an input and never replace an existing file unless the user
asked for it (:func:`check_outputs`).
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from mpi_viewer.errors import InputError

#: Largest image mpi-viewer reads: 2**30 voxels (4 GiB as float32).
MAX_VOXELS = 1 << 30
#: Largest CSV or JSON input (phantoms, points, sidecars, calibrations, sessions, templates).
MAX_TEXT_BYTES = 64 << 20
#: Largest field of a CSV input, characters.
MAX_CSV_FIELD = 1 << 20
#: Most regions one run measures (seeds + labels of a mask).
MAX_ROIS = 1000
#: Most k-means clusters.
MAX_KMEANS_CLUSTERS = 32
#: Deepest nesting of a JSON input.
MAX_JSON_DEPTH = 64


# -- names and file types -----------------------------------------------------------------
def check_name(path: str | os.PathLike) -> Path:
    """Refuse a path that is not valid UTF-8 (ITK aborts the process on such names)."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(
                f"{text.decode('utf-8', 'replace')}: the file name is not valid UTF-8 (rename the file)"
            ) from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise InputError(f"{shown}: the file name is not valid UTF-8 (rename the file)") from None
    if "\x00" in text:
        raise InputError(f"{text!r}: the file name holds a NUL character")
    for part in Path(text).parts:
        n = len(part.encode("utf-8"))
        if n > 255:
            raise InputError(
                f"{text[:60]}…: the file name is too long ({n} bytes; at most 255 per name)"
            )
    return Path(text)


def shown(path: str | os.PathLike) -> str:
    """A path for a message: invalid UTF-8 replaced, never raising."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        return text.decode("utf-8", "replace")
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def check_regular_file(
    path: str | os.PathLike,
    what: str = "file",
    *,
    max_bytes: int | None = None,
    allow_dir: bool = False,
) -> Path:
    """Refuse anything but a readable regular file (folders too when ``allow_dir``).

    FIFOs, sockets and devices are refused by their type before they are opened, so
    reading never blocks and never runs forever. ``max_bytes`` caps the size.
    """
    p = check_name(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"{p}: no such file ({what})") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read {what} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        if allow_dir:
            return p
        raise InputError(f"{p}: is a folder; a {what} is expected")
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a named pipe (FIFO)"
            if stat.S_ISFIFO(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "not a regular file"
        )
        raise InputError(f"{p}: is {kind}, not a regular file ({what})")
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputError(
            f"{p}: {what} is too large ({st.st_size / 1e6:.1f} MB; at most {max_bytes / 1e6:.0f} MB)"
        )
    return p


def read_small_text(path: str | os.PathLike, what: str, *, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The text of a small CSV/JSON input (UTF-8, BOM dropped), read up to ``max_bytes``."""
    p = check_regular_file(path, what, max_bytes=max_bytes)
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"{p}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise InputError(f"{p}: {what} is too large (more than {max_bytes / 1e6:.0f} MB)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{p}: cannot read {what} (not UTF-8 text: byte {exc.start} is {data[exc.start]:#04x})"
        ) from None


def csv_rows(text: str, where: str) -> list[list[str]]:
    """Rows of CSV text; a malformed file or a field over :data:`MAX_CSV_FIELD` characters
    is refused in one line naming ``where`` and the row."""
    import csv

    old = csv.field_size_limit()
    csv.field_size_limit(MAX_CSV_FIELD)
    reader = csv.reader(text.splitlines())
    try:
        return list(reader)
    except csv.Error as exc:
        detail = " ".join(str(exc).split())
        if "field larger" in detail:
            detail = f"a field is longer than {MAX_CSV_FIELD} characters"
        raise InputError(f"{where}: row {reader.line_num}: {detail}") from None
    finally:
        csv.field_size_limit(old)


def json_depth_ok(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether brackets in ``text`` nest at most ``limit`` deep (strings skipped)."""
    depth = 0
    in_str = False
    esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def load_json_text(text: str, where: str, what: str = "JSON file"):
    """``json.loads`` with a depth limit and one-line errors naming ``where``."""
    import json

    if not json_depth_ok(text):
        raise InputError(f"{where}: {what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(
            f"{where}: not valid JSON ({what}: {' '.join(str(exc).split())[:160]})"
        ) from None


def read_json_file(path: str | os.PathLike, what: str = "JSON file"):
    """A small JSON input, bounded in size and depth; one-line errors."""
    p = Path(path)
    return load_json_text(read_small_text(p, what), str(p), what)


# -- detached data files ------------------------------------------------------------------
_META_KEY = re.compile(r"^\s*ElementDataFile\s*=\s*(.*?)\s*$", re.M)
_NRRD_KEY = re.compile(r"^\s*data ?file\s*:\s*(.*?)\s*$", re.M | re.I)


def _header_text(path: Path, limit: int = 1 << 16) -> str:
    with open(path, "rb") as f:
        head = f.read(limit)
    if path.name.lower().endswith(".nrrd"):
        head = head.split(b"\n\n", 1)[0]  # attached NRRD: the header ends at the first blank line
    return head.decode("latin-1")


def detached_data_files(path: str | os.PathLike) -> list[Path]:
    """The data files a MetaImage (``.mhd``/``.mha``) or NRRD (``.nhdr``/``.nrrd``) header names.

    Each must lie in the header's folder or below; anything else (an absolute path,
    ``..``) is refused with one line before it is opened. Files listed (``LIST``,
    ``LIST``-style NRRD ``data file`` lists) and printf patterns are expanded.
    """
    p = Path(path)
    name = p.name.lower()
    if not name.endswith((".mhd", ".mha", ".nhdr", ".nrrd")):
        return []
    try:
        text = _header_text(p)
    except OSError:
        return []
    found: list[str] = []
    lines = text.splitlines()
    if name.endswith((".mhd", ".mha")):
        m = _META_KEY.search(text)
        if not m:
            return []
        value = m.group(1)
        if value.upper() == "LOCAL":
            return []
        if value.upper().startswith("LIST"):
            idx = next(i for i, ln in enumerate(lines) if _META_KEY.match(ln))
            found = [ln.strip() for ln in lines[idx + 1 :] if ln.strip()]
        elif "%" in value:
            parts = value.split()
            pattern = parts[0]
            try:
                lo, hi, step = (int(v) for v in (parts[1:4] + ["1"])[:3])
            except ValueError:
                lo, hi, step = 0, -1, 1
            if step == 0 or (hi - lo) // step > 100000:
                raise InputError(f"{p}: ElementDataFile {value!r}: too many data files")
            found = [pattern % i for i in range(lo, hi + 1, step)]
        else:
            found = [value]
    else:
        m = _NRRD_KEY.search(text)
        if not m:
            return []
        value = m.group(1)
        if value.upper().startswith("LIST"):
            idx = next(i for i, ln in enumerate(lines) if _NRRD_KEY.match(ln))
            found = [ln.strip() for ln in lines[idx + 1 :] if ln.strip()]
        else:
            parts = value.split()
            if len(parts) >= 4 and "%" in parts[0]:
                try:
                    lo, hi, step = (int(v) for v in parts[1:4])
                except ValueError:
                    lo, hi, step = 0, -1, 1
                if step == 0 or (hi - lo) // step > 100000:
                    raise InputError(f"{p}: data file {value!r}: too many data files")
                found = [parts[0] % i for i in range(lo, hi + 1, step)]
            else:
                found = [value]
    folder = p.resolve().parent
    out: list[Path] = []
    for f in found:
        q = (p.parent / f) if not os.path.isabs(f) else Path(f)
        try:
            rq = q.resolve()
        except (OSError, RuntimeError):
            rq = q
        if not rq.is_relative_to(folder):
            raise InputError(
                f"{p}: its data file {f!r} lies outside the header's folder {p.parent} (refused; "
                "move the data file beside the header)"
            )
        out.append(q)
    return out


def check_detached_data(path: str | os.PathLike) -> list[Path]:
    """:func:`detached_data_files`, each checked to be a regular file (no FIFO, no device)."""
    files = detached_data_files(path)
    for f in files:
        if f.exists() or f.is_symlink():
            check_regular_file(f, f"data file of {Path(path).name}")
    return files


def input_files_of(path: str | os.PathLike) -> list[Path]:
    """Every file a number read from ``path`` depends on: the file itself (or the files
    of a DICOM folder), its sidecar JSON when there is one, and its detached data files.

    Sessions hash all of them; commands never write over any of them.
    """
    from mpi_viewer.io.images import sidecar_path

    p = Path(path)
    if p.is_dir():
        return sorted(q for q in p.iterdir() if q.is_file())
    files = [p]
    try:
        files += [f for f in detached_data_files(p) if f not in files]
    except InputError:
        pass
    sc = sidecar_path(p)
    if sc != p and sc.is_file():
        files.append(sc)
    return files


# -- outputs --------------------------------------------------------------------------------
def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(
    outputs: Mapping[str, str | os.PathLike | None] | Iterable[str | os.PathLike | None],
    inputs: Iterable[str | os.PathLike | None] = (),
    *,
    overwrite: bool = False,
) -> None:
    """Refuse, before any work, outputs that would replace an input or an existing file.

    Parameters
    ----------
    outputs : mapping (option → path) or iterable of paths
        Every file the command will write (``None`` entries are skipped). The option
        name (``"-o"``, ``"--masks"``) is used in messages.
    inputs : iterable of paths
        Every file the command reads; each is expanded with :func:`input_files_of`
        (sidecars, detached data).
    overwrite : bool
        Allow replacing existing files that are not inputs (``--overwrite``).

    Raises
    ------
    InputError
        One line naming the output and why: it is an input (never allowed), it
        exists (without ``overwrite``), two outputs are the same file, or it cannot be
        written (folder missing, a file in the way, name too long).
    """
    from mpi_viewer.io.atomic import _first_file_in as _blocker
    from mpi_viewer.io.atomic import check_writable_target

    items = (
        list(outputs.items()) if isinstance(outputs, Mapping) else [("output", o) for o in outputs]
    )
    items = [(k, Path(v)) for k, v in items if v]
    in_files: list[Path] = []
    for i in inputs:
        if i:
            try:
                in_files += input_files_of(i)
            except OSError:
                in_files.append(Path(i))
    for _, out in items:
        check_name(out)
    seen: list[Path] = []
    for opt, out in items:
        for f in in_files:
            if _same_file(out, f):
                what = "an input" if f.resolve() == Path(f).resolve() else "an input"
                raise InputError(
                    f"{out}: {opt} would overwrite {what} ({f}); choose another output file"
                )
        if any(_same_file(out, s) for s in seen):
            raise InputError(f"{out}: given as two outputs; choose different files")
        seen.append(out)
        if out.parent.is_dir() or _blocker(out.parent) is not None:
            check_writable_target(out)
        elif len(os.fsencode(out.name)) > 255:
            check_writable_target(out)  # the name's length, said the same way
        if out.exists() and not overwrite:
            raise InputError(f"{out}: {opt} exists already; choose another file or add --overwrite")


# -- physical validity ----------------------------------------------------------------------
def check_geometry(spacing, origin=None, direction=None, *, where: str) -> None:
    """Spacing > 0 and finite, origin finite, direction an orthonormal matrix; one line otherwise."""
    sp = np.asarray(spacing, dtype=float).ravel()
    if sp.size == 0 or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise InputError(
            f"{where}: voxel spacing {tuple(float(v) for v in sp)} mm must be positive and finite"
        )
    if origin is not None:
        o = np.asarray(origin, dtype=float).ravel()
        if not np.all(np.isfinite(o)):
            raise InputError(f"{where}: origin {tuple(float(v) for v in o)} mm must be finite")
    if direction is not None:
        d = np.asarray(direction, dtype=float).ravel()
        n = math.isqrt(d.size)
        if n * n != d.size or not np.all(np.isfinite(d)):
            raise InputError(f"{where}: direction {tuple(d)} is not a finite square matrix")
        m = d.reshape(n, n)
        if not np.allclose(m @ m.T, np.eye(n), atol=1e-4):
            raise InputError(
                f"{where}: direction matrix is not orthonormal (axes not at right angles or not unit length)"
            )


def check_voxel_count(shape, where: str, *, itemsize: int = 4) -> None:
    """Refuse images with more than :data:`MAX_VOXELS` voxels before allocation."""
    n = 1
    for s in shape:
        s = int(s)
        if s < 0:
            raise InputError(f"{where}: negative size {tuple(shape)}")
        n *= s
    if n > MAX_VOXELS:
        raise InputError(
            f"{where}: {n:.3g} voxels ({tuple(int(s) for s in shape)}) is more than the limit of "
            f"{MAX_VOXELS:.3g}"
        )


def check_count(n: int, limit: int, what: str) -> None:
    """Refuse ``n`` items over ``limit`` ("13824 labels in --mask: at most 1000 regions")."""
    if n > limit:
        raise InputError(f"{what}: {n} is more than the limit of {limit}")


# -- sizes from headers, before allocation ----------------------------------------------------
def _npy_header(p: Path):
    from numpy.lib import format as npf

    with open(p, "rb") as f:
        try:
            version = npf.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npf.read_array_header_1_0(f, max_header_size=1 << 16)
            else:
                shape, fortran, dtype = npf.read_array_header_2_0(f, max_header_size=1 << 16)
        except (ValueError, SyntaxError, TypeError, OverflowError, EOFError) as exc:
            raise InputError(
                f"{p}: not a readable .npy file ({' '.join(str(exc).split())[:120]})"
            ) from None
        return shape, dtype, f.tell()


def check_header_size(path: str | os.PathLike) -> None:
    """Refuse, from the header alone, images over :data:`MAX_VOXELS` or shorter than the header says.

    ``.npy`` (shape, dtype: numbers only, at most 8 bytes per value), NIfTI (dims),
    MetaImage (``DimSize``) and NRRD (``sizes``). Other formats are checked by their readers.
    """
    p = Path(path)
    if p.is_dir():
        return
    name = p.name.lower()
    try:
        if name.endswith(".npy"):
            shape, dtype, offset = _npy_header(p)
            if dtype.hasobject or dtype.kind not in "biuf" or dtype.fields is not None:
                raise InputError(
                    f"{p}: array of {dtype} values; numbers (integer or floating point) are expected"
                )
            if dtype.itemsize > 8:
                raise InputError(
                    f"{p}: {dtype} values ({dtype.itemsize * 8}-bit) are not supported; save as float64 or float32"
                )
            check_voxel_count(shape, str(p))
            need = offset + int(np.prod(shape, dtype=object)) * dtype.itemsize
            have = p.stat().st_size
            if have < need:
                raise InputError(
                    f"{p}: truncated file ({have} of {need} bytes for an array of shape {tuple(shape)})"
                )
        elif name.endswith((".nii", ".nii.gz")):
            import gzip
            import struct

            opener = gzip.open if name.endswith(".gz") else open
            with opener(p, "rb") as f:
                head = f.read(540)
            for e in "<>":
                if len(head) >= 348 and struct.unpack(e + "i", head[:4])[0] == 348:
                    dims = struct.unpack(e + "8h", head[40:56])
                elif len(head) >= 540 and struct.unpack(e + "i", head[:4])[0] == 540:
                    dims = struct.unpack(e + "8q", head[16:80])
                else:
                    continue
                if 1 <= dims[0] <= 7:
                    sizes = [max(int(d), 1) for d in dims[1 : dims[0] + 1]]
                    check_voxel_count(sizes, str(p))
                    if len(head) >= 540 and struct.unpack(e + "i", head[:4])[0] == 540:
                        pixdim = struct.unpack(e + "8d", head[104:168])
                    else:
                        pixdim = struct.unpack(e + "8f", head[76:108])
                    for axis, (n, d) in enumerate(
                        zip(sizes[:3], pixdim[1:4], strict=False), start=1
                    ):
                        if n > 1 and not (math.isfinite(d) and d > 0):
                            raise InputError(
                                f"{p}: voxel size pixdim[{axis}] = {d:g} mm; it must be positive and finite"
                            )
                break
        elif name.endswith((".mhd", ".mha")):
            text = _header_text(p, 1 << 14)
            m = re.search(r"^\s*DimSize\s*=\s*(.*)$", text, re.M)
            if m:
                try:
                    dims = [int(float(v)) for v in m.group(1).split()]
                except (ValueError, OverflowError):
                    raise InputError(
                        f"{p}: DimSize {m.group(1).strip()!r} is not a list of whole numbers"
                    ) from None
                if any(d <= 0 for d in dims):
                    raise InputError(f"{p}: DimSize {m.group(1).strip()!r} must be positive")
                check_voxel_count(dims, str(p))
            _check_numbers(p, text, r"(?:ElementSpacing|ElementSize)", positive=True)
            _check_numbers(p, text, r"(?:Offset|Origin|Position)", positive=False)
            _check_numbers(p, text, r"(?:TransformMatrix|Rotation|Orientation)", positive=False)
        elif name.endswith((".nrrd", ".nhdr")):
            text = _header_text(p, 1 << 14)
            m = re.search(r"^\s*sizes\s*:\s*(.*)$", text, re.M)
            if m:
                try:
                    dims = [int(v) for v in m.group(1).split()]
                except ValueError:
                    raise InputError(
                        f"{p}: sizes {m.group(1).strip()!r} is not a list of whole numbers"
                    ) from None
                if any(d <= 0 for d in dims):
                    raise InputError(f"{p}: sizes {m.group(1).strip()!r} must be positive")
                check_voxel_count(dims, str(p))
            _check_numbers(p, text, r"spacings", positive=True, sep=":")
            m = re.search(r"^\s*space origin\s*:\s*(.*)$", text, re.M)
            if m and re.search(r"nan|inf", m.group(1), re.I):
                raise InputError(f"{p}: space origin {m.group(1).strip()} must be finite")
            m = re.search(r"^\s*space directions\s*:\s*(.*)$", text, re.M)
            if m:
                for vec in re.findall(r"\(([^)]*)\)", m.group(1)):
                    try:
                        v = [float(x) for x in vec.split(",")]
                    except ValueError:
                        raise InputError(
                            f"{p}: space directions ({vec}) is not a vector of numbers"
                        ) from None
                    norm = math.sqrt(sum(x * x for x in v))
                    if not math.isfinite(norm) or norm <= 0:
                        raise InputError(
                            f"{p}: space directions ({vec}): a voxel axis must have a positive, finite length"
                        )
        elif name.endswith((".mdf", ".h5", ".hdf5")):
            _check_mdf_size(p)
        elif name.endswith((".dcm", ".ima", ".dicom")) or p.suffix == "":
            _check_dicom_spacing(p)
    except (OSError, EOFError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        return  # the reader reports what it finds


def _check_numbers(p: Path, text: str, key: str, *, positive: bool, sep: str = "=") -> None:
    m = re.search(rf"^\s*{key}\s*{sep}\s*(.*)$", text, re.M)
    if not m:
        return
    field = m.group(0).split(sep)[0].strip()
    raw = m.group(1).strip()
    try:
        vals = [float(v) for v in raw.split()]
    except ValueError:
        raise InputError(f"{p}: {field} {raw!r} is not a list of numbers") from None
    if not all(math.isfinite(v) for v in vals):
        raise InputError(f"{p}: {field} {raw} must be finite")
    if positive and any(v <= 0 for v in vals):
        raise InputError(f"{p}: {field} {raw} mm: a voxel size must be positive")


def _check_mdf_size(p: Path) -> None:
    """MDF: ``/reconstruction/data`` no larger than :data:`MAX_VOXELS` values, from its shape."""
    try:
        import h5py

        with h5py.File(p, "r") as f:
            d = f.get("reconstruction/data")
            shape = getattr(d, "shape", None)
            size = f.get("reconstruction/size")
            size = None if size is None or not hasattr(size, "dtype") else size[()]
    except Exception:  # noqa: BLE001 - the reader reports damaged files
        return
    if shape:
        check_voxel_count(shape, f"{p}: /reconstruction/data")
    if size is not None:
        a = np.asarray(size)
        if a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise InputError(
                f"{p}: /reconstruction/size {_short(a)} must hold whole numbers (nx, ny, nz)"
            )
        if np.any(a <= 0):
            raise InputError(f"{p}: /reconstruction/size {_short(a)} must be positive")
        check_voxel_count([int(v) for v in a.ravel()], f"{p}: /reconstruction/size")


def _short(a) -> str:
    text = " ".join(str(np.asarray(a).tolist()).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _check_dicom_spacing(p: Path) -> None:
    """DICOM PixelSpacing (or ImagerPixelSpacing) > 0 and finite when the file states one."""
    from mpi_viewer.io._formats._dicom import is_dicom_file

    if p.suffix == "" and not is_dicom_file(p):
        return
    try:
        import pydicom

        ds = pydicom.dcmread(str(p), stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - the reader reports damaged files
        return
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        v = ds.get(key)
        if v is None:
            continue
        try:
            vals = [float(x) for x in (v if hasattr(v, "__len__") else [v])]
        except (TypeError, ValueError):
            raise InputError(f"{p}: {key} {v!r} is not a pair of numbers") from None
        if not vals or not all(math.isfinite(x) and x > 0 for x in vals):
            shown_v = "\\".join(f"{x:g}" for x in vals)
            raise InputError(f"{p}: {key} {shown_v} mm: pixel spacing must be positive and finite")


# -- library chatter ------------------------------------------------------------------------
_QUIET_DEPTH = 0


class quiet_native_output:  # noqa: N801 - used as a context manager
    """Keep ITK, GDCM, numpy and tifffile messages off the user's terminal.

    Python warnings and numpy floating-point warnings are silenced, the ``tifffile``
    logger is muted, SimpleITK's global warning display is off, and the process's
    standard error (file descriptor 2, where C++ libraries print) goes to a
    temporary file for the duration; what they said is in :attr:`text`.
    """

    def __init__(self) -> None:
        self.text = ""

    def __enter__(self):
        import logging
        import sys
        import tempfile
        import threading
        import warnings

        global _QUIET_DEPTH
        self._outer = _QUIET_DEPTH == 0 and threading.current_thread() is threading.main_thread()
        _QUIET_DEPTH += 1
        self._warn = warnings.catch_warnings()
        self._warn.__enter__()
        warnings.simplefilter("ignore")
        self._err = np.seterr(all="ignore")
        self._log = logging.getLogger("tifffile")
        self._log_disabled = self._log.disabled
        self._log.disabled = True
        try:
            import SimpleITK as sitk

            sitk.ProcessObject.SetGlobalWarningDisplay(False)
        except ImportError:  # pragma: no cover
            pass
        self._saved = None
        if self._outer:
            try:
                sys.stderr.flush()
                self._tmp = tempfile.TemporaryFile()
                self._saved = os.dup(2)
                os.dup2(self._tmp.fileno(), 2)
            except (OSError, ValueError, AttributeError):
                self._saved = None
        return self

    def __exit__(self, *exc) -> None:
        import sys

        global _QUIET_DEPTH
        _QUIET_DEPTH -= 1
        if self._saved is not None:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(self._saved, 2)
            os.close(self._saved)
            try:
                self._tmp.seek(0)
                self.text = self._tmp.read(1 << 16).decode("utf-8", "replace")
            finally:
                self._tmp.close()
        self._log.disabled = self._log_disabled
        np.seterr(**self._err)
        self._warn.__exit__(*exc)
