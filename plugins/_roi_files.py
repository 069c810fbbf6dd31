"""The ROI dock's files: the receiver saturation curve it reads, the CSV table and the
NIfTI masks it writes, and their file dialogs.

A mixin of :class:`~mpi_viewer.plugins._roi_dock.ROIDock`.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFileDialog

from mpi_viewer.errors import InputError
from mpi_viewer.io import tables as res
from mpi_viewer.roi.regions import ROIParams, write_masks_nifti


class ROIFilesMixin:
    """Saturation curve, CSV export and mask saving of the ROI dock."""

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
