"""Mold registration panel: detect a mold's fiducial wells in two images, automatically.

Thin: it reads the study's anatomy and MPI images from the viewer's controller
(:mod:`._controller`), calls :func:`mpi_viewer.registration.molds.register_with_template`
off the GUI thread, and writes two named Points layers ("mold fiducials (fixed)" and
"mold fiducials (moving)") placed where each image is drawn. The matched pairs (each
image's own physical mm, ITK x, y, z) go to ``on_pairs(names, fixed_xyz_mm,
moving_xyz_mm)``: in the registration dock's "Mold" mode that is the landmark
workflow (residuals, excludes, preview, save). Used alone, the panel draws the MPI
on the anatomy through the fit (:meth:`StudyController.register`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mpi_viewer.plugins._controller import ANATOMY, MPI, get_controller
from mpi_viewer.plugins._layers import install_mm_units, volume_from_layer
from mpi_viewer.plugins._points_pairs import world_from_physical_affine
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
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
from mpi_viewer.geometry.axes import xyz_to_zyx

BROWSE = "Browse…"
FIXED_POINTS = "mold fiducials (fixed)"
MOVING_POINTS = "mold fiducials (moving)"


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    step = Signal(float, str)


class MoldPanel(QWidget):
    """Pick a mold template and two images; detect, match and pair their fiducial wells.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    on_pairs : callable, optional
        ``on_pairs(names, fixed_xyz_mm, moving_xyz_mm)`` with the fiducials found in
        both images (mm, each image's own physical frame, ITK x, y, z).
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
        self._cancel = False
        self._followers: dict[str, tuple] = {}  # points layer name → (image layer, callback)
        self._relay = _Relay()
        self._relay.step.connect(self._on_step)
        self._build()
        for e in (self.ctl.events.roles, self.ctl.events.mpi, self.ctl.events.anatomy):
            e.connect(self._sync_layers)
        self.viewer.layers.events.reordered.connect(self._sync_layers)
        self._sync_layers()

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
        form.addRow("Template:", self.template_combo)
        form.addRow("Anatomy (MRI/CT):", self.fixed_combo)
        form.addRow("MPI (moves):", self.moving_combo)
        form.addRow("Tolerance:", self.tol_spin)
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

    # ------------------------------------------------------------------ work
    def detect(self, *, block: bool = False):
        """Detect, match and pair the wells; returns the worker (None when ``block`` or refused)."""
        from mpi_viewer.registration.molds import register_with_template

        fixed_layer, moving_layer = self.ctl.anatomy, self.ctl.mpi
        if fixed_layer is None or moving_layer is None:
            self._fail(
                "Mold registration: open an anatomy (MRI/CT) and an MPI image "
                "(set a layer's modality in the Image geometry dock)"
            )
            return None
        try:
            fixed, moving = volume_from_layer(fixed_layer), volume_from_layer(moving_layer)
        except MPIViewerError as exc:
            self._fail(str(exc))
            return None
        template, tol = self.template(), float(self.tol_spin.value())
        self._cancel = False

        def step(fraction, message):
            if self._cancel:
                raise CancelledError("mold detection cancelled")
            self._relay.step.emit(float(fraction), str(message))

        def run():
            return register_with_template(fixed, moving, template, tolerance_mm=tol, progress=step)

        layers = (fixed_layer, moving_layer)
        if block:
            try:
                result = run()
            except MPIViewerError as exc:
                self._on_error(exc)
            else:
                self._on_done(result, layers)
            return None

        from napari.qt.threading import thread_worker

        # errors go to our handler (a notification), not re-raised into Qt
        worker = thread_worker(run, ignore_errors=True)()
        worker.returned.connect(lambda result: self._on_done(result, layers))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.detect_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running detection at its next step."""
        self._cancel = True
        self.status.setText("Cancelling…")

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def _on_step(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(round(100 * fraction)))
        self.status.setText(message[:1].upper() + message[1:] + "…")

    def _on_finished(self) -> None:
        self._worker = None
        self.detect_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.progress.setVisible(False)

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

    def _on_done(self, result, layers) -> None:
        fixed_layer, moving_layer = layers
        self.result, self.error = result, None
        names = list(result.matched_names)
        if not self._embedded:  # in a host dock, the host's fiducial pairs show them
            for layer_name, image_layer, xyz in (
                (FIXED_POINTS, fixed_layer, result.fixed_xyz_mm),
                (MOVING_POINTS, moving_layer, result.moving_xyz_mm),
            ):
                self._put_points(layer_name, xyz, names, image_layer)
        self.status.setText(self._summary(result))
        self.status.setToolTip("\n".join(result.report_lines()))
        if self.on_pairs is not None:
            self.on_pairs(names, np.asarray(result.fixed_xyz_mm), np.asarray(result.moving_xyz_mm))
        elif fixed_layer is self.ctl.anatomy and moving_layer is self.ctl.mpi:
            try:  # alone: the MPI drawn on the anatomy through the template fit
                self.ctl.register(result.fit.matrix, result.fit.translation, source="template")
            except (ValueError, MPIViewerError) as exc:
                self._fail(f"Mold registration: the MPI could not be moved: {exc}")

    @staticmethod
    def _summary(result) -> str:
        """A few short lines: wells matched per image, what is missing, ambiguity, FRE."""
        lines = []
        for role, m in (("Fixed", result.fixed_match), ("Moving", result.moving_match)):
            n = len(m.pairs) + len(m.missing)
            miss = f"; not found: {', '.join(m.missing)}" if m.missing else ""
            lines.append(f"{role}: {len(m.pairs)}/{n} wells, RMS residual {m.rms_mm:.2f} mm{miss}")
        lines.append(
            f"Paired: {', '.join(result.matched_names)}; RMS FRE "
            f"{float(result.fit.rms_fre_mm):.2f} mm; match unambiguous"
        )
        return "\n".join(lines)

    def _put_points(self, name: str, xyz_mm: np.ndarray, names: list[str], image_layer) -> None:
        """Create or update a Points layer of named wells attached to ``image_layer``.

        The points are kept in the image's own physical frame (mm, z, y, x) with the
        image's physical → world map as the layer's ``affine``, so they are drawn where
        the image is drawn, now and after a registration moves it.
        """
        data = xyz_to_zyx(np.asarray(xyz_mm, dtype=float))
        features = {"name": np.asarray(names, dtype=object)}
        colour = "cyan" if name == FIXED_POINTS else "lime"
        # label beside the 3 mm marker (offset in mm, z, y, x), not on top of it
        text = {
            "string": "{name}",
            "color": colour,
            "size": 12,
            "anchor": "lower_left",
            "translation": [0.0, -1.6, 1.6],
        }
        affine = world_from_physical_affine(image_layer)
        meta = {
            "mpi_viewer": {
                "role": "mold fiducials",
                "fiducials_of": image_layer.name,
                "frame": "physical zyx mm of the image",
            }
        }
        if name in self.viewer.layers:
            lyr = self.viewer.layers[name]
            lyr.data = np.zeros((0, 3))
            lyr.affine = affine
            lyr.data = data
            lyr.features = features
            lyr.text = text
            lyr.metadata.update(meta)
        else:
            lyr = self.viewer.add_points(
                data,
                name=name,
                features=features,
                text=text,
                size=3.0,
                units=("mm",) * data.shape[1],
                affine=affine,
                face_color="transparent",
                border_color=colour,
                border_width=0.15,
                projection_mode="rescale_spherical",
                metadata=meta,
            )
        self._follow(lyr, image_layer)

    def _follow(self, points_layer, image_layer) -> None:
        """Keep ``points_layer`` on ``image_layer`` when its placement changes."""
        old = self._followers.pop(points_layer.name, None)
        if old is not None:
            old_image, callback = old
            for ev in (old_image.events.affine, old_image.events.scale, old_image.events.translate):
                ev.disconnect(callback)

        def callback(event=None, pts=points_layer, img=image_layer):
            if pts in self.viewer.layers and img in self.viewer.layers:
                pts.affine = world_from_physical_affine(img)

        for ev in (
            image_layer.events.affine,
            image_layer.events.scale,
            image_layer.events.translate,
        ):
            ev.connect(callback)
        self._followers[points_layer.name] = (image_layer, callback)
