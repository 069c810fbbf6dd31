"""The ROI dock's session part: its state as the session stores it, and its restore.

A mixin of :class:`~mpi_viewer.plugins._roi_dock.ROIDock`.
"""

from __future__ import annotations

from mpi_viewer.plugins._controller import MPI
from napari.utils import notifications

from mpi_viewer.errors import InputError
from mpi_viewer.roi.regions import ROIParams


class ROISessionMixin:
    """``state`` / ``restore`` of the ROI dock (the session dock calls them)."""

    def state(self) -> dict:
        """The dock as the session stores it: MPI layer, ``ROIParams.to_dict()``, seeds
        (MPI physical mm, x, y, z), ROI names and the manual ROIs.

        ``"manual"`` is None without manual ROIs, else ``{"labels": ndarray, "names":
        [...]}``: a label image on the MPI grid (numpy order; the painted labels as
        painted, or the polygons as labels 1…n) and the ROI names in increasing label
        order. The session dock writes it beside the session (NRRD).
        """
        return {
            "layer": self._gone_layer or self.layer_combo.currentText(),
            "params": self.params.to_dict(),
            "seeds_xyz_mm": [list(s) for s in self._seeds_mm],
            "names": list(self._names),
            "manual": self._manual_state(),
        }

    def restore(self, state: dict) -> None:
        """Set the widgets from :meth:`state` and measure the seeds again (errors: notifications).

        ``state["results"]`` (optional): the seeds' results, measured already with these
        parameters (a session's, recomputed off the GUI thread), and ``state["labels"]``
        their label image: shown as they are, not measured again.
        """
        for fn in self.restore_steps(state):
            fn()

    def restore_steps(self, state: dict) -> list:
        """:meth:`restore` as callables, one per layer it changes (the session dock runs
        each in its own turn of the event loop): the widgets and seeds, the seeds' layer,
        the ROIs' labels and table, the seed points, the manual ROIs. Invalid parameters:
        a notification and nothing to run."""
        try:
            params = ROIParams.from_dict(state.get("params"))
        except (InputError, TypeError, ValueError) as exc:
            notifications.show_error(f"ROI parameters not restored: {exc}")
            return []
        given = state.get("results")

        def seed_layer():
            if self._seeds_mm and self.mpi_layer is not None:
                self._ensure_seed_layer()

        def results():
            if given is not None and [r.name for r in given] == self._names:
                # measured already (a session's recomputed results): not again on the GUI thread
                self._set_results(list(given), labels=state.get("labels"))
            else:
                self.recompute()

        def points():
            if given is not None and [r.name for r in given] == self._names:
                self._sync_points()

        def manual():
            m = state.get("manual")
            if m is not None and self.mpi_layer is not None:
                self._guarded(self._restore_manual, m)

        from mpi_viewer.plugins._work import stop_at_failure

        def widgets():
            self._restore_widgets(state, params)

        # each piece builds on the last: a failed one stops the rest
        return stop_at_failure([widgets, seed_layer, results, points, manual])

    def _restore_widgets(self, state: dict, params: ROIParams) -> None:
        """The widgets, the study's MPI and the seeds and names of :meth:`state` (no layer)."""
        widgets = (
            self.layer_combo,
            self.method,
            self.fraction,
            self.n_sd,
            self.noise_sd,
            self.radius,
            self.split,
        )
        for w in widgets:
            w.blockSignals(True)
        try:
            layer = next(
                (lyr for lyr in self.ctl.layers(MPI) if lyr.name == state.get("layer")), None
            )
            if layer is not None:
                self.ctl.set_rois([], [])  # a restored session replaces the ROIs
                self.ctl.set_mpi(layer)
            self.method.setCurrentIndex(max(0, self.method.findData(params.method)))
            self.fraction.setValue(params.fraction)
            self.n_sd.setValue(params.n_sd)
            self.noise_sd.setValue(params.noise_sd or 0.0)
            self.radius.setValue(params.search_radius_mm)
            self.split.setChecked(params.split_sources)
        finally:
            for w in widgets:
                w.blockSignals(False)
        self.params = params
        self._update_enabled()
        self._seeds_mm = [tuple(float(v) for v in s) for s in state.get("seeds_xyz_mm") or []]
        self._names = [str(n) for n in state.get("names") or []] or [
            f"roi_{i + 1}" for i in range(len(self._seeds_mm))
        ]
        self._counter = len(self._seeds_mm)
        self._manual, self._manual_names, self._gone_layer = [], {}, None
