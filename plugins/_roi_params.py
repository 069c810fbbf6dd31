"""The ROI dock's method parameters: the method names, the spin boxes, the published
``ROIParams``, the background mask and the widgets' enabling.

A mixin of :class:`~mpi_viewer.plugins._roi_dock.ROIDock`.
"""

from __future__ import annotations

import numpy as np
from mpi_viewer.plugins._roi_manual import MANUAL
from napari.utils import notifications
from qtpy.QtWidgets import QDoubleSpinBox

from mpi_viewer.errors import InputError
from mpi_viewer.roi.regions import ROIParams

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


class ROIParamsMixin:
    """The ROI method of the ROI dock (needs its method widgets, ``ctl`` and ``viewer``)."""

    @property
    def params(self):
        """The ROI method (``ROIParams``), published to the controller when set."""
        return self._params

    @params.setter
    def params(self, params) -> None:
        self._params = params
        self.ctl.set_roi_params(params)  # the calibration dock measures phantoms alike

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
