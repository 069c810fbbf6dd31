"""The ``mpi-viewer`` command line.

The command line and the napari docks call the same core. Bad input (an
:class:`~mpi_viewer.errors.InputError`) ends the program with exit status 2 and one
line on stderr naming the file or value and what is wrong; no traceback.

Each sub-command has its own ``_cmd_<name>`` function taking the parsed arguments
and returning an exit status, and its own ``_add_<name>`` function declaring its
arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mpi_viewer import __version__
from mpi_viewer.errors import InputError, MPIViewerError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit status 2)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_vector(text: str, *, n: int | None = 3, what: str = "value") -> tuple[float, ...]:
    """``"1.5,-2,3"`` → ``(1.5, -2.0, 3.0)``; InputError naming ``what`` otherwise."""
    import math

    try:
        values = tuple(float(v) for v in text.replace(";", ",").split(","))
    except ValueError:
        raise InputError(f"{what} {text!r}: expected comma-separated numbers") from None
    if n is not None and len(values) != n:
        raise InputError(
            f"{what} {text!r}: expected {n} comma-separated numbers, got {len(values)}"
        )
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{what} {text!r}: values must be finite")
    return values


# -- gui / demo ---------------------------------------------------------------------------
def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="open napari with the synthetic demo study, loaded and registered"
    )
    p.add_argument(
        "--write",
        metavar="DIR",
        help="write the demo study's files to DIR instead of opening napari",
    )
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window and quit")
    p.add_argument(
        "--ndisplay", type=int, choices=(2, 3), default=3, help="2-D or 3-D view (default 3)"
    )


def _cmd_demo(args) -> int:
    if args.write:
        from mpi_viewer.demo.study import write_demo_study

        paths = write_demo_study(args.write)
        for key, p in paths.items():
            print(f"{key}: {p}")
        return 0
    return _run_gui(demo=True, screenshot=args.screenshot, ndisplay=args.ndisplay)


def _run_gui(
    *,
    demo: bool = False,
    files: Sequence[str] = (),
    screenshot: str | None = None,
    ndisplay: int = 2,
) -> int:
    try:
        from mpi_viewer.plugins import _launch  # the GUI: the one import of plugins/ from the core
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InputError(
            f"the napari plugin is not installed ({exc}); run: pip install -e ."
        ) from None
    return _launch.run(demo=demo, files=list(files), screenshot=screenshot, ndisplay=ndisplay)


# -- register -------------------------------------------------------------------------------
def _add_register(sub) -> None:
    p = sub.add_parser(
        "register", help="register MOVING (MPI) to FIXED (MRI/CT) from landmarks or a mold template"
    )
    p.add_argument("fixed", metavar="FIXED", help="fixed image (MRI or CT)")
    p.add_argument("moving", metavar="MOVING", help="moving image (MPI)")
    p.add_argument(
        "--fixed-points", metavar="CSV", help="fiducials in the fixed image (name,x,y,z in mm)"
    )
    p.add_argument(
        "--moving-points", metavar="CSV", help="fiducials in the moving image (name,x,y,z in mm)"
    )
    p.add_argument(
        "--template",
        metavar="NAME",
        help="mold template name or JSON file (automatic fiducial detection)",
    )
    p.add_argument(
        "--model",
        choices=("rigid", "similarity", "affine"),
        default="rigid",
        help="transform model (default rigid)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT.tfm",
        required=True,
        help="ITK transform file to write (fixed → moving)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="NAME",
        help="leave the fiducial NAME out of the fit (repeatable); its residual is still printed",
    )
    p.add_argument(
        "--fle-mm",
        type=float,
        default=None,
        metavar="MM",
        help="fiducial localisation error in mm for the expected TRE (default 0.15)",
    )
    p.add_argument(
        "--fre-tolerance-mm",
        type=float,
        default=None,
        metavar="MM",
        help="warn when the RMS FRE exceeds this, in mm (default 1.0)",
    )


def _cmd_register(args) -> int:
    from pathlib import Path

    from mpi_viewer.io.images import read_volume
    from mpi_viewer.io.transform_files import write_transform
    from mpi_viewer.registration.landmarks import RegistrationParams

    defaults = RegistrationParams()
    params = RegistrationParams(
        model=args.model,
        fle_mm=defaults.fle_mm if args.fle_mm is None else args.fle_mm,
        fre_tolerance_mm=defaults.fre_tolerance_mm
        if args.fre_tolerance_mm is None
        else args.fre_tolerance_mm,
        exclude=list(args.exclude),
    )
    has_points = bool(args.fixed_points or args.moving_points)
    if has_points and args.template:
        raise InputError(
            "register: give either --fixed-points/--moving-points or --template, not both"
        )
    if not has_points and not args.template:
        raise InputError("register: give --fixed-points and --moving-points, or --template NAME")
    if has_points and not (args.fixed_points and args.moving_points):
        missing = "--moving-points" if args.fixed_points else "--fixed-points"
        raise InputError(
            f"register: {missing} is missing (landmark registration needs both point files)"
        )
    out = Path(args.output)
    if not out.parent.is_dir():
        raise InputError(f"{out}: folder {out.parent} does not exist")
    fixed = read_volume(args.fixed)
    moving = read_volume(args.moving)
    if args.template:
        from mpi_viewer.registration.molds import register_with_template

        result = register_with_template(
            fixed,
            moving,
            args.template,
            model=params.model,
            exclude=params.exclude,
            fle_mm=params.fle_mm,
            fre_tolerance_mm=params.fre_tolerance_mm,
        )
        fit = result.fit
        lines = [*result.report_lines(), *fit.report_lines()]
    else:
        fit = _register_points(args, fixed, moving, params)
        lines = fit.report_lines()
    write_transform(out, fit)
    for line in lines:
        print(line)
    print(
        f"wrote {out} (ITK transform, fixed → moving: {Path(args.fixed).name} → {Path(args.moving).name})"
    )
    return 0


def _register_points(args, fixed, moving, params):
    """Landmark fit for ``register`` from two point files, checked against both images."""
    import numpy as np

    from mpi_viewer.io.points import read_points_csv
    from mpi_viewer.registration.landmarks import fit_pointsets

    fixed_pts = read_points_csv(args.fixed_points)
    moving_pts = read_points_csv(args.moving_points)
    for pts, vol, path in (
        (fixed_pts, fixed, args.fixed_points),
        (moving_pts, moving, args.moving_points),
    ):
        if pts.ndim != vol.ndim:
            raise InputError(f"{path}: {pts.ndim}-D points for a {vol.ndim}-D image {vol.name!r}")
        inside = vol.contains_physical(pts.xyz_mm)
        if not np.all(inside):
            bad = [n for n, ok in zip(pts.names, inside, strict=True) if not ok]
            raise InputError(
                f"{path}: point(s) {', '.join(bad)} lie outside the image {vol.source or vol.name} "
                "(are the coordinates physical mm in that image's frame?)"
            )
    unknown = [n for n in params.exclude if n not in fixed_pts.names and n not in moving_pts.names]
    if unknown:
        raise InputError(f"--exclude: no fiducial named {', '.join(unknown)} in either point file")
    return fit_pointsets(fixed_pts, moving_pts, params, strict=True)


# -- quantify -------------------------------------------------------------------------------
def _add_quantify(sub) -> None:
    from mpi_viewer.defaults import HALFMAX_FRACTION, N_SD

    p = sub.add_parser(
        "quantify",
        help="ROIs, signal, iron and cells of an MPI image",
        description="One ROI per seed on the MPI's native grid: climb from the seed to its own peak, keep the "
        "connected voxels above a threshold, report peak, mean, volume, total signal (a.u.·mm³), SNR and "
        "FWHM. The default method is halfmax (50 %% of the source's own peak): the field's convention "
        "(Sehl et al. 2020, doi:10.18383/j.tom.2020.00043), independent of any noise estimate and "
        "comparable between sources; nsd (n × noise SD, Ureña Horno et al. 2025, doi:10.1039/d5nr02393a) "
        "takes in more of faint sources. Nearby sources are split and their neighbours' signal removed.",
    )
    p.add_argument("mpi", metavar="MPI", help="MPI image")
    p.add_argument(
        "--seed",
        action="append",
        default=[],
        metavar="X,Y,Z",
        help="a point near a hot spot, physical mm in the MPI's frame (repeatable; use --seed=X,Y,Z for negative values)",
    )
    p.add_argument(
        "--method",
        choices=("halfmax", "nsd", "kmeans"),
        default="halfmax",
        help="ROI method (default halfmax: the field's convention, insensitive to the noise estimate; "
        "nsd is better for faint sources)",
    )
    p.add_argument(
        "--fraction",
        type=float,
        default=HALFMAX_FRACTION,
        help=f"halfmax: threshold as a fraction of the peak (default {HALFMAX_FRACTION:g})",
    )
    p.add_argument(
        "--n-sd", type=float, default=N_SD, help=f"nsd: threshold in noise SDs (default {N_SD:g})"
    )
    p.add_argument(
        "--noise-sd",
        type=float,
        metavar="AU",
        help="noise SD in a.u. (default: robust estimate from the image)",
    )
    p.add_argument(
        "--no-split", action="store_true", help="do not split regions holding several sources"
    )
    p.add_argument(
        "--spacing-mm", metavar="X,Y,Z", help="voxel size for files without one (e.g. .mat), mm"
    )
    p.add_argument(
        "--origin-mm", metavar="X,Y,Z", help="position of the first voxel for files without one, mm"
    )
    p.add_argument(
        "--saturation-curve",
        metavar="CSV",
        help="receiver response (measured,true signal), applied before any statistic",
    )
    p.add_argument(
        "-o", "--output", metavar="OUT.csv", required=True, help="results table to write"
    )
    p.add_argument(
        "--masks", metavar="OUT.nii.gz", help="also write the ROIs as a label image on the MPI grid"
    )
    p.add_argument(
        "--mask",
        metavar="LABELS.nii.gz",
        help="a label image on the MPI grid (e.g. painted in napari): each non-zero label is measured "
        "as a manual ROI, in addition to the seeds or instead of them",
    )
    _add_calibration_flags(p)
    p.add_argument(
        "--save-session",
        metavar="S.json",
        help="also save the analysis as a session (inputs hashed) that `mpi-viewer replay` recomputes",
    )


def _quantify_params(args):
    from mpi_viewer.roi._saturation import SaturationCurve
    from mpi_viewer.roi.regions import ROIParams

    curve = SaturationCurve.from_csv(args.saturation_curve) if args.saturation_curve else None
    return ROIParams(
        method=args.method,
        fraction=args.fraction,
        n_sd=args.n_sd,
        noise_sd=args.noise_sd,
        split_sources=not args.no_split,
        saturation_curve=curve,
    )


def _cmd_quantify(args) -> int:
    """Read the MPI, measure one ROI per seed (and per label of --mask), add the calibration
    columns, write CSV (+ masks)."""
    from pathlib import Path

    from mpi_viewer.io import tables as res
    from mpi_viewer.io.images import read_volume
    from mpi_viewer.roi.regions import write_masks_nifti
    from mpi_viewer.study.quantify import run_quantify

    label_image = getattr(args, "mask", None)
    if not args.seed and not label_image:
        raise InputError(
            "quantify: give at least one --seed=X,Y,Z (mm, in the MPI's frame) or --mask LABELS.nii.gz"
        )
    params = _quantify_params(args)
    src = Path(args.mpi).resolve()
    for out in filter(None, (args.output, args.masks)):
        if Path(out).resolve() == src or (
            label_image and Path(out).resolve() == Path(label_image).resolve()
        ):
            raise InputError(f"{out}: refusing to overwrite an input image")
    mpi = read_volume(
        args.mpi,
        modality="MPI",
        spacing_mm=_vec_or_none(args.spacing_mm, "--spacing-mm"),
        origin_mm=_vec_or_none(args.origin_mm, "--origin-mm"),
    )
    seeds = [parse_vector(s, n=mpi.ndim, what="--seed") for s in args.seed]
    _check_cells_flags(args)
    rec = run_quantify(args, mpi, seeds, params)  # the one pipeline; saves --save-session
    if getattr(args, "save_session", None):
        print(f"wrote {args.save_session}")
    results = [r for _, rs in rec.rois for r in rs]
    rows = rec.rows
    if args.masks:
        write_masks_nifti(args.masks, mpi, results)
    res.write_csv(args.output, rows)
    for r in results:
        print(
            f"{r.name}: total signal {r.total_signal:.6g} {r.total_signal_unit}, peak {r.peak_au:.4g} a.u., "
            f"{r.size:.4g} {r.size_unit}" + (f" [{', '.join(r.flags)}]" if r.flags else "")
        )
    print(f"wrote {args.output}" + (f" and {args.masks}" if args.masks else ""))
    return 0


def _vec_or_none(text, what):
    if text is None:
        return None
    return parse_vector(text, n=None, what=what)


# -- calibration and cells (quantify's calibration hook; the calibrate command) -------------------
def _add_calibration_flags(p) -> None:
    """quantify's calibration and cell flags (issue 6/7)."""
    from mpi_viewer.defaults import CONFIDENCE

    g = p.add_argument_group("calibration → iron (µg Fe) and cells")
    src = g.add_mutually_exclusive_group()
    src.add_argument(
        "--phantoms",
        metavar="CSV",
        help="phantoms in this image (name,x,y,z,iron_ug; MPI mm), measured with the same ROI method",
    )
    src.add_argument(
        "--calibration",
        metavar="JSON",
        help="a saved calibration (mpi-viewer calibrate, or the library)",
    )
    _add_fit_flags(g)
    g.add_argument(
        "--iron-per-cell",
        type=float,
        metavar="PG",
        help="iron per labelled cell, pg Fe/cell (adds cells)",
    )
    g.add_argument(
        "--iron-per-cell-sd",
        type=float,
        metavar="PG",
        help="SD of the iron per cell, pg Fe/cell (default 0)",
    )
    g.add_argument(
        "--confidence",
        type=float,
        default=CONFIDENCE,
        help=f"confidence of the intervals (default {CONFIDENCE:g})",
    )


def _add_fit_flags(g) -> None:
    g.add_argument(
        "--through-origin",
        action="store_true",
        help="force the calibration line through the origin",
    )
    g.add_argument(
        "--weighting",
        choices=("ols", "relative"),
        default="ols",
        help="ordinary least squares or relative (1/signal²) weights (default ols)",
    )
    g.add_argument(
        "--reference-phantom",
        metavar="NAME",
        help="single-reference mode: slope from this one phantom (signal / iron)",
    )
    g.add_argument(
        "--calibration-kind",
        choices=("iron", "cells"),
        default="iron",
        help="phantoms hold iron (µg, default) or labelled cells (the iron_ug column then counts cells)",
    )


def _check_cells_flags(args) -> None:
    """quantify's cell flags, checked before anything is measured."""
    if getattr(args, "iron_per_cell", None) is None:
        if getattr(args, "iron_per_cell_sd", None) is not None:
            raise InputError("--iron-per-cell-sd needs --iron-per-cell")
        return
    from mpi_viewer.calibration.cells import IronPerCell

    IronPerCell(args.iron_per_cell, args.iron_per_cell_sd or 0.0)  # a one-line error if bad
    if not (getattr(args, "phantoms", None) or getattr(args, "calibration", None)):
        raise InputError(
            "--iron-per-cell needs a calibration (--phantoms CSV or --calibration JSON)"
        )


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="build a calibration (JSON) from phantoms in an MPI image")
    p.add_argument("mpi", metavar="MPI", help="MPI image holding the phantoms")
    p.add_argument(
        "--phantoms",
        metavar="CSV",
        required=True,
        help="phantoms: name,x,y,z,iron_ug (MPI mm, µg Fe)",
    )
    p.add_argument(
        "--method",
        choices=("halfmax", "nsd", "kmeans"),
        default="halfmax",
        help="ROI method (default halfmax): use the one you will quantify with",
    )
    p.add_argument(
        "--fraction",
        type=float,
        default=0.5,
        help="halfmax: threshold fraction of the peak (default 0.5)",
    )
    p.add_argument(
        "--n-sd", type=float, default=5.0, help="nsd: threshold in noise SDs (default 5)"
    )
    p.add_argument(
        "--noise-sd", type=float, metavar="AU", help="noise SD in a.u. (default: estimated)"
    )
    p.add_argument(
        "--no-split", action="store_true", help="do not split regions holding several sources"
    )
    p.add_argument(
        "--saturation-curve",
        metavar="CSV",
        help="receiver response (measured,true signal), applied before any statistic",
    )
    _add_fit_flags(p)
    p.add_argument("--name", help="calibration name (default: the phantom file's name)")
    p.add_argument("--tracer", help="tracer (default: the image's metadata)")
    p.add_argument("--tracer-lot", help="tracer lot")
    p.add_argument(
        "--environment",
        choices=("solution", "cells"),
        help="phantoms in solution or labelled cells",
    )
    p.add_argument(
        "--preparation",
        choices=("fixed_concentration", "fixed_volume"),
        default="fixed_concentration",
        help="how the phantoms were made (default fixed_concentration)",
    )
    p.add_argument("--notes", default="", help="free text kept with the calibration")
    p.add_argument(
        "--library", metavar="DIR", help="also add the calibration to this library folder"
    )
    p.add_argument(
        "-o", "--output", metavar="OUT.json", required=True, help="calibration JSON to write"
    )


def _cmd_calibrate(args) -> int:
    from pathlib import Path

    from mpi_viewer import calibration as cal
    from mpi_viewer.io.images import read_volume
    from mpi_viewer.study.pipeline import calibration_from_phantoms
    from mpi_viewer.study.quantify import calibration_options

    params = _quantify_params(args)  # the same ROI parameters quantify builds from the same flags
    out = Path(args.output)
    if Path(args.phantoms).resolve() == out.resolve():
        raise InputError(f"{out}: refusing to overwrite the phantom file")
    mpi = read_volume(args.mpi, modality="MPI")
    acq = mpi.acquisition
    options = calibration_options(args, mpi) | {
        "environment": args.environment,
        "preparation": args.preparation,
        "notes": args.notes,
    }
    c = calibration_from_phantoms(mpi, args.phantoms, params, options)
    if args.library:
        cal.CalibrationLibrary(args.library).add(c)
    cal.save_calibration(c, out)
    f = c.fit
    print(c.summary())
    if f.mode == "line":
        print(
            f"slope {f.slope:.6g} ± {f.se_slope:.3g} a.u.·mm³/{c.x_unit}, intercept {f.intercept:.6g} ± "
            f"{f.se_intercept:.3g} a.u.·mm³, R² {f.r_squared:.5f}, residual SD {f.residual_sd:.4g}, dof {f.dof}"
        )
    for w in cal.compatibility_warnings(c, acq, params):
        print(f"warning: {w}")
    print(f"calibration: {out}")
    return 0


# -- replay / report ------------------------------------------------------------------------
def _add_replay(sub) -> None:
    p = sub.add_parser(
        "replay", help="recompute saved sessions and compare with their stored results"
    )
    p.add_argument("sessions", nargs="+", metavar="SESSION", help="session JSON files")
    p.add_argument("-o", "--output", metavar="OUT.csv", help="write the recomputed results")
    p.add_argument(
        "--allow-changed-inputs",
        action="store_true",
        help="replay even when an input file's SHA-256 differs from the session's",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on a Dask distributed scheduler (e.g. tcp://host:8786) instead of local processes",
    )
    p.add_argument(
        "--jobs", type=int, metavar="N", help="local worker processes (default: the usable cores)"
    )


def _cmd_replay(args) -> int:
    """Exit 0: every number matches (relative difference ≤ 1e-9); 1: differences
    (listed on stdout); 2: bad input (one line per session on stderr)."""
    from mpi_viewer.study.batch import TextProgress, replay_many
    from mpi_viewer.study.session import load_session

    said = set()
    for path in args.sessions:  # files outside a session's folder: said before they are opened
        try:
            for w in load_session(path).warnings:
                print(f"mpi-viewer: note: {_one_line(w)}", file=sys.stderr)
                said.add(w)
        except MPIViewerError:
            pass  # reported with the outcome
    progress = TextProgress(sys.stderr) if len(args.sessions) > 1 else None
    outcomes = replay_many(
        args.sessions,
        jobs=args.jobs,
        scheduler=args.scheduler,
        allow_changed_inputs=args.allow_changed_inputs,
        progress=progress,
    )
    for o in outcomes:
        for w in o.warnings:
            if w not in said:
                print(f"mpi-viewer: note: {_one_line(w)}", file=sys.stderr)
        if o.status == 2:
            print(f"mpi-viewer: error: {_one_line(o.message)}", file=sys.stderr)
        elif o.status == 1:
            print(f"{o.path}: {len(o.differences)} difference(s)")
            for d in o.differences:
                print(f"  {d}")
        else:
            print(f"{o.path}: every number matches")
    if args.output and any(o.status != 2 for o in outcomes):
        from mpi_viewer.io.tables import write_csv

        rows = [{"session": o.path, **r} for o in outcomes if o.status != 2 for r in o.rows]
        write_csv(args.output, rows)
    if len(outcomes) > 1:
        counts = [sum(o.status == s for o in outcomes) for s in (0, 1, 2)]
        print(
            f"{len(outcomes)} sessions: {counts[0]} match, {counts[1]} differ, {counts[2]} bad input"
        )
    return max(o.status for o in outcomes)


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="write a study report (CSV, masks, transform, plots, HTML)")
    p.add_argument("session", metavar="SESSION", help="session JSON file")
    p.add_argument(
        "-o", "--output", metavar="DIR", required=True, help="report folder (new or empty)"
    )


def _cmd_report(args) -> int:
    from mpi_viewer.report.study_report import write_session_report
    from mpi_viewer.study.session import load_session

    session = load_session(args.session)
    for w in session.warnings:
        print(f"mpi-viewer: note: {_one_line(w)}", file=sys.stderr)
    out = write_session_report(session, args.output)
    print(f"report: {out}")
    return 0


COMMANDS = {
    "demo": (_add_demo, _cmd_demo),
    "register": (_add_register, _cmd_register),
    "quantify": (_add_quantify, _cmd_quantify),
    "calibrate": (_add_calibrate, _cmd_calibrate),
    "replay": (_add_replay, _cmd_replay),
    "report": (_add_report, _cmd_report),
}


def build_parser(*, with_files: bool = True) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mpi-viewer",
        description="MPI cell-tracking studies: coregistration, half-maximum ROIs, calibration, iron and cells. "
        "Without a command, opens napari with the mpi-viewer docks.",
    )
    parser.add_argument("--version", action="version", version=f"mpi-viewer {__version__}")
    if with_files:  # a positional before the sub-commands would swallow the command's name
        parser.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # "mpi-viewer scan.nii" opens files in the GUI; anything that names a command is a command
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        files = argv
        argv = []
    else:
        files = []
    parser = build_parser(with_files=not argv or argv[0] not in COMMANDS)
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            return _run_gui(files=files)
        return COMMANDS[args.command][1](args)
    except MPIViewerError as exc:
        print(f"mpi-viewer: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        print("mpi-viewer: interrupted", file=sys.stderr)
        return 130


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
