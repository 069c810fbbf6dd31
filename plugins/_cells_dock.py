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

from pathlib import Path

import numpy as np
from mpi_viewer.plugins import _napari_compat as compat
from mpi_viewer.plugins._calibration_dock import (
    fill_table,
    find_dock,
    fmt,
    make_table,
    notify_error,
    notify_warning,
    quantify_rois,
    run_task,
    split_warnings,
    warning_html,
)
from mpi_viewer.plugins._layers import (
    find_layers,
    install_mm_units,
    meta,
    physical_to_world,
    volume_from_layer,
)
from qtpy.QtCore import Qt, QTimer
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

from mpi_viewer.defaults import IRON_PER_CELL_PG, IRON_PER_CELL_SD_PG
from mpi_viewer.errors import InputError
from mpi_viewer.report.overlays import content_box, overlay_arrays, place_labels, text_size_px

OUTLINE_LAYER = "ROI outlines"
LABEL_LAYER = "cell counts"
DENSITY_LAYER = "cell density (cells/mm³)"
_COLORBAR_NOTE = "colour bar: cells/mm³"
LEADER_LAYER = "cell count leaders"
#: Label text size (screen pixels) and outline width (anatomy pixels) at any zoom.
LABEL_FONT_PX = 13
OUTLINE_PX = 2


def density_colormap():
    """Blue → cyan → white, transparent at 0 (blank voxels show the anatomy)."""
    from napari.utils.colormaps import Colormap

    return Colormap(
        colors=[[0, 0, 0, 0], [0.15, 0.25, 0.95, 0.85], [0.0, 0.85, 1.0, 0.95], [1, 1, 1, 1]],
        controls=[0.0, 1e-3, 0.55, 1.0],
        name="cell density",
    )


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
        self.shown_texts: list[str] = []  # the label texts drawn (shortened when crowded)
        self._volume = None
        self._mpi_layer = None
        self._calibration = None
        self._threshold_au = None
        self._display_layer = None
        self._labels_disp = None
        self._density_disp = None
        self._worker = None

        lay = QVBoxLayout(self)
        self.setMinimumWidth(380)
        form = QFormLayout()
        self.ipc_radio = QRadioButton("iron per cell (ex vivo, e.g. ICP-MS):")
        self.ipc_radio.setChecked(True)
        self.cellcal_radio = QRadioButton("from a cell-based calibration")
        row = QHBoxLayout()
        self.mean_spin = QDoubleSpinBox()
        self.sd_spin = QDoubleSpinBox()
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
        cam = self.viewer.camera.events
        for ev in (cam.zoom, cam.angles, cam.center, self.viewer.dims.events.ndisplay):
            ev.connect(lambda *_: self._relayout.start())
        self.viewer.dims.events.ndisplay.connect(lambda *_: self._outline_style())

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
            labels, density, threshold = overlay_arrays(
                volume, cal, rois, params, ipc, transform if fixed is not None else None, fixed
            )
            # only the part with something to show: napari's cost of a layer grows with it
            box = content_box((labels > 0) | (density > 0), margin=2)
            offset = np.array([sl.start for sl in box], dtype=float)
            return res, (labels[box].copy(), density[box].copy(), threshold, offset)

        def done(out):
            res, (labels, density, threshold, offset) = out
            self._disp_offset = offset
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
            common, own = split_warnings([r.warnings for r in res])
            self.common_label.setText(warning_html(["all ROIs: " + w for w in common]))
            flagged = [r.name for r, w in zip(res, own, strict=True) if w]
            if flagged:
                notify_warning(f"warnings for ROI(s) {', '.join(flagged)}: see the cells table")

        self._worker = run_task(
            work, on_done=done, block=block, desc="computing cells and overlays"
        )
        return self.results if block else self._worker

    def _fill_table(self) -> None:
        rows = []
        _, own = split_warnings([r.warnings for r in self.results])
        for r, warns in zip(self.results, own, strict=True):
            rows.append(
                [
                    "",
                    r.name,
                    _count(r.cells),
                    _count(r.cells_ci_low),
                    _count(r.cells_ci_high),
                    fmt(r.iron_ug, 3),
                    "yes" if r.below_lod else "no",
                    "; ".join(warns),
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

    def _placement(self) -> dict:
        """scale, translate, affine of the overlay arrays: the display layer's grid, shifted
        to the box they were cut from (world = A·(s·(i + offset) + t))."""
        src = self._display_layer
        scale = np.asarray(src.scale, dtype=float)
        off = np.asarray(getattr(self, "_disp_offset", np.zeros(len(scale))), dtype=float)
        return {
            "scale": scale,
            "translate": np.asarray(src.translate, dtype=float) + scale * off,
            "affine": np.asarray(src.affine.affine_matrix, dtype=float),
        }

    def _place(self, layer) -> None:
        p = self._placement()
        if not np.allclose(layer.scale, p["scale"]):
            layer.scale = p["scale"]
        if not np.allclose(layer.translate, p["translate"]):
            layer.translate = p["translate"]
        if not np.allclose(layer.affine.affine_matrix, p["affine"]):
            layer.affine = p["affine"]

    def _draw_outlines(self) -> None:
        labels = self._labels_disp
        labels = np.where(np.isin(labels, self._visible_labels()), labels, 0).astype(np.uint16)
        layer = self._layer(OUTLINE_LAYER)
        if layer is None:
            from napari.utils.colormaps import DirectLabelColormap

            layer = self.viewer.add_labels(
                labels,
                name=OUTLINE_LAYER,
                opacity=1.0,
                blending="translucent",
                units=compat.mm_units(labels.ndim),
                colormap=DirectLabelColormap(color_dict={None: "yellow", 0: "transparent"}),
                **self._placement(),
            )
        else:
            layer.data = labels
            self._place(layer)
        layer.editable = False
        self._outline_style()
        layer.visible = self.outline_check.isChecked()

    def _outline_style(self) -> None:
        """2-D: a contour line; 3-D: a see-through surface (a contour of a volume drawn
        voxel by voxel is the yellow speckle of the old overlay)."""
        layer = self._layer(OUTLINE_LAYER)
        if layer is None:
            return
        if self.viewer.dims.ndisplay == 3:
            layer.contour = 0
            layer.rendering = "iso_categorical"
            layer.opacity = 0.45
        else:
            layer.contour = OUTLINE_PX
            layer.opacity = 1.0

    def _anchors(self) -> tuple[np.ndarray, np.ndarray]:
        """World positions (z, y, x) of each result's peak, and each ROI's radius (mm)."""
        peaks = np.array([r.peak_mm for r in self.roi_results], dtype=float).reshape(-1, 3)
        by_name = {r.name: i for i, r in enumerate(self.roi_results)}
        idx = [by_name[r.name] for r in self.results]
        world = physical_to_world(self._mpi_layer, peaks[idx]) if idx else np.empty((0, 3))
        radii = []
        for i in idx:
            vol = getattr(self.roi_results[i], "volume_mm3", None)
            vol = float(vol) if vol is not None and np.isfinite(vol) else 4.0
            radii.append(max((3.0 * vol / (4.0 * np.pi)) ** (1.0 / 3.0), 0.5))
        return np.asarray(world, dtype=float).reshape(-1, 3), np.asarray(radii, dtype=float)

    def _screen_frame(self):
        """(centre, right, down, zoom, (w, h)): world (z, y, x) → screen pixels of the view."""
        v = self.viewer
        zoom = float(v.camera.zoom) or 1.0
        w, h = compat.canvas_size_px(v)
        centre = np.zeros(3)
        cam = np.asarray(v.camera.center, dtype=float)
        displayed = list(v.dims.displayed)[-3:]
        for k, d in enumerate(displayed):
            centre[d] = cam[len(cam) - len(displayed) + k]
        if v.dims.ndisplay == 3:
            up = np.asarray(v.camera.up_direction, dtype=float)
            view = np.asarray(v.camera.view_direction, dtype=float)
            right = np.cross(up, view)
            right /= np.linalg.norm(right) or 1.0
            down = -up / (np.linalg.norm(up) or 1.0)
        else:
            right, down = np.zeros(3), np.zeros(3)
            right[displayed[-1]], down[displayed[-2]] = 1.0, 1.0
        return centre, right, down, zoom, (w, h)

    def label_layout(self):
        """Label positions (world), leader segments (world, (k, 2, 3)) and the placements
        on screen for the visible ROIs (:func:`mpi_viewer.report.overlays.place_labels`)."""
        anchors, radii = self._anchors()
        shown = [i for i, r in enumerate(self.results) if self.visible.get(r.name, True)]
        centre, right, down, zoom, (w, h) = self._screen_frame()
        rel = anchors - centre
        px = np.stack([rel @ right * zoom + w / 2, rel @ down * zoom + h / 2], axis=1)
        full = self.label_texts()
        # the whole label when the view has room for it, else without the interval, else
        # the name (a narrow canvas beside the docks); the table has every number
        for texts in (
            full,
            [t.split(" [", 1)[0] for t in full],
            [r.name for r in self.results],
        ):
            sizes = np.array([text_size_px(texts[i], LABEL_FONT_PX) for i in shown])
            places = place_labels(
                px[shown],
                sizes.reshape(-1, 2),
                np.maximum(radii[shown] * zoom, 4.0),
                (8, 8, w - 8, h - 8),  # a margin: the text estimate is not exact
            )
            if all(p.clear for p in places):
                break
        self.shown_texts = list(texts)
        pos = anchors.copy()
        leaders = []
        for i, p in zip(shown, places, strict=True):
            d = np.asarray(p.centre) - px[i]
            pos[i] = anchors[i] + (d[0] * right + d[1] * down) / zoom
            if p.leader is not None:
                (a0, a1), (b0, b1) = p.leader
                start = anchors[i] + ((a0 - px[i, 0]) * right + (a1 - px[i, 1]) * down) / zoom
                end = anchors[i] + ((b0 - px[i, 0]) * right + (b1 - px[i, 1]) * down) / zoom
                leaders.append([start, end - start])
        return pos, np.asarray(leaders, dtype=float).reshape(-1, 2, 3), places

    def _layout_labels(self) -> None:
        layer = self._layer(LABEL_LAYER)
        if layer is None or not self.results:
            return
        try:
            pos, leaders, _ = self.label_layout()
        except Exception:  # noqa: BLE001 - a view being torn down: nothing to lay out
            return
        layer.data = pos
        feats = layer.features
        feats["shown"] = self.shown_texts
        layer.features = feats
        layer.refresh_text()
        _, radii = self._anchors()
        layer.size = np.maximum(2.0 * radii, 1.0)  # seen (out of slice) across the ROI's depth
        layer.shown = np.array([self.visible.get(r.name, True) for r in self.results], bool)
        lead = self._layer(LEADER_LAYER)
        if lead is not None:
            lead.data = leaders
            lead.visible = layer.visible and len(leaders) > 0
        if self.viewer.dims.ndisplay == 3:
            compat.text_on_top(self.viewer, layer)

    def _draw_labels(self) -> None:
        import pandas as pd

        anchors, _ = self._anchors()
        feats = pd.DataFrame(
            {
                "label": self.label_texts(),
                "name": [r.name for r in self.results],
                "shown": self.label_texts(),
            }
        )
        layer = self._layer(LABEL_LAYER)
        if layer is None:
            import warnings

            with warnings.catch_warnings():
                # out_of_slice_display: deprecated in napari 0.9, still the way to see a
                # label ±2 mm around its peak
                warnings.simplefilter("ignore", FutureWarning)
                layer = self.viewer.add_points(
                    anchors,
                    ndim=3,
                    name=LABEL_LAYER,
                    features=feats,
                    size=1.0,
                    symbol="disc",
                    units=compat.mm_units(3),
                    face_color="transparent",
                    border_color="transparent",
                    out_of_slice_display=True,
                    blending="translucent_no_depth",  # labels drawn over the 3-D rendering
                    text={
                        "string": "{shown}",
                        "size": LABEL_FONT_PX * 0.75,  # points: LABEL_FONT_PX on screen
                        "color": "white",
                        "anchor": "center",
                    },
                )
                self.viewer.add_vectors(
                    np.zeros((0, 2, 3)),
                    name=LEADER_LAYER,
                    edge_width=0.25,
                    edge_color="white",
                    vector_style="line",
                    units=compat.mm_units(3),
                    out_of_slice_display=True,
                    blending="translucent_no_depth",
                )
        else:
            layer.features = feats
        meta(layer)["anchors_zyx_mm"] = anchors.tolist()  # the ROI peaks the labels belong to
        layer.refresh_text()
        layer.visible = self.label_check.isChecked()
        self._layout_labels()

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
                units=compat.mm_units(dens.ndim),
                colormap=density_colormap(),
                contrast_limits=(0.0, top),
                blending="translucent",
                opacity=0.8,
                **self._placement(),
            )
            meta(layer).update({"units": "cells/mm3", "modality": "density"})
        else:
            layer.data = dens
            layer.contrast_limits = (0.0, top)
            self._place(layer)
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
        """The report folder (:func:`mpi_viewer.report.write_report`), written off the GUI
        thread; the live window is not touched.

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
            inputs = {
                lyr_role: (meta(lyr).get("source") or lyr.name)
                for lyr_role, lyr in (("MPI", mpi_layer), ("anatomy", anatomy_layer))
                if lyr is not None
            }
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
            roi_labels=None,
            calibration=self._calibration,
            inputs=inputs,
            overwrite=overwrite,
            iron_per_cell=self.iron_per_cell,
        )
        volume, roi_results = self._volume, list(self.roi_results)

        def work():
            # all of it off the GUI thread: the report draws its own slices (anatomy, MPI
            # through the registration, ROI outlines, labels), nothing is taken from the
            # live window
            from mpi_viewer.roi.regions import rois_to_label_image

            kwargs["roi_labels"] = rois_to_label_image(volume, roi_results)
            return report.write_report(folder, **kwargs)

        def done(out):
            self.last_report = out
            self.info_label.setText(f"Report written to {out} (open index.html).")

        result = run_task(work, on_done=done, block=block, desc="writing the report")
        return getattr(self, "last_report", None) if block else result


def _count(v) -> str:
    """A cell count for a table: ``393 005`` (empty when not reported)."""
    if v is None or not np.isfinite(v):
        return fmt(v)
    return f"{v:,.0f}".replace(",", "\u2009")
