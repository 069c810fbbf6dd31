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


def _shown_as(viewer, plain) -> None:
    """``viewer`` shows its data as ``plain`` (a window of the same docks without a pool)
    does: the same world extent, sliders, slice and camera."""
    from mpi_viewer.plugins import _napari_compat as compat

    np.testing.assert_allclose(viewer.layers.extent.world, plain.layers.extent.world, atol=1e-6)
    assert viewer.dims.ndim == plain.dims.ndim
    assert tuple(viewer.dims.nsteps) == tuple(plain.dims.nsteps)
    assert tuple(viewer.dims.current_step) == tuple(plain.dims.current_step)
    cam, ref = compat.camera(viewer), compat.camera(plain)
    np.testing.assert_allclose(cam.center, ref.center, atol=1e-3)
    # the zoom napari's own fit gives in this window (its canvas may be a few pixels
    # narrower than ``plain``'s: the layer controls panel keeps the width it took)
    zoom = cam.zoom
    viewer.reset_view()
    assert cam.zoom == pytest.approx(zoom, rel=1e-3)
    np.testing.assert_allclose(cam.center, ref.center, atol=1e-3)


def _drawn(viewer, pool) -> int:
    """Pixels of the canvas that change when the pooled layers are hidden."""
    shown = viewer.screenshot(canvas_only=True)[..., :3].astype(int)
    for lyr in pool.values():
        lyr.visible = False
    bare = viewer.screenshot(canvas_only=True)[..., :3].astype(int)
    for lyr in pool.values():
        lyr.visible = True
    return int((np.abs(shown - bare).max(axis=-1) > 1).sum())


def test_mpi_viewer_started_empty_shows_a_far_image_as_napari_does(
    make_napari_viewer, qtbot, study, tmp_path
):
    """`mpi-viewer` without data makes the layer pool at start-up, where nothing is there
    to sit on (at the origin); an MRI in scanner coordinates 300 mm away then opens
    (File > Open) and is shown exactly as napari shows a window's first image, the pooled
    layers moved onto it. The same with a session opened into such a window."""
    import dataclasses

    from mpi_viewer.plugins._launch import prepare
    from mpi_viewer.plugins._layer_pool import ready
    from mpi_viewer.plugins._warm_up import stop_freezing

    from mpi_viewer.geometry.volume import image_from_array
    from mpi_viewer.io.images import write_volume

    mri = study.mri
    origin = np.asarray(mri.origin_mm) + (180.0, -95.0, 240.0)
    far = dataclasses.replace(
        mri,
        image=image_from_array(mri.array, spacing_mm=mri.spacing_mm, origin_mm=origin),
        _array=None,
        _range=None,
    )
    path = write_volume(far, tmp_path / "mri.nii.gz")
    viewer = make_napari_viewer(show=True, show_welcome_screen=True)  # as napari.Viewer()
    plain = make_napari_viewer(show=True)
    try:
        prepare(viewer, settle=True)  # as `mpi-viewer` starts
        # it looks like an empty napari window: the welcome screen over the canvas
        from mpi_viewer.plugins import _napari_compat as compat

        assert compat.welcome_screen_shown(viewer) is True
        pool = _pooled(viewer)
        assert {"roi labels", "density", "cell labels", "image twin"} <= set(pool)
        assert all(lyr.visible for lyr in pool.values())
        prepare(plain)  # the same docks, no pool before the data
        viewer.open(path, plugin="mpi-viewer")
        plain.open(path, plugin="mpi-viewer")
        qtbot.wait(50)
        _shown_as(viewer, plain)
        assert compat.welcome_screen_shown(viewer) is False
        assert _drawn(viewer, pool) == 0  # nothing of the pool drawn over the MRI either
        lo = origin[::-1]
        hi = lo + (np.asarray(mri.array.shape) - 1) * np.asarray(mri.spacing_mm)[::-1]
        np.testing.assert_allclose(viewer.layers.extent.world, [lo, hi], atol=1e-4)
        for lyr in pool.values():  # each pooled voxel on the MRI, on its grid step
            if type(lyr).__name__ in ("Image", "Labels"):
                centre = np.asarray(lyr.data_to_world((0, 0, 0)))
                assert np.all(centre >= lo) and np.all(centre <= hi), lyr.name
                np.testing.assert_allclose(lyr.scale, mri.spacing_mm[::-1], rtol=1e-6)
        assert ready(viewer)  # nothing left to make: the steps take what start-up made
    finally:
        stop_freezing()  # the collector as usual for the windows' leak checks


@pytest.mark.parametrize("first", ["real 2-D MPI", "time series", "points with data"])
def test_mpi_viewer_started_empty_then_other_data_drops_the_3d_pool(
    make_napari_viewer, qtbot, tmp_path, first
):
    """A first layer the 3-D pool does not fit, in `mpi-viewer` started empty: a real 2-D
    MPI reconstruction (File > Open), a 4-D time series (the frames of an MDF), points
    read from somewhere, 300 mm from the origin. The pooled layers go (they would widen
    its world, or make it 3-D with a slider) and the data is shown as napari shows it in a
    window without them."""
    from pathlib import Path

    from mpi_viewer.plugins import _napari_compat as compat
    from mpi_viewer.plugins._launch import prepare
    from mpi_viewer.plugins._warm_up import stop_freezing

    from mpi_viewer.io.images import read_volume, write_volume

    if first == "real 2-D MPI":
        src = Path(__file__).resolve().parents[1].parent / "shared/data/real/mpi_ffl_phantoms"
        if not src.is_dir():
            pytest.skip("../shared/data/real/mpi_ffl_phantoms is absent")
        vol = read_volume(src / "ffl_phantom_1.mat", spacing_mm=(20 / 64, 20 / 64))
        path = write_volume(vol, tmp_path / "ffl_phantom_1.nii.gz")

        def add(v):
            v.open(path, plugin="mpi-viewer")
    elif first == "time series":
        frames = np.random.default_rng(1).random((3, 9, 9, 9)).astype(np.float32)

        def add(v):
            v.add_image(frames, translate=(0, 300, 46, 46), units=("s", *compat.MM_UNITS))
    else:
        pts = np.array([[10.0, 200.0, 300.0], [14.0, 230.0, 310.0]])

        def add(v):
            v.add_points(pts, units=compat.MM_UNITS)

    viewer = make_napari_viewer(show=True, show_welcome_screen=True)  # as napari.Viewer()
    plain = make_napari_viewer(show=True)
    try:
        prepare(viewer, settle=True)
        assert _pooled(viewer)
        prepare(plain)
        add(viewer)
        add(plain)
        qtbot.waitUntil(lambda: not _pooled(viewer), timeout=10_000)
        qtbot.wait(50)
        assert [lyr.name for lyr in viewer.layers] == [lyr.name for lyr in plain.layers]
        _shown_as(viewer, plain)
    finally:
        stop_freezing()
