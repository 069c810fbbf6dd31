"""The napari reader: what it claims, what it returns, and what a user sees on bad files.

No Qt needed: napari's ViewerModel runs the same File > Open path (npe2 reader
discovery, layer creation, notifications) headless.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from mpi_viewer.plugins._reader import NO_LAYERS, get_reader, layer_data_tuple
from test_formats import synthetic_image, write_dicom_series, write_mdf

from mpi_viewer.io.images import read_volume


@pytest.fixture(scope="module")
def viewer_model():
    from napari.components import ViewerModel
    from npe2 import PluginManager

    PluginManager.instance().discover()
    return ViewerModel


@pytest.fixture
def notifications():
    from napari.utils.notifications import notification_manager

    seen = []

    def keep(event):
        seen.append((str(event.severity), event.message))

    notification_manager.notification_ready.connect(keep)
    yield seen
    notification_manager.notification_ready.disconnect(keep)


def test_get_reader_declines_what_it_does_not_read(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "plain.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # HDF5 but no MDF image
    sub = tmp_path / "photos"
    sub.mkdir()
    (sub / "a.png").write_bytes(b"\x89PNG")
    np.save(tmp_path / "ok.npy", np.ones((2, 3)))
    for path in [
        tmp_path / "notes.txt",
        tmp_path / "plain.h5",
        sub,
        tmp_path / "missing.xyz",
        [str(tmp_path / "ok.npy"), str(tmp_path / "notes.txt")],
        [],
        None,
        42,
    ]:
        assert get_reader(path) is None, path


def test_get_reader_claims_formats_and_dicom_folders(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((2, 3)))
    write_dicom_series(tmp_path / "series", synthetic_image(shape_zyx=(3, 4, 5)))
    write_mdf(
        tmp_path / "r.h5", np.ones((2, 3, 4), np.float32), fov_m=(0.01,) * 3, centre_m=(0,) * 3
    )
    for path in [
        tmp_path / "a.npy",
        str(tmp_path / "series"),
        tmp_path / "r.h5",
        tmp_path / "x.nii.gz",
        [str(tmp_path / "a.npy"), str(tmp_path / "r.h5")],
    ]:
        assert callable(get_reader(path)), path


def test_mpi_layer_display_hot_additive_full_range(tmp_path):
    data = np.zeros((3, 4, 5), np.float32)
    data[1, 2, 3] = 250.0
    data[0, 0, 0] = -12.5  # reconstructions hold negative values; the range includes them
    write_mdf(tmp_path / "m.mdf", data, fov_m=(0.005, 0.004, 0.003), centre_m=(0, 0, 0))
    [(arr, kwargs, kind)] = get_reader(str(tmp_path / "m.mdf"))(str(tmp_path / "m.mdf"))
    assert kind == "image"
    np.testing.assert_array_equal(arr, data)
    assert kwargs["colormap"] == "hot" and kwargs["blending"] == "additive"
    assert kwargs["contrast_limits"] == (-12.5, 250.0)
    meta = kwargs["metadata"]["mpi_viewer"]
    assert meta["modality"] == "MPI" and meta["acquisition"]["tracer"] == "Perimag"
    np.testing.assert_allclose(kwargs["scale"], [1.0, 1.0, 1.0])  # 3 mm / 3, 4 mm / 4, 5 mm / 5


def test_anatomy_layers_are_grey(tmp_path):
    sitk.WriteImage(synthetic_image(), str(tmp_path / "t2_mri.nii.gz"))
    _, kwargs, _ = layer_data_tuple(read_volume(tmp_path / "t2_mri.nii.gz"))
    assert kwargs["colormap"] == "gray" and kwargs["blending"] == "translucent"
    z, y, x = np.indices((6, 7, 8))
    values = 100 * z + 10 * y + x - 50
    assert kwargs["contrast_limits"] == (values.min(), values.max())
    big = sitk.GetImageFromArray(np.array([[[-3024, 0, 3071]]], np.int16))
    sitk.WriteImage(big, str(tmp_path / "ct.nii"))
    _, kwargs, _ = layer_data_tuple(read_volume(tmp_path / "ct.nii"))
    assert kwargs["contrast_limits"] == (-1000.0, 2000.0)  # CT window in HU


@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing")
def test_viewer_open_adds_placed_layers(tmp_path, viewer_model):
    img = synthetic_image(dtype=np.float32)
    sitk.WriteImage(img, str(tmp_path / "mri.nii.gz"))
    np.save(tmp_path / "mpi.npy", np.ones((4, 5), np.float32))
    (tmp_path / "mpi.json").write_text(json.dumps({"spacing_mm": [0.5, 0.25], "origin_mm": [3, 4]}))
    viewer = viewer_model()
    layers = viewer.open(
        [str(tmp_path / "mri.nii.gz"), str(tmp_path / "mpi.npy")], plugin="mpi-viewer"
    )
    assert [lyr.name for lyr in viewer.layers] == ["mri", "mpi"]
    mri, mpi = layers
    corner = np.asarray(img.TransformIndexToPhysicalPoint((7, 6, 5)))[::-1]
    np.testing.assert_allclose(mri.data_to_world((5, 6, 7)), corner, atol=1e-4)
    np.testing.assert_allclose(mpi.data_to_world((3, 4)), [4 + 3 * 0.25, 3 + 4 * 0.5])
    assert mpi.colormap.name == "hot"


def test_bad_file_is_a_notification_and_the_viewer_goes_on(tmp_path, viewer_model, notifications):
    (tmp_path / "empty.nii").write_bytes(b"")
    np.save(tmp_path / "fourd.npy", np.ones((2, 3, 4, 5)))
    np.save(tmp_path / "nospacing.npy", np.ones((3, 4, 5)))
    viewer = viewer_model()
    assert viewer.open(str(tmp_path / "empty.nii"), plugin="mpi-viewer") == []
    assert viewer.open(str(tmp_path / "fourd.npy"), plugin="mpi-viewer") == []
    assert len(viewer.layers) == 0
    errors = [m for s, m in notifications if "error" in s.lower()]
    assert len(errors) == 2
    assert errors[0] == f"{tmp_path / 'empty.nii'}: the file is empty (0 bytes)"
    assert errors[1].startswith(f"{tmp_path / 'fourd.npy'}:") and "4-D" in errors[1]
    # no spacing: the GUI asks instead of refusing (opened on 1 mm voxels, flagged, warned)
    viewer.open(str(tmp_path / "nospacing.npy"), plugin="mpi-viewer")
    assert viewer.layers[-1].metadata["mpi_viewer"]["geometry_missing"] is True
    warnings = [m for s, m in notifications if "warn" in s.lower()]
    assert any("no voxel spacing" in m and "Image geometry" in m for m in warnings)
    # the viewer still works: a good file opens after the bad ones
    np.save(tmp_path / "good.npy", np.ones((3, 4, 5)))
    (tmp_path / "good.json").write_text(json.dumps({"spacing_mm": [1, 1, 1]}))
    viewer.open(str(tmp_path / "good.npy"), plugin="mpi-viewer")
    assert [lyr.name for lyr in viewer.layers] == ["nospacing", "good"]


def test_reader_returns_napari_null_sentinel_for_nothing_read(tmp_path, notifications):
    (tmp_path / "e.npy").write_bytes(b"")
    assert get_reader(str(tmp_path / "e.npy"))(str(tmp_path / "e.npy")) == NO_LAYERS
