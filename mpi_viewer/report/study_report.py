"""The study report: one folder with the numbers, the masks, the transform and pictures.

:func:`write_report` writes

- ``results.csv``: every ROI, units in the column names, warnings;
- ``roi_masks.nii.gz``: the ROI label image on the native MPI grid (MPI geometry);
- ``transform_fixed_to_moving.tfm``: the registration (ITK, fixed → moving);
- ``calibration.png`` and ``calibration.json``: the fit with its points, prediction
  band and residuals panel, and the calibration record;
- ``roi_<name>.png``: three orthogonal slices through each ROI — the anatomy with
  the MPI resampled onto it through the registration, the ROI outline and a label
  such as "2.4 × 10⁵ cells [1.9–2.9 × 10⁵]";
- ``view_3d.png``: maximum-intensity projections of the MPI over the anatomy along
  the three axes with the ROI labels (a 3-D overview that needs no OpenGL);
- ``index.html``: ties them together with the inputs, software version and date.

Pictures are made with matplotlib's Agg canvas (no display, no pyplot state). The
MPI is only *displayed* through the transform: every number comes from the native
grid. Nothing is written unless the whole report succeeds (it is built in a
temporary folder beside the target, then renamed).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer import __version__
from mpi_viewer.defaults import CONFIDENCE
from mpi_viewer.errors import InputError
from mpi_viewer.study.pipeline import recompute
from mpi_viewer.study.session import Session


# -- report -----------------------------------------------------------------------------------------
def write_session_report(
    session: Session,
    folder: str | Path,
    *,
    overwrite: bool = False,
    allow_changed_inputs: bool = False,
) -> Path:
    """Recompute a session and write its report folder (:func:`mpi_viewer.report.write_report`).

    Raises
    ------
    InputError
        Changed or missing inputs (unless ``allow_changed_inputs``), a report folder
        that exists and is not empty (unless ``overwrite``), or any bad input.
    """
    from mpi_viewer.report.study_report import write_report
    from mpi_viewer.roi.regions import rois_to_label_image

    check_report_folder(folder, overwrite=overwrite)  # before any work
    session.verify_inputs(allow_changed=allow_changed_inputs)
    rec = recompute(session)
    mpi = rec.volumes.get("mpi")
    anatomy = (
        rec.volumes.get(session.registration.fixed)
        if session.registration
        else (rec.volumes.get("mri") or rec.volumes.get("ct"))
    )
    labels = (
        rois_to_label_image(mpi, [r for _, rs in rec.rois for r in rs]) if mpi is not None else None
    )
    inputs = [{"role": i.role, "path": i.path, "sha256": i.sha256} for i in session.inputs]
    return Path(
        write_report(
            folder,
            results_rows=rec.rows,
            mpi=mpi,
            anatomy=anatomy,
            transform=rec.transform(),
            roi_labels=labels,
            calibration=rec.calibration,
            inputs=inputs,
            overwrite=overwrite,
            title=session.report.title,
            iron_per_cell=rec.iron_per_cell,
        )
    )


def check_report_folder(folder: str | Path, *, overwrite: bool = False) -> Path:
    """The report folder, checked before any work: new, empty, or ``overwrite``.

    Raises
    ------
    InputError
        It is a file, or a non-empty folder without ``overwrite``.
    """
    out = Path(folder)
    try:
        exists, is_dir = out.exists(), out.is_dir()
        full = is_dir and any(out.iterdir())
    except OSError as exc:  # a name too long, a folder that cannot be listed
        raise InputError(
            f"{out}: cannot use as the report folder ({exc.strerror or exc})"
        ) from None
    if exists and not is_dir:
        raise InputError(f"{out}: exists and is not a folder")
    if full and not overwrite:
        raise InputError(
            f"{out}: report folder exists and is not empty (choose another folder, or --overwrite to replace it)"
        )
    return out


#: Display grid pixel size (mm) of the slice and projection pictures.
PIXEL_MM = 0.25


#: Half-width (mm) of the field shown around each ROI.
HALF_FIELD_MM = 14.0


def write_report(
    folder: str | Path,
    *,
    results_rows,
    mpi,
    anatomy=None,
    transform=None,
    roi_labels=None,
    calibration=None,
    inputs=None,
    overwrite: bool = False,
    title: str = "mpi-viewer study report",
    iron_per_cell=None,
) -> Path:
    """Write a report folder and return its path (``folder``).

    Parameters
    ----------
    folder : str or Path
        The report folder: new, or existing and empty (``overwrite`` replaces one that
        is not).
    results_rows : list of dict
        One row per ROI (column → value; units in the names) as written by ``quantify``:
        ``name``, ``label``, ``peak_x_mm``… (MPI frame), ``total_signal_au_mm3``,
        ``iron_ug``, ``iron_ci_low_ug``, ``iron_ci_high_ug``, ``cells``,
        ``cells_ci_low``, ``cells_ci_high``, ``below_lod``, ``warnings``.
    mpi : Volume
        The MPI image (native grid).
    anatomy : Volume, optional
        MRI or CT the MPI is shown on (the fixed image of ``transform``).
    transform : SimpleITK.Transform, LandmarkFit, (matrix, translation) or dict, optional
        Fixed (anatomy) → moving (MPI), ITK convention. Without it the two images are
        assumed to share a physical frame (the report says so).
    roi_labels : ndarray of uint, optional
        ROI label image on the MPI grid (numpy z, y, x), values = ``label`` column.
    calibration : Calibration, optional
    inputs : dict or list of dict, optional
        Input files: ``{role: path}`` or ``[{"role", "path", "sha256"}, …]``.
    overwrite : bool
        Replace a non-empty folder.
    iron_per_cell : IronPerCell, optional
        Shown in the page.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        The folder exists and is not empty (without ``overwrite``), or is a file; ROI
        labels of another shape than the MPI.
    """
    out = check_report_folder(folder, overwrite=overwrite)
    rows = [dict(r) for r in (results_rows or [])]
    if roi_labels is not None:
        roi_labels = np.asarray(roi_labels)
        if tuple(roi_labels.shape) != tuple(mpi.shape):
            raise InputError(
                f"ROI labels of shape {roi_labels.shape} do not match the MPI grid {mpi.shape}"
            )
    from mpi_viewer.io.atomic import check_writable_target, write_error

    check_writable_target(out, folder=True)  # names, folders in the way, permissions: one line
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:40]}.", dir=out.parent))
    except OSError as exc:
        raise write_error(out, exc) from None
    try:
        files = _write_all(
            tmp,
            rows=rows,
            mpi=mpi,
            anatomy=anatomy,
            transform=transform,
            roi_labels=roi_labels,
            calibration=calibration,
            inputs=inputs,
            title=title,
            iron_per_cell=iron_per_cell,
        )
        _write_html(
            tmp,
            files,
            rows=rows,
            mpi=mpi,
            anatomy=anatomy,
            transform=transform,
            calibration=calibration,
            inputs=inputs,
            title=title,
            iron_per_cell=iron_per_cell,
        )
        _normal_permissions(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(out, exc) from None
    except RuntimeError as exc:  # ITK writers (a full disk)
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(
            f"{out}: cannot write the report ({' '.join(str(exc).split())[-160:]})"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _normal_permissions(folder: Path) -> None:
    """mkdtemp/mkstemp make private files; give the report the user's usual permissions."""
    from mpi_viewer.io.atomic import default_file_mode

    mode = default_file_mode()
    os.chmod(folder, mode | ((mode & 0o444) >> 2))  # folders: x wherever r
    for f in folder.iterdir():
        os.chmod(f, mode)


# -- pieces ---------------------------------------------------------------------------------------
def _write_all(
    tmp: Path,
    *,
    rows,
    mpi,
    anatomy,
    transform,
    roi_labels,
    calibration,
    inputs,
    title,
    iron_per_cell,
) -> dict[str, Any]:
    from mpi_viewer.io.tables import write_csv

    files: dict[str, Any] = {"slices": []}
    if rows:
        files["results"] = write_csv(tmp / "results.csv", rows).name
    if roi_labels is not None:
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(roi_labels.astype(np.uint16))
        img.CopyInformation(mpi.image)
        sitk.WriteImage(img, str(tmp / "roi_masks.nii.gz"), useCompression=True)
        files["masks"] = "roi_masks.nii.gz"
    tx = _to_sitk(transform, mpi.ndim)
    if transform is not None:
        from mpi_viewer.io.transform_files import write_transform

        write_transform(tmp / "transform_fixed_to_moving.tfm", tx)
        files["transform"] = "transform_fixed_to_moving.tfm"
    if calibration is not None:
        from mpi_viewer.calibration.record import save_calibration

        save_calibration(calibration, tmp / "calibration.json")
        files["calibration_json"] = "calibration.json"
        plot_calibration(calibration, tmp / "calibration.png", rows=rows)
        files["calibration_png"] = "calibration.png"
    if mpi.ndim == 3:
        scene = _Scene(mpi, anatomy, tx, roi_labels, rows, registered=transform is not None)
        for row in rows:
            name = str(row.get("name", "roi"))
            p = tmp / f"roi_{_slug(name)}.png"
            if scene.roi_slices(row, p):
                files["slices"].append((name, p.name))
        scene.projections(tmp / "view_3d.png")
        files["view_3d"] = "view_3d.png"
    return files


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "roi"


def _to_sitk(transform, ndim: int):
    """Any accepted transform as a SimpleITK transform (identity when None)."""
    import SimpleITK as sitk

    if transform is None:
        return sitk.Transform(ndim, sitk.sitkIdentity)
    if isinstance(transform, dict):
        transform = (
            np.asarray(transform["matrix"], dtype=float),
            np.asarray(transform["translation"], dtype=float),
        )
    if isinstance(transform, (list,)) and len(transform) == 2:
        transform = tuple(transform)
    from mpi_viewer.geometry.transform import _as_sitk

    return _as_sitk(transform)


def _num(v) -> float | None:
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _truthy(v) -> bool:
    return str(v).strip().lower() in ("true", "yes", "1")


def roi_label_text(row: dict[str, Any]) -> str:
    """The text shown beside an ROI: cells with interval, else iron, else signal."""
    from mpi_viewer.calibration.cells import format_cells, format_iron

    name = str(row.get("name", "roi"))
    if _truthy(row.get("below_lod")):
        return f"{name}: below detection limit"
    n = _num(row.get("cells"))
    if n is not None:
        return f"{name}: {format_cells(n, _num(row.get('cells_ci_low')), _num(row.get('cells_ci_high')))}"
    fe = _num(row.get("iron_ug"))
    if fe is not None:
        return f"{name}: {format_iron(fe, _num(row.get('iron_ci_low_ug')), _num(row.get('iron_ci_high_ug')))}"
    s = _num(row.get("total_signal_au_mm3", row.get("total_signal_au_mm2")))
    return f"{name}: {s:.4g} a.u.·mm³" if s is not None else name


def short_label_text(row: dict[str, Any]) -> str:
    """The label without its interval, for a small picture: ``isolated: 4.0 × 10⁵ cells``."""
    return roi_label_text(row).split(" [", 1)[0]


def _radius_mm(row) -> float:
    """Radius (mm) of a sphere of the ROI's volume (2 mm when not reported)."""
    v = _num(row.get("volume_mm3"))
    return float((3.0 * v / (4.0 * np.pi)) ** (1.0 / 3.0)) if v and v > 0 else 2.0


def annotate_rois(ax, points, texts, radii_mm, *, fontsize: float = 9, rings: bool = True) -> None:
    """Label ROIs on a matplotlib axes (data in mm): each label beside its ROI, never over
    another label or ROI (:func:`mpi_viewer.report.overlays.place_labels`, in screen
    pixels), a leader line when it had to move away, a ring on each ROI."""
    from matplotlib.patches import Circle

    from mpi_viewer.report.overlays import place_labels, text_size_px

    if not points:
        return
    fig = ax.figure
    ax.apply_aspect()  # the axes' final box (equal aspect), before measuring in pixels
    to_px = ax.transData
    xy = to_px.transform(np.asarray(points, dtype=float))
    mm_px = abs(to_px.transform((1.0, 0.0))[0] - to_px.transform((0.0, 0.0))[0])
    font_px = fontsize * fig.dpi / 72.0
    sizes = [text_size_px(t, font_px) for t in texts]
    bbox = ax.get_window_extent()
    places = place_labels(
        xy,
        sizes,
        np.maximum(np.asarray(radii_mm) * mm_px, 6.0),
        (bbox.x0, bbox.y0, bbox.x1, bbox.y1),
    )
    inv = to_px.inverted()
    for (x, y), r_mm, text, p in zip(points, radii_mm, texts, places, strict=True):
        if rings:
            ax.add_patch(
                Circle((x, y), max(r_mm, 6.0 / mm_px), fill=False, ec="cyan", lw=1.0, alpha=0.9)
            )
        cx, cy = inv.transform(p.centre)
        ax.text(
            cx,
            cy,
            text,
            ha="center",
            va="center",
            fontsize=fontsize,
            color="black",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "cyan", "alpha": 0.9},
            clip_on=True,
        )
        if p.leader is not None:
            (a, b) = inv.transform(np.asarray(p.leader))
            ax.plot([a[0], b[0]], [a[1], b[1]], color="cyan", lw=1.0)


def _roi_position_mpi(row) -> np.ndarray | None:
    for prefix in ("peak", "seed"):
        v = [_num(row.get(f"{prefix}_{a}_mm")) for a in "xyz"]
        if all(x is not None for x in v):
            return np.asarray(v, dtype=float)
    return None


class _Scene:
    """Anatomy + MPI (through the transform) + ROI labels, resampled on display planes."""

    def __init__(self, mpi, anatomy, tx, roi_labels, rows, *, registered=False):
        import SimpleITK as sitk

        self.registered = bool(registered)

        self.mpi = mpi
        self.anatomy = anatomy
        self.tx = tx
        self.rows = rows
        self.labels_img = None
        if roi_labels is not None:
            self.labels_img = sitk.GetImageFromArray(roi_labels.astype(np.uint16))
            self.labels_img.CopyInformation(mpi.image)
        # fixed → moving as (matrix, translation) to map ROI positions back to the anatomy
        from mpi_viewer.geometry.transform import Transform

        self.m, self.t = (
            Transform.from_sitk(tx) if tx.GetName() != "Transform" else Transform.identity()
        )
        mpi_arr = np.asarray(mpi.array, dtype=float)
        self.mpi_max = float(np.nanmax(mpi_arr)) if mpi_arr.size else 1.0
        from mpi_viewer.roi.regions import estimate_noise_sd

        try:
            self.noise = float(estimate_noise_sd(mpi))
        except InputError:
            self.noise = 0.0
        self.display_min = 5.0 * self.noise if self.noise > 0 else 0.02 * self.mpi_max
        ref = anatomy if anatomy is not None else mpi
        self.bounds = _physical_bounds(ref)
        if anatomy is not None:
            a = np.asarray(anatomy.array).ravel()
            self.anat_range = tuple(
                np.percentile(a[:: max(1, a.size // 200_000)].astype(float), [1, 99.5])
            )

    def to_fixed(self, p_mpi):
        return np.linalg.solve(self.m, np.asarray(p_mpi, dtype=float) - self.t)

    # sampling on an axis-aligned plane of the fixed (anatomy) frame
    def _plane(self, centre, axes, half, pixel=PIXEL_MM):
        """Reference image (sitk, size n×m×1) spanning ``axes`` (two of 0,1,2) around centre."""
        import SimpleITK as sitk

        size = [1, 1, 1]
        origin = np.asarray(centre, dtype=float).copy()
        spacing = [pixel, pixel, pixel]
        for a, h in zip(axes, half, strict=True):
            n = int(round(2 * h / pixel)) + 1
            size[a] = n
            origin[a] = centre[a] - h
        ref = sitk.Image(size, sitk.sitkFloat32)
        ref.SetOrigin(origin.tolist())
        ref.SetSpacing(spacing)
        return ref

    def _sample(self, ref, axes):
        import SimpleITK as sitk

        def arr(img, tx, interp, default):
            out = sitk.Resample(img, ref, tx, interp, default, sitk.sitkFloat32)
            return _squeeze_plane(sitk.GetArrayFromImage(out), axes)

        ident = sitk.Transform(3, sitk.sitkIdentity)
        anat = (
            arr(self.anatomy.image, ident, sitk.sitkLinear, 0.0)
            if self.anatomy is not None
            else None
        )
        mpi = arr(self.mpi.image, self.tx, sitk.sitkLinear, 0.0)
        lab = None
        if self.labels_img is not None:
            lab = arr(self.labels_img, self.tx, sitk.sitkNearestNeighbor, 0.0).astype(int)
        return anat, mpi, lab

    def roi_slices(self, row, path: Path) -> bool:
        p_mpi = _roi_position_mpi(row)
        if p_mpi is None:
            return False
        c = self.to_fixed(p_mpi)
        label = int(_num(row.get("label")) or 0)
        fig, canvas = _figure(12.0, 4.6)
        jobs: list = []
        planes = (
            ((0, 1), "axial", ("x (mm)", "y (mm)")),
            ((0, 2), "coronal", ("x (mm)", "z (mm)")),
            ((1, 2), "sagittal", ("y (mm)", "z (mm)")),
        )
        for i, (axes, pname, (xl, yl)) in enumerate(planes):
            ax = fig.add_subplot(1, 3, i + 1)
            ref = self._plane(c, axes, (HALF_FIELD_MM, HALF_FIELD_MM))
            anat, mpi, lab = self._sample(ref, axes)
            ext = (
                c[axes[0]] - HALF_FIELD_MM,
                c[axes[0]] + HALF_FIELD_MM,
                c[axes[1]] - HALF_FIELD_MM,
                c[axes[1]] + HALF_FIELD_MM,
            )
            self._draw(ax, anat, mpi, lab, ext, highlight=label, vmax=_num(row.get("peak_au")))
            ax.plot([c[axes[0]]], [c[axes[1]]], marker="+", color="cyan", markersize=14, mew=1.5)
            jobs.append((ax, axes, lab))
            ax.set_title(f"{pname} through {row.get('name', 'roi')}", fontsize=11)
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
        fig.suptitle(roi_label_text(row), fontsize=15, fontweight="bold")
        fig.text(
            0.5,
            0.005,
            _frame_note(self.anatomy, self.registered),
            ha="center",
            va="bottom",
            fontsize=8,
            color="0.3",
        )
        fig.tight_layout(rect=(0, 0.07, 1, 0.93))
        fig.subplots_adjust(bottom=0.17)
        for ax, axes, lab in jobs:  # every ROI cut by the plane gets its label, placed clear
            in_plane = set(np.unique(lab[lab > 0]).tolist()) if lab is not None else set()
            pts, texts, radii = [], [], []
            for r in self.rows:
                p = _roi_position_mpi(r)
                value = int(_num(r.get("label")) or 0)
                if p is None or (value not in in_plane and value != label):
                    continue
                q = self.to_fixed(p)
                pts.append((q[axes[0]], q[axes[1]]))
                texts.append(short_label_text(r))
                radii.append(_radius_mm(r))
            annotate_rois(ax, pts, texts, radii, fontsize=8, rings=False)
        canvas.print_png(str(path))
        return True

    def _draw(self, ax, anat, mpi, lab, ext, *, highlight=0, vmax=None):
        if anat is not None:
            lo, hi = self.anat_range
            ax.imshow(
                anat,
                cmap="gray",
                vmin=lo,
                vmax=hi,
                origin="lower",
                extent=ext,
                interpolation="bilinear",
            )
        else:
            ax.set_facecolor("black")
        vmax = max(vmax or float(np.nanmax(mpi)), 2 * self.display_min)
        shown = np.ma.masked_less(mpi, self.display_min)
        im = ax.imshow(
            shown,
            cmap=_hot(),
            vmin=self.display_min,
            vmax=vmax,
            origin="lower",
            extent=ext,
            alpha=_fade_in(mpi, self.display_min, vmax),
            interpolation="bilinear",
        )
        if lab is not None and np.any(lab):
            ny, nx = lab.shape
            xs = np.linspace(ext[0], ext[1], nx)
            ys = np.linspace(ext[2], ext[3], ny)
            for value in np.unique(lab[lab > 0]):
                colour = "cyan" if value == highlight else "deepskyblue"
                ax.contour(
                    xs,
                    ys,
                    (lab == value).astype(float),
                    levels=[0.5],
                    colors=[colour],
                    linewidths=1.8 if value == highlight else 1.0,
                )
        ax.set_aspect("equal")
        return im

    def projections(self, path: Path) -> None:
        """MIP of the MPI (through the transform) over a mean projection of the anatomy."""
        import SimpleITK as sitk

        lo, hi = self.bounds
        pixel = max(PIXEL_MM * 2, float(np.max(hi - lo)) / 400.0)
        size = [int(math.ceil((b - a) / pixel)) + 1 for a, b in zip(lo, hi, strict=True)]
        ref = sitk.Image(size, sitk.sitkFloat32)
        ref.SetOrigin(lo.tolist())
        ref.SetSpacing([pixel] * 3)
        ident = sitk.Transform(3, sitk.sitkIdentity)
        mpi = sitk.GetArrayFromImage(
            sitk.Resample(self.mpi.image, ref, self.tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        )
        anat = None
        if self.anatomy is not None:
            anat = sitk.GetArrayFromImage(
                sitk.Resample(
                    self.anatomy.image, ref, ident, sitk.sitkLinear, 0.0, sitk.sitkFloat32
                )
            )
        fig, canvas = _figure(14.0, 6.2)
        jobs: list = []
        views = (
            ("along z (axial MIP)", 0),
            ("along y (coronal MIP)", 1),
            ("along x (sagittal MIP)", 2),
        )
        names = "xyz"
        for i, (title, axis_np) in enumerate(views):
            ax = fig.add_subplot(1, 3, i + 1)
            # the projection keeps the other numpy axes in order: columns are the lower
            # physical axis, rows the higher one (numpy axis k is physical axis 2 − k)
            rem = [k for k in range(3) if k != axis_np]
            hor, ver = 2 - rem[1], 2 - rem[0]
            img_mpi = mpi.max(axis=axis_np)
            img_anat = anat.mean(axis=axis_np) if anat is not None else None
            ext = (
                lo[hor],
                lo[hor] + pixel * (img_mpi.shape[1] - 1),
                lo[ver],
                lo[ver] + pixel * (img_mpi.shape[0] - 1),
            )
            if img_anat is not None:
                vlo, vhi = np.percentile(img_anat, [1, 99.7])
                ax.imshow(img_anat, cmap="gray", vmin=vlo, vmax=vhi, origin="lower", extent=ext)
            else:
                ax.set_facecolor("black")
            from matplotlib.colors import PowerNorm

            ax.imshow(
                np.ma.masked_less(img_mpi, self.display_min),
                cmap=_hot(),
                origin="lower",
                extent=ext,
                alpha=_fade_in(img_mpi, self.display_min, self.mpi_max),
                norm=PowerNorm(0.5, vmin=self.display_min, vmax=self.mpi_max),
            )
            jobs.append((ax, hor, ver))
            ax.set_xlabel(f"{names[hor]} (mm)")
            ax.set_ylabel(f"{names[ver]} (mm)")
            ax.set_title(title, fontsize=11)
            ax.set_aspect("equal")
        fig.suptitle(_view_title(self.anatomy, self.registered), fontsize=14)
        legend = [roi_label_text(r) for r in self.rows]
        n_lines = (len(legend) + 1) // 2
        for k, text in enumerate(legend):
            fig.text(
                0.08 + 0.46 * (k // max(n_lines, 1)),
                0.035 + 0.03 * (n_lines - 1 - k % max(n_lines, 1)) + 0.02,
                text,
                ha="left",
                va="bottom",
                fontsize=11,
            )
        fig.text(
            0.5,
            0.005,
            _frame_note(self.anatomy, self.registered),
            ha="center",
            va="bottom",
            fontsize=8,
            color="0.3",
        )
        fig.tight_layout(rect=(0, 0.06 + 0.03 * n_lines, 1, 0.95))
        for ax, hor, ver in jobs:
            pts, texts, radii = [], [], []
            for row in self.rows:
                p = _roi_position_mpi(row)
                if p is None:
                    continue
                q = self.to_fixed(p)
                pts.append((q[hor], q[ver]))
                texts.append(str(row.get("name", len(pts))))
                radii.append(_radius_mm(row))
            annotate_rois(ax, pts, texts, radii, fontsize=9)
        canvas.print_png(str(path))


def _fade_in(img, lo: float, hi: float, *, top: float = 0.85) -> np.ndarray:
    """Opacity of the MPI over the anatomy: 0 at the display threshold rising to ``top``
    (square root: the tails of a source show, faintly), so the anatomy under a
    source's edge stays visible instead of a hard-edged disc hiding it."""
    a = (np.asarray(img, dtype=float) - lo) / max(hi - lo, 1e-12)
    return (np.sqrt(np.clip(np.nan_to_num(a), 0.0, 1.0)) * top).astype(float)


def _hot():
    """'hot' from dark red to yellow, without the white top (a saturated source stays coloured)."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    return ListedColormap(colormaps["hot"](np.linspace(0.3, 0.85, 256)), name="hot_no_white")


def _frame_note(anatomy, registered: bool = False) -> str:
    """The caption under every picture: which frame, and whether a registration placed the MPI."""
    if anatomy is None:
        return (
            "MPI only (no anatomy, no registration). Positions in mm, MPI physical frame, ITK (LPS) "
            "axes; numbers from the native MPI grid."
        )
    if registered:
        return (
            "Positions in mm, anatomy (fixed) physical frame, ITK (LPS) axes. MPI shown on the anatomy "
            "through the registration; numbers from the native MPI grid."
        )
    return (
        "No registration: MPI and anatomy drawn in their own physical frames, assumed to coincide. "
        "Positions in mm, ITK (LPS) axes; numbers from the native MPI grid."
    )


def _view_title(anatomy, registered: bool) -> str:
    if anatomy is None:
        return "3-D view: MPI maximum-intensity projections (MPI only, no anatomy)"
    if registered:
        return "3-D view: MPI maximum-intensity projections on the anatomy (registered)"
    return "3-D view: MPI maximum-intensity projections over the anatomy (no registration)"


def _squeeze_plane(arr_zyx, axes) -> np.ndarray:
    """A (1-thick) resampled plane as a 2-D array with rows = axes[1], cols = axes[0]."""
    a = np.asarray(arr_zyx)
    # numpy axis of physical axis k is 2 − k
    keep = [2 - k for k in axes]
    drop = [k for k in range(3) if k not in keep][0]
    a = a.take(0, axis=drop)
    # remaining numpy axes keep their order; physical axes[0] should be columns
    rem = [k for k in range(3) if k != drop]
    if rem.index(2 - axes[0]) == 0:
        a = a.T
    return a


def _physical_bounds(volume) -> tuple[np.ndarray, np.ndarray]:
    shape = np.asarray(volume.shape)
    corners = (
        np.array(np.meshgrid(*[[-0.5, s - 0.5] for s in shape], indexing="ij")).reshape(3, -1).T
    )
    pts = volume.index_to_physical(corners)
    return pts.min(axis=0), pts.max(axis=0)


def _figure(w, h):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    return fig, FigureCanvasAgg(fig)


# -- calibration plot ------------------------------------------------------------------------------
def plot_calibration(calibration, path, *, rows=None, confidence: float = CONFIDENCE) -> Path:
    """Calibration plot (PNG): points, fitted line, prediction band; residuals panel below.

    ROIs with an estimate are drawn on the line as open diamonds.
    """
    from mpi_viewer.calibration.fit import prediction_band

    fit = calibration.fit
    x = np.asarray(fit.x, dtype=float)
    allx = np.asarray([p.amount(calibration.kind) for p in calibration.points], dtype=float)
    ally = np.asarray([p.signal for p in calibration.points], dtype=float)
    unit = "µg Fe" if calibration.kind == "iron" else "cells"
    fig, canvas = _figure(7.5, 7.0)
    gs = fig.add_gridspec(2, 1, height_ratios=(3, 1.2), hspace=0.08)
    ax = fig.add_subplot(gs[0])
    axr = fig.add_subplot(gs[1], sharex=ax)
    xmax = float(max(allx.max(), x.max())) * 1.08
    xs = np.linspace(0.0, xmax, 200)
    lo, hi = prediction_band(fit, xs, confidence=confidence)
    if np.all(np.isfinite(lo)):
        ax.fill_between(
            xs, lo, hi, color="tab:blue", alpha=0.15, label=f"{confidence:.0%} prediction band"
        )
    ax.plot(xs, fit.predict(xs), color="tab:blue", lw=1.8, label="fit")
    ax.plot(allx, ally, "o", color="black", ms=6, label="phantoms")
    if rows:
        col = "iron_ug" if calibration.kind == "iron" else "cells"
        for r in rows:
            v = _num(r.get(col))
            # the total the calibration turned into iron (sub-voxel at revision ≥ 2)
            s = _num(r.get("total_signal_subvoxel_au_mm3", r.get("total_signal_au_mm3")))
            if v is not None and s is not None:
                ax.plot([v], [s], "D", mfc="none", mec="tab:red", ms=8)
                ax.annotate(
                    str(r.get("name", "")),
                    (v, s),
                    xytext=(5, -12),
                    textcoords="offset points",
                    fontsize=9,
                    color="tab:red",
                )
        ax.plot([], [], "D", mfc="none", mec="tab:red", label="ROIs (estimated)")
    ax.set_ylabel("ROI total signal (a.u.·mm³)")
    if fit.mode == "single_reference":
        eq = f"single reference: {fit.slope:.4g} a.u.·mm³ per {unit}"
    else:
        eq = (
            f"signal = {fit.slope:.4g} × {unit} {'+' if fit.intercept >= 0 else '−'} {abs(fit.intercept):.3g}"
            f"   R² = {fit.r_squared:.4f}, n = {fit.n}"
            f"{', through origin' if fit.through_origin else ''}{', weights 1/y²' if fit.weighting == 'relative' else ''}"
        )
    ax.set_title(
        f"Calibration “{calibration.name}” ({calibration.tracer or 'tracer ?'}, {calibration.environment})\n{eq}",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(alpha=0.3)
    ax.tick_params(labelbottom=False)
    res = ally - fit.predict(allx)
    axr.axhline(0, color="tab:blue", lw=1)
    axr.plot(allx, res, "o", color="black", ms=5)
    axr.set_ylabel("residual\n(a.u.·mm³)")
    axr.set_xlabel(f"known amount ({unit})")
    axr.grid(alpha=0.3)
    axr.set_xlim(0, xmax)
    fig.subplots_adjust(left=0.14, right=0.97, top=0.9, bottom=0.09)
    canvas.print_png(str(path))
    return Path(path)


# -- the page --------------------------------------------------------------------------------------------
_TABLE_COLUMNS = (
    "name",
    "peak_x_mm",
    "peak_y_mm",
    "peak_z_mm",
    "peak_au",
    "volume_mm3",
    "total_signal_au_mm3",
    "total_signal_subvoxel_au_mm3",
    "snr",
    "iron_ug",
    "iron_ci_low_ug",
    "iron_ci_high_ug",
    "below_lod",
    "cells",
    "cells_ci_low",
    "cells_ci_high",
    "flags",
    "warnings",
)


def _cell(v) -> str:
    """A table cell's text (escaped by the template)."""
    f = _num(v) if not isinstance(v, bool) else None
    if f is not None and not isinstance(v, (int, np.integer)):
        return f"{f:.4g}"
    return "" if v is None else str(v)


def _inputs_list(inputs) -> list[dict[str, str]]:
    if not inputs:
        return []
    if isinstance(inputs, dict):
        return [
            {"role": str(k), "path": str(v)} if not isinstance(v, dict) else {"role": str(k), **v}
            for k, v in inputs.items()
        ]
    return [dict(i) for i in inputs]


def _write_html(
    tmp: Path, files, *, rows, mpi, anatomy, transform, calibration, inputs, title, iron_per_cell
) -> None:
    """``index.html`` from the shipped jinja2 template ``templates/report.html.j2``
    (autoescaped: every name and path from the study is text, never markup)."""
    import jinja2

    from mpi_viewer.io.tables import header_label

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mpi_viewer.report", "templates"),
        autoescape=True,
        keep_trailing_newline=True,
    )
    cols = [c for c in _TABLE_COLUMNS if any(c in r for r in rows)] if rows else []
    labels = {
        "results": "results table (CSV)",
        "masks": "ROI masks (NIfTI, MPI grid)",
        "transform": "registration transform (ITK .tfm, fixed → moving)",
        "calibration_json": "calibration (JSON)",
    }
    page = env.get_template("report.html.j2").render(
        title=title,
        version=__version__,
        now=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        inputs=[
            {
                "role": str(i.get("role", "")),
                "path": str(i.get("path", "")),
                "sha256": str(i.get("sha256", "") or ""),
            }
            for i in _inputs_list(inputs)
        ],
        mpi={
            "name": mpi.name,
            "shape": " × ".join(map(str, mpi.shape[::-1])),
            "spacing": " × ".join(f"{s:g}" for s in mpi.spacing_mm),
            "acquisition": json.dumps(mpi.acquisition.to_dict(), ensure_ascii=False),
        },
        anatomy=anatomy,
        registered=transform is not None,
        iron_per_cell=None
        if iron_per_cell is None
        else f"{iron_per_cell.mean_pg:g} ± {iron_per_cell.sd_pg:g}",
        roi_methods=", ".join(
            sorted(
                {
                    f"{r['method']} (measurement revision {r.get('roi_revision', 1)})"
                    for r in rows or []
                    if r.get("method")
                }
            )
        ),
        columns=[header_label(c) for c in cols],
        rows=[[_cell(r.get(c)) for c in cols] for r in rows or []],
        links=[
            (labels[k], files[k])
            for k in ("results", "masks", "transform", "calibration_json")
            if k in files
        ],
        calibration=None if calibration is None else calibration.summary(),
        calibration_png=files.get("calibration_png"),
        view_3d=files.get("view_3d"),
        slices=files["slices"],
    )
    (tmp / "index.html").write_text(page, encoding="utf-8")
