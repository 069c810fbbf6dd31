"""What the cell overlays show, computed without a GUI: cell density, the display grids,
and where each ROI's label goes so that labels never overlap each other or their ROIs.

Used by the Cells dock (napari) and by the report's pictures (matplotlib): both draw
the same arrays and the same label placement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpi_viewer.defaults import N_SD


def cell_density(
    signal_au, *, slope: float, kind: str, pg_per_cell: float | None, threshold_au: float
) -> np.ndarray:
    """Cells per mm³ of each voxel of a calibrated MPI image (0 below ``threshold_au``).

    A voxel of signal ``s`` (a.u.) and volume ``v`` (mm³) contributes ``s·v`` a.u.·mm³
    of total signal, i.e. ``s·v/slope`` µg Fe (iron calibration, slope in a.u.·mm³/µg)
    or cells (cell calibration); per mm³ that is ``s/slope``, then divided by the iron
    per cell (``pg_per_cell`` × 10⁻⁶ µg) for an iron calibration. The calibration's
    intercept belongs to a whole ROI's total signal, not to a voxel, and is not spread
    over voxels: the density integrated over an ROI is its ``(signal)/slope``.

    Parameters
    ----------
    signal_au : ndarray
        MPI signal (a.u.) on its native grid.
    slope : float
        Calibration slope (a.u.·mm³ per µg Fe, or per cell).
    kind : {"iron", "cells"}
    pg_per_cell : float or None
        Mean iron per cell (pg Fe/cell); needed for an iron calibration.
    threshold_au : float
        Voxels below it (the ROI method's noise threshold: the detection limit) are 0.

    Returns
    -------
    ndarray of float32
        cells/mm³.
    """
    per_mm3 = np.asarray(signal_au, dtype=np.float32) / np.float32(slope)
    if kind == "iron":
        per_mm3 = per_mm3 / np.float32(pg_per_cell * 1e-6)
    per_mm3[~(np.asarray(signal_au) >= threshold_au)] = 0.0
    return per_mm3


def overlay_arrays(volume, calibration, roi_results, roi_params, iron_per_cell, transform, fixed):
    """ROI labels, cell density (cells/mm³) and the density threshold (a.u.) for display.

    With a registration (``transform``: dict with ``matrix`` and ``translation``,
    fixed → moving, and the ``fixed`` anatomy Volume), labels and density are resampled
    onto the anatomy's grid through it (labels nearest-neighbour, density linearly), to
    be placed like the anatomy layer: napari draws a 2-D slice of a layer whose affine
    mixes the sliced axis into the displayed ones (the registered MPI) displaced by up
    to a few mm, whereas the anatomy's own grid is drawn exactly. Display only: every
    number comes from the native MPI grid. Without a registration they stay on the MPI
    grid.

    Returns
    -------
    labels : ndarray of uint16
    density : ndarray of float32
    threshold_au : float
    """
    from mpi_viewer.roi.regions import estimate_noise_sd, rois_to_label_image

    noise = next((float(r.noise_sd) for r in roi_results if getattr(r, "noise_sd", None)), None)
    if noise is None:
        noise = estimate_noise_sd(volume)
    threshold = float(getattr(roi_params, "n_sd", N_SD) or N_SD) * noise
    pg = iron_per_cell.mean_pg if iron_per_cell is not None else None
    density = cell_density(
        volume.array,
        slope=calibration.fit.slope,
        kind=calibration.kind,
        pg_per_cell=pg,
        threshold_au=threshold,
    )
    labels = rois_to_label_image(volume, roi_results)
    if transform is not None and fixed is not None:
        labels, density = to_fixed_grid(volume, fixed, transform, labels, density)
    return labels.astype(np.uint16, copy=False), density, threshold


def to_fixed_grid(mpi, fixed, transform, labels, density):
    """ROI labels (nearest neighbour) and density (linear) of the MPI grid on the fixed grid."""
    import SimpleITK as sitk

    from mpi_viewer.geometry.transform import Transform

    tx = Transform(transform["matrix"], transform["translation"]).to_sitk()
    out = []
    for arr, interp, pixel in (
        (labels, sitk.sitkNearestNeighbor, sitk.sitkUInt16),
        (density, sitk.sitkLinear, sitk.sitkFloat32),
    ):
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
        img.CopyInformation(mpi.image)
        out.append(sitk.GetArrayFromImage(sitk.Resample(img, fixed.image, tx, interp, 0, pixel)))
    return out[0], out[1]


def content_box(mask, *, margin: int = 2) -> tuple[slice, ...]:
    """The smallest box (slices) holding every true voxel of ``mask``, grown by
    ``margin`` voxels; a 1-voxel box at the origin when nothing is set."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return tuple(slice(0, 1) for _ in mask.shape)
    out = []
    for axis in range(mask.ndim):
        other = tuple(k for k in range(mask.ndim) if k != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        out.append(
            slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + margin + 1, mask.shape[axis]))
        )
    return tuple(out)


# -- label placement ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelPlacement:
    """Where one label goes, in the same 2-D units as the anchors (pixels on screen).

    ``centre`` is the label box's centre; ``leader`` the segment (from the ROI's edge to
    the box's nearest point) to draw when the box sits away from its ROI, else None;
    ``clear`` says whether a spot free of every other label and ROI was found.
    """

    centre: tuple[float, float]
    size: tuple[float, float]
    leader: tuple[tuple[float, float], tuple[float, float]] | None
    clear: bool


def text_size_px(text: str, font_px: float) -> tuple[float, float]:
    """A generous estimate of a one-line label's box (width, height) in pixels."""
    return 0.62 * font_px * max(len(text), 1) + 6.0, 1.45 * font_px + 4.0


_DIRECTIONS = (
    (1, 0), (-1, 0), (0, -1), (0, 1), (1, -1), (-1, -1), (1, 1), (-1, 1),
)  # fmt: skip


def _box_disc_distance(centre, size, p) -> float:
    """Distance from point ``p`` to the box (0 inside)."""
    dx = max(abs(p[0] - centre[0]) - size[0] / 2, 0.0)
    dy = max(abs(p[1] - centre[1]) - size[1] / 2, 0.0)
    return float(np.hypot(dx, dy))


def _boxes_overlap(c1, s1, c2, s2, gap) -> bool:
    return (
        abs(c1[0] - c2[0]) < (s1[0] + s2[0]) / 2 + gap
        and abs(c1[1] - c2[1]) < (s1[1] + s2[1]) / 2 + gap
    )


def place_labels(
    anchors, sizes, radii, bounds, *, gap: float = 4.0, rings: int = 8
) -> list[LabelPlacement]:
    """Place one label box per ROI beside it: no box overlaps another box or any ROI.

    A greedy search (labels taken from top to bottom): each label tries the eight
    sides of its ROI (right, left, above, below, then the diagonals) at the ROI's
    edge, then at growing distances (a leader line then joins it to its ROI), and
    takes the first spot inside ``bounds`` that touches no ROI disc and no label
    already placed. When no spot is free (an impossibly crowded view) the one with
    the least overlap is taken and ``clear`` is False.

    Parameters
    ----------
    anchors : (n, 2) array
        ROI centres (x, y), e.g. screen pixels.
    sizes : (n, 2) array
        Label boxes (width, height), same units.
    radii : (n,) array
        Radius of each ROI's disc (its extent around the anchor), same units.
    bounds : (x0, y0, x1, y1)
        The visible area; boxes stay inside it when they can.
    gap : float
        Free space kept between a box and anything else.
    rings : int
        How many distances to try beyond the ROI's edge.

    Returns
    -------
    list of LabelPlacement, in the order of ``anchors``.
    """
    a = np.asarray(anchors, dtype=float).reshape(-1, 2)
    s = np.asarray(sizes, dtype=float).reshape(-1, 2)
    r = np.asarray(radii, dtype=float).reshape(-1)
    x0, y0, x1, y1 = (float(v) for v in bounds)
    n = len(a)
    placed: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    out: list[LabelPlacement | None] = [None] * n
    for i in sorted(range(n), key=lambda k: (a[k, 1], a[k, 0])):
        w, h = s[i]
        best = None
        for ring in range(rings + 1):
            d = r[i] + gap + ring * (h + gap)
            for ux, uy in _DIRECTIONS:
                diag = 0.7071 if ux and uy else 1.0
                c = np.array([a[i, 0] + ux * (d * diag + w / 2), a[i, 1] + uy * (d * diag + h / 2)])
                # how bad is this spot: outside the view, over an ROI, over a label
                bad = 0.0
                bad += max(x0 - (c[0] - w / 2), 0) + max((c[0] + w / 2) - x1, 0)
                bad += max(y0 - (c[1] - h / 2), 0) + max((c[1] + h / 2) - y1, 0)
                for k in range(n):
                    dist = _box_disc_distance(c, (w, h), a[k])
                    if dist < r[k] + gap / 2:
                        bad += r[k] + gap / 2 - dist + 1.0
                for cj, sj in placed.values():
                    if _boxes_overlap(c, (w, h), cj, sj, gap / 2):
                        bad += 1.0 + min(w, sj[0])
                if best is None or bad < best[0]:
                    best = (bad, c, ring)
                if bad == 0.0:
                    break
            if best[0] == 0.0:
                break
        bad, c, ring = best
        placed[i] = (c, s[i])
        leader = None
        edge_gap = _box_disc_distance(c, (w, h), a[i]) - r[i]
        if edge_gap > 2 * gap + 1.0:  # away from its ROI: a leader line from ROI edge to box
            # nearest point of the box to the anchor
            q = np.array(
                [
                    np.clip(a[i, 0], c[0] - w / 2, c[0] + w / 2),
                    np.clip(a[i, 1], c[1] - h / 2, c[1] + h / 2),
                ]
            )
            v = q - a[i]
            start = a[i] + v / max(np.linalg.norm(v), 1e-9) * r[i]
            leader = ((float(start[0]), float(start[1])), (float(q[0]), float(q[1])))
        out[i] = LabelPlacement(
            centre=(float(c[0]), float(c[1])),
            size=(float(w), float(h)),
            leader=leader,
            clear=bad == 0.0,
        )
    return out  # type: ignore[return-value]
