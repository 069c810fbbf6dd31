"""Mold registration with few visible wells, in the real window (issues 15 and 12).

The demo study with the MRI cut to the four wells M3–M6 (one cut by the edge of the
field of view), which fit the mold in two poses 180° apart. In the window the user sees
the candidate poses in the mold dock, previews each by hovering its row, and picks one
with a click: the MPI moves onto the anatomy (every demo source within 0.5 mm of its
true MRI position, in world coordinates), the wrong pose visibly moves it elsewhere,
and a saved session reopens with the pose the user chose. Truth: the demo study's.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

SMALL = dict(include_ct=False, mri_spacing_mm=(0.5, 0.5, 0.5), extra_hot_spots=2)
#: head-first in the MRI, feet-first in the MPI: the true turn (~178°) is beyond the
#: default 45° prior, so the prior cannot decide and the user must choose
OPPOSITE = dict(SMALL, mpi_rotation_deg=(3.0, 178.0, -4.0), mpi_translation_mm=(2.0, 1.0, -3.0))


def _errors_mm(study, mpi_layer):
    """Distance (mm) of each demo source, drawn through the MPI layer, from its true MRI spot."""
    from mpi_viewer.plugins._layers import physical_to_world

    world = physical_to_world(mpi_layer, [s["mpi_mm"] for s in study.truth["sources"]])
    truth = np.array([s["mri_mm"] for s in study.truth["sources"]])
    return np.linalg.norm(np.asarray(world)[:, ::-1] - truth, axis=1)


def _by_class(widgets, name):
    hits = [w for w in widgets if type(getattr(w, "__wrapped__", w)).__name__ == name]
    assert len(hits) == 1, (name, widgets)
    return hits[0]


def _row_pos(table, row):
    return table.visualRect(table.model().index(row, 1)).center()


def _click_row(qtbot, table, row):
    from qtpy.QtCore import Qt

    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=_row_pos(table, row))


def _hover_row(qtbot, table, row):
    """The pointer moves onto a row (a real MouseMove event, no button, as Qt sends it)."""
    from qtpy.QtCore import QEvent, QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    vp = table.viewport()
    pos = QPointF(_row_pos(table, row))
    qtbot.mouseMove(vp, _row_pos(table, row))  # the cursor, for Qt's hover state
    event = QMouseEvent(
        QEvent.Type.MouseMove,
        pos,
        QPointF(vp.mapToGlobal(pos)),
        Qt.MouseButton.NoButton,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(vp, event)
    QApplication.processEvents()


def _leave(qtbot, table):
    """The pointer leaves the table (a real Leave event, as Qt sends it)."""
    from qtpy.QtCore import QEvent
    from qtpy.QtWidgets import QApplication

    QApplication.sendEvent(table.viewport(), QEvent(QEvent.Type.Leave))
    QApplication.processEvents()


def _rows(table):
    return [
        [table.item(r, c).text() for c in range(table.columnCount())]
        for r in range(table.rowCount())
    ]


def _fits_400_px(panel):
    """At 400 px wide the dock would show the candidate table whole: no cell text cut.

    The table's columns share its width equally (the panel is laid out by the dock, whose
    width the other tabbed docks set), so the check is on the width each column gets
    when the panel is 400 px wide.
    """
    assert panel.minimumSizeHint().width() <= 400
    table = panel.pose_table
    column_px = (table.viewport().width() - (panel.width() - 400)) / table.columnCount()
    fm = table.fontMetrics()
    texts = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    texts += [
        table.item(r, c).text() for r in range(table.rowCount()) for c in range(table.columnCount())
    ]
    for text in texts:
        assert fm.horizontalAdvance(text) + 12 <= column_px, (text, column_px)


def _open(make_napari_viewer, study, mri):
    """`mpi-viewer`, then the four-well MRI and the MPI (unregistered) opened."""
    from mpi_viewer.plugins._launch import prepare
    from mpi_viewer.plugins._layers import add_volume

    viewer = make_napari_viewer(show=True)
    docks = prepare(viewer)
    add_volume(viewer, mri, name="mri")
    add_volume(viewer, study.mpi, name="mpi")
    return viewer, docks


@pytest.fixture(scope="module")
def opposite():
    """MRI showing M3–M6 (M3 cut by the edge); the MPI scanned the other way round."""
    from test_molds_poses import crop_to_wells

    from mpi_viewer.demo.study import make_demo_study

    study = make_demo_study(**OPPOSITE)
    return study, crop_to_wells(study, cut=("M3", 0.3))


@pytest.fixture(scope="module")
def four_wells():
    """MRI showing M3–M6 (M6 cut by the edge); both scans the same way round."""
    from test_molds_poses import crop_to_wells

    from mpi_viewer.demo.study import make_demo_study

    study = make_demo_study(**SMALL)
    return study, crop_to_wells(study)


def test_undecided_pose_is_picked_with_a_click_and_reopens(
    make_napari_viewer, qtbot, opposite, tmp_path, notes, monkeypatch
):
    import mpi_viewer.plugins._mold_panel as mp
    from qtpy.QtCore import Qt

    monkeypatch.setattr(mp, "show_warning", notes["warning"].append)

    study, mri = opposite
    viewer, docks = _open(make_napari_viewer, study, mri)
    mold, session = _by_class(docks, "MoldPanel"), _by_class(docks, "SessionDock")
    mpi = viewer.layers["mpi"]
    before = _errors_mm(study, mpi)
    assert before.max() > 20  # unregistered: far from the anatomy

    qtbot.mouseClick(mold.detect_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not mold.busy, timeout=60000)
    assert mold.error is None, mold.error
    # undecided: nothing moved, the two candidate poses listed, none in use
    np.testing.assert_allclose(_errors_mm(study, mpi), before, atol=1e-9)
    table = mold.pose_table
    assert table.isVisible() and mold.pose_hint.isVisible() and table.rowCount() == 2
    assert "UNDECIDED" in mold.status.text() and "cannot decide" in mold.pose_hint.text()
    rows = _rows(table)
    assert [r[0] for r in rows] == ["1", "2"]  # no ✓: none in use
    assert all(r[2].endswith("> 45") for r in rows)  # both beyond the prior, said so
    for r, c in zip(rows, mold.result.candidates, strict=True):
        assert r[1].startswith(str(len(c.matched_names))) and float(r[3]) < 1.0
    assert not any(ly.mode == "add" for ly in viewer.layers if type(ly).__name__ == "Points")
    assert any("nothing moved" in w for w in notes["warning"])
    _fits_400_px(mold)

    # hovering a row previews the MPI through that pose; leaving the table puts it back
    errs = []
    for row in (0, 1):
        _hover_row(qtbot, table, row)
        assert mold._previewed == row + 1
        errs.append(_errors_mm(study, mpi).max())
        assert f"Pose {row + 1}:" in mold.pose_detail.text()
    right = int(np.argmin(errs))
    assert errs[right] < 0.5 < 20 < errs[1 - right]  # one pose right, the other far off
    _leave(qtbot, table)
    np.testing.assert_allclose(_errors_mm(study, mpi), before, atol=1e-9)
    assert mold._previewed is None

    # the wrong pose, clicked: it is applied, visibly elsewhere, and said to be the user's
    _click_row(qtbot, table, 1 - right)
    assert _errors_mm(study, mpi).max() > 20
    assert f"pose chosen by the user (candidate {2 - right} of 2" in mold.status.text()
    # the right pose, clicked: the MPI on the anatomy
    _click_row(qtbot, table, right)
    _leave(qtbot, table)
    assert _errors_mm(study, mpi).max() < 0.5
    assert f"pose chosen by the user (candidate {right + 1} of 2" in mold.status.text()
    assert _rows(table)[right][0] == f"✓ {right + 1}"
    from mpi_viewer.plugins._controller import get_controller

    reg = get_controller(viewer).registration
    assert reg.source == "template" and reg.pose["pose"] == right + 1
    assert reg.pose["decided_by"] == "user" and reg.pose["candidates"] == 2
    # the found wells are drawn and not left in add mode (issue 12)
    points = [ly for ly in viewer.layers if type(ly).__name__ == "Points"]
    assert points and all(ly.mode == "pan_zoom" for ly in points)

    # saved and reopened in a fresh viewer: the same pose, the MPI on the anatomy
    out = session.save(tmp_path / "four_wells.json")
    assert out is not None
    from mpi_viewer.study import session as S

    saved = S.load_session(out)
    # recorded as the template registration with the user's pose; replay takes it again
    assert saved.registration.method == "template"
    assert saved.registration.template == "mouse_mold_v1"
    assert saved.registration.mold.pose == right + 1
    assert saved.registration.mold.decided_by == "user"
    from mpi_viewer.study import pipeline as P

    replayed = P.replay_path(out)
    assert replayed.status == 0, (replayed.message, replayed.differences)
    rec = P.recompute(saved)
    assert rec.registration.decided_by == "user" and rec.registration.pose == right + 1
    viewer2 = make_napari_viewer(show=True)
    from mpi_viewer.plugins._session_dock import SessionDock

    dock2 = SessionDock(viewer2, autosave_ms=0, ask=lambda q: True)
    assert dock2.open(out)
    assert _errors_mm(study, viewer2.layers["mpi"]).max() < 0.5
    assert not notes["error"], notes["error"]


def test_prior_decides_the_other_pose_stays_one_click_away(
    make_napari_viewer, qtbot, four_wells, notes
):
    """Same way round: the prior picks the pose; the Fiducial registration dock's Mold mode
    shows both and the user can switch, which the dock's fit follows."""
    from qtpy.QtCore import Qt

    study, mri = four_wells
    viewer, docks = _open(make_napari_viewer, study, mri)
    reg = _by_class(docks, "RegistrationDock")
    mpi = viewer.layers["mpi"]
    reg.mode_combo.setFocus()
    qtbot.keyClick(reg.mode_combo, Qt.Key.Key_Down)  # the user picks "Mold"
    assert reg.mode_combo.currentText() == "Mold"
    mold = reg.mold_panel
    qtbot.mouseClick(mold.detect_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not mold.busy, timeout=60000)
    assert mold.error is None, mold.error
    assert _errors_mm(study, mpi).max() < 0.5  # decided by the prior, applied
    assert "orientation prior" in mold.status.text()
    table = mold.pose_table
    assert table.isVisible() and table.rowCount() == 2
    rows = _rows(table)
    assert rows[0][0] == "✓ 1" and rows[1][0] == "2" and rows[1][2].endswith("> 45")
    assert rows[1][1] == "4 ⚠"  # the turned mold puts M7 where the MRI shows no well
    assert "pose 1 is used" in mold.pose_hint.text()
    _fits_400_px(mold)
    points = [ly for ly in viewer.layers if type(ly).__name__ == "Points"]
    assert points and all(ly.mode == "pan_zoom" for ly in points)  # issue 12

    _click_row(qtbot, table, 1)  # the user switches to the turned pose
    assert _errors_mm(study, mpi).max() > 20 and reg.fit is not None
    assert "pose chosen by the user (candidate 2 of 2" in mold.status.text()
    _click_row(qtbot, table, 0)  # and back
    assert _errors_mm(study, mpi).max() < 0.5
    assert "pose chosen by the user (candidate 1 of 2" in mold.status.text()
    assert all(ly.mode == "pan_zoom" for ly in viewer.layers if type(ly).__name__ == "Points")
    assert not notes["error"], notes["error"]


def test_fiducial_dock_mold_mode_saves_the_users_pose_and_replay_takes_it(
    make_napari_viewer, qtbot, opposite, tmp_path, notes, monkeypatch, capsys
):
    """The Fiducial registration dock's Mold mode: the pose the user clicks is saved as the
    template registration "chosen by user" (as the Mold dock saves it), ``mpi-viewer replay``
    takes that pose again, and a reopened session keeps it; moving a well makes it the
    user's landmarks."""
    import mpi_viewer.plugins._mold_panel as mp
    from mpi_viewer.plugins._controller import get_controller
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFileDialog, QPushButton

    from mpi_viewer.cli import main
    from mpi_viewer.study import pipeline as P
    from mpi_viewer.study import session as S

    monkeypatch.setattr(mp, "show_warning", notes["warning"].append)
    study, mri = opposite
    viewer, docks = _open(make_napari_viewer, study, mri)
    reg, session = _by_class(docks, "RegistrationDock"), _by_class(docks, "SessionDock")
    mpi = viewer.layers["mpi"]
    reg.mode_combo.setFocus()
    qtbot.keyClick(reg.mode_combo, Qt.Key.Key_Down)  # the user picks "Mold"
    assert reg.mode_combo.currentText() == "Mold"
    mold = reg.mold_panel
    qtbot.mouseClick(mold.detect_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not mold.busy, timeout=60000)
    assert mold.error is None and mold.result.ambiguous and mold.pose_table.rowCount() == 2
    errs = []
    for row in (0, 1):
        _hover_row(qtbot, mold.pose_table, row)
        errs.append(_errors_mm(study, mpi).max())
    _leave(qtbot, mold.pose_table)
    right = int(np.argmin(errs))
    _click_row(qtbot, mold.pose_table, right)
    _leave(qtbot, mold.pose_table)
    assert _errors_mm(study, mpi).max() < 0.5 and reg.fit is not None
    cut = mold.result.candidates[right].cut_excluded
    assert cut and set(reg.excluded) == set(cut)  # fitted as the template fits: cut wells out
    np.testing.assert_allclose(reg.fit.matrix, mold.result.fit.matrix, atol=1e-9)
    ctl = get_controller(viewer)
    assert ctl.registration.source == "template"
    assert ctl.registration.pose["pose"] == right + 1
    assert ctl.registration.pose["decided_by"] == "user"

    target = tmp_path / "mold_mode.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    save = next(b for b in session.findChildren(QPushButton) if b.text() == "Save")
    qtbot.mouseClick(save, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: session.path is not None, timeout=60000)
    saved = S.load_session(target)
    assert saved.registration.method == "template"
    assert saved.registration.template == "mouse_mold_v1"
    assert saved.registration.mold.pose == right + 1
    assert saved.registration.mold.decided_by == "user"
    assert not saved.registration.landmarks.names  # not the wells as clicked landmarks
    capsys.readouterr()
    assert main(["replay", str(target)]) == 0, capsys.readouterr()
    rec = P.recompute(saved)
    assert rec.registration.decided_by == "user" and rec.registration.pose == right + 1
    np.testing.assert_allclose(rec.transform().matrix, mold.result.fit.matrix, atol=1e-9)

    # reopened in a fresh viewer: the dock shows the wells, the registration stays the
    # template's with the user's pose, and saving again keeps it
    viewer2 = make_napari_viewer(show=True)
    from mpi_viewer.plugins._launch import prepare

    docks2 = prepare(viewer2)
    session2 = _by_class(docks2, "SessionDock")
    assert session2.open(target)
    assert _errors_mm(study, viewer2.layers["mpi"]).max() < 0.5
    reg2 = _by_class(docks2, "RegistrationDock")
    assert reg2.pairs is not None and set(reg2.excluded) == set(cut)
    ctl2 = get_controller(viewer2)
    assert ctl2.registration.source == "template"
    assert ctl2.registration.pose["pose"] == right + 1
    again = session2.save(tmp_path / "again.json")
    assert S.load_session(again).registration.mold.decided_by == "user"

    # the user moves a well: now the user's landmarks, saved as such
    pts = reg2.pairs.moving
    data = np.array(pts.data)
    data[0] += 0.3
    pts.data = data
    qtbot.waitUntil(lambda: ctl2.registration.source == "landmarks", timeout=10000)
    edited = S.load_session(session2.save(tmp_path / "edited.json"))
    assert edited.registration.method == "landmarks" and edited.registration.mold is None
    assert not notes["error"], notes["error"]
