"""MPI ROIs dock, manual method: a polygon drawn on a 2-D MPI image and labels painted on the
3-D demo MPI become rows whose total signal matches the noise-free render of the known
sources over the same voxels."""

import math

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _choose_manual(dock):
    from mpi_viewer.plugins._roi_dock import MANUAL

    dock.method.setCurrentIndex(dock.method.findData(MANUAL))


def test_paint_3d_measure_painted(make_napari_viewer, notes):
    from mpi_viewer.plugins._launch import load_demo
    from mpi_viewer.plugins._roi_dock import LABELS_LAYER, PAINT_LAYER, ROIDock

    viewer = make_napari_viewer()
    study = load_demo(viewer)
    dock = ROIDock(viewer)
    _choose_manual(dock)
    paint = viewer.layers[PAINT_LAYER]
    assert paint.data.shape == study.mpi.shape
    np.testing.assert_allclose(paint.affine.affine_matrix, dock.mpi_layer.affine.affine_matrix)
    np.testing.assert_allclose(paint.scale, dock.mpi_layer.scale)

    iso = study.source("isolated")
    c = np.rint(study.mpi.physical_to_index([iso["mpi_mm"]])[0]).astype(int)
    box = tuple(slice(v - 10, v + 11) for v in c)
    data = np.zeros(study.mpi.shape, dtype=np.uint16)
    data[box] = 1
    paint.data = data  # what painting does
    dock.manual_btn.click()
    assert not notes["error"]
    assert len(dock.results) == 1 and dock.table.rowCount() == 1
    r = dock.results[0]
    vox = study.mpi.voxel_volume_mm
    m = data > 0
    expected = float(study.render_sources([iso["mpi_mm"]], [iso["iron_ug"]])[m].sum()) * vox
    assert (
        abs(r.total_signal - expected) < 4 * study.truth["noise_sd_au"] * math.sqrt(m.sum()) * vox
    )
    assert r.method == "manual"
    labels = viewer.layers[LABELS_LAYER]
    assert int((labels.data == r.label).sum()) == int(m.sum())

    # a seeded ROI keeps the manual row after it
    dock.method.setCurrentIndex(0)
    strong = study.source("strong")
    assert dock.add_seed_mm(strong["mpi_mm"]) is not None
    assert [x.method for x in dock.results] == ["halfmax", "manual"]
    assert [x.label for x in dock.results] == [1, 2] and dock.table.rowCount() == 2


def test_polygon_2d_row(make_napari_viewer, notes):
    from mpi_viewer.plugins._layers import add_volume
    from mpi_viewer.plugins._roi_dock import LABELS_LAYER, SHAPES_LAYER, ROIDock

    from mpi_viewer.demo.study import make_demo_study
    from mpi_viewer.geometry.volume import Volume, image_from_array

    study = make_demo_study()
    iso = study.source("isolated")
    k, j, i = np.rint(study.mpi.physical_to_index([iso["mpi_mm"]])[0]).astype(int)
    clean = study.render_sources([iso["mpi_mm"]], [iso["iron_ug"]])[
        k
    ]  # the source's slice, noise-free
    rng = np.random.default_rng(3)
    noisy = (clean + rng.normal(0, 1.5, clean.shape)).astype(np.float32)
    sx, sy = study.mpi.spacing_mm[:2]
    vol = Volume(
        image=image_from_array(noisy, spacing_mm=(sx, sy), origin_mm=(-12.0, 4.0)),
        modality="MPI",
        name="MPI 2-D",
    )
    viewer = make_napari_viewer()
    add_volume(viewer, vol)
    dock = ROIDock(viewer)
    _choose_manual(dock)
    shapes = viewer.layers[SHAPES_LAYER]
    # a rectangle with corners on pixel edges around the source: exactly rows j-8…j+8, cols i-9…i+9
    corners = np.array(
        [[j - 8.5, i - 9.5], [j - 8.5, i + 9.5], [j + 8.5, i + 9.5], [j + 8.5, i - 9.5]]
    )
    shapes.add_polygons(
        [corners]
    )  # what drawing a polygon does (data coordinates = MPI voxel indices)
    assert not notes["error"]
    assert len(dock.results) == 1 and dock.table.rowCount() == 1
    r = dock.results[0]
    area = sx * sy
    assert r.n_voxels == 17 * 19 and r.area_mm2 == pytest.approx(17 * 19 * area)
    expected = float(clean[j - 8 : j + 9, i - 9 : i + 10].sum()) * area
    assert abs(r.total_signal - expected) < 4 * 1.5 * math.sqrt(17 * 19) * area
    assert "total signal (a.u.·mm²)" in [
        dock.table.horizontalHeaderItem(c).text().replace("\n", " ")
        for c in range(dock.table.columnCount())
    ]
    assert int((viewer.layers[LABELS_LAYER].data == 1).sum()) == 17 * 19
