"""The study report of the Cells dock: a folder written off the GUI thread.

A mixin of :class:`~mpi_viewer.plugins._cells_dock.CellsDock`:
:func:`mpi_viewer.report.write_report` (results CSV, ROI masks, transform,
calibration plot, slices through each ROI with the anatomy, the MPI, the outlines and
the labels, index.html), all drawn by the core: nothing is taken from the live window.
"""

from __future__ import annotations

from pathlib import Path

from mpi_viewer.plugins._layers import meta, volume_from_layer
from mpi_viewer.plugins._work import notify_error, start_work
from qtpy.QtWidgets import QFileDialog, QMessageBox

from mpi_viewer.errors import InputError


class ReportMixin:
    """Report… of the Cells dock (needs its results, calibration and MPI layer)."""

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
        """The anatomy: ``preferred`` (the registration's fixed image) when present, else
        the study's (the controller's)."""
        if preferred and preferred in self.viewer.layers:
            return self.viewer.layers[preferred]
        return self.ctl.anatomy

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

        result = start_work(
            work, on_done=done, block=block, determinate=False, desc="writing the report"
        )
        return getattr(self, "last_report", None) if block else result
