"""The sections of a Study (pydantic v2 models): inputs, layer display, registration with its
one transform, ROI definitions and masks, calibration, cells, report settings.

Strict types (no "1.5" for a number), finite numbers; a section's rule that ties fields
together is a model validator whose message becomes the one-line
:class:`~mpi_viewer.errors.InputError` (:func:`~mpi_viewer.study._validation.validate_study`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from mpi_viewer.defaults import CONFIDENCE, IRON_PER_CELL_PG, IRON_PER_CELL_SD_PG

SCHEMA_VERSION = 2
FORMAT_NAME = "mpi-viewer session"

#: Roles an input file can have (images: ``mri``, ``ct`` = anatomy; ``mpi``; ``other``).
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
ROLES: tuple[str, ...] = get_args(Role)
#: Image roles that are anatomy (the fixed image of a registration), and every image role.
ANATOMY_ROLES = ("mri", "ct")
IMAGE_ROLES = ("mri", "ct", "mpi", "other")
MODALITIES = ("MPI", "MRI", "CT", "unknown")
#: Where a registration's transform comes from.
REGISTRATION_METHODS = ("landmarks", "template", "intensity", "file", "transform")
#: Registration methods whose transform is used as stored (not recomputed).
STORED_TRANSFORM_METHODS = ("intensity", "transform")
DEFAULT_CONFIDENCE = CONFIDENCE


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
        from mpi_viewer.study._validation import validate_study

        return validate_study(cls, d, where=where or cls.__name__, warnings=warnings)


# -- sections ---------------------------------------------------------------------------------
class FileRef(_Section):
    """A file read with an input (sidecar JSON, detached data): path relative to the
    session and SHA-256."""

    path: RelPath
    sha256: Sha256


class Selection(_Section):
    """Which part of a multi-part image file was read: the MDF frame (a number or
    ``"mean"``) and channel, the array of a ``.mat``/``.npz`` file by name."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")

    frame: Annotated[int, Field(ge=0)] | Literal["mean"] | None = None
    channel: Annotated[int, Field(ge=0)] | None = None
    variable: str | None = None

    def as_kwargs(self) -> dict[str, Any]:
        """The choices made, as :func:`mpi_viewer.io.images.read_volume` takes them."""
        return self.model_dump(exclude_none=True)


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
    #: Files read with this one (sidecar JSON, detached data), from
    #: :func:`mpi_viewer.io.guards.input_files_of`.
    companions: list[FileRef] = Field(default_factory=list)
    #: Which part of a multi-part file was read (MDF frame/channel, ``.mat``/``.npz`` array).
    selection: Selection = Field(default_factory=Selection)

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
        if not self.companions:
            d.pop("companions", None)
        if not d.get("selection"):
            d.pop("selection", None)
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


class MoldChoice(_Section):
    """How a template registration matched the wells and chose the mold's pose.

    ``tolerance_mm`` and ``max_rotation_deg`` (the orientation prior) as detected;
    ``pose`` the 1-based candidate used and ``decided_by`` who chose it (``"wells"``,
    ``"prior"`` or ``"user"``: the click in the mold dock, ``--pose N``). Replay takes
    the user's pose again; a pose the wells or the prior decided is decided again.
    """

    tolerance_mm: float | None = Field(None, gt=0)
    max_rotation_deg: float | None = Field(None, gt=0, le=180)
    pose: int | None = Field(None, ge=1)
    decided_by: Literal["wells", "prior", "user"] | None = None


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
    #: method "template": the matching settings and the pose choice (:class:`MoldChoice`)
    mold: MoldChoice | None = None

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


def _with_revision(params: Any) -> Any:
    """ROI parameters saved before measurement revisions were recorded (session schema 1,
    and schema 2 before the field) were measured with revision 1: recorded as such, so a
    replay measures them as they were measured."""
    if isinstance(params, dict) and "revision" not in params:
        return {**params, "revision": 1}
    return params


class ROISection(_Section):
    """ROIs of one method: ``params`` is ``roi.ROIParams.to_dict()``, seeds in MPI mm.

    ``params["revision"]`` is the measurement revision the ROIs were measured with
    (:attr:`mpi_viewer.roi.ROIParams.revision`); parameters without one are revision 1.
    """

    method: str
    params: JsonObject = Field(default_factory=dict)
    seeds_xyz_mm: list[Seed] = Field(default_factory=list)
    names: list[str] = Field(default_factory=list)
    image: Role = "mpi"
    masks: list[MaskFile] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        if isinstance(data, dict) and "params" in data:
            data = {**data, "params": _with_revision(data["params"])}
        return data

    @property
    def revision(self) -> int:
        """The measurement revision of these ROIs."""
        return int(self.params.get("revision", 1))

    @model_validator(mode="after")
    def _check(self) -> ROISection:
        if self.names and len(self.names) != len(self.seeds_xyz_mm):
            raise ValueError(f"{len(self.names)} names for {len(self.seeds_xyz_mm)} seeds")
        if not self.seeds_xyz_mm and not self.masks:
            raise ValueError("no seeds and no masks")
        if len({len(p) for p in self.seeds_xyz_mm}) > 1:
            raise ValueError("seeds of different dimensions (all (x, y, z) or all (x, y))")
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

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("roi_params"), dict):
            data = {**data, "roi_params": _with_revision(data["roi_params"])}
        return data

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
