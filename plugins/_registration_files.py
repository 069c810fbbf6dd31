"""Files of the registration dock: fiducial points CSV (name,x,y,z mm) and the ITK
``.tfm`` transform (fixed → moving), saved, loaded and applied to the MPI.

A mixin of :class:`~mpi_viewer.plugins._registration_dock.RegistrationDock`.
"""

from __future__ import annotations

from mpi_viewer.plugins._layers import (
    apply_registration,
)
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QFileDialog,
)

from mpi_viewer.errors import MPIViewerError
from mpi_viewer.io.transform_files import load_transform, write_transform


class TransformFilesMixin:
    """Part of the registration dock (needs its widgets and pair state)."""

    # ----------------------------------------------------------------- files
    def import_csv(self, which: str, path) -> bool:
        """Replace the ``which`` ("fixed" or "moving") points by a CSV (name,x,y,z; mm,
        that image's own physical frame)."""
        from mpi_viewer.io.points import read_points_csv

        if not self._ensure_started():
            return False
        try:
            ps = read_points_csv(path)
            d = self.pairs.fixed.ndim
            if ps.ndim != d:
                show_error(f"{path}: {ps.ndim}-D points for a {d}-D image")
                return False
        except MPIViewerError as exc:
            show_error(str(exc))
            return False
        st = self.pairs.state(self.excluded)
        if which == "fixed":
            st.fixed_names, st.fixed_xyz = list(ps.names), ps.xyz_mm
        else:
            st.moving_names, st.moving_xyz = list(ps.names), ps.xyz_mm
        self._replace(st)
        return True

    def export_csv(self, which: str, path) -> bool:
        """Write the ``which`` ("fixed" or "moving") points to a CSV (name,x,y,z; mm, the
        image's own physical frame)."""
        from mpi_viewer.io.points import PointSet, write_points_csv

        if self.pairs is None:
            show_error("Fiducial registration: no fiducials yet (press Start)")
            return False
        layer = self.pairs.fixed if which == "fixed" else self.pairs.moving
        try:
            write_points_csv(path, PointSet(self.pairs.names_of(layer), self.pairs.xyz_of(layer)))
        except MPIViewerError as exc:
            show_error(str(exc))
            return False
        show_info(f"Fiducial registration: wrote {path}")
        return True

    def _ask_import(self, which: str) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, f"Import {which} points", "", "Point CSV (*.csv)"
        )
        if path:
            self.import_csv(which, path)

    def _ask_export(self, which: str) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, f"Export {which} points", f"fiducials_{which}.csv", "Point CSV (*.csv)"
        )
        if path:
            self.export_csv(which, path)

    def save_transform(self, path) -> bool:
        """Write the current transform (fixed → moving) as an ITK .tfm."""
        if self.transform is None:
            show_error("Fiducial registration: no transform to save (too few pairs?)")
            return False
        try:
            write_transform(path, self.transform[2])
        except (MPIViewerError, OSError, RuntimeError) as exc:
            show_error(f"{path}: {exc}")
            return False
        show_info(f"Fiducial registration: wrote {path}")
        return True

    def load_transform(self, path) -> bool:
        """Read an ITK .tfm (fixed → moving); apply it with :meth:`apply_loaded`."""
        try:
            t = load_transform(path)  # the one Transform type
        except (MPIViewerError, OSError, RuntimeError) as exc:
            show_error(f"{path}: {exc}")
            return False
        self.loaded_transform = (t.matrix, t.translation, t)
        show_info(f"Fiducial registration: loaded {path}; choose a layer and press Apply loaded")
        return True

    def apply_loaded(self, layer_name: str) -> bool:
        """Draw a layer through the loaded transform (e.g. a scan in the same holder)."""
        layer = self._layer(layer_name)
        if self.loaded_transform is None or layer is None:
            show_error("Fiducial registration: load a .tfm and choose a layer first")
            return False
        matrix, translation, t = self.loaded_transform
        try:
            if self.pairs is not None and layer is self.pairs.moving_image:
                self._draw(matrix, translation, t)
            elif layer is self.ctl.mpi:
                self.ctl.register(matrix, translation, source="file")
                self.transform = (matrix, translation, t)
            else:
                apply_registration(
                    layer, matrix, translation, fixed_name=self.fixed_combo.currentText()
                )
        except Exception as exc:  # noqa: BLE001
            show_error(
                f"Fiducial registration: cannot apply the transform to {layer_name!r}: {exc}"
            )
            return False
        return True

    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save transform", "fixed_to_moving.tfm", "ITK transform (*.tfm)"
        )
        if path:
            self.save_transform(path)

    def _ask_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load transform", "", "ITK transform (*.tfm *.txt)"
        )
        if path:
            self.load_transform(path)
