"""The "Session" dock: save, save as and open whole analyses; autosave and crash recovery.

Thin: the session file is :mod:`mpi_viewer.study.session`, the numbers come from
:mod:`mpi_viewer.study.pipeline` (the same code as ``mpi-viewer replay``). What is saved
is collected by :mod:`~mpi_viewer.plugins._session_collect`; an opened session is shown
by :mod:`~mpi_viewer.plugins._session_restore`: its inputs as layers placed in physical
space, the MPI drawn through the stored transform, the ROIs, each layer's display
settings, and each dock's part (landmarks, ROIs, calibration, cells) handed to it
through the controller; then whether the recomputed numbers match the stored ones.
Saving and opening run in a worker (:func:`~mpi_viewer.plugins._work.start_work`): the
window keeps repainting, the layers come in one at a time.

Every few minutes, and when the window closes, the current state is written to a
recovery file (``~/.cache/mpi-viewer/recovery``, or ``$MPI_VIEWER_RECOVERY_DIR``);
after a crash the next dock offers it back (:meth:`SessionDock.recover`).
"""

from __future__ import annotations

from pathlib import Path

from mpi_viewer.plugins import _layers
from mpi_viewer.plugins import _napari_compat as compat
from mpi_viewer.plugins._controller import get_controller
from mpi_viewer.plugins._layers import install_mm_units
from mpi_viewer.plugins._session_collect import SessionCollectMixin
from mpi_viewer.plugins._session_recovery import RecoveryMixin, _CloseWatcher
from mpi_viewer.plugins._session_restore import ROI_LAYER, SessionRestoreMixin, _notify
from mpi_viewer.plugins._work import start_work
from napari.viewer import Viewer
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer.errors import InputError, MPIViewerError
from mpi_viewer.study import session as S

#: Autosave interval (ms): every three minutes.
AUTOSAVE_MS = 3 * 60 * 1000
#: The dock's display name in napari.yaml.
SESSION_DOCK_NAME = "Session"
__all__ = ["ROI_LAYER", "SESSION_DOCK_NAME", "SessionDock"]


class SessionDock(SessionCollectMixin, SessionRestoreMixin, RecoveryMixin, QWidget):
    """Save, save as, open; autosave and recovery.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    autosave_ms : int, optional
        Autosave interval (default :data:`AUTOSAVE_MS`); 0 disables the timer.
    ask : callable(question: str) -> bool, optional
        Asks the user a yes/no question (a QMessageBox by default); tests pass a stub.
    """

    def __init__(self, napari_viewer, *, autosave_ms: int | None = None, ask=None):
        super().__init__()
        self.viewer = napari_viewer
        install_mm_units(self.viewer)  # world = physical mm, for every layer
        self.ctl = get_controller(napari_viewer)  # the docks that provide session parts
        self.ctl.provide_section("session", self)
        self.session: S.Session | None = None  # the analysis last opened or saved
        self.path: Path | None = None
        self.differences: list[str] = []
        self.rows: list[dict] = []
        self.recovered_from: Path | None = None
        self._ask = ask or self._ask_box
        self._hashes: dict[tuple, str] = {}

        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        for text, slot in (
            ("Open…", self._open_clicked),
            ("Save", self._save_clicked),
            ("Save as…", self._save_as_clicked),
        ):
            b = QPushButton(text)
            b.clicked.connect(slot)
            row.addWidget(b)
        lay.addLayout(row)
        self.status = QLabel("no session")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        lay.addStretch(1)

        interval = AUTOSAVE_MS if autosave_ms is None else int(autosave_ms)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.autosave_now)
        if interval > 0:
            self._timer.start(interval)
        self._watcher = _CloseWatcher(self._on_close)
        compat.install_close_filter(self.viewer, self._watcher)
        self._offer_recovery()

    # ------------------------------------------------------------------ buttons
    def _open_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open session", "", "mpi-viewer session (*.json)"
        )
        if path:
            self.open(path, block=False)

    def _save_clicked(self) -> None:
        if self.path is None:
            self._save_as_clicked()
        else:
            self.save(self.path, block=False)

    def _save_as_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save session as", "", "mpi-viewer session (*.json)"
        )
        if path:
            if not path.endswith(".json"):
                path += ".json"
            self.save(path, block=False)

    def _ask_box(self, question: str) -> bool:
        r = QMessageBox.question(
            self, "mpi-viewer session", question, QMessageBox.Yes | QMessageBox.No
        )
        return r == QMessageBox.Yes

    # ------------------------------------------------------------------ save
    def save(self, path: str | Path, *, block: bool = True) -> Path | None:
        """Save the viewer's analysis to ``path``: recomputed through the pipeline, so the
        stored numbers are exactly what ``mpi-viewer replay`` will find.

        Images made in memory and the calibration phantoms are written beside the
        session first. ``block=False`` runs the writing and the recomputation off the
        GUI thread with a progress bar (returns None; :attr:`path` is set when done).
        """
        from mpi_viewer.study import pipeline as P

        if self.session is None and not any(_layers.find_layers(self.viewer)):
            _notify("warning", "nothing to save: open images (or the demo) first")
            self.status.setText("nothing to save: the viewer has no images")
            return None
        writes: list = []
        try:
            s = self.collect(path, deferred=writes)
        except (MPIViewerError, OSError) as exc:
            _notify("error", f"session not saved: {exc}")
            return None

        def work():
            try:
                written = self._write_files(writes)
                if s.registration or s.rois:
                    out, rec = P.compute_and_save(s, path)
                    return out, rec.rows, written
                return S.save_session(s, path), [], written
            except (MPIViewerError, OSError) as exc:
                raise InputError(f"session not saved: {' '.join(str(exc).split())}") from None

        saved: list = []

        def done(result):
            out, rows, written = result
            self.rows = rows
            self.session, self.path = s, Path(out)
            text = f"saved {out}"
            if written:
                text += (
                    f"; wrote {', '.join(written)} beside it (data that had no file, or a "
                    "geometry set in the window)"
                )
            self.status.setText(text)
            saved.append(Path(out))

        self._worker = start_work(
            work, on_done=done, block=block, determinate=False, desc="saving session"
        )
        return saved[0] if saved else None

    # ------------------------------------------------------------------ open
    def open(
        self, path: str | Path, *, allow_changed_inputs: bool | None = None, block: bool = True
    ) -> bool:
        """Open a session: layers, transform, display settings, then each dock's part
        (landmarks, ROIs and their table, calibration, cells), and say whether the
        recomputed numbers match the stored ones.

        ``block=False``: inputs hashed, numbers recomputed and layers built in a worker
        (:attr:`_worker`; ``quit()`` cancels), each layer swapped in on its own. Returns
        False (after a notification naming the file) when the session cannot be opened;
        nothing is loaded then.
        """
        from mpi_viewer.study import pipeline as P

        try:
            s = S.load_session(path)
            outside = [w for w in s.warnings if "outside its folder" in w]
            for w in s.warnings:
                if w not in outside:
                    _notify("warning", w)
            if (
                outside
                and self.recovered_from is None
                and not self._ask(outside[0] + ". Open them?")
            ):
                return False
        except MPIViewerError as exc:
            _notify("error", f"session not opened: {exc}")
            return False
        opened: list = []

        def show(notes, rec):
            try:
                rec = rec if rec is not None else P.recompute(s)
                rec.others = P.read_other_images(s)
                differences = P.compare(s, rec) if s.results else []
            except MPIViewerError as exc:
                raise InputError(f"session not opened: {' '.join(str(exc).split())}") from None
            yield
            yield from self.open_steps(s, rec, block=block)
            return "shown", notes, rec, differences

        def work():
            try:
                notes = s.verify_inputs(allow_changed=True)
            except MPIViewerError as exc:
                raise InputError(f"session not opened: {' '.join(str(exc).split())}") from None
            if notes and not allow_changed_inputs:  # ask before anything is recomputed
                return "ask", notes, None
            return (yield from show(notes, None))

        def done(result):
            if result[0] == "shown":
                opened.append(self._opened(path, s, *result[1:]))
                return
            _, notes, rec = result
            if allow_changed_inputs is False or not self._ask(f"{notes[0]}. Open anyway?"):
                _notify("error", f"session not opened: {notes[0]}")
                opened.append(False)
                return

            def again():  # the user said yes: open it anyway
                return (yield from show(notes, rec))

            self._worker = self._opening(again, done, block)

        self._worker = self._opening(work, done, block)
        return bool(opened and opened[0]) if block else True

    def _opening(self, work, done, block: bool):
        """Run an opening's ``work`` (:func:`start_work`) with the layer pool paused: the
        opening makes the pooled layers in turns of its own (:meth:`open_steps`), not on
        the pool's timer between its steps."""
        from mpi_viewer.plugins import _layer_pool

        _layer_pool.pause(self.viewer)
        return start_work(
            work,
            on_done=done,
            block=block,
            determinate=False,
            desc="opening session",
            on_finish=lambda: _layer_pool.resume(self.viewer),
            hold=True,  # the docks' warnings: one notification once all is shown
        )

    def _opened(self, path, s: S.Session, notes: list[str], rec, differences) -> bool:
        for n in notes:
            _notify("warning", n)
        self.differences = differences
        self.rows = rec.rows
        self.session, self.path = s, (None if self.recovered_from else Path(path))
        if self.differences:
            _notify(
                "warning",
                f"{len(self.differences)} recomputed number(s) differ from the session: "
                f"{self.differences[0]}",
            )
        self.status.setText(
            f"opened {path}" + (" — numbers match" if s.results and not self.differences else "")
        )
        return True


def _session_dock_of(viewer) -> SessionDock:
    """The viewer's Session dock, opened if it is not."""
    dock = get_controller(viewer).section("session")
    if dock is not None:
        return dock
    _, widget = viewer.window.add_plugin_dock_widget("mpi-viewer", SESSION_DOCK_NAME)
    return widget


def open_session_action(viewer: Viewer) -> None:
    """File ▸ Open mpi-viewer session…: the study's docks first (those not open yet, as
    ``mpi-viewer`` opens them), so every part of the session has a dock to reopen in."""
    from mpi_viewer.plugins._launch import open_docks

    open_docks(viewer)
    _session_dock_of(viewer)._open_clicked()


def save_session_action(viewer: Viewer) -> None:
    """File ▸ Save mpi-viewer session"""
    _session_dock_of(viewer)._save_clicked()


def save_session_as_action(viewer: Viewer) -> None:
    """File ▸ Save mpi-viewer session as…"""
    _session_dock_of(viewer)._save_as_clicked()
