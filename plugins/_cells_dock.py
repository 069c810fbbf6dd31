"""Cells and report dock: cell number per ROI, overlays on the anatomy, the study report.

Cell number = iron measured in vivo / iron per cell measured ex vivo (Sehl et al.,
Tomography 6:315, 2020, doi:10.18383/j.tom.2020.00043), or directly from a cell-based
calibration (Ureña Horno et al., Nanoscale 17:24060, 2025, doi:10.1039/d5nr02393a).
The numbers come from :func:`mpi_viewer.calibration.apply_calibration`, applied to the
study's ROIs and calibration as the controller holds them
(:func:`~mpi_viewer.plugins._controller.get_controller`); this dock only shows them:

- a table per ROI (cells, 95 % interval, below the detection limit, warnings) with a
  show/hide box per ROI;
- overlays drawn in the anatomical space through the registration
  (:mod:`~mpi_viewer.plugins._cells_overlays`): ROI outlines, labels such as
  "2.4 × 10⁵ cells [1.9–2.9 × 10⁵]" beside each ROI, a cell-density layer (cells/mm³);
- "Report…" (:mod:`~mpi_viewer.plugins._cells_report`).

"Compute" runs in a worker (:func:`~mpi_viewer.plugins._work.start_work`): the numbers
and the overlay arrays off the GUI thread, then one layer per turn of the event loop.

Public attributes: :attr:`CellsDock.results` (list of
:class:`~mpi_viewer.calibration.QuantityResult` with cells), :attr:`CellsDock.iron_per_cell`.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import Container, FloatSpinBox, RadioButtons
from mpi_viewer.plugins import _napari_compat as compat
from mpi_viewer.plugins._calibration_dock import (
    fmt,
    make_table,
    notify_warning,
    quantify_rois,
    split_warnings,
    warning_html,
)
from mpi_viewer.plugins._cells_overlays import (
    CellOverlaysMixin,
    frame_key,
    label_texts_of,
    shown_arrays,
)
from mpi_viewer.plugins._cells_report import ReportMixin
from mpi_viewer.plugins._cells_table import CellsTableMixin
from mpi_viewer.plugins._controller import get_controller
from mpi_viewer.plugins._layers import install_mm_units, meta, volume_from_layer
from mpi_viewer.plugins._work import GuiStep, notify_error, start_work
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer.defaults import IRON_PER_CELL_PG, IRON_PER_CELL_SD_PG
from mpi_viewer.errors import InputError
from mpi_viewer.report.overlays import content_box, overlay_arrays

#: The two sources of a cell number (the form's choices).
FROM_IPC = "iron per cell (ex vivo, e.g. ICP-MS)"
FROM_CELL_CAL = "a cell-based calibration"


class CellsDock(CellsTableMixin, CellOverlaysMixin, ReportMixin, QWidget):
    """Cells per ROI, overlays on the anatomy and the report (see the module docstring)."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        install_mm_units(self.viewer)  # world = physical mm, for every layer
        self.ctl = get_controller(napari_viewer)  # the ROIs, the calibration, the images
        self.ctl.provide_section("cells", self)
        self.results: list = []
        self.iron_per_cell = None
        self.roi_results: list = []
        self.visible: dict[str, bool] = {}
        self.shown_texts: list[str] = []  # the label texts drawn (shortened when crowded)
        self._volume = None
        self._mpi_layer = None
        self._calibration = None
        self._threshold_au = None
        self._display_layer = None
        self._labels_disp = None
        self._density_disp = None
        self._frame = None  # (show boxes, what the overlay layers show): shown_arrays
        self._texts = None  # (results, their label texts)
        self._worker = None

        lay = QVBoxLayout(self)
        self.setMinimumWidth(380)
        # the iron per cell: a magicgui form, like the calibration and registration docks
        self.source_choice = RadioButtons(
            label="cells from:",
            choices=[FROM_IPC, FROM_CELL_CAL],
            value=FROM_IPC,
            orientation="vertical",
        )
        self.source_choice.tooltip = (
            "Iron per cell measured ex vivo (e.g. ICP-MS of the labelled cells), or a "
            "calibration made with phantoms of known cell numbers"
        )
        self.mean_w = FloatSpinBox(label="iron per cell:", value=IRON_PER_CELL_PG, step=0.5,
                                   min=-1000.0, max=100000.0)  # fmt: skip
        self.sd_w = FloatSpinBox(label="± SD:", value=IRON_PER_CELL_SD_PG, step=0.5,
                                 min=-1000.0, max=100000.0)  # fmt: skip
        # the range is wide on purpose: validation (and its message) is IronPerCell's
        for w, tip in ((self.mean_w, "mean"), (self.sd_w, "standard deviation")):
            w.native.setDecimals(2)
            w.native.setSuffix(" pg Fe/cell")
            w.tooltip = f"Iron per cell, {tip} (pg Fe per cell)"
        self.ipc_form = Container(widgets=[self.source_choice, self.mean_w, self.sd_w])
        self.ipc_form.margins = (0, 0, 0, 0)
        self.source_choice.changed.connect(self._on_source)
        lay.addWidget(self.ipc_form.native)
        self.compute_btn = QPushButton("Compute cells and overlays")
        lay.addWidget(self.compute_btn)
        self.table = make_table(170)
        lay.addWidget(self.table, 1)
        self.common_label = QLabel()  # warnings true of every ROI: said once, in full
        self.common_label.setWordWrap(True)
        lay.addWidget(self.common_label)
        self.outline_check = QCheckBox("outlines")
        self.label_check = QCheckBox("labels")
        self.density_check = QCheckBox("cell density")
        self.inside_check = QCheckBox("density inside ROIs only")
        for checks in (
            (self.outline_check, self.label_check),
            (self.density_check, self.inside_check),
        ):
            row = QHBoxLayout()
            for c in checks:
                c.setChecked(True)
                row.addWidget(c)
            lay.addLayout(row)
        self.info_label = QLabel("Fit or pick a calibration, apply it to the ROIs, then compute.")
        self.info_label.setWordWrap(True)
        lay.addWidget(self.info_label)
        self.report_btn = QPushButton("Report…")
        self.report_btn.setToolTip(
            "Writes a folder: results CSV, ROI masks, transform, calibration plot, "
            "slices and 3-D view, index.html"
        )
        lay.addWidget(self.report_btn)

        self.compute_btn.clicked.connect(lambda: self.compute())  # threaded
        self.table.itemChanged.connect(self._on_item_changed)
        for c in (self.outline_check, self.label_check, self.density_check, self.inside_check):
            c.toggled.connect(lambda *_: self.update_overlays())
        self.report_btn.clicked.connect(self._choose_report_folder)
        # labels are laid out on screen: again (debounced) when the view changes
        self._relayout = QTimer(self)
        self._relayout.setSingleShot(True)
        self._relayout.setInterval(40)
        self._relayout.timeout.connect(self._layout_labels)
        cam = compat.camera(self.viewer).events
        dims = self.viewer.dims.events
        for ev in (cam.zoom, cam.angles, cam.center, dims.ndisplay, dims.current_step):
            ev.connect(lambda *_: self._relayout.start())
        self.viewer.dims.events.ndisplay.connect(lambda *_: self._outline_style())

    # -- inputs -----------------------------------------------------------------------------------
    def read_iron_per_cell(self):
        """:class:`~mpi_viewer.calibration.cells.IronPerCell` from the spin boxes (InputError when invalid)."""
        from mpi_viewer.calibration.cells import IronPerCell

        return IronPerCell(float(self.mean_w.value), float(self.sd_w.value))

    def set_iron_per_cell(self, mean_pg: float, sd_pg: float = 0.0) -> None:
        self.mean_w.value = float(mean_pg)
        self.sd_w.value = float(sd_pg)
        self.source_choice.value = FROM_IPC

    def from_cell_calibration(self) -> bool:
        """Whether cells come from a cell-based calibration (not the iron per cell)."""
        return self.source_choice.value == FROM_CELL_CAL

    def set_from_cell_calibration(self, on: bool) -> None:
        self.source_choice.value = FROM_CELL_CAL if on else FROM_IPC

    def _on_source(self, *_) -> None:
        for w in (self.mean_w, self.sd_w):
            w.enabled = not self.from_cell_calibration()

    def state(self) -> dict:
        """Iron per cell (``IronPerCell.to_dict()`` keys, pg Fe/cell) or the cell-based choice."""
        return {
            "mean_pg": float(self.mean_w.value),
            "sd_pg": float(self.sd_w.value),
            "from_cells": self.from_cell_calibration(),
        }

    def restore(self, state: dict, *, block: bool = False):
        """Set the iron per cell of :meth:`state`; recompute cells and overlays when a
        calibration is there (errors: notifications). Returns the worker (or None)."""
        if self.set_state(state) and self.ctl.calibration is not None:
            out = self.compute(block=block)
            return None if block else out
        return None

    def set_state(self, state: dict) -> bool:
        """The widgets of :meth:`state`; False (a notification) if it is not valid."""
        try:
            self.set_iron_per_cell(float(state["mean_pg"]), float(state.get("sd_pg", 0.0)))
            self.set_from_cell_calibration(bool(state.get("from_cells")))
        except (KeyError, TypeError, ValueError) as exc:
            notify_error(exc, "iron per cell not restored")
            return False
        return True

    def inputs(self, roi_results=None, roi_params=None) -> dict:
        """What :meth:`compute` needs, read on the GUI thread (InputError when missing)."""
        cal = self.ctl.calibration
        if cal is None:
            raise InputError("no calibration: fit the phantoms or pick one in the Calibration dock")
        from_cells = self.from_cell_calibration()
        if from_cells and cal.kind != "cells":
            raise InputError(
                f"calibration {cal.name!r} is an iron calibration, not a cell-based one: "
                "enter the iron per cell instead"
            )
        ipc = None if from_cells else self.read_iron_per_cell()
        if roi_results is None:
            roi_results, roi_params = self.ctl.roi_results, self.ctl.roi_params
            if not roi_results and self.ctl.calibration_applied_to is not None:
                roi_results, roi_params = self.ctl.calibration_applied_to
        if not roi_results:
            raise InputError("no ROIs: click the sources in the MPI ROIs dock first")
        mpi = self.ctl.mpi
        if mpi is None:
            raise InputError("no MPI image layer: open an MPI image (or the demo) first")
        if roi_params is None:
            from mpi_viewer.roi.regions import ROIParams

            roi_params = ROIParams()
        transform = meta(mpi).get("transform_fixed_to_moving")
        anatomy = self.anatomy_layer(transform.get("fixed")) if transform else None
        return {
            "visible": dict(self.visible),  # the table's show boxes
            "inside_only": self.inside_check.isChecked(),
            "cal": cal,
            "ipc": ipc,
            "rois": list(roi_results),
            "params": roi_params,
            "volume": volume_from_layer(mpi),
            "mpi": mpi,
            "transform": transform if anatomy is not None else None,
            "anatomy": anatomy,
            "fixed": volume_from_layer(anatomy) if anatomy is not None else None,
        }

    # -- computing ----------------------------------------------------------------------------------
    def compute(self, roi_results=None, roi_params=None, *, block: bool = False):
        """Cells per ROI with intervals, then the overlays; keeps the previous results on error.

        The numbers and the overlay arrays are computed in a worker, then the layers are
        swapped in one per turn of the event loop (``block=True``: all here). Returns the
        results when ``block``, else the worker (``quit()`` cancels: nothing changes).
        """
        try:
            inp = self.inputs(roi_results, roi_params)
        except InputError as exc:
            notify_error(exc)
            return self.results if block else None
        except Exception as exc:  # noqa: BLE001 - never let an error reach Qt
            notify_error(exc, "computing cells")
            return self.results if block else None
        self.compute_btn.setEnabled(False)

        def work():
            return (yield from self.compute_steps(inp))

        self._worker = start_work(
            work,
            on_done=self._computed,
            block=block,
            determinate=False,
            desc="computing cells and overlays",
            hold=True,  # its warning shown after the overlays, not over their drawing
        )
        if self._worker is None:
            self.compute_btn.setEnabled(True)
        else:
            self._worker.finished.connect(self._enable_compute)
        return self.results if block else self._worker

    def _enable_compute(self) -> None:
        """Compute is clickable again (the dock may be gone when a worker ends)."""
        try:
            self.compute_btn.setEnabled(True)
        except RuntimeError:  # the Qt widget was deleted (viewer closed)
            pass

    def compute_steps(self, inp: dict):
        """The work of :meth:`compute` (a generator for :func:`start_work`, or to run inside
        another task, as a session's opening does): numbers and overlay arrays here, the
        layers as :class:`GuiStep` s. Returns (results, inputs, density threshold)."""
        res = quantify_rois(
            inp["cal"], inp["rois"], inp["params"], inp["volume"], iron_per_cell=inp["ipc"]
        )
        yield
        labels, density, threshold = overlay_arrays(
            inp["volume"], inp["cal"], inp["rois"], inp["params"], inp["ipc"],
            inp["transform"], inp["fixed"],
        )  # fmt: skip
        # only the part with something to show: napari's cost of a layer grows with it
        box = content_box((labels > 0) | (density > 0), margin=2)
        offset = np.array([sl.start for sl in box], dtype=float)
        disp = (labels[box].copy(), density[box].copy(), threshold, offset)
        # what the layers show (the boxes of the table as they are now), and the labels'
        # texts: the GUI thread only swaps them in
        key = frame_key(inp["rois"], res, inp.get("visible", {}), inp.get("inside_only", True))
        frame = (key, shown_arrays(disp[0], disp[1], key[0], key[1]))
        texts = label_texts_of(res)
        yield
        yield GuiStep(lambda: self._take(inp, res, disp, frame, texts))
        for draw in self.overlay_steps():
            yield GuiStep(lambda draw=draw: draw() if self.can_draw() else None)
        return res, inp, threshold

    def _take(self, inp: dict, res: list, disp: tuple, frame=None, texts=None) -> None:
        """The new numbers and display arrays (GUI thread), before the overlays are drawn."""
        self._labels_disp, self._density_disp, self._threshold_au, self._disp_offset = disp
        self._frame = frame  # what the layers show (remade if a box changed meanwhile)
        self._texts = (res, texts) if texts is not None else None
        self.results, self.iron_per_cell, self._calibration = res, inp["ipc"], inp["cal"]
        self.roi_results, self._roi_params = inp["rois"], inp["params"]
        self._volume, self._mpi_layer = inp["volume"], inp["mpi"]
        self._display_layer = inp["anatomy"] if inp["fixed"] is not None else inp["mpi"]
        self.visible = {r.name: self.visible.get(r.name, True) for r in res}
        self._fill_table()

    def _computed(self, out) -> None:
        res, inp, threshold = out
        ipc, cal = inp["ipc"], inp["cal"]
        ipc_text = (
            f"iron per cell {ipc.mean_pg:g}\u00a0±\u00a0{ipc.sd_pg:g}\u00a0pg\u00a0Fe/\u2060cell"  # one line
            if ipc is not None
            else "cells from the cell-based calibration"
        )
        self.info_label.setText(
            f"Calibration “{cal.name}” ({cal.kind}), {ipc_text}; density blank below "
            f"{fmt(threshold, 3)} a.u. (the ROI method's noise threshold)."
        )
        common, own = split_warnings([r.warnings for r in res])
        self.common_label.setText(warning_html(["all ROIs: " + w for w in common]))
        flagged = [r.name for r, w in zip(res, own, strict=True) if w]
        if flagged:
            notify_warning(f"See ⚠ in the cells table: {', '.join(flagged)}")
