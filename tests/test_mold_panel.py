"""The Mold registration panel as a user meets it, against the demo study's truth.

Runs under Xvfb: ``xvfb-run -a python -m pytest tests/test_mold_panel.py``.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

pytestmark = pytest.mark.gui

SMALL = dict(include_ct=False, mri_spacing_mm=(0.5, 0.5, 0.5), extra_hot_spots=2)


@pytest.fixture
def setup(make_napari_viewer):
    """Demo MRI and MPI (M3 left empty in the MPI) added unregistered; the panel docked."""
    from mpi_viewer.plugins._layers import add_volume
    from mpi_viewer.plugins._mold_panel import MoldPanel

    from mpi_viewer.demo.study import make_demo_study

    study = make_demo_study(missing_fiducials=("M3",), **SMALL)
    viewer = make_napari_viewer()
    add_volume(viewer, study.mri, name="MRI")
    add_volume(viewer, study.mpi, name="MPI")
    calls = []
    panel = MoldPanel(viewer, on_pairs=lambda *a, **k: calls.append(a))
    viewer.window.add_dock_widget(panel, name="Mold registration")
    assert panel.fixed_combo.currentText() == "MRI" and panel.moving_combo.currentText() == "MPI"
    assert panel.template() == "mouse_mold_v1"
    return viewer, panel, study, calls


def _world(layer):
    """World (z, y, x) positions of a Points layer's points, whatever its affine."""
    return np.array([np.asarray(layer.data_to_world(p)) for p in layer.data])


def _truth(study, key):
    return {f["name"]: np.asarray(f[key]) for f in study.truth["fiducials"]}


def test_detect_in_a_worker_gives_named_points_on_the_wells(setup, qtbot):
    from mpi_viewer.plugins._mold_panel import FIXED_POINTS, MOVING_POINTS

    from mpi_viewer.geometry.axes import xyz_to_zyx

    viewer, panel, study, calls = setup
    worker = panel.detect()
    assert worker is not None and panel.busy
    qtbot.waitUntil(lambda: not panel.busy, timeout=60_000)
    assert panel.error is None
    expected = [f"M{i}" for i in (1, 2, 4, 5, 6, 7)]
    mri_truth, mpi_truth = _truth(study, "mri_mm"), _truth(study, "mpi_mm")
    fixed_pts, moving_pts = viewer.layers[FIXED_POINTS], viewer.layers[MOVING_POINTS]
    for layer, truth in ((fixed_pts, mri_truth), (moving_pts, mpi_truth)):
        assert list(layer.features["name"]) == expected
        # unregistered: world is each image's own physical mm in (z, y, x)
        want = np.array([xyz_to_zyx(truth[n]) for n in expected])
        assert np.linalg.norm(_world(layer) - want, axis=1).max() < 0.5
    # the registration dock gets each image's own physical mm (x, y, z)
    ((names, fixed_xyz, moving_xyz),) = calls
    assert list(names) == expected
    assert np.linalg.norm(fixed_xyz - np.array([mri_truth[n] for n in names]), axis=1).max() < 0.5
    assert np.linalg.norm(moving_xyz - np.array([mpi_truth[n] for n in names]), axis=1).max() < 0.5
    assert "M3" in panel.status.text()  # reported as not found


def test_moving_points_follow_a_registered_moving_layer(setup):
    from mpi_viewer.plugins._layers import apply_registration
    from mpi_viewer.plugins._mold_panel import MOVING_POINTS

    from mpi_viewer.geometry.axes import xyz_to_zyx

    viewer, panel, study, calls = setup
    panel.detect(block=True)  # unregistered first
    t = study.truth["transform_fixed_to_moving"]
    apply_registration(viewer.layers["MPI"], t["matrix"], t["translation"], fixed_name="MRI")
    # the MPI is now drawn in the MRI's space: its markers moved with it onto the MRI's wells
    mri_truth, mpi_truth = _truth(study, "mri_mm"), _truth(study, "mpi_mm")
    layer = viewer.layers[MOVING_POINTS]
    want = np.array([xyz_to_zyx(mri_truth[n]) for n in layer.features["name"]])
    assert_allclose(_world(layer), want, atol=0.5)
    # detecting again on the registered layer puts them in the same place
    panel.detect(block=True)
    assert viewer.layers[MOVING_POINTS] is layer and len(layer.data) == 6
    assert_allclose(_world(layer), want, atol=0.5)
    # while on_pairs still receives the MPI's own physical mm
    names, _, moving_xyz = calls[-1]
    assert_allclose(moving_xyz, np.array([mpi_truth[n] for n in names]), atol=0.5)


def test_wrong_template_is_a_notification_and_adds_nothing(setup, monkeypatch, tmp_path, qtbot):
    import json

    import mpi_viewer.plugins._mold_panel as mp

    viewer, panel, study, calls = setup
    errors = []
    monkeypatch.setattr(mp, "show_error", errors.append)
    panel.template_combo.setCurrentText("rat_mold_v1")
    n_layers = len(viewer.layers)
    panel.detect()  # the error happens in the worker thread and comes back as a notification
    qtbot.waitUntil(lambda: not panel.busy, timeout=60_000)
    assert len(errors) == 1 and "rat_mold_v1" in errors[0] and not calls
    assert len(viewer.layers) == n_layers
    # a bad template file chosen with Browse… is refused with the field named
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "units": "mm", "appearance": {}}), encoding="utf-8")
    assert not panel.add_template_file(bad)
    assert "'fiducials'" in errors[-1]


def test_cancel_stops_the_worker_and_adds_nothing(setup, qtbot, monkeypatch):
    import mpi_viewer.plugins._mold_panel as mp

    viewer, panel, study, calls = setup
    infos = []
    monkeypatch.setattr(mp, "show_info", infos.append)
    n_layers = len(viewer.layers)
    panel.detect()
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.busy, timeout=60_000)
    assert panel.status.text() == "Cancelled." and infos and not calls
    assert len(viewer.layers) == n_layers and panel.detect_btn.isEnabled()


def test_panel_uses_the_study_images_and_alone_moves_the_mpi(make_napari_viewer):
    """Embedded: no pickers of its own (the host shows the same study images). Alone:
    Detect draws the MPI on the anatomy (sources land on their true MRI positions)."""
    from mpi_viewer.plugins._layers import add_volume, physical_to_world
    from mpi_viewer.plugins._mold_panel import FIXED_POINTS, MoldPanel

    from mpi_viewer.demo.study import make_demo_study

    study = make_demo_study(**SMALL)
    viewer = make_napari_viewer()
    add_volume(viewer, study.mpi, name="iron")  # MPI first: roles come from the modality
    add_volume(viewer, study.mri, name="anatomy")
    embedded = MoldPanel(viewer, embedded=True)
    assert embedded.fixed_combo.isHidden() and embedded.moving_combo.isHidden()
    panel = MoldPanel(viewer)
    assert (
        panel.fixed_combo.currentText() == "anatomy" and panel.moving_combo.currentText() == "iron"
    )
    assert [panel.moving_combo.itemText(i) for i in range(panel.moving_combo.count())] == ["iron"]
    panel.detect(block=True)
    assert panel.error is None
    assert viewer.layers[FIXED_POINTS].metadata["mpi_viewer"]["fiducials_of"] == "anatomy"
    assert "Moving: 7/7 wells" in panel.status.text()
    mpi = viewer.layers["iron"]
    for src in study.truth["sources"]:
        world = physical_to_world(mpi, [src["mpi_mm"]])[0]
        assert np.linalg.norm(world[::-1] - np.asarray(src["mri_mm"])) < 0.5


def test_mold_mode_of_the_registration_dock_fits_the_true_transform(make_napari_viewer):
    from mpi_viewer.plugins._layers import add_volume
    from mpi_viewer.plugins._registration_dock import RegistrationDock

    from mpi_viewer.demo.study import make_demo_study

    study = make_demo_study(**SMALL)
    viewer = make_napari_viewer()
    add_volume(viewer, study.mri, name="MRI")
    add_volume(viewer, study.mpi, name="MPI")
    dock = RegistrationDock(viewer)
    dock.mode_combo.setCurrentIndex(dock.mode_combo.findText("Mold"))
    dock.mold_panel.detect(block=True)
    t = study.truth["transform_fixed_to_moving"]
    assert dock.fit is not None and list(dock.fit.names) == [f"M{i}" for i in range(1, 8)]
    src = np.array([s["mri_mm"] for s in study.truth["sources"]])
    expected = src @ np.asarray(t["matrix"]).T + np.asarray(t["translation"])
    assert np.linalg.norm(dock.fit.transform_points(src) - expected, axis=1).max() < 0.5
