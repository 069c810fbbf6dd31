"""Fiducial registration dock: click fiducial pairs, see the fit live, save the transform.

The dock reads two image layers (fixed: MRI/CT; moving: MPI), keeps two paired
Points layers (:mod:`._points_pairs`), calls :func:`mpi_viewer.registration.fit_landmarks`
on every point edit and draws the MPI in the fixed space through its layer affine
(:func:`._layers.apply_registration`, no resampling). All numbers are physical mm in
each image's own frame, ITK (x, y, z) order; the transform maps fixed → moving (ITK).

Expected target registration error: Fitzpatrick JM, West JB, Maurer CR. Predicting
error in rigid-body point-based registration. IEEE TMI 17(5):694-702, 1998.
doi:10.1109/42.736021
"""

from __future__ import annotations

import numpy as np
from mpi_viewer.plugins._controller import ANATOMY, MPI, get_controller
from mpi_viewer.plugins._layers import (
    install_mm_units,
    volume_from_layer,
    world_to_physical,
)
from mpi_viewer.plugins._points_pairs import PairedPoints, PairState
from mpi_viewer.plugins._registration_base import (
    COLUMNS,
    MODELS,
    _fmt_xyz,
    _reg,
    _warning_key,
)
from mpi_viewer.plugins._registration_edits import PairEditsMixin
from mpi_viewer.plugins._registration_files import TransformFilesMixin
from mpi_viewer.plugins._registration_refine import RefineMixin
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QTableWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer.errors import MPIViewerError


class RegistrationDock(PairEditsMixin, TransformFilesMixin, RefineMixin, QWidget):
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
        self._stop = False
        self._progress = 0.0
        self._build()
        self._preview_timer = QTimer(self, singleShot=True, interval=150)
        self._preview_timer.timeout.connect(self.update_preview)
        self._extent_timer = QTimer(self, singleShot=True, interval=300)
        self._extent_timer.timeout.connect(self._update_extent)
        self._poll = QTimer(self, interval=100)
        self._poll.timeout.connect(self._poll_progress)
        ev = self.viewer.layers.events
        for e in (ev.removed, ev.reordered):
            e.connect(self._sync_layer_combos)
        for e in (self.ctl.events.roles, self.ctl.events.mpi, self.ctl.events.anatomy):
            e.connect(self._sync_layer_combos)
        self.fixed_combo.activated.connect(self._on_fixed_chosen)
        self.moving_combo.activated.connect(self._on_moving_chosen)
        self.viewer.cursor.events.position.connect(self._on_cursor)
        self._sync_layer_combos()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(["Landmarks", "Mold"])
        self.fixed_combo = QComboBox(
            toolTip="Anatomical image the MPI is drawn onto (MRI or CT). "
            "A layer's role follows its modality (Image geometry dock)"
        )
        self.moving_combo = QComboBox(toolTip="Image that moves: the MPI (MPI layers only)")
        self.model_combo = QComboBox(
            toolTip="rigid: rotation + translation (never a reflection); "
            "similarity: + isotropic scale; affine: needs ≥ 4 non-coplanar pairs"
        )
        self.model_combo.addItems(MODELS)
        self.model_combo.currentTextChanged.connect(lambda _: self.update_preview())
        form.addRow("Mode:", self.mode_combo)
        form.addRow("Fixed (MRI/CT):", self.fixed_combo)
        form.addRow("Moving (MPI):", self.moving_combo)
        form.addRow("Model:", self.model_combo)
        lay.addLayout(form)

        self.stack = QStackedWidget()
        page = QWidget()
        row = QHBoxLayout(page)
        row.setContentsMargins(0, 0, 0, 0)
        self.start_btn = QPushButton(
            "Start", toolTip="Make the two fiducial Points layers; click fixed, then moving"
        )
        self.start_btn.clicked.connect(self.start)
        self.undo_btn = QPushButton(
            "Undo", toolTip="Undo the last point edit (Ctrl+Z in a fiducial layer)"
        )
        self.undo_btn.clicked.connect(self.undo)
        self.csv_btn = QToolButton(text="Points CSV", popupMode=QToolButton.InstantPopup)
        menu = QMenu(self.csv_btn)
        menu.addAction("Import fixed points…", lambda: self._ask_import("fixed"))
        menu.addAction("Import moving points…", lambda: self._ask_import("moving"))
        menu.addAction("Export fixed points…", lambda: self._ask_export("fixed"))
        menu.addAction("Export moving points…", lambda: self._ask_export("moving"))
        self.csv_btn.setMenu(menu)
        self.csv_btn.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        for w in (self.start_btn, self.undo_btn, self.csv_btn):
            row.addWidget(w)
        self.stack.addWidget(page)
        self.mold_panel = None
        try:
            from mpi_viewer.plugins._mold_panel import MoldPanel

            self.mold_panel = MoldPanel(self.viewer, on_pairs=self._pairs_from_mold, embedded=True)
            self.stack.addWidget(self.mold_panel)
        except Exception as exc:  # noqa: BLE001 - the mold panel is optional
            item = self.mode_combo.model().item(1)
            item.setEnabled(False)
            item.setToolTip(f"mold detection is not available ({type(exc).__name__})")
        self.mode_combo.currentIndexChanged.connect(self._set_mode)
        self._set_mode(0)
        lay.addWidget(self.stack)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        hdr = self.table.horizontalHeader()
        hdr.setSectionResizeMode(QHeaderView.ResizeToContents)
        hdr.setStretchLastSection(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setMinimumHeight(200)
        self.table.setToolTip(
            "Double-click a name to rename; untick 'use' to exclude a pair from the fit. "
            "Coordinates: each image's own physical frame (mm)"
        )
        self.table.itemChanged.connect(self._on_item_changed)
        lay.addWidget(self.table)
        row = QHBoxLayout()
        self.up_btn = QPushButton("▲ Up", clicked=lambda: self.move_pair(self._selected_name(), -1))
        self.down_btn = QPushButton(
            "▼ Down", clicked=lambda: self.move_pair(self._selected_name(), +1)
        )
        self.del_btn = QPushButton(
            "Delete pair", clicked=lambda: self.delete_pair(self._selected_name())
        )
        for w in (self.up_btn, self.down_btn, self.del_btn):
            row.addWidget(w)
        lay.addLayout(row)

        form = QFormLayout()
        defaults = _reg().RegistrationParams()
        self.fle_spin = QDoubleSpinBox(
            minimum=0.0,
            maximum=20.0,
            singleStep=0.05,
            decimals=2,
            value=defaults.fle_mm,
            suffix=" mm",
            toolTip="Fiducial localisation error (RMS, mm)",
        )
        self.tol_spin = QDoubleSpinBox(
            minimum=0.01,
            maximum=50.0,
            singleStep=0.1,
            decimals=2,
            value=defaults.fre_tolerance_mm,
            suffix=" mm",
            toolTip="FRE above this is flagged",
        )
        self.fle_spin.valueChanged.connect(lambda _: self._update_tre())
        self.tol_spin.valueChanged.connect(lambda _: self.update_preview())
        form.addRow("FLE:", self.fle_spin)
        form.addRow("FRE tolerance:", self.tol_spin)
        lay.addLayout(form)
        self.rms_label = QLabel("RMS FRE: —")
        lay.addWidget(self.rms_label)
        row = QHBoxLayout()
        self.tre_label = QLabel("Expected TRE: —")
        self.tre_label.setWordWrap(True)
        row.addWidget(self.tre_label, 1)
        self.pin_btn = QPushButton(
            "Pin target",
            checkable=True,
            toolTip="Freeze the TRE target at the current cursor position",
        )
        self.pin_btn.toggled.connect(self._pin_target)
        row.addWidget(self.pin_btn)
        lay.addLayout(row)
        self.warn_label = QLabel("")
        self.warn_label.setWordWrap(True)
        self.warn_label.setStyleSheet("color: rgb(230, 160, 40);")
        lay.addWidget(self.warn_label)

        box = QGroupBox("Transform (fixed → moving, ITK)")
        grid = QVBoxLayout(box)
        row = QHBoxLayout()
        self.resample_btn = QPushButton(
            "Resample",
            clicked=self.resample,
            toolTip="New layer: the MPI on the fixed grid (linear), display only",
        )
        self.save_btn = QPushButton("Save .tfm…", clicked=self._ask_save)
        self.load_btn = QPushButton("Load .tfm…", clicked=self._ask_load)
        for w in (self.resample_btn, self.save_btn, self.load_btn):
            row.addWidget(w)
        grid.addLayout(row)
        row = QHBoxLayout()
        self.apply_combo = QComboBox(toolTip="Layer to draw through the loaded transform")
        self.apply_btn = QPushButton(
            "Apply loaded", clicked=lambda: self.apply_loaded(self.apply_combo.currentText())
        )
        row.addWidget(QLabel("to:"))
        row.addWidget(self.apply_combo, 1)
        row.addWidget(self.apply_btn)
        grid.addLayout(row)
        row = QHBoxLayout()
        self.refine_btn = QPushButton(
            "Refine (intensity)",
            clicked=lambda: self.refine(),
            toolTip="Mattes mutual information, multi-resolution, from the landmark fit",
        )
        self.cancel_btn = QPushButton("Cancel", enabled=False, clicked=self.cancel_refine)
        row.addWidget(self.refine_btn)
        row.addWidget(self.cancel_btn)
        grid.addLayout(row)
        lay.addWidget(box)
        lay.addStretch(1)
        self.setMinimumWidth(470)

    def _set_mode(self, index: int) -> None:
        self.stack.setCurrentIndex(min(index, self.stack.count() - 1))
        for i in range(self.stack.count()):  # size the stack to the page shown
            policy = (
                QSizePolicy.Preferred if i == self.stack.currentIndex() else QSizePolicy.Ignored
            )
            self.stack.widget(i).setSizePolicy(policy, policy)
        self.stack.adjustSize()

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
            model=self.model_combo.currentText(),
            fle_mm=self.fle_spin.value(),
            fre_tolerance_mm=self.tol_spin.value(),
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

    def load_pairs(
        self,
        names,
        fixed_xyz_mm,
        moving_xyz_mm,
        *,
        fixed_layer=None,
        moving_layer=None,
        excluded=(),
        model: str | None = None,
    ) -> None:
        """Replace the fiducials by given pairs and fit.

        Parameters
        ----------
        names : sequence of str
            One name per pair.
        fixed_xyz_mm, moving_xyz_mm : array_like, shape (n, d)
            Positions in mm, ITK (x, y, z) order, each in its own image's physical
            frame (moving: the MPI as acquired, whatever its display transform).
        fixed_layer, moving_layer : napari layer or str, optional
            The images the points belong to (default: the dock's choice).
        excluded : sequence of str
            Pairs left out of the fit (still shown, with their residuals).
        model : {"rigid", "similarity", "affine"}, optional
            Sets the dock's model first.
        """
        if model is not None and model in MODELS:
            self.model_combo.blockSignals(True)
            self.model_combo.setCurrentText(model)
            self.model_combo.blockSignals(False)
        for chosen, role, choose in (
            (fixed_layer, ANATOMY, self.ctl.set_anatomy),
            (moving_layer, MPI, self.ctl.set_mpi),
        ):  # a named image of the right role becomes the study's; others are ignored
            layer = self._layer(getattr(chosen, "name", chosen)) if chosen is not None else None
            if layer is not None and self.ctl.role_of(layer) == role:
                choose(layer)
        chosen = (self.fixed_combo.currentText(), self.moving_combo.currentText())
        if (
            self.pairs is not None
            and self.pairs.alive()
            and chosen != (self.pairs.fixed_image.name, self.pairs.moving_image.name)
        ):
            self.pairs = None  # other images chosen: new fiducial layers
        if not self._ensure_started():
            return
        names = [str(n) for n in names]
        d = self.pairs.fixed.ndim
        f = np.asarray(fixed_xyz_mm, dtype=float).reshape(len(names), d)
        m = np.asarray(moving_xyz_mm, dtype=float).reshape(len(names), d)
        self._replace(
            PairState(
                names, f, list(names), m, frozenset(str(n) for n in excluded if str(n) in names)
            )
        )

    def landmarks(self) -> dict:
        """The fiducials as the session stores them: names, each image's own physical mm
        (x, y, z) of the pairs, excluded names, the model and the current fit's RMS FRE (mm)."""
        if self.pairs is None or not self.pairs.alive():
            return {
                "names": [],
                "fixed_xyz_mm": [],
                "moving_xyz_mm": [],
                "excluded": [],
                "model": self.model_combo.currentText(),
                "rms_fre_mm": None,
            }
        names, f, m = self.pairs.pairs()
        return {
            "names": names,
            "fixed_xyz_mm": f.tolist(),
            "moving_xyz_mm": m.tolist(),
            "excluded": [n for n in names if n in self.excluded],
            "model": self.model_combo.currentText(),
            "rms_fre_mm": None if self.fit is None else float(self.fit.rms_fre_mm),
            "fixed": self.pairs.fixed_image.name,
            "moving": self.pairs.moving_image.name,
        }

    def state(self) -> dict:
        """:meth:`landmarks` plus :attr:`params` (``RegistrationParams.to_dict()``), for sessions."""
        return {**self.landmarks(), "params": self.params.to_dict()}

    def restore(self, state: dict) -> None:
        """Set the parameters and the fiducial pairs of :meth:`state`, then fit (errors: notifications)."""
        try:
            p = _reg().RegistrationParams.from_dict(
                state.get("params") or {"model": state.get("model", "rigid")}
            )
            self.fle_spin.setValue(p.fle_mm)
            self.tol_spin.setValue(p.fre_tolerance_mm)
            if state.get("names"):
                self.load_pairs(
                    state["names"],
                    state["fixed_xyz_mm"],
                    state["moving_xyz_mm"],
                    fixed_layer=state.get("fixed"),
                    moving_layer=state.get("moving"),
                    excluded=state.get("excluded", ()),
                    model=state.get("model", p.model),
                )
            else:
                self.model_combo.setCurrentText(state.get("model", p.model))
        except (MPIViewerError, KeyError, TypeError, ValueError) as exc:
            show_error(f"Fiducial registration: landmarks not restored ({exc})")

    def _set_state(self, st: PairState) -> None:
        self._busy = True
        try:
            self.pairs.set_state(st)
        finally:
            self._busy = False

    def _pairs_from_mold(self, names, fixed_xyz_mm, moving_xyz_mm) -> None:
        """The mold panel's matched wells (found in the study's anatomy and MPI)."""
        self.load_pairs(names, fixed_xyz_mm, moving_xyz_mm)
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
        reg = _reg()
        names, f, m = self.pairs.pairs()
        warnings: list[str] = []
        only_f, only_m = self.pairs.unpaired()
        if only_f or only_m:
            warnings.append(
                "unpaired: "
                + ", ".join(
                    [f"{n} (fixed only)" for n in only_f] + [f"{n} (moving only)" for n in only_m]
                )
            )
        for which, xyz, image in (
            ("fixed", f, self.pairs.fixed_image),
            ("moving", m, self.pairs.moving_image),
        ):
            if len(names):
                outside = [
                    n
                    for n, inside in zip(
                        names, volume_from_layer(image).contains_physical(xyz), strict=True
                    )
                    if not inside
                ]
                if outside:
                    warnings.append(
                        f"{', '.join(outside)} outside the {which} image {image.name!r}"
                    )
        model = self.model_combo.currentText()
        self.fit = None
        too_few = False
        if names:
            try:
                self.fit = reg.fit_landmarks(
                    f,
                    m,
                    model=model,
                    names=names,
                    exclude=[n for n in names if n in self.excluded],
                    fle_mm=self.fle_spin.value(),
                    fre_tolerance_mm=self.tol_spin.value(),
                )
                warnings += list(self.fit.warnings)
            except MPIViewerError as exc:
                msg = str(exc)
                too_few = "pair" in msg.lower() and ("need" in msg.lower() or "few" in msg.lower())
                warnings.append(msg)
            except Exception as exc:  # noqa: BLE001 - keep the viewer and the points
                warnings.append(f"fit failed: {exc}")
        if self.fit is not None:
            try:
                self._draw(self.fit.matrix, self.fit.translation, self.fit)
            except Exception as exc:  # noqa: BLE001
                warnings.append(f"preview failed: {exc}")
            res = np.asarray(self.fit.residuals_mm, dtype=float)
            tol = self.tol_spin.value()
            over = [
                n
                for n, r, u in zip(names, res, self._used_mask(len(names)), strict=False)
                if u and r > tol
            ]
            if over:
                warnings.append(f"FRE above {tol:.2f} mm: {', '.join(over)}")
        self._refresh_table(names, f, m)
        self._update_labels()
        self._set_warnings(warnings, notify_too_few or not too_few)

    def _used_mask(self, n: int) -> np.ndarray:
        if self.fit is None:
            return np.zeros(n, bool)
        used = np.asarray(self.fit.used)
        if used.dtype == bool and used.size == n:
            return used
        mask = np.zeros(n, bool)
        mask[used.astype(int)] = True
        return mask

    def _draw(self, matrix, translation, source) -> None:
        """Draw the MPI on the anatomy through a fixed → moving transform (physical mm)."""
        kind = "landmarks" if hasattr(source, "residuals_mm") else "intensity"
        if source is not None and self.loaded_transform and source is self.loaded_transform[2]:
            kind = "file"
        self.ctl.register(matrix, translation, source=kind, live=True)
        self.pairs.follow_images()
        self._extent_timer.start()
        self.transform = (np.asarray(matrix, float), np.asarray(translation, float), source)

    def _update_extent(self) -> None:
        update = getattr(self.viewer, "_on_layers_change", None)
        if update is not None:
            update()

    def _set_warnings(self, warnings: list[str], notify: bool) -> None:
        self.warnings = warnings
        self.warn_label.setText("\n".join(f"⚠ {w}" for w in warnings))
        keys = {_warning_key(w) for w in warnings}  # a drag changes the numbers, not the warning
        if notify:
            for w in warnings:
                if _warning_key(w) not in self._notified:
                    show_warning(f"Fiducial registration: {w}")
        self._notified = keys if notify else self._notified & keys

    def _update_labels(self) -> None:
        if self.fit is None:
            self.rms_label.setText("RMS FRE: — (no fit)")
        else:
            n_used = int(self._used_mask(len(self.fit.residuals_mm)).sum())
            self.rms_label.setText(
                f"RMS FRE: {float(self.fit.rms_fre_mm):.3f} mm "
                f"({n_used} of {len(self.fit.residuals_mm)} pairs, {self.model_combo.currentText()})"
            )
        self._update_tre()

    def _on_cursor(self, event=None) -> None:
        if self.target_xyz is None and self.fit is not None and self.isVisible():
            self._update_tre()

    def _cursor_xyz(self):
        fixed = self.pairs.fixed_image
        pos = np.asarray(self.viewer.cursor.position, dtype=float)
        d = volume_from_layer(fixed).ndim
        if pos.size < d:
            return None
        return world_to_physical(fixed, pos[-d:])[0]

    def _update_tre(self) -> None:
        if self.fit is None or self.pairs is None:
            self.tre_label.setText("Expected TRE: —")
            return
        try:
            target = self.target_xyz if self.target_xyz is not None else self._cursor_xyz()
            if target is None:
                return
            tre = float(
                np.ravel(self.fit.expected_tre_mm(np.atleast_2d(target), self.fle_spin.value()))[0]
            )
        except Exception as exc:  # noqa: BLE001 - a label, never an error dialog
            self.tre_label.setText(f"Expected TRE: — ({exc})")
            return
        where = "target" if self.target_xyz is not None else "cursor"
        self.tre_label.setText(
            f"Expected TRE at {where}: {tre:.3f} mm (FLE {self.fle_spin.value():.2f} mm)"
        )
        self.tre_label.setToolTip(
            f"{where} at x, y, z = {_fmt_xyz(target)} mm in the fixed image; "
            "Fitzpatrick, West & Maurer 1998, doi:10.1109/42.736021"
        )

    def _pin_target(self, on: bool) -> None:
        self.set_target(self._cursor_xyz() if on and self.pairs is not None else None)

    def set_target(self, target_xyz=None) -> None:
        """Show the expected TRE at a target (fixed image, mm, x, y, z); ``None``: at the cursor."""
        self.target_xyz = None if target_xyz is None else np.asarray(target_xyz, dtype=float)
        self.pin_btn.blockSignals(True)
        self.pin_btn.setChecked(self.target_xyz is not None)
        self.pin_btn.blockSignals(False)
        self._update_tre()
