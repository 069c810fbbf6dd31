"""Image geometry dock: give a layer the spacing, origin, modality and MPI acquisition
parameters its file did not carry (plain .npy/.mat/TIFF arrays without a sidecar).

Nothing is written to the input file; the values live in the layer (and in a session).
"""

from __future__ import annotations

import numpy as np
from mpi_viewer.plugins._layers import (
    _VOLUMES,
    install_mm_units,
    is_display_twin,
    is_pooled,
    meta,
)
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer.geometry.axes import xyz_to_zyx
from mpi_viewer.geometry.volume import DEFAULT_UNITS, MODALITIES, Acquisition


def _spin(
    lo: float, hi: float, value: float, decimals: int = 4, suffix: str = ""
) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setValue(value)
    if suffix:
        s.setSuffix(suffix)
    return s


class GeometryDock(QWidget):
    """Set a layer's physical geometry and acquisition metadata."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        install_mm_units(self.viewer)  # world = physical mm, for every layer
        self.layer_combo = QComboBox()
        self.modality = QComboBox()
        self.modality.addItems(MODALITIES)
        self.spacing = [_spin(1e-4, 1e3, 1.0) for _ in range(3)]  # mm (in the row's label)
        self.origin = [_spin(-1e5, 1e5, 0.0, 3) for _ in range(3)]
        self.tracer = QLineEdit()
        self.mode = QComboBox()
        self.mode.addItems(["", "2D", "3D"])
        self.gradient = _spin(0, 100, 0, 2, " T/m")
        self.drive = _spin(0, 1000, 0, 2, " mT")
        self.frequency = _spin(0, 10000, 0, 2, " kHz")
        self.averages = QSpinBox()
        self.averages.setRange(0, 100000)
        self.averages.setSpecialValueText("unknown")  # 0
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("layer", self.layer_combo)
        form.addRow("modality", self.modality)
        for label, boxes in (
            ("spacing x, y, z (mm)", self.spacing),
            ("origin x, y, z (mm)", self.origin),
        ):
            row = QHBoxLayout()
            for b in boxes:
                row.addWidget(b)
            form.addRow(label, row)
        form.addRow("MPI tracer", self.tracer)
        form.addRow("MPI mode", self.mode)
        form.addRow("gradient", self.gradient)
        form.addRow("drive amplitude", self.drive)
        form.addRow("drive frequency", self.frequency)
        form.addRow("averages", self.averages)
        apply_btn = QPushButton("Apply to layer")
        apply_btn.clicked.connect(self.apply)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(apply_btn)
        lay.addWidget(self.status)
        lay.addStretch(1)

        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.layer_combo.currentTextChanged.connect(self._show_layer)
        self._refresh_layers()

    # -- helpers ----------------------------------------------------------------------
    def _image_layers(self):
        return [
            lyr
            for lyr in self.viewer.layers
            if type(lyr).__name__ == "Image" and not (is_display_twin(lyr) or is_pooled(lyr))
        ]

    def _refresh_layers(self, *_):
        current = self.layer_combo.currentText()
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems([lyr.name for lyr in self._image_layers()])
        if current:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        self._show_layer(self.layer_combo.currentText())

    def layer(self):
        name = self.layer_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _show_layer(self, *_):
        layer = self.layer()
        if layer is None:
            return
        m = layer.metadata.get("mpi_viewer", {})
        d = layer.ndim  # (an RGB picture's colour axis is not a space axis)
        spacing = m.get("spacing_mm") or list(np.asarray(layer.scale)[::-1])
        origin = m.get("origin_mm") or list(np.asarray(layer.translate)[::-1])
        for i in range(3):
            self.spacing[i].setEnabled(i < d)
            self.origin[i].setEnabled(i < d)
            if i < d:
                self.spacing[i].setValue(float(spacing[i]))
                self.origin[i].setValue(float(origin[i]))
        self.modality.setCurrentText(m.get("modality", "unknown"))
        acq = Acquisition.from_dict(m.get("acquisition"))
        self.tracer.setText(acq.tracer or "")
        self.mode.setCurrentText(acq.mode or "")
        self.gradient.setValue(acq.gradient_T_per_m or 0.0)
        self.drive.setValue(acq.drive_amplitude_mT or 0.0)
        self.frequency.setValue(acq.drive_frequency_kHz or 0.0)
        self.averages.setValue(acq.averages or 0)
        missing = m.get("geometry_missing")
        self.status.setText("This file carried no spacing: set it here." if missing else "")

    def apply(self) -> None:
        """Write the dock's values into the selected layer (placement and metadata)."""
        layer = self.layer()
        if layer is None:
            show_error("Image geometry: no image layer selected")
            return
        d = layer.ndim
        if d not in (2, 3):
            show_error(f"Image geometry: layer {layer.name!r} is {d}-D; 2-D or 3-D expected")
            return
        spacing = [self.spacing[i].value() for i in range(d)]
        origin = [self.origin[i].value() for i in range(d)]
        m = meta(layer)
        if m.get("direction") and not np.allclose(np.reshape(m["direction"], (d, d)), np.eye(d)):
            show_error(
                f"Image geometry: layer {layer.name!r} has an oblique direction; edit spacing in its file"
            )
            return
        m.update(
            modality=self.modality.currentText(),
            spacing_mm=spacing,
            origin_mm=origin,
            direction=list(np.eye(d).ravel()),
            units=m.get("units") or DEFAULT_UNITS[self.modality.currentText()],
            geometry_missing=False,
            geometry_edited=True,  # the file's own geometry is not this: sessions keep a copy
        )
        acq = Acquisition(
            tracer=self.tracer.text() or None,
            mode=self.mode.currentText() or None,
            gradient_T_per_m=self.gradient.value() or None,
            drive_amplitude_mT=self.drive.value() or None,
            drive_frequency_kHz=self.frequency.value() or None,
            averages=self.averages.value() or None,
        )
        m["acquisition"] = acq.to_dict()
        layer.scale = list(xyz_to_zyx(spacing))
        layer.translate = list(xyz_to_zyx(origin))
        _VOLUMES.pop(layer, None)
        from mpi_viewer.plugins._controller import get_controller

        get_controller(self.viewer).set_role_from_modality(layer)  # the one place roles change
        self.status.setText(f"{layer.name}: spacing {spacing} mm, origin {origin} mm")
        show_info(f"{layer.name}: geometry set")
