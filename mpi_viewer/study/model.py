"""The typed Study: every input and decision of an analysis (pydantic v2 models).

A session file *is* this model serialized (``schema_version`` 2, :mod:`mpi_viewer.study.session`
reads, migrates and writes it). The sections:

- ``inputs``: the images with their **role** (anatomy ``mri``/``ct``, ``mpi``, others) and
  the other input files (phantoms, calibration, fiducial lists…), each a path relative to
  the session with its SHA-256, or an image held only in memory (no path: it can be shown
  and measured, not replayed);
- ``registration``: ONE transform (:class:`TransformModel`, fixed → moving, ITK convention)
  with its provenance (``method``: landmarks, mold template, intensity refinement, a
  transform file or a transform given as is);
- ``rois``: ROI definitions (seeds, method, parameters, painted masks) — the results are
  the ``results`` rows;
- ``calibration``: how it is made (phantoms, a file, or stored) and applied (confidence);
- ``cells``: iron per cell (pg Fe/cell, mean ± SD; default :data:`IRON_PER_CELL_PG`);
- ``report``: report settings.

Validation is pydantic's (strict types, finite numbers); :func:`validate_study` turns a
validation error into one :class:`~mpi_viewer.errors.InputError` line naming the field, and
lists unknown keys as warnings instead of refusing them.
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from mpi_viewer.calibration.cells import IRON_PER_CELL_PG, IRON_PER_CELL_SD_PG
from mpi_viewer.errors import InputError

SCHEMA_VERSION = 2
FORMAT_NAME = "mpi-viewer session"

#: Roles an input file can have (images: ``mri``, ``ct`` = anatomy; ``mpi``; ``other``).
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
Role = Literal[
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
]
#: Image roles that are anatomy (the fixed image of a registration).
ANATOMY_ROLES = ("mri", "ct")
MODALITIES = ("MPI", "MRI", "CT", "unknown")
#: Where a registration's transform comes from.
REGISTRATION_METHODS = ("landmarks", "template", "intensity", "file", "transform")
#: Registration methods whose transform is used as stored (not recomputed).
STORED_TRANSFORM_METHODS = ("intensity", "transform")
DEFAULT_CONFIDENCE = 0.95


# -- field types ------------------------------------------------------------------------------
def _finite_json(v: Any, depth: int = 0) -> Any:
    if depth > 32:
        raise ValueError("nested too deeply")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"expected a finite number, got {v!r}")
    if isinstance(v, list):
        return [_finite_json(x, depth + 1) for x in v]
    if isinstance(v, dict):
        return {k: _finite_json(x, depth + 1) for k, x in v.items()}
    return v


def _path(v: str) -> str:
    if not v or "\x00" in v or len(v) > 4096:
        raise ValueError(f"{v[:80]!r} is not a usable file path")
    return v


def _sha256(v: str) -> str:
    v = v.lower()
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise ValueError("not a SHA-256 hex digest")
    return v


JsonObject = Annotated[dict[str, Any], AfterValidator(_finite_json)]
RelPath = Annotated[str, AfterValidator(_path)]
Sha256 = Annotated[str, AfterValidator(_sha256)]
Vec3 = Annotated[list[float], Field(min_length=3, max_length=3)]
Matrix3 = Annotated[list[Vec3], Field(min_length=3, max_length=3)]
#: A seed: (x, y, z) mm, or (x, y) on a 2-D image.
Seed = Annotated[list[float], Field(min_length=2, max_length=3)]


class _Section(BaseModel):
    """Strict types (no "1.5" for a number), finite numbers, unknown keys kept aside
    (reported by :func:`validate_study`, then dropped)."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="allow")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Positional arguments in field order (as the dataclasses of schema 1 took them)."""
        if args:
            names = list(type(self).model_fields)
            if len(args) > len(names):
                raise TypeError(f"{type(self).__name__}: too many positional arguments")
            kwargs.update(zip(names, args, strict=False))
        super().__init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="python", exclude_none=True)

    @classmethod
    def from_dict(cls, d: Any, *, where: str | None = None, warnings: list[str] | None = None):
        """Validate one section (a JSON object); :class:`InputError` names the field."""
        return validate_study(cls, d, where=where or cls.__name__, warnings=warnings)


# -- sections ---------------------------------------------------------------------------------
class InputFile(_Section):
    """An input: role, path relative to the session and SHA-256 (both absent for an image
    held only in memory; the hash absent for a run that saves no session), modality and, for MPI, the acquisition metadata
    (:meth:`mpi_viewer.geometry.volume.Acquisition.to_dict`)."""

    role: Role
    path: RelPath | None = None
    sha256: Sha256 | None = None
    modality: Literal["MPI", "MRI", "CT", "unknown"] | None = None
    name: str | None = None
    acquisition: JsonObject = Field(default_factory=dict)

    @property
    def in_memory(self) -> bool:
        return self.path is None

    @model_validator(mode="after")
    def _check(self) -> InputFile:
        if self.path is None and self.sha256 is not None:
            raise ValueError("an in-memory input has no sha256")
        if self.acquisition:
            from mpi_viewer.geometry.volume import Acquisition

            try:
                Acquisition.from_dict(self.acquisition)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ValueError(f"acquisition: {exc}") from None
        return self

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if not self.acquisition:
            d.pop("acquisition", None)
        return d


class LayerDisplay(_Section):
    """How one layer was shown in napari."""

    name: str
    colormap: str | None = None
    contrast_limits: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None
    visible: bool = True
    opacity: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    blending: str | None = None


class Landmarks(_Section):
    """Paired fiducials: names and positions in mm (x, y, z) in each image's own frame."""

    names: list[str] = Field(default_factory=list)
    fixed_xyz_mm: list[Vec3] = Field(default_factory=list)
    moving_xyz_mm: list[Vec3] = Field(default_factory=list)
    excluded: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Landmarks:
        n = len(self.names)
        if len(self.fixed_xyz_mm) != n or len(self.moving_xyz_mm) != n:
            raise ValueError(
                f"{n} names but {len(self.fixed_xyz_mm)} fixed and "
                f"{len(self.moving_xyz_mm)} moving points"
            )
        if len(set(self.names)) != n:
            raise ValueError("duplicate landmark names")
        unknown = [e for e in self.excluded if e not in self.names]
        if unknown:
            raise ValueError(f"excluded {unknown[0]!r} is not a landmark name")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="python")


class TransformModel(_Section):
    """A fixed → moving linear transform as saved (mm, ITK (x, y, z)): the serialized form of
    :class:`mpi_viewer.geometry.transform.Transform`."""

    matrix: Matrix3
    translation: Vec3
    model: Literal["rigid", "similarity", "affine"] = "affine"

    def to_transform(self):
        from mpi_viewer.geometry.transform import Transform

        return Transform(self.matrix, self.translation, self.model)

    @classmethod
    def of(cls, transform) -> TransformModel:
        from mpi_viewer.geometry.transform import Transform

        t = Transform.from_any(transform)
        return cls(matrix=t.matrix.tolist(), translation=t.translation.tolist(), model=t.model)


class RegistrationSection(_Section):
    """How the MPI (moving) was registered to the anatomy (fixed), and the result.

    ``method`` is the provenance: ``"landmarks"`` (the stored landmarks are fitted),
    ``"template"`` (fiducials detected and matched to ``template``, then fitted),
    ``"file"`` (the ITK ``.tfm`` named by ``transform_file``, hashed, is read),
    ``"intensity"`` (an intensity refinement, ``refinement`` its parameters, whose
    result ``transform`` is used as stored) or ``"transform"`` (a transform given as is).
    ``transform`` is the fitted fixed → moving transform, ``transform_file`` the ``.tfm``
    written beside the session.
    """

    fixed: Role = "mri"
    moving: Role = "mpi"
    method: Literal["landmarks", "template", "intensity", "file", "transform"]
    model: Literal["rigid", "similarity", "affine"] = "rigid"
    template: str | None = None
    landmarks: Landmarks = Field(default_factory=Landmarks)
    fle_mm: float | None = None
    transform: TransformModel | None = None
    refinement: JsonObject | None = None
    rms_fre_mm: float | None = None
    transform_file: RelPath | None = None
    transform_sha256: Sha256 | None = None

    @model_validator(mode="before")
    @classmethod
    def _flat_matrix(cls, d: Any) -> Any:
        """``matrix=``/``translation=`` (the version-1 form) make the ``transform``."""
        if isinstance(d, dict) and ("matrix" in d or "translation" in d):
            d = dict(d)
            m, t = d.pop("matrix", None), d.pop("translation", None)
            if m is not None or t is not None:
                d["transform"] = {"matrix": m, "translation": t, "model": d.get("model", "rigid")}
        return d

    @model_validator(mode="after")
    def _check(self) -> RegistrationSection:
        if self.method == "template" and not self.template:
            raise ValueError("method 'template' needs a template name")
        if self.method == "landmarks" and not self.landmarks.names:
            raise ValueError("method 'landmarks' needs landmarks")
        if self.method in STORED_TRANSFORM_METHODS and self.transform is None:
            raise ValueError(f"method {self.method!r} needs the transform")
        if self.method == "file" and not self.transform_file:
            raise ValueError("method 'file' needs the transform_file")
        return self

    @property
    def matrix(self) -> list[list[float]] | None:
        return None if self.transform is None else self.transform.matrix

    @property
    def translation(self) -> list[float] | None:
        return None if self.transform is None else self.transform.translation


class MaskFile(_Section):
    """A label image of manual ROIs on the MPI grid (NRRD or NIfTI), hashed.

    ``names`` are the ROI names in increasing label order; without them an ROI is named
    after the mask (``<name>_<label>`` when it holds several labels).
    """

    name: str
    path: RelPath
    sha256: Sha256
    names: list[str] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if not self.names:
            d.pop("names")
        return d


class ROISection(_Section):
    """ROIs of one method: ``params`` is ``roi.ROIParams.to_dict()``, seeds in MPI mm."""

    method: str
    params: JsonObject = Field(default_factory=dict)
    seeds_xyz_mm: list[Seed] = Field(default_factory=list)
    names: list[str] = Field(default_factory=list)
    image: Role = "mpi"
    masks: list[MaskFile] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> ROISection:
        if self.names and len(self.names) != len(self.seeds_xyz_mm):
            raise ValueError(f"{len(self.names)} names for {len(self.seeds_xyz_mm)} seeds")
        if not self.seeds_xyz_mm and not self.masks:
            raise ValueError("no seeds and no masks")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="python")


class CalibrationSection(_Section):
    """The calibration: made from the ``phantoms`` input (``source="phantoms"``) with the ROI
    parameters of ``roi_params`` (the targets' by default), read from the ``calibration``
    input file (``"file"``), or taken as stored (``"stored"``); ``calibration`` is
    ``Calibration.to_dict()`` with its raw points, ``options`` the fit options. Applied
    with intervals of ``confidence``."""

    source: Literal["phantoms", "file", "stored"]
    calibration: JsonObject = Field(default_factory=dict)
    options: JsonObject = Field(default_factory=dict)
    roi_params: JsonObject | None = None
    confidence: Annotated[float, Field(gt=0.0, lt=1.0)] = DEFAULT_CONFIDENCE

    @model_validator(mode="after")
    def _check(self) -> CalibrationSection:
        if self.source == "stored" and not self.calibration:
            raise ValueError("source 'stored' needs the calibration")
        return self


class CellsSection(_Section):
    """Iron per cell, mean ± SD in pg Fe/cell (e.g. from ICP-MS)."""

    mean_pg: float = IRON_PER_CELL_PG
    sd_pg: float = IRON_PER_CELL_SD_PG

    @model_validator(mode="after")
    def _check(self) -> CellsSection:
        if not self.mean_pg > 0 or self.sd_pg < 0:
            raise ValueError(f"iron per cell {self.mean_pg} ± {self.sd_pg} pg is not positive")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="python")


class ReportSettings(_Section):
    """How ``mpi-viewer report`` presents the study."""

    title: str = "mpi-viewer study report"


# -- the study --------------------------------------------------------------------------------
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
        ("pydantic", "pydantic"),
    ):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # pragma: no cover
            out[key] = "absent"
    return out


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _cell(v: Any) -> Any:
    """One results-table cell: a string, a number, true/false or null (NaN); "inf" → inf."""
    if v is None:
        return math.nan
    if v == "inf":
        return math.inf
    if v == "-inf":
        return -math.inf
    if isinstance(v, (bool, str, int, float)):
        return v
    if hasattr(v, "item"):  # numpy scalar
        return v.item()
    raise ValueError("a results cell must be a string, number, boolean or null")


def _decode(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if v is None:
        return math.nan
    if v == "inf":
        return math.inf
    if v == "-inf":
        return -math.inf
    return v


def encode_value(v: Any) -> Any:
    """Strict JSON: NaN → null, ±inf → "inf"/"-inf"; numpy scalars → Python."""
    if isinstance(v, dict):
        return {str(k): encode_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [encode_value(x) for x in v]
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


class Study(_Section):
    """A whole analysis: the session file's content. ``path`` and ``warnings`` are set when
    it is loaded and are not saved."""

    model_config = ConfigDict(
        strict=True, allow_inf_nan=True, extra="allow", validate_assignment=False
    )

    format: str | None = FORMAT_NAME
    schema_version: Literal[2] = SCHEMA_VERSION
    created: str = Field(default_factory=now_iso)
    modified: str | None = None
    software: dict[str, str] = Field(default_factory=software_versions)
    inputs: list[InputFile] = Field(default_factory=list)
    layers: list[LayerDisplay] = Field(default_factory=list)
    registration: RegistrationSection | None = None
    rois: list[ROISection] = Field(default_factory=list)
    calibration: CalibrationSection | None = None
    cells: CellsSection | None = None
    report: ReportSettings = Field(default_factory=ReportSettings)
    results: list[dict[str, Any]] = Field(default_factory=list)
    summary: dict[str, Any] = Field(default_factory=dict)
    notes: str = ""

    _path: Path | None = PrivateAttr(default=None)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @field_validator("results", mode="before")
    @classmethod
    def _rows(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [
                {k: _cell(x) for k, x in r.items()} if isinstance(r, dict) else r for r in v
            ]
        return v

    @field_validator("summary", mode="after")
    @classmethod
    def _summary(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _decode(_finite_json(encode_value(v)))

    @model_validator(mode="after")
    def _check_references(self) -> Study:
        roles = [i.role for i in self.inputs]
        for role in ("mri", "ct", "mpi", "phantoms", "calibration"):
            if roles.count(role) > 1:
                raise ValueError(f"more than one {role!r} input")
        needed = []
        if self.registration is not None:
            needed += [self.registration.fixed, self.registration.moving]
        needed += [r.image for r in self.rois]
        if self.calibration is not None and self.calibration.source in ("phantoms", "file"):
            needed.append("phantoms" if self.calibration.source == "phantoms" else "calibration")
        for role in needed:
            if role not in roles:
                raise ValueError(f"needs a {role!r} input, none is listed")
        if self.cells is not None and self.calibration is None:
            raise ValueError("iron per cell needs a calibration")
        return self

    # -- not saved ----------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        return self._path

    @path.setter
    def path(self, value: str | Path | None) -> None:
        self._path = None if value is None else Path(value)

    @property
    def warnings(self) -> list[str]:
        return self._warnings

    @warnings.setter
    def warnings(self, value: list[str]) -> None:
        self._warnings = list(value)

    # -- roles --------------------------------------------------------------------------
    def input(self, role: str, *, required: bool = True) -> InputFile | None:
        """The (first) input of a role."""
        for inp in self.inputs:
            if inp.role == role:
                return inp
        if required:
            raise InputError(f"session {self.path}: no {role!r} input")
        return None

    @property
    def anatomy(self) -> InputFile | None:
        """The anatomy image (the registration's fixed image, else the MRI, else the CT)."""
        if self.registration is not None:
            return self.input(self.registration.fixed, required=False)
        return next((i for r in ANATOMY_ROLES for i in self.inputs if i.role == r), None)

    # -- files ------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        if self.path is None:
            raise InputError("session: not saved yet, so its inputs have no folder")
        return self.path.resolve().parent

    def resolve(self, relative: str) -> Path:
        """Absolute path of a file named relative to the session's folder."""
        try:
            return (self.folder / relative).resolve()
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(
                f"session {self.path}: path {relative!r} cannot be resolved ({exc})"
            ) from None

    def all_files(self) -> list[tuple[str, str, str | None]]:
        """Every file the session names: (what, relative path, sha256 or None)."""
        out = [(f"input {i.role}", i.path, i.sha256) for i in self.inputs if i.path]
        for r in self.rois:
            out += [(f"mask {m.name}", m.path, m.sha256) for m in r.masks]
        if self.registration is not None and self.registration.transform_file:
            reg = self.registration
            out.append(("transform", reg.transform_file, reg.transform_sha256))
        return out

    def files_outside_folder(self) -> list[str]:
        """Relative paths that resolve outside the session's folder."""
        import os

        folder = self.folder
        out = []
        for _, rel, _ in self.all_files():
            p = self.resolve(rel)
            if os.path.isabs(rel) or not p.is_relative_to(folder):
                out.append(rel)
        return out

    def verify_inputs(self, *, allow_changed: bool = False) -> list[str]:
        """Check that every input exists and has its recorded SHA-256 (masks and the
        transform file too); returns notes about changed files (``allow_changed``).

        Raises
        ------
        InputError
            A missing file, an image held only in memory, or a changed file unless
            ``allow_changed``.
        """
        from mpi_viewer.study.session import sha256_file

        for i in self.inputs:
            if i.in_memory:
                raise InputError(
                    f"session {self.path}: the {i.role} image {i.name or ''} is held only in "
                    "memory; save it to a file to replay the session"
                )
        notes = []
        for what, rel, digest in self.all_files():
            p = self.resolve(rel)
            if not p.exists():
                raise InputError(f"{p}: {what} named by session {self.path.name} does not exist")
            if digest is None:
                continue
            if sha256_file(p) != digest:
                msg = f"{p}: {what} has changed since the session was saved (SHA-256 differs)"
                if not allow_changed:
                    raise InputError(msg + "; use --allow-changed-inputs to replay anyway")
                notes.append(msg)
        return notes

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="python", exclude={"results", "summary"})
        d["format"] = FORMAT_NAME
        d["schema_version"] = SCHEMA_VERSION
        d["inputs"] = [i.to_dict() for i in self.inputs]
        d["layers"] = [ly.to_dict() for ly in self.layers]
        for key in ("registration", "calibration"):
            sec = getattr(self, key)
            d[key] = None if sec is None else sec.to_dict()
        d["rois"] = [r.to_dict() for r in self.rois]
        d["results"] = [{str(k): encode_value(v) for k, v in r.items()} for r in self.results]
        d["summary"] = encode_value(self.summary)
        return d


# -- validation -------------------------------------------------------------------------------
def _loc(where: str, loc: tuple) -> str:
    out = where
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before", "function-wrap") or "[" in str(part):
            continue
        else:
            out += f".{part}"
    return out


def _one_line(exc: ValidationError, where: str) -> str:
    e = exc.errors(include_url=False)[0]
    msg = str(e.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    got = e.get("input")
    if e.get("type") in ("float_type", "int_type", "string_type", "bool_type", "list_type"):
        msg += f", got {type(got).__name__}"
    elif e.get("type") == "missing":
        msg = "missing"
    text = f"{_loc(where, tuple(e.get('loc', ())))}: {msg}"
    return " ".join(text.split())[:400]


def _extras(model: BaseModel, where: str, out: list[str]) -> None:
    extra = model.__pydantic_extra__
    if extra:
        out.append(f"{where}: ignored unknown key(s) {', '.join(map(repr, sorted(extra)))}")
        extra.clear()
    for name in type(model).model_fields:
        v = getattr(model, name)
        if isinstance(v, BaseModel):
            _extras(v, f"{where}.{name}", out)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                if isinstance(x, BaseModel):
                    _extras(x, f"{where}.{name}[{i}]", out)


def validate_study(cls, d: Any, *, where: str = "session", warnings: list[str] | None = None):
    """``cls.model_validate(d)`` with one-line :class:`InputError` naming the field; unknown
    keys go to ``warnings`` (and are dropped)."""
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(d).__name__}")
    try:
        out = cls.model_validate(d)
    except ValidationError as exc:
        raise InputError(_one_line(exc, where)) from None
    except (OverflowError, RecursionError):
        raise InputError(f"{where}: a number is too large or the JSON is nested too deeply") from None
    _extras(out, where, warnings if warnings is not None else [])
    return out
