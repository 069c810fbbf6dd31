"""Phantoms of the Calibration dock: the ``phantoms`` Points layer (a click per vial,
world → MPI physical mm), a phantom CSV (``name,x,y,z,iron_ug``, MPI mm) and the table
where the user types the known amounts.

A mixin of :class:`~mpi_viewer.plugins._calibration_dock.CalibrationDock`.
"""

from __future__ import annotations

import math

import numpy as np
from mpi_viewer.plugins._layers import physical_to_world, volume_from_layer, world_to_physical
from mpi_viewer.plugins._tables import fill_table, make_table, show_row_details
from mpi_viewer.plugins._work import notify_error
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer.calibration.describe import fmt
from mpi_viewer.errors import InputError
from mpi_viewer.roi.regions import flag_sentences

PHANTOM_LAYER = "phantoms"
_FEATURES = ("name", "amount", "x_mm", "y_mm", "z_mm")
#: The table's column where the user types each phantom's known amount (after its name).
PHANTOM_AMOUNT_COL = 1


def _features(names=(), amounts=(), xyz=None):
    import pandas as pd

    xyz = np.empty((0, 3)) if xyz is None else np.asarray(xyz, dtype=float).reshape(-1, 3)
    return pd.DataFrame(
        {
            "name": pd.Series([str(n) for n in names], dtype=object),
            "amount": pd.Series([np.nan if a is None else float(a) for a in amounts], dtype=float),
            "x_mm": xyz[:, 0],
            "y_mm": xyz[:, 1],
            "z_mm": xyz[:, 2],
        }
    )


def add_phantom_layer(viewer, ndim: int = 3, name: str = PHANTOM_LAYER):
    """Add the phantoms' Points layer (empty, named ``name``), styled as the
    Calibration dock shows it (cyan rings with their names)."""
    return viewer.add_points(
        np.empty((0, ndim)),
        ndim=ndim,
        name=name,
        units=("mm",) * ndim,  # made in mm: no "Inconsistent units" from napari
        features=_features(),
        feature_defaults={"name": "", **{k: np.nan for k in _FEATURES[1:]}},
        size=3.0,
        face_color="transparent",
        border_color="cyan",
        border_width=0.15,
        text={"string": "{name}", "size": 10, "color": "cyan", "anchor": "upper_left"},
    )


class PhantomsMixin:
    """Part of the Calibration dock (needs its widgets and state)."""

    def _build_phantoms_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        row = QHBoxLayout()
        self.click_btn = QPushButton("Click vials", clicked=lambda: self.start_clicking())
        self.click_btn.setToolTip("Adds a Points layer 'phantoms': click the centre of each vial")
        self.csv_btn = QPushButton("Load CSV…", clicked=lambda: self._choose_csv())
        self.csv_btn.setToolTip("CSV with header name,x,y,z,iron_ug (MPI physical mm, µg Fe)")
        self.clear_btn = QPushButton("Clear", clicked=lambda: self.clear_phantoms())
        for b in (self.click_btn, self.csv_btn, self.clear_btn):
            row.addWidget(b)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Phantoms hold:"))
        self.kind_combo = QComboBox()
        self.kind_combo.addItems(["iron (µg Fe)", "cells (cell-based calibration)"])
        self.kind_combo.currentIndexChanged.connect(self._on_kind_changed)
        row.addWidget(self.kind_combo, 1)
        lay.addLayout(row)
        lay.addWidget(QLabel("Positions in MPI mm; type the known amounts in the table."))
        self.phantom_table = make_table(220)
        self.phantom_table.itemChanged.connect(self._on_table_edit)
        lay.addWidget(self.phantom_table, 1)
        self.roi_label = QLabel()
        self.roi_label.setWordWrap(True)
        lay.addWidget(self.roi_label)
        return tab

    # -- the Points layer ---------------------------------------------------------------------
    def _ensure_phantom_layer(self):
        if self._phantom_layer is not None and self._phantom_layer in self.viewer.layers:
            return self._phantom_layer
        mpi = self._need_mpi()
        from mpi_viewer.plugins._layer_pool import take

        # the layer pool's (made when the image was opened), else added now
        layer = take(self.viewer, "phantoms", name=PHANTOM_LAYER, ndim=mpi.ndim)
        if layer is None:
            layer = add_phantom_layer(self.viewer, mpi.ndim)
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
        layer, mpi = self._phantom_layer, self.mpi_layer
        if layer is None or mpi is None:
            return
        action = str(getattr(event, "action", "changed"))
        if any(a in action for a in ("removed", "removing", "adding", "changing")):
            if "removed" in action:
                self._measured_key = None
                self._refresh_phantom_table()
            return
        feats = layer.features
        n = len(layer.data)
        idx = list(getattr(event, "data_indices", ()) or range(n))
        idx = sorted({int(i) + n if int(i) < 0 else int(i) for i in idx} & set(range(n)))
        if idx:
            xyz = world_to_physical(mpi, layer.data[idx])
            names = [str(n or "").strip() for n in feats["name"]]
            used = set(names)
            for k, i in enumerate(idx):
                feats.loc[i, ["x_mm", "y_mm", "z_mm"]] = xyz[k]
                # a new point inherits the last point's features (napari's defaults follow
                # the selection): a name another phantom has is not its own, nor its amount
                taken = names[i] in names[:i] + names[i + 1 :]
                if not names[i] or ("added" in action and taken):
                    j = next(j for j in range(1, len(used) + 2) if f"phantom_{j}" not in used)
                    feats.loc[i, "name"] = names[i] = f"phantom_{j}"
                    used.add(f"phantom_{j}")
                    if taken:
                        feats.loc[i, "amount"] = np.nan
            layer.features = feats
            layer.refresh_text()
            self._measured_key = None
        self._refresh_phantom_table()

    # -- phantoms in and out -------------------------------------------------------------------
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
        layer = self._ensure_phantom_layer()
        mpi = self.mpi_layer
        xyz = np.array([p[1] for p in phantoms], dtype=float).reshape(-1, 3)
        world = physical_to_world(mpi, xyz) if len(xyz) else np.empty((0, mpi.ndim))
        feats = _features([p[0] for p in phantoms], [p[2] for p in phantoms], xyz)
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

    def _choose_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Phantom CSV (name,x,y,z,iron_ug)", "", "CSV (*.csv);;All (*)"
        )
        if path:
            self.load_phantoms_csv(path)

    # -- the table -----------------------------------------------------------------------------
    def _kind(self) -> str:
        return "iron" if self.kind_combo.currentIndex() == 0 else "cells"

    def _amount_header(self) -> str:
        return "iron (µg Fe)" if self._kind() == "iron" else "cells"

    def _refresh_phantom_table(self) -> None:
        """The table: name and amount (typed by the user), the total signal measured and
        its flags (⚠n beside it, said in full under the table). The position, peak and ROI
        volume of each phantom are its row's tooltip and, for the selected row, the line
        under the table: nine columns scrolled sideways in a 420 px dock."""
        measured = {p.name: p for p in self.points}
        rows, details = [], []
        for ph in self.phantoms():
            m = measured.get(ph.name)
            rows.append(
                [
                    ph.name,
                    fmt(ph.iron_ug, 5),
                    fmt(m.signal) if m else "",
                    flag_sentences(m.flags) if m is not None and m.flags else "",
                ]
            )
            x, y, z = (fmt(v, 4) for v in ph.xyz_mm)
            line = f"{ph.name}: at x, y, z = {x}, {y}, {z} mm (MPI)"
            if m is not None:
                line += f"; peak {fmt(m.peak_au)} a.u., ROI volume {fmt(m.volume_mm3)} mm³"
            details.append(line)
        # the total fitted: the sub-voxel one (calibration_signal), the volume the mask's
        headers = ["name", self._amount_header(), "total signal\n(a.u.·mm³)", "flags"]
        table = self.phantom_table
        fill_table(
            table, headers, rows, editable=(0, PHANTOM_AMOUNT_COL), warn_col=3, warn_beside=2
        )
        table.horizontalHeaderItem(2).setToolTip(
            "the phantom's total signal in its ROI, sub-voxel (what the calibration fits)"
        )
        show_row_details(table, details, "Select a phantom for its position, peak and volume.")
        current = self.reference_combo.value
        self.reference_combo.choices = [r[0] for r in rows]
        if current in self.reference_combo.choices:
            self.reference_combo.value = current

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
            elif j == PHANTOM_AMOUNT_COL:
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
        self.env_combo.value = "cells" if self._kind() == "cells" else "solution"
        self.points = []
        self._measured_key = None
        self._refresh_phantom_table()
