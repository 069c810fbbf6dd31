"""Session files: the :class:`~mpi_viewer.study.model.Study` serialized as JSON, read, migrated
and written.

A session file is plain JSON (UTF-8) with a ``schema_version`` (now 2): exactly
``Study.to_dict()`` (see :mod:`mpi_viewer.study.model` for the sections: inputs by path
relative to the session file with their SHA-256 and role, layer display, the registration
with its one fixed → moving transform and provenance, ROI definitions and painted masks,
the calibration and how it is applied, cells, report settings, results, software
versions, dates). Older files go through :data:`MIGRATIONS` (0 → 1 → 2).

Safety
------
- A session cannot run code: it is read with :func:`json.loads` and validated by the
  pydantic model (strict types, finite numbers); nothing is imported, evaluated or
  unpickled. Any invalid value is one :class:`~mpi_viewer.errors.InputError` line naming
  the field.
- **Unknown keys are ignored with a warning** (in ``Session.warnings``), not rejected; a
  newer *schema version* is rejected.
- Paths that lead outside the session's own folder are allowed (studies share raw data),
  but :func:`load_session` lists them in ``Session.warnings``.
- Saving is atomic (:func:`save_session`); input files are only ever read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mpi_viewer.errors import InputError
from mpi_viewer.study.model import (  # noqa: F401  (the section types, re-exported)
    FORMAT_NAME,
    MODALITIES,
    ROLES,
    SCHEMA_VERSION,
    CalibrationSection,
    CellsSection,
    FileRef,
    InputFile,
    Landmarks,
    LayerDisplay,
    MaskFile,
    RegistrationSection,
    ReportSettings,
    ROISection,
    Study,
    TransformModel,
    now_iso,
    software_versions,
    validate_study,
)

#: A session is a Study (the name the GUI and older code use).
Session = Study

#: Largest session file read (bytes); a session is small, masks live beside it.
MAX_SESSION_BYTES = 64 * 1024 * 1024


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


# -- migrations --------------------------------------------------------------------------------
def _migrate_0_to_1(d: dict[str, Any]) -> dict[str, Any]:
    """Version 0 (the draft format of mpi-viewer 0.0): ``inputs`` as an object
    ``{role: path}`` with ``hashes`` beside it, a single ``roi`` object, ``iron_per_cell_pg``
    as a number and no layer settings."""
    d = dict(d)
    inputs = _obj(d.pop("inputs", {}), "session.inputs")
    hashes = _obj(d.pop("hashes", {}), "session.hashes")
    d["inputs"] = [
        {
            "role": role,
            "path": path,
            "sha256": hashes.get(role, ""),
            **({"modality": role.upper()} if role in ("mri", "ct", "mpi") else {}),
        }
        for role, path in inputs.items()
    ]
    if "roi" in d:
        roi = d.pop("roi")
        d["rois"] = [] if roi is None else [roi]
    if "iron_per_cell_pg" in d:
        mean = d.pop("iron_per_cell_pg")
        sd = d.pop("iron_per_cell_sd_pg", 0.0)
        d["cells"] = None if mean is None else {"mean_pg": mean, "sd_pg": sd}
    d.setdefault("layers", [])
    d["schema_version"] = 1
    return d


def _migrate_1_to_2(d: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (mpi-viewer 0.1): the registration's ``matrix`` and ``translation`` beside
    its other keys become one ``transform`` {matrix, translation, model}; the calibration's
    ``options.confidence`` becomes ``calibration.confidence``; report settings are added."""
    d = dict(d)
    reg = d.get("registration")
    if isinstance(reg, dict):
        reg = dict(reg)
        m, t = reg.pop("matrix", None), reg.pop("translation", None)
        if m is not None or t is not None:
            reg["transform"] = {"matrix": m, "translation": t, "model": reg.get("model", "rigid")}
        d["registration"] = reg
    cal = d.get("calibration")
    if isinstance(cal, dict) and isinstance(cal.get("options"), dict):
        cal, options = dict(cal), dict(cal["options"])
        if "confidence" in options:
            cal["confidence"] = options.pop("confidence")
        cal["options"] = options
        d["calibration"] = cal
    d.setdefault("report", {})
    d["schema_version"] = 2
    return d


#: ``{version: function}`` turning a dict of that version into the next version.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    0: _migrate_0_to_1,
    1: _migrate_1_to_2,
}


def migrate(d: Any, *, where: str = "session") -> tuple[dict[str, Any], int]:
    """Bring a session dict up to :data:`SCHEMA_VERSION`; returns (dict, original version)."""
    d = _obj(d, where)
    if "schema_version" not in d:
        raise InputError(f"{where}: not an mpi-viewer session (no schema_version)")
    version = d["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(
            f"{where}.schema_version: expected an integer, got {type(version).__name__}"
        )
    if version > SCHEMA_VERSION:
        raise InputError(
            f"{where}: schema_version {version} is newer than this mpi-viewer "
            f"reads ({SCHEMA_VERSION}); update mpi-viewer"
        )
    if version < min(MIGRATIONS, default=SCHEMA_VERSION):
        raise InputError(f"{where}: schema_version {version} is too old to read")
    original = version
    while version < SCHEMA_VERSION:
        d = MIGRATIONS[version](d)
        version += 1
    return d, original


# -- files --------------------------------------------------------------------------------------
def sha256_file(path: str | Path, *, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file (read in chunks, never written)."""
    from mpi_viewer.io.guards import check_regular_file

    check_regular_file(path, "input")  # a FIFO or device would never end
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk_bytes):
                h.update(block)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return h.hexdigest()


def parse_session(text: str | bytes, *, source: str = "session") -> Session:
    """A validated :class:`Session` from JSON text (migrated if older).

    Raises
    ------
    InputError
        Not JSON, not a session, a newer schema version or any invalid value.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{source}: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise InputError(f"{source}: JSON nested too deeply") from None
    except ValueError as exc:
        raise InputError(f"{source}: not valid JSON ({exc})") from None
    warnings: list[str] = []
    try:
        d, original = migrate(data, where=source)
        session = validate_study(Study, d, where="session", warnings=warnings)
    except InputError as exc:
        msg = str(exc)
        if not msg.startswith(source):
            msg = f"{source}: {msg}"
        raise InputError(msg) from None
    except RecursionError:
        raise InputError(f"{source}: JSON nested too deeply") from None
    if original != SCHEMA_VERSION:
        warnings.append(f"{source}: migrated from schema_version {original} to {SCHEMA_VERSION}")
    session.warnings = warnings
    return session


def load_session(path: str | Path) -> Session:
    """Read and validate a session file.

    The returned session's ``warnings`` list ignored keys, a migration from an older
    schema version, and every file it names outside its own folder; say so to the user
    before opening those files. Nothing is opened but the session file itself.

    Raises
    ------
    InputError
        Missing, unreadable, corrupt, newer-version or invalid session file.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise InputError(f"{p}: not a file")
        if size > MAX_SESSION_BYTES:
            raise InputError(f"{p}: {size} bytes is too large for a session file")
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{p}: no such session file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    session = parse_session(data, source=str(p))
    session.path = p.resolve()
    outside = session.files_outside_folder()
    if outside:
        session.warnings.append(
            f"{p.name} names {len(outside)} file(s) outside its folder: {', '.join(outside)}"
        )
    return session


def dumps_session(session: Session) -> str:
    """The session as strict JSON text (no NaN literals)."""
    return json.dumps(session.to_dict(), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (the one writer,
    :func:`mpi_viewer.io.atomic.atomic_write_text`): temporary file in the same folder,
    fsync, rename. A crash leaves the old file or the new one, never half of one."""
    from mpi_viewer.io.atomic import atomic_write_text as _write

    return _write(path, text, mkdir=True)


def save_session(session: Session, path: str | Path) -> Path:
    """Save a session atomically; sets ``modified``, ``software`` and ``path``.

    Paths of the inputs must already be relative to ``path``'s folder (use
    :func:`input_file` with the session's path to make them).
    """
    p = Path(path)
    folder = p.resolve().parent
    for what, rel, _ in session.all_files():
        try:
            same = (folder / rel).resolve() == p.resolve()
        except (OSError, ValueError, RuntimeError):
            same = False
        if same:
            raise InputError(
                f"{p}: the session would overwrite its own {what}; choose another name"
            )
    session.modified = now_iso()
    session.software = software_versions()
    text = dumps_session(session)
    atomic_write_text(p, text)
    session.path = p.resolve()
    return p


def file_beside(session_path: str | Path, name: str) -> Path:
    """Where a session saved at ``session_path`` may write its own file ``name``
    (``X.tfm``, ``X_phantoms.csv``) without replacing anyone else's.

    The file itself when it does not exist yet, or when the session already at
    ``session_path`` names it with the same SHA-256 (its own earlier save); otherwise
    the first free ``stem_2.ext``, ``stem_3.ext``… An existing file that is not the
    session's own is never replaced.
    """
    sp = Path(session_path)
    target = sp.with_name(name)
    owned: dict[Path, str] = {}
    if sp.is_file():
        try:
            old = load_session(sp)
            owned = {old.resolve(rel): digest for _, rel, digest in old.all_files() if digest}
        except (InputError, OSError):
            owned = {}

    def free(p: Path) -> bool:
        if not (p.exists() or p.is_symlink()):
            return True
        digest = owned.get(p.resolve())
        return digest is not None and p.is_file() and sha256_file(p) == digest

    stem, dot, ext = target.name.partition(".")
    i = 1
    while not free(target):
        i += 1
        target = sp.with_name(f"{stem}_{i}{dot}{ext}")
    return target


def relative_path(target: str | Path, session_path: str | Path) -> str:
    """``target`` relative to the session's folder, POSIX separators (``..`` allowed)."""
    folder = Path(session_path).resolve().parent
    t = Path(target).resolve()
    try:
        return Path(os.path.relpath(t, folder)).as_posix()
    except ValueError:  # pragma: no cover - another drive on Windows
        return t.as_posix()


def input_file(
    path: str | Path,
    session_path: str | Path,
    *,
    role: str,
    modality: str | None = None,
    name: str | None = None,
    acquisition: dict[str, Any] | None = None,
) -> InputFile:
    """An :class:`InputFile` for ``path``, hashed now, path relative to the session."""
    from mpi_viewer.io.guards import input_files_of

    if role not in ROLES:
        raise InputError(f"input role {role!r}: expected one of {', '.join(ROLES)}")
    companions = []
    if not Path(path).is_dir():
        companions = [
            FileRef(path=relative_path(c, session_path), sha256=sha256_file(c))
            for c in input_files_of(path)[1:]
        ]
    return InputFile(
        role=role,
        path=relative_path(path, session_path),
        sha256=sha256_file(path),
        modality=modality,
        name=name,
        acquisition=dict(acquisition or {}),
        companions=companions,
    )


# -- crash recovery ------------------------------------------------------------------------------
RECOVERY_ENV = "MPI_VIEWER_RECOVERY_DIR"


def recovery_dir() -> Path:
    """Where autosaved recovery sessions go: ``$MPI_VIEWER_RECOVERY_DIR`` or
    ``~/.cache/mpi-viewer/recovery``."""
    env = os.environ.get(RECOVERY_ENV)
    return Path(env) if env else Path.home() / ".cache" / "mpi-viewer" / "recovery"


def recovery_path(pid: int | None = None) -> Path:
    """This process's recovery file (one per running viewer process)."""
    return recovery_dir() / f"recovery-{os.getpid() if pid is None else int(pid)}.json"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def pending_recoveries() -> list[Path]:
    """Recovery files left by processes that are no longer running (newest first)."""
    folder = recovery_dir()
    out = []
    if not folder.is_dir():
        return out
    for p in folder.glob("recovery-*.json"):
        try:
            pid = int(p.stem.split("-", 1)[1])
        except ValueError:
            continue
        if not _pid_alive(pid):
            out.append(p)
    return sorted(out, key=lambda p: p.stat().st_mtime, reverse=True)
