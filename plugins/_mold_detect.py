"""Detection of the mold panel: the template registration run off the GUI thread.

A mixin of :class:`~mpi_viewer.plugins._mold_panel.MoldPanel` (one idea per module):
:func:`mpi_viewer.registration.molds.register_with_template` runs in a napari
``thread_worker`` (or inline with ``block=True``); its progress comes back to the GUI
thread through a queued signal, and it can be cancelled at its next step. The
status summary of a result is written here too.
"""

from __future__ import annotations

from mpi_viewer.plugins._layers import volume_from_layer
from qtpy.QtCore import QObject, Signal

from mpi_viewer.errors import CancelledError, MPIViewerError


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    step = Signal(float, str)


class MoldDetectMixin:
    """The detection work of the mold panel (needs its widgets, ``_on_done``, ``_on_error``)."""

    def detect(self, *, block: bool = False):
        """Detect, match and pair the wells; returns the worker (None when ``block`` or refused)."""
        from mpi_viewer.registration.molds import register_with_template

        if self.busy:  # a detection runs, or its result is still being shown
            return None
        fixed_layer, moving_layer = self.ctl.anatomy, self.ctl.mpi
        if fixed_layer is None or moving_layer is None:
            self._fail(
                "Mold registration: open an anatomy (MRI/CT) and an MPI image "
                "(set a layer's modality in the Image geometry dock)"
            )
            return None
        try:
            fixed, moving = volume_from_layer(fixed_layer), volume_from_layer(moving_layer)
        except MPIViewerError as exc:
            self._fail(str(exc))
            return None
        template, tol = self.template(), float(self.tol_spin.value())
        turn = float(self.turn_spin.value())
        self._cancel = False

        def step(fraction, message):
            if self._cancel:
                raise CancelledError("mold detection cancelled")
            self._relay.step.emit(float(fraction), str(message))

        def run():
            # undecided poses come back (strict=False) for the user to choose in the table
            return register_with_template(
                fixed,
                moving,
                template,
                tolerance_mm=tol,
                max_rotation_deg=turn,
                strict=False,
                progress=step,
            )

        layers = (fixed_layer, moving_layer)
        self._settings = {"template": template, "tolerance_mm": tol}
        self.end_preview()
        if block:
            try:
                result = run()
            except MPIViewerError as exc:
                self._on_error(exc)
            else:
                self._on_done(result, layers)
            return None

        from napari.qt.threading import thread_worker

        # errors go to our handler (a notification), not re-raised into Qt
        worker = thread_worker(run, ignore_errors=True)()
        # the wells and the MPI's move shown one per turn of the event loop (busy until then)
        worker.returned.connect(lambda result: self._on_done(result, layers, turns=True))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.detect_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running detection at its next step."""
        self._cancel = True
        self.status.setText("Cancelling…")

    @property
    def busy(self) -> bool:
        """A detection runs, or its result is still being shown."""
        return self._worker is not None or self._showing

    def _on_step(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(round(100 * fraction)))
        self.status.setText(message[:1].upper() + message[1:] + "…")

    def _on_finished(self) -> None:
        self._worker = None
        self.detect_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.progress.setVisible(False)

    @staticmethod
    def _summary(result) -> str:
        """A few short lines: wells matched per image, what is missing, ambiguity, FRE."""
        lines = []
        for role, m in (("Fixed", result.fixed_match), ("Moving", result.moving_match)):
            n = len(m.pairs) + len(m.missing)
            miss = f"; not found: {', '.join(m.missing)}" if m.missing else ""
            lines.append(f"{role}: {len(m.pairs)}/{n} wells, RMS residual {m.rms_mm:.2f} mm{miss}")
        if result.ambiguous:
            lines.append("Nothing moved: choose a pose below.")
        else:
            lines.append(
                f"Paired: {', '.join(result.matched_names)}; RMS FRE "
                f"{float(result.fit.rms_fre_mm):.2f} mm"
            )
        lines.append(result.decision_line())  # how the pose was chosen (wells, prior, user)
        return "\n".join(lines)
