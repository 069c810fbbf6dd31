"""Resampling (display only) and intensity refinement of the registration dock, the
refinement through :func:`._work.start_work` (napari ``thread_worker``, progress bar,
cancel by ``quit()``).

A mixin of :class:`~mpi_viewer.plugins._registration_dock.RegistrationDock`.
"""

from __future__ import annotations

from mpi_viewer.plugins._layers import (
    add_volume,
    volume_from_layer,
)
from mpi_viewer.plugins._registration_base import _reg
from mpi_viewer.plugins._work import callback_steps, start_work
from napari.utils.notifications import show_error, show_info

from mpi_viewer.errors import CancelledError
from mpi_viewer.geometry.transform import Transform, resample_to_fixed


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

        Progress in napari's progress bar, Cancel (``worker.quit()``) stops it at the
        optimiser's next iteration and keeps the landmark fit. Tests wait with
        ``qtbot.waitUntil(lambda: not dock.refining)``.
        """
        if self.pairs is None or self.transform is None or self._worker is not None:
            show_error("Fiducial registration: refinement needs a landmark fit first")
            return None
        reg = _reg()
        fixed = volume_from_layer(self.pairs.fixed_image)
        moving = volume_from_layer(self.pairs.moving_image)
        initial = self._sitk_transform()
        model = "affine" if self.model_combo.value == "affine" else "rigid"
        spacing_mm = max(1.0, *moving.spacing_mm)  # the MPI resolution is ~1 mm or coarser

        def run(progress, should_stop):
            return reg.refine_intensity(
                fixed,
                moving,
                initial,
                model=model,
                progress=progress,
                should_stop=should_stop,
                working_spacing_mm=spacing_mm,
            )

        started: dict = {}  # the worker, once made: its quit() is the refinement's stop

        def stop() -> bool:
            worker = started.get("worker")
            return worker is not None and worker.abort_requested

        def work():
            return (yield from callback_steps(run, stop=stop))

        self.refine_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self._worker = start_work(
            work,
            on_done=lambda result: self._refined(result, model),
            desc="Refining registration (intensity)",
            on_error=self._refine_failed,
            on_finish=self._refine_done,
        )
        started["worker"] = self._worker
        return self._worker

    def cancel_refine(self) -> None:
        """Stop the running refinement (at its next iteration); the landmark fit stays."""
        if self._worker is not None:
            self._worker.quit()
            show_info("Fiducial registration: refinement cancelled; the landmark fit is kept")

    def _refined(self, result, model: str = "affine") -> None:
        if self.pairs is None or not self.pairs.alive():
            return
        try:
            t = Transform.from_any(getattr(result, "transform", result), model)
            self._draw(t.matrix, t.translation, t)
            show_info(
                "Fiducial registration: refined by intensity; FRE in the table is of the landmark fit"
            )
        except Exception as exc:  # noqa: BLE001
            show_error(f"Fiducial registration: refinement result unusable: {exc}")

    def _refine_failed(self, exc) -> None:
        if not isinstance(exc, CancelledError):
            show_error(f"Fiducial registration: refinement failed: {exc}")

    def _refine_done(self) -> None:
        self._worker = None
        self.refine_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
