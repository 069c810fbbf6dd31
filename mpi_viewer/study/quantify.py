"""``mpi-viewer quantify`` as a Study: its inputs and decisions, measured by the one pipeline.

:func:`quantify_study` builds the Study of a run (the MPI, seeds, ROI parameters, the
phantoms or a calibration file, iron per cell, a painted mask), :func:`run_quantify`
computes it through :func:`mpi_viewer.study.pipeline.recompute` (the image already read
is passed in, never read twice) and, with ``--save-session``, stores the numbers and saves
the session: the CSV and the session come from the same computation, so a saved run
replays exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer.defaults import CONFIDENCE
from mpi_viewer.errors import InputError
from mpi_viewer.study.model import (
    CalibrationSection,
    CellsSection,
    InputFile,
    MaskFile,
    RegistrationSection,
    ROISection,
    Selection,
    TransformModel,
)
from mpi_viewer.study.pipeline import Recomputed, new_session, recompute
from mpi_viewer.study.session import Session, relative_path, sha256_file


def _stem(path: str | Path) -> str:
    return Path(path).name.split(".")[0]


def calibration_options(args, mpi) -> dict[str, Any]:
    """quantify's / calibrate's ``--phantoms`` fit options (name, kind, origin, weighting,
    single reference, the image's tracer) as :func:`~mpi_viewer.study.pipeline.calibration_from_phantoms`
    takes them."""
    single = bool(getattr(args, "reference_phantom", None))
    return {
        "name": getattr(args, "name", None) or _stem(args.phantoms),
        "kind": args.calibration_kind,
        "through_origin": bool(args.through_origin),
        "weighting": args.weighting,
        "mode": "single_reference" if single else "line",
        "reference": args.reference_phantom,
        "tracer": getattr(args, "tracer", None) or mpi.acquisition.tracer,
        "tracer_lot": getattr(args, "tracer_lot", None) or mpi.acquisition.tracer_lot,
        "notes": f"phantoms {args.phantoms} measured in {mpi.source or mpi.name}",
    }


def quantify_study(
    session_path: str | Path,
    *,
    mpi: str | Path,
    seeds_xyz_mm,
    roi_params,
    names=None,
    phantoms: str | Path | None = None,
    calibration_file: str | Path | None = None,
    calibration_options: dict[str, Any] | None = None,
    confidence: float = CONFIDENCE,
    iron_per_cell=None,
    mask: str | Path | None = None,
    mask_names=None,
    hashed: bool = True,
    transform: str | Path | None = None,
    anatomy: str | Path | None = None,
    anatomy_modality: str = "MRI",
    mpi_selection: dict[str, Any] | None = None,
) -> Session:
    """The Study of a ``quantify`` run, its input paths relative to ``session_path``.

    ``hashed=False`` (a run that saves no session) records the files without their SHA-256.
    ``mask`` is a label image on the MPI grid (one manual ROI per label, named
    ``mask_names`` in increasing label order, ``manual_<label>`` by default).

    ``transform`` (``quantify --transform``, an ITK ``.tfm`` anatomy → MPI) is recorded as
    the registration (method ``"transform"``) with its path and SHA-256, and ``anatomy``
    (``--anatomy``, the transform's fixed image) as an input (role ``"ct"`` when
    ``anatomy_modality`` is CT, else ``"mri"``); replay re-reads and checks both.
    ``mpi_selection`` is the part of a multi-part MPI file read (frame, channel, variable).
    """
    sp = Path(session_path)
    if transform is not None and anatomy is None:
        raise InputError("--transform needs --anatomy (the MRI/CT the transform maps from)")
    role = "ct" if str(anatomy_modality).upper() == "CT" else "mri"
    if hashed:
        s = new_session(
            sp,
            mpi=mpi,
            phantoms=phantoms,
            calibration_file=calibration_file,
            **({role: anatomy} if anatomy is not None else {}),
        )
    else:
        s = Session()
        for r, f in (
            ("mpi", mpi),
            (role, anatomy),
            ("phantoms", phantoms),
            ("calibration", calibration_file),
        ):
            if f is not None:
                s.inputs.append(
                    InputFile(
                        role=r,
                        path=relative_path(f, sp),
                        modality={"mpi": "MPI", "mri": "MRI", "ct": "CT"}.get(r),
                    )
                )
    s.inputs[0].selection = Selection(**(mpi_selection or {}))
    if transform is not None:
        from mpi_viewer.io.transform_files import load_transform

        t = load_transform(transform)
        s.registration = RegistrationSection(
            fixed=role,
            moving="mpi",
            method="transform",
            model="affine",
            transform=TransformModel(
                matrix=np.asarray(t.matrix, float).tolist(),
                translation=np.asarray(t.translation, float).tolist(),
                model="affine",
            ),
            transform_file=relative_path(transform, sp),
            transform_sha256=sha256_file(transform) if hashed else None,
        )
    s.path = sp.resolve()
    seeds = np.asarray(seeds_xyz_mm, dtype=float)
    masks = []
    if mask is not None:
        masks = [
            MaskFile(
                name=_stem(mask),
                path=relative_path(mask, sp),
                sha256=sha256_file(mask),
                names=[str(n) for n in mask_names or []],
            )
        ]
    s.rois = [
        ROISection(
            method=roi_params.method,
            params=roi_params.to_dict(),
            seeds_xyz_mm=np.atleast_2d(seeds).tolist() if seeds.size else [],
            names=[str(n) for n in names] if names else [],
            masks=masks,
        )
    ]
    if phantoms is not None or calibration_file is not None:
        s.calibration = CalibrationSection(
            source="phantoms" if phantoms is not None else "file",
            options=dict(calibration_options or {}) if phantoms is not None else {},
            confidence=float(confidence),
        )
    if iron_per_cell is not None:
        s.cells = CellsSection(
            mean_pg=float(iron_per_cell.mean_pg), sd_pg=float(iron_per_cell.sd_pg)
        )
    return s


def mask_roi_names(mask: str | Path) -> list[str]:
    """``manual_<label>`` for every non-zero label of a label image, in increasing order."""
    from mpi_viewer.io.images import read_volume

    arr = np.asarray(read_volume(mask, modality="unknown").array)
    return [f"manual_{int(v)}" for v in np.unique(arr) if v != 0]


def image_selection(args) -> dict[str, Any]:
    """``--frame``/``--channel``/``--variable`` of a parsed command line, as a session records them."""
    sel = {k: getattr(args, k, None) for k in ("frame", "channel", "variable")}
    return {k: v for k, v in sel.items() if v is not None}


def run_quantify(args, mpi, seeds, params) -> tuple[Session, Recomputed]:
    """``quantify``: the run's Study and its numbers, computed once by the pipeline (``mpi``
    already read). With ``--save-session`` the Study's inputs are hashed; the caller saves
    it with these same numbers (:func:`~mpi_viewer.study.pipeline.save_computed`)."""
    if getattr(args, "save_session", None) and (
        getattr(args, "spacing_mm", None) or getattr(args, "origin_mm", None)
    ):
        raise InputError(
            "--save-session: the image's geometry came from --spacing-mm/--origin-mm; "
            "put it in a sidecar JSON beside the image so that the session can replay it"
        )
    save = getattr(args, "save_session", None)
    sp = Path(save) if save else Path.cwd() / "quantify-session.json"
    if save:
        inputs = (
            args.mpi,
            args.mask,
            args.phantoms,
            args.calibration,
            getattr(args, "transform", None),
            getattr(args, "anatomy", None),
        )
        if any(f and Path(f).resolve() == sp.resolve() for f in inputs):
            raise InputError(f"{sp}: refusing to overwrite an input file with the session")
    ipc = None
    if getattr(args, "iron_per_cell", None) is not None:
        from mpi_viewer.calibration.cells import IronPerCell

        ipc = IronPerCell(args.iron_per_cell, args.iron_per_cell_sd or 0.0)
    mask = getattr(args, "mask", None)
    study = quantify_study(
        sp,
        mpi=args.mpi,
        seeds_xyz_mm=seeds,
        roi_params=params,
        phantoms=args.phantoms or None,
        calibration_file=args.calibration or None,
        calibration_options=calibration_options(args, mpi) if args.phantoms else None,
        confidence=args.confidence,
        iron_per_cell=ipc,
        mask=mask,
        mask_names=mask_roi_names(mask) if mask else None,
        hashed=bool(save),
        transform=getattr(args, "transform", None),
        anatomy=getattr(args, "anatomy", None),
        anatomy_modality=getattr(args, "anatomy_modality", "MRI") or "MRI",
        mpi_selection=image_selection(args),
    )
    return study, recompute(study, volumes={"mpi": mpi})
