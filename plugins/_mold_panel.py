"""Mold registration panel: detect a mold's fiducial wells in two images, automatically.

Thin: it reads the study's anatomy and MPI images from the viewer's controller
(:mod:`._controller`), calls :func:`mpi_viewer.registration.molds.register_with_template`
off the GUI thread, and writes two named Points layers ("mold fiducials (fixed)" and
"mold fiducials (moving)") placed where each image is drawn. The matched pairs (each
image's own physical mm, ITK x, y, z) go to ``on_pairs(names, fixed_xyz_mm,
moving_xyz_mm, excluded=, pose=)``: in the registration dock's "Mold" mode that is the
landmark workflow (residuals, excludes, preview), saved as the template registration
with its pose choice while the user leaves the wells as found. Used alone, the panel draws the MPI
on the anatomy through the fit (:meth:`StudyController.register`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mpi_viewer.plugins._controller import ANATOMY, MPI, get_controller
from mpi_viewer.plugins._layers import install_mm_units
from mpi_viewer.plugins._mold_detect import MoldDetectMixin, _Relay
from mpi_viewer.plugins._mold_points import FIXED_POINTS, MOVING_POINTS, MoldPointsMixin
from mpi_viewer.plugins._mold_poses import POSE_COLUMNS, PoseTableMixin  # noqa: F401 - re-exported
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer.errors import CancelledError, MPIViewerError
from mpi_viewer.registration.molds import MAX_ROTATION_DEG

BROWSE = "Browse…"


def pose_record(result, template: str, tolerance_mm: float | None) -> dict:
    """How the pose of a mold registration was chosen, for the study's registration record.

    ``{"template" (name or file, as detected), "tolerance_mm", "pose" (1-based),
    "candidates" (how many), "decided_by" ("wells", "prior" or "user"),
    "max_rotation_deg"}``: a session saved and reopened, and ``replay``, reproduce the
    pose the user chose.
    """
    return {
        "template": str(template),
        "tolerance_mm": None if tolerance_mm is None else float(tolerance_mm),
        "pose": int(result.pose),
        "candidates": len(result.candidates),
        "decided_by": result.decided_by,
        "max_rotation_deg": result.max_rotation_deg,
    }


class MoldPanel(PoseTableMixin, MoldDetectMixin, MoldPointsMixin, QWidget):
    """Pick a mold template and two images; detect, match and pair their fiducial wells.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    on_pairs : callable, optional
        ``on_pairs(names, fixed_xyz_mm, moving_xyz_mm, *, excluded, pose)`` with the
        fiducials found in both images (mm, each image's own physical frame, ITK x, y,
        z), the wells the template fit leaves out (cut by an image's edge) and how the
        pose was chosen (:func:`pose_record`).
    embedded : bool
        Inside a host dock that shows the same study images: the panel hides its own
        pickers (both follow the controller, so they can never disagree).
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,  # noqa: F821 - napari injects by this name
        on_pairs=None,
        embedded: bool = False,
    ):
        super().__init__()
        self.viewer = viewer
        install_mm_units(self.viewer)  # world = physical mm, for every layer
        self.ctl = get_controller(viewer)
        self.on_pairs = on_pairs
        self._embedded = embedded
        self.result = None  # MoldRegistration of the last detection
        self.error: str | None = None  # message of the last failure
        self._worker = None
        self._showing = False  # a detection's result being shown, one piece per turn
        self._cancel = False
        self._layers = (None, None)  # (anatomy, MPI) layers of the last detection
        self._settings: dict = {}  # template and tolerance of the last detection
        self._followers: dict[str, tuple] = {}  # points layer name → (image layer, callback)
        self._relay = _Relay()
        self._relay.step.connect(self._on_step)
        self._build()
        for e in (self.ctl.events.roles, self.ctl.events.mpi, self.ctl.events.anatomy):
            e.connect(self._sync_layers)
        self.viewer.layers.events.reordered.connect(self._sync_layers)
        self._sync_layers()
        if not embedded:  # a session's mold registration reopens with its wells shown here
            self.ctl.provide_section("mold", self)

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        from mpi_viewer.registration.molds import list_templates

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 6, 4, 4)
        form = QFormLayout()
        self.template_combo = QComboBox(
            toolTip="Mold or phantom-holder template (fiducial wells, mm)"
        )
        for name in list_templates():
            self.template_combo.addItem(name, name)
        self.template_combo.addItem(BROWSE, None)
        idx = self.template_combo.findText("mouse_mold_v1")
        self.template_combo.setCurrentIndex(max(idx, 0))
        self._last_template = self.template_combo.currentIndex()
        self.template_combo.activated.connect(self._on_template)
        self.fixed_combo = QComboBox(toolTip="Anatomical image (MRI or CT)")
        self.moving_combo = QComboBox(toolTip="Image that moves (MPI images only)")
        self.fixed_combo.activated.connect(lambda i: self._choose(self.fixed_combo, i))
        self.moving_combo.activated.connect(lambda i: self._choose(self.moving_combo, i))
        self.tol_spin = QDoubleSpinBox(
            minimum=0.1,
            maximum=10.0,
            singleStep=0.1,
            value=1.5,
            decimals=1,
            suffix=" mm",
            toolTip="Largest accepted residual of a matched well",
        )
        self.turn_spin = QDoubleSpinBox(
            minimum=1.0,
            maximum=180.0,
            singleStep=5.0,
            value=MAX_ROTATION_DEG,
            decimals=0,
            suffix="°",
            toolTip="Orientation prior: the mold turns by at most this between the two scans "
            "(both head-first, or both feet-first). Decides between poses the wells alone "
            "cannot tell apart; 180°: no prior",
        )
        form.addRow("Template:", self.template_combo)
        form.addRow("Anatomy (MRI/CT):", self.fixed_combo)
        form.addRow("MPI (moves):", self.moving_combo)
        form.addRow("Tolerance:", self.tol_spin)
        form.addRow("Max. turn:", self.turn_spin)
        if self._embedded:
            for combo in (self.fixed_combo, self.moving_combo):
                form.labelForField(combo).setVisible(False)
                combo.setVisible(False)
        lay.addLayout(form)
        row = QHBoxLayout()
        self.detect_btn = QPushButton(
            "Detect", toolTip="Find the wells in both images and pair them by name"
        )
        self.detect_btn.clicked.connect(lambda: self.detect())
        self.cancel_btn = QPushButton("Cancel", enabled=False)
        self.cancel_btn.clicked.connect(self.cancel)
        row.addWidget(self.detect_btn)
        row.addWidget(self.cancel_btn)
        lay.addLayout(row)
        self.progress = QProgressBar(minimum=0, maximum=100, value=0, textVisible=True)
        self.progress.setFormat("%p %")
        self.progress.setVisible(False)
        lay.addWidget(self.progress)
        self.status = QLabel(
            "Pick the template, then Detect: the MPI is drawn on the anatomy.", wordWrap=True
        )
        self.status.setMinimumWidth(260)
        lay.addWidget(self.status)
        self._build_pose_table(lay)

    def restore(self, state: dict) -> None:
        """Show the wells of a session's mold registration as Detect shows them (``state``:
        the session's matched ``names``, ``fixed_xyz_mm``, ``moving_xyz_mm`` and the
        ``fixed`` / ``moving`` layer names); the registration itself is the session's."""
        for fn in self.restore_steps(state):
            fn()

    def restore_steps(self, state: dict) -> list:
        """:meth:`restore` as one callable per image's wells (the session dock runs each in
        its own turn of the event loop)."""
        fixed, moving = (self.viewer.layers[state[k]] for k in ("fixed", "moving"))
        self._layers = (fixed, moving)
        names = list(state["names"])
        self.status.setText(f"{len(names)} wells of the session's mold registration")
        wells = (
            (FIXED_POINTS, np.asarray(state["fixed_xyz_mm"], dtype=float), names, fixed),
            (MOVING_POINTS, np.asarray(state["moving_xyz_mm"], dtype=float), names, moving),
        )
        return [lambda a=a: self._put_points(*a) for a in wells]

    def _sync_layers(self, event=None) -> None:
        """The pickers list the anatomy and the MPI images; the current ones are the study's."""
        for combo, role, current in (
            (self.fixed_combo, ANATOMY, self.ctl.anatomy),
            (self.moving_combo, MPI, self.ctl.mpi),
        ):
            layers = self.ctl.layers(role)
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([lyr.name for lyr in layers])
            combo.setCurrentIndex(next((i for i, lyr in enumerate(layers) if lyr is current), -1))
            combo.blockSignals(False)

    def _choose(self, combo, index: int) -> None:
        name = combo.itemText(index)
        layer = next((lyr for lyr in self.ctl.viewer.layers if lyr.name == name), None)
        if layer is not None:
            if combo is self.fixed_combo:
                self.ctl.set_anatomy(layer)
            else:
                self.ctl.set_mpi(layer)  # asks before discarding ROIs
        self._sync_layers()

    def _on_template(self, index: int) -> None:
        if (
            self.template_combo.itemData(index) is not None
            or self.template_combo.itemText(index) != BROWSE
        ):
            self._last_template = index
            return
        path, _ = QFileDialog.getOpenFileName(self, "Mold template", "", "Template (*.json)")
        if not path or not self.add_template_file(path):
            self.template_combo.setCurrentIndex(self._last_template)

    def add_template_file(self, path) -> bool:
        """Validate a template file and select it; False (and a notification) if it is bad."""
        from mpi_viewer.registration.molds import load_template

        try:
            tpl = load_template(Path(path))
        except MPIViewerError as exc:
            show_error(str(exc))
            return False
        at = self.template_combo.count() - 1  # before "Browse…"
        self.template_combo.insertItem(at, f"{tpl.name} ({Path(path).name})", str(path))
        self.template_combo.setCurrentIndex(at)
        self._last_template = at
        return True

    def template(self) -> str:
        """The selected template: a shipped name or a file path."""
        return self.template_combo.currentData() or self.template_combo.currentText()

    def _fail(self, message: str) -> None:
        self.error = message
        self.status.setText(message)
        show_error(message)

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, CancelledError):
            self.error = None
            self.status.setText("Cancelled.")
            show_info("Mold detection cancelled")
        elif isinstance(exc, MPIViewerError):
            self._fail(str(exc))
        else:  # a bug: still a notification, never an exception into Qt
            self._fail(f"Mold registration failed: {type(exc).__name__}: {exc}")

    def _on_done(self, result, layers, *, turns: bool = False) -> None:
        self.result, self.error = result, None
        self._layers = layers
        self._fill_pose_table()
        if result.ambiguous:  # not a result: nothing moves until the user picks a pose
            show_warning(
                f"Mold registration: the wells fit {len(result.candidates)} poses and the "
                "orientation prior cannot decide; nothing moved. Choose a pose in the dock."
            )
            self.status.setText(self._summary(result))
            self.status.setToolTip("\n".join(result.report_lines()))
            for name in (FIXED_POINTS, MOVING_POINTS):  # stale wells of an earlier detection
                if name in self.viewer.layers:
                    self.viewer.layers[name].data = np.zeros((0, 3))
            return
        self._apply(result, turns=turns)

    def _apply(self, result, *, turns: bool = False) -> None:
        """Show the wells of ``result``'s pose and draw the MPI on the anatomy through it.

        ``turns``: each image's wells, then the MPI's move, in its own turn of the event
        loop (:func:`~mpi_viewer.plugins._work.in_turns`; each costs napari a refresh and a
        redraw); :attr:`busy` until the last.
        """
        from mpi_viewer.plugins._work import in_turns

        fixed_layer, moving_layer = self._layers
        names = list(result.matched_names)
        pieces = []
        if not self._embedded:  # in a host dock, the host's fiducial pairs show them
            for layer_name, image_layer, xyz in (
                (FIXED_POINTS, fixed_layer, result.fixed_xyz_mm),
                (MOVING_POINTS, moving_layer, result.moving_xyz_mm),
            ):
                pieces.append(lambda a=(layer_name, xyz, names, image_layer): self._put_points(*a))
        pieces.append(lambda: self._show_fit(result, names))
        self._showing = True

        def finished() -> None:
            self._showing = False

        in_turns(pieces, block=not turns, on_finish=finished, what="Mold registration")

    def _show_fit(self, result, names: list) -> None:
        """The summary, and the MPI drawn on the anatomy through ``result`` (or the pairs
        handed to the host dock)."""
        fixed_layer, moving_layer = self._layers
        self.status.setText(self._summary(result))
        self.status.setToolTip("\n".join(result.report_lines()))
        if self.on_pairs is not None:  # the host fits them as the template did (cut wells
            cand = result.candidates[result.chosen] if result.candidates else None  # left out)
            self.on_pairs(
                names,
                np.asarray(result.fixed_xyz_mm),
                np.asarray(result.moving_xyz_mm),
                excluded=list(cand.cut_excluded) if cand is not None else [],
                pose=pose_record(result, **self._settings),
            )
        elif fixed_layer is self.ctl.anatomy and moving_layer is self.ctl.mpi:
            try:  # alone: the MPI drawn on the anatomy through the template fit
                self.ctl.register(
                    result.fit.matrix,
                    result.fit.translation,
                    source="template",
                    model=getattr(result.fit, "model", "rigid"),
                    pose=pose_record(result, **self._settings),
                )
            except (ValueError, MPIViewerError) as exc:
                self._fail(f"Mold registration: the MPI could not be moved: {exc}")
