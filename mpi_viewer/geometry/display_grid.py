"""Display resampling: an image placed obliquely in world space, resampled onto a grid
aligned with the world axes (for viewers that slice only along data axes).

Display only: quantification stays on the native grid. Everything is in napari's
(z, y, x) order; the one axis converter (:mod:`mpi_viewer.geometry.axes`) turns it into
SimpleITK's (x, y, z).
"""

from __future__ import annotations

import numpy as np

from mpi_viewer.geometry.axes import matrix_xyz_to_zyx, zyx_to_xyz

#: Relative size below which an off-axis entry of the linear part counts as zero.
AXIS_TOL = 1e-6


def is_axis_aligned(matrix) -> bool:
    """Whether a linear part (world × data) is a scaled permutation (napari slices it exactly)."""
    a = np.abs(np.asarray(matrix, dtype=float))
    big = a > AXIS_TOL * max(float(a.max()), 1e-30)
    return bool(np.all(big.sum(axis=0) == 1) and np.all(big.sum(axis=1) == 1))


def world_aligned_grid(affine, shape_zyx) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """A grid aligned with the world axes covering a layer's voxel centres.

    Parameters
    ----------
    affine : (4, 4) array
        Data index → world mm, (z, y, x).
    shape_zyx : tuple of int
        The layer's data shape.

    Returns
    -------
    spacing_mm, origin_mm : (3,) arrays, (z, y, x)
        Along each world axis, the length (mm) of the data axis most aligned with it;
        the world position of the grid's first voxel centre.
    shape : tuple of int
        Grid shape (z, y, x) reaching the far corner of the layer's extent.
    """
    a = np.asarray(affine, dtype=float)
    d = len(shape_zyx)
    lin, off = a[:d, :d], a[:d, d]
    spacing = np.array([np.linalg.norm(lin[:, int(np.argmax(np.abs(lin[k])))]) for k in range(d)])
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape_zyx], indexing="ij")).reshape(d, -1)
    world = lin @ corners + off[:, None]
    lo, hi = world.min(axis=1), world.max(axis=1)
    shape = tuple(int(np.floor((hi[k] - lo[k]) / spacing[k] + 1e-6)) + 1 for k in range(d))
    return spacing, lo, shape


def resample_world_aligned(data, affine, *, labels: bool, cval: float = 0.0):
    """Resample a 3-D array placed by ``affine`` onto a world-aligned grid (display only).

    Parameters
    ----------
    data : array (z, y, x)
        The layer's data.
    affine : (4, 4) array
        Data index → world mm, (z, y, x) (napari's data → world affine).
    labels : bool
        Nearest neighbour and the input dtype (labels) or linear and float32 (images).
    cval : float
        Value outside the layer's extent.

    Returns
    -------
    array, scale_mm, translate_mm
        The resampled array (z, y, x) and the napari ``scale``/``translate`` placing it.
    """
    import SimpleITK as sitk

    a = np.asarray(affine, dtype=float)
    arr = np.asarray(data)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif not labels and arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    spacing, origin, shape = world_aligned_grid(a, arr.shape)
    img = sitk.GetImageFromArray(arr)  # unit spacing, zero origin: physical = index (x, y, z)
    inv = np.linalg.inv(a[:3, :3])
    tfm = sitk.AffineTransform(3)  # world (x, y, z) → data index (x, y, z)
    tfm.SetMatrix(matrix_xyz_to_zyx(inv).ravel().tolist())
    tfm.SetTranslation(zyx_to_xyz(-inv @ a[:3, 3]).tolist())
    out = sitk.Resample(
        img,
        [int(n) for n in zyx_to_xyz(shape)],
        tfm,
        sitk.sitkNearestNeighbor if labels else sitk.sitkLinear,
        zyx_to_xyz(origin).tolist(),
        zyx_to_xyz(spacing).tolist(),
        np.eye(3).ravel().tolist(),
        float(cval),
        img.GetPixelID() if labels else sitk.sitkFloat32,
    )
    return sitk.GetArrayFromImage(out), spacing, origin
