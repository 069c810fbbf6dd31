"""Recompute a session's numbers: the one path shared by ``quantify --save-session``,
``replay``, ``report`` and the napari session dock.

Each step is one function calling exactly one core function, so the science stays in
its own module:

- :func:`run_registration` → :func:`mpi_viewer.registration.fit_landmarks` or
  :func:`mpi_viewer.registration.molds.register_with_template`;
- :func:`run_rois` → :func:`mpi_viewer.roi.measure` (seeds) and
  :func:`mpi_viewer.roi.measure_label_image` (painted masks);
- :func:`run_calibration` → :func:`mpi_viewer.calibration.measure_phantoms` and
  :meth:`~mpi_viewer.calibration.Calibration.from_points` (phantoms measured with the
  targets' ROI method), or a stored calibration;
- :func:`run_cells` → :class:`mpi_viewer.calibration.cells.IronPerCell`;
- :func:`run_quantities` → :func:`mpi_viewer.calibration.apply_calibration` (iron by
  inverse prediction, cells by :func:`mpi_viewer.calibration.cells.cells_from_iron`).

:func:`recompute` runs them in order and returns the results rows;
:func:`compare` says which stored numbers differ (relative difference > 1e-9);
:func:`replay_path` does both for one session file and never raises for bad input
(it returns status 2 with the message), so it can run in a worker process.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer.errors import InputError, MPIViewerError
from mpi_viewer.study.session import (
    CalibrationSection,
    CellsSection,
    ROISection,
    Session,
    input_file,
    load_session,
    save_session,
)

#: Replay tolerance: largest relative difference between a stored and a recomputed number.
RTOL = 1e-9


#: Keys whose values legitimately change between runs (dates) and are not compared.
_VOLATILE = frozenset({"date", "created", "modified", "timestamp", "software", "schema_version"})


@dataclass
class Recomputed:
    """Everything a session's recomputation produced."""

    volumes: dict[str, Any] = field(default_factory=dict)
    fit: Any = None
    registration: Any = None  # MoldRegistration for a template registration
    rois: list[tuple[ROISection, list]] = field(default_factory=list)
    calibration: Any = None
    iron_per_cell: Any = None
    quantities: list = field(default_factory=list)  # calibration.QuantityResult per ROI
    rows: list[dict[str, Any]] = field(default_factory=list)

    def transform(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(matrix, translation) fixed → moving, or None without a registration."""
        if self.fit is None:
            return None
        return np.asarray(self.fit.matrix, dtype=float), np.asarray(
            self.fit.translation, dtype=float
        )


@dataclass
class GivenTransform:
    """A transform used as given (registration method ``"transform"``): fixed → moving."""

    matrix: np.ndarray
    translation: np.ndarray
    model: str = "affine"
    rms_fre_mm: float | None = None

    def transform_points(self, xyz) -> np.ndarray:
        return np.atleast_2d(np.asarray(xyz, dtype=float)) @ self.matrix.T + self.translation


def _wrap(step: str, fn, *args, **kwargs):
    """Call a core function; anything a malformed session could provoke becomes InputError."""
    try:
        return fn(*args, **kwargs)
    except MPIViewerError:
        raise
    except (
        TypeError,
        ValueError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
        ZeroDivisionError,
        np.linalg.LinAlgError,
    ) as exc:
        raise InputError(f"{step}: {type(exc).__name__}: {exc}") from None


# -- inputs ------------------------------------------------------------------------------------
def read_inputs(session: Session, roles=("mri", "ct", "mpi")) -> dict[str, Any]:
    """The session's images as Volumes, read through :func:`mpi_viewer.io.images.read_volume`."""
    from mpi_viewer.io.images import read_volume

    out = {}
    for inp in session.inputs:
        if inp.role in roles:
            out[inp.role] = read_volume(
                session.resolve(inp.path), modality=inp.modality, name=inp.name, **inp.selection
            )
    return out


# -- steps -------------------------------------------------------------------------------------
def run_registration(session: Session, volumes: dict[str, Any]):
    """The fixed → moving fit of the session's registration (None without one).

    Returns
    -------
    (LandmarkFit, MoldRegistration or None)
    """
    reg = session.registration
    if reg is None:
        return None, None
    if reg.method == "transform":
        # the user's .tfm (hashed): its numbers, compared with the stored ones
        if reg.transform_file:
            from mpi_viewer.geometry.transform import transform_to_matrix
            from mpi_viewer.io.transform_files import read_transform

            m, t = transform_to_matrix(read_transform(session.resolve(reg.transform_file)))
            return GivenTransform(np.asarray(m, float), np.asarray(t, float), reg.model), None
        return GivenTransform(
            np.asarray(reg.matrix, dtype=float), np.asarray(reg.translation, dtype=float), reg.model
        ), None
    if reg.method == "template":
        from mpi_viewer.registration.molds import register_with_template

        fixed, moving = volumes[reg.fixed], volumes[reg.moving]
        template = session.template_file() if session.path is not None else None
        mold = _wrap(
            "registration",
            register_with_template,
            fixed,
            moving,
            reg.template if template is None else str(template),
            model=reg.model,
            **mold_kwargs(reg.mold),
        )
        return mold.fit, mold
    from mpi_viewer.registration.landmarks import fit_landmarks

    lm = reg.landmarks
    kwargs = {"model": reg.model, "names": lm.names, "exclude": lm.excluded}
    if reg.fle_mm is not None:
        kwargs["fle_mm"] = reg.fle_mm
    fit = _wrap(
        "registration",
        fit_landmarks,
        np.asarray(lm.fixed_xyz_mm, dtype=float),
        np.asarray(lm.moving_xyz_mm, dtype=float),
        **kwargs,
    )
    return fit, None


def mold_kwargs(mold: dict[str, Any] | None) -> dict[str, Any]:
    """``register_with_template`` keywords of a session's ``registration.mold`` record: the
    matching tolerance, the orientation prior and, when the user chose it, the pose."""
    mold = mold or {}
    out: dict[str, Any] = {}
    if mold.get("tolerance_mm") is not None:
        out["tolerance_mm"] = mold["tolerance_mm"]
    if mold.get("max_rotation_deg") is not None:
        out["max_rotation_deg"] = mold["max_rotation_deg"]
    if mold.get("decided_by") == "user" and mold.get("pose") is not None:
        out["pose"] = mold["pose"]
    return out


def roi_params(d: dict[str, Any]):
    from mpi_viewer.roi.regions import ROIParams

    return _wrap("ROI parameters", ROIParams.from_dict, dict(d))


def run_rois(session: Session, volumes: dict[str, Any]) -> list[tuple[ROISection, list]]:
    """ROIs of every ROI section, measured on the native MPI grid.

    Seeds → :func:`mpi_viewer.roi.measure`; painted masks (label images beside the
    session, on the MPI grid) → :func:`mpi_viewer.roi.measure_label_image`, one manual
    ROI per label, named by the mask's ``names`` (in increasing label order) or else
    after the mask (``<name>_<label>`` when it holds several labels), and labelled
    after the section's seeded ROIs.
    """
    from mpi_viewer.io.images import read_volume
    from mpi_viewer.roi.regions import measure, measure_label_image

    out = []
    for sec in session.rois:
        vol = volumes[sec.image]
        pd = dict(sec.params)
        if pd.get("method") == "manual":  # a manual section's params only carry noise/saturation
            pd.pop("method")
        params = roi_params(pd)
        names = sec.names or None
        results = []
        if sec.seeds_xyz_mm:
            results = list(
                _wrap(
                    "ROIs",
                    measure,
                    vol,
                    np.asarray(sec.seeds_xyz_mm, dtype=float),
                    params,
                    names=names,
                )
            )
        for m in sec.masks:
            lab = read_volume(session.resolve(m.path), modality="unknown", name=m.name)
            rs = _wrap(
                f"mask {m.name}", measure_label_image, vol, lab, params, names=m.names or None
            )
            for r in rs:
                if not m.names:
                    r.name = m.name if len(rs) == 1 else f"{m.name}_{r.label}"
                r.label = len(results) + 1
                results.append(r)
        out.append((sec, results))
    return out


def run_calibration(session: Session, volumes: dict[str, Any]):
    """The calibration (None without a calibration section).

    ``source="phantoms"``: the phantoms input measured with the targets' ROI method
    (:func:`mpi_viewer.calibration.measure_phantoms`), then fitted with the section's
    options (:meth:`mpi_viewer.calibration.Calibration.from_points`). ``"file"``: the
    calibration input file. ``"stored"``: the calibration held in the session.
    """
    sec = session.calibration
    if sec is None:
        return None
    from mpi_viewer import calibration as cal

    if sec.source == "stored":
        return _wrap(
            "calibration",
            cal.Calibration.from_dict,
            dict(sec.calibration),
            source=f"session {session.path}: calibration",
        )
    if sec.source == "file":
        return cal.load_calibration(session.resolve(session.input("calibration").path))
    options = {k: v for k, v in sec.options.items() if k != "confidence"}
    single = options.get("mode") == "single_reference"
    phantoms = cal.read_phantoms_csv(
        session.resolve(session.input("phantoms").path), min_count=1 if single else 2
    )
    mpi = volumes["mpi"]
    params = roi_params(sec.roi_params if sec.roi_params is not None else session.rois[0].params)
    points = _wrap(
        "phantoms", cal.measure_phantoms, mpi, phantoms, params, kind=options.get("kind", "iron")
    )
    bad = sorted(set(options) - _CAL_OPTIONS)
    if bad:
        raise InputError(f"calibration options: unknown option(s) {', '.join(bad)}")
    options.setdefault("name", "session")
    return _wrap(
        "calibration",
        cal.Calibration.from_points,
        points=points,
        roi=params.to_dict(),
        acquisition=mpi.acquisition.to_dict(),
        **options,
    )


_CAL_OPTIONS = {
    "name",
    "kind",
    "through_origin",
    "weighting",
    "mode",
    "reference",
    "tracer",
    "tracer_lot",
    "environment",
    "preparation",
    "notes",
}


def run_cells(session: Session):
    """The iron per cell (pg Fe/cell, mean ± SD) or None: validated by
    :class:`mpi_viewer.calibration.cells.IronPerCell`; the cell numbers themselves come with the
    iron (:func:`run_quantities`, which calls :func:`mpi_viewer.calibration.cells.cells_from_iron`)."""
    if session.cells is None:
        return None
    from mpi_viewer.calibration.cells import IronPerCell

    return _wrap("iron per cell", IronPerCell, session.cells.mean_pg, session.cells.sd_pg)


def run_quantities(
    session: Session, volumes: dict[str, Any], calibration, rois, iron_per_cell
) -> list:
    """Iron (µg) and cells of every ROI with intervals, detection-limit flags and warnings
    (:func:`mpi_viewer.calibration.apply_calibration`)."""
    if calibration is None:
        return []
    from mpi_viewer.calibration.record import apply_calibration

    confidence = session.calibration.options.get("confidence", 0.95)
    out = []
    for sec, results in rois:
        vol = volumes[sec.image]
        out += _wrap(
            "iron",
            apply_calibration,
            results,
            calibration,
            acquisition=vol.acquisition,
            roi_params=roi_params(sec.params),
            voxel_volume_mm3=vol.voxel_volume_mm,
            iron_per_cell=iron_per_cell,
            confidence=confidence,
        )
    return out


def result_rows(rec: Recomputed) -> list[dict[str, Any]]:
    """One row per ROI: the ROI's columns (:meth:`ROIResult.to_row`), then the iron and
    cell columns when calibrated (:meth:`QuantityResult.columns`, numbers, not text:
    the same columns ``quantify`` writes)."""
    from mpi_viewer.io.tables import rows_from_results

    rows = rows_from_results([r for _, rs in rec.rois for r in rs])
    cells = rec.iron_per_cell is not None or getattr(rec.calibration, "kind", "iron") == "cells"
    for row, q in zip(rows, rec.quantities, strict=False):
        row.update(q.columns(include_cells=cells))
    return rows


def recompute(session: Session, *, volumes: dict[str, Any] | None = None) -> Recomputed:
    """Recompute every number of a session from its inputs (headless).

    Inputs are read, never written. Pass ``volumes`` (role → Volume) to reuse images
    already in memory (the GUI does).
    """
    rec = Recomputed(volumes=dict(volumes) if volumes is not None else read_inputs(session))
    rec.fit, rec.registration = run_registration(session, rec.volumes)
    rec.rois = run_rois(session, rec.volumes)
    rec.calibration = run_calibration(session, rec.volumes)
    rec.iron_per_cell = run_cells(session)
    rec.quantities = run_quantities(
        session, rec.volumes, rec.calibration, rec.rois, rec.iron_per_cell
    )
    rec.rows = result_rows(rec)
    return rec


def store(session: Session, rec: Recomputed) -> Session:
    """Write a recomputation's numbers into the session (results, fit, calibration)."""
    session.results = [dict(r) for r in rec.rows]
    if session.registration is not None and rec.fit is not None:
        m, t = rec.transform()
        session.registration.matrix = m.tolist()
        session.registration.translation = t.tolist()
        rms = getattr(rec.fit, "rms_fre_mm", None)
        session.registration.rms_fre_mm = None if rms is None else float(rms)
    if session.calibration is not None and rec.calibration is not None:
        session.calibration.calibration = rec.calibration.to_dict()
    return session


# -- comparison --------------------------------------------------------------------------------
def _num(v) -> float | None:
    if isinstance(v, bool) or v is None:
        return None if v is None else float(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return None


def same_value(a, b, *, rtol: float = RTOL) -> bool:
    """Equal strings; numbers within ``rtol`` (relative); NaN equals NaN (and null)."""
    if a is None:
        a = math.nan
    if b is None:
        b = math.nan
    x, y = _num(a), _num(b)
    if x is None or y is None:
        return a == b
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if x == y:
        return True
    return abs(x - y) <= rtol * max(abs(x), abs(y))


def _flatten(v, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(v, dict):
        for k, x in v.items():
            if str(k).lower() in _VOLATILE:
                continue
            _flatten(x, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(v, (list, tuple, np.ndarray)):
        for i, x in enumerate(list(v)):
            _flatten(x, f"{prefix}[{i}]", out)
    else:
        out[prefix] = v
    return out


#: Text columns (not numbers): a change there is a note of a replay, not a difference.
_TEXT_KEYS = frozenset({"flags", "warnings"})


def _is_text_key(key: str) -> bool:
    return re.sub(r"\[\d+\]$", "", str(key).rsplit(".", 1)[-1]) in _TEXT_KEYS


def compare(
    session: Session, rec: Recomputed, *, rtol: float = RTOL, notes: list[str] | None = None
) -> list[str]:
    """Differences between a session's stored numbers and a recomputation, one line each.

    With ``notes`` (a list), changed flags and warnings (text a newer version may add,
    such as a new check) go there instead: a replay compares numbers.
    """
    diffs: list[str] = []

    def cmp(what: str, stored, new) -> None:
        s, n = _flatten(stored, "", {}), _flatten(new, "", {})
        for key in sorted(set(s) | set(n), key=str):
            if notes is not None and _is_text_key(key):
                if not same_value(s.get(key), n.get(key), rtol=rtol):
                    notes.append(
                        f"{what}{key} changed (text, not a number): stored {s.get(key)!r}, "
                        f"now {n.get(key)!r}"
                    )
                continue
            if key not in n:
                diffs.append(f"{what}{key}: stored {s[key]!r}, not recomputed")
            elif key not in s:
                diffs.append(f"{what}{key}: recomputed {n[key]!r}, not stored")
            elif not same_value(s[key], n[key], rtol=rtol):
                diffs.append(f"{what}{key}: stored {s[key]!r}, recomputed {n[key]!r}")

    if len(session.results) != len(rec.rows):
        diffs.append(f"results: {len(session.results)} rows stored, {len(rec.rows)} recomputed")
    for i, (old, new) in enumerate(zip(session.results, rec.rows, strict=False)):
        name = old.get("name", i)
        cmp(f"row {name}: ", old, new)
    reg = session.registration
    if reg is not None and rec.fit is not None and reg.matrix is not None:
        m, t = rec.transform()
        cmp(
            "transform.",
            {"matrix": reg.matrix, "translation": reg.translation, "rms_fre_mm": reg.rms_fre_mm},
            {
                "matrix": m.tolist(),
                "translation": t.tolist(),
                "rms_fre_mm": getattr(rec.fit, "rms_fre_mm", None),
            },
        )
    cal = session.calibration
    if cal is not None and rec.calibration is not None and cal.calibration:
        cmp("calibration.", cal.calibration, rec.calibration.to_dict())
    return diffs


# -- one session file ---------------------------------------------------------------------------
@dataclass
class ReplayOutcome:
    """What replaying one session file gave (picklable: it comes back from workers).

    ``status`` is 0 (every number matches), 1 (differences) or 2 (bad input).
    """

    path: str
    status: int
    differences: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def replay_session(
    session: Session, *, allow_changed_inputs: bool = False
) -> tuple[Recomputed, list[str], list[str]]:
    """Verify the inputs' hashes, recompute and compare; returns (recomputed, differences, notes).

    Raises
    ------
    InputError
        A missing input, or one whose SHA-256 changed (unless ``allow_changed_inputs``).
    """
    notes = session.verify_inputs(allow_changed=allow_changed_inputs)
    rec = recompute(session)
    return rec, compare(session, rec, notes=notes), notes


def replay_path(path: str | Path, allow_changed_inputs: bool = False) -> ReplayOutcome:
    """Replay one session file; never raises for bad input (status 2 with the message)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = ReplayOutcome(path=str(path), status=2)
    try:
        session = load_session(path)
        out.warnings = list(session.warnings)
        rec, diffs, notes = replay_session(session, allow_changed_inputs=allow_changed_inputs)
        out.warnings += notes
        out.rows = rec.rows
        out.differences = diffs
        out.status = 1 if diffs else 0
    except MPIViewerError as exc:
        out.message = " ".join(str(exc).split())
        if str(path) not in out.message:  # a batch error names the session it belongs to
            out.message = f"session {path}: {out.message}"
        out.status = 2
    out.seconds = time.perf_counter() - t0
    out.cpu_seconds = time.process_time() - c0
    return out


# -- building sessions ---------------------------------------------------------------------------
def new_session(
    session_path: str | Path,
    *,
    mpi: str | Path,
    mri: str | Path | None = None,
    ct: str | Path | None = None,
    phantoms: str | Path | None = None,
    calibration_file: str | Path | None = None,
) -> Session:
    """A session whose inputs are the given files (hashed now, paths relative to the session)."""
    from mpi_viewer.io.images import read_sidecar

    s = Session()
    acq = {}
    try:
        acq = dict(read_sidecar(mpi).get("acquisition") or {})
    except InputError:
        pass
    s.inputs.append(input_file(mpi, session_path, role="mpi", modality="MPI", acquisition=acq))
    if mri is not None:
        s.inputs.append(input_file(mri, session_path, role="mri", modality="MRI"))
    if ct is not None:
        s.inputs.append(input_file(ct, session_path, role="ct", modality="CT"))
    if phantoms is not None:
        s.inputs.append(input_file(phantoms, session_path, role="phantoms"))
    if calibration_file is not None:
        s.inputs.append(input_file(calibration_file, session_path, role="calibration"))
    return s


def compute_and_save(
    session: Session, session_path: str | Path, *, volumes: dict[str, Any] | None = None
) -> tuple[Path, Recomputed]:
    """Recompute a session, store its numbers and the ``.tfm`` beside it, save atomically."""
    from mpi_viewer.study.session import relative_path, sha256_file

    session.path = Path(session_path).resolve()
    rec = recompute(session, volumes=volumes)
    store(session, rec)
    given = session.registration is not None and session.registration.method == "transform"
    if (
        session.registration is not None
        and rec.fit is not None
        and not (given and session.registration.transform_file)
    ):
        from mpi_viewer.io.transform_files import write_transform
        from mpi_viewer.study.session import file_beside

        tfm = file_beside(session_path, Path(session_path).with_suffix(".tfm").name)
        _wrap("transform", write_transform, tfm, rec.transform())
        session.registration.transform_file = relative_path(tfm, session_path)
        session.registration.transform_sha256 = sha256_file(tfm)
    return save_session(session, session_path), rec


# -- quantify --save-session ---------------------------------------------------------------------
def save_quantify_session(
    session_path: str | Path,
    *,
    mpi: str | Path,
    seeds_xyz_mm,
    roi_params,
    names=None,
    phantoms: str | Path | None = None,
    calibration_file: str | Path | None = None,
    calibration_options: dict[str, Any] | None = None,
    iron_per_cell=None,
    rows: list[dict[str, Any]] | None = None,
    mask: str | Path | None = None,
    mask_names=None,
    transform: str | Path | None = None,
    anatomy: str | Path | None = None,
    anatomy_modality: str = "MRI",
    mpi_selection: dict[str, Any] | None = None,
) -> tuple[Path, list[str]]:
    """The session of a ``quantify`` run: inputs hashed, ROI definitions, calibration,
    iron per cell, and results recomputed through this pipeline.

    Parameters
    ----------
    session_path : path
        The session file to write (atomically); its folder must exist.
    mpi, phantoms, calibration_file : path
        quantify's input files.
    seeds_xyz_mm : (n, 3) array_like
        Seeds, MPI physical mm (may be empty with ``mask``).
    roi_params : ROIParams
    names : list of str, optional
        ROI names.
    calibration_options : dict, optional
        :meth:`Calibration.from_points` options used with ``phantoms`` (kind,
        through_origin, weighting, mode, reference, tracer, tracer_lot, name, notes).
    iron_per_cell : IronPerCell, optional
    rows : list of dict, optional
        quantify's own rows: the differences from the session's (there should be none)
        are returned.
    mask : path, optional
        ``quantify --mask``: a label image on the MPI grid, one manual ROI per label.
        It is an input: named where it lies (relative to the session) with its SHA-256
        (a :class:`~mpi_viewer.study.session.MaskFile`), read, never written.
    mask_names : list of str, optional
        The mask's ROI names in increasing label order (``manual_<label>`` by default).
    transform : path, optional
        ``quantify --transform``: the ITK ``.tfm`` (anatomy → MPI) that places the MPI on
        the anatomy. Recorded as the registration (method ``"transform"``) with its
        path and SHA-256; replay re-reads it and checks both.
    anatomy : path, optional
        ``quantify --anatomy``: the MRI or CT (the transform's fixed image), recorded as
        an input with its hash (role ``"ct"`` when ``anatomy_modality`` is CT, else
        ``"mri"``) and shown in the report.

    Returns
    -------
    (Path, list of str)
        The session file and the differences between ``rows`` and the session's rows.
    """
    sp = Path(session_path)
    if not sp.parent.is_dir():
        raise InputError(f"{sp}: folder {sp.parent} does not exist")
    if any(
        f is not None and Path(f).resolve() == sp.resolve()
        for f in (mpi, mask, phantoms, calibration_file)
    ):
        raise InputError(f"{sp}: refusing to overwrite an input file with the session")
    if transform is not None and anatomy is None:
        raise InputError("--transform needs --anatomy (the MRI/CT the transform maps from)")
    if any(f is not None and Path(f).resolve() == sp.resolve() for f in (transform, anatomy)):
        raise InputError(f"{sp}: refusing to overwrite an input file with the session")
    role = "ct" if str(anatomy_modality).upper() == "CT" else "mri"
    s = new_session(
        sp,
        mpi=mpi,
        phantoms=phantoms,
        calibration_file=calibration_file,
        **({role: anatomy} if anatomy is not None else {}),
    )
    if transform is not None:
        from mpi_viewer.geometry.transform import transform_to_matrix
        from mpi_viewer.io.transform_files import read_transform
        from mpi_viewer.study.session import RegistrationSection, relative_path, sha256_file

        m, t = transform_to_matrix(read_transform(transform))
        s.registration = RegistrationSection(
            fixed=role,
            moving="mpi",
            method="transform",
            model="affine",
            matrix=np.asarray(m, float).tolist(),
            translation=np.asarray(t, float).tolist(),
            transform_file=relative_path(transform, sp),
            transform_sha256=sha256_file(transform),
        )
    s.inputs[0].selection = dict(mpi_selection or {})  # frame/channel/variable read from the MPI
    seeds = np.asarray(seeds_xyz_mm, dtype=float)
    seeds = np.atleast_2d(seeds).tolist() if seeds.size else []
    masks = []
    if mask is not None:
        from mpi_viewer.study.session import MaskFile, relative_path, sha256_file

        masks = [
            MaskFile(
                name=Path(mask).name.split(".")[0],
                path=relative_path(mask, sp),
                sha256=sha256_file(mask),
                names=[str(n) for n in mask_names or []],
            )
        ]
    s.rois = [
        ROISection(
            method=roi_params.method,
            params=roi_params.to_dict(),
            seeds_xyz_mm=seeds,
            names=[str(n) for n in names] if names else [],
            masks=masks,
        )
    ]
    if phantoms is not None:
        s.calibration = CalibrationSection(
            source="phantoms", options=dict(calibration_options or {})
        )
    elif calibration_file is not None:
        s.calibration = CalibrationSection(source="file", options=dict(calibration_options or {}))
    if iron_per_cell is not None:
        s.cells = CellsSection(
            mean_pg=float(iron_per_cell.mean_pg), sd_pg=float(iron_per_cell.sd_pg)
        )
    out, rec = compute_and_save(s, sp)
    diffs = []
    if rows is not None:
        probe = Session(results=[dict(r) for r in rows])
        diffs = compare(probe, Recomputed(rows=rec.rows))
    return out, diffs


def image_selection(args) -> dict[str, Any]:
    """``--frame``/``--channel``/``--variable`` of a parsed command line, as a session records them."""
    sel = {k: getattr(args, k, None) for k in ("frame", "channel", "variable")}
    return {k: v for k, v in sel.items() if v is not None}


def save_session_of_quantify(args, mpi, seeds, params, rows) -> Path:
    """``quantify --save-session``: the session of this run (called by the CLI with its
    parsed arguments). Refuses images whose geometry came from the command line (a
    session can only name files), and says so when the session's numbers would differ
    from the CSV's."""
    import sys

    if getattr(args, "spacing_mm", None) or getattr(args, "origin_mm", None):
        raise InputError(
            "--save-session: the image's geometry came from --spacing-mm/--origin-mm; "
            "put it in a sidecar JSON beside the image so that the session can replay it"
        )
    options = {"confidence": float(getattr(args, "confidence", 0.95))}
    phantoms = getattr(args, "phantoms", None)
    if phantoms:
        from pathlib import Path as _P

        single = bool(getattr(args, "reference_phantom", None))
        options |= {
            "name": _P(phantoms).name.split(".")[0],
            "kind": args.calibration_kind,
            "through_origin": bool(args.through_origin),
            "weighting": args.weighting,
            "mode": "single_reference" if single else "line",
            "reference": args.reference_phantom,
            "tracer": mpi.acquisition.tracer,
            "tracer_lot": mpi.acquisition.tracer_lot,
            "notes": f"phantoms {phantoms} measured in {mpi.source or mpi.name}",
        }
    ipc = None
    if getattr(args, "iron_per_cell", None) is not None:
        from mpi_viewer.calibration.cells import IronPerCell

        ipc = IronPerCell(args.iron_per_cell, args.iron_per_cell_sd or 0.0)
    path, diffs = save_quantify_session(
        args.save_session,
        mpi=args.mpi,
        seeds_xyz_mm=seeds,
        roi_params=params,
        phantoms=phantoms,
        calibration_file=getattr(args, "calibration", None),
        calibration_options=options,
        iron_per_cell=ipc,
        rows=rows,
        mask=getattr(args, "mask", None),
        mask_names=[r["name"] for r in rows[len(seeds) :]] if getattr(args, "mask", None) else None,
        transform=getattr(args, "transform", None),
        anatomy=getattr(args, "anatomy", None),
        anatomy_modality=getattr(args, "anatomy_modality", "MRI") or "MRI",
        mpi_selection=image_selection(args),
    )
    for d in diffs:
        print(f"mpi-viewer: note: session differs from the CSV: {d}", file=sys.stderr)
    return path
