"""Resampling (display only) and intensity refinement of the registration dock, the
refinement in a napari ``thread_worker`` with progress and cancel.

A mixin of :class:`~mpi_viewer.plugins._registration_dock.RegistrationDock`.
"""

from __future__ import annotations

from mpi_viewer.plugins._layers import (
    add_volume,
    volume_from_layer,
)
from mpi_viewer.plugins._registration_base import (
    _reg,
)
from napari.utils.notifications import show_error, show_info

from mpi_viewer.errors import CancelledError
from mpi_viewer.geometry.transform import resample_to_fixed, transform_to_matrix


class RefineMixin:
    """Part of the registration dock (needs its widgets and pair state)."""

    # ------------------------------------------------------- resample, refine
    def _sitk_transform(self):
        src = self.transform[2]
        return src.to_sitk() if hasattr(src, "to_sitk") else src

    def resample(self):
        """Add the moving image resampled on the fixed grid (linear; display only)."""
        if self.pairs is None or self.transform is None:
            show_error("Fiducial registration: no transform yet (click at least 3 pairs)")
            return None
        try:
            vol = resample_to_fixed(
                volume_from_layer(self.pairs.moving_image),
                volume_from_layer(self.pairs.fixed_image),
                self._sitk_transform(),
            )
            return add_volume(
                self.viewer, vol, name=f"{self.pairs.moving_image.name} resampled (display only)"
            )
        except Exception as exc:  # noqa: BLE001
            show_error(f"Fiducial registration: resampling failed: {exc}")
            return None

    @property
    def refining(self) -> bool:
        return self._worker is not None

    def refine(self):
        """Refine the current transform by intensity in a worker thread; returns the worker.

        Tests wait with ``qtbot.waitUntil(lambda: not dock.refining)``.
        """
        if self.pairs is None or self.transform is None or self._worker is not None:
            show_error("Fiducial registration: refinement needs a landmark fit first")
            return None
        from napari.qt.threading import thread_worker
        from napari.utils import progress

        reg = _reg()
        fixed = volume_from_layer(self.pairs.fixed_image)
        moving = volume_from_layer(self.pairs.moving_image)
        initial = self._sitk_transform()
        self._stop = False
        self._progress = 0.0

        def on_progress(fraction, *args):
            self._progress = float(fraction)

        model = "affine" if self.model_combo.currentText() == "affine" else "rigid"
        spacing_mm = max(1.0, *moving.spacing_mm)  # the MPI resolution is ~1 mm or coarser

        @thread_worker
        def work():
            try:  # errors come back as values: the dock reports them, not napari's relay
                return True, reg.refine_intensity(
                    fixed,
                    moving,
                    initial,
                    model=model,
                    progress=on_progress,
                    should_stop=lambda: self._stop,
                    working_spacing_mm=spacing_mm,
                )
            except Exception as exc:  # noqa: BLE001
                return False, exc

        self._pbar = progress(total=100, desc="Refining registration (intensity)")
        self._pbar_n = 0
        worker = work()
        worker.returned.connect(self._refined)
        worker.finished.connect(self._refine_done)
        self._worker = worker
        self.refine_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self._poll.start()
        worker.start()
        return worker

    def cancel_refine(self) -> None:
        """Ask the running refinement to stop (it ends at its next iteration)."""
        self._stop = True

    def _poll_progress(self) -> None:
        n = int(min(max(self._progress, 0.0), 1.0) * 100)
        if n > self._pbar_n:
            self._pbar.update(n - self._pbar_n)
            self._pbar_n = n

    def _refined(self, outcome) -> None:
        ok, result = outcome
        if not ok:
            self._refine_failed(result)
            return
        if self.pairs is None or not self.pairs.alive():
            return
        t = getattr(result, "transform", result)
        try:
            matrix, translation = transform_to_matrix(t)
            self._draw(matrix, translation, t)
            show_info(
                "Fiducial registration: refined by intensity; FRE in the table is of the landmark fit"
            )
        except Exception as exc:  # noqa: BLE001
            show_error(f"Fiducial registration: refinement result unusable: {exc}")

    def _refine_failed(self, exc) -> None:
        if isinstance(exc, CancelledError) or self._stop:
            show_info("Fiducial registration: refinement cancelled; the landmark fit is kept")
        else:
            show_error(f"Fiducial registration: refinement failed: {exc}")

    def _refine_done(self) -> None:
        self._poll.stop()
        self._pbar.close()
        self._worker = None
        self.refine_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
