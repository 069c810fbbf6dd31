"""Placement: a voxel's napari world coordinate is its physical position in mm, (z, y, x).

For each case the file goes through the plugin's reader (read_volume → layer tuple)
and into ``napari.layers.Image(data, **kwargs)``; every corner voxel's
``layer.data_to_world(index)`` must equal SimpleITK's ``TransformIndexToPhysicalPoint``
of the same voxel (reversed to z, y, x) within 1e-3 mm. The SimpleITK reference image
is built independently of mpi-viewer's reader: read by SimpleITK itself, or the image
the test wrote.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from mpi_viewer.plugins._reader import get_reader
from test_formats import rotation, synthetic_image, write_dicom_series, write_mdf

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
MOUSE = REAL / "mouse_mri"
TOL_MM = 1e-3

pytestmark = pytest.mark.filterwarnings("ignore:Non-orthogonal slicing")


def layer_through_reader(path):
    """The napari Image layer File > Open would make, without a viewer."""
    from napari.layers import Image

    reader = get_reader(str(path))
    assert reader is not None, f"mpi-viewer does not claim {path}"
    [(data, kwargs, kind)] = reader(str(path))
    assert kind == "image"
    return Image(data, **kwargs)


def corners(size_xyz):
    """Integer indices (x, y, z) of every corner voxel."""
    return list(itertools.product(*[sorted({0, n - 1}) for n in size_xyz]))


def assert_corners_placed(layer, reference: sitk.Image) -> int:
    size = reference.GetSize()
    assert tuple(layer.data.shape) == tuple(size[::-1])
    checked = 0
    for idx_xyz in corners(size):
        expected = np.asarray(reference.TransformIndexToPhysicalPoint([int(i) for i in idx_xyz]))[
            ::-1
        ]
        world = np.asarray(layer.data_to_world(idx_xyz[::-1]))
        np.testing.assert_allclose(
            world, expected, atol=TOL_MM, err_msg=f"voxel {idx_xyz} (x, y, z)"
        )
        checked += 1
    assert checked == 2 ** len(size)
    return checked


@pytest.mark.skipif(not MOUSE.is_dir(), reason="../shared/data/real/mouse_mri is absent")
@pytest.mark.parametrize("name", ["sherm_mouse_t1_1.nii", "fvb_ncrl_in_vivo_1.nii.gz"])
def test_real_mouse_mri_flipped_direction(name):
    path = MOUSE / name
    reference = sitk.ReadImage(str(path))
    np.testing.assert_allclose(
        np.asarray(reference.GetDirection()).reshape(3, 3), np.diag([-1, -1, 1]), atol=1e-6
    )
    layer = layer_through_reader(path)
    assert_corners_placed(layer, reference)
    # the flip is real: increasing x index moves to smaller physical x
    w0, w1 = layer.data_to_world((0, 0, 0)), layer.data_to_world((0, 0, 1))
    assert w1[2] < w0[2]


def test_dicom_series_oblique(tmp_path):
    img = synthetic_image(
        shape_zyx=(5, 6, 7),
        spacing=(0.35, 0.4, 1.1),
        origin=(-20.0, 12.5, -3.0),
        direction_deg=(-12, 25, 40),
    )
    folder = write_dicom_series(tmp_path / "series", img)
    assert_corners_placed(layer_through_reader(folder), img)


def test_mdf_file(tmp_path):
    data = np.random.default_rng(2).random((4, 5, 6)).astype(np.float32)
    fov_m, centre_m = (0.024, 0.02, 0.012), (0.003, -0.001, 0.0025)
    path = write_mdf(tmp_path / "scan.mdf", data, fov_m=fov_m, centre_m=centre_m)
    layer = layer_through_reader(path)
    # reference: the MDF grid as its definition states it (voxel centres of a grid
    # of size cells spanning the field of view around its centre), in mm
    ref = sitk.GetImageFromArray(data)
    size = np.array(data.shape[::-1])
    spacing = np.array(fov_m) * 1e3 / size
    ref.SetSpacing(spacing)
    ref.SetOrigin(np.array(centre_m) * 1e3 - np.array(fov_m) * 1e3 / 2 + spacing / 2)
    assert_corners_placed(layer, ref)
    # the grid's outer faces are the field of view's edges
    lo = np.asarray(layer.data_to_world((-0.5, -0.5, -0.5)))[::-1]
    hi = np.asarray(layer.data_to_world(tuple(np.array(data.shape) - 0.5)))[::-1]
    np.testing.assert_allclose(lo, (np.array(centre_m) - np.array(fov_m) / 2) * 1e3, atol=TOL_MM)
    np.testing.assert_allclose(hi, (np.array(centre_m) + np.array(fov_m) / 2) * 1e3, atol=TOL_MM)


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha"])
def test_oblique_synthetic_volume(tmp_path, ext):
    img = synthetic_image(
        shape_zyx=(9, 8, 7),
        spacing=(0.7, 0.45, 1.3),
        origin=(31.0, -17.5, 4.25),
        direction_deg=(33, -21, 58),
        dtype=np.float32,
    )
    sitk.WriteImage(img, str(tmp_path / f"oblique{ext}"))
    assert_corners_placed(layer_through_reader(tmp_path / f"oblique{ext}"), img)


def test_oblique_npy_with_sidecar(tmp_path):
    img = synthetic_image(
        shape_zyx=(4, 5, 6),
        spacing=(0.5, 0.6, 0.7),
        origin=(1.0, 2.0, 3.0),
        direction_deg=(5, 10, -30),
        dtype=np.float32,
    )
    np.save(tmp_path / "recon.npy", sitk.GetArrayFromImage(img))
    (tmp_path / "recon.json").write_text(
        json.dumps(
            {
                "spacing_mm": list(img.GetSpacing()),
                "origin_mm": list(img.GetOrigin()),
                "direction": list(img.GetDirection()),
            }
        )
    )
    assert_corners_placed(layer_through_reader(tmp_path / "recon.npy"), img)


def test_demo_oblique_mri(tmp_path):
    from mpi_viewer.demo.study import make_demo_study
    from mpi_viewer.io.images import write_volume

    study = make_demo_study(mri_direction_deg=(10, -20, 15), mri_spacing_mm=(0.3, 0.35, 0.5))
    reference = study.mri.image
    assert not np.allclose(np.asarray(reference.GetDirection()).reshape(3, 3), np.eye(3))
    path = write_volume(study.mri, tmp_path / "demo_mri.nii.gz")
    assert_corners_placed(layer_through_reader(path), reference)


def test_two_d_image(tmp_path):
    arr = np.arange(7 * 9, dtype=np.float32).reshape(7, 9)
    ref = sitk.GetImageFromArray(arr)
    ref.SetSpacing((0.3125, 0.25))
    ref.SetOrigin((-10.0, 6.5))
    ref.SetDirection(rotation((0, 0, 30))[:2, :2].ravel())
    np.save(tmp_path / "projection.npy", arr)
    (tmp_path / "projection.json").write_text(
        json.dumps(
            {
                "spacing_mm": [0.3125, 0.25],
                "origin_mm": [-10.0, 6.5],
                "direction": list(ref.GetDirection()),
            }
        )
    )
    layer = layer_through_reader(tmp_path / "projection.npy")
    assert layer.ndim == 2
    assert assert_corners_placed(layer, ref) == 4


def test_two_volumes_overlay_where_physics_says(tmp_path):
    """A flipped MRI and an oblique, coarser MPI: the same physical point maps to one world point."""
    mri = synthetic_image(
        shape_zyx=(10, 12, 14),
        spacing=(0.2, 0.2, 0.5),
        origin=(5.0, 6.0, -2.0),
        direction_deg=(0, 0, 180),
        dtype=np.float32,
    )  # diag(-1, -1, 1)
    mpi = synthetic_image(
        shape_zyx=(5, 6, 7),
        spacing=(0.5, 0.5, 0.5),
        origin=(-1.0, 1.5, -1.0),
        direction_deg=(8, -6, 20),
        dtype=np.float32,
    )
    sitk.WriteImage(mri, str(tmp_path / "mri.nii.gz"))
    sitk.WriteImage(mpi, str(tmp_path / "mpi.nii.gz"))
    lm, lp = (
        layer_through_reader(tmp_path / "mri.nii.gz"),
        layer_through_reader(tmp_path / "mpi.nii.gz"),
    )
    point_xyz = np.array([2.0, 3.0, 0.5])  # inside both grids
    im = np.asarray(mri.TransformPhysicalPointToContinuousIndex(point_xyz))[::-1]
    ip = np.asarray(mpi.TransformPhysicalPointToContinuousIndex(point_xyz))[::-1]
    np.testing.assert_allclose(lm.data_to_world(im), lp.data_to_world(ip), atol=TOL_MM)
    np.testing.assert_allclose(lm.data_to_world(im), point_xyz[::-1], atol=TOL_MM)
