import numpy as np
import SimpleITK as sitk
from numpy.testing import assert_allclose

from mpi_viewer.demo.study import rotation_matrix
from mpi_viewer.geometry.axes import (
    affine_xyz_to_zyx,
    image_to_world_affine,
    matrix_xyz_to_zyx,
    xyz_to_zyx,
    zyx_to_xyz,
)


def test_round_trip_and_order():
    p = np.array([[1.0, 2.0, 3.0], [-4.0, 5.5, 6.0]])
    assert_allclose(xyz_to_zyx(p), [[3.0, 2.0, 1.0], [6.0, 5.5, -4.0]])
    assert_allclose(zyx_to_xyz(xyz_to_zyx(p)), p)
    assert_allclose(xyz_to_zyx([7.0, 8.0]), [8.0, 7.0])  # 2-D too


def test_affine_conversion_maps_points_like_the_xyz_map():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(3, 3))
    t = rng.normal(size=3)
    a = affine_xyz_to_zyx(m, t)
    p = rng.normal(size=(5, 3))
    expected = p @ m.T + t
    got = (np.c_[xyz_to_zyx(p), np.ones(5)] @ a.T)[:, :3]
    assert_allclose(zyx_to_xyz(got), expected)
    assert_allclose(matrix_xyz_to_zyx(m) @ xyz_to_zyx(p[0]), xyz_to_zyx(m @ p[0]))


def test_image_to_world_matches_simpleitk_for_an_oblique_grid():
    img = sitk.Image([7, 5, 4], sitk.sitkFloat32)
    img.SetSpacing([0.3, 0.7, 1.1])
    img.SetOrigin([-12.0, 4.5, 30.0])
    img.SetDirection(rotation_matrix((20.0, -35.0, 50.0)).ravel().tolist())
    a = image_to_world_affine(img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    for idx in [(0, 0, 0), (6, 4, 3), (6, 0, 3), (0, 4, 0)]:
        expected = img.TransformIndexToPhysicalPoint(idx)
        got = a @ np.r_[idx[::-1], 1.0]
        assert_allclose(got[:3], expected[::-1], atol=1e-9)
