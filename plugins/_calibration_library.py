"""The Calibration dock's record and library: the record's name, tracer lot and
preparation (a magicgui form), and a folder of calibration JSON files to list, pick,
save, import and export (:class:`~mpi_viewer.calibration.CalibrationLibrary`).

A mixin of :class:`~mpi_viewer.plugins._calibration_dock.CalibrationDock`.
"""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import ComboBox, Container, Label, LineEdit
from mpi_viewer.plugins._work import notify_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer.errors import InputError

PREPARATIONS = ["fixed_concentration", "fixed_volume"]


class LibraryMixin:
    """Part of the Calibration dock (needs its widgets and state)."""

    def _build_library_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        box = QGroupBox("Calibration record")
        QVBoxLayout(box)
        self.name_edit = LineEdit(label="Name:", value="calibration")
        self.lot_edit = LineEdit(label="Tracer lot:")
        self.prep_combo = ComboBox(label="Preparation:", choices=PREPARATIONS)
        self.acq_label = Label(label="Scan:")
        self.acq_label.native.setWordWrap(True)
        self.record_form = Container(
            widgets=[self.name_edit, self.lot_edit, self.prep_combo, self.acq_label]
        )
        self.record_form.margins = (0, 0, 0, 0)
        box.layout().addWidget(self.record_form.native)
        lay.addWidget(box)
        box = QGroupBox("Library (a folder of calibration JSON files)")
        bl = QVBoxLayout(box)
        row = QHBoxLayout()
        self.folder_edit = QLineEdit(placeholderText="choose a folder…")
        self.folder_edit.editingFinished.connect(
            lambda: self.set_library_folder(self.folder_edit.text())
        )
        row.addWidget(self.folder_edit, 1)
        row.addWidget(QPushButton("Folder…", clicked=lambda: self._choose_folder()))
        bl.addLayout(row)
        self.library_list = QListWidget()
        self.library_list.setMinimumHeight(90)
        bl.addWidget(self.library_list)
        row = QHBoxLayout()
        self.use_btn = QPushButton("Use selected", clicked=lambda: self._use_selected())
        self.save_btn = QPushButton("Save current", clicked=lambda: self.save_to_library())
        self.import_btn = QPushButton("Import…", clicked=lambda: self._choose_import())
        self.export_btn = QPushButton("Export…", clicked=lambda: self._choose_export())
        for b in (self.use_btn, self.save_btn, self.import_btn, self.export_btn):
            row.addWidget(b)
        bl.addLayout(row)
        lay.addWidget(box, 1)
        return tab

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
