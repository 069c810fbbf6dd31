"""The layer pool (plugins/_layer_pool.py): the layers the steps add are made, empty,
when the study's images open; the first ROI takes its Labels layer instead of adding
one, a deleted layer is added again on the next click, and the pooled layers are never
listed, chosen, saved or left behind when the images go."""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _pooled(viewer) -> dict:
    from mpi_viewer.plugins._layer_pool import POOL_KEY, is_pooled

    return {lyr.metadata["mpi_viewer"][POOL_KEY]: lyr for lyr in viewer.layers if is_pooled(lyr)}


def test_first_roi_reuses_the_pooled_layer_and_a_deleted_one_comes_back(
    make_napari_viewer, qtbot, tmp_path
):
    from mpi_viewer.plugins._launch import load_demo
    from mpi_viewer.plugins._layer_pool import install, ready
    from mpi_viewer.plugins._layer_rows import listed_layer_names
    from mpi_viewer.plugins._layers import find_layers, physical_to_world
    from mpi_viewer.plugins._roi_dock import LABELS_LAYER, ROIDock
    from mpi_viewer.plugins._session_dock import SessionDock

    viewer = make_napari_viewer()
    install(viewer)  # as `mpi-viewer` does (plugins/_launch.open_docks)
    images = {lyr.name for lyr in viewer.layers}
    study = load_demo(viewer)
    images = [lyr for lyr in viewer.layers if lyr.name not in images]
    extent = np.asarray(viewer.layers.extent.world).copy()
    dock = ROIDock(viewer)
    viewer.window.add_dock_widget(dock, name="MPI ROIs")
    qtbot.waitUntil(lambda: ready(viewer), timeout=120_000)  # made as the images opened

    pool = _pooled(viewer)
    kinds = {"roi seeds", "roi labels", "labels twin", "density", "outlines", "cell labels"}
    assert kinds <= set(pool)
    # not the user's: no row in the layer list, not an image or labels of the study, and
    # the world the user sees is as wide as before
    assert not any(n.startswith("(pool)") for n in listed_layer_names(viewer))
    chosen = find_layers(viewer) + find_layers(viewer, kind="labels")
    assert not set(map(id, chosen)) & set(map(id, pool.values()))
    np.testing.assert_allclose(viewer.layers.extent.world, extent)

    # the first ROI: the pooled Labels layer, named, on the MPI grid, listed; none added
    # the clicking mode: the pooled seeds' Points layer, named and listed; none added
    n_layers = len(viewer.layers)
    dock.start_clicking()
    assert len(viewer.layers) == n_layers
    assert dock._seed_layer is pool["roi seeds"] and dock._seed_layer.name == "ROI seeds"
    assert len(dock._seed_layer.data) == 0 and dock._seed_layer.opacity > 0
    assert "ROI seeds" in listed_layer_names(viewer)
    iso = study.source("isolated")
    dock._seed_layer.add(physical_to_world(dock.mpi_layer, [iso["mpi_mm"]])[0])  # a click
    assert len(dock.results) == 1
    labels = viewer.layers[LABELS_LAYER]
    assert labels is pool["roi labels"]
    assert labels.data.shape == study.mpi.shape
    assert int((labels.data == 1).sum()) == dock.results[0].n_voxels
    np.testing.assert_allclose(labels.affine.affine_matrix, dock.mpi_layer.affine.affine_matrix)
    assert LABELS_LAYER in listed_layer_names(viewer)
    qtbot.wait(500)  # no layer added meanwhile (a 2-D twin would be the pooled one)
    assert len(viewer.layers) == n_layers
    assert "roi labels" not in _pooled(viewer)

    # the user deletes it: the next click makes it again (added, as before the pool)
    viewer.layers.remove(labels)
    strong = study.source("strong")
    dock._seed_layer.add(physical_to_world(dock.mpi_layer, [strong["mpi_mm"]])[0])
    assert len(dock.results) == 2
    again = viewer.layers[LABELS_LAYER]
    assert again is not labels and set(np.unique(again.data).tolist()) == {0, 1, 2}

    # a session saved now holds the study's layers, none of the pool's
    sess = SessionDock(viewer)
    sess.save(tmp_path / "s.json", block=True)
    saved = json.loads((tmp_path / "s.json").read_text())
    names = [d["name"] for d in saved.get("layers", [])]
    assert LABELS_LAYER in names and not any(n.startswith("(pool)") for n in names)

    # the images removed: no pooled layer is left behind (the extent is the study's)
    for layer in images:
        viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: not _pooled(viewer), timeout=10_000)


def test_helper_rows_stay_hidden_when_layers_move(make_napari_viewer):
    """Helper layers (pooled, decorations) have no row, however the layers are moved:
    one move, or several at once (napari's move_multiple: the rows are set once, after
    all of them)."""
    from mpi_viewer.plugins._layer_rows import hide_helper_rows, listed_layer_names

    viewer = make_napari_viewer()
    mm = ("mm",) * 3
    viewer.add_image(np.zeros((3, 3, 3)), name="a", units=mm)
    viewer.add_points(np.zeros((0, 3)), ndim=3, name="h1", units=mm,
                      metadata={"mpi_viewer": {"decoration_of": "a"}})  # fmt: skip
    viewer.add_image(np.zeros((3, 3, 3)), name="b", units=mm)
    viewer.add_points(np.zeros((0, 3)), ndim=3, name="h2", units=mm,
                      metadata={"mpi_viewer": {"pooled": "leaders"}})  # fmt: skip
    hide_helper_rows(viewer)
    assert listed_layer_names(viewer) == ["b", "a"]
    viewer.layers.move_multiple([1, 3], 0)  # the helpers to the bottom, in one call
    assert [lyr.name for lyr in viewer.layers] == ["h1", "h2", "a", "b"]
    assert listed_layer_names(viewer) == ["b", "a"]
    viewer.layers.move(0, 4)  # one helper to the top
    assert listed_layer_names(viewer) == ["b", "a"]


def test_only_a_dock_napari_opens_for_the_plugin_starts_the_pool(make_napari_viewer, qtbot):
    """A dock a test adds itself under its own title starts no pool (tests that count layers
    stay as they were); the same dock opened by napari for the plugin ("MPI ROIs
    (mpi-viewer)", as the Plugins menu and ``add_plugin_dock_widget`` open it) does. A
    hidden window is not frozen (plugins/_plugin_docks.py)."""
    from mpi_viewer.plugins import _layer_pool
    from mpi_viewer.plugins._roi_dock import ROIDock
    from mpi_viewer.plugins._warm_up import freezing

    viewer = make_napari_viewer()
    viewer.window.add_dock_widget(ROIDock(viewer), name="MPI ROIs")
    qtbot.wait(100)
    assert not getattr(_layer_pool._state(viewer), "installed", False)
    viewer.window.add_plugin_dock_widget("mpi-viewer", "Calibration")
    qtbot.waitUntil(lambda: getattr(_layer_pool._state(viewer), "installed", False))
    qtbot.wait(200)  # past the freeze's delay: none in a hidden window
    assert not freezing() and len(viewer.layers) == 0
