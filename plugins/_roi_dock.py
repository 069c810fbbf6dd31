"""MPI ROIs dock: click near a hot spot, get its ROI and signal statistics.

Thin: reads the study's MPI layer from the viewer's controller (:mod:`._controller`;
only MPI images are offered, and replacing the MPI asks before discarding ROIs), calls
:func:`mpi_viewer.roi.measure` on the seeds, writes a Labels layer on the MPI grid
(same placement as the MPI layer, so it follows the registration over the MRI) and a
table with units. Clicks are in world coordinates (the MPI's own or, once
registered, the MRI's): :func:`world_to_physical` turns them into the MPI's mm.

"Click hot spots" is a mode (:class:`._canvas_clicks.ClickMode`): every plain click
adds an ROI, in 2-D and 3-D (the brightest MPI voxel under the cursor), until the
user leaves it. ROIs are named in the table, deleted, and undone with Ctrl+Z.

The ROI definitions and results are published to the controller
(``StudyController.rois`` / ``roi_results``); ``ROIDock.results`` and
``ROIDock.params`` stay for the docks that still read them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mpi_viewer.plugins._canvas_clicks import ClickMode
from mpi_viewer.plugins._controller import MPI, ROIDefinition, get_controller
from mpi_viewer.plugins._layers import (
    copy_placement,
    find_layers,
    install_mm_units,
    volume_from_layer,
)
from mpi_viewer.plugins._roi_manual import MANUAL, PAINT_LAYER, SHAPES_LAYER, ManualROIsMixin
from mpi_viewer.plugins._roi_seeds import SEED_LAYER, SeedEditsMixin  # noqa: F401 - re-exported
from napari.utils import notifications
from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence, QShortcut
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer.errors import InputError
from mpi_viewer.io import tables as res
from mpi_viewer.roi.regions import (
    METHODS,
    ROIParams,
    measure,
    rois_to_label_image,
    write_masks_nifti,
)

LABELS_LAYER = "MPI ROIs"

#: Table columns: (row key, header with unit). Volume/area and total depend on 2-D/3-D.
_COLUMNS = (
    ("name", "ROI"),
    ("TOTAL", ""),
    ("SIZE", ""),
    ("peak_au", "peak (a.u.)"),
    ("mean_au", "mean (a.u.)"),
    ("snr", "SNR"),
    ("fwhm_x_mm", "FWHM x (mm)"),
    ("fwhm_y_mm", "FWHM y (mm)"),
    ("fwhm_z_mm", "FWHM z (mm)"),
    ("flags", "flags"),
)

_METHOD_TEXT = {
    "halfmax": "half maximum (Sehl 2020)",
    "nsd": "n × noise SD (Ureña Horno 2025)",
    "kmeans": "k-means classes (Hayat 2021)",
}


def _spin(lo, hi, value, decimals=2, step=0.1, suffix="", special=None) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setSingleStep(step)
    s.setValue(value)
    if suffix:
        s.setSuffix(suffix)
    if special:
        s.setSpecialValueText(special)
    return s


class ROIDock(SeedEditsMixin, ManualROIsMixin, QWidget):
    """Quantification ROIs: one click, one ROI, on the native MPI grid."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        install_mm_units(self.viewer)  # world = physical mm, for every layer
        self.ctl = get_controller(napari_viewer)
        self.clicks = ClickMode(napari_viewer, self._on_canvas_click, lambda: self.mpi_layer)
        self._queue: list[tuple[float, ...]] = []  # clicked seeds waiting to be measured
        self._worker = None  # the measurement running off the GUI thread
        self._history: list[tuple[list, list]] = []  # (seeds, names) before each edit
        self.results: list = []
        self.params = ROIParams()
        self._seeds_mm: list[tuple[float, ...]] = []
        self._names: list[str] = []
        self._counter = 0
        self._seed_layer = None
        self._labels_layer = None
        self._syncing = False
        self._filling = False  # the table is being filled: no rename
        self._manual: list = []  # manual ROI results (polygons / painted labels), after the seeded ones
        self._manual_layer = None
        self._manual_names: dict[int, str] = {}  # painted label → ROI name (restored sessions)
        self._gone_layer: str | None = None  # the MPI layer the ROIs were made on, since removed

        self.layer_combo = QComboBox()
        self.method = QComboBox()
        for m in METHODS:
            self.method.addItem(_METHOD_TEXT[m], m)
        self.method.addItem("manual (polygons in 2-D, painting in 3-D)", MANUAL)
        from mpi_viewer.defaults import HALFMAX_FRACTION, N_SD

        self.fraction = _spin(0.05, 0.95, HALFMAX_FRACTION, 2, 0.05, " of peak")
        self.n_sd = _spin(0.5, 100, N_SD, 1, 0.5, " × SD")
        self.noise_sd = _spin(0.0, 1e9, 0.0, 4, 0.1, " a.u.", special="automatic")
        self.background = QComboBox()
        self.background.setToolTip(
            "A Labels layer painted on the MPI grid over background only: "
            "the noise SD is the SD of its voxels (Ureña Horno 2025)"
        )
        self.radius = _spin(0.1, 100, 3.0, 1, 0.5, " mm")
        self.sat_btn = QPushButton("Saturation curve CSV…")
        self.sat_btn.setToolTip(
            "Receiver response (measured,true signal), applied before any statistic "
            "(Ureña Horno 2025)"
        )
        self.sat_btn.clicked.connect(self._saturation_dialog)
        self.split = QCheckBox("split nearby sources (subtract neighbours' PSF)")
        self.split.setChecked(True)
        self.status = QLabel("Press 'Click hot spots', then click each hot spot.")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("MPI layer", self.layer_combo)
        form.addRow("method", self.method)
        form.addRow("half-max fraction", self.fraction)
        form.addRow("n·SD threshold", self.n_sd)
        form.addRow("noise SD", self.noise_sd)
        form.addRow("noise from background", self.background)
        form.addRow("search radius", self.radius)
        form.addRow("receiver saturation", self.sat_btn)
        form.addRow(self.split)

        self.click_btn = QPushButton("Click hot spots", checkable=True)
        self.click_btn.setToolTip(
            "While pressed, each click on a hot spot (2-D or 3-D, MPI or registered view) "
            "makes an ROI; press again to stop"
        )
        self.click_btn.toggled.connect(self._on_click_toggled)
        self.undo_btn = QPushButton("Undo", toolTip="Undo the last ROI edit (Ctrl+Z)")
        self.undo_btn.clicked.connect(self.undo)
        QShortcut(QKeySequence.StandardKey.Undo, self, activated=self.undo)
        self.remove_btn = QPushButton("Remove selected")
        self.remove_btn.clicked.connect(self.remove_selected)
        self.clear_btn = QPushButton("Clear")
        self.clear_btn.clicked.connect(self.clear)
        self.manual_btn = QPushButton("Measure painted")
        self.manual_btn.setToolTip(
            f"Measure every label painted in '{PAINT_LAYER}' (3-D) or every polygon "
            f"of '{SHAPES_LAYER}' (2-D) as a manual ROI"
        )
        self.manual_btn.clicked.connect(lambda: self._guarded(self.measure_manual))
        row1 = QHBoxLayout()
        for b in (self.click_btn, self.undo_btn, self.remove_btn, self.clear_btn, self.manual_btn):
            row1.addWidget(b)

        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setEditTriggers(
            QAbstractItemView.DoubleClicked | QAbstractItemView.EditKeyPressed
        )
        self.table.setToolTip("Double-click an ROI's name to rename it")
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.setMinimumHeight(160)
        self._set_headers(3)

        self.csv_btn = QPushButton("Export CSV…")
        self.csv_btn.clicked.connect(self._export_csv_dialog)
        self.masks_btn = QPushButton("Save masks (NIfTI)…")
        self.masks_btn.clicked.connect(self._save_masks_dialog)
        row2 = QHBoxLayout()
        row2.addWidget(self.csv_btn)
        row2.addWidget(self.masks_btn)

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(row1)
        lay.addWidget(self.table)
        lay.addLayout(row2)
        lay.addWidget(self.status)

        for w in (self.fraction, self.n_sd, self.noise_sd, self.radius):
            w.valueChanged.connect(self._on_params_changed)
        self.method.currentIndexChanged.connect(self._on_params_changed)
        self.split.toggled.connect(self._on_params_changed)
        self.background.currentIndexChanged.connect(self._on_params_changed)
        self.layer_combo.activated.connect(self._on_layer_chosen)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.ctl.events.roles.connect(self._refresh_layers)
        self.ctl.events.mpi.connect(self._on_mpi_changed)
        self.ctl.events.registration.connect(self._follow_mpi)
        self.viewer.bind_key("Control-z", lambda _viewer: self.undo(), overwrite=True)
        self._refresh_layers()
        self._update_enabled()

    # -- layers -------------------------------------------------------------------------------
    @property
    def mpi_layer(self):
        """The study's MPI layer (the controller's), None if there is none."""
        return self.ctl.mpi

    def _refresh_layers(self, event=None) -> None:
        bg = self.background.currentText()
        bg_names = ["(automatic estimate)"] + [
            lyr.name
            for lyr in find_layers(self.viewer, kind="labels")
            if lyr.name not in (LABELS_LAYER, PAINT_LAYER)
        ]
        if bg_names != [self.background.itemText(i) for i in range(self.background.count())]:
            self.background.blockSignals(True)
            self.background.clear()
            self.background.addItems(bg_names)
            if bg in bg_names:
                self.background.setCurrentText(bg)
            self.background.blockSignals(False)
        mpis = self.ctl.layers(MPI)  # only MPI images: never the anatomy
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems([lyr.name for lyr in mpis])
        self.layer_combo.setCurrentIndex(
            next((i for i, lyr in enumerate(mpis) if lyr is self.ctl.mpi), -1)
        )
        self.layer_combo.blockSignals(False)

    def _on_layer_chosen(self, index: int) -> None:
        """The user picked another MPI: the controller asks before discarding the ROIs."""
        name = self.layer_combo.itemText(index)
        layer = next((lyr for lyr in self.ctl.layers(MPI) if lyr.name == name), None)
        if layer is not None:
            self.ctl.set_mpi(layer)
        self._refresh_layers()

    def _on_mpi_changed(self, layer) -> None:
        self._refresh_layers()
        if layer is None:  # the MPI layer was removed: the ROIs stay, without a layer shown
            if self._seeds_mm or self._manual:
                self._gone_layer = self._gone_layer or (
                    self._labels_layer.metadata.get("mpi_viewer", {}).get("grid_of")
                    if self._labels_layer is not None
                    else None
                )
            return
        if not self.ctl.rois and (self._seeds_mm or self._manual):
            self.clear()  # the controller discarded them (the user said yes)
        self._gone_layer = None

    def _follow_mpi(self, registration=None) -> None:
        """Keep the ROI labels drawn where the MPI is drawn (after a registration)."""
        mpi, labels = self.mpi_layer, self._labels_layer
        if mpi is not None and labels is not None and labels in self.viewer.layers:
            copy_placement(mpi, labels)

    def _volume(self):
        layer = self.mpi_layer
        if layer is None:
            raise InputError("no MPI image layer: open an MPI image (or the demo) first")
        return volume_from_layer(layer)

    def recompute(self) -> None:
        """Measure every seed again (after a parameter or layer change)."""
        if not self._seeds_mm:
            self._set_results([])
            return
        try:
            out = measure(
                self._volume(), self._seeds_mm, self.params, names=self._names, on_error="skip"
            )
        except InputError as exc:
            notifications.show_error(str(exc))
            return
        for _, msg in out.errors:
            notifications.show_warning(msg)
        bad = {i for i, _ in out.errors}
        self._seeds_mm = [s for i, s in enumerate(self._seeds_mm) if i not in bad]
        self._names = [n for i, n in enumerate(self._names) if i not in bad]
        self._set_results(list(out))
        self._sync_points()

    # -- parameters ----------------------------------------------------------------------------
    def _background_mask(self):
        name = self.background.currentText()
        if self.background.currentIndex() <= 0 or name not in self.viewer.layers:
            return None
        mask = np.asarray(self.viewer.layers[name].data) > 0
        vol = self._volume()
        if mask.shape != tuple(vol.shape):
            raise InputError(
                f"background layer {name!r} of shape {mask.shape} is not on the MPI grid "
                f"{tuple(vol.shape)}: paint it on a Labels layer made from the MPI"
            )
        if not mask.any():
            raise InputError(f"background layer {name!r} is empty: paint some background voxels")
        return mask

    def _on_params_changed(self, *_):
        try:
            method = self.method.currentData()
            if method == MANUAL:  # seeds keep growing with the last automatic method
                method = self.params.method
                self._ensure_manual_layer()
            self.params = ROIParams(
                method=method,
                fraction=self.fraction.value(),
                n_sd=self.n_sd.value(),
                noise_sd=self.noise_sd.value() or None,
                split_sources=self.split.isChecked(),
                search_radius_mm=self.radius.value(),
                saturation_curve=self.params.saturation_curve,
                background_mask=self._background_mask(),
            )
        except InputError as exc:
            notifications.show_error(str(exc))
            return
        self._update_enabled()
        if self._seeds_mm:
            self.recompute()
        if self._manual:
            self._guarded(self.measure_manual)

    def _update_enabled(self) -> None:
        m = self.method.currentData()
        self.fraction.setEnabled(m == "halfmax")
        self.n_sd.setEnabled(m in ("nsd", "kmeans"))
        self.manual_btn.setEnabled(m == MANUAL or self._manual_layer is not None)

    # -- results -------------------------------------------------------------------------------
    def _set_headers(self, ndim: int) -> None:
        u = "mm³" if ndim == 3 else "mm²"
        heads = []
        for key, head in _COLUMNS:
            if key == "SIZE":
                head = f"{'volume' if ndim == 3 else 'area'} ({u})"
            elif key == "TOTAL":
                head = f"total signal (a.u.·{u})"
            heads.append(head)
        if ndim == 2:
            heads = [h for (k, _), h in zip(_COLUMNS, heads, strict=True) if k != "fwhm_z_mm"]
        self.table.setColumnCount(len(heads))
        self.table.setHorizontalHeaderLabels(heads)

    def _set_results(self, results: list) -> None:
        seeded = [r for r in results if r.method != MANUAL]
        for k, r in enumerate(
            self._manual
        ):  # manual ROIs follow the seeded ones in the table and labels
            r.label = len(seeded) + k + 1
        results = seeded + list(self._manual)
        self.results = results
        self.ctl.set_rois(
            [ROIDefinition(n, tuple(s)) for n, s in zip(self._names, self._seeds_mm, strict=False)],
            results,
        )
        self._filling = True
        ndim = results[0].ndim if results else 3
        self._set_headers(ndim)
        keys = [k for k, _ in _COLUMNS if not (ndim == 2 and k == "fwhm_z_mm")]
        self.table.setRowCount(len(results))
        for i, r in enumerate(results):
            row = r.to_row()
            for j, k in enumerate(keys):
                if k == "SIZE":
                    v = r.size
                elif k == "TOTAL":
                    v = r.total_signal
                else:
                    v = row.get(k, "")
                item = QTableWidgetItem(
                    res.format_value(v) if not isinstance(v, float) else f"{v:.4g}"
                )
                if r.warnings:
                    item.setToolTip(" ".join(r.warnings))
                if j != 0 or r.method == MANUAL:
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(i, j, item)
        self._filling = False
        self._update_labels()
        if results:
            self.status.setText(
                f"{len(results)} ROI(s), method {self.params.method}, noise SD "
                f"{results[0].noise_sd:.3g} a.u."
            )

    def _update_labels(self) -> None:
        layer = self.mpi_layer
        if layer is None:
            return
        vol = volume_from_layer(layer)
        lab = rois_to_label_image(vol, self.results)
        if self._labels_layer is None or self._labels_layer not in self.viewer.layers:
            if not self.results:
                return
            active = self.viewer.layers.selection.active
            self._labels_layer = self.viewer.add_labels(
                lab, name=LABELS_LAYER, opacity=0.5, units=("mm",) * lab.ndim
            )
            self._labels_layer.bind_key("Control-z", lambda _layer: self.undo(), overwrite=True)
            if active is not None:  # the new layer must not take the user's active layer
                self.viewer.layers.selection.active = active
            self._labels_layer.metadata["mpi_viewer"] = {
                "modality": "MPI ROIs",
                "grid_of": layer.name,
            }
        else:
            self._labels_layer.data = lab
        copy_placement(layer, self._labels_layer)

    def load_saturation_curve(self, path) -> None:
        """Correct the MPI for receiver saturation with a measured curve (None: no correction)."""
        from mpi_viewer.roi._saturation import SaturationCurve

        curve = SaturationCurve.from_csv(path) if path else None
        self.params = ROIParams.from_dict({**self.params.to_dict(), "saturation_curve": None})
        self.params.saturation_curve = curve
        self.params.background_mask = self._background_mask()
        self.sat_btn.setText(f"Saturation: {Path(path).name}" if path else "Saturation curve CSV…")
        if self._seeds_mm:
            self.recompute()

    def _saturation_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Receiver saturation curve", "", "CSV (*.csv)")
        if path:
            self._guarded(self.load_saturation_curve, path)

    # -- session -------------------------------------------------------------------------------
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
        """Set the widgets from :meth:`state` and measure the seeds again (errors: notifications)."""
        try:
            params = ROIParams.from_dict(state.get("params"))
        except (InputError, TypeError, ValueError) as exc:
            notifications.show_error(f"ROI parameters not restored: {exc}")
            return
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
        if self._seeds_mm and self.mpi_layer is not None:
            self._ensure_seed_layer()
        self._manual, self._manual_names, self._gone_layer = [], {}, None
        self.recompute()
        manual = state.get("manual")
        if manual is not None and self.mpi_layer is not None:
            self._guarded(self._restore_manual, manual)

    # -- export --------------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        return res.rows_from_results(self.results)

    def export_csv(self, path) -> None:
        if not self.results:
            raise InputError("no ROIs to export: click the hot spots first")
        res.write_csv(path, self.rows())

    def save_masks(self, path) -> None:
        if not self.results:
            raise InputError("no ROIs to save: click the hot spots first")
        write_masks_nifti(path, self._volume(), self.results)

    def _export_csv_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export ROI table", "rois.csv", "CSV (*.csv)")
        if path:
            self._guarded(self.export_csv, path, done=f"wrote {path}")

    def _save_masks_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save ROI masks", "rois.nii.gz", "NIfTI (*.nii.gz *.nii)"
        )
        if path:
            self._guarded(self.save_masks, path, done=f"wrote {path}")

    def _guarded(self, fn, *args, done: str = "") -> None:
        try:
            fn(*args)
        except (InputError, OSError) as exc:
            notifications.show_error(str(exc))
            return
        if done:
            notifications.show_info(done)
