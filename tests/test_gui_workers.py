"""The window stays responsive: Compute cells, Save and Open run in napari workers.

Driven as the user does it (the docks' own buttons; the file dialogs answered with a
path), each test asserts that the button returns at once (the result is not there yet,
a worker is running), that the result arrives later with the demo's known numbers, and
that cancelling the worker (napari's progress bar does ``worker.quit()``) changes
nothing. No timing is asserted (speed: ``benchmarks/bench_gui_stalls.py``).
"""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt

from mpi_viewer.study import session as S

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def _recovery_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(S.RECOVERY_ENV, str(tmp_path / "recovery"))


@pytest.fixture
def study_docks(make_napari_viewer, tmp_path, copy_demo):
    """Demo with every dock, the four sources as ROIs, the vials' calibration."""
    from mpi_viewer.plugins._launch import load_demo, open_docks

    viewer = make_napari_viewer()
    study = load_demo(viewer)
    docks = {type(w).__name__: w for w in open_docks(viewer)}
    docks["SessionDock"]._timer.stop()
    paths = copy_demo(tmp_path / "study")
    roi = docks["ROIDock"]
    for s in study.truth["sources"][:4]:
        assert roi.add_seed_mm(s["mpi_mm"], name=s["name"]) is not None
    cal = docks["CalibrationDock"]
    assert cal.load_phantoms_csv(paths["phantoms"])
    cal.fit(block=True)
    assert cal.calibration is not None
    docks["CellsDock"].set_iron_per_cell(
        study.truth["iron_per_cell_pg"], study.truth["iron_per_cell_sd_pg"]
    )
    return viewer, study, docks


def _watch(worker) -> list:
    """Connect to ``worker.finished`` at once (before the event loop runs again)."""
    done: list[bool] = []
    worker.finished.connect(lambda: done.append(True))
    return done


def _finished(qtbot, done: list) -> None:
    qtbot.waitUntil(lambda: bool(done), timeout=180000)


def test_compute_cells_returns_at_once_and_cancel_changes_nothing(study_docks, qtbot, errors):
    viewer, study, docks = study_docks
    cells = docks["CellsDock"]

    qtbot.mouseClick(cells.compute_btn, Qt.MouseButton.LeftButton)
    worker = cells._worker
    done = _watch(worker)
    worker.quit()  # the progress bar's cancel
    _finished(qtbot, done)
    assert cells.results == [] and "cell counts" not in viewer.layers
    assert cells.compute_btn.isEnabled()

    qtbot.mouseClick(cells.compute_btn, Qt.MouseButton.LeftButton)
    done = _watch(cells._worker)
    assert cells.results == [] and not cells.compute_btn.isEnabled()  # not here yet
    assert "cell counts" not in viewer.layers and cells._worker is not worker
    _finished(qtbot, done)
    iso = next(r for r in cells.results if r.name == "isolated")
    truth = study.source("isolated")
    assert iso.cells == pytest.approx(truth["cells"], rel=0.05)
    for name in ("ROI outlines", "cell counts", "cell density (cells/mm³)"):
        assert name in viewer.layers
    assert cells.compute_btn.isEnabled() and not errors


def _answer_dialog(monkeypatch, method: str, path) -> None:
    from qtpy.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, method, staticmethod(lambda *a, **k: (str(path), "")))


def _button(dock, text: str):
    from qtpy.QtWidgets import QPushButton

    return next(b for b in dock.findChildren(QPushButton) if b.text() == text)


def test_session_save_and_open_return_at_once_and_open_cancels(
    study_docks, make_napari_viewer, qtbot, tmp_path, monkeypatch, errors
):
    from mpi_viewer.plugins._launch import open_docks

    viewer, study, docks = study_docks
    cells = docks["CellsDock"]
    cells.compute(block=True)
    before = [(r.name, r.cells) for r in cells.results]
    path = tmp_path / "analysis.json"

    # Save as…: the button returns before the session is written
    sess = docks["SessionDock"]
    _answer_dialog(monkeypatch, "getSaveFileName", path)
    qtbot.mouseClick(_button(sess, "Save as…"), Qt.MouseButton.LeftButton)
    done = _watch(sess._worker)
    assert not path.exists() and sess.path is None
    _finished(qtbot, done)
    assert path.is_file() and sess.path == path

    # a fresh window: Open… returns before any layer is there; cancelled: nothing shown
    vb = make_napari_viewer()
    b = {type(w).__name__: w for w in open_docks(vb)}
    b["SessionDock"]._timer.stop()
    _answer_dialog(monkeypatch, "getOpenFileName", path)
    qtbot.mouseClick(_button(b["SessionDock"], "Open…"), Qt.MouseButton.LeftButton)
    done = _watch(b["SessionDock"]._worker)
    assert len(vb.layers) == 0
    b["SessionDock"]._worker.quit()
    _finished(qtbot, done)
    assert len(vb.layers) == 0 and b["SessionDock"].session is None

    # opened for real: the layers arrive one by one, then the same numbers
    qtbot.mouseClick(_button(b["SessionDock"], "Open…"), Qt.MouseButton.LeftButton)
    done = _watch(b["SessionDock"]._worker)
    assert len(vb.layers) == 0
    _finished(qtbot, done)
    assert "numbers match" in b["SessionDock"].status.text()
    got = b["CellsDock"].results
    assert [r.name for r in got] == [n for n, _ in before]
    assert [r.cells for r in got] == pytest.approx([c for _, c in before], rel=1e-9)
    assert [r.name for r in b["ROIDock"].results] == [n for n, _ in before]
    for name in ("MRI (synthetic demo)", "MPI (synthetic demo)", "cell counts"):
        assert name in vb.layers
    # the layer pool was made in the opening's own turns and its layers taken by the docks
    # that restore one; only the mold's wells (a session without a mold registration) wait
    # for a Detect, once each (none made again on the pool's timer afterwards)
    from mpi_viewer.plugins._layer_pool import POOL_KEY, is_pooled

    qtbot.wait(300)  # the pool's timer (it would make what is missing) had its turns
    left = [ly.metadata["mpi_viewer"][POOL_KEY] for ly in vb.layers if is_pooled(ly)]
    assert sorted(left) == ["mold fixed", "mold moving"]
    assert not errors

    # opened again into the same window: the layers that show the same voxels already
    # (the images, the ROIs' labels and their 2-D view) are not set again
    names = [ly.name for ly in vb.layers]
    reset: list = []
    for ly in vb.layers:
        ly.events.data.connect(lambda e, n=ly.name: reset.append(n))
    qtbot.mouseClick(_button(b["SessionDock"], "Open…"), Qt.MouseButton.LeftButton)
    done = _watch(b["SessionDock"]._worker)
    _finished(qtbot, done)
    qtbot.wait(400)  # the 2-D view's resample (debounced) would come after
    assert "numbers match" in b["SessionDock"].status.text()
    assert [ly.name for ly in vb.layers] == names
    kept = ("MRI (synthetic demo)", "MPI (synthetic demo)", "MPI ROIs", "MPI ROIs (2-D view)")
    assert not [n for n in reset if n in kept]
    assert not errors


def test_a_gui_step_releases_its_worker_only_after_the_work_it_posted(qtbot):
    """What a GUI step changes is drawn before the worker's next step can run: a widget's
    repaint is an update request posted at low priority, and the worker is released only
    after it (:meth:`GuiStep.run_then_release`: its 0 ms timer fires after posted events)."""
    from mpi_viewer.plugins._work import GuiStep
    from qtpy.QtCore import QCoreApplication, QEvent, QObject

    order: list[str] = []

    class Canvas(QObject):
        def event(self, ev):
            if ev.type() == QEvent.Type.User:
                order.append("repainted")
                return True
            return super().event(ev)

    canvas = Canvas()

    def fn():  # as a layer change asks for a repaint
        low = Qt.EventPriority.LowEventPriority.value
        QCoreApplication.postEvent(canvas, QEvent(QEvent.Type.User), low)

    step = GuiStep(fn)
    step.run_then_release()
    assert not step.done.is_set()
    qtbot.waitUntil(step.done.is_set, timeout=5000)
    order.append("released")
    assert order == ["repainted", "released"]


def test_a_runtime_error_in_a_step_is_shown_and_ends_the_step(qtbot, errors):
    """superqt takes a RuntimeError raised by a worker's generator for a deleted worker and
    emits nothing: the user saw no error and the step never ended (a session open left the
    layer pool paused for good, its warnings held). Now: one error notification, the
    step's ``on_finish`` runs, and warnings held during it are shown."""
    from mpi_viewer.plugins import _work

    finished = []

    def work():
        _work.notify_warning("See ⚠ in the iron table: roi_1")
        yield 0.5
        raise RuntimeError("boom")

    worker = _work.start_work(
        work, on_done=lambda r: None, on_finish=lambda: finished.append(1), desc="x", hold=True
    )
    qtbot.waitUntil(lambda: bool(finished), timeout=10_000)
    qtbot.waitUntil(lambda: bool(errors), timeout=10_000)
    assert worker is not None and "boom" in errors[0], errors
    assert _work._HELD is None  # nothing held back any more


def test_warnings_held_by_overlapping_steps_come_once_after_the_last(qtbot, notes):
    """A session open and a cells computation overlapping: nothing pops up until both
    ended; then the tables' pointers as one notification, any other warning as its own."""
    from mpi_viewer.plugins import _work

    a, b = _work.hold_warnings(), _work.hold_warnings()
    _work.notify_warning("See ⚠ in the iron table: roi_2")
    _work.notify_warning("calibration c: extrapolated")
    _work.notify_warning("See ⚠ in the cells table: roi_2")
    _work.release_warnings(a)
    _work.release_warnings(a)  # twice: nothing more
    qtbot.wait(20)
    assert notes["warning"] == []  # b still holds
    _work.release_warnings(b)
    qtbot.waitUntil(lambda: len(notes["warning"]) == 2, timeout=2_000)
    assert notes["warning"] == [
        "calibration c: extrapolated",
        "See ⚠ (iron, cells tables): roi_2",  # the same rows: said once
    ]
    c = _work.hold_warnings()
    _work.notify_warning("See ⚠ in the iron table: roi_2")
    _work.notify_warning("See ⚠ in the cells table: roi_2, roi_3")
    _work.release_warnings(c, later=False)
    assert (
        notes["warning"][-1] == "See ⚠ in the iron table: roi_2; in the cells table: roi_2, roi_3"
    )
    _work.notify_warning("later")  # no hold left: shown at once
    assert notes["warning"][-1] == "later"
