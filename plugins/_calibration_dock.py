"""Calibration dock: phantoms → calibration line → iron (µg Fe) per ROI with intervals.

A thin widget over :mod:`mpi_viewer.calibration`; it reads and writes the study through
the viewer's controller (:func:`~mpi_viewer.plugins._controller.get_controller`), never
through another dock:

- the phantom image is an MPI-role layer (the study's MPI unless another is picked);
- phantoms come from clicks or a CSV (:mod:`._calibration_phantoms`) and are measured
  with *exactly* the ROI method the MPI ROIs dock published to the controller (Sehl et
  al. 2020, doi:10.18383/j.tom.2020.00043), defaults when none is (said in the dock);
- Fit (:mod:`._calibration_fit`): least squares, not through the origin by default,
  ordinary or relative weighting, or a single reference phantom; slope ± SE, intercept
  ± SE, R², a plot with the prediction band and residuals;
- a library of calibrations (:mod:`._calibration_library`);
- "Apply to ROIs": iron with the classical calibration interval, the detection-limit
  flag and warnings for every ROI of the study (:func:`apply_calibration`).

The calibration and the iron per ROI are published to the controller
(``set_calibration``, ``set_iron``). Public attributes: :attr:`CalibrationDock.calibration`
and :attr:`CalibrationDock.iron_results`.
"""

from __future__ import annotations

from magicgui.widgets import ComboBox, Container, LineEdit
from mpi_viewer.plugins._calibration_fit import FitMixin
from mpi_viewer.plugins._calibration_library import LibraryMixin
from mpi_viewer.plugins._calibration_phantoms import PHANTOM_LAYER, PhantomsMixin  # noqa: F401
from mpi_viewer.plugins._controller import MPI, get_controller
from mpi_viewer.plugins._layers import install_mm_units, meta, volume_from_layer
from mpi_viewer.plugins._tables import fill_table, make_table, warning_html  # noqa: F401
from mpi_viewer.plugins._work import notify_error, notify_warning
from qtpy.QtWidgets import QLabel, QPushButton, QTabWidget, QVBoxLayout, QWidget

from mpi_viewer.calibration.describe import (  # noqa: F401 - fmt, split_warnings: cells dock
    describe_acquisition,
    fmt,
    iron_rows,
    split_warnings,
)
from mpi_viewer.errors import InputError


def quantify_rois(calibration, roi_results, roi_params, volume, *, iron_per_cell=None) -> list:
    """:func:`mpi_viewer.calibration.apply_calibration` with the image's acquisition and voxel size."""
    from mpi_viewer.calibration.record import apply_calibration

    return apply_calibration(
        roi_results,
        calibration,
        acquisition=volume.acquisition,
        roi_params=roi_params,
        voxel_volume_mm3=volume.voxel_volume_mm,
        iron_per_cell=iron_per_cell,
    )


class CalibrationDock(PhantomsMixin, FitMixin, LibraryMixin, QWidget):
    """Phantoms, fit, library and iron per ROI (see the module docstring)."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        install_mm_units(self.viewer)  # world = physical mm, for every layer
        self.ctl = get_controller(napari_viewer)
        self.ctl.provide_section("calibration", self)
        self.calibration = None
        self.iron_results: list = []
        self.points: list = []  # CalibrationPoint of the phantoms, as measured
        self.roi_params_used = None  # ROIParams the phantoms were measured with
        self.applied_to = None  # (roi_results, roi_params, volume) of the last "Apply to ROIs"
        self._measured_key = None
        self._phantom_layer = None
        self._library = None
        self._worker = None

        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        self.setMinimumWidth(380)
        self.mpi_combo = ComboBox(label="MPI image:", choices=[])
        self.mpi_combo.tooltip = "The MPI image the phantoms are in (MPI-role layers only)"
        # asked up front: the tracer and where the phantoms' iron was (free particles in
        # solution, or inside labelled cells) decide which warnings the numbers carry
        self.tracer_edit = LineEdit(label="Tracer:")
        self.tracer_edit.native.setPlaceholderText("e.g. VivoTrax, Synomag-D")
        self.env_combo = ComboBox(label="Phantoms in:", choices=["solution", "cells"])
        self.env_combo.tooltip = (
            "Where the phantoms' iron was: free particles in solution, or inside labelled "
            "cells. A solution calibration applied to cells may under-estimate their iron "
            "(Ureña Horno et al. 2025): then the results say so once."
        )
        self.sample_form = Container(widgets=[self.mpi_combo, self.tracer_edit, self.env_combo])
        self.sample_form.margins = (0, 0, 0, 0)
        outer.addWidget(self.sample_form.native)
        self.tabs = QTabWidget()
        outer.addWidget(self.tabs)
        self.tabs.addTab(self._build_phantoms_tab(), "Phantoms")
        self.tabs.addTab(self._build_fit_tab(), "Fit")
        self.tabs.addTab(self._build_library_tab(), "Record and library")
        self.tabs.addTab(self._build_rois_tab(), "Iron per ROI")

        self.mpi_combo.changed.connect(self._on_mpi_changed)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.ctl.events.roles.connect(self._refresh_layers)
        self.ctl.events.mpi.connect(self._follow_study_mpi)
        self.ctl.events.rois.connect(self._show_roi_source)
        self._refresh_layers()
        self._follow_study_mpi()
        self._refresh_phantom_table()

    def _build_rois_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        self.apply_btn = QPushButton("Apply to ROIs", clicked=lambda: self.apply_to_rois())
        self.apply_btn.setToolTip(
            "Iron with its 95 % calibration interval for every ROI of the study"
        )
        lay.addWidget(self.apply_btn)
        self.iron_table = make_table(200)
        lay.addWidget(self.iron_table, 1)
        self.apply_label = QLabel()
        self.apply_label.setWordWrap(True)
        lay.addWidget(self.apply_label)
        return tab

    # -- the MPI image (an MPI-role layer of the controller) ------------------------------------
    @property
    def mpi_layer(self):
        """The MPI image the phantoms are in (None: no MPI image)."""
        name = self.mpi_combo.value
        return next((lyr for lyr in self.ctl.layers(MPI) if lyr.name == name), None)

    def _refresh_layers(self, *_) -> None:
        current = self.mpi_combo.value
        names = [lyr.name for lyr in self.ctl.layers(MPI)]
        with self.mpi_combo.changed.blocked():
            self.mpi_combo.choices = names
            if current in names:
                self.mpi_combo.value = current
        if self.mpi_combo.value != current:
            self._on_mpi_changed()
        self._show_roi_source()

    def _follow_study_mpi(self, *_) -> None:
        """The study's MPI became another layer: the phantoms are looked for in it."""
        self._refresh_layers()
        if self.ctl.mpi is not None and self.mpi_combo.value != self.ctl.mpi.name:
            self.mpi_combo.value = self.ctl.mpi.name

    def _on_layer_removed(self, event=None) -> None:
        if self._phantom_layer is not None and self._phantom_layer not in self.viewer.layers:
            self._phantom_layer = None
            self._refresh_phantom_table()

    def _on_mpi_changed(self, *_) -> None:
        layer = self.mpi_layer
        acq = meta(layer).get("acquisition") or {} if layer is not None else {}
        if acq.get("tracer") and not self.tracer_edit.value:
            self.tracer_edit.value = str(acq["tracer"])
        if acq.get("tracer_lot") and not self.lot_edit.value:
            self.lot_edit.value = str(acq["tracer_lot"])
        self.acq_label.value = describe_acquisition(acq)

    def _need_mpi(self):
        layer = self.mpi_layer
        if layer is None:
            raise InputError("no MPI image layer: open an MPI image (or the demo) first")
        return layer

    # -- the ROI method (published by the MPI ROIs dock) ----------------------------------------
    def roi_params(self):
        """The study's ROI parameters (the ROI dock's), or the defaults when none is chosen."""
        from mpi_viewer.roi.regions import ROIParams

        return self.ctl.roi_params if self.ctl.roi_params is not None else ROIParams()

    def _show_roi_source(self, *_) -> None:
        params = self.roi_params()
        where = (
            "from the MPI ROIs dock"
            if self.ctl.roi_params is not None
            else "defaults: the MPI ROIs dock is not open, open it to measure phantoms and targets alike"
        )
        detail = {
            "halfmax": f"fraction {params.fraction:g} of the peak",
            "nsd": f"{params.n_sd:g} × noise SD",
            "kmeans": f"{params.kmeans_clusters} classes",
        }.get(params.method, "")
        self.roi_label.setText(f"ROI method: {params.method} ({detail}), {where}.")

    # -- iron per ROI --------------------------------------------------------------------------
    def roi_inputs(self, roi_results=None, roi_params=None):
        """(ROI results, ROI parameters, MPI Volume) to quantify; the study's by default.

        Raises InputError when there is no calibration, MPI image or ROI.
        """
        if self.calibration is None:
            raise InputError("no calibration: fit the phantoms or pick one from the library first")
        mpi = self.ctl.mpi or self._need_mpi()
        if roi_results is None:
            roi_results = list(self.ctl.roi_results)
            roi_params = roi_params if roi_params is not None else self.ctl.roi_params
        if not roi_results:
            raise InputError("no ROIs: click the sources in the MPI ROIs dock first")
        roi_params = roi_params if roi_params is not None else self.roi_params()
        return list(roi_results), roi_params, volume_from_layer(mpi)

    def quantify(self, roi_results=None, roi_params=None, *, iron_per_cell=None) -> list:
        """Iron (and cells) of ROIs with the current calibration (:func:`quantify_rois`).

        Defaults to the study's ROIs and parameters. Raises InputError.
        """
        rois, params, volume = self.roi_inputs(roi_results, roi_params)
        out = quantify_rois(self.calibration, rois, params, volume, iron_per_cell=iron_per_cell)
        self.applied_to = (rois, params, volume)
        self.ctl.calibration_applied_to = (list(rois), params)
        return out

    def apply_to_rois(self, roi_results=None, roi_params=None) -> list:
        """Compute and show iron with intervals for every ROI; returns :attr:`iron_results`."""
        try:
            res = self.quantify(roi_results, roi_params)
        except InputError as exc:
            notify_error(exc)
            return self.iron_results
        self.iron_results = res
        self.ctl.set_iron(res, self.applied_to)
        kind = self.calibration.kind
        headers, rows, common = iron_rows(res, kind)
        own = split_warnings([r.warnings for r in res])[1]  # each warning whole (a list)
        # three columns that fit the dock: the amount with its interval in one cell
        rows = [
            [row[0], row[1], "below LOD" if r.below_lod else f"{row[2]} ({row[3]}–{row[4]})",
             list(w)]
            for row, r, w in zip(rows, res, own, strict=True)
        ]  # fmt: skip
        headers = [
            "ROI",
            headers[1].replace(" (", "\n("),
            headers[2].replace(" (", " (95 % CI)\n(", 1),
            "warnings",
        ]
        fill_table(self.iron_table, headers, rows, warn_col=3, warn_beside=2)
        lod = next((r.lod for r in res if r.lod is not None), None)
        unit = "µg Fe" if kind == "iron" else "cells"
        self.apply_label.setText(
            (f"Detection limit: {fmt(lod, 3)} {unit}." if lod is not None else "")
            + ("<br>" + warning_html(["all ROIs: " + w for w in common]) if common else "")
        )
        flagged = [row[0] for row in rows if row[3]]
        if flagged:
            notify_warning(f"See ⚠ in the iron table: {', '.join(flagged)}")
        self.draw_plot()
        self.tabs.setCurrentIndex(3)
        return res

    # -- session -------------------------------------------------------------------------------
    def options(self) -> dict:
        """The fit options as :meth:`Calibration.from_points` takes them (sessions store them)."""
        single = bool(self.single_check.value)
        return {
            "name": self.name_edit.value or "calibration",
            "kind": self._kind(),
            "through_origin": bool(self.origin_check.value) or single,
            "weighting": self.weight_combo.value,
            "mode": "single_reference" if single else "line",
            "reference": (self.reference_combo.value or None) if single else None,
            "tracer": self.tracer_edit.value or None,
            "tracer_lot": self.lot_edit.value or None,
            "environment": self.env_combo.value,
            "preparation": self.prep_combo.value,
        }

    def state(self) -> dict:
        """Phantoms (name, MPI mm, amount), fit options, the ROI parameters the phantoms were
        measured with and the calibration with its raw points (``Calibration.to_dict()``)."""
        return {
            "layer": self.mpi_combo.value or "",
            "options": self.options(),
            "phantoms": [[p.name, list(p.xyz_mm), p.iron_ug] for p in self.phantoms()],
            "roi_params": None if self.roi_params_used is None else self.roi_params_used.to_dict(),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
        }

    def restore(self, state: dict) -> None:
        """Set options, phantoms and calibration of :meth:`state` (no refit; errors: notifications)."""
        for fn in self.restore_steps(state):
            fn()

    def restore_steps(self, state: dict) -> list:
        """:meth:`restore` as three callables (the session dock runs each in its own turn
        of the event loop): the options, the phantoms' layer, the calibration and the
        Iron per ROI table. An error stops the pieces after it (one notification)."""
        o = state.get("options") or {}

        def options():
            if state.get("layer") in self.mpi_combo.choices:
                self.mpi_combo.value = state["layer"]
            self.kind_combo.blockSignals(True)
            self.kind_combo.setCurrentIndex(0 if o.get("kind", "iron") == "iron" else 1)
            self.kind_combo.blockSignals(False)
            single = o.get("mode") == "single_reference"
            self.origin_check.value = bool(o.get("through_origin")) and not single
            self.weight_combo.value = "relative" if o.get("weighting") == "relative" else "ols"
            self.single_check.value = single
            self.name_edit.value = o.get("name") or "calibration"
            self.tracer_edit.value = o.get("tracer") or ""
            self.lot_edit.value = o.get("tracer_lot") or ""
            self.env_combo.value = "cells" if o.get("environment") == "cells" else "solution"
            prep = o.get("preparation") or "fixed_concentration"
            self.prep_combo.value = (
                prep if prep in self.prep_combo.choices else "fixed_concentration"
            )

        def phantoms():
            if state.get("phantoms") and self.mpi_layer is not None:
                self.set_phantoms([(n, xyz, a) for n, xyz, a in state["phantoms"]])

        def calibration():
            from mpi_viewer.calibration.record import Calibration
            from mpi_viewer.roi.regions import ROIParams

            if o.get("reference") in self.reference_combo.choices:
                self.reference_combo.value = o["reference"]
            rp = state.get("roi_params")
            self.roi_params_used = ROIParams.from_dict(rp) if rp is not None else None
            if state.get("calibration"):
                cal = Calibration.from_dict(state["calibration"], source="session calibration")
                self.points = list(cal.points)
                self.set_calibration(cal)
                if self.ctl.roi_results:  # the Iron per ROI table as it was saved
                    self.apply_to_rois()

        from mpi_viewer.plugins._work import stop_at_failure

        return stop_at_failure(
            [options, phantoms, calibration],
            catch=(InputError, KeyError, TypeError, ValueError),
            on_error=lambda exc: notify_error(exc, "calibration not restored"),
        )
