"""Cells and report dock: cell number per ROI, overlays on the anatomy, the study report.

Cell number = iron measured in vivo / iron per cell measured ex vivo (Sehl et al.,
Tomography 6:315, 2020, doi:10.18383/j.tom.2020.00043), or directly from a cell-based
calibration (Ureña Horno et al., Nanoscale 17:24060, 2025, doi:10.1039/d5nr02393a).
The numbers come from :func:`mpi_viewer.calibration.apply_calibration` (through the
Calibration dock's :meth:`~mpi_viewer.plugins._calibration_dock.CalibrationDock.quantify`);
this dock only shows them:

- a table per ROI (cells, 95 % interval, below the detection limit, warnings) with a
  show/hide box per ROI;
- overlays drawn in the anatomical space through the registration: ROI outlines (a
  Labels layer on the MPI grid, ``contour=1``, placed like the MPI layer), text labels
  such as "2.4 × 10⁵ cells [1.9–2.9 × 10⁵]" at each ROI's peak, and a cell-density
  layer (cells/mm³) with a colour bar, blank below the detection threshold;
- "Report…": :func:`mpi_viewer.report.write_report` plus napari screenshots of a
  slice through each ROI and of a 3-D view (folder ``napari/`` of the report).

Public attributes: :attr:`CellsDock.results` (list of
:class:`~mpi_viewer.calibration.QuantityResult` with cells), :attr:`CellsDock.iron_per_cell`.
"""

from __future__ import annotations

import html
import shutil
import tempfile
from pathlib import Path

import numpy as np
from mpi_viewer.plugins._calibration_dock import (
    fill_table,
    find_dock,
    fmt,
    make_table,
    notify_error,
    notify_warning,
    quantify_rois,
    run_task,
)
from mpi_viewer.plugins._layers import (
    copy_placement,
    find_layers,
    install_mm_units,
    meta,
    physical_to_world,
    volume_from_layer,
)
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer.errors import InputError

OUTLINE_LAYER = "ROI outlines"
LABEL_LAYER = "cell counts"
DENSITY_LAYER = "cell density (cells/mm³)"
_COLORBAR_NOTE = "colour bar: cells/mm³"
#: Smallest window (width, height in pixels) while screenshots are taken, and the 3-D
#: camera (a side view, the body across).
SHOT_WINDOW_PX = (1800, 1100)
VIEW_3D_ANGLES = (90.0, -30.0, 0.0)


def density_colormap():
    """Blue → cyan → white, transparent at 0 (blank voxels show the anatomy)."""
    from napari.utils.colormaps import Colormap

    return Colormap(
        colors=[[0, 0, 0, 0], [0.15, 0.25, 0.95, 0.85], [0.0, 0.85, 1.0, 0.95], [1, 1, 1, 1]],
        controls=[0.0, 1e-3, 0.55, 1.0],
        name="cell density",
    )


def cell_density(
    signal_au, *, slope, kind: str, pg_per_cell: float | None, threshold_au: float
) -> np.ndarray:
    """Cells per mm³ of each voxel of a calibrated MPI image (0 below ``threshold_au``).

    A voxel of signal ``s`` (a.u.) and volume ``v`` (mm³) contributes ``s·v`` a.u.·mm³
    of total signal, i.e. ``s·v/slope`` µg Fe (iron calibration, slope in a.u.·mm³/µg)
    or cells (cell calibration); per mm³ that is ``s/slope``, then divided by the iron
    per cell (``pg_per_cell`` × 10⁻⁶ µg) for an iron calibration. The calibration's
    intercept belongs to a whole ROI's total signal, not to a voxel, and is not spread
    over voxels: the density integrated over an ROI is its ``(signal)/slope``.

    Parameters
    ----------
    signal_au : ndarray
        MPI signal (a.u.) on its native grid.
    slope : float
        Calibration slope (a.u.·mm³ per µg Fe, or per cell).
    kind : {"iron", "cells"}
    pg_per_cell : float or None
        Mean iron per cell (pg Fe/cell); needed for an iron calibration.
    threshold_au : float
        Voxels below it (the ROI method's noise threshold: the detection limit) are 0.

    Returns
    -------
    ndarray of float32
        cells/mm³.
    """
    per_mm3 = np.asarray(signal_au, dtype=np.float32) / np.float32(slope)
    if kind == "iron":
        per_mm3 = per_mm3 / np.float32(pg_per_cell * 1e-6)
    per_mm3[~(np.asarray(signal_au) >= threshold_au)] = 0.0
    return per_mm3


class CellsDock(QWidget):
    """Cells per ROI, overlays on the anatomy and the report (see the module docstring)."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        install_mm_units(self.viewer)  # world = physical mm, for every layer
        self.results: list = []
        self.iron_per_cell = None
        self.roi_results: list = []
        self.visible: dict[str, bool] = {}
        self._volume = None
        self._mpi_layer = None
        self._calibration = None
        self._threshold_au = None
        self._display_layer = None
        self._labels_disp = None
        self._density_disp = None
        self._worker = None

        lay = QVBoxLayout(self)
        self.setMinimumWidth(440)
        form = QFormLayout()
        self.ipc_radio = QRadioButton("iron per cell (ex vivo, e.g. ICP-MS):")
        self.ipc_radio.setChecked(True)
        self.cellcal_radio = QRadioButton("from a cell-based calibration")
        row = QHBoxLayout()
        self.mean_spin = QDoubleSpinBox()
        self.sd_spin = QDoubleSpinBox()
        from mpi_viewer.defaults import IRON_PER_CELL_PG, IRON_PER_CELL_SD_PG

        for s, v in ((self.mean_spin, IRON_PER_CELL_PG), (self.sd_spin, IRON_PER_CELL_SD_PG)):
            s.setRange(-1000.0, 100000.0)  # validation (and its message) is IronPerCell's
            s.setDecimals(2)
            s.setSingleStep(0.5)
            s.setValue(v)
            s.setSuffix(" pg Fe/cell")
        row.addWidget(self.mean_spin)
        row.addWidget(QLabel("±"))
        row.addWidget(self.sd_spin)
        form.addRow(self.ipc_radio)
        form.addRow("mean ± SD:", row)
        form.addRow(self.cellcal_radio)
        lay.addLayout(form)
        self.compute_btn = QPushButton("Compute cells and overlays")
        lay.addWidget(self.compute_btn)
        self.table = make_table(170)
        lay.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.outline_check = QCheckBox("outlines")
        self.label_check = QCheckBox("labels")
        self.density_check = QCheckBox("cell density")
        self.inside_check = QCheckBox("density inside ROIs only")
        for c in (self.outline_check, self.label_check, self.density_check, self.inside_check):
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

    # -- inputs -----------------------------------------------------------------------------------
    def calibration_dock(self):
        return find_dock(self.viewer, "calibration", "iron_results", "quantify")

    def read_iron_per_cell(self):
        """:class:`~mpi_viewer.calibration.cells.IronPerCell` from the spin boxes (InputError when invalid)."""
        from mpi_viewer.calibration.cells import IronPerCell

        return IronPerCell(self.mean_spin.value(), self.sd_spin.value())

    def set_iron_per_cell(self, mean_pg: float, sd_pg: float = 0.0) -> None:
        self.mean_spin.setValue(float(mean_pg))
        self.sd_spin.setValue(float(sd_pg))
        self.ipc_radio.setChecked(True)

    def state(self) -> dict:
        """Iron per cell (``IronPerCell.to_dict()`` keys, pg Fe/cell) or the cell-based choice."""
        return {
            "mean_pg": self.mean_spin.value(),
            "sd_pg": self.sd_spin.value(),
            "from_cells": self.cellcal_radio.isChecked(),
        }

    def restore(self, state: dict, *, block: bool = False) -> None:
        """Set the iron per cell of :meth:`state`; recompute cells and overlays when a
        calibration is there (errors: notifications)."""
        try:
            self.set_iron_per_cell(float(state["mean_pg"]), float(state.get("sd_pg", 0.0)))
            self.cellcal_radio.setChecked(bool(state.get("from_cells")))
        except (KeyError, TypeError, ValueError) as exc:
            notify_error(exc, "iron per cell not restored")
            return
        cal_dock = self.calibration_dock()
        if cal_dock is not None and cal_dock.calibration is not None:
            self.compute(block=block)

    # -- computing ----------------------------------------------------------------------------------
    def compute(self, roi_results=None, roi_params=None, *, block: bool = False):
        """Cells per ROI with intervals, then the overlays; keeps the previous results on error.

        The numbers and the display grids are computed off the GUI thread (``block=True``:
        here). Returns the results when ``block``, else the worker.
        """
        try:
            cal_dock = self.calibration_dock()
            if cal_dock is None:
                raise InputError(
                    "the Calibration dock is not open: open it and fit or pick a calibration"
                )
            cal = cal_dock.calibration
            if cal is None:
                raise InputError(
                    "no calibration: fit the phantoms or pick one in the Calibration dock"
                )
            from_cells = self.cellcal_radio.isChecked()
            if from_cells and cal.kind != "cells":
                raise InputError(
                    f"calibration {cal.name!r} is an iron calibration, not a cell-based one: "
                    "enter the iron per cell instead"
                )
            ipc = None if from_cells else self.read_iron_per_cell()
            if roi_results is None:
                dock = cal_dock.roi_dock()
                if (
                    not (dock is not None and getattr(dock, "results", None))
                    and cal_dock.applied_to is not None
                ):
                    roi_results, roi_params = cal_dock.applied_to[0], cal_dock.applied_to[1]
            rois, params, volume = cal_dock.roi_inputs(roi_results, roi_params)
            mpi_layer = cal_dock.mpi_layer
            transform = meta(mpi_layer).get("transform_fixed_to_moving")
            anatomy = (
                self.anatomy_layer(transform.get("fixed") if transform else None)
                if transform
                else None
            )
            fixed = volume_from_layer(anatomy) if anatomy is not None else None
        except InputError as exc:
            notify_error(exc)
            return self.results if block else None
        except Exception as exc:  # noqa: BLE001 - never let an error reach Qt
            notify_error(exc, "computing cells")
            return self.results if block else None

        def work():
            res = quantify_rois(cal, rois, params, volume, iron_per_cell=ipc)
            disp = display_arrays(
                volume, cal, rois, params, ipc, transform if fixed is not None else None, fixed
            )
            return res, disp

        def done(out):
            res, (labels, density, threshold) = out
            self.results, self.iron_per_cell, self._calibration = res, ipc, cal
            self.roi_results, self._roi_params, self._volume, self._mpi_layer = (
                rois,
                params,
                volume,
                mpi_layer,
            )
            self._labels_disp, self._density_disp, self._threshold_au = labels, density, threshold
            self._display_layer = anatomy if fixed is not None else mpi_layer
            self.visible = {r.name: self.visible.get(r.name, True) for r in res}
            self._fill_table()
            self.update_overlays()
            ipc_text = (
                f"iron per cell {ipc.mean_pg:g} ± {ipc.sd_pg:g} pg Fe/cell"
                if ipc is not None
                else "cells from the cell-based calibration"
            )
            self.info_label.setText(
                f"Calibration {cal.name} ({cal.kind}), {ipc_text}; density blank below "
                f"{fmt(threshold, 3)} a.u. (the ROI method's noise threshold)."
            )
            flagged = [r.name for r in res if r.warnings]
            if flagged:
                notify_warning(f"warnings for ROI(s) {', '.join(flagged)}: see the cells table")

        self._worker = run_task(
            work, on_done=done, block=block, desc="computing cells and overlays"
        )
        return self.results if block else self._worker

    def _fill_table(self) -> None:
        rows = []
        for r in self.results:
            rows.append(
                [
                    "",
                    r.name,
                    _count(r.cells),
                    _count(r.cells_ci_low),
                    _count(r.cells_ci_high),
                    fmt(r.iron_ug, 3),
                    "yes" if r.below_lod else "no",
                    "; ".join(r.warnings),
                ]
            )
        fill_table(
            self.table,
            [
                "show",
                "ROI",
                "cells",
                "95 % CI low\n(cells)",
                "95 % CI high\n(cells)",
                "iron\n(µg Fe)",
                "below\nLOD",
                "warnings",
            ],
            rows,
            warn_col=7,
        )
        self.table.blockSignals(True)
        for i, r in enumerate(self.results):
            item = QTableWidgetItem()
            item.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled)
            item.setCheckState(Qt.Checked if self.visible.get(r.name, True) else Qt.Unchecked)
            self.table.setItem(i, 0, item)
        self.table.blockSignals(False)

    def _on_item_changed(self, item) -> None:
        if item.column() != 0 or item.row() >= len(self.results):
            return
        self.set_visible(self.results[item.row()].name, item.checkState() == Qt.Checked)

    def set_visible(self, name: str, visible: bool) -> None:
        """Show or hide one ROI's outline, label and density."""
        self.visible[name] = bool(visible)
        row = next((i for i, r in enumerate(self.results) if r.name == name), None)
        if row is not None and self.table.item(row, 0) is not None:
            self.table.blockSignals(True)
            self.table.item(row, 0).setCheckState(Qt.Checked if visible else Qt.Unchecked)
            self.table.blockSignals(False)
        self.update_overlays()

    # -- overlays -----------------------------------------------------------------------------------
    def label_texts(self) -> list[str]:
        """The text of each ROI's label, e.g. ``isolated: 4.0 × 10⁵ cells [3.6–4.4 × 10⁵]``."""
        from mpi_viewer.report.study_report import roi_label_text

        return [roi_label_text({"name": r.name, **r.columns()}) for r in self.results]

    def _layer(self, name):
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def update_overlays(self) -> None:
        """(Re)draw outlines, labels and density for the visible ROIs."""
        if (
            not self.results
            or self._labels_disp is None
            or self._display_layer not in self.viewer.layers
        ):
            return
        try:
            self._draw_density()  # first: below the outlines and labels
            self._draw_outlines()
            self._draw_labels()
        except Exception as exc:  # noqa: BLE001 - never let an error reach Qt
            notify_error(exc, "drawing the overlays")

    def _visible_labels(self) -> np.ndarray:
        shown = {r.name for r in self.results if self.visible.get(r.name, True)}
        return np.array([r.label for r in self.roi_results if r.name in shown], dtype=np.uint16)

    def _draw_outlines(self) -> None:
        labels = self._labels_disp
        labels = np.where(np.isin(labels, self._visible_labels()), labels, 0).astype(np.uint16)
        layer = self._layer(OUTLINE_LAYER)
        if layer is None:
            from napari.utils.colormaps import DirectLabelColormap

            layer = self.viewer.add_labels(
                labels, name=OUTLINE_LAYER, opacity=1.0, blending="translucent"
            )
            layer.colormap = DirectLabelColormap(color_dict={None: "yellow", 0: "transparent"})
            layer.contour = 1
        else:
            layer.data = labels
        copy_placement(self._display_layer, layer)
        layer.visible = self.outline_check.isChecked()

    def _draw_labels(self) -> None:
        import pandas as pd

        peaks = np.array([r.peak_mm for r in self.roi_results], dtype=float).reshape(-1, 3)
        by_name = {r.name: i for i, r in enumerate(self.roi_results)}
        idx = [by_name[r.name] for r in self.results]
        world = physical_to_world(self._mpi_layer, peaks[idx]) if idx else np.empty((0, 3))
        feats = pd.DataFrame({"label": self.label_texts(), "name": [r.name for r in self.results]})
        shown = np.array([self.visible.get(r.name, True) for r in self.results], dtype=bool)
        layer = self._layer(LABEL_LAYER)
        if layer is None:
            import warnings

            with (
                warnings.catch_warnings()
            ):  # out_of_slice_display: deprecated in napari 0.9, still the
                warnings.simplefilter(
                    "ignore", FutureWarning
                )  # way to see a label ±2 mm around its peak
                layer = self.viewer.add_points(
                    world,
                    ndim=3,
                    name=LABEL_LAYER,
                    features=feats,
                    size=2.5,
                    symbol="disc",
                    units=("mm",) * 3,
                    face_color="transparent",
                    border_color="transparent",
                    out_of_slice_display=True,
                    blending="translucent_no_depth",  # labels drawn over the 3-D rendering, never cut
                    text={
                        "string": "{label}",
                        "size": 12,
                        "color": "white",
                        "anchor": "center",
                        "translation": [0.0, -3.2, 0.0],
                    },
                )
        else:
            layer.data = world
            layer.features = feats
        layer.shown = shown
        layer.refresh_text()
        layer.visible = self.label_check.isChecked()

    def _draw_density(self) -> None:
        dens = self._density_disp
        if self.inside_check.isChecked():
            dens = np.where(
                np.isin(self._labels_disp, self._visible_labels()), dens, np.float32(0.0)
            )
        top = float(np.nanmax(dens)) if dens.size and np.nanmax(dens) > 0 else 1.0
        layer = self._layer(DENSITY_LAYER)
        if layer is None:
            layer = self.viewer.add_image(
                dens,
                name=DENSITY_LAYER,
                colormap=density_colormap(),
                contrast_limits=(0.0, top),
                blending="translucent",
                opacity=0.8,
            )
            meta(layer).update({"units": "cells/mm3", "modality": "density"})
        else:
            layer.data = dens
            layer.contrast_limits = (0.0, top)
        copy_placement(self._display_layer, layer)
        layer.colorbar.visible = True
        layer.visible = self.density_check.isChecked()
        overlay = self.viewer.text_overlay
        if (
            not overlay.text or overlay.text == _COLORBAR_NOTE
        ):  # the colour bar's unit, if the overlay is free
            overlay.text = _COLORBAR_NOTE
            overlay.position = "top_right"
            overlay.font_size = 10
            overlay.visible = layer.visible

    # -- report -------------------------------------------------------------------------------------
    def _choose_report_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Report folder (new or empty)")
        if not folder:
            return
        p = Path(folder)
        overwrite = False
        if p.is_dir() and any(p.iterdir()):
            answer = QMessageBox.question(
                self,
                "Replace the folder?",
                f"{p} is not empty. Replace its contents with the report?",
                QMessageBox.Yes | QMessageBox.No,
                QMessageBox.No,
            )
            if answer != QMessageBox.Yes:
                return
            overwrite = True
        self.write_report(p, overwrite=overwrite)

    def anatomy_layer(self, preferred: str | None = None):
        """The anatomical layer: ``preferred`` (the registration's fixed image) when present."""
        if preferred and preferred in self.viewer.layers:
            return self.viewer.layers[preferred]
        for modality in ("MRI", "CT"):
            layers = [
                lyr for lyr in find_layers(self.viewer, modality) if lyr.visible
            ] or find_layers(self.viewer, modality)
            if layers:
                return layers[0]
        return None

    def write_report(self, folder, *, overwrite: bool = False, block: bool = False):
        """Screenshots (here, on the GUI thread), then the report files (off it).

        Refuses a non-empty folder unless ``overwrite``. Returns the worker, or the
        report path when ``block``.
        """
        from mpi_viewer.io.tables import rows_from_results
        from mpi_viewer.report import study_report as report

        folder = Path(folder)
        try:
            if not self.results:
                raise InputError("no results: compute the cells first")
            if folder.exists() and not folder.is_dir():
                raise InputError(f"{folder}: exists and is not a folder")
            if folder.is_dir() and any(folder.iterdir()) and not overwrite:
                raise InputError(
                    f"{folder}: report folder exists and is not empty (choose another folder "
                    "or confirm replacing it)"
                )
            rows = rows_from_results(self.roi_results)
            by_name = {r.name: r for r in self.results}
            for row in rows:
                q = by_name.get(row["name"])
                if q is not None:
                    row.update(q.columns())
            transform = meta(self._mpi_layer).get("transform_fixed_to_moving")
            anatomy_layer = self.anatomy_layer(transform.get("fixed") if transform else None)
            anatomy = volume_from_layer(anatomy_layer) if anatomy_layer is not None else None
            mpi_layer = self._mpi_layer
            from mpi_viewer.roi.regions import rois_to_label_image

            labels = rois_to_label_image(self._volume, self.roi_results)
            inputs = {
                lyr_role: (meta(lyr).get("source") or lyr.name)
                for lyr_role, lyr in (("MPI", mpi_layer), ("anatomy", anatomy_layer))
                if lyr is not None
            }
            shots_dir = Path(tempfile.mkdtemp(prefix="mpi_viewer_shots_"))
            shots = self.take_screenshots(shots_dir)
        except InputError as exc:
            notify_error(exc)
            return None
        except Exception as exc:  # noqa: BLE001
            notify_error(exc, "preparing the report")
            return None
        kwargs = dict(
            results_rows=rows,
            mpi=self._volume,
            anatomy=anatomy,
            transform=(transform["matrix"], transform["translation"]) if transform else None,
            roi_labels=labels,
            calibration=self._calibration,
            inputs=inputs,
            overwrite=overwrite,
            iron_per_cell=self.iron_per_cell,
        )

        def work():
            try:
                out = report.write_report(folder, **kwargs)
                add_screenshots(out, shots)
            finally:
                shutil.rmtree(shots_dir, ignore_errors=True)
            return out

        def done(out):
            self.last_report = out
            self.info_label.setText(f"Report written to {out} (open index.html).")

        result = run_task(work, on_done=done, block=block, desc="writing the report")
        return getattr(self, "last_report", None) if block else result

    def take_screenshots(self, folder: Path) -> list[tuple[str, Path]]:
        """napari screenshots with the overlays: a slice through each visible ROI's peak, a 3-D view.

        The viewer's dims, camera and display mode are restored afterwards.
        """
        v = self.viewer
        state = (
            v.dims.ndisplay,
            tuple(v.dims.point),
            v.camera.center,
            v.camera.zoom,
            v.camera.angles,
        )
        out: list[tuple[str, Path]] = []
        labels = self._layer(LABEL_LAYER)
        mixed: list = []
        hidden = [
            lyr
            for lyr in v.layers
            if lyr.visible and type(lyr).__name__ == "Points" and lyr is not labels
        ]
        for lyr in hidden:  # phantom and landmark markers would crowd the pictures
            lyr.visible = False
        qwin = getattr(v.window, "_qt_window", None)  # a canvas large enough beside the docks
        old_size = qwin.size() if qwin is not None else None
        if qwin is not None:
            from qtpy.QtWidgets import QApplication

            qwin.resize(
                max(old_size.width(), SHOT_WINDOW_PX[0]), max(old_size.height(), SHOT_WINDOW_PX[1])
            )
            QApplication.processEvents()
        try:
            v.dims.ndisplay = 2
            v.reset_view()
            zoom0 = v.camera.zoom
            # napari draws a 2-D slice of a layer whose affine mixes the sliced axis in (the
            # registered MPI) displaced; the density layer shows the MPI correctly placed
            mixed = [lyr for lyr in v.layers if lyr.visible and _mixes_sliced_axis(lyr)]
            for lyr in mixed:
                lyr.visible = False
            for i, r in enumerate(self.results):
                if not self.visible.get(r.name, True) or labels is None:
                    continue
                z, y, x = np.asarray(labels.data[i], dtype=float)
                v.dims.set_point(0, z)
                v.camera.center = (z, y, x)
                v.camera.zoom = zoom0 * 2.2
                p = folder / f"napari_slice_{_slug(r.name)}.png"
                v.screenshot(str(p), canvas_only=True, flash=False)
                out.append((f"{r.name}: slice through the peak (napari, anatomy with overlays)", p))
            for lyr in mixed:
                lyr.visible = True
            mixed = []
            v.dims.ndisplay = 3
            v.reset_view()
            v.camera.angles = VIEW_3D_ANGLES
            v.camera.zoom *= 1.15
            _labels_on_top(v, labels)
            p = folder / "napari_3d.png"
            v.screenshot(str(p), canvas_only=True, flash=False)
            out.append(("3-D view (napari, anatomy with overlays)", p))
        finally:
            for lyr in [*hidden, *mixed]:
                lyr.visible = True
            if qwin is not None:
                qwin.resize(old_size)
            v.dims.ndisplay = state[0]
            v.dims.point = state[1]
            v.camera.center, v.camera.zoom, v.camera.angles = state[2], state[3], state[4]
        return out


def display_arrays(volume, calibration, roi_results, roi_params, iron_per_cell, transform, fixed):
    """ROI labels, cell density (cells/mm³) and the density threshold (a.u.) for display.

    With a registration (``transform``, fixed → moving, and the ``fixed`` anatomy
    Volume), labels and density are resampled onto the anatomy's grid through it
    (labels nearest-neighbour, density linearly), to be placed like the anatomy layer:
    napari draws a 2-D slice of a layer whose affine mixes the sliced axis into the
    displayed ones (the registered MPI) without that mixing, i.e. displaced by up to a
    few mm, whereas the anatomy's own grid is drawn exactly. Display only: every number
    comes from the native MPI grid. Without a registration they stay on the MPI grid.
    """
    from mpi_viewer.roi.regions import estimate_noise_sd, rois_to_label_image

    noise = next((float(r.noise_sd) for r in roi_results if getattr(r, "noise_sd", None)), None)
    if noise is None:
        noise = estimate_noise_sd(volume)
    from mpi_viewer.defaults import N_SD

    threshold = float(getattr(roi_params, "n_sd", N_SD) or N_SD) * noise
    pg = iron_per_cell.mean_pg if iron_per_cell is not None else None
    density = cell_density(
        volume.array,
        slope=calibration.fit.slope,
        kind=calibration.kind,
        pg_per_cell=pg,
        threshold_au=threshold,
    )
    labels = rois_to_label_image(volume, roi_results)
    if transform is not None and fixed is not None:
        labels, density = _to_fixed_grid(volume, fixed, transform, labels, density)
    return labels, density, threshold


def _mixes_sliced_axis(layer) -> bool:
    """Whether the layer's affine mixes the first (sliced) world axis with the others."""
    a = np.asarray(layer.affine.affine_matrix)[:-1, :-1]
    return bool(np.any(np.abs(a[0, 1:]) > 1e-6) or np.any(np.abs(a[1:, 0]) > 1e-6))


def _labels_on_top(viewer, layer) -> None:
    """Draw a Points layer's text without the depth test, so a 3-D rendering in front of
    a label does not cut it (napari has no public switch; skipped if its internals change)."""
    try:
        visual = viewer.window._qt_viewer.canvas.layer_to_visual[layer]
        visual.node.text.set_gl_state(depth_test=False, blend=True)
    except Exception:  # noqa: BLE001 - cosmetic only
        pass


def _count(v) -> str:
    """A cell count for a table: ``393 005`` (empty when not reported)."""
    if v is None or not np.isfinite(v):
        return fmt(v)
    return f"{v:,.0f}".replace(",", "\u2009")


def _to_fixed_grid(mpi, fixed, transform, labels, density):
    """ROI labels (nearest neighbour) and density (linear) of the MPI grid on the fixed grid."""
    import SimpleITK as sitk

    from mpi_viewer.geometry.transform import matrix_to_sitk

    tx = matrix_to_sitk(
        np.asarray(transform["matrix"], dtype=float),
        np.asarray(transform["translation"], dtype=float),
    )
    out = []
    for arr, interp, pixel in (
        (labels, sitk.sitkNearestNeighbor, sitk.sitkUInt16),
        (density, sitk.sitkLinear, sitk.sitkFloat32),
    ):
        img = sitk.GetImageFromArray(arr)
        img.CopyInformation(mpi.image)
        out.append(sitk.GetArrayFromImage(sitk.Resample(img, fixed.image, tx, interp, 0, pixel)))
    return out[0], out[1]


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "roi"


def add_screenshots(report_folder, shots) -> None:
    """Copy screenshots into ``<report>/napari/`` and add them to its index.html."""
    report_folder = Path(report_folder)
    if not shots:
        return
    sub = report_folder / "napari"
    sub.mkdir(exist_ok=True)
    parts = ["<h2>napari views with the overlays</h2>"]
    for title, p in shots:
        dst = sub / Path(p).name
        shutil.copyfile(p, dst)
        parts.append(
            f"<h3>{html.escape(title)}</h3><img src='napari/{html.escape(dst.name)}' "
            f"alt='{html.escape(title)}'>"
        )
    index = report_folder / "index.html"
    if index.is_file():
        text = index.read_text(encoding="utf-8")
        block = "\n".join(parts)
        text = text.replace("</body>", block + "\n</body>") if "</body>" in text else text + block
        index.write_text(text, encoding="utf-8")
