"""The one converter between ITK point order (x, y, z) and numpy/napari order (z, y, x).

Positions in mpi-viewer are millimetres in the ITK physical frame (LPS). SimpleITK
speaks (x, y, z); numpy arrays and napari world coordinates are indexed (z, y, x).
Nothing else in the program flips axes by hand: it calls :func:`xyz_to_zyx`,
:func:`zyx_to_xyz` or :func:`image_to_world_affine`.
"""

from __future__ import annotations

import numpy as np


def xyz_to_zyx(points) -> np.ndarray:
    """Reverse the last axis: (x, y, z) points to (z, y, x) (also for 2-D: (x, y) to (y, x)).

    Parameters
    ----------
    points : array_like, shape (..., d)
        Coordinates in ITK order.

    Returns
    -------
    numpy.ndarray, shape (..., d)
        The same coordinates in numpy/napari order (a new float array).
    """
    return np.asarray(points, dtype=float)[..., ::-1].copy()


def zyx_to_xyz(points) -> np.ndarray:
    """Reverse the last axis: (z, y, x) points to (x, y, z). Inverse of :func:`xyz_to_zyx`."""
    return np.asarray(points, dtype=float)[..., ::-1].copy()


def matrix_xyz_to_zyx(matrix) -> np.ndarray:
    """Re-express a d×d linear map acting on (x, y, z) vectors as one acting on (z, y, x)."""
    m = np.asarray(matrix, dtype=float)
    return m[::-1, ::-1].copy()


def affine_xyz_to_zyx(matrix, translation) -> np.ndarray:
    """Homogeneous (d+1)×(d+1) napari affine from an ITK-order linear map and translation.

    ``y = matrix @ x + translation`` in (x, y, z) becomes the matrix ``A`` with
    ``A @ [z, y, x, 1]`` giving the image of the point in (z, y, x).
    """
    m = np.asarray(matrix, dtype=float)
    d = m.shape[0]
    out = np.eye(d + 1)
    out[:d, :d] = matrix_xyz_to_zyx(m)
    out[:d, d] = xyz_to_zyx(translation)
    return out


def image_to_world_affine(spacing, origin, direction) -> np.ndarray:
    """Homogeneous map from array index (z, y, x) to physical mm in (z, y, x).

    Follows ITK: ``p = origin + direction @ diag(spacing) @ index`` with everything in
    (x, y, z) order; the result is that map re-expressed in (z, y, x).

    Parameters
    ----------
    spacing : sequence of float, length d
        Voxel size in mm, ITK order.
    origin : sequence of float, length d
        Physical position (mm) of the centre of voxel 0, ITK order.
    direction : sequence of float, length d*d or array (d, d)
        Direction cosines, row-major as SimpleITK returns them.
    """
    spacing = np.asarray(spacing, dtype=float)
    d = spacing.size
    dmat = np.asarray(direction, dtype=float).reshape(d, d)
    return affine_xyz_to_zyx(dmat @ np.diag(spacing), origin)
