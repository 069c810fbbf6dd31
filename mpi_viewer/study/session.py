"""Sessions: every input and every decision of an analysis, in one replayable JSON file.

A session file is plain JSON (UTF-8) with a ``schema_version``. It names

- the **inputs** by path *relative to the session file*, with their SHA-256, role
  (``mri``, ``ct``, ``mpi``, ``phantoms``, ``calibration``…), modality and, for MPI,
  the acquisition metadata;
- the **layer display** settings (colormap, contrast limits, visibility, opacity,
  blending per layer name);
- the **registration**: landmarks (names, fixed and moving positions in mm, excluded
  names), template name, model, the fitted fixed → moving transform and the ITK
  ``.tfm`` written beside the session;
- the **ROI definitions**: method, parameters (``ROIParams.to_dict()``), seeds in
  the MPI's physical mm, names; manual ROIs as label images on the MPI grid
  (:class:`MaskFile`: painted in napari and written beside the session as NRRD, or a
  ``quantify --mask`` input), referenced with their hash and ROI names;
- the **calibration** with its raw points (``Calibration.to_dict()``), the **iron
  per cell**, the **results** (rows as the pipeline produces them), the **software
  versions** and the dates.

Each section is a dataclass with ``to_dict()`` / ``from_dict()``. :func:`load_session`
validates everything it reads and raises :class:`~mpi_viewer.errors.InputError` (one
line) for a corrupt file, a file of a newer schema version or any value of the wrong
type; files of an older version go through :data:`MIGRATIONS`.

Safety
------
- A session cannot run code: it is read with :func:`json.loads` and every value is
  checked; nothing is imported, evaluated or unpickled.
- **Unknown keys are ignored with a warning** (in ``Session.warnings``), not
  rejected: a hand-edited note or a field written by a later *compatible* release
  must not make a study unreadable, but the user is told. A newer *schema version*
  is rejected.
- Paths that lead outside the session's own folder (``..``, absolute paths) are
  allowed, because studies often share raw data, but :func:`load_session` lists
  them in ``Session.warnings`` so that the CLI and the GUI say so before opening.
- Saving is atomic (:func:`save_session`: temporary file in the same folder, flush,
  ``os.fsync``, ``os.replace``); input files are only ever read.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpi_viewer.errors import InputError

SCHEMA_VERSION = 1
FORMAT_NAME = "mpi-viewer session"


#: Roles an input file can have.
ROLES = (
    "mri",
    "ct",
    "mpi",
    "phantoms",
    "calibration",
    "fiducials_fixed",
    "fiducials_moving",
    "template",
    "mask",
    "other",
)


MODALITIES = ("MPI", "MRI", "CT", "unknown")


#: Largest session file read (bytes); a session is small, masks live beside it.
MAX_SESSION_BYTES = 64 * 1024 * 1024
_REQUIRED = object()


# -- validation helpers ---------------------------------------------------------------------
def _where(where: str, key: str | int) -> str:
    if isinstance(key, str) and not key.isprintable():  # a mutated key: keep the message one line
        return f"{where}[{key!r}]"
    return f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}"


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a JSON list, got {type(value).__name__}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where}: expected a number, got {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:
        raise InputError(f"{where}: number too large") from None
    if not math.isfinite(v):
        raise InputError(f"{where}: expected a finite number, got {value!r}")
    return v


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: expected an integer, got {type(value).__name__}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{where}: expected true or false, got {type(value).__name__}")
    return value


def _opt(conv: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    def f(value, where):
        return None if value is None else conv(value, where)

    return f


def _list_of(conv: Callable[[Any, str], Any]) -> Callable[[Any, str], list]:
    def f(value, where):
        return [conv(v, _where(where, i)) for i, v in enumerate(_list(value, where))]

    return f


def _vec(n: int) -> Callable[[Any, str], list[float]]:
    def f(value, where):
        v = _list_of(_float)(value, where)
        if len(v) != n:
            raise InputError(f"{where}: expected {n} numbers, got {len(v)}")
        return v

    return f


def _points(value: Any, where: str) -> list[list[float]]:
    """A list of (x, y, z) mm points."""
    return _list_of(_vec(3))(value, where)


def _matrix3(value: Any, where: str) -> list[list[float]]:
    rows = _list_of(_vec(3))(value, where)
    if len(rows) != 3:
        raise InputError(f"{where}: expected a 3×3 matrix, got {len(rows)} rows")
    return rows


def _choice(options: tuple[str, ...]) -> Callable[[Any, str], str]:
    def f(value, where):
        s = _str(value, where)
        if s not in options:
            raise InputError(f"{where}: {s!r} is not one of {', '.join(options)}")
        return s

    return f


def _json_value(value: Any, where: str, depth: int = 0) -> Any:
    """Any JSON value (checked for depth and finite numbers), kept as is."""
    if depth > 32:
        raise InputError(f"{where}: nested too deeply")
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return _float(value, where)
    if isinstance(value, list):
        return [_json_value(v, _where(where, i), depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {
            _str(k, where): _json_value(v, _where(where, k), depth + 1) for k, v in value.items()
        }
    raise InputError(f"{where}: not a JSON value")


def _json_obj(value: Any, where: str) -> dict[str, Any]:
    return _json_value(_obj(value, where), where)


def _cell(value: Any, where: str) -> Any:
    """One results-table cell: a string, a number, true/false or null (NaN)."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value  # ±inf written as strings; NaN as null
    raise InputError(f"{where}: a results cell must be a string, number, boolean or null")


class _Fields:
    """Reads the keys of one JSON object, noting keys nobody asked for."""

    def __init__(self, value: Any, where: str, warnings: list[str] | None):
        self.d = _obj(value, where)
        self.where = where
        self.warnings = warnings
        self.seen: set[str] = set()

    def __call__(self, key: str, conv: Callable[[Any, str], Any], default: Any = _REQUIRED) -> Any:
        self.seen.add(key)
        if key not in self.d:
            if default is _REQUIRED:
                raise InputError(f"{self.where}: missing {key!r}")
            return default() if callable(default) else default
        return conv(self.d[key], _where(self.where, key))

    def done(self) -> None:
        extra = sorted(k for k in self.d if k not in self.seen)
        if extra and self.warnings is not None:
            self.warnings.append(
                f"{self.where}: ignored unknown key(s) {', '.join(map(repr, extra))}"
            )


def _rel_path(value: Any, where: str) -> str:
    s = _str(value, where)
    if not s or "\x00" in s or len(s) > 4096:
        raise InputError(f"{where}: {s[:80]!r} is not a usable file path")
    return s


def _sha256_text(value: Any, where: str) -> str:
    s = _str(value, where).lower()
    if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
        raise InputError(f"{where}: not a SHA-256 hex digest")
    return s


def _companions(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a list of {{path, sha256}} objects")
    out = []
    for i, c in enumerate(value):
        w = _where(where, i)
        c = _obj(c, w)
        out.append(
            {
                "path": _rel_path(c.get("path"), f"{w}.path"),
                "sha256": _sha256_text(c.get("sha256"), f"{w}.sha256"),
            }
        )
    return out


# -- sections ------------------------------------------------------------------------------
def _selection(value: Any, where: str) -> dict[str, Any]:
    """``{"frame": N | "mean", "channel": N, "variable": NAME}``, each key optional."""
    d = _obj(value, where)
    out: dict[str, Any] = {}
    for k, v in d.items():
        w = f"{where}.{k}"
        if k in ("frame", "channel"):
            if k == "frame" and v == "mean":
                out[k] = v
            elif isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                out[k] = v
            else:
                raise InputError(
                    f"{w}: expected a number from 0" + (" or 'mean'" if k == "frame" else "")
                )
        elif k == "variable":
            out[k] = _str(v, w)
        else:
            raise InputError(f"{w}: unknown key (expected frame, channel or variable)")
    return out


@dataclass
class InputFile:
    """An input file: where it is (relative to the session), its hash, role and modality.

    ``acquisition`` holds MPI acquisition parameters
    (:meth:`mpi_viewer.geometry.volume.Acquisition.to_dict`) as they were when the session was
    saved.
    """

    role: str
    path: str
    sha256: str
    modality: str | None = None
    name: str | None = None
    acquisition: dict[str, Any] = field(default_factory=dict)
    #: Files read with this one (sidecar JSON, detached data): ``[{"path", "sha256"}]``,
    #: paths relative to the session (:func:`mpi_viewer.io.guards.input_files_of`).
    companions: list[dict[str, str]] = field(default_factory=list)
    # which part of a multi-part image file was read: {"frame": N | "mean",
    # "channel": N, "variable": NAME} (MDF frames/channels, .mat/.npz arrays)
    selection: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {"role": self.role, "path": self.path, "sha256": self.sha256}
        if self.companions:
            d["companions"] = [dict(c) for c in self.companions]
        if self.modality is not None:
            d["modality"] = self.modality
        if self.name is not None:
            d["name"] = self.name
        if self.acquisition:
            d["acquisition"] = dict(self.acquisition)
        if self.selection:
            d["selection"] = dict(self.selection)
        return d

    @classmethod
    def from_dict(
        cls, d: Any, *, where: str = "input", warnings: list[str] | None = None
    ) -> InputFile:
        f = _Fields(d, where, warnings)
        out = cls(
            role=f("role", _choice(ROLES)),
            path=f("path", _rel_path),
            sha256=f("sha256", _sha256_text),
            modality=f("modality", _opt(_choice(MODALITIES)), None),
            name=f("name", _opt(_str), None),
            acquisition=f("acquisition", _json_obj, dict),
            companions=f("companions", _companions, list),
            selection=f("selection", _selection, dict),
        )
        f.done()
        from mpi_viewer.geometry.volume import Acquisition

        try:
            Acquisition.from_dict(out.acquisition)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"{where}.acquisition: {exc}") from None
        return out


@dataclass
class LayerDisplay:
    """How one layer was shown in napari."""

    name: str
    colormap: str | None = None
    contrast_limits: list[float] | None = None
    visible: bool = True
    opacity: float = 1.0
    blending: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(
        cls, d: Any, *, where: str = "layer", warnings: list[str] | None = None
    ) -> LayerDisplay:
        f = _Fields(d, where, warnings)
        out = cls(
            name=f("name", _str),
            colormap=f("colormap", _opt(_str), None),
            contrast_limits=f("contrast_limits", _opt(_vec(2)), None),
            visible=f("visible", _bool, True),
            opacity=f("opacity", _float, 1.0),
            blending=f("blending", _opt(_str), None),
        )
        f.done()
        if not 0.0 <= out.opacity <= 1.0:
            raise InputError(f"{where}.opacity: {out.opacity} is not between 0 and 1")
        return out


@dataclass
class Landmarks:
    """Paired fiducials: names and positions in mm (x, y, z) in each image's own frame."""

    names: list[str] = field(default_factory=list)
    fixed_xyz_mm: list[list[float]] = field(default_factory=list)
    moving_xyz_mm: list[list[float]] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(
        cls, d: Any, *, where: str = "landmarks", warnings: list[str] | None = None
    ) -> Landmarks:
        f = _Fields(d, where, warnings)
        out = cls(
            names=f("names", _list_of(_str)),
            fixed_xyz_mm=f("fixed_xyz_mm", _points),
            moving_xyz_mm=f("moving_xyz_mm", _points),
            excluded=f("excluded", _list_of(_str), list),
        )
        f.done()
        n = len(out.names)
        if len(out.fixed_xyz_mm) != n or len(out.moving_xyz_mm) != n:
            raise InputError(
                f"{where}: {n} names but {len(out.fixed_xyz_mm)} fixed and "
                f"{len(out.moving_xyz_mm)} moving points"
            )
        if len(set(out.names)) != n:
            raise InputError(f"{where}.names: duplicate names")
        unknown = [e for e in out.excluded if e not in out.names]
        if unknown:
            raise InputError(f"{where}.excluded: {unknown[0]!r} is not a landmark name")
        return out


def _mold_choice(value: Any, where: str) -> dict[str, Any]:
    """A template registration's settings and pose choice (see ``RegistrationSection.mold``)."""
    f = _Fields(value, where, None)
    out = {
        "tolerance_mm": f("tolerance_mm", _opt(_float), None),
        "max_rotation_deg": f("max_rotation_deg", _opt(_float), None),
        "pose": f("pose", _opt(_int), None),
        "decided_by": f("decided_by", _opt(_choice(("wells", "prior", "user"))), None),
    }
    extra = sorted(k for k in f.d if k not in f.seen)
    if extra:
        raise InputError(f"{where}: unknown key {extra[0]!r}")
    if out["pose"] is not None and out["pose"] < 1:
        raise InputError(f"{where}.pose: a candidate pose is numbered from 1")
    return {k: v for k, v in out.items() if v is not None}


@dataclass
class RegistrationSection:
    """How the MPI (moving) was registered to the anatomy (fixed), and the result.

    ``method`` is ``"landmarks"`` (the stored landmarks are fitted), ``"template"``
    (fiducials detected and matched to ``template``, then fitted) or ``"transform"``
    (a given transform, e.g. a saved mold/bed ``.tfm``, used as stored). ``matrix`` and
    ``translation`` are the fitted ITK fixed → moving transform (mm), ``transform_file``
    the ``.tfm`` written beside the session.
    """

    fixed: str = "mri"
    moving: str = "mpi"
    method: str = "landmarks"
    model: str = "rigid"
    template: str | None = None
    landmarks: Landmarks = field(default_factory=Landmarks)
    fle_mm: float | None = None
    matrix: list[list[float]] | None = None
    translation: list[float] | None = None
    rms_fre_mm: float | None = None
    transform_file: str | None = None
    transform_sha256: str | None = None
    #: method "template": how the wells were matched and the pose chosen
    #: (``tolerance_mm``, ``max_rotation_deg``, ``pose``, ``decided_by``), so that replay
    #: takes the same candidate pose (the user's click in the mold dock, ``--pose N``)
    mold: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["landmarks"] = self.landmarks.to_dict()
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(
        cls, d: Any, *, where: str = "registration", warnings: list[str] | None = None
    ) -> RegistrationSection:
        f = _Fields(d, where, warnings)
        out = cls(
            fixed=f("fixed", _choice(ROLES), "mri"),
            moving=f("moving", _choice(ROLES), "mpi"),
            method=f("method", _choice(("landmarks", "template", "transform"))),
            model=f("model", _choice(("rigid", "similarity", "affine")), "rigid"),
            template=f("template", _opt(_str), None),
            landmarks=f(
                "landmarks",
                lambda v, w: Landmarks.from_dict(v, where=w, warnings=warnings),
                Landmarks,
            ),
            fle_mm=f("fle_mm", _opt(_float), None),
            matrix=f("matrix", _opt(_matrix3), None),
            translation=f("translation", _opt(_vec(3)), None),
            rms_fre_mm=f("rms_fre_mm", _opt(_float), None),
            transform_file=f("transform_file", _opt(_rel_path), None),
            transform_sha256=f("transform_sha256", _opt(_sha256_text), None),
            mold=f("mold", _opt(_mold_choice), None),
        )
        f.done()
        if out.method == "template" and not out.template:
            raise InputError(f"{where}: method 'template' needs a template name")
        if out.method == "landmarks" and not out.landmarks.names:
            raise InputError(f"{where}: method 'landmarks' needs landmarks")
        if out.method == "transform" and (out.matrix is None or out.translation is None):
            raise InputError(f"{where}: method 'transform' needs the matrix and translation")
        return out


@dataclass
class MaskFile:
    """A label image of manual ROIs on the MPI grid (NRRD or NIfTI), hashed.

    Written beside the session by the napari session dock (NRRD: double-precision
    geometry), or a ``quantify --mask`` input named where it lies (never written).
    ``names`` are the ROI names in increasing label order; without them an ROI is
    named after the mask (``<name>_<label>`` when it holds several labels).
    """

    name: str
    path: str
    sha256: str
    names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not self.names:
            d.pop("names")
        return d

    @classmethod
    def from_dict(
        cls, d: Any, *, where: str = "mask", warnings: list[str] | None = None
    ) -> MaskFile:
        f = _Fields(d, where, warnings)
        out = cls(
            name=f("name", _str),
            path=f("path", _rel_path),
            sha256=f("sha256", _sha256_text),
            names=f("names", _list_of(_str), list),
        )
        f.done()
        return out


@dataclass
class ROISection:
    """ROIs of one method: ``params`` is ``roi.ROIParams.to_dict()``, seeds in MPI mm."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    seeds_xyz_mm: list[list[float]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    image: str = "mpi"
    masks: list[MaskFile] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["masks"] = [m.to_dict() for m in self.masks]
        return d

    @classmethod
    def from_dict(
        cls, d: Any, *, where: str = "rois", warnings: list[str] | None = None
    ) -> ROISection:
        f = _Fields(d, where, warnings)
        out = cls(
            method=f("method", _str),
            params=f("params", _json_obj, dict),
            seeds_xyz_mm=f("seeds_xyz_mm", _points, list),
            names=f("names", _list_of(_str), list),
            image=f("image", _choice(ROLES), "mpi"),
            masks=f(
                "masks",
                lambda v, w: [
                    MaskFile.from_dict(m, where=_where(w, i), warnings=warnings)
                    for i, m in enumerate(_list(v, w))
                ],
                list,
            ),
        )
        f.done()
        if out.names and len(out.names) != len(out.seeds_xyz_mm):
            raise InputError(f"{where}: {len(out.names)} names for {len(out.seeds_xyz_mm)} seeds")
        if not out.seeds_xyz_mm and not out.masks:
            raise InputError(f"{where}: no seeds and no masks")
        return out


@dataclass
class CalibrationSection:
    """The calibration: made from the ``phantoms`` input (``source="phantoms"``) with the
    ROI parameters of ``roi_params`` (the targets' by default), read from the
    ``calibration`` input file (``"file"``), or taken as stored (``"stored"``). ``calibration`` is ``Calibration.to_dict()`` with its
    raw points; ``options`` are the fit options (e.g. through the origin, weighting)."""

    source: str = "phantoms"
    calibration: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    roi_params: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(
        cls, d: Any, *, where: str = "calibration", warnings: list[str] | None = None
    ) -> CalibrationSection:
        f = _Fields(d, where, warnings)
        out = cls(
            source=f("source", _choice(("phantoms", "file", "stored"))),
            calibration=f("calibration", _json_obj, dict),
            options=f("options", _json_obj, dict),
            roi_params=f("roi_params", _opt(_json_obj), None),
        )
        f.done()
        if out.source == "stored" and not out.calibration:
            raise InputError(f"{where}: source 'stored' needs the calibration")
        return out


@dataclass
class CellsSection:
    """Iron per cell, mean ± SD in pg Fe/cell (e.g. from ICP-MS)."""

    mean_pg: float
    sd_pg: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(
        cls, d: Any, *, where: str = "cells", warnings: list[str] | None = None
    ) -> CellsSection:
        f = _Fields(d, where, warnings)
        out = cls(mean_pg=f("mean_pg", _float), sd_pg=f("sd_pg", _float, 0.0))
        f.done()
        if out.mean_pg <= 0 or out.sd_pg < 0:
            raise InputError(
                f"{where}: iron per cell {out.mean_pg} ± {out.sd_pg} pg is not positive"
            )
        return out


def software_versions() -> dict[str, str]:
    """Versions of mpi-viewer and the libraries that compute its numbers (no imports)."""
    from importlib import metadata

    from mpi_viewer import __version__

    out = {"mpi_viewer": __version__, "python": sys.version.split()[0]}
    for key, dist in (
        ("numpy", "numpy"),
        ("SimpleITK", "SimpleITK"),
        ("scipy", "scipy"),
        ("scikit-image", "scikit-image"),
    ):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # pragma: no cover
            out[key] = "absent"
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class Session:
    """A whole analysis. ``path`` and ``warnings`` are set by :func:`load_session` and
    are not saved."""

    inputs: list[InputFile] = field(default_factory=list)
    layers: list[LayerDisplay] = field(default_factory=list)
    registration: RegistrationSection | None = None
    rois: list[ROISection] = field(default_factory=list)
    calibration: CalibrationSection | None = None
    cells: CellsSection | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    software: dict[str, str] = field(default_factory=software_versions)
    created: str = field(default_factory=_now)
    modified: str | None = None
    notes: str = ""
    path: Path | None = field(default=None, compare=False, repr=False)
    warnings: list[str] = field(default_factory=list, compare=False, repr=False)

    # -- access ---------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        if self.path is None:
            raise InputError("session: not saved yet, so its inputs have no folder")
        return self.path.resolve().parent

    def input(self, role: str, *, required: bool = True) -> InputFile | None:
        """The (first) input of a role."""
        for inp in self.inputs:
            if inp.role == role:
                return inp
        if required:
            raise InputError(f"session {self.path}: no {role!r} input")
        return None

    def resolve(self, relative: str) -> Path:
        """Absolute path of a file named relative to the session's folder."""
        try:
            return (self.folder / relative).resolve()
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(
                f"session {self.path}: path {relative!r} cannot be resolved ({exc})"
            ) from None

    # -- JSON -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "modified": self.modified,
            "software": dict(self.software),
            "inputs": [i.to_dict() for i in self.inputs],
            "layers": [ly.to_dict() for ly in self.layers],
            "registration": None if self.registration is None else self.registration.to_dict(),
            "rois": [r.to_dict() for r in self.rois],
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "cells": None if self.cells is None else self.cells.to_dict(),
            "results": [_encode_row(r) for r in self.results],
            "summary": _encode_value(self.summary),
            "notes": self.notes,
        }
        return d

    @classmethod
    def from_dict(cls, d: Any, *, warnings: list[str] | None = None) -> Session:
        """A validated session from its (current-version) JSON dict."""
        w = [] if warnings is None else warnings
        f = _Fields(d, "session", w)
        f("format", _opt(_str), None)
        version = f("schema_version", _int)
        if version != SCHEMA_VERSION:
            raise InputError(f"session: schema_version {version}, expected {SCHEMA_VERSION}")

        def section(cls_, key):
            return lambda v, where: (
                None if v is None else cls_.from_dict(v, where=where, warnings=w)
            )

        def sections(cls_):
            return lambda v, where: [
                cls_.from_dict(x, where=_where(where, i), warnings=w)
                for i, x in enumerate(_list(v, where))
            ]

        out = cls(
            created=f("created", _str, ""),
            modified=f("modified", _opt(_str), None),
            software=f(
                "software",
                lambda v, wh: {_str(k, wh): _str(x, _where(wh, k)) for k, x in _obj(v, wh).items()},
                dict,
            ),
            inputs=f("inputs", sections(InputFile), list),
            layers=f("layers", sections(LayerDisplay), list),
            registration=f("registration", section(RegistrationSection, "registration"), None),
            rois=f("rois", sections(ROISection), list),
            calibration=f("calibration", section(CalibrationSection, "calibration"), None),
            cells=f("cells", section(CellsSection, "cells"), None),
            results=f(
                "results",
                lambda v, wh: [_decode_row(r, _where(wh, i)) for i, r in enumerate(_list(v, wh))],
                list,
            ),
            summary=f("summary", lambda v, wh: _decode_value(_json_obj(v, wh)), dict),
            notes=f("notes", _str, ""),
        )
        f.done()
        out.warnings = w
        out._check_references()
        return out

    def _check_references(self) -> None:
        roles = [i.role for i in self.inputs]
        for role in ("mri", "ct", "mpi", "phantoms", "calibration"):
            if roles.count(role) > 1:
                raise InputError(f"session.inputs: more than one {role!r} input")
        needed = []
        if self.registration is not None:
            needed += [self.registration.fixed, self.registration.moving]
        needed += [r.image for r in self.rois]
        if self.calibration is not None and self.calibration.source in ("phantoms", "file"):
            needed.append("phantoms" if self.calibration.source == "phantoms" else "calibration")
        for role in needed:
            if role not in roles:
                raise InputError(f"session: needs a {role!r} input, none is listed")
        if self.cells is not None and self.calibration is None:
            raise InputError("session.cells: iron per cell needs a calibration")

    # -- files ----------------------------------------------------------------------
    def all_files(self) -> list[tuple[str, str, str | None]]:
        """Every file the session names: (what, relative path, sha256 or None)."""
        out = []
        for i in self.inputs:
            out.append((f"input {i.role}", i.path, i.sha256))
            out += [
                (f"input {i.role} (file read with it)", c["path"], c["sha256"])
                for c in i.companions
            ]
        for r in self.rois:
            out += [(f"mask {m.name}", m.path, m.sha256) for m in r.masks]
        if self.registration is not None and self.registration.transform_file:
            out.append(
                ("transform", self.registration.transform_file, self.registration.transform_sha256)
            )
        return out

    def template_file(self) -> Path | None:
        """The registration template when the session names it as a file (``*.json`` or a
        path), resolved against the session's folder; None for a template name."""
        reg = self.registration
        t = None if reg is None else reg.template
        if not t or not (t.lower().endswith(".json") or "/" in t or "\\" in t):
            return None
        return self.resolve(t)

    def files_outside_folder(self) -> list[str]:
        """Relative paths that resolve outside the session's folder."""
        folder = self.folder
        out = []
        files = [rel for _, rel, _ in self.all_files()]
        if self.template_file() is not None:
            files.append(self.registration.template)
        for rel in files:
            p = self.resolve(rel)
            if os.path.isabs(rel) or not _is_within(p, folder):
                out.append(rel)
        return out

    def verify_inputs(self, *, allow_changed: bool = False) -> list[str]:
        """Check that every input exists and has its recorded SHA-256.

        Masks and the transform file are checked too (they are written beside the
        session by mpi-viewer; a changed one is reported the same way).

        Returns
        -------
        list of str
            Notes about changed files (only with ``allow_changed=True``).

        Raises
        ------
        InputError
            A missing file, or a changed one unless ``allow_changed``.
        """
        notes = []
        for what, rel, digest in self.all_files():
            p = self.resolve(rel)
            if not p.exists():
                raise InputError(f"{p}: {what} named by session {self.path.name} does not exist")
            if digest is None:
                continue
            actual = sha256_file(p)
            if actual != digest:
                msg = f"{p}: {what} has changed since the session was saved (SHA-256 differs)"
                if not allow_changed:
                    raise InputError(msg + "; use --allow-changed-inputs to replay anyway")
                notes.append(msg)
        return notes


def _is_within(p: Path, folder: Path) -> bool:
    try:
        p.relative_to(folder)
        return True
    except ValueError:
        return False


# -- non-finite numbers in results ------------------------------------------------------------
def _encode_value(v: Any) -> Any:
    """Strict JSON: NaN → null, ±inf → "inf"/"-inf"; numpy scalars → Python."""
    if isinstance(v, dict):
        return {str(k): _encode_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_encode_value(x) for x in v]
    if hasattr(v, "item") and callable(v.item) and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (TypeError, ValueError):
            pass
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _decode_value(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _decode_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode_value(x) for x in v]
    if v == "inf":
        return math.inf
    if v == "-inf":
        return -math.inf
    if v is None:
        return math.nan
    return v


def _encode_row(row: dict[str, Any]) -> dict[str, Any]:
    return {str(k): _encode_value(v) for k, v in row.items()}


def _decode_row(value: Any, where: str) -> dict[str, Any]:
    d = _obj(value, where)
    return {_str(k, where): _decode_value(_cell(v, _where(where, k))) for k, v in d.items()}


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


#: ``{version: function}`` turning a dict of that version into the next version.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _migrate_0_to_1}


def migrate(d: Any, *, where: str = "session") -> tuple[dict[str, Any], int]:
    """Bring a session dict up to :data:`SCHEMA_VERSION`; returns (dict, original version)."""
    d = _obj(d, where)
    if "schema_version" not in d:
        raise InputError(f"{where}: not an mpi-viewer session (no schema_version)")
    version = _int(d["schema_version"], f"{where}.schema_version")
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
        session = Session.from_dict(d, warnings=warnings)
    except InputError as exc:
        msg = str(exc)
        if not msg.startswith(source):
            msg = f"{source}: {msg}"
        raise InputError(msg) from None
    except RecursionError:
        raise InputError(f"{source}: JSON nested too deeply") from None
    if original != SCHEMA_VERSION:
        warnings.append(f"{source}: migrated from schema_version {original} to {SCHEMA_VERSION}")
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
    session.modified = _now()
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
            {"path": relative_path(c, session_path), "sha256": sha256_file(c)}
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
