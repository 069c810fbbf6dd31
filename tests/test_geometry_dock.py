import numpy as np
import pytest
from numpy.testing import assert_allclose

pytestmark = pytest.mark.gui


def test_geometry_dock_places_a_bare_array(make_napari_viewer):
    from mpi_viewer.plugins._geometry_dock import GeometryDock
    from mpi_viewer.plugins._layers import volume_from_layer

    viewer = make_napari_viewer()
    data = np.zeros((4, 5, 6), dtype=np.float32)
    data[2, 3, 4] = 1.0
    layer = viewer.add_image(data, name="bare")
    dock = GeometryDock(viewer)
    dock.layer_combo.setCurrentText("bare")
    dock.modality.setCurrentText("MPI")
    for box, v in zip(dock.spacing, (0.3125, 0.5, 2.0), strict=True):
        box.setValue(v)
    for box, v in zip(dock.origin, (-10.0, 5.0, 1.5), strict=True):
        box.setValue(v)
    dock.tracer.setText("Synomag")
    dock.apply()
    vol = volume_from_layer(layer)
    assert vol.modality == "MPI" and vol.acquisition.tracer == "Synomag"
    assert_allclose(vol.spacing_mm, (0.3125, 0.5, 2.0))
    # the bright voxel (x=4, y=3, z=2) is at origin + index·spacing, in world and in the volume
    expected_xyz = np.array([-10 + 4 * 0.3125, 5 + 3 * 0.5, 1.5 + 2 * 2.0])
    assert_allclose(layer.data_to_world((2, 3, 4)), expected_xyz[::-1])
    assert_allclose(vol.index_to_physical((2, 3, 4))[0], expected_xyz)


def test_array_without_spacing_opens_flagged_and_geometry_dock_fixes_it(
    make_napari_viewer, tmp_path
):
    from mpi_viewer.plugins._geometry_dock import GeometryDock
    from mpi_viewer.plugins._layers import volume_from_layer

    data = np.zeros((6, 7), dtype=np.float32)
    data[3, 5] = 10.0
    np.save(tmp_path / "projection.npy", data)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "projection.npy"), plugin="mpi-viewer")
    layer = viewer.layers[-1]
    assert layer.metadata["mpi_viewer"]["geometry_missing"] is True
    dock = GeometryDock(viewer)
    dock.layer_combo.setCurrentText(layer.name)
    assert "no spacing" in dock.status.text()
    dock.spacing[0].setValue(0.3125)
    dock.spacing[1].setValue(0.3125)
    dock.apply()
    assert_allclose(volume_from_layer(layer).index_to_physical((3, 5))[0], (5 * 0.3125, 3 * 0.3125))
    assert layer.metadata["mpi_viewer"]["geometry_missing"] is False
