"""Composing a fixed → moving transform with a change of the fixed frame.

The anatomy a registration draws onto may itself be placed in the viewer's world by
more than its physical geometry (an extra napari ``affine``): the transform the MPI
layer needs starts from that *world*, not from the anatomy's physical frame.
"""

from __future__ import annotations

import numpy as np

from mpi_viewer.geometry.axes import matrix_xyz_to_zyx, zyx_to_xyz


def from_placed_frame(matrix, translation, world_from_physical_zyx):
    """The transform ``x ↦ T(G⁻¹ x)``: from a placed frame instead of the physical one.

    Parameters
    ----------
    matrix, translation : array_like, (d, d) and (d,)
        ``T``: fixed physical mm → moving physical mm, ITK (x, y, z).
    world_from_physical_zyx : array_like, (d+1, d+1)
        ``G``: fixed physical mm → its placed (world) mm, homogeneous, napari (z, y, x).

    Returns
    -------
    (matrix, translation) : ndarray (d, d), ndarray (d,)
        Placed (world) mm → moving physical mm, ITK (x, y, z). ``T`` itself when ``G``
        is the identity.
    """
    m = np.asarray(matrix, dtype=float)
    t = np.asarray(translation, dtype=float)
    w = np.asarray(world_from_physical_zyx, dtype=float)
    if np.allclose(w, np.eye(len(w)), atol=1e-9):
        return m, t
    g = np.linalg.inv(w)
    d = len(g) - 1
    g_lin, g_t = matrix_xyz_to_zyx(g[:d, :d]), zyx_to_xyz(g[:d, d])
    return m @ g_lin, m @ g_t + t
