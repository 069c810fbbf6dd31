"""One controller per viewer: the study's image roles, its registration and its ROIs.

Docks never ask each other for anything: they read the study from the controller of
their viewer (:func:`get_controller`) and send their edits back to it; the controller
emits psygnal events (:class:`ControllerEvents`) that the docks follow.

Roles
    Every image layer (2-D display twins excepted) has one role: ``"anatomy"`` (MRI or
    CT), ``"mpi"`` or ``"other"``. It is set once, when the layer arrives, from the
    reader's modality (``layer.metadata["mpi_viewer"]["modality"]``), and changed in one
    place only: :meth:`StudyController.set_role` (the Image geometry dock's modality
    calls it). No dock offers an anatomy layer as "the MPI".
Current images
    :attr:`StudyController.anatomy` and :attr:`StudyController.mpi` are the anatomy
    image registrations draw onto and the MPI image that moves and is quantified.
    Replacing the MPI while ROIs exist asks first (:attr:`StudyController.confirm`).
Registration
    :meth:`StudyController.register` always moves the current MPI onto the current
    anatomy: the transform maps the anatomy's physical mm to the MPI's (ITK fixed →
    moving, x, y, z), whatever made it (landmarks, mold template, intensity, a file).
ROIs
    The ROI dock publishes its ROI definitions, results and method
    (:meth:`StudyController.set_rois`, :meth:`StudyController.set_roi_params`); other
    docks read :attr:`StudyController.rois`, :attr:`StudyController.roi_results` and
    :attr:`StudyController.roi_params` (None: no ROI dock has chosen a method) and follow
    ``events.rois``.
Calibration
    The Calibration dock publishes the current calibration
    (:meth:`StudyController.set_calibration`, ``events.calibration``) and the iron it
    gave the ROIs (:meth:`StudyController.set_iron`, ``events.iron``): the cells dock
    and the session read them here.

The state is small and typed (:class:`Registration`, :class:`ROIDefinition`) so that it
maps one-to-one onto the core's ``Study`` model when that lands.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from mpi_viewer.plugins import _napari_compat as compat
from mpi_viewer.plugins._layers import (
    apply_registration,
    install_mm_units,
    is_display_twin,
    is_pooled,
    layer_kind,
    meta,
    modality_of,
    registered_affine,
    volume_from_layer,
)
from psygnal import Signal, SignalGroup

from mpi_viewer.geometry.transform import Transform

ANATOMY, MPI, OTHER = "anatomy", "mpi", "other"


def _raw(obj):
    """The object behind napari's public-only proxy (docks from the Plugins menu get one)."""
    return getattr(obj, "__wrapped__", obj)


ROLES = (ANATOMY, MPI, OTHER)
#: The role a reader's modality gives a layer when it arrives.
ROLE_OF_MODALITY = {"MRI": ANATOMY, "CT": ANATOMY, "MPI": MPI}


@dataclass(frozen=True)
class Registration:
    """The study's registration: the one transform type
    (:class:`~mpi_viewer.geometry.transform.Transform`, anatomy (fixed) physical mm → MPI
    (moving) physical mm, ITK (x, y, z)), the images' names and what made it:
    ``source`` is ``"landmarks"``, ``"template"``, ``"intensity"``, ``"file"`` or
    ``"reader"`` (a layer that arrived already registered, e.g. the demo). ``pose``: for a
    mold template, how its pose was chosen (:func:`._mold_panel.pose_record`).
    """

    transform: Transform
    fixed: str
    moving: str
    source: str = "landmarks"
    pose: dict | None = None

    @property
    def matrix(self) -> np.ndarray:
        return self.transform.matrix

    @property
    def translation(self) -> np.ndarray:
        return self.transform.translation


@dataclass
class ROIDefinition:
    """One seeded ROI: its name and seed, MPI physical mm (x, y, z)."""

    name: str
    seed_xyz_mm: tuple[float, ...] = field(default_factory=tuple)


class ControllerEvents(SignalGroup):
    """Events of a :class:`StudyController` (psygnal)."""

    #: a layer's role changed, or an image layer came or went
    roles = Signal()
    #: the current MPI layer (or None) changed
    mpi = Signal(object)
    #: the current anatomy layer (or None) changed
    anatomy = Signal(object)
    #: the registration (a :class:`Registration` or None) changed
    registration = Signal(object)
    #: the ROI definitions / results / method changed
    rois = Signal()
    #: the calibration (a ``Calibration`` or None) changed
    calibration = Signal(object)
    #: the iron per ROI (list of ``QuantityResult``) changed
    iron = Signal(object)


def _ask_user(question: str) -> bool:
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(
        None,
        "mpi-viewer",
        question,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


class StudyController:
    """The study behind one napari viewer (use :func:`get_controller`, not this class).

    Parameters
    ----------
    viewer : napari.Viewer
    """

    def __init__(self, viewer):
        self.viewer = viewer
        self.events = ControllerEvents()
        #: ``confirm(question) -> bool``: asked before a change discards the user's work
        #: (a Yes/No box; tests and scripts may replace it).
        self.confirm: Callable[[str], bool] = _ask_user
        self._roles: dict[int, str] = {}
        self._mpi = None
        self._anatomy = None
        self.registration: Registration | None = None
        self.rois: list[ROIDefinition] = []
        self.roi_results: list = []
        #: the ROI method (``ROIParams``) of the ROI dock; None: no ROI dock yet
        self.roi_params = None
        #: the current calibration (``Calibration``) or None
        self.calibration = None
        #: iron (and cells) per ROI of the last "Apply to ROIs", ``QuantityResult`` list
        self.iron_results: list = []
        #: (ROI results, ROI params, MPI Volume) the iron results were computed from
        self.iron_inputs: tuple | None = None
        #: (ROI results, ROI parameters) the calibration was last applied to, when these
        #: are not the ROIs of :attr:`rois` (a session's, or given by a script)
        self.calibration_applied_to: tuple | None = None
        #: the dock providing each part of a session (weak references)
        self._sections: dict[str, weakref.ref] = {}
        install_mm_units(viewer)
        for layer in viewer.layers:
            self._adopt(layer)
        self._pick_defaults()
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)

    # ------------------------------------------------------------------ roles
    @staticmethod
    def is_image(layer) -> bool:
        return layer_kind(layer) == "image" and not (is_display_twin(layer) or is_pooled(layer))

    def role_of(self, layer) -> str | None:
        """``"anatomy"``, ``"mpi"``, ``"other"`` (None: not an image of the study)."""
        layer = _raw(layer)
        return self._roles.get(id(layer)) if self.is_image(layer) else None

    def layers(self, role: str) -> list:
        """The image layers of a role, in layer-list order."""
        return [lyr for lyr in self.viewer.layers if self.role_of(lyr) == role]

    def set_role(self, layer, role: str) -> None:
        """Give an image layer a role: the one place roles change.

        Raises
        ------
        ValueError
            ``role`` is not one of :data:`ROLES`, or ``layer`` is not an image layer.
        """
        if role not in ROLES:
            raise ValueError(f"role {role!r}: expected one of {', '.join(ROLES)}")
        layer = _raw(layer)
        if not self.is_image(layer):
            raise ValueError(f"layer {layer.name!r} is not an image of the study")
        if self._roles.get(id(layer)) == role:
            return
        self._roles[id(layer)] = role
        meta(layer)["role"] = role
        if layer is self._mpi and role != MPI:
            self._set_mpi(None)
        if layer is self._anatomy and role != ANATOMY:
            self._set_anatomy(None)
        self.events.roles.emit()
        self._pick_defaults()

    def set_role_from_modality(self, layer) -> None:
        """The role the layer's modality gives it (MRI/CT: anatomy; MPI: mpi; else other)."""
        self.set_role(layer, ROLE_OF_MODALITY.get(modality_of(layer), OTHER))

    def _adopt(self, layer) -> None:
        if self.is_image(layer) and id(layer) not in self._roles:
            role = meta(layer).get("role")
            if role not in ROLES:
                role = ROLE_OF_MODALITY.get(modality_of(layer), OTHER)
            self._roles[id(layer)] = role
            meta(layer)["role"] = role

    def _on_inserted(self, event) -> None:
        layer = event.value
        if not self.is_image(layer):
            return
        self._adopt(layer)
        self.events.roles.emit()
        self._pick_defaults()

    def _on_removed(self, event) -> None:
        layer = event.value
        if id(layer) not in self._roles:
            return
        del self._roles[id(layer)]
        if layer is self._mpi:
            self._set_mpi(None)
        if layer is self._anatomy:
            self._set_anatomy(None)
        self.events.roles.emit()
        self._pick_defaults()

    def _pick_defaults(self) -> None:
        if self._anatomy is None:
            first = next(iter(self.layers(ANATOMY)), None)
            if first is not None:
                self._set_anatomy(first)
        if self._mpi is None:
            first = next(iter(self.layers(MPI)), None)
            if first is not None:
                self._set_mpi(first)

    # --------------------------------------------------------- current images
    @property
    def mpi(self):
        """The MPI layer the study quantifies and registers (None: no MPI yet)."""
        return self._mpi

    @property
    def anatomy(self):
        """The anatomy layer (MRI or CT) the MPI is registered onto (None: none yet)."""
        return self._anatomy

    def set_mpi(self, layer) -> bool:
        """Make ``layer`` (an MPI-role image) the study's MPI.

        With ROIs on the current MPI, asks (:attr:`confirm`) before discarding them;
        returns False, changing nothing, if the user keeps them.

        Raises
        ------
        ValueError
            ``layer`` is not an MPI-role image.
        """
        layer = _raw(layer)
        if layer is self._mpi:
            return True
        if layer is not None and self.role_of(layer) != MPI:
            raise ValueError(f"layer {layer.name!r} is not an MPI image")
        if self.rois and self._mpi is not None:
            n = len(self.rois)
            new = getattr(layer, "name", "no layer")
            if not self.confirm(
                f"Quantify {new!r} instead of {self._mpi.name!r}? "
                f"The {n} ROI(s) measured on {self._mpi.name!r} will be discarded."
            ):
                return False
            self.set_rois([], [])
        self._set_mpi(layer)
        return True

    def set_anatomy(self, layer) -> None:
        """Make ``layer`` (an anatomy-role image) the image registrations draw onto."""
        layer = _raw(layer)
        if layer is not None and self.role_of(layer) != ANATOMY:
            raise ValueError(f"layer {layer.name!r} is not an anatomy (MRI/CT) image")
        self._set_anatomy(layer)

    def _set_mpi(self, layer) -> None:
        if layer is self._mpi:
            return
        self._mpi = layer
        reg = meta(layer).get("transform_fixed_to_moving") if layer is not None else None
        if reg:  # a layer that arrived registered (the demo, a session): its transform
            self.registration = Registration(
                Transform(reg["matrix"], reg["translation"], reg.get("model", "affine")),
                fixed=str(reg.get("fixed") or getattr(self._anatomy, "name", "")),
                moving=layer.name,
                source="reader",
            )
            self.events.registration.emit(self.registration)
        elif self.registration is not None:
            self.registration = None
            self.events.registration.emit(None)
        self.events.mpi.emit(layer)

    def _set_anatomy(self, layer) -> None:
        if layer is self._anatomy:
            return
        self._anatomy = layer
        self.events.anatomy.emit(layer)

    # ----------------------------------------------------------- registration
    def register(
        self,
        matrix,
        translation,
        *,
        source: str = "landmarks",
        live: bool = False,
        model: str = "affine",
        pose: dict | None = None,
    ) -> Registration:
        """Draw the MPI on the anatomy through a fixed → moving transform; returns it.

        Parameters
        ----------
        matrix, translation : array_like
            Anatomy physical mm → MPI physical mm, ITK (x, y, z), each image's own frame.
        source : str
            What made it (see :class:`Registration`).
        live : bool
            A preview during point edits: only the affines change, the viewer's extent
            is updated by the caller once the edits settle.
        model : {"rigid", "similarity", "affine"}
            How it was fitted (kept in the :class:`Transform`).
        pose : dict, optional
            A mold template's pose choice (see :class:`Registration`).

        Raises
        ------
        ValueError
            No MPI or no anatomy image in the study.
        """
        fixed, moving = self._anatomy, self._mpi
        if fixed is None or moving is None:
            raise ValueError("registration needs an anatomy (MRI/CT) and an MPI image")
        m = np.asarray(matrix, dtype=float)
        t = np.asarray(translation, dtype=float)
        mw, tw = self._through_anatomy_world(fixed, m, t)
        vol = volume_from_layer(moving)
        from mpi_viewer.geometry.axes import xyz_to_zyx

        placed = np.allclose(moving.scale[-vol.ndim :], xyz_to_zyx(vol.spacing_mm)) and not np.any(
            moving.translate
        )
        if not live or not placed:
            apply_registration(moving, mw, tw, fixed_name=fixed.name)
        else:
            aff = registered_affine(vol, mw, tw)
            extent_update = compat.extent_updater(self.viewer)
            with contextlib.ExitStack() as stack:
                if extent_update is not None:
                    stack.enter_context(moving.events.affine.blocker(extent_update))
                if not np.allclose(moving.affine.affine_matrix, aff, rtol=0, atol=1e-12):
                    moving.affine = aff
            meta(moving)["transform_fixed_to_moving"] = {
                "matrix": mw.tolist(),
                "translation": tw.tolist(),
                "fixed": fixed.name,
            }
        self.registration = Registration(
            Transform(m, t, model), fixed=fixed.name, moving=moving.name, source=source, pose=pose
        )
        self.events.registration.emit(self.registration)
        return self.registration

    @staticmethod
    def _through_anatomy_world(fixed, m, t):
        """The transform from the anatomy's *world* (x, y, z) to MPI physical mm (equal
        to ``m, t`` when the anatomy's world is its physical frame, as readers place it)."""
        from mpi_viewer.plugins._points_pairs import world_from_physical_affine

        from mpi_viewer.geometry.compose import from_placed_frame

        return from_placed_frame(m, t, world_from_physical_affine(fixed))

    # ------------------------------------------------------------------- ROIs
    def set_rois(self, definitions, results, params=None) -> None:
        """Publish the ROI definitions (:class:`ROIDefinition`), their results and the
        ROI method's parameters (None: unchanged)."""
        self.rois = list(definitions)
        self.roi_results = list(results)
        if params is not None:
            self.roi_params = params
        self.events.rois.emit()

    def set_roi_params(self, params) -> None:
        """Publish the ROI method (``ROIParams``) phantoms and targets are measured with."""
        self.roi_params = params
        self.events.rois.emit()

    # ------------------------------------------------------------ calibration
    def set_calibration(self, calibration) -> None:
        """Make ``calibration`` (a ``Calibration`` or None) the study's calibration."""
        self.calibration = calibration
        self.events.calibration.emit(calibration)

    def set_iron(self, results, inputs=None) -> None:
        """Publish iron per ROI (``QuantityResult`` list) and the (ROI results, ROI
        params, MPI Volume) they came from."""
        self.iron_results = list(results)
        self.iron_inputs = inputs
        self.events.iron.emit(self.iron_results)

    # --------------------------------------------------------- session parts
    def provide_section(self, name: str, dock) -> None:
        """A dock offers its part of the session (``state()`` / ``restore(state)``) under
        ``name`` (``"registration"``, ``"rois"``, ``"calibration"``, ``"cells"``)."""
        self._sections[name] = weakref.ref(_raw(dock))

    def section(self, name: str):
        """The dock providing the session part ``name``, or None (closed, never opened)."""
        ref = self._sections.get(name)
        dock = ref() if ref is not None else None
        if dock is None:
            return None
        try:  # a dock whose Qt widget was deleted (closed) no longer provides
            dock.isVisible()
        except RuntimeError:
            return None
        return dock


_CONTROLLERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_controller(viewer) -> StudyController:
    """The one :class:`StudyController` of ``viewer`` (made on first use).

    As it is made, it watches the window for this plugin's docks
    (:func:`mpi_viewer.plugins._plugin_docks.watch`): the first that napari opens (Plugins
    menu, ``Window.add_plugin_dock_widget``, ``mpi-viewer``) installs the layer pool and,
    from the Plugins menu before any data, the warm-up and freeze that ``mpi-viewer`` does
    at start-up. Docks made directly and added under another title (tests) start none.
    """
    viewer = _raw(viewer)
    ctl = _CONTROLLERS.get(viewer)
    if ctl is None:
        from mpi_viewer.plugins._plugin_docks import watch

        ctl = _CONTROLLERS[viewer] = StudyController(viewer)
        compat.calm_activity_spinner(viewer)  # a whole core under software OpenGL otherwise
        watch(viewer)
    return ctl
