"""MPI ROIs dock: click near a hot spot, get its ROI and signal statistics.

Thin: reads the MPI layer (:func:`volume_from_layer`), calls
:func:`mpi_viewer.roi.measure` on the seeds, writes a Labels layer on the MPI grid
(same placement as the MPI layer, so it follows the registration over the MRI) and a
table with units. Clicks are in world coordinates (the MPI's own or, once
registered, the MRI's): :func:`world_to_physical` turns them into the MPI's mm.

``ROIDock.results`` (list of ROIResult) and ``ROIDock.params`` (ROIParams) are what
the calibration dock reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mpi_viewer.plugins._layers import (
    copy_placement,
    find_layers,
    install_mm_units,
    physical_to_world,
    volume_from_layer,
    world_to_physical,
)
from napari.utils import notifications
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
    measure_label_image,
    measure_mask,
    polygon_to_mask,
    rois_to_label_image,
    write_masks_nifti,
)

SEED_LAYER = "ROI seeds"
LABELS_LAYER = "MPI ROIs"
#: Manual ROIs: polygons drawn on a 2-D MPI image, labels painted on a 3-D one (MPI grid).
SHAPES_LAYER = "manual ROIs (draw polygons)"
PAINT_LAYER = "manual ROIs (paint)"
MANUAL = "manual"

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


class ROIDock(QWidget):
    """Quantification ROIs: one click, one ROI, on the native MPI grid."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        install_mm_units(self.viewer)  # world = physical mm, for every layer
        self.results: list = []
        self.params = ROIParams()
        self._seeds_mm: list[tuple[float, ...]] = []
        self._names: list[str] = []
        self._counter = 0
        self._seed_layer = None
        self._labels_layer = None
        self._syncing = False
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
        self.status = QLabel("Pick the MPI layer, then click near each hot spot.")
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

        self.click_btn = QPushButton("Click seeds")
        self.click_btn.setToolTip(
            "Add points to the 'ROI seeds' layer: each click near a hot spot makes an ROI"
        )
        self.click_btn.clicked.connect(self.start_clicking)
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
        for b in (self.click_btn, self.remove_btn, self.clear_btn, self.manual_btn):
            row1.addWidget(b)

        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
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
        self.layer_combo.currentIndexChanged.connect(self._on_layer_changed)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        self._update_enabled()

    # -- layers -------------------------------------------------------------------------------
    @property
    def mpi_layer(self):
        name = self.layer_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

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
        current = self.layer_combo.currentText()
        mpi = [lyr.name for lyr in find_layers(self.viewer, "MPI")]
        others = [lyr.name for lyr in find_layers(self.viewer) if lyr.name not in mpi]
        names = mpi + others
        if current and current not in names and (self._seeds_mm or self._manual):
            self._gone_layer = current  # the ROIs stay, but no longer belong to a layer shown
        if names == [self.layer_combo.itemText(i) for i in range(self.layer_combo.count())]:
            return
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in mpi or (current in names and not mpi):
            self.layer_combo.setCurrentText(current)
        # a dock opened before the data picked whatever came first (often the MRI):
        # once an MPI layer exists, it is the one to quantify unless ROIs already belong elsewhere
        elif current in names and (self._seeds_mm or self._manual):
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        if self.layer_combo.currentText() != current:
            self._on_layer_changed()

    def _on_layer_changed(self, *_):
        if self._seeds_mm:
            self.clear()
        self._gone_layer = None

    def _volume(self):
        layer = self.mpi_layer
        if layer is None:
            raise InputError("no MPI image layer: open an MPI image (or the demo) first")
        return volume_from_layer(layer)

    def _ensure_seed_layer(self):
        if self._seed_layer is not None and self._seed_layer in self.viewer.layers:
            return self._seed_layer
        ndim = self.viewer.dims.ndim
        layer = self.viewer.add_points(
            np.empty((0, ndim)),
            ndim=ndim,
            name=SEED_LAYER,
            size=1.5,
            face_color="cyan",
            border_color="white",
        )
        layer.events.data.connect(self._on_points_changed)
        self._seed_layer = layer
        return layer

    def start_clicking(self) -> None:
        """Select the seed layer in add mode: each click in the canvas makes an ROI."""
        try:
            self._volume()
        except InputError as exc:
            notifications.show_error(str(exc))
            return
        layer = self._ensure_seed_layer()
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self.status.setText("Click near each hot spot (in the MPI or the MRI view).")

    def _on_points_changed(self, event=None) -> None:
        if self._syncing:
            return
        action = str(getattr(event, "action", "") or "")
        if action.endswith("ing"):  # "adding"/"removing": wait for "added"/"removed"
            return
        layer = self._seed_layer
        n_have = len(self._seeds_mm)
        data = np.asarray(layer.data)
        if len(data) > n_have:  # clicks added points (world coordinates)
            for p in data[n_have:]:
                self.add_seed_world(p, _from_layer=True)
        elif len(data) < n_have:  # points deleted in the layer
            world_now = {tuple(np.round(p, 6)) for p in data}
            keep = [
                i for i, s in enumerate(self._seeds_world()) if tuple(np.round(s, 6)) in world_now
            ]
            self._seeds_mm = [self._seeds_mm[i] for i in keep]
            self._names = [self._names[i] for i in keep]
            self.recompute()

    # -- seeds ---------------------------------------------------------------------------------
    def add_seed_world(self, world_zyx, *, _from_layer: bool = False):
        """Add an ROI from a click in world coordinates (z, y, x); returns its result or None."""
        try:
            layer = self.mpi_layer
            if layer is None:
                raise InputError("no MPI image layer: open an MPI image (or the demo) first")
            xyz = tuple(
                float(v) for v in world_to_physical(layer, np.asarray(world_zyx)[-layer.ndim :])[0]
            )
        except InputError as exc:
            notifications.show_error(str(exc))
            self._sync_points()
            return None
        return self.add_seed_mm(xyz, _from_layer=_from_layer)

    def add_seed_mm(self, xyz_mm, *, name: str | None = None, _from_layer: bool = False):
        """Add an ROI from a seed in the MPI's physical mm (x, y, z); returns its result or None."""
        name = name or f"roi_{self._counter + 1}"
        seeds = [*self._seeds_mm, tuple(float(v) for v in xyz_mm)]
        names = [*self._names, name]
        try:
            out = measure(self._volume(), seeds, self.params, names=names, on_error="skip")
        except InputError as exc:
            notifications.show_error(str(exc))
            self._sync_points()
            return None
        bad = {i for i, _ in out.errors}
        for _, msg in out.errors:
            notifications.show_error(msg)
        self._seeds_mm = [s for i, s in enumerate(seeds) if i not in bad]
        self._names = [n for i, n in enumerate(names) if i not in bad]
        self._set_results(list(out))
        self._sync_points()
        if (len(seeds) - 1) in bad:
            return None
        self._counter += 1
        return self.results[-1]

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

    def remove_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        if any(r >= len(self._seeds_mm) for r in rows):
            notifications.show_warning(
                "manual ROIs: delete the polygon or erase the paint in the manual ROIs "
                "layer, then measure again"
            )
            rows = [r for r in rows if r < len(self._seeds_mm)]
        for r in rows:
            del self._seeds_mm[r]
            del self._names[r]
        self.recompute()

    def clear(self) -> None:
        self._seeds_mm, self._names = [], []
        self._manual = []
        self._gone_layer = None
        self._set_results([])
        self._sync_points()

    def _seeds_world(self) -> list:
        layer = self.mpi_layer
        if layer is None or not self._seeds_mm:
            return []
        w = physical_to_world(layer, np.asarray(self._seeds_mm))
        nd = self.viewer.dims.ndim
        if w.shape[1] < nd:
            w = np.hstack([np.zeros((len(w), nd - w.shape[1])), w])
        return list(w)

    def _sync_points(self) -> None:
        """The seed layer shows exactly the accepted seeds."""
        if self._seed_layer is None or self._seed_layer not in self.viewer.layers:
            return
        self._syncing = True
        try:
            w = self._seeds_world()
            self._seed_layer.data = np.asarray(w) if w else np.empty((0, self._seed_layer.ndim))
        finally:
            self._syncing = False

    # -- manual ROIs ---------------------------------------------------------------------------
    def _ensure_manual_layer(self, *, paint: bool = False):
        """The layer the user draws (2-D: Shapes) or paints (3-D, or ``paint``: Labels)
        manual ROIs in, placed like the MPI layer (its data coordinates are the MPI's
        voxel indices)."""
        layer = self._manual_layer
        if (
            layer is not None
            and layer in self.viewer.layers
            and (not paint or type(layer).__name__ == "Labels")
        ):
            return layer
        mpi = self.mpi_layer
        if mpi is None:
            raise InputError("no MPI image layer: open an MPI image (or the demo) first")
        vol = volume_from_layer(mpi)
        if vol.ndim == 2 and not paint:
            layer = self.viewer.add_shapes(
                ndim=2,
                name=SHAPES_LAYER,
                shape_type="polygon",
                edge_color="yellow",
                face_color="transparent",
                edge_width=0.5,
            )
            layer.events.data.connect(self._on_shapes_changed)
        else:
            layer = self.viewer.add_labels(
                np.zeros(vol.shape, dtype=np.uint16), name=PAINT_LAYER, opacity=0.5
            )
            layer.metadata["mpi_viewer"] = {"modality": "manual ROIs", "grid_of": mpi.name}
        copy_placement(mpi, layer)
        self._manual_layer = layer
        self.manual_btn.setEnabled(True)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_polygon" if type(layer).__name__ == "Shapes" else "paint"
        return layer

    def _on_shapes_changed(self, event=None) -> None:
        if str(getattr(event, "action", "") or "").endswith("ing"):
            return
        self._guarded(self.measure_manual)

    def measure_manual(self) -> list:
        """Measure the manual ROIs: each polygon of the Shapes layer (2-D image) or each
        label painted in the paint layer (3-D image) with :func:`mpi_viewer.roi.measure_mask`
        / :func:`mpi_viewer.roi.measure_label_image`; rows follow the seeded ROIs."""
        layer = self._manual_layer
        if layer is None or layer not in self.viewer.layers:
            raise InputError(
                "no manual ROIs: choose the method 'manual', then draw (2-D) or paint (3-D)"
            )
        vol = self._volume()
        if type(layer).__name__ == "Shapes":
            out = []
            for i, (poly, kind) in enumerate(zip(layer.data, layer.shape_type, strict=True)):
                if kind not in ("polygon", "rectangle") or len(poly) < 3:  # closed outlines only
                    continue
                xyz = vol.index_to_physical(np.asarray(poly)[:, -vol.ndim :])
                try:
                    out.append(
                        measure_mask(
                            vol, polygon_to_mask(vol, xyz), self.params, name=f"manual_{i + 1}"
                        )
                    )
                except InputError as exc:  # one bad polygon: a message, the others kept
                    notifications.show_error(f"polygon {i + 1}: {exc}")
        else:
            data = np.asarray(layer.data)
            out = (
                measure_label_image(vol, data, self.params, names=self._manual_names)
                if data.any()
                else []
            )
        self._manual = list(out)
        self._set_results([r for r in self.results if r.method != MANUAL])
        return self._manual

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
                self.table.setItem(i, j, item)
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
            self._labels_layer = self.viewer.add_labels(lab, name=LABELS_LAYER, opacity=0.5)
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

    def _manual_state(self) -> dict | None:
        if not self._manual:
            return None
        names = [r.name for r in self._manual]
        layer = self._manual_layer
        if layer is not None and layer in self.viewer.layers and type(layer).__name__ == "Labels":
            data = np.asarray(layer.data)
            if np.unique(data[data > 0]).size == len(
                self._manual
            ):  # as measured: keep the painted values
                return {"labels": data.copy(), "names": names}
        if (
            self.mpi_layer is None or self._gone_layer
        ):  # the MPI layer is gone: no grid to draw them on
            return None
        lab = np.zeros(tuple(self._volume().shape), dtype=np.uint16)
        for k, r in enumerate(self._manual):  # polygons (or a removed paint layer): labels 1…n
            sub = lab[r.mask.slices]
            sub[r.mask.array & (sub == 0)] = k + 1
        return {"labels": lab, "names": names}

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
            if state.get("layer"):
                self.layer_combo.setCurrentText(state["layer"])
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

    def _restore_manual(self, manual: dict) -> None:
        """The manual ROIs of a session: its label image in the paint layer (a Labels
        layer on the MPI grid, 2-D images too), measured with their names."""
        labels = np.asarray(manual["labels"])
        shape = tuple(self._volume().shape)
        if labels.shape != shape:
            raise InputError(f"manual ROIs of shape {labels.shape} are not on the MPI grid {shape}")
        values = [int(v) for v in np.unique(labels[labels > 0])]
        names = [str(n) for n in manual.get("names") or []]
        self._manual_names = (
            dict(zip(values, names, strict=True)) if len(names) == len(values) else {}
        )
        layer = self._ensure_manual_layer(paint=True)
        layer.data = labels
        self.measure_manual()

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
