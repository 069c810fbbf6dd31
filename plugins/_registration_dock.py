"""Fiducial registration dock: click fiducial pairs, see the fit live, save the transform.

The dock follows the study's image roles (the controller, :mod:`._controller`): fixed is
the anatomy (MRI/CT), moving the MPI; it keeps two paired Points layers
(:mod:`._points_pairs`), reviews the fit on every point edit
(:func:`mpi_viewer.registration.review.review_landmarks`) and draws the MPI on the
anatomy through the controller (:meth:`StudyController.register`: the layer affine, no
resampling). All numbers are physical mm in each image's own frame, ITK (x, y, z)
order; the transform maps fixed → moving (ITK).

Parts: :mod:`._registration_view` (widgets, read-outs), :mod:`._registration_edits`
(point edits, undo, table), :mod:`._registration_files` (CSV, .tfm),
:mod:`._registration_refine` (resample, intensity refinement in a worker).
"""

from __future__ import annotations

import numpy as np
from mpi_viewer.plugins import _napari_compat as compat
from mpi_viewer.plugins._controller import ANATOMY, MPI, get_controller
from mpi_viewer.plugins._layers import install_mm_units, volume_from_layer
from mpi_viewer.plugins._points_pairs import PairedPoints, PairState
from mpi_viewer.plugins._registration_base import _reg
from mpi_viewer.plugins._registration_edits import PairEditsMixin
from mpi_viewer.plugins._registration_files import TransformFilesMixin
from mpi_viewer.plugins._registration_pairs_io import PairsIOMixin
from mpi_viewer.plugins._registration_refine import RefineMixin
from mpi_viewer.plugins._registration_view import RegistrationViewMixin
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QWidget

from mpi_viewer.errors import MPIViewerError
from mpi_viewer.registration.review import review_landmarks


class RegistrationDock(
    RegistrationViewMixin,
    PairEditsMixin,
    PairsIOMixin,
    TransformFilesMixin,
    RefineMixin,
    QWidget,
):
    """Landmark (fiducial) registration of a moving image (MPI) to a fixed one (MRI/CT).

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        install_mm_units(self.viewer)  # world = physical mm, for every layer
        self.ctl = get_controller(napari_viewer)  # image roles and the registration
        self.ctl.provide_section("registration", self)
        self.pairs: PairedPoints | None = None
        self.excluded: set[str] = set()
        self.fit = None  # LandmarkFit of the current pairs (None: too few / failed)
        self.transform = None  # (matrix, translation, sitk or fit) currently drawn
        self.loaded_transform = None  # (matrix, translation, sitk transform) from a .tfm
        self.warnings: list[str] = []
        self.target_xyz = None  # pinned TRE target, fixed physical mm (x, y, z)
        self._undo: list[PairState] = []
        self._last: PairState | None = None
        self._last_key = None
        self._last_time = 0.0
        self._busy = False
        self._notified: set[str] = set()
        self._worker = None
        self._mold = None  # the mold panel's wells and pose choice, while left as found
        self._build()
        self._preview_timer = QTimer(self, singleShot=True, interval=150)
        self._preview_timer.timeout.connect(self.update_preview)
        self._extent_timer = QTimer(self, singleShot=True, interval=300)
        self._extent_timer.timeout.connect(self._update_extent)
        ev = self.viewer.layers.events
        for e in (ev.removed, ev.reordered):
            e.connect(self._sync_layer_combos)
        for e in (self.ctl.events.roles, self.ctl.events.mpi, self.ctl.events.anatomy):
            e.connect(self._sync_layer_combos)
        self.fixed_combo.activated.connect(self._on_fixed_chosen)
        self.moving_combo.activated.connect(self._on_moving_chosen)
        self.viewer.cursor.events.position.connect(self._on_cursor)
        self._sync_layer_combos()

    def _sync_layer_combos(self, event=None) -> None:
        """Fixed: the anatomy images; moving and "apply loaded": the MPI images (roles
        and current choice from the controller)."""
        fixed, mpis = self.ctl.layers(ANATOMY), self.ctl.layers(MPI)
        for combo, layers, current in (
            (self.fixed_combo, fixed, self.ctl.anatomy),
            (self.moving_combo, mpis, self.ctl.mpi),
            (self.apply_combo, mpis, self.ctl.mpi),
        ):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([lyr.name for lyr in layers])
            combo.setCurrentIndex(next((i for i, lyr in enumerate(layers) if lyr is current), -1))
            combo.blockSignals(False)
        if self.pairs is not None and not self.pairs.alive():
            self.pairs = None
            self.fit = None

    def _on_fixed_chosen(self, index: int) -> None:
        layer = self._layer(self.fixed_combo.itemText(index))
        if layer is not None:
            self.ctl.set_anatomy(layer)
        self._sync_layer_combos()

    def _on_moving_chosen(self, index: int) -> None:
        layer = self._layer(self.moving_combo.itemText(index))
        if layer is not None:
            self.ctl.set_mpi(layer)  # asks before discarding ROIs; may keep the old one
        self._sync_layer_combos()

    def _layer(self, name: str):
        """The study's image layer of this name (None if there is none)."""
        return next((lyr for lyr in self.ctl.viewer.layers if lyr.name == name), None)

    # -------------------------------------------------------------- session
    @property
    def params(self):
        """The dock's :class:`~mpi_viewer.registration.RegistrationParams`."""
        return _reg().RegistrationParams(
            model=self.model_combo.value,
            fle_mm=self.fle_spin.value,
            fre_tolerance_mm=self.tol_spin.value,
        )

    def start(self) -> bool:
        """Make the paired Points layers for the chosen fixed and moving images."""
        fixed, moving = self.ctl.anatomy, self.ctl.mpi
        if (
            self.pairs is not None
            and self.pairs.alive()
            and (fixed, moving) == (self.pairs.fixed_image, self.pairs.moving_image)
        ):
            self._activate(self.pairs.fixed)  # same images: keep the fiducials, click on
            return True
        if fixed is None or moving is None:
            show_error(
                "Fiducial registration: open an anatomy (MRI/CT) and an MPI image "
                "(set a layer's modality in the Image geometry dock)"
            )
            return False
        if fixed is moving:
            show_error("Fiducial registration: the fixed and moving layers must differ")
            return False
        try:
            if volume_from_layer(fixed).ndim != volume_from_layer(moving).ndim:
                show_error(
                    "Fiducial registration: fixed and moving images differ in dimension "
                    "(register a 2-D MPI projection against a 2-D projection of the anatomy)"
                )
                return False
            self.pairs = PairedPoints(self.viewer, fixed, moving)
        except MPIViewerError as exc:
            show_error(f"Fiducial registration: {exc}")
            return False
        for layer in self.pairs.layers():
            layer.events.data.connect(self._on_points_data)
            layer.bind_key("Control-z", lambda _layer: self.undo(), overwrite=True)
        self.excluded.clear()
        self._undo.clear()
        self._last = self.pairs.state()
        self.fit = None
        self.viewer.layers.selection.active = self.pairs.fixed
        self.pairs.fixed.mode = "add"
        self.update_preview()
        return True

    def _ensure_started(self) -> bool:
        return (self.pairs is not None and self.pairs.alive()) or self.start()

    def _set_state(self, st: PairState) -> None:
        self._busy = True
        try:
            self.pairs.set_state(st)
        finally:
            self._busy = False

    def _pairs_from_mold(
        self, names, fixed_xyz_mm, moving_xyz_mm, *, excluded=(), pose=None, **where
    ) -> None:
        """The mold panel's matched wells (found in the study's anatomy and MPI).

        ``excluded``: the wells the template fit leaves out (cut by an image's edge);
        ``pose``: how the mold's pose was chosen (:func:`._mold_panel.pose_record`). While
        the pairs stay as found, the registration is the template's with that pose (a
        session saves ``registration.mold``, replay takes the user's pose again); an edit
        (a moved, added, removed or excluded well, another model) makes it the user's
        landmarks.
        """
        self._mold = None
        if pose is not None:
            self._mold = {
                "pose": dict(pose),
                "names": [str(n) for n in names],
                "fixed": np.asarray(fixed_xyz_mm, float),
                "moving": np.asarray(moving_xyz_mm, float),
                "excluded": frozenset(str(n) for n in excluded),
                "model": self.model_combo.value,
            }
        self.load_pairs(names, fixed_xyz_mm, moving_xyz_mm, excluded=excluded, **where)
        if self.pairs is not None and self.pairs.alive():  # found, not to be clicked: the
            for layer in self.pairs.layers():  # next click must not add a landmark
                layer.mode = "pan_zoom"

    def _replace(self, st: PairState) -> None:
        self._set_state(st)
        self.excluded = set(st.excluded)
        self._record()
        self._notified.clear()
        self.update_preview(notify_too_few=True)

    # ---------------------------------------------------------------- fitting
    def update_preview(self, notify_too_few: bool = False) -> None:
        """Refit the landmarks, draw the moving layer through the fit, refresh the table."""
        if self.pairs is None or not self.pairs.alive():
            return
        names, f, m = self.pairs.pairs()
        fixed, moving = self.pairs.fixed_image, self.pairs.moving_image
        review = review_landmarks(
            names,
            f,
            m,
            model=self.model_combo.value,
            excluded=self.excluded,
            fle_mm=self.fle_spin.value,
            fre_tolerance_mm=self.tol_spin.value,
            unpaired=self.pairs.unpaired(),
            fixed_image=volume_from_layer(fixed) if names else None,
            moving_image=volume_from_layer(moving) if names else None,
            image_names=(fixed.name, moving.name),
        )
        self.fit = review.fit
        if self.fit is not None:
            try:
                self._draw(self.fit.matrix, self.fit.translation, self.fit)
            except Exception as exc:  # noqa: BLE001 - keep the viewer and the points
                review.warnings.append(f"preview failed: {exc}")
        self._refresh_table(names, f, m)
        self._update_labels()
        self._set_warnings(review.warnings, notify_too_few or not review.too_few)

    def _draw(self, matrix, translation, source) -> None:
        """Draw the MPI on the anatomy through a fixed → moving transform (physical mm)."""
        kind = "landmarks" if hasattr(source, "residuals_mm") else "intensity"
        if source is not None and self.loaded_transform and source is self.loaded_transform[2]:
            kind = "file"
        model = getattr(source, "model", "affine")
        pose = None
        if kind == "landmarks" and self._as_found_by_mold():
            kind, pose = "template", self._mold["pose"]
        self.ctl.register(matrix, translation, source=kind, live=True, model=model, pose=pose)
        self.pairs.follow_images()
        self._extent_timer.start()
        self.transform = (np.asarray(matrix, float), np.asarray(translation, float), source)

    def _as_found_by_mold(self) -> bool:
        """The pairs, excludes and model are still those the mold panel found."""
        found = self._mold
        if found is None or self.pairs is None or not self.pairs.alive():
            return False
        names, f, m = self.pairs.pairs()
        return (
            list(names) == found["names"]
            and frozenset(self.excluded) == found["excluded"]
            and self.model_combo.value == found["model"]
            and np.allclose(f, found["fixed"], rtol=0, atol=1e-6)
            and np.allclose(m, found["moving"], rtol=0, atol=1e-6)
        )

    def _update_extent(self) -> None:
        update = compat.extent_updater(self.viewer)
        if update is not None:
            update()
