"""Manual ROIs: masks painted or drawn by the user, measured like the grown ones.

The statistics are those of every ROI (:func:`mpi_viewer.roi._grow.region_stats`);
only the region comes from the user instead of a threshold. Masks are on the native
MPI grid; nothing copies the whole volume except the caller's own full-size mask.
See :func:`mpi_viewer.roi.measure_mask`, :func:`mpi_viewer.roi.measure_label_image`
and :func:`mpi_viewer.roi.polygon_to_mask`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from mpi_viewer.errors import InputError

#: Voxels added around a mask's bounding box (room for the peak fit and the FWHM profiles).
_PAD = 8


def _as_box(mask, shape: tuple[int, ...], what: str) -> tuple[np.ndarray, np.ndarray]:
    """(start, boolean sub-array) of the mask's bounding box, checked against ``shape``."""
    from mpi_viewer.roi.regions import ROIMask

    if isinstance(mask, ROIMask):
        arr = np.asarray(mask.array) != 0
        start = np.asarray(mask.start, dtype=int)
        if arr.ndim != len(shape) or len(start) != len(shape):
            raise InputError(f"{what}: a {arr.ndim}-D mask on a {len(shape)}-D image")
        if np.any(start < 0) or np.any(start + arr.shape > np.asarray(shape)):
            raise InputError(
                f"{what}: mask box at {tuple(start)} of shape {arr.shape} "
                f"lies outside the image {tuple(shape)}"
            )
    else:
        arr = np.asarray(mask)
        if arr.shape != tuple(shape):
            raise InputError(
                f"{what}: mask of shape {arr.shape} is not on the MPI grid {tuple(shape)}"
            )
        arr = arr != 0
        start = np.zeros(len(shape), dtype=int)
    nz = [
        np.flatnonzero(np.any(arr, axis=tuple(i for i in range(arr.ndim) if i != a)))
        for a in range(arr.ndim)
    ]
    if any(v.size == 0 for v in nz):
        raise InputError(f"{what}: the mask is empty (paint or draw some voxels)")
    sl = tuple(slice(int(v[0]), int(v[-1]) + 1) for v in nz)
    return start + np.array([s.start for s in sl]), arr[sl]


def measure_region(volume, arr, mask, params, noise: float, *, name: str, label: int):
    """One manual ROI (see :func:`mpi_viewer.roi.measure_mask`)."""
    from mpi_viewer.roi._grow import _box, region_stats
    from mpi_viewer.roi.regions import ROIResult

    shape = np.asarray(arr.shape)
    start, box = _as_box(mask, tuple(arr.shape), f"ROI {name}")
    lo = np.maximum(start - _PAD, 0)
    hi = np.minimum(start + np.asarray(box.shape) + _PAD, shape)
    sub = _box(arr, lo, hi, params.saturation_curve)
    roi = np.zeros(sub.shape, dtype=bool)
    roi[
        tuple(
            slice(int(s - a), int(s - a) + n) for s, a, n in zip(start, lo, box.shape, strict=True)
        )
    ] = box
    if not np.all(np.isfinite(sub[roi])):
        raise InputError(f"ROI {name}: the image has NaN (or infinite) values inside the mask")
    stats = region_stats(volume, arr, sub, roi, lo, noise, params.saturation_curve)
    stats.pop("_peak_voxel")
    idx = np.argwhere(roi).mean(axis=0) + lo
    centroid = volume.index_to_physical([idx])[0]
    return ROIResult(
        name=name,
        label=int(label),
        seed_mm=tuple(float(v) for v in centroid),
        threshold_au=float("nan"),
        method="manual",
        **stats,
    )


def label_boxes(
    labels: np.ndarray, what: str = "label image"
) -> list[tuple[int, tuple[slice, ...]]]:
    """(label, bounding-box slices) of every non-zero label, in increasing label order."""
    from scipy import ndimage as ndi

    lab = np.asarray(labels)
    if lab.dtype == bool:
        lab = lab.astype(np.uint8)
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.isfinite(lab)) or np.any(lab != np.round(lab)):
            raise InputError(
                f"{what}: labels must be whole numbers (a Labels layer or an integer image)"
            )
        lab = lab.astype(np.int64)
    if lab.size and lab.min() < 0:
        raise InputError(f"{what}: negative label {int(lab.min())}")
    values = np.unique(lab)
    values = values[values != 0]
    if values.size == 0:
        raise InputError(f"{what}: no labelled voxels (paint some ROIs first)")
    if values.max() > 1 << 24:
        raise InputError(f"{what}: label {int(values.max())} is too large")
    objs = ndi.find_objects(lab)
    return [(int(v), objs[int(v) - 1]) for v in values]


def measure_labels(volume, arr, labels, params, noise: float, *, names=None) -> list:
    """One ROI per non-zero label (see :func:`mpi_viewer.roi.measure_label_image`)."""
    from mpi_viewer.roi._grow import ResultList, _flag_touching, _structure
    from mpi_viewer.roi.regions import ROIMask

    lab = np.asarray(labels)
    if lab.shape != tuple(arr.shape):
        raise InputError(
            f"label image of shape {lab.shape} is not on the MPI grid {tuple(arr.shape)}"
        )
    boxes = label_boxes(lab)
    if names is not None and not isinstance(names, Mapping):
        names = list(names)
        if len(names) != len(boxes):
            raise InputError(f"{len(names)} ROI names for {len(boxes)} labels")
        names = {v: n for (v, _), n in zip(boxes, names, strict=True)}
    out = ResultList()
    for v, sl in boxes:
        name = str(names[v]) if names is not None and v in names else f"manual_{v}"
        mask = ROIMask(start=tuple(s.start for s in sl), array=lab[sl] == v)
        out.append(measure_region(volume, arr, mask, params, noise, name=name, label=v))
    _flag_touching(out, arr.ndim, _structure(arr.ndim, params.connectivity))
    return out


def polygon_mask(volume, polygon_xyz_mm) -> np.ndarray:
    """Boolean mask of a polygon (see :func:`mpi_viewer.roi.polygon_to_mask`)."""
    from skimage.draw import polygon2mask

    d = volume.ndim
    pts = np.asarray(polygon_xyz_mm, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != d:
        raise InputError(
            f"polygon: vertices need {d} coordinates ({'x,y,z' if d == 3 else 'x,y'} mm) "
            f"on a {d}-D image"
        )
    if len(pts) < 3:
        raise InputError(f"polygon: {len(pts)} vertices; draw at least three")
    if not np.all(np.isfinite(pts)):
        raise InputError("polygon: vertices must be finite")
    idx = volume.physical_to_index(pts)  # (z, y, x) continuous
    shape = tuple(volume.shape)
    if d == 2:
        out = polygon2mask(shape, idx)
    else:
        k = idx[:, 0]
        k0 = float(np.median(k))
        if np.max(np.abs(k - k0)) > 0.5 or not (-0.5 <= k0 <= shape[0] - 0.5):
            span = f"{k.min():.3g}…{k.max():.3g}"
            raise InputError(
                f"polygon: its vertices are not on one slice of the image (z index {span}); "
                "draw it on one slice"
            )
        out = np.zeros(shape, dtype=bool)
        out[int(min(max(math.floor(k0 + 0.5), 0), shape[0] - 1))] = polygon2mask(
            shape[1:], idx[:, 1:]
        )
    if not out.any():
        raise InputError(
            "polygon: it covers no voxel centre of the image (draw it larger or inside the image)"
        )
    return out
