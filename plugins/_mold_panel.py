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
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QObject, Qt, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer.errors import CancelledError, MPIViewerError
from mpi_viewer.geometry.axes import xyz_to_zyx
from mpi_viewer.registration.molds import MAX_ROTATION_DEG

BROWSE = "Browse…"
FIXED_POINTS = "mold fiducials (fixed)"
MOVING_POINTS = "mold fiducials (moving)"
#: Columns of the candidate-pose table (one row per way of reading the wells).
POSE_COLUMNS = ("Pose", "Wells", "Turn (°)", "FRE (mm)", "Score")


def pose_record(result, template: str, tolerance_mm: float) -> dict:
    """How the pose of a mold registration was chosen, for the study's registration record.

    ``{"template" (name or file, as detected), "tolerance_mm", "pose" (1-based),
    "candidates" (how many), "decided_by" ("wells", "prior" or "user"),
    "max_rotation_deg"}``: a session saved and reopened, and ``replay``, reproduce the
    pose the user chose.
    """
    return {
        "template": str(template),
        "tolerance_mm": float(tolerance_mm),
        "pose": int(result.pose),
        "candidates": len(result.candidates),
        "decided_by": result.decided_by,
        "max_rotation_deg": result.max_rotation_deg,
    }


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

    def _build_pose_table(self, lay) -> None:
        """The candidate poses: hover a row to preview the MPI through it, click to use it."""
        self.pose_hint = QLabel(wordWrap=True)
        self.pose_table = QTableWidget(0, len(POSE_COLUMNS))
        self.pose_table.setHorizontalHeaderLabels(POSE_COLUMNS)
        tips = (
            "Candidate pose (✓: the one in use)",
            "Wells found in both images under this reading",
            "Rotation of the mold between the two scans under this reading (degrees)",
            "RMS fiducial registration error (mm)",
            "Match score: a precisely matched well counts 1 per image",
        )
        for col, tip in enumerate(tips):
            self.pose_table.horizontalHeaderItem(col).setToolTip(tip)
        self.pose_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.pose_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.pose_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.pose_table.verticalHeader().setVisible(False)
        self.pose_table.verticalHeader().setDefaultSectionSize(22)
        hdr = self.pose_table.horizontalHeader()
        hdr.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.pose_table.setMouseTracking(True)  # cellEntered: the hover preview
        self.pose_table.cellEntered.connect(lambda row, _col: self.preview_pose(row + 1))
        self.pose_table.cellClicked.connect(lambda row, _col: self.choose_pose(row + 1))
        self.pose_table.viewport().installEventFilter(self)
        self.pose_detail = QLabel(wordWrap=True)
        self.pose_detail.setMinimumWidth(260)
        for w in (self.pose_hint, self.pose_table, self.pose_detail):
            w.setVisible(False)
            lay.addWidget(w)
        lay.addStretch(1)  # the rows stay together at the top of a tall dock
        self._placement = None  # the MPI layer's placement saved while a preview is drawn
        self._previewed: int | None = None

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if obj is self.pose_table.viewport() and event.type() == QEvent.Type.Leave:
            self.end_preview()
        return False

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
        turn = float(self.turn_spin.value())
        self._cancel = False

        def step(fraction, message):
            if self._cancel:
                raise CancelledError("mold detection cancelled")
            self._relay.step.emit(float(fraction), str(message))

        def run():
            # undecided poses come back (strict=False) for the user to choose in the table
            return register_with_template(
                fixed,
                moving,
                template,
                tolerance_mm=tol,
                max_rotation_deg=turn,
                strict=False,
                progress=step,
            )

        layers = (fixed_layer, moving_layer)
        self._settings = {"template": template, "tolerance_mm": tol}
        self.end_preview()
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
        self._apply(result)

    def _apply(self, result) -> None:
        """Show the wells of ``result``'s pose and draw the MPI on the anatomy through it."""
        fixed_layer, moving_layer = self._layers
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
                self.ctl.register(
                    result.fit.matrix,
                    result.fit.translation,
                    source="template",
                    model=getattr(result.fit, "model", "rigid"),
                    pose=pose_record(result, **self._settings),
                )
            except (ValueError, MPIViewerError) as exc:
                self._fail(f"Mold registration: the MPI could not be moved: {exc}")

    # ------------------------------------------------------------ candidate poses
    def _fill_pose_table(self) -> None:
        """One row per candidate pose; shown when the wells fit more than one."""
        result = self.result
        cands = list(result.candidates) if result is not None else []
        several = len(cands) > 1
        for w in (self.pose_hint, self.pose_table, self.pose_detail):
            w.setVisible(several)
        self.pose_table.setRowCount(0)
        self.pose_detail.clear()
        if not several:
            return
        prior = result.max_rotation_deg
        if result.ambiguous:
            hint = (
                f"The wells fit {len(cands)} poses of the mold and the orientation prior cannot "
                "decide. Hover a pose to preview the MPI through it; click it to use it."
            )
        else:
            hint = (
                f"The wells fit {len(cands)} poses; pose {result.pose} is used. Hover a pose "
                "to preview it; click another to use it instead."
            )
        self.pose_hint.setText(hint)
        self.pose_table.setRowCount(len(cands))
        for row, c in enumerate(cands):
            used = not result.ambiguous and row == result.chosen
            beyond = not c.within_prior
            cells = (
                f"{'✓ ' if used else ''}{c.rank}",
                f"{len(c.matched_names)}" + (" ⚠" if c.unseen else ""),
                f"{c.rotation_deg:.0f}" + (f" > {prior:g}" if beyond and prior else ""),
                f"{float(c.fit.rms_fre_mm):.2f}",
                f"{c.score:.1f}",
            )
            tip = c.summary()
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if (col == 2 and beyond) or (col == 1 and c.unseen):
                    item.setForeground(QColor("orange"))
                if used:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.pose_table.setItem(row, col, item)
        if not result.ambiguous:
            self.pose_table.selectRow(result.chosen)
        height = self.pose_table.horizontalHeader().height() + 22 * len(cands) + 4
        self.pose_table.setFixedHeight(height)
        self._show_detail(result.chosen + 1 if not result.ambiguous else None)

    def _show_detail(self, n: int | None) -> None:
        """Below the table: what pose ``n`` reads (wells, turn, residuals, contradictions)."""
        if self.result is None or n is None:
            self.pose_detail.setText("")
            return
        c = self.result.candidates[n - 1]
        lines = [
            f"Pose {c.rank}: wells {', '.join(c.matched_names)}; mold turned "
            f"{c.rotation_deg:.0f}° between the scans"
            + ("" if c.within_prior else f" (beyond the {self.result.max_rotation_deg:g}° prior)")
        ]
        if c.cut_excluded:
            lines.append(
                f"left out of the fit (cut by the image edge): {', '.join(c.cut_excluded)}"
            )
        if c.unseen:
            lines.append(
                f"puts {', '.join(c.unseen)} in the anatomy's view where no well was found"
            )
        self.pose_detail.setText("\n".join(lines))

    def preview_pose(self, n: int) -> None:
        """Draw the MPI through candidate pose ``n`` (1-based) until the pointer leaves the table.

        Only the MPI layer's placement changes (the study's registration does not); it is
        put back by :meth:`end_preview`.
        """
        if self.result is None or not (1 <= n <= len(self.result.candidates)) or self.busy:
            return
        if n == self._previewed:
            return
        _fixed_layer, moving_layer = self._layers
        if moving_layer not in self.viewer.layers:
            return
        from mpi_viewer.plugins._layers import apply_registration, meta

        if self._placement is None:
            self._placement = (
                np.array(moving_layer.scale),
                np.array(moving_layer.translate),
                np.array(moving_layer.affine.affine_matrix),
                meta(moving_layer).get("transform_fixed_to_moving"),
            )
        c = self.result.candidates[n - 1]
        fixed = self.ctl.anatomy
        if fixed is None:
            return
        m, t = self.ctl._through_anatomy_world(fixed, np.asarray(c.fit.matrix), c.fit.translation)
        apply_registration(moving_layer, m, t, fixed_name=fixed.name)
        self._previewed = n
        self._show_detail(n)

    def end_preview(self) -> None:
        """Put the MPI back where it was before the preview (the study's registration)."""
        saved, self._placement = self._placement, None
        self._previewed = None
        if saved is None:
            return
        _fixed_layer, moving_layer = self._layers
        if moving_layer not in self.viewer.layers:
            return
        from mpi_viewer.plugins._layers import _install_2d_display_for, meta

        scale, translate, affine, record = saved
        if not np.allclose(moving_layer.scale, scale):
            moving_layer.scale = list(scale)
        if not np.allclose(moving_layer.translate, translate):
            moving_layer.translate = list(translate)
        if not np.allclose(moving_layer.affine.affine_matrix, affine):
            moving_layer.affine = affine
        if record is None:
            meta(moving_layer).pop("transform_fixed_to_moving", None)
        else:
            meta(moving_layer)["transform_fixed_to_moving"] = record
        _install_2d_display_for(moving_layer)
        r = self.result
        self._show_detail(None if r is None or r.ambiguous else r.pose)

    def choose_pose(self, n: int) -> None:
        """Use candidate pose ``n`` (1-based): the user's choice, applied and recorded."""
        if self.result is None or self.busy:
            return
        try:
            result = self.result.with_pose(int(n))
        except MPIViewerError as exc:
            self._fail(str(exc))
            return
        self.end_preview()
        self.result, self.error = result, None
        self._fill_pose_table()
        self._apply(result)

    @staticmethod
    def _summary(result) -> str:
        """A few short lines: wells matched per image, what is missing, ambiguity, FRE."""
        lines = []
        for role, m in (("Fixed", result.fixed_match), ("Moving", result.moving_match)):
            n = len(m.pairs) + len(m.missing)
            miss = f"; not found: {', '.join(m.missing)}" if m.missing else ""
            lines.append(f"{role}: {len(m.pairs)}/{n} wells, RMS residual {m.rms_mm:.2f} mm{miss}")
        if result.ambiguous:
            lines.append("Nothing moved: choose a pose below.")
        else:
            lines.append(
                f"Paired: {', '.join(result.matched_names)}; RMS FRE "
                f"{float(result.fit.rms_fre_mm):.2f} mm"
            )
        lines.append(result.decision_line())  # how the pose was chosen (wells, prior, user)
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
            # each property set costs napari a refresh: set only what changes (a pose
            # switched in the table keeps the wells' count, so data and names suffice)
            if len(lyr.data) != len(data):
                lyr.data = np.zeros((0, 3))
            if not np.allclose(lyr.affine.affine_matrix, affine):
                lyr.affine = affine
            lyr.features = features
            lyr.data = data
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
        lyr.mode = "pan_zoom"  # found, not to be clicked: the next click adds no well
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
