"""The study in the real window, for each way a user starts it.

Launch orders: ``mpi-viewer demo`` (:func:`plugins._launch.prepare` with the demo),
``mpi-viewer`` then File > Open (MRI, then MPI), and napari with the docks taken from
the Plugins menu before any data. In each, with the docks' own buttons and real mouse
clicks on the canvas at the screen position of world points:

- no dock offers the MRI as the MPI;
- the Mold registration dock's Detect draws the MPI on the MRI: every demo source
  within 0.5 mm of its true MRI position, in world coordinates (the truth is the demo
  study's);
- four clicks on four hot spots give four ROIs, each at its source, and the clicking
  mode stays on.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.gui

SOURCES = ("isolated", "strong", "weak", "faint")
PLUGIN = "mpi-viewer"


@pytest.fixture(scope="module")
def demo_files(study, tmp_path_factory):
    """The demo study's MRI and MPI as `mpi-viewer demo --write` writes them."""
    from mpi_viewer.io.images import write_volume

    folder = tmp_path_factory.mktemp("demo_files")
    return {k: write_volume(getattr(study, k), folder / f"{k}.nii.gz") for k in ("mri", "mpi")}


# --------------------------------------------------------------------------- the canvas
def _canvas(viewer):
    """The vispy canvas widget of the (only) shown napari window (found through Qt)."""
    from qtpy.QtWidgets import QApplication

    hits = [
        w
        for w in QApplication.allWidgets()
        if type(w).__name__ == "CanvasBackendDesktop" and w.isVisible()
    ]
    assert len(hits) == 1, hits
    return hits[0]


def _screen_pos(viewer, canvas, world):
    """Canvas pixel of a world point (z, y, x) under napari's camera (orthographic)."""
    from qtpy.QtCore import QPoint

    cam, shown = viewer.scene.camera, list(viewer.dims.displayed)
    w = np.asarray(world, float)[shown]
    half = np.array([canvas.width(), canvas.height()]) / 2.0
    if len(shown) == 2:
        c = np.asarray(cam.center)[-2:]
        x, y = (w[1] - c[1]) * cam.zoom + half[0], (w[0] - c[0]) * cam.zoom + half[1]
    else:
        c = np.asarray(cam.center)
        view, up = np.asarray(cam.view_direction), np.asarray(cam.up_direction)
        right = np.cross(view, up)
        x = np.dot(w - c, right) * cam.zoom + half[0]
        y = -np.dot(w - c, up) * cam.zoom + half[1]
    return QPoint(int(round(x)), int(round(y)))


def click_world(qtbot, viewer, world):
    """A real left click on the canvas where the world point is drawn (2-D: on its slice)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    if viewer.dims.ndisplay == 2:
        viewer.dims.set_point(0, float(world[0]))  # the user scrolls to the source's slice
    QApplication.processEvents()
    canvas = _canvas(viewer)
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=_screen_pos(viewer, canvas, world))
    QApplication.processEvents()


# --------------------------------------------------------------------------- helpers
def _items(combo):
    return [combo.itemText(i) for i in range(combo.count())]


def _by_class(widgets, name):
    hits = [w for w in widgets if type(getattr(w, "__wrapped__", w)).__name__ == name]
    assert len(hits) == 1, (name, widgets)
    return hits[0]


def _source_errors_mm(study, mpi_layer):
    """Distance (mm) of each demo source, drawn through the MPI layer, from its true MRI position."""
    from mpi_viewer.plugins._layers import physical_to_world

    out = []
    for src in study.truth["sources"]:
        world = physical_to_world(mpi_layer, [src["mpi_mm"]])[0]
        out.append(float(np.linalg.norm(world[::-1] - np.asarray(src["mri_mm"]))))
    return np.array(out)


def _walk_the_study(qtbot, viewer, study, docks, *, ndisplay=2, registered_before=False):
    """Roles, the mold registration, four clicks: asserted as the user sees them."""
    from mpi_viewer.plugins._controller import get_controller

    reg, mold, roi = (
        _by_class(docks, "RegistrationDock"),
        _by_class(docks, "MoldPanel"),
        _by_class(docks, "ROIDock"),
    )
    ctl = get_controller(viewer)
    mpi = ctl.mpi
    assert mpi is not None and mpi.metadata["mpi_viewer"]["modality"] == "MPI"
    assert ctl.anatomy is not None and ctl.anatomy.metadata["mpi_viewer"]["modality"] == "MRI"
    # no dock offers the MRI (or the CT) as the MPI
    for combo in (reg.moving_combo, mold.moving_combo, roi.layer_combo):
        assert _items(combo) == [mpi.name] and combo.currentText() == mpi.name
    assert reg.fixed_combo.currentText() == ctl.anatomy.name

    before = _source_errors_mm(study, mpi)
    assert (before.max() < 0.5) == registered_before
    qtbot.mouseClick(mold.detect_btn, _left())
    qtbot.waitUntil(lambda: not mold.busy, timeout=30000)
    assert mold.error is None, mold.error
    assert _source_errors_mm(study, mpi).max() < 0.5  # the MPI is on the MRI
    assert ctl.registration is not None and ctl.registration.source == "template"
    assert ctl.registration.moving == mpi.name and ctl.registration.fixed == ctl.anatomy.name

    viewer.dims.ndisplay = ndisplay
    viewer.reset_view()
    if ndisplay == 3:
        viewer.scene.camera.angles = (0.0, -20.0, 80.0)
    qtbot.mouseClick(roi.click_btn, _left())
    assert roi.click_btn.isChecked()
    from mpi_viewer.plugins._layers import physical_to_world

    for k, name in enumerate(SOURCES, start=1):
        src = study.source(name)
        click_world(qtbot, viewer, physical_to_world(mpi, [src["mpi_mm"]])[0])
        qtbot.waitUntil(lambda: not roi.busy, timeout=20000)  # measured off the GUI thread
        assert len(roi.results) == k, f"click {k} ({name}) gave {len(roi.results)} ROIs"
        peak = np.asarray(roi.results[-1].peak_mm)
        assert np.linalg.norm(peak - np.asarray(src["mpi_mm"])) < 1.0, name
    assert roi.click_btn.isChecked()  # the clicking mode stays on
    assert [r.name for r in ctl.rois] == [r.name for r in roi.results][:4]
    return reg, mold, roi


def _left():
    from qtpy.QtCore import Qt

    return Qt.MouseButton.LeftButton


# --------------------------------------------------------------------------- launch orders
def test_mpi_viewer_demo(make_napari_viewer, qtbot, study, notes):
    """`mpi-viewer demo`: docks, then the demo (registered on load), then the user's steps."""
    from mpi_viewer.plugins._launch import prepare

    viewer = make_napari_viewer(show=True)
    docks = prepare(viewer, demo=True, study=study)
    _walk_the_study(qtbot, viewer, study, docks, registered_before=True)
    assert not notes["error"], notes["error"]


def test_mpi_viewer_then_file_open(make_napari_viewer, qtbot, study, demo_files, notes):
    """`mpi-viewer`, then File > Open the MRI, then the MPI; ROIs named, deleted, undone."""
    from mpi_viewer.plugins._launch import prepare
    from qtpy.QtCore import Qt

    viewer = make_napari_viewer(show=True)
    docks = prepare(viewer)
    viewer.open(str(demo_files["mri"]), plugin=PLUGIN)
    viewer.open(str(demo_files["mpi"]), plugin=PLUGIN)
    _, _, roi = _walk_the_study(qtbot, viewer, study, docks)

    # Ctrl+Z on the canvas undoes the last ROI
    qtbot.keyClick(_canvas(viewer), Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert [r.name for r in roi.results] == ["roi_1", "roi_2", "roi_3"]
    # rename in the table
    roi.table.item(1, 0).setText("strong (liver)")
    assert [r.name for r in roi.results] == ["roi_1", "strong (liver)", "roi_3"]
    assert viewer.layers["MPI ROIs"].data.max() == 3
    # delete the selected row with the dock's button
    roi.table.selectRow(0)
    qtbot.mouseClick(roi.remove_btn, Qt.MouseButton.LeftButton)
    assert [r.name for r in roi.results] == ["strong (liver)", "roi_3"]
    qtbot.mouseClick(roi.undo_btn, Qt.MouseButton.LeftButton)
    assert [r.name for r in roi.results] == ["roi_1", "strong (liver)", "roi_3"]
    assert not notes["error"], notes["error"]


def test_napari_plugins_menu_then_data_3d(make_napari_viewer, qtbot, study, demo_files, notes):
    """napari, the docks from the Plugins menu first, then the data; clicks in 3-D."""
    viewer = make_napari_viewer(show=True)
    docks = [
        viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)[1]
        for name in ("Fiducial registration", "Mold registration", "MPI ROIs")
    ]
    viewer.open(str(demo_files["mri"]), plugin=PLUGIN)
    viewer.open(str(demo_files["mpi"]), plugin=PLUGIN)
    _walk_the_study(qtbot, viewer, study, docks, ndisplay=3)
    assert not notes["error"], notes["error"]


def test_replacing_the_mpi_asks_before_discarding_rois(make_napari_viewer, qtbot, study, notes):
    """A second MPI chosen in the ROI dock's picker: 'No' keeps the ROIs and the MPI,
    'Yes' quantifies the new MPI without them. The MRI is never offered."""
    from mpi_viewer.plugins._controller import get_controller
    from mpi_viewer.plugins._launch import prepare
    from mpi_viewer.plugins._layers import add_volume, physical_to_world
    from qtpy.QtCore import Qt

    viewer = make_napari_viewer(show=True)
    docks = prepare(viewer, demo=True, study=study)
    roi = _by_class(docks, "ROIDock")
    ctl = get_controller(viewer)
    first = ctl.mpi
    qtbot.mouseClick(roi.click_btn, Qt.MouseButton.LeftButton)
    for name in ("isolated", "strong"):
        src = study.source(name)
        click_world(qtbot, viewer, physical_to_world(first, [src["mpi_mm"]])[0])
    qtbot.waitUntil(lambda: not roi.busy and len(roi.results) == 2, timeout=20000)
    second = add_volume(viewer, study.mpi, name="MPI day 2")
    assert _items(roi.layer_combo) == [first.name, "MPI day 2"]
    assert roi.layer_combo.currentText() == first.name  # adding an MPI changes nothing

    asked = []
    ctl.confirm = lambda question: asked.append(question) or False
    roi.layer_combo.setFocus()
    qtbot.keyClick(roi.layer_combo, Qt.Key.Key_Down)  # the user picks "MPI day 2"
    assert asked and "2 ROI(s)" in asked[-1]
    assert ctl.mpi is first and roi.layer_combo.currentText() == first.name
    assert len(roi.results) == 2

    ctl.confirm = lambda question: asked.append(question) or True
    qtbot.keyClick(roi.layer_combo, Qt.Key.Key_Down)
    assert ctl.mpi is second and roi.layer_combo.currentText() == "MPI day 2"
    assert roi.results == [] and ctl.rois == []
    assert not notes["error"], notes["error"]


def test_fiducial_dock_mold_mode_moves_the_mpi_not_the_mri(
    make_napari_viewer, qtbot, study, demo_files, notes
):
    """`mpi-viewer`, File > Open the MPI first, then the MRI; the Fiducial registration
    dock in Mold mode: Detect draws the MPI on the MRI, the MRI stays where it is, the
    found fiducials are not left in add mode and are not shown twice."""
    from mpi_viewer.plugins._launch import prepare
    from qtpy.QtCore import Qt

    viewer = make_napari_viewer(show=True)
    reg = _by_class(prepare(viewer), "RegistrationDock")
    viewer.open(str(demo_files["mpi"]), plugin=PLUGIN)
    viewer.open(str(demo_files["mri"]), plugin=PLUGIN)
    mri, mpi = viewer.layers["mri"], viewer.layers["mpi"]
    mri_placement = (mri.affine.affine_matrix.copy(), np.array(mri.scale), np.array(mri.translate))
    assert reg.fixed_combo.currentText() == "mri" and _items(reg.moving_combo) == ["mpi"]
    reg.mode_combo.setFocus()
    qtbot.keyClick(reg.mode_combo, Qt.Key.Key_Down)  # the user picks "Mold"
    assert reg.mode_combo.currentText() == "Mold"
    qtbot.mouseClick(reg.mold_panel.detect_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not reg.mold_panel.busy, timeout=30000)
    assert reg.mold_panel.error is None and reg.fit is not None
    assert _source_errors_mm(study, mpi).max() < 0.5
    np.testing.assert_allclose(mri.affine.affine_matrix, mri_placement[0])
    np.testing.assert_allclose(mri.scale, mri_placement[1])
    np.testing.assert_allclose(mri.translate, mri_placement[2])
    points = [lyr for lyr in viewer.layers if type(lyr).__name__ == "Points"]
    assert sorted(lyr.name for lyr in points) == ["fiducials (fixed)", "fiducials (moving)"]
    assert all(lyr.mode == "pan_zoom" for lyr in points)
    assert not notes["error"], notes["error"]
