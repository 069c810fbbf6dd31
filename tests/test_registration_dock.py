"""The Fiducial registration dock as a user meets it, against the demo study's truth.

Runs under Xvfb: ``xvfb-run -a python -m pytest tests/test_registration_dock.py``.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

pytestmark = pytest.mark.gui

FLE_MM = 0.15
USE, NAME, FRE = 0, 1, 2  # the dock's table columns


@pytest.fixture
def study():
    from mpi_viewer.demo.study import make_demo_study

    return make_demo_study()


@pytest.fixture
def dock(make_napari_viewer, study):
    """MRI and MPI added unregistered (each in its own scanner frame) and the dock docked."""
    from mpi_viewer.plugins._layers import add_volume
    from mpi_viewer.plugins._registration_dock import RegistrationDock

    viewer = make_napari_viewer()
    add_volume(viewer, study.mri, name="MRI")
    add_volume(viewer, study.mpi, name="MPI")
    widget = RegistrationDock(viewer)
    viewer.window.add_dock_widget(widget, name="Fiducial registration")
    assert widget.fixed_combo.currentText() == "MRI" and widget.moving_combo.currentText() == "MPI"
    return widget


def test_mold_mode_embeds_the_mold_panel_feeding_the_pairs(dock):
    from mpi_viewer.plugins._mold_panel import MoldPanel

    dock.mode_combo.setCurrentText("Mold")
    assert isinstance(dock.stack.currentWidget(), MoldPanel)
    assert dock.mold_panel.on_pairs == dock._pairs_from_mold


def noisy_fiducials(study, seed=0):
    """The demo's true fiducial centres with 0.15 mm RMS (vector) localisation error in each image."""
    rng = np.random.default_rng(seed)
    fids = [f for f in study.truth["fiducials"] if f["in_mpi"]]
    names = [f["name"] for f in fids]
    sd = FLE_MM / np.sqrt(3)
    fixed = np.array([f["mri_mm"] for f in fids]) + rng.normal(0, sd, (len(fids), 3))
    moving = np.array([f["mpi_mm"] for f in fids]) + rng.normal(0, sd, (len(fids), 3))
    return names, fixed, moving


def mpi_world_of(layer, xyz_mm):
    """Where the MPI layer draws its own physical point ``xyz_mm`` (world z, y, x)."""
    from mpi_viewer.plugins._layers import volume_from_layer

    idx = volume_from_layer(layer).physical_to_index(xyz_mm)[0]
    return np.asarray(layer.data_to_world(idx))


def test_pairs_fit_the_true_transform_and_the_preview_puts_sources_on_the_mri(dock, study):
    names, fixed, moving = noisy_fiducials(study)
    dock.load_pairs(names, fixed, moving)
    fit = dock.fit
    assert fit is not None and fit.n_used == len(names)
    truth = study.truth["transform_fixed_to_moving"]
    assert_allclose(fit.matrix, truth["matrix"], atol=0.01)
    assert_allclose(fit.translation, truth["translation"], atol=0.3)
    mpi = dock.viewer.layers["MPI"]
    for src in study.truth["sources"]:
        # TRE at the iron sources, and the preview draws each source at its MRI position
        assert np.linalg.norm(fit.transform_points(src["mri_mm"]) - src["mpi_mm"]) <= 0.3
        assert (
            np.linalg.norm(mpi_world_of(mpi, src["mpi_mm"]) - np.asarray(src["mri_mm"])[::-1])
            <= 0.3
        )
    # the moving markers sit on the MPI as drawn: each where the MPI draws that physical point,
    # i.e. near the MRI fiducial it pairs with
    pts = dock.pairs.moving
    for i, f in enumerate(moving):
        marker_world = np.asarray(pts.data_to_world(pts.data[i]))
        assert_allclose(marker_world, mpi_world_of(mpi, f), atol=1e-6)
        assert np.linalg.norm(marker_world - fixed[i][::-1]) < 0.5
    # pairs are numbered, share a colour, and the table lists residuals with units
    assert list(pts.features["label"]) == [f"{k + 1}:{n}" for k, n in enumerate(names)]
    assert_allclose(np.asarray(pts.face_color), np.asarray(dock.pairs.fixed.face_color))
    assert len({tuple(c) for c in np.asarray(pts.face_color)}) == len(names)
    assert dock.table.rowCount() == len(names)
    assert dock.table.horizontalHeaderItem(FRE).text() == "FRE (mm)"
    assert "RMS FRE" in dock.rms_label.text() and "mm" in dock.rms_label.text()
    # expected TRE (Fitzpatrick 1998) at a pinned target: about FLE/sqrt(N) near the centroid
    dock.fle_spin.value = FLE_MM
    dock.set_target(fixed.mean(axis=0))
    assert "Expected TRE at target" in dock.tre_label.text()
    tre = float(dock.tre_label.text().split(":")[1].split("mm")[0])
    assert tre == pytest.approx(FLE_MM / np.sqrt(len(names)), rel=0.05)


def test_an_outlier_is_flagged_red_and_excluding_it_refits(dock, study, qtbot):
    names, fixed, moving = noisy_fiducials(study, seed=1)
    moving[2] += [3.0, 0.0, 0.0]  # a 3 mm mis-click on the third fiducial
    dock.load_pairs(names, fixed, moving)
    assert dock.fit.n_used == len(names) and dock.fit.rms_fre_mm > 1.0
    assert dock.table.item(2, FRE).background().color().red() > 150  # red: above tolerance
    assert any(names[2] in w for w in dock.warnings)
    from qtpy.QtCore import Qt

    dock.table.item(2, USE).setCheckState(Qt.Unchecked)  # the user unticks "use"
    qtbot.waitUntil(
        lambda: dock.fit is not None and dock.fit.n_used == len(names) - 1, timeout=2000
    )
    assert dock.fit.rms_fre_mm < 0.3
    assert dock.fit.residuals_mm[2] == pytest.approx(3.0, abs=0.5)  # still reported
    truth = study.truth["transform_fixed_to_moving"]
    assert_allclose(dock.fit.matrix, truth["matrix"], atol=0.01)


def test_csv_export_import_round_trip(dock, study, tmp_path):
    names, fixed, moving = noisy_fiducials(study)
    dock.load_pairs(names, fixed, moving)
    assert dock.export_csv("fixed", tmp_path / "f.csv") and dock.export_csv(
        "moving", tmp_path / "m.csv"
    )
    dock.load_pairs([], np.zeros((0, 3)), np.zeros((0, 3)))
    assert dock.table.rowCount() == 0
    assert dock.import_csv("fixed", tmp_path / "f.csv") and dock.import_csv(
        "moving", tmp_path / "m.csv"
    )
    got_names, got_f, got_m = dock.pairs.pairs()
    assert got_names == names
    assert_allclose(got_f, fixed, atol=1e-6)
    assert_allclose(got_m, moving, atol=1e-6)  # the MPI's own frame, not world
    assert dock.fit is not None and dock.fit.n_used == len(names)
    # what a session stores and gives back (model, exclusions) round-trips too
    dock.set_included(names[0], False)
    saved = dock.landmarks()
    dock.load_pairs([], np.zeros((0, 3)), np.zeros((0, 3)), model="rigid")
    dock.load_pairs(
        saved["names"],
        saved["fixed_xyz_mm"],
        saved["moving_xyz_mm"],
        excluded=saved["excluded"],
        model="affine",
    )
    assert dock.model_combo.value == "affine" and dock.fit.model == "affine"
    assert dock.fit.n_used == len(names) - 1 and saved["excluded"] == [names[0]]


def test_too_few_pairs_warn_and_apply_nothing(dock, study):
    mpi = dock.viewer.layers["MPI"]
    before = np.asarray(mpi.affine.affine_matrix).copy(), np.asarray(mpi.translate).copy()
    names, fixed, moving = noisy_fiducials(study)
    dock.load_pairs(names[:2], fixed[:2], moving[:2])
    assert dock.fit is None and dock.transform is None
    assert any("needs at least 3" in w for w in dock.warnings)
    assert "needs at least 3" in dock.warn_label.text()
    assert_allclose(mpi.affine.affine_matrix, before[0])
    assert_allclose(mpi.translate, before[1])
    assert "transform_fixed_to_moving" not in mpi.metadata["mpi_viewer"]
    assert len(dock.pairs.fixed.data) == 2  # the points are kept
    dock.load_pairs(
        names[:3], fixed[:3], moving[:3] + [[0.0, 0.0, 500.0]]
    )  # clicked far off the MPI
    assert any("outside the moving image" in w for w in dock.warnings)
    assert not dock.save_transform("/nonexistent/never.tfm")


def click(layer, world_zyx, ndisplay):
    """A mouse click at a world position through the layer's own napari mouse callbacks."""
    from types import SimpleNamespace

    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    ev = SimpleNamespace(
        type="mouse_press",
        is_dragging=False,
        modifiers=[],
        position=tuple(world_zyx),
        pos=np.array([10.0, 10.0]),
        view_direction=np.array([1.0, 0, 0]) if ndisplay == 3 else None,
        up_direction=None,
        dims_displayed=[0, 1, 2][-ndisplay:],
        dims_point=list(world_zyx),
        handled=False,
        button=1,
        buttons=[1],
    )
    mouse_press_callbacks(layer, ev)
    ev.type = "mouse_release"
    mouse_release_callbacks(layer, ev)


def test_click_in_pairs_in_2d_and_3d_then_undo(dock, study, qtbot):
    names, fixed, moving = noisy_fiducials(study)
    dock.load_pairs(names, fixed, moving)
    fx, mv = dock.pairs.fixed, dock.pairs.moving
    src = study.truth["sources"][0]
    # a click in the fixed layer (2-D slice) names the point and hands over to the moving layer
    assert fx.mode == "add"
    click(fx, np.asarray(src["mri_mm"])[::-1], ndisplay=2)
    assert dock.pairs.names_of(fx)[-1] == "F1"
    assert_allclose(dock.pairs.xyz_of(fx)[-1], src["mri_mm"], atol=1e-6)
    qtbot.waitUntil(lambda: dock.viewer.layers.selection.active is mv, timeout=2000)
    assert mv.mode == "add"
    # the partner clicked in 3-D where the (registered) MPI draws the source: stored in MPI mm
    dock.viewer.dims.ndisplay = 3
    click(mv, mpi_world_of(dock.viewer.layers["MPI"], src["mpi_mm"]), ndisplay=3)
    assert dock.pairs.names_of(mv)[-1] == "F1"
    assert_allclose(dock.pairs.xyz_of(mv)[-1], src["mpi_mm"], atol=1e-6)
    qtbot.waitUntil(lambda: dock.viewer.layers.selection.active is fx, timeout=2000)
    assert dock.fit.n_used == len(names) + 1 and dock.table.rowCount() == len(names) + 1
    from napari.utils.key_bindings import KeyBinding

    mv.keymap[KeyBinding.from_str("Control-Z")](mv)  # Ctrl+Z in the moving layer
    assert dock.pairs.names_of(mv) == names and dock.pairs.names_of(fx) == names + ["F1"]
    assert any("F1" in w for w in dock.warnings)  # unpaired
    dock.undo()
    assert dock.pairs.names_of(fx) == names
    assert_allclose(dock.pairs.xyz_of(fx), fixed, atol=1e-9)
    # rename and reorder are undoable edits too
    dock.rename_pair(names[0], "nose")
    assert dock.pairs.names_of(mv)[0] == "nose" and dock.table.item(0, NAME).text() == "nose"
    dock.move_pair("nose", +1)
    assert dock.pairs.pairs()[0][:2] == [names[1], "nose"]
    dock.undo()
    dock.undo()
    assert dock.pairs.pairs()[0] == names


def test_refine_runs_in_a_worker_and_can_be_cancelled(dock, study, qtbot):
    names, fixed, moving = noisy_fiducials(study)
    dock.load_pairs(names, fixed, moving)
    mpi = dock.viewer.layers["MPI"]
    # run to the end: the preview follows the refined transform, still on the truth
    assert dock.refine() is not None and dock.refining
    qtbot.waitUntil(lambda: not dock.refining, timeout=60000)
    assert not hasattr(
        dock.transform[2], "residuals_mm"
    )  # the refined (SimpleITK) transform is drawn
    for src in study.truth["sources"]:
        assert (
            np.linalg.norm(mpi_world_of(mpi, src["mpi_mm"]) - np.asarray(src["mri_mm"])[::-1])
            <= 0.5
        )
    # cancelled: the landmark fit stays
    dock.update_preview()
    landmark_affine = np.asarray(mpi.affine.affine_matrix).copy()
    worker = dock.refine()
    assert worker is not None and dock.refining and dock.cancel_btn.isEnabled()
    dock.cancel_refine()
    qtbot.waitUntil(lambda: not dock.refining, timeout=20000)
    assert dock.refine_btn.isEnabled()
    assert_allclose(mpi.affine.affine_matrix, landmark_affine)  # the landmark fit is kept


def test_save_load_and_apply_a_transform_to_another_layer(dock, study, tmp_path):
    from mpi_viewer.plugins._layers import add_volume

    names, fixed, moving = noisy_fiducials(study)
    dock.load_pairs(names, fixed, moving)
    assert dock.save_transform(tmp_path / "t.tfm")
    # a second scan in the same holder: the same MPI geometry, still unregistered
    second = add_volume(dock.viewer, study.mpi, name="MPI day 2")
    assert dock.load_transform(tmp_path / "t.tfm")
    assert dock.apply_loaded("MPI day 2")
    src = study.truth["sources"][0]
    assert (
        np.linalg.norm(mpi_world_of(second, src["mpi_mm"]) - np.asarray(src["mri_mm"])[::-1]) <= 0.3
    )
    resampled = dock.resample()
    assert resampled is not None and resampled.name.endswith("resampled (display only)")
    assert resampled.data.shape == study.mri.shape
