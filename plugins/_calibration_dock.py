"""Calibration dock: phantoms → calibration line → iron (µg Fe) per ROI with intervals.

A thin widget over :mod:`mpi_viewer.calibration`:

- phantoms come from clicks on a Points layer ``phantoms`` (each click is a vial, the
  dock converts world → MPI physical mm), or from a CSV ``name,x,y,z,iron_ug`` (MPI mm);
  the user types or edits the amounts in the table;
- the phantoms are measured with *exactly* the ROI method and parameters of the
  "MPI ROIs" dock (Sehl et al. 2020, doi:10.18383/j.tom.2020.00043), defaults when
  that dock is absent (said in the dock);
- Fit: least squares, not through the origin by default, ordinary or relative
  weighting, or a single reference phantom; slope ± SE, intercept ± SE, R², a plot
  with the prediction band and residuals;
- a library of calibrations (a folder of JSON files): list, pick, save, import, export;
- "Apply to ROIs": iron with the classical calibration interval, the detection-limit
  flag and warnings for every ROI of the ROI dock (:func:`apply_calibration`).

Public attributes: :attr:`CalibrationDock.calibration` (a
:class:`~mpi_viewer.calibration.Calibration` or ``None``) and
:attr:`CalibrationDock.iron_results` (list of
:class:`~mpi_viewer.calibration.QuantityResult`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from mpi_viewer.plugins._layers import (
    find_layers,
    install_mm_units,
    meta,
    physical_to_world,
    volume_from_layer,
    world_to_physical,
)
from mpi_viewer.plugins._plot_canvas import PlotPanel
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer.errors import InputError

PHANTOM_LAYER = "phantoms"
_WARN_COLOUR = "#ffb000"


# -- small helpers shared with the cells dock ----------------------------------------------------
def notify_error(exc: BaseException, what: str = "") -> None:
    """A napari error notification of one line; never raises."""
    from napari.utils.notifications import show_error

    msg = (
        str(exc)
        if isinstance(exc, InputError)
        else f"{what + ': ' if what else ''}{type(exc).__name__}: {exc}"
    )
    show_error(" ".join(msg.split()))


def notify_warning(msg: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(msg)


def run_task(fn, *, on_done, block: bool = False, desc: str = "working…"):
    """Run ``fn()`` off the GUI thread with a napari progress bar; ``on_done(result)`` after.

    ``block=True`` runs it here (tests, scripts). Errors become notifications.
    Returns the worker (or ``None`` when blocking).
    """
    if block:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - the GUI shows every error as a notification
            notify_error(exc, desc)
            return None
        on_done(result)
        return None
    from napari.qt.threading import thread_worker

    worker = thread_worker(fn, progress={"total": 0, "desc": desc})()
    worker.returned.connect(on_done)
    worker.errored.connect(lambda exc: notify_error(exc, desc))
    worker.start()
    return worker


def warm_imports() -> None:
    """Import, off the GUI thread, what the first fit and plot need (scipy.stats,
    matplotlib's Qt canvas): seconds of the first click otherwise spent with the window
    frozen. Importing creates no widget."""
    import scipy.stats  # noqa: F401
    from matplotlib.backends import backend_qtagg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401


def fmt(v, digits: int = 4) -> str:
    """A number for a table cell (empty for None/NaN, ∞ kept)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return ""
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    return f"{f:.{digits}g}"


def fill_table(
    table: QTableWidget,
    headers,
    rows,
    *,
    editable=(),
    warn_col: int | None = None,
    warn_beside: int | None = None,
    name_col: int = 0,
) -> None:
    """Replace a table's contents; only columns in ``editable`` can be edited.

    ``warn_col``: the column of each row's warnings (``"; "``-joined). It is not shown
    as a column: the number in ``warn_beside`` (default: the name) gets a marker (⚠1)
    and the warnings in full as its tooltip, and each distinct warning is said once,
    in full, under the table (:mod:`mpi_viewer.plugins._warnings_view`).
    """
    from mpi_viewer.plugins._warnings_view import WARN_COLOUR, show_warnings, tooltip_html
    from qtpy.QtGui import QColor

    per_row, texts, beside = None, None, None
    if warn_col is not None:
        texts = [_warn_text(r[warn_col]) for r in rows]
        headers, rows, per_row, _, beside = show_warnings(
            table, list(headers), rows, warn_col,
            warn_beside if warn_beside is not None else name_col, name_col,
        )  # fmt: skip
    table.blockSignals(True)
    table.clear()
    table.setColumnCount(len(headers))
    table.setHorizontalHeaderLabels(list(headers))
    table.setRowCount(len(rows))
    for i, row in enumerate(rows):
        warn = per_row is not None and bool(per_row[i])
        for j, val in enumerate(row):
            item = QTableWidgetItem(val if isinstance(val, str) else fmt(val))
            if j not in editable:
                item.setFlags(item.flags() & ~Qt.ItemIsEditable)
            if warn and j in (beside, name_col):
                item.setForeground(QColor(WARN_COLOUR))
                item.setToolTip(tooltip_html(texts[i]))
            table.setItem(i, j, item)
    table.resizeColumnsToContents()
    table.blockSignals(False)


def _warn_text(value) -> str:
    return "; ".join(value) if isinstance(value, list | tuple) else str(value)


def split_warnings(warning_lists) -> tuple[list[str], list[list[str]]]:
    """Warnings every row shares (said once, beside the table) and each row's own.

    A calibration-level warning (e.g. a solution calibration applied to cells) is true of
    every ROI: repeating it on every row tints the whole table and hides the warnings
    that concern one number."""
    lists = [list(w or []) for w in warning_lists]
    if len(lists) < 2:
        return [], lists
    common = [w for w in lists[0] if all(w in other for other in lists[1:])]
    return common, [[w for w in ws if w not in common] for ws in lists]


def warning_html(warnings) -> str:
    """Warnings in full, one per line, amber (for a QLabel beside a table)."""
    import html as _html

    if not warnings:
        return ""
    return (
        f"<span style='color:{_WARN_COLOUR}'>"
        + "<br>".join(f"⚠ {_html.escape(w)}" for w in warnings)
        + "</span>"
    )


def make_table(min_height: int = 120) -> QTableWidget:
    t = QTableWidget(0, 0)
    t.setMinimumHeight(min_height)
    t.verticalHeader().setVisible(False)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
    t.horizontalHeader().setStretchLastSection(True)
    t.setSelectionBehavior(QAbstractItemView.SelectRows)
    return t


def find_dock(viewer, *attrs: str, class_name: str | None = None):
    """The first docked widget of the viewer having ``attrs`` (or of ``class_name``)."""
    try:
        widgets = list(viewer.window.dock_widgets.values())
    except Exception:  # noqa: BLE001 - a viewer without a window (headless)
        return None
    for w in widgets:
        w = getattr(w, "native", w)
        inner = w.widget() if isinstance(w, QScrollArea) else w
        if class_name is not None and type(inner).__name__ == class_name:
            return inner
        if class_name is None and all(hasattr(inner, a) for a in attrs):
            return inner
    return None


_ACQ_TEXT = (
    ("mode", "{} scan"),
    ("gradient_T_per_m", "gradient {:g} T/m"),
    ("drive_amplitude_mT", "drive {:g} mT"),
    ("drive_frequency_kHz", "{:g} kHz"),
    ("averages", "{} average(s)"),
    ("scanner", "scanner {}"),
)


def describe_acquisition(acq: dict) -> str:
    """``3D scan, gradient 5.7 T/m, drive 20 mT, 45 kHz, 1 average(s), scanner X``."""
    parts = [f.format(acq[k]) for k, f in _ACQ_TEXT if acq.get(k) is not None]
    return ", ".join(parts) if parts else "no acquisition metadata on the image"


def mpi_layers(viewer) -> list:
    return find_layers(viewer, "MPI", "image")


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


# -- the dock -----------------------------------------------------------------------------------
class CalibrationDock(QWidget):
    """Phantoms, fit, library and iron per ROI (see the module docstring)."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        install_mm_units(self.viewer)  # world = physical mm, for every layer
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
        top = QFormLayout()
        self.mpi_combo = QComboBox()
        top.addRow("MPI image:", self.mpi_combo)
        # asked up front: the tracer and where the phantoms' iron was (free particles in
        # solution, or inside labelled cells) decide which warnings the numbers carry
        self.tracer_edit = QLineEdit()
        self.tracer_edit.setPlaceholderText("e.g. VivoTrax, Synomag-D")
        top.addRow("Tracer:", self.tracer_edit)
        self.env_combo = QComboBox()
        self.env_combo.addItems(["solution", "cells"])
        self.env_combo.setToolTip(
            "Where the phantoms' iron was: free particles in solution, or inside labelled "
            "cells. A solution calibration applied to cells may under-estimate their iron "
            "(Ureña Horno et al. 2025): then the results say so once."
        )
        top.addRow("Phantoms in:", self.env_combo)
        outer.addLayout(top)
        self.tabs = QTabWidget()
        outer.addWidget(self.tabs)
        self.tabs.addTab(self._build_phantoms_tab(), "Phantoms")
        self.tabs.addTab(self._build_fit_tab(), "Fit")
        self.tabs.addTab(self._build_library_tab(), "Record and library")
        self.tabs.addTab(self._build_rois_tab(), "Iron per ROI")

        self.mpi_combo.currentIndexChanged.connect(self._on_mpi_changed)
        self.click_btn.clicked.connect(self.start_clicking)
        self.csv_btn.clicked.connect(self._choose_csv)
        self.clear_btn.clicked.connect(self.clear_phantoms)
        self.phantom_table.itemChanged.connect(self._on_table_edit)
        self.kind_combo.currentIndexChanged.connect(self._on_kind_changed)
        self.fit_btn.clicked.connect(lambda: self.fit())
        self.folder_btn.clicked.connect(self._choose_folder)
        self.folder_edit.editingFinished.connect(
            lambda: self.set_library_folder(self.folder_edit.text())
        )
        self.use_btn.clicked.connect(self._use_selected)
        self.save_btn.clicked.connect(self.save_to_library)
        self.import_btn.clicked.connect(self._choose_import)
        self.export_btn.clicked.connect(self._choose_export)
        self.apply_btn.clicked.connect(lambda: self.apply_to_rois())
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        self._refresh_phantom_table()

    # -- building the tabs --------------------------------------------------------------------
    def _build_phantoms_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        row = QHBoxLayout()
        self.click_btn = QPushButton("Click vials")
        self.click_btn.setToolTip("Adds a Points layer 'phantoms': click the centre of each vial")
        self.csv_btn = QPushButton("Load CSV…")
        self.csv_btn.setToolTip("CSV with header name,x,y,z,iron_ug (MPI physical mm, µg Fe)")
        self.clear_btn = QPushButton("Clear")
        for b in (self.click_btn, self.csv_btn, self.clear_btn):
            row.addWidget(b)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Phantoms hold:"))
        self.kind_combo = QComboBox()
        self.kind_combo.addItems(["iron (µg Fe)", "cells (cell-based calibration)"])
        row.addWidget(self.kind_combo, 1)
        lay.addLayout(row)
        lay.addWidget(QLabel("Positions in MPI mm; type the known amounts in the table."))
        self.phantom_table = make_table(220)
        lay.addWidget(self.phantom_table, 1)
        self.roi_label = QLabel()
        self.roi_label.setWordWrap(True)
        lay.addWidget(self.roi_label)
        return tab

    def _build_fit_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        fl = QFormLayout()
        self.origin_check = QCheckBox("force through the origin")
        fl.addRow(self.origin_check)
        self.weight_combo = QComboBox()
        self.weight_combo.addItems(["ordinary (OLS)", "relative (1/signal²)"])
        fl.addRow("Weighting:", self.weight_combo)
        self.single_check = QCheckBox("single reference:")
        self.reference_combo = QComboBox()
        fl.addRow(self.single_check, self.reference_combo)
        lay.addLayout(fl)
        self.fit_btn = QPushButton("Measure phantoms and fit")
        lay.addWidget(self.fit_btn)
        self.fit_label = QLabel("No calibration yet: signal = slope × amount + intercept.")
        self.fit_label.setWordWrap(True)
        self.fit_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.fit_label)
        self.plot = PlotPanel("The calibration plot appears here after a fit.", height_px=380)
        lay.addWidget(self.plot, 1)
        return tab

    def _build_library_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        box = QGroupBox("Calibration record")
        fl = QFormLayout(box)
        self.name_edit = QLineEdit("calibration")
        self.lot_edit = QLineEdit()
        self.prep_combo = QComboBox()
        self.prep_combo.addItems(["fixed_concentration", "fixed_volume"])
        self.acq_label = QLabel()
        self.acq_label.setWordWrap(True)
        fl.addRow("Name:", self.name_edit)
        fl.addRow("Tracer lot:", self.lot_edit)
        fl.addRow("Preparation:", self.prep_combo)
        fl.addRow("Scan:", self.acq_label)
        lay.addWidget(box)
        box = QGroupBox("Library (a folder of calibration JSON files)")
        bl = QVBoxLayout(box)
        row = QHBoxLayout()
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("choose a folder…")
        self.folder_btn = QPushButton("Folder…")
        row.addWidget(self.folder_edit, 1)
        row.addWidget(self.folder_btn)
        bl.addLayout(row)
        self.library_list = QListWidget()
        self.library_list.setMinimumHeight(90)
        bl.addWidget(self.library_list)
        row = QHBoxLayout()
        self.use_btn = QPushButton("Use selected")
        self.save_btn = QPushButton("Save current")
        self.import_btn = QPushButton("Import…")
        self.export_btn = QPushButton("Export…")
        for b in (self.use_btn, self.save_btn, self.import_btn, self.export_btn):
            row.addWidget(b)
        bl.addLayout(row)
        lay.addWidget(box, 1)
        return tab

    def _build_rois_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        self.apply_btn = QPushButton("Apply to ROIs")
        self.apply_btn.setToolTip(
            "Iron with its 95 % calibration interval for every ROI of the MPI ROIs dock"
        )
        lay.addWidget(self.apply_btn)
        self.iron_table = make_table(200)
        lay.addWidget(self.iron_table, 1)
        self.apply_label = QLabel()
        self.apply_label.setWordWrap(True)
        lay.addWidget(self.apply_label)
        return tab

    # -- layers ------------------------------------------------------------------------------
    @property
    def mpi_layer(self):
        name = self.mpi_combo.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _refresh_layers(self, event=None) -> None:
        current = self.mpi_combo.currentText()
        names = [lyr.name for lyr in mpi_layers(self.viewer)]
        self.mpi_combo.blockSignals(True)
        self.mpi_combo.clear()
        self.mpi_combo.addItems(names)
        if current in names:
            self.mpi_combo.setCurrentText(current)
        self.mpi_combo.blockSignals(False)
        if self._phantom_layer is not None and self._phantom_layer not in self.viewer.layers:
            self._phantom_layer = None
            self._refresh_phantom_table()
        if self.mpi_combo.currentText() != current:
            self._on_mpi_changed()
        self._show_roi_source()

    def _on_mpi_changed(self, *_) -> None:
        layer = self.mpi_layer
        acq = meta(layer).get("acquisition") or {} if layer is not None else {}
        if acq.get("tracer") and not self.tracer_edit.text():
            self.tracer_edit.setText(str(acq["tracer"]))
        if acq.get("tracer_lot") and not self.lot_edit.text():
            self.lot_edit.setText(str(acq["tracer_lot"]))
        self.acq_label.setText(describe_acquisition(acq))

    def _need_mpi(self):
        layer = self.mpi_layer
        if layer is None:
            raise InputError("no MPI image layer: open an MPI image (or the demo) first")
        return layer

    # -- ROI method of the ROI dock -------------------------------------------------------------
    def roi_dock(self):
        return find_dock(self.viewer, class_name="ROIDock") or find_dock(
            self.viewer, "results", "params"
        )

    def roi_params(self):
        """ROI parameters of the ROI dock, or the defaults when that dock is absent."""
        from mpi_viewer.roi.regions import ROIParams

        dock = self.roi_dock()
        params = getattr(dock, "params", None) if dock is not None else None
        return params if params is not None else ROIParams()

    def _show_roi_source(self) -> None:
        params = self.roi_params()
        where = (
            "from the MPI ROIs dock"
            if self.roi_dock() is not None
            else (
                "defaults: the MPI ROIs dock is not open, open it to measure phantoms and targets alike"
            )
        )
        detail = {
            "halfmax": f"fraction {params.fraction:g} of the peak",
            "nsd": f"{params.n_sd:g} × noise SD",
            "kmeans": f"{params.kmeans_clusters} classes",
        }.get(params.method, "")
        self.roi_label.setText(f"ROI method: {params.method} ({detail}), {where}.")

    # -- phantoms --------------------------------------------------------------------------------
    def _ensure_phantom_layer(self):
        if self._phantom_layer is not None and self._phantom_layer in self.viewer.layers:
            return self._phantom_layer
        import pandas as pd

        mpi = self._need_mpi()
        feats = pd.DataFrame(
            {
                "name": pd.Series([], dtype=object),
                "amount": pd.Series([], dtype=float),
                "x_mm": pd.Series([], dtype=float),
                "y_mm": pd.Series([], dtype=float),
                "z_mm": pd.Series([], dtype=float),
            }
        )
        layer = self.viewer.add_points(
            np.empty((0, mpi.ndim)),
            ndim=mpi.ndim,
            name=PHANTOM_LAYER,
            units=("mm",) * mpi.ndim,  # made in mm: no "Inconsistent units" from napari
            features=feats,
            feature_defaults={
                "name": "",
                "amount": np.nan,
                "x_mm": np.nan,
                "y_mm": np.nan,
                "z_mm": np.nan,
            },
            size=3.0,
            face_color="transparent",
            border_color="cyan",
            border_width=0.15,
            text={"string": "{name}", "size": 10, "color": "cyan", "anchor": "upper_left"},
        )
        layer.events.data.connect(self._on_points_changed)
        self._phantom_layer = layer
        return layer

    def start_clicking(self) -> None:
        """Add (or select) the ``phantoms`` Points layer in add mode."""
        try:
            layer = self._ensure_phantom_layer()
        except InputError as exc:
            notify_error(exc)
            return
        self.viewer.layers.selection.active = layer
        layer.mode = "add"

    def _on_points_changed(self, event=None) -> None:
        layer = self._phantom_layer
        mpi = self.mpi_layer
        if layer is None or mpi is None:
            return
        action = str(getattr(event, "action", "changed"))
        if (
            "removed" in action
            or "removing" in action
            or "adding" in action
            or "changing" in action
        ):
            if "removed" in action:
                self._measured_key = None
                self._refresh_phantom_table()
            return
        feats = layer.features
        idx = list(getattr(event, "data_indices", ()) or range(len(layer.data)))
        n = len(layer.data)
        idx = sorted({int(i) + n if int(i) < 0 else int(i) for i in idx} & set(range(n)))
        if not idx:
            self._refresh_phantom_table()
            return
        xyz = world_to_physical(mpi, layer.data[idx])
        used = set(feats["name"].astype(str))
        for k, i in enumerate(idx):
            feats.loc[i, ["x_mm", "y_mm", "z_mm"]] = xyz[k]
            if not str(feats.loc[i, "name"] or "").strip():
                n = 1
                while f"phantom_{n}" in used:
                    n += 1
                feats.loc[i, "name"] = f"phantom_{n}"
                used.add(f"phantom_{n}")
        layer.features = feats
        layer.refresh_text()
        self._measured_key = None
        self._refresh_phantom_table()

    def load_phantoms_csv(self, path) -> bool:
        """Read a phantom CSV (``name,x,y,z,iron_ug``, MPI mm) into the table and the layer."""
        from mpi_viewer.calibration.phantoms import phantoms_outside, read_phantoms_csv

        try:
            mpi = self._need_mpi()
            phantoms = read_phantoms_csv(path, min_count=1)
            phantoms_outside(volume_from_layer(mpi), phantoms)
        except InputError as exc:
            notify_error(exc)
            return False
        self.set_phantoms([(p.name, p.xyz_mm, p.iron_ug) for p in phantoms])
        return True

    def set_phantoms(self, phantoms) -> None:
        """Replace the phantoms by (name, (x, y, z) MPI mm, amount) triples."""
        import pandas as pd

        layer = self._ensure_phantom_layer()
        mpi = self.mpi_layer
        xyz = np.array([p[1] for p in phantoms], dtype=float).reshape(-1, 3)
        world = physical_to_world(mpi, xyz) if len(xyz) else np.empty((0, mpi.ndim))
        feats = pd.DataFrame(
            {
                "name": [str(p[0]) for p in phantoms],
                "amount": [float(p[2]) if p[2] is not None else np.nan for p in phantoms],
                "x_mm": xyz[:, 0],
                "y_mm": xyz[:, 1],
                "z_mm": xyz[:, 2],
            }
        )
        layer.events.data.disconnect(self._on_points_changed)
        try:
            layer.data = world
            layer.features = feats
        finally:
            layer.events.data.connect(self._on_points_changed)
        layer.refresh_text()
        self._measured_key = None
        self._refresh_phantom_table()

    def clear_phantoms(self) -> None:
        if self._phantom_layer is not None:
            self.set_phantoms([])
        self.points = []
        self._refresh_phantom_table()

    def phantoms(self) -> list:
        """The phantoms as :class:`~mpi_viewer.calibration.Phantom` (amount in ``iron_ug``)."""
        from mpi_viewer.calibration.phantoms import Phantom

        layer = self._phantom_layer
        if layer is None or layer not in self.viewer.layers:
            return []
        f = layer.features
        return [
            Phantom(
                str(f["name"].iloc[i]),
                tuple(float(f[c].iloc[i]) for c in ("x_mm", "y_mm", "z_mm")),
                float(f["amount"].iloc[i]),
            )
            for i in range(len(f))
        ]

    def _kind(self) -> str:
        return "iron" if self.kind_combo.currentIndex() == 0 else "cells"

    def _amount_header(self) -> str:
        return "iron (µg Fe)" if self._kind() == "iron" else "cells"

    def _refresh_phantom_table(self) -> None:
        measured = {p.name: p for p in self.points}
        rows = []
        for ph in self.phantoms():
            m = measured.get(ph.name)
            flags = ", ".join(m.flags) if m is not None and m.flags else ""
            rows.append(
                [
                    ph.name,
                    *(fmt(v, 5) for v in ph.xyz_mm),
                    fmt(ph.iron_ug, 5),
                    fmt(m.signal) if m else "",
                    fmt(m.peak_au) if m else "",
                    fmt(m.volume_mm3) if m else "",
                    flags,
                ]
            )
        headers = [
            "name",
            "x (mm)",
            "y (mm)",
            "z (mm)",
            self._amount_header(),
            "total signal (a.u.·mm³)",
            "peak (a.u.)",
            "ROI volume (mm³)",
            "flags",
        ]
        fill_table(self.phantom_table, headers, rows, editable=(0, 4), warn_col=8, warn_beside=5)
        current = self.reference_combo.currentText()
        self.reference_combo.clear()
        self.reference_combo.addItems([r[0] for r in rows])
        if current:
            self.reference_combo.setCurrentText(current)

    def _on_table_edit(self, item) -> None:
        layer = self._phantom_layer
        if layer is None:
            return
        i, j = item.row(), item.column()
        feats = layer.features
        text = item.text().strip()
        try:
            if j == 0:
                if not text or text in set(feats["name"].astype(str)) - {str(feats.loc[i, "name"])}:
                    raise InputError(f"phantom name {text!r}: empty or already used")
                old = str(feats.loc[i, "name"])
                feats.loc[i, "name"] = text
                for p in self.points:
                    if p.name == old:
                        p.name = text
            elif j == 4:
                v = float(text.replace(",", ".")) if text else float("nan")
                if not (math.isnan(v) or (math.isfinite(v) and v >= 0)):
                    raise InputError(
                        f"phantom {feats.loc[i, 'name']!r}: amount {text!r} must be a number ≥ 0"
                    )
                feats.loc[i, "amount"] = v
        except (InputError, ValueError) as exc:
            notify_error(
                exc if isinstance(exc, InputError) else InputError(f"{text!r} is not a number")
            )
        layer.features = feats
        layer.refresh_text()
        self._refresh_phantom_table()

    def _on_kind_changed(self, *_) -> None:
        self.env_combo.setCurrentText("cells" if self._kind() == "cells" else "solution")
        self.points = []
        self._measured_key = None
        self._refresh_phantom_table()

    def _choose_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Phantom CSV (name,x,y,z,iron_ug)", "", "CSV (*.csv);;All (*)"
        )
        if path:
            self.load_phantoms_csv(path)

    # -- session ---------------------------------------------------------------------------------------
    def options(self) -> dict:
        """The fit options as :meth:`Calibration.from_points` takes them (sessions store them)."""
        single = self.single_check.isChecked()
        return {
            "name": self.name_edit.text() or "calibration",
            "kind": self._kind(),
            "through_origin": self.origin_check.isChecked() or single,
            "weighting": "relative" if self.weight_combo.currentIndex() == 1 else "ols",
            "mode": "single_reference" if single else "line",
            "reference": (self.reference_combo.currentText() or None) if single else None,
            "tracer": self.tracer_edit.text() or None,
            "tracer_lot": self.lot_edit.text() or None,
            "environment": self.env_combo.currentText(),
            "preparation": self.prep_combo.currentText(),
        }

    def state(self) -> dict:
        """Phantoms (name, MPI mm, amount), fit options, the ROI parameters the phantoms were
        measured with and the calibration with its raw points (``Calibration.to_dict()``)."""
        return {
            "layer": self.mpi_combo.currentText(),
            "options": self.options(),
            "phantoms": [[p.name, list(p.xyz_mm), p.iron_ug] for p in self.phantoms()],
            "roi_params": None if self.roi_params_used is None else self.roi_params_used.to_dict(),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
        }

    def restore(self, state: dict) -> None:
        """Set options, phantoms and calibration of :meth:`state` (no refit; errors: notifications)."""
        from mpi_viewer.calibration.record import Calibration
        from mpi_viewer.roi.regions import ROIParams

        try:
            o = state.get("options") or {}
            if state.get("layer"):
                self.mpi_combo.setCurrentText(state["layer"])
            self.kind_combo.blockSignals(True)
            self.kind_combo.setCurrentIndex(0 if o.get("kind", "iron") == "iron" else 1)
            self.kind_combo.blockSignals(False)
            self.origin_check.setChecked(
                bool(o.get("through_origin")) and o.get("mode") != "single_reference"
            )
            self.weight_combo.setCurrentIndex(1 if o.get("weighting") == "relative" else 0)
            self.single_check.setChecked(o.get("mode") == "single_reference")
            self.name_edit.setText(o.get("name") or "calibration")
            self.tracer_edit.setText(o.get("tracer") or "")
            self.lot_edit.setText(o.get("tracer_lot") or "")
            self.env_combo.setCurrentText(o.get("environment") or "solution")
            self.prep_combo.setCurrentText(o.get("preparation") or "fixed_concentration")
            if state.get("phantoms") and self.mpi_layer is not None:
                self.set_phantoms([(n, xyz, a) for n, xyz, a in state["phantoms"]])
            if o.get("reference"):
                self.reference_combo.setCurrentText(o["reference"])
            rp = state.get("roi_params")
            self.roi_params_used = ROIParams.from_dict(rp) if rp is not None else None
            if state.get("calibration"):
                cal = Calibration.from_dict(state["calibration"], source="session calibration")
                self.points = list(cal.points)
                self.set_calibration(cal)
        except (InputError, KeyError, TypeError, ValueError) as exc:
            notify_error(exc, "calibration not restored")

    # -- measuring and fitting ---------------------------------------------------------------------
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
                v = amounts.get(p.name)
                if kind == "iron":
                    p.iron_ug = v
                else:
                    p.cells = v
            self.points = list(points)
            self.roi_params_used = params
            self._measured_key = key
            self._refresh_phantom_table()
            if then is not None:
                then()

        if key == self._measured_key and self.points:
            self._sync_amounts()
            done(self.points)
            return None

        def work():
            points = measure_phantoms(volume, phantoms, params, kind=kind)
            warm_imports()  # the fit's t quantile and the plot: not on the GUI thread
            return points

        self._worker = run_task(
            work,
            on_done=done,
            block=block,
            desc=f"measuring {len(phantoms)} phantoms",
        )
        return self._worker

    def _sync_amounts(self) -> None:
        amounts = {p.name: p.iron_ug for p in self.phantoms()}
        for p in self.points:
            if self._kind() == "iron":
                p.iron_ug = amounts.get(p.name, p.iron_ug)
            else:
                p.cells = amounts.get(p.name, p.cells)

    def fit(self, *, block: bool = False):
        """Measure (if needed) and fit; shows slope ± SE, intercept ± SE, R² and the plot."""
        return self.measure(block=block, then=self._fit_points)

    def _fit_points(self) -> None:
        from mpi_viewer.calibration.record import Calibration

        options = self.options()  # the same options the session stores
        kind = options["kind"]
        mpi = self.mpi_layer
        try:
            usable = [p for p in self.points if np.isfinite(p.amount(kind))] if self.points else []
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
        self.set_calibration(cal)

    def set_calibration(self, cal) -> None:
        """Make ``cal`` the current calibration (show its fit, plot and warnings)."""
        from mpi_viewer.calibration.record import compatibility_warnings

        self.calibration = cal
        f = cal.fit
        u = cal.x_unit
        if f.mode == "single_reference":
            text = (
                f"<b>{cal.name}</b>: single reference, slope {fmt(f.slope)} ± {fmt(f.se_slope, 2)} "
                f"a.u.·mm³/{u} (ratio, intercept 0)"
            )
        else:
            text = (
                f"<b>{cal.name}</b>: slope {fmt(f.slope)} ± {fmt(f.se_slope, 2)} a.u.·mm³/{u}, "
                f"intercept {fmt(f.intercept)} ± {fmt(f.se_intercept, 2)} a.u.·mm³, "
                f"R² {f.r_squared:.4f}, n {f.n}"
                + (", through origin" if f.through_origin else "")
                + (", relative weights" if f.weighting == "relative" else "")
            )
        mpi = self.mpi_layer
        acq = meta(mpi).get("acquisition") if mpi is not None else None
        warns = compatibility_warnings(cal, acq, self.roi_params())
        if warns:
            text += f"<br><span style='color:{_WARN_COLOUR}'>⚠ " + "<br>⚠ ".join(warns) + "</span>"
            notify_warning(f"calibration {cal.name}: " + "; ".join(warns))
        self.fit_label.setText(text)
        self.name_edit.setText(cal.name)
        self.kind_combo.blockSignals(True)
        self.kind_combo.setCurrentIndex(0 if cal.kind == "iron" else 1)
        self.kind_combo.blockSignals(False)
        self.draw_plot()
        self.tabs.setCurrentIndex(1)

    def draw_plot(self) -> None:
        from mpi_viewer.calibration.fit import prediction_band

        cal = self.calibration
        if cal is None:
            return
        f = cal.fit
        pts = [p for p in cal.points if (p.iron_ug if cal.kind == "iron" else p.cells) is not None]
        x = np.array([p.amount(cal.kind) for p in pts], dtype=float)
        y = np.array([p.signal for p in pts], dtype=float)
        roi_x = roi_y = roi_names = None
        if self.iron_results:
            res = [r for r in self.iron_results if not r.below_lod]
            val = [(r.iron_ug if cal.kind == "iron" else r.cells) for r in res]
            keep = [
                (v, r) for v, r in zip(val, res, strict=True) if v is not None and np.isfinite(v)
            ]
            roi_x = [v for v, _ in keep]
            roi_y = [r.signal for _, r in keep]
            roi_names = [r.name for _, r in keep]
        hi = max([*(x.tolist() or [1.0]), *(roi_x or [])]) * 1.08
        line_x = np.linspace(0.0, hi, 200)
        lo_b, hi_b = prediction_band(f, line_x)
        resid = y - f.predict(x) if len(x) else None
        self.plot.plot_calibration(
            x,
            y,
            line_x=line_x,
            line_y=f.predict(line_x),
            band_lo=lo_b if np.isfinite(lo_b).any() else None,
            band_hi=hi_b if np.isfinite(hi_b).any() else None,
            residuals=resid,
            names=[p.name for p in pts],
            roi_x=roi_x,
            roi_y=roi_y,
            roi_names=roi_names,
            x_label="iron (µg Fe)" if cal.kind == "iron" else "cells",
            title=cal.summary() if len(cal.summary()) < 70 else cal.name,
        )

    # -- library -----------------------------------------------------------------------------------
    def set_library_folder(self, folder) -> None:
        from mpi_viewer.calibration.record import CalibrationLibrary

        folder = str(folder).strip()
        if not folder:
            return
        self.folder_edit.setText(folder)
        self._library = CalibrationLibrary(folder)
        self.refresh_library()

    def refresh_library(self) -> None:
        self.library_list.clear()
        if self._library is None:
            return
        for cal in self._library.list():
            self.library_list.addItem(
                f"{cal.name} — {cal.kind}, {cal.tracer or 'tracer ?'}, {cal.environment}, "
                f"{cal.date}"
            )
            self.library_list.item(self.library_list.count() - 1).setData(Qt.UserRole, cal.name)

    def use_library_calibration(self, name: str) -> None:
        try:
            if self._library is None:
                raise InputError("no calibration library: choose a folder first")
            self.set_calibration(self._library.get(name))
        except InputError as exc:
            notify_error(exc)

    def save_to_library(self, *, overwrite: bool = True) -> Path | None:
        try:
            if self._library is None:
                raise InputError("no calibration library: choose a folder first")
            if self.calibration is None:
                raise InputError("no calibration to save: fit one first")
            p = self._library.add(self.calibration, overwrite=overwrite)
        except (InputError, OSError) as exc:
            notify_error(exc, "saving the calibration")
            return None
        self.refresh_library()
        return p

    def import_calibration(self, path):
        """Read a calibration JSON, copy it into the library (if one is chosen) and use it."""
        from mpi_viewer.calibration.record import load_calibration

        try:
            cal = (
                self._library.import_file(path, overwrite=True)
                if self._library
                else load_calibration(path)
            )
        except (InputError, OSError) as exc:
            notify_error(exc, "importing the calibration")
            return None
        self.refresh_library()
        self.set_calibration(cal)
        return cal

    def export_calibration(self, path) -> Path | None:
        from mpi_viewer.calibration.record import save_calibration

        try:
            if self.calibration is None:
                raise InputError("no calibration to export: fit or pick one first")
            return save_calibration(self.calibration, path)
        except (InputError, OSError) as exc:
            notify_error(exc, "exporting the calibration")
            return None

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Calibration library folder", self.folder_edit.text()
        )
        if folder:
            self.set_library_folder(folder)

    def _use_selected(self) -> None:
        item = self.library_list.currentItem()
        if item is None:
            notify_error(InputError("pick a calibration in the library list first"))
            return
        self.use_library_calibration(item.data(Qt.UserRole))

    def _choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a calibration", "", "JSON (*.json)")
        if path:
            self.import_calibration(path)

    def _choose_export(self) -> None:
        name = (self.calibration.name if self.calibration else "calibration") + ".json"
        path, _ = QFileDialog.getSaveFileName(self, "Export the calibration", name, "JSON (*.json)")
        if path:
            self.export_calibration(path)

    # -- iron per ROI ------------------------------------------------------------------------------
    def roi_inputs(self, roi_results=None, roi_params=None):
        """(ROI results, ROI parameters, MPI Volume) to quantify; the ROI dock's by default.

        Raises InputError when there is no calibration, MPI image or ROI.
        """
        if self.calibration is None:
            raise InputError("no calibration: fit the phantoms or pick one from the library first")
        mpi = self._need_mpi()
        dock = self.roi_dock()
        if roi_results is None:
            roi_results = list(getattr(dock, "results", None) or []) if dock is not None else []
            if roi_params is None and dock is not None:
                roi_params = getattr(dock, "params", None)
        if not roi_results:
            raise InputError("no ROIs: click the sources in the MPI ROIs dock first")
        roi_params = roi_params if roi_params is not None else self.roi_params()
        return list(roi_results), roi_params, volume_from_layer(mpi)

    def quantify(self, roi_results=None, roi_params=None, *, iron_per_cell=None) -> list:
        """Iron (and cells) of ROIs with the current calibration (:func:`quantify_rois`).

        Defaults to the ROIs and parameters of the ROI dock. Raises InputError.
        """
        rois, params, volume = self.roi_inputs(roi_results, roi_params)
        out = quantify_rois(self.calibration, rois, params, volume, iron_per_cell=iron_per_cell)
        self.applied_to = (rois, params, volume)
        return out

    def apply_to_rois(self, roi_results=None, roi_params=None) -> list:
        """Compute and show iron with intervals for every ROI; returns :attr:`iron_results`."""
        try:
            res = self.quantify(roi_results, roi_params)
        except InputError as exc:
            notify_error(exc)
            return self.iron_results
        self.iron_results = res
        unit = "µg Fe" if self.calibration.kind == "iron" else "cells"
        common, own = split_warnings([r.warnings for r in res])
        rows = []
        for r, warns in zip(res, own, strict=True):
            v, lo, hi = (
                (r.iron_ug, r.iron_ci_low_ug, r.iron_ci_high_ug)
                if self.calibration.kind == "iron"
                else (r.cells, r.cells_ci_low, r.cells_ci_high)
            )
            rows.append(
                [
                    r.name,
                    fmt(r.signal),
                    fmt(v),
                    fmt(lo),
                    fmt(hi),
                    "yes" if r.below_lod else "no",
                    list(warns),
                ]
            )
        fill_table(
            self.iron_table,
            [
                "ROI",
                "total signal (a.u.·mm³)",
                f"{self.calibration.kind} ({unit})",
                f"95 % CI low ({unit})",
                f"95 % CI high ({unit})",
                "below LOD",
                "warnings",
            ],
            rows,
            warn_col=6,
            warn_beside=2,
        )
        lod = next((r.lod for r in res if r.lod is not None), None)
        self.apply_label.setText(
            (f"Detection limit: {fmt(lod, 3)} {unit}." if lod is not None else "")
            + ("<br>" + warning_html(["all ROIs: " + w for w in common]) if common else "")
        )
        flagged = [r.name for r, w in zip(res, own, strict=True) if w]
        if flagged:
            notify_warning(f"See ⚠ in the iron table: {', '.join(flagged)}")
        self.draw_plot()
        self.tabs.setCurrentIndex(3)
        return res
