"""Autosave and crash recovery of the Session dock.

Every few minutes, and when the window closes, the current state is written to a
recovery file (``~/.cache/mpi-viewer/recovery``, or ``$MPI_VIEWER_RECOVERY_DIR``); after
a crash the next dock offers it back (:meth:`RecoveryMixin.recover`). A mixin of
:class:`~mpi_viewer.plugins._session_dock.SessionDock`.
"""

from __future__ import annotations

from pathlib import Path

from mpi_viewer.plugins import _layers
from mpi_viewer.plugins._session_restore import _notify
from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import QMessageBox

from mpi_viewer.errors import MPIViewerError
from mpi_viewer.study import session as S


class _CloseWatcher(QObject):
    def __init__(self, callback):
        super().__init__()
        self._callback = callback

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        if event.type() == QEvent.Close:
            self._callback()
        return False


class RecoveryMixin:
    """Autosave and recovery (needs ``collect``, ``open``, ``session``, ``path``)."""

    def autosave_now(self) -> Path | None:
        """Write the current state to this process's recovery file (no recomputation)."""
        if self.session is None and not any(_layers.find_layers(self.viewer)):
            return None
        rp = S.recovery_path()
        try:
            s = self.collect(rp)
            if self.path is not None:
                s.notes = f"recovery of {self.path}"
            S.atomic_write_text(rp, S.dumps_session(s))
        except (MPIViewerError, OSError, ValueError) as exc:
            _notify("warning", f"autosave failed: {exc}")
            return None
        return rp

    def _on_close(self) -> None:
        self.autosave_now()
        self._timer.stop()

    # ------------------------------------------------------------------ recovery
    def pending_recoveries(self) -> list[Path]:
        return S.pending_recoveries()

    def _offer_recovery(self) -> None:
        pending = self.pending_recoveries()
        if not pending:
            return
        self._recovery_box = box = QMessageBox(self)
        box.setWindowTitle("mpi-viewer: recover session")
        box.setText(
            f"mpi-viewer did not close properly. Recover the autosaved session {pending[0].name}?"
        )
        box.setStandardButtons(QMessageBox.Yes | QMessageBox.No)
        box.buttonClicked.connect(
            lambda b: self.recover(pending[0]) if box.standardButton(b) == QMessageBox.Yes else None
        )
        QTimer.singleShot(0, box.open)  # non-blocking, after the window is up

    def recover(self, path: str | Path) -> bool:
        """Open a recovery file, then remove it (the state is autosaved anew)."""
        path = Path(path)
        self.recovered_from = path
        ok = False
        try:
            ok = self.open(path, allow_changed_inputs=False)
        finally:
            if not ok:
                self.recovered_from = None
        if ok:
            try:
                path.unlink()
            except OSError:
                pass
            self.autosave_now()
        return ok


# -- File menu actions ------------------------------------------------------------------------------
