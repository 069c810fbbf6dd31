"""What the registration dock shows: its widgets (the fit parameters a magicgui form),
the RMS FRE, the expected TRE at the cursor or a pinned target, and the warnings.

A mixin of :class:`~mpi_viewer.plugins._registration_dock.RegistrationDock`.

Expected target registration error: Fitzpatrick JM, West JB, Maurer CR. Predicting
error in rigid-body point-based registration. IEEE TMI 17(5):694-702, 1998.
doi:10.1109/42.736021
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox
from mpi_viewer.plugins._layers import volume_from_layer, world_to_physical
from mpi_viewer.plugins._registration_base import COLUMNS, MODELS, _fmt_xyz, _reg, _warning_key
from napari.utils.notifications import show_warning
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QTableWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer.registration.review import used_mask


def _row(*widgets) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w)
    return row


class RegistrationViewMixin:
    """Part of the registration dock (needs its state)."""

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(["Landmarks", "Mold"])
        self.fixed_combo = QComboBox(
            toolTip="Anatomical image the MPI is drawn onto (MRI or CT). "
            "A layer's role follows its modality (Image geometry dock)"
        )
        self.moving_combo = QComboBox(toolTip="Image that moves: the MPI (MPI layers only)")
        form.addRow("Mode:", self.mode_combo)
        form.addRow("Fixed (MRI/CT):", self.fixed_combo)
        form.addRow("Moving (MPI):", self.moving_combo)
        defaults = _reg().RegistrationParams()
        self.model_combo = ComboBox(label="Model:", choices=list(MODELS), value=defaults.model)
        self.model_combo.tooltip = (
            "rigid: rotation + translation (never a reflection); "
            "similarity: + isotropic scale; affine: needs ≥ 4 non-coplanar pairs"
        )
        self.fle_spin = FloatSpinBox(
            label="FLE:", min=0.0, max=20.0, step=0.05, value=defaults.fle_mm
        )
        self.fle_spin.tooltip = "Fiducial localisation error (RMS, mm)"
        self.tol_spin = FloatSpinBox(
            label="FRE tolerance:", min=0.01, max=50.0, step=0.1, value=defaults.fre_tolerance_mm
        )
        self.tol_spin.tooltip = "FRE above this is flagged"
        for spin in (self.fle_spin, self.tol_spin):
            spin.native.setDecimals(2)
            spin.native.setSuffix(" mm")
        self.model_combo.changed.connect(lambda _: self.update_preview())
        self.fle_spin.changed.connect(lambda _: self._update_tre())
        self.tol_spin.changed.connect(lambda _: self.update_preview())
        form.addRow("Model:", self.model_combo.native)
        lay.addLayout(form)

        self.stack = QStackedWidget()
        self.start_btn = QPushButton(
            "Start", toolTip="Make the two fiducial Points layers; click fixed, then moving"
        )
        self.start_btn.clicked.connect(self.start)
        self.undo_btn = QPushButton(
            "Undo", toolTip="Undo the last point edit (Ctrl+Z in a fiducial layer)"
        )
        self.undo_btn.clicked.connect(self.undo)
        self.csv_btn = QToolButton(text="Points CSV", popupMode=QToolButton.InstantPopup)
        menu = QMenu(self.csv_btn)
        for which in ("fixed", "moving"):
            menu.addAction(f"Import {which} points…", lambda w=which: self._ask_import(w))
        for which in ("fixed", "moving"):
            menu.addAction(f"Export {which} points…", lambda w=which: self._ask_export(w))
        self.csv_btn.setMenu(menu)
        self.csv_btn.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        page = QWidget()
        page.setLayout(_row(self.start_btn, self.undo_btn, self.csv_btn))
        page.layout().setContentsMargins(0, 0, 0, 0)
        self.stack.addWidget(page)
        self.mold_panel = None
        try:
            from mpi_viewer.plugins._mold_panel import MoldPanel

            self.mold_panel = MoldPanel(self.viewer, on_pairs=self._pairs_from_mold, embedded=True)
            self.stack.addWidget(self.mold_panel)
        except Exception as exc:  # noqa: BLE001 - the mold panel is optional
            item = self.mode_combo.model().item(1)
            item.setEnabled(False)
            item.setToolTip(f"mold detection is not available ({type(exc).__name__})")
        self.mode_combo.currentIndexChanged.connect(self._set_mode)
        self._set_mode(0)
        lay.addWidget(self.stack)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        hdr = self.table.horizontalHeader()
        hdr.setSectionResizeMode(QHeaderView.ResizeToContents)
        hdr.setSectionResizeMode(1, QHeaderView.Stretch)  # the name takes the width left
        hdr.setStretchLastSection(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setMinimumHeight(200)
        self.table.setToolTip(
            "Double-click a name to rename; untick 'use' to exclude a pair from the fit. "
            "The selected pair's positions are under the table (each image's own physical "
            "frame, mm)"
        )
        self.table.itemChanged.connect(self._on_item_changed)
        lay.addWidget(self.table)
        self.up_btn = QPushButton("▲ Up", clicked=lambda: self.move_pair(self._selected_name(), -1))
        self.down_btn = QPushButton(
            "▼ Down", clicked=lambda: self.move_pair(self._selected_name(), +1)
        )
        self.del_btn = QPushButton(
            "Delete pair", clicked=lambda: self.delete_pair(self._selected_name())
        )
        lay.addLayout(_row(self.up_btn, self.down_btn, self.del_btn))

        self.fit_form = Container(widgets=[self.fle_spin, self.tol_spin])
        self.fit_form.margins = (0, 0, 0, 0)
        lay.addWidget(self.fit_form.native)
        self.rms_label = QLabel("RMS FRE: —")
        lay.addWidget(self.rms_label)
        self.tre_label = QLabel("Expected TRE: —")
        self.tre_label.setWordWrap(True)
        self.pin_btn = QPushButton(
            "Pin target",
            checkable=True,
            toolTip="Freeze the TRE target at the current cursor position",
        )
        self.pin_btn.toggled.connect(self._pin_target)
        row = _row(self.tre_label, self.pin_btn)
        row.setStretch(0, 1)
        lay.addLayout(row)
        self.warn_label = QLabel("")
        self.warn_label.setWordWrap(True)
        self.warn_label.setStyleSheet("color: rgb(230, 160, 40);")
        lay.addWidget(self.warn_label)

        box = QGroupBox("Transform (fixed → moving, ITK)")
        grid = QVBoxLayout(box)
        self.resample_btn = QPushButton(
            "Resample",
            clicked=self.resample,
            toolTip="New layer: the MPI on the fixed grid (linear), display only",
        )
        self.save_btn = QPushButton("Save .tfm…", clicked=self._ask_save)
        self.load_btn = QPushButton("Load .tfm…", clicked=self._ask_load)
        grid.addLayout(_row(self.resample_btn, self.save_btn, self.load_btn))
        self.apply_combo = QComboBox(toolTip="Layer to draw through the loaded transform")
        self.apply_btn = QPushButton(
            "Apply loaded", clicked=lambda: self.apply_loaded(self.apply_combo.currentText())
        )
        row = _row(QLabel("to:"), self.apply_combo, self.apply_btn)
        row.setStretch(1, 1)
        grid.addLayout(row)
        self.refine_btn = QPushButton(
            "Refine (intensity)",
            clicked=lambda: self.refine(),
            toolTip="Mattes mutual information, multi-resolution, from the landmark fit",
        )
        self.cancel_btn = QPushButton("Cancel", enabled=False, clicked=self.cancel_refine)
        grid.addLayout(_row(self.refine_btn, self.cancel_btn))
        lay.addWidget(box)
        lay.addStretch(1)
        self.setMinimumWidth(470)

    def _set_mode(self, index: int) -> None:
        self.stack.setCurrentIndex(min(index, self.stack.count() - 1))
        for i in range(self.stack.count()):  # size the stack to the page shown
            policy = (
                QSizePolicy.Preferred if i == self.stack.currentIndex() else QSizePolicy.Ignored
            )
            self.stack.widget(i).setSizePolicy(policy, policy)
        self.stack.adjustSize()

    # ------------------------------------------------------------- read-outs
    def _set_warnings(self, warnings: list[str], notify: bool) -> None:
        self.warnings = warnings
        self.warn_label.setText("\n".join(f"⚠ {w}" for w in warnings))
        keys = {_warning_key(w) for w in warnings}  # a drag changes the numbers, not the warning
        if notify:
            for w in warnings:
                if _warning_key(w) not in self._notified:
                    show_warning(f"Fiducial registration: {w}")
        self._notified = keys if notify else self._notified & keys

    def _update_labels(self) -> None:
        if self.fit is None:
            self.rms_label.setText("RMS FRE: — (no fit)")
        else:
            n = len(self.fit.residuals_mm)
            self.rms_label.setText(
                f"RMS FRE: {float(self.fit.rms_fre_mm):.3f} mm "
                f"({int(used_mask(self.fit, n).sum())} of {n} pairs, {self.model_combo.value})"
            )
        self._update_tre()

    def _on_cursor(self, event=None) -> None:
        if self.target_xyz is None and self.fit is not None and self.isVisible():
            self._update_tre()

    def _cursor_xyz(self):
        fixed = self.pairs.fixed_image
        pos = np.asarray(self.viewer.cursor.position, dtype=float)
        d = volume_from_layer(fixed).ndim
        if pos.size < d:
            return None
        return world_to_physical(fixed, pos[-d:])[0]

    def _update_tre(self) -> None:
        if self.fit is None or self.pairs is None:
            self.tre_label.setText("Expected TRE: —")
            return
        fle = self.fle_spin.value
        try:
            target = self.target_xyz if self.target_xyz is not None else self._cursor_xyz()
            if target is None:
                return
            tre = float(np.ravel(self.fit.expected_tre_mm(np.atleast_2d(target), fle))[0])
        except Exception as exc:  # noqa: BLE001 - a label, never an error dialog
            self.tre_label.setText(f"Expected TRE: — ({exc})")
            return
        where = "target" if self.target_xyz is not None else "cursor"
        self.tre_label.setText(
            f"Expected TRE at {where}: {tre:.3f} mm (FLE {fle:.2f} mm; "
            f"{'affine formula' if self.fit.model == 'affine' else 'rigid-body formula'})"
        )
        self.tre_label.setToolTip(
            f"{where} at x, y, z = {_fmt_xyz(target)} mm in the fixed image; {self.fit.tre_formula}"
            + ("" if self.fit.model == "affine" else ", doi:10.1109/42.736021")
        )

    def _pin_target(self, on: bool) -> None:
        self.set_target(self._cursor_xyz() if on and self.pairs is not None else None)

    def set_target(self, target_xyz=None) -> None:
        """Show the expected TRE at a target (fixed image, mm, x, y, z); ``None``: at the cursor."""
        self.target_xyz = None if target_xyz is None else np.asarray(target_xyz, dtype=float)
        self.pin_btn.blockSignals(True)
        self.pin_btn.setChecked(self.target_xyz is not None)
        self.pin_btn.blockSignals(False)
        self._update_tre()
