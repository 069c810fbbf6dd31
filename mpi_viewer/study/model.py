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
from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from mpi_viewer.errors import InputError
from mpi_viewer.study._validation import validate_study  # noqa: F401
from mpi_viewer.study.sections import (  # noqa: F401  (re-exported: the model's parts)
    ANATOMY_ROLES,
    DEFAULT_CONFIDENCE,
    FORMAT_NAME,
    IMAGE_ROLES,
    IRON_PER_CELL_PG,
    IRON_PER_CELL_SD_PG,
    MODALITIES,
    REGISTRATION_METHODS,
    ROLES,
    SCHEMA_VERSION,
    STORED_TRANSFORM_METHODS,
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
    Selection,
    TransformModel,
    _finite_json,
    _Section,
)


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
            return [{k: _cell(x) for k, x in r.items()} if isinstance(r, dict) else r for r in v]
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
        cal = self.calibration
        if (
            cal is not None
            and cal.source == "phantoms"
            and cal.roi_params is None
            and not self.rois
        ):
            raise ValueError("calibration from phantoms needs roi_params or an ROI section")
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
    def images(self) -> list[InputFile]:
        """The images (anatomy, MPI, other) with their roles."""
        return [i for i in self.inputs if i.role in IMAGE_ROLES]

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
        out = []
        for i in self.inputs:
            if not i.path:
                continue
            out.append((f"input {i.role}", i.path, i.sha256))
            out += [(f"input {i.role} (file read with it)", c.path, c.sha256) for c in i.companions]
        for r in self.rois:
            out += [(f"mask {m.name}", m.path, m.sha256) for m in r.masks]
        if self.registration is not None and self.registration.transform_file:
            reg = self.registration
            out.append(("transform", reg.transform_file, reg.transform_sha256))
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
        import os

        folder = self.folder
        out = []
        files = [rel for _, rel, _ in self.all_files()]
        if self.template_file() is not None:
            files.append(self.registration.template)
        for rel in files:
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
