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


def _frame_value(text: str):
    """``--frame``: a frame number from 0, or ``mean``."""
    t = text.strip().lower()
    if t == "mean":
        return "mean"
    try:
        v = int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a frame number (from 0) or 'mean'"
        ) from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: frames are counted from 0")
    return v


def _channel_value(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a channel number (from 0)") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: channels are counted from 0")
    return v


def _add_image_choice_flags(p, image: str = "MPI") -> None:
    """``--frame``, ``--channel``, ``--variable``: which image of a multi-part file to read."""
    g = p.add_argument_group(f"which image of a multi-part {image} file")
    g.add_argument(
        "--frame",
        type=_frame_value,
        metavar="N|mean",
        help="multi-frame MDF: the reconstructed frame to use (from 0), or 'mean' of all frames",
    )
    g.add_argument(
        "--channel",
        type=_channel_value,
        metavar="N",
        help="multispectral MDF: the reconstructed channel to use (from 0)",
    )
    g.add_argument(
        "--variable",
        metavar="NAME",
        help=".mat/.npz holding several arrays: the one to open",
    )


def _image_choice(args) -> dict:
    sel = {k: getattr(args, k, None) for k in ("frame", "channel", "variable")}
    return {k: v for k, v in sel.items() if v is not None}


def _print_notes(vol) -> None:
    """What the reader did to the image that the user should know (e.g. overscan cropped)."""
    for note in vol.metadata.get("notes", []) if isinstance(vol.metadata, dict) else []:
        print(f"mpi-viewer: note: {vol.source or vol.name}: {note}", file=sys.stderr)


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
    p.add_argument(
        "--psf",
        choices=("langevin", "gaussian"),
        default="langevin",
        help="the MPI's point-spread function: the x-space Langevin kernel of a field-free-point "
        "scanner, with its long tails (default), or the earlier demo's anisotropic Gaussian",
    )


def _cmd_demo(args) -> int:
    if args.write:
        from pathlib import Path

        from mpi_viewer.demo.study import DEMO_FILES, write_demo_study

        _guard(args, {f"--write ({n})": Path(args.write) / n for n in DEMO_FILES})

        paths = write_demo_study(args.write, psf=args.psf)
        for key, p in paths.items():
            print(f"{key}: {p}")
        _print_demo_sources(paths["sources"])
        return 0
    return _run_gui(
        demo=True, screenshot=args.screenshot, ndisplay=args.ndisplay, demo_psf=args.psf
    )


def _print_demo_sources(path) -> None:
    """Where the demo's hot spots are (MPI mm), as the --seed flags that measure them."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    print("labelled-cell sources (MPI frame, mm; seed them with --seed=X,Y,Z):")
    for r in rows:
        xyz = ",".join(f"{float(r[k]):.1f}" for k in "xyz")
        print(f"  {r['name']:<9} --seed={xyz}")


def _run_gui(
    *,
    demo: bool = False,
    files: Sequence[str] = (),
    screenshot: str | None = None,
    ndisplay: int = 2,
    demo_psf: str = "langevin",
) -> int:
    try:
        from mpi_viewer.plugins import _launch  # the GUI: the one import of plugins/ from the core
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InputError(
            f"the napari plugin is not installed ({exc}); run: pip install -e ."
        ) from None
    if demo_psf != "langevin":  # the default demo's call unchanged
        return _launch.run(
            demo=demo, files=list(files), screenshot=screenshot, ndisplay=ndisplay, psf=demo_psf
        )
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
    p.add_argument(
        "--max-rotation-deg",
        type=float,
        default=None,
        metavar="DEG",
        help="with --template: the mold turns by at most DEG degrees between the two scans "
        "(default 45; both scans head-first, or both feet-first); decides between poses that "
        "fit few visible wells equally well; 180 = no prior",
    )
    p.add_argument(
        "--pose",
        type=int,
        default=None,
        metavar="N",
        help="with --template: use candidate pose N of those printed when the wells fit more than one",
    )
    _add_strict(p)
    _add_image_choice_flags(p, "MOVING")


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
    if has_points and (args.pose is not None or args.max_rotation_deg is not None):
        raise InputError("register: --pose and --max-rotation-deg go with --template")
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
    template = args.template if args.template and Path(args.template).is_file() else None
    _guard(
        args,
        {"-o": out},
        [args.fixed, args.moving, args.fixed_points, args.moving_points, template],
    )
    fixed = read_volume(args.fixed)
    moving = read_volume(args.moving, **_image_choice(args))
    _print_notes(moving)
    if args.template:
        from mpi_viewer.registration.molds import (
            MAX_ROTATION_DEG,
            AmbiguousPoseError,
            register_with_template,
        )

        try:
            result = register_with_template(
                fixed,
                moving,
                args.template,
                model=params.model,
                exclude=params.exclude,
                fle_mm=params.fle_mm,
                fre_tolerance_mm=params.fre_tolerance_mm,
                max_rotation_deg=MAX_ROTATION_DEG
                if args.max_rotation_deg is None
                else args.max_rotation_deg,
                pose=args.pose,
            )
        except AmbiguousPoseError as exc:
            for c in exc.candidates:
                print(c.summary())
            n = len(exc.candidates)
            raise InputError(
                f"{exc} with --pose 1" + (f" to --pose {n}" if n > 1 else "")
            ) from None
        fit = result.fit
        lines = [*result.report_lines(), *fit.report_lines()]
    else:
        fit = _register_points(args, fixed, moving, params)
        lines = fit.report_lines()
    warnings = _print_lines(lines)
    if args.strict and warnings:
        raise InputError(f"--strict: {warnings} warning(s) above; nothing written")
    out.parent.mkdir(parents=True, exist_ok=True)  # the rule of every command: create the folder
    write_transform(out, fit)
    print(
        f"wrote {out} (ITK transform, fixed → moving: {Path(args.fixed).name} → {Path(args.moving).name})"
    )
    return 0


def _print_lines(lines) -> int:
    """Print report lines: ``warning: …`` lines on stderr (one line each), the rest on stdout.
    Returns the number of warnings."""
    n = 0
    for line in lines:
        if line.startswith("warning: "):
            n += 1
            print(f"mpi-viewer: {_one_line(line)}", file=sys.stderr, flush=True)
        else:
            print(line, flush=True)
    return n


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
def _add_roi_flags(p, *, method_help: str) -> None:
    """The ROI method and its parameters, the same for quantify and calibrate (a calibration
    must be measured as its targets are)."""
    p.add_argument(
        "--method", choices=("halfmax", "nsd", "kmeans"), default="halfmax", help=method_help
    )
    p.add_argument(
        "--fraction",
        type=float,
        default=0.5,
        help="halfmax: threshold as a fraction of the peak (default 0.5)",
    )
    p.add_argument(
        "--peak",
        choices=("subvoxel", "voxel"),
        default="subvoxel",
        help="halfmax: the maximum the fraction is taken of: the sub-voxel fitted peak (default) "
        "or the brightest voxel, as a DICOM viewer's ROI tool reads it (Horos)",
    )
    p.add_argument(
        "--n-sd", type=float, default=5.0, help="nsd: threshold in noise SDs (default 5)"
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
        "--saturation-curve",
        metavar="CSV",
        help="receiver response (measured,true signal), applied before any statistic",
    )


def _add_quantify(sub) -> None:

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
    _add_roi_flags(
        p,
        method_help="ROI method (default halfmax: the field's convention, insensitive to the noise "
        "estimate; nsd is better for faint sources)",
    )
    p.add_argument(
        "--spacing-mm", metavar="X,Y,Z", help="voxel size for files without one (e.g. .mat), mm"
    )
    p.add_argument(
        "--origin-mm", metavar="X,Y,Z", help="position of the first voxel for files without one, mm"
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
    g = p.add_argument_group("registration (recorded in the session, shown in the report)")
    g.add_argument(
        "--transform",
        metavar="MRI_TO_MPI.tfm",
        help="ITK transform anatomy → MPI (from `mpi-viewer register`); needs --anatomy",
    )
    g.add_argument(
        "--anatomy",
        metavar="MRI",
        help="the MRI or CT the transform maps from (the report draws the ROIs on it)",
    )
    _add_image_choice_flags(p)
    p.add_argument(
        "--save-session",
        metavar="S.json",
        help="also save the analysis as a session (inputs hashed) that `mpi-viewer replay` recomputes",
    )
    _add_strict(p)


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
        peak_convention=getattr(args, "peak", "subvoxel"),
    )


def _cmd_quantify(args) -> int:
    """Read the MPI, measure one ROI per seed (and per label of --mask), add the calibration
    columns, print the table and every warning, write CSV (+ masks, session)."""
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
    if args.transform and not args.anatomy:
        raise InputError(
            "--transform needs --anatomy MRI (the image the transform maps from, anatomy → MPI)"
        )
    _guard(
        args,
        {"-o": args.output, "--masks": args.masks, "--save-session": args.save_session},
        [args.mpi, label_image, args.phantoms, args.calibration, args.saturation_curve]
        + [getattr(args, k, None) for k in ("transform", "anatomy")],
    )
    params = _quantify_params(args)
    mpi = read_volume(
        args.mpi,
        modality="MPI",
        spacing_mm=_vec_or_none(args.spacing_mm, "--spacing-mm"),
        origin_mm=_vec_or_none(args.origin_mm, "--origin-mm"),
        **_image_choice(args),
    )
    registration = _quantify_registration(args, mpi)  # read before measuring: bad files fail fast
    _check_calibration_method(args, params)
    _print_notes(mpi)
    seeds = [parse_vector(s, n=mpi.ndim, what="--seed") for s in args.seed]
    _check_cells_flags(args)
    if registration is not None:
        args.anatomy_modality = registration.modality
    # the one pipeline (as replay and the docks): the numbers printed, written and saved
    study, rec = run_quantify(args, mpi, seeds, params)
    results = [r for _, rs in rec.rois for r in rs]
    rows = rec.rows
    # every warning is in the CSV's warnings column already (ROI and calibration ones)
    warnings = _roi_warnings(results, rec.quantities)
    common = _common_warnings(warnings)
    if registration is not None:
        common += registration.warnings(results)
    _print_table(rows, warnings, common, confidence=args.confidence)
    n_warn = sum(len(w) for w in warnings) + len(common)
    if args.strict and n_warn:
        raise InputError(f"--strict: {n_warn} warning(s) above; nothing written")
    from mpi_viewer.io.atomic import written_together

    save = getattr(args, "save_session", None)
    for out in filter(None, (args.output, args.masks, save)):
        Path(out).parent.mkdir(parents=True, exist_ok=True)  # every command creates the folder
    with written_together(args.output, args.masks, save):
        if save:
            from mpi_viewer.study.pipeline import save_computed

            print(f"wrote {save_computed(study, rec, save)}")
        if args.masks:
            write_masks_nifti(args.masks, mpi, results)
        res.write_csv(args.output, rows)
    print(f"wrote {args.output}" + (f" and {args.masks}" if args.masks else ""))
    return 0


def _check_calibration_method(args, params) -> None:
    """A --calibration measured with another ROI method or parameters than the targets:
    an error (before any measuring) unless --allow-method-mismatch."""
    if not getattr(args, "calibration", None) or getattr(args, "allow_method_mismatch", False):
        return
    from mpi_viewer.calibration.record import load_calibration, roi_mismatches

    mismatch = roi_mismatches(load_calibration(args.calibration), params)
    if mismatch:
        raise InputError(
            f"{args.calibration}: {mismatch[0]}; quantify with the calibration's ROI method and "
            "parameters, or add --allow-method-mismatch"
        )


class _Registration:
    """quantify's --transform/--anatomy, read and checked before any measuring."""

    def __init__(self, anatomy, matrix, translation, modality):
        self.anatomy = anatomy
        self.matrix = matrix
        self.translation = translation
        self.modality = modality

    def warnings(self, results) -> list[str]:
        """ROIs whose peak maps outside the anatomy through the transform."""
        import numpy as np

        out = []
        if self.anatomy is None or not results:
            return out
        peaks = np.array([r.peak_mm for r in results], dtype=float)
        if self.matrix is not None:
            peaks = np.linalg.solve(self.matrix, (peaks - self.translation).T).T
        inside = self.anatomy.contains_physical(peaks)
        for r, ok in zip(results, inside, strict=True):
            if not ok:
                out.append(
                    f"{r.name} lies outside the anatomy {self.anatomy.name} through the transform"
                )
        return out


def _quantify_registration(args, mpi):
    if not args.anatomy:
        return None
    from mpi_viewer.io.images import read_volume

    anatomy = read_volume(args.anatomy)
    if anatomy.ndim != mpi.ndim:
        raise InputError(
            f"{args.anatomy}: a {anatomy.ndim}-D image, but the MPI {args.mpi} is {mpi.ndim}-D; "
            f"give a {mpi.ndim}-D anatomy (a 2-D MPI projection pairs with a 2-D projection)"
        )
    modality = "CT" if str(anatomy.modality).upper() == "CT" else "MRI"
    matrix = translation = None
    if args.transform:
        from mpi_viewer.io.transform_files import load_transform

        try:
            matrix, translation = load_transform(args.transform)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise InputError(f"{args.transform}: not a 3-D linear transform ({exc})") from None
        if len(translation) != mpi.ndim:
            raise InputError(
                f"{args.transform}: a {len(translation)}-D transform for the {mpi.ndim}-D MPI "
                f"{args.mpi}"
            )
    return _Registration(anatomy, matrix, translation, modality)


def _roi_warnings(results, quantities) -> list[list[str]]:
    """Each ROI's warnings (ROI and calibration), one sentence each, without bare flag names."""
    out = []
    for i, r in enumerate(results):
        flags = set(r.flags)
        texts = list(r.warnings)
        if quantities:
            texts += list(quantities[i].warnings)
        seen: list[str] = []
        for t in texts:
            t = " ".join(str(t).split()).rstrip(".")
            if t and t not in flags and t not in seen:
                seen.append(t)
        out.append(seen)
    return out


def _common_warnings(warnings: list[list[str]]) -> list[str]:
    """Warnings every ROI has (said once, after the table), removed from the per-ROI lists."""
    if len(warnings) < 2:
        return []
    common = [w for w in warnings[0] if all(w in ws for ws in warnings[1:])]
    for ws in warnings:
        ws[:] = [w for w in ws if w not in common]
    return common


def _fmt_num(v, digits: int = 4) -> str:
    import math

    if v is None or v == "" or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    v = float(v)
    if abs(v) >= 10 ** (digits + 1):
        return f"{v:,.0f}".replace(",", " ")
    return f"{v:.{digits}g}"


def _with_ci(row, key, low, high, digits=4) -> str:
    """``18.05 [18.00–18.10]``: the value to ``digits`` significant digits, its interval to
    the same decimals; large counts in whole numbers with thin spaces."""
    import math

    v = row.get(key)
    if v is None or not math.isfinite(float(v)):
        return "—"
    v = float(v)
    if abs(v) >= 10 ** (digits + 1):  # counts: whole numbers, the interval's ends too

        def whole(x):
            if x is None or x == "" or not math.isfinite(float(x)):
                return "—"
            return f"{float(x):,.0f}".replace(",", " ")

        return f"{whole(v)} [{whole(row.get(low))}–{whole(row.get(high))}]"
    dec = max(0, digits - 1 - math.floor(math.log10(abs(v)))) if v else digits - 1

    def f(x):
        if x is None or x == "" or not math.isfinite(float(x)):
            return "—"
        return f"{float(x):.{dec}f}"

    return f"{f(v)} [{f(row.get(low))}–{f(row.get(high))}]"


def _print_table(rows, warnings, common, *, confidence: float = 0.95) -> None:
    """The readable table on stdout (ROI, signal, iron, cells, flags), each ROI's warnings on
    stderr right after its row, then the warnings every ROI shares."""
    ci = f"{100 * confidence:g} % CI"
    has_iron = any("iron_ug" in r for r in rows)
    has_cells = any("cells" in r for r in rows)
    signal_key = next(
        (k for k in (rows[0] if rows else {}) if k.startswith("total_signal_au")), None
    )
    header = [
        "ROI",
        "signal a.u.·mm³" if signal_key == "total_signal_au_mm3" else "signal a.u.·mm²",
    ]
    if has_iron:
        header.append(f"iron µg [{ci}]")
    if has_cells:
        header.append(f"cells [{ci}]")
    header.append("flags")
    table = []
    for r in rows:
        cells = [str(r.get("name", "")), _fmt_num(r.get(signal_key), 6)]
        if has_iron:
            cells.append(
                "below detection limit"
                if r.get("below_lod")
                else _with_ci(r, "iron_ug", "iron_ci_low_ug", "iron_ci_high_ug")
            )
        if has_cells:
            cells.append(
                "—"
                if r.get("below_lod")
                else _with_ci(r, "cells", "cells_ci_low", "cells_ci_high", 3)
            )
        cells.append(", ".join(f for f in str(r.get("flags") or "").split(";") if f) or "-")
        table.append(cells)
    widths = [max(len(c[i]) for c in [header, *table]) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    print(line(header), flush=True)
    for cells, ws in zip(table, warnings, strict=True):
        print(line(cells), flush=True)
        for w in ws:
            print(f"mpi-viewer: warning: {cells[0]}: {_one_line(w)}", file=sys.stderr, flush=True)
    for w in common:
        who = "every ROI" if len(rows) > 1 else (rows[0].get("name") if rows else "")
        print(f"mpi-viewer: warning: {who}: {_one_line(w)}", file=sys.stderr, flush=True)


def _add_strict(p) -> None:
    p.add_argument(
        "--strict",
        action="store_true",
        help="treat every warning as an error: exit status 2 and nothing written (for pipelines)",
    )


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
    g.add_argument(
        "--allow-method-mismatch",
        action="store_true",
        help="apply a --calibration made with another ROI method or parameters (an error otherwise: "
        "iron from a calibration measured differently is biased)",
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
    _add_roi_flags(
        p, method_help="ROI method (default halfmax): use the one you will quantify with"
    )
    _add_fit_flags(p)
    _add_image_choice_flags(p)
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
    _add_strict(p)


def _cmd_calibrate(args) -> int:
    from pathlib import Path

    from mpi_viewer import calibration as cal
    from mpi_viewer.io.images import read_volume
    from mpi_viewer.study.pipeline import calibration_from_phantoms
    from mpi_viewer.study.quantify import calibration_options

    _guard(args, {"-o": args.output}, [args.mpi, args.phantoms, args.saturation_curve])
    params = _quantify_params(args)  # the same ROI parameters quantify builds from the same flags
    out = Path(args.output)
    if Path(args.phantoms).resolve() == out.resolve():
        raise InputError(f"{out}: refusing to overwrite the phantom file")
    mpi = read_volume(args.mpi, modality="MPI", **_image_choice(args))
    _print_notes(mpi)
    acq = mpi.acquisition
    # name, tracer and lot default to the file's stem and the image's metadata there
    options = calibration_options(args, mpi) | {
        "environment": args.environment,
        "preparation": args.preparation,
        "notes": args.notes,
    }
    c = calibration_from_phantoms(mpi, args.phantoms, params, options)
    f = c.fit
    print(c.summary())
    if f.mode == "line":
        print(
            f"slope {f.slope:.6g} ± {f.se_slope:.3g} a.u.·mm³/{c.x_unit}, intercept {f.intercept:.6g} ± "
            f"{f.se_intercept:.3g} a.u.·mm³, R² {f.r_squared:.5f}, residual SD {f.residual_sd:.4g}, dof {f.dof}",
            flush=True,
        )
    warnings = cal.compatibility_warnings(c, acq, params)
    for w in warnings:
        print(f"mpi-viewer: warning: {_one_line(w)}", file=sys.stderr, flush=True)
    if args.strict and warnings:
        raise InputError(f"--strict: {len(warnings)} warning(s) above; nothing written")
    out.parent.mkdir(parents=True, exist_ok=True)  # the rule of every command: create the folder
    if args.library:
        cal.CalibrationLibrary(args.library).add(c)
    cal.save_calibration(c, out)
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
    inputs = list(args.sessions)
    for path in args.sessions:  # files outside a session's folder: said before they are opened
        try:
            session = load_session(path)
            inputs += [session.resolve(rel) for _, rel, _ in session.all_files()]
            for w in session.warnings:
                print(f"mpi-viewer: note: {_one_line(w)}", file=sys.stderr)
                said.add(w)
        except MPIViewerError:
            pass  # reported with the outcome
    _guard(args, {"-o": args.output}, inputs)
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
    p.add_argument(
        "--allow-changed-inputs",
        action="store_true",
        help="report even when an input file's SHA-256 differs from the session's",
    )


def _cmd_report(args) -> int:
    from mpi_viewer.report.study_report import check_report_folder, write_session_report
    from mpi_viewer.study.session import load_session

    check_report_folder(args.output, overwrite=args.overwrite)  # before any work
    session = load_session(args.session)
    for w in session.warnings:
        print(f"mpi-viewer: note: {_one_line(w)}", file=sys.stderr)
    _guard_folder(args, session)
    out = write_session_report(
        session,
        args.output,
        overwrite=args.overwrite,
        allow_changed_inputs=args.allow_changed_inputs,
    )
    if session.registration is None:
        print(
            "mpi-viewer: note: the session has no registration: the report shows the MPI "
            + (
                "over the anatomy, assumed to share its frame"
                if any(i.role in ("mri", "ct") for i in session.inputs)
                else "only"
            ),
            file=sys.stderr,
        )
    print(f"report: {out}")
    return 0


def _guard(args, outputs, inputs=()) -> None:
    """Refuse, before any work, outputs that are inputs or exist already (without --overwrite)."""
    from mpi_viewer.io.guards import check_outputs

    check_outputs(outputs, inputs, overwrite=bool(getattr(args, "overwrite", False)))


def _guard_folder(args, session) -> None:
    """``report -o DIR``: DIR must hold none of the session's files (it is replaced whole)."""
    from pathlib import Path

    from mpi_viewer.io.guards import check_name, input_files_of

    out = check_name(args.output).resolve()
    files = [Path(args.session)] + [session.resolve(rel) for _, rel, _ in session.all_files()]
    for f in files:
        for g in input_files_of(f) if f.exists() else [f]:
            if g.resolve().is_relative_to(out):
                raise InputError(
                    f"{args.output}: the report folder holds an input ({g}); choose another folder"
                )


#: Commands that write files: each takes --overwrite.
WRITERS = ("demo", "register", "quantify", "calibrate", "replay", "report")

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
    for name, (add, _) in COMMANDS.items():
        add(sub)
        if name in WRITERS:
            sub.choices[name].add_argument(
                "--overwrite",
                action="store_true",
                help="replace existing output files, or a non-empty report folder (checked "
                "before any work; never an input)",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # "mpi-viewer scan.nii" opens files in the GUI; anything that names a command is a command
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        problem = _not_a_file_or_command(argv)
        if problem:
            print(f"mpi-viewer: error: {problem}", file=sys.stderr)
            return 2
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


def _not_a_file_or_command(words: Sequence[str]) -> str | None:
    """Why ``mpi-viewer WORD …`` cannot open WORD… in the viewer (None when every file exists):
    a mistyped command gets a suggestion, before any display is needed."""
    import difflib
    from pathlib import Path

    first = words[0]
    if not Path(first).exists():
        close = difflib.get_close_matches(first.lower(), list(COMMANDS), n=1, cutoff=0.6)
        if close:
            return f"unknown command {first!r} (did you mean {close[0]}?)"
        if len(words) > 1 or "." not in Path(first).name:
            return (
                f"unknown command {first!r}; commands: {', '.join(COMMANDS)} "
                "(or name image files to open them in the viewer)"
            )
    for w in words:
        if not w.startswith("-") and not Path(w).exists():
            return f"{w}: no such file"
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
