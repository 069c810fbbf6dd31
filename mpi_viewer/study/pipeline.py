"""From a Study to its numbers: the one path shared by ``quantify`` (with and without
``--save-session``, :mod:`mpi_viewer.study.quantify`), ``replay``, ``report``, the batch
and the napari docks.

Each step is one function calling exactly one core function, so the science stays in
its own module:

- :func:`run_registration` → :func:`mpi_viewer.registration.fit_landmarks` or
  :func:`mpi_viewer.registration.molds.register_with_template`;
- :func:`run_rois` → :func:`mpi_viewer.roi.measure` (seeds) and
  :func:`mpi_viewer.roi.measure_label_image` (painted masks);
- :func:`run_calibration` → :func:`calibration_from_phantoms` (phantoms measured with the
  targets' ROI method, then :meth:`~mpi_viewer.calibration.Calibration.from_points`: the
  one place a calibration is built from phantoms, also used by ``mpi-viewer calibrate``),
  a calibration file, or a stored calibration;
- :func:`run_cells` → :class:`mpi_viewer.calibration.cells.IronPerCell`;
- :func:`run_quantities` → :func:`mpi_viewer.calibration.apply_calibration` (iron by
  inverse prediction, cells by :func:`mpi_viewer.calibration.cells.cells_from_iron`).

:func:`recompute` runs them in order and returns the results rows;
:func:`compare` says which stored numbers differ (relative difference > 1e-9);
:func:`replay_path` does both for one session file and never raises for bad input
(it returns status 2 with the message), so it can run in a worker process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer.errors import InputError, MPIViewerError
from mpi_viewer.geometry.transform import Transform
from mpi_viewer.study.model import STORED_TRANSFORM_METHODS, TransformModel
from mpi_viewer.study.session import (
    ROISection,
    Session,
    input_file,
    save_session,
)


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
    #: images of role "other" (e.g. an MDF's second channel), read only for display
    #: (:func:`read_other_images`): (input, Volume) pairs
    others: list = field(default_factory=list)

    def transform(self) -> Transform | None:
        """The fixed → moving :class:`~mpi_viewer.geometry.transform.Transform`, or None
        without a registration."""
        if self.fit is None:
            return None
        return Transform.from_any(self.fit)


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
                session.resolve(inp.path),
                modality=inp.modality,
                name=inp.name,
                **inp.selection.as_kwargs(),
            )
    return out


def read_other_images(session: Session) -> list[tuple[Any, Any]]:
    """The session's images of role ``"other"`` (another MDF channel, a second MPI) as
    (input, Volume) pairs, for display; no number depends on them."""
    from mpi_viewer.io.images import read_volume

    return [
        (
            inp,
            read_volume(
                session.resolve(inp.path),
                modality=inp.modality,
                name=inp.name,
                **inp.selection.as_kwargs(),
            ),
        )
        for inp in session.inputs
        if inp.role == "other" and inp.path and inp.modality
    ]


# -- steps -------------------------------------------------------------------------------------
def run_registration(session: Session, volumes: dict[str, Any]):
    """The fixed → moving fit of the session's registration (None without one).

    Returns
    -------
    (LandmarkFit or Transform, MoldRegistration or None)
    """
    reg = session.registration
    if reg is None:
        return None, None
    if reg.method == "transform" and reg.transform_file:
        # the user's .tfm (quantify --transform), hashed: re-read, as replay checks it
        from mpi_viewer.io.transform_files import load_transform

        return _wrap("registration", load_transform, session.resolve(reg.transform_file)), None
    if reg.method in STORED_TRANSFORM_METHODS:  # as stored (an intensity refinement's result)
        return _wrap("registration", reg.transform.to_transform), None
    if reg.method == "file":
        from mpi_viewer.io.transform_files import load_transform

        return load_transform(session.resolve(reg.transform_file), reg.model), None
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
    params = roi_params(sec.roi_params if sec.roi_params is not None else session.rois[0].params)
    phantoms = session.resolve(session.input("phantoms").path)
    return calibration_from_phantoms(volumes["mpi"], phantoms, params, sec.options)


def calibration_from_phantoms(mpi, phantoms_csv, params, options: dict[str, Any] | None = None):
    """A calibration from phantoms in the MPI image: the one place one is built.

    The phantoms (``name,x,y,z,iron_ug``, MPI mm) are measured with ``params`` (the
    targets' ROI method: :func:`mpi_viewer.calibration.measure_phantoms`) and fitted
    (:meth:`mpi_viewer.calibration.Calibration.from_points`) with ``options`` (name, kind,
    through_origin, weighting, mode, reference, tracer, tracer_lot, environment,
    preparation, notes).
    """
    from mpi_viewer import calibration as cal

    options = {k: v for k, v in (options or {}).items() if k != "confidence"}
    bad = sorted(set(options) - _CAL_OPTIONS)
    if bad:
        raise InputError(f"calibration options: unknown option(s) {', '.join(bad)}")
    single = options.get("mode") == "single_reference"
    phantoms = cal.read_phantoms_csv(phantoms_csv, min_count=1 if single else 2)
    try:
        points = _wrap(
            "phantoms",
            cal.measure_phantoms,
            mpi,
            phantoms,
            params,
            kind=options.get("kind", "iron"),
        )
    except InputError as exc:  # name the file the bad row is in
        raise InputError(f"{phantoms_csv}: {exc}") from None
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

    confidence = session.calibration.confidence
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
        session.registration.transform = TransformModel.of(rec.transform())
        rms = getattr(rec.fit, "rms_fre_mm", None)
        session.registration.rms_fre_mm = None if rms is None else float(rms)
    if session.calibration is not None and rec.calibration is not None:
        session.calibration.calibration = rec.calibration.to_dict()
    return session


# -- compare and replay: mpi_viewer.study.replay (names kept here for older callers) -------------
_REPLAY_NAMES = ("RTOL", "ReplayOutcome", "compare", "replay_path", "replay_session", "same_value")


def __getattr__(name: str):
    if name in _REPLAY_NAMES:
        from mpi_viewer.study import replay

        return getattr(replay, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    session.path = Path(session_path).resolve()
    rec = recompute(session, volumes=volumes)
    return save_computed(session, rec, session_path), rec


def save_computed(session: Session, rec: Recomputed, session_path: str | Path) -> Path:
    """Store a recomputation's numbers in its session, write the ``.tfm`` beside it (never
    over another file: :func:`~mpi_viewer.study.session.file_beside`) and save atomically."""
    from mpi_viewer.study.session import relative_path, sha256_file

    session.path = Path(session_path).resolve()
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
        # written as an ITK AffineTransform whatever the model (as sessions always were)
        _wrap("transform", write_transform, tfm, rec.transform().with_model("affine"))
        session.registration.transform_file = relative_path(tfm, session_path)
        session.registration.transform_sha256 = sha256_file(tfm)
    return save_session(session, session_path)
