"""Measuring the phantoms and fitting the line in the Calibration dock: the fit options
(a magicgui form), "Measure phantoms and fit" off the GUI thread, the fit's summary and
its plot (data from :mod:`mpi_viewer.calibration.describe`).

A mixin of :class:`~mpi_viewer.plugins._calibration_dock.CalibrationDock`.
"""

from __future__ import annotations

import dataclasses
import html

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container
from mpi_viewer.plugins._layers import meta, volume_from_layer
from mpi_viewer.plugins._plot_canvas import PlotPanel
from mpi_viewer.plugins._tables import warning_html
from mpi_viewer.plugins._work import notify_error, notify_warning, start_work
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from mpi_viewer.calibration.describe import calibration_plot, describe_fit
from mpi_viewer.errors import InputError

WEIGHTINGS = [("ordinary (OLS)", "ols"), ("relative (1/signal²)", "relative")]


def warm_imports() -> None:
    """Import, off the GUI thread, what the first fit and plot need (scipy.stats,
    matplotlib's Agg canvas): seconds of the first click otherwise spent with the window
    frozen. Importing creates no widget."""
    import scipy.stats  # noqa: F401
    from matplotlib.backends import backend_agg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401


class FitMixin:
    """Part of the Calibration dock (needs its widgets and state)."""

    def _build_fit_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        self.origin_check = CheckBox(text="force through the origin")
        self.weight_combo = ComboBox(label="Weighting:", choices=WEIGHTINGS)
        self.single_check = CheckBox(text="single reference")
        self.reference_combo = ComboBox(label="reference:", choices=[])
        self.fit_form = Container(
            widgets=[self.origin_check, self.weight_combo, self.single_check, self.reference_combo]
        )
        self.fit_form.margins = (0, 0, 0, 0)
        lay.addWidget(self.fit_form.native)
        self.fit_btn = QPushButton("Measure phantoms and fit", clicked=lambda: self.fit())
        lay.addWidget(self.fit_btn)
        self.fit_label = QLabel("No calibration yet: signal = slope × amount + intercept.")
        self.fit_label.setWordWrap(True)
        self.fit_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.fit_label)
        self.plot = PlotPanel("The calibration plot appears here after a fit.", height_px=380)
        lay.addWidget(self.plot, 1)
        return tab

    # -- measuring -----------------------------------------------------------------------------
    def measure(self, *, block: bool = False, then=None):
        """Measure every phantom with the ROI dock's method (off the GUI thread)."""
        from mpi_viewer.calibration.phantoms import measure_phantoms

        try:
            mpi = self._need_mpi()
            phantoms = self.phantoms()
            if not phantoms:
                raise InputError("no phantoms: click the vials or load a phantom CSV first")
            params = self.roi_params()
            volume = volume_from_layer(mpi)
            self._show_roi_source()
        except InputError as exc:
            notify_error(exc)
            return None
        kind = self._kind()
        key = (mpi.name, tuple((p.name, p.xyz_mm) for p in phantoms), repr(params.to_dict()), kind)
        amounts = {p.name: p.iron_ug for p in phantoms}

        def done(points):
            for p in points:  # amounts may have been edited meanwhile: take the table's
                setattr(p, "iron_ug" if kind == "iron" else "cells", amounts.get(p.name))
            self.points = list(points)
            self.roi_params_used = params
            self._measured_key = key
            self._refresh_phantom_table()
            if then is not None:
                then()

        if key == self._measured_key and self.points:
            done(self.points)
            return None

        def work():
            points = measure_phantoms(volume, phantoms, params, kind=kind)
            warm_imports()  # the fit's t quantile and the plot: not on the GUI thread
            return points

        self._worker = start_work(
            work, on_done=done, block=block, desc=f"measuring {len(phantoms)} phantoms"
        )
        return self._worker

    def fit(self, *, block: bool = False):
        """Measure (if needed) and fit; shows slope ± SE, intercept ± SE, R² and the plot
        (drawn in a worker; ``block``: here and now)."""
        return self.measure(block=block, then=lambda: self._fit_points(block=block))

    def _fit_points(self, *, block: bool = False) -> None:
        from mpi_viewer.calibration.record import Calibration

        options = self.options()  # the same options the session stores
        kind = options["kind"]
        mpi = self.mpi_layer
        try:
            usable = [p for p in self.points if np.isfinite(p.amount(kind))]
            missing = [p.name for p in self.points if p not in usable]
            if missing:
                notify_warning(
                    f"phantoms without a known {self._amount_header()} left out: {', '.join(missing)}"
                )
            cal = Calibration.from_points(
                points=usable,
                **options,
                acquisition=dict(meta(mpi).get("acquisition") or {}) if mpi is not None else {},
                roi=self.roi_params_used.to_dict() if self.roi_params_used is not None else {},
            )
        except InputError as exc:
            notify_error(exc)
            return
        self.set_calibration(cal, block=block)

    # -- showing the calibration ---------------------------------------------------------------
    def set_calibration(self, cal, *, block: bool = False) -> None:
        """Make ``cal`` the current calibration (show its fit, plot and warnings; the plot
        is drawn in a worker, ``block``: here and now)."""
        from mpi_viewer.calibration.record import compatibility_warnings

        self.calibration = cal
        self.ctl.set_calibration(cal)
        rest = describe_fit(cal)[len(cal.name) + 2 :]  # "name: slope …"
        text = f"<b>{html.escape(cal.name)}</b>: {html.escape(rest)}"
        target = self.ctl.mpi or self.mpi_layer
        acq = meta(target).get("acquisition") if target is not None else None
        warns = compatibility_warnings(cal, acq, self.roi_params())
        if warns:
            text += "<br>" + warning_html(warns)
            notify_warning(f"calibration {cal.name}: " + "; ".join(warns))
        self.fit_label.setText(text)
        self.name_edit.value = cal.name
        self.kind_combo.blockSignals(True)
        self.kind_combo.setCurrentIndex(0 if cal.kind == "iron" else 1)
        self.kind_combo.blockSignals(False)
        self.draw_plot(block=block)
        self.tabs.setCurrentIndex(1)

    def draw_plot(self, *, block: bool = False) -> None:
        """The calibration plot of the current calibration and iron results, drawn off the
        GUI thread (:class:`~mpi_viewer.plugins._plot_canvas.PlotPanel`)."""
        if self.calibration is None:
            return
        data = dataclasses.asdict(calibration_plot(self.calibration, self.iron_results))
        self.plot.plot_calibration(data.pop("x"), data.pop("y"), block=block, **data)
