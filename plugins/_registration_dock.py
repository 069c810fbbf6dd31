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

import contextlib
import re
import time

import numpy as np
from mpi_viewer.plugins._layers import (
    add_volume,
    apply_registration,
    install_mm_units,
    is_display_twin,
    meta,
    modality_of,
    registered_affine,
    volume_from_layer,
    world_to_physical,
)
from mpi_viewer.plugins._points_pairs import PairedPoints, PairState, world_from_physical_affine
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
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
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer.errors import CancelledError, MPIViewerError
from mpi_viewer.geometry.axes import matrix_xyz_to_zyx, xyz_to_zyx, zyx_to_xyz
from mpi_viewer.geometry.transform import resample_to_fixed, transform_to_matrix
from mpi_viewer.io.transform_files import read_transform, write_transform

MODELS = ("rigid", "similarity", "affine")
COLUMNS = ("use", "name", "FRE (mm)", "fixed x, y, z (mm)", "moving x, y, z (mm)")
USE, NAME, FRE = 0, 1, 2  # column indices; rows are numbered by pair in the vertical header
GREEN, AMBER, RED = QColor(60, 160, 60), QColor(210, 150, 20), QColor(200, 50, 50)
#: CHANGED events closer than this (s) on the same points are one drag → one undo step.
DRAG_GAP_S = 0.5


def _reg():
    from mpi_viewer import registration

    return registration


def _warning_key(text: str) -> str:
    return re.sub(r"[-+]?\d+(\.\d+)?", "#", text)


def _fmt_xyz(p) -> str:
    return ", ".join(f"{v:.2f}" for v in p)


class RegistrationDock(QWidget):
    """Landmark (fiducial) registration of a moving image (MPI) to a fixed one (MRI/CT).

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        install_mm_units(self.viewer)  # world = physical mm, for every layer
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
        for e in (ev.inserted, ev.removed, ev.reordered):
            e.connect(self._sync_layer_combos)
        self.viewer.cursor.events.position.connect(self._on_cursor)
        self._sync_layer_combos()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(["Landmarks", "Mold"])
        self.fixed_combo = QComboBox(toolTip="Anatomical image the MPI is drawn onto (MRI or CT)")
        self.moving_combo = QComboBox(toolTip="Image that moves: the MPI")
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

            self.mold_panel = MoldPanel(
                self.viewer,
                on_pairs=self._pairs_from_mold,
                fixed_combo=self.fixed_combo,
                moving_combo=self.moving_combo,
            )
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

    def _image_layers(self):
        return [
            lyr
            for lyr in self.viewer.layers
            if type(lyr).__name__ == "Image" and not is_display_twin(lyr)
        ]

    def _sync_layer_combos(self, event=None) -> None:
        images = self._image_layers()
        names = [lyr.name for lyr in images]
        fixed_default = next(
            (lyr.name for lyr in images if modality_of(lyr) in ("MRI", "CT")), None
        )
        moving_default = next((lyr.name for lyr in images if modality_of(lyr) == "MPI"), None)
        for combo, default in (
            (self.fixed_combo, fixed_default),
            (self.moving_combo, moving_default),
            (self.apply_combo, moving_default),
        ):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            keep = current if current in names else default
            if keep in names:
                combo.setCurrentText(keep)
            combo.blockSignals(False)
        if self.pairs is not None and not self.pairs.alive():
            self.pairs = None
            self.fit = None

    def _layer(self, name: str):
        try:
            return self.viewer.layers[name]
        except (KeyError, ValueError):
            return None

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
        fixed, moving = (
            self._layer(self.fixed_combo.currentText()),
            self._layer(self.moving_combo.currentText()),
        )
        if (
            self.pairs is not None
            and self.pairs.alive()
            and (fixed, moving) == (self.pairs.fixed_image, self.pairs.moving_image)
        ):
            self._activate(self.pairs.fixed)  # same images: keep the fiducials, click on
            return True
        if fixed is None or moving is None:
            show_error(
                "Fiducial registration: choose a fixed (MRI/CT) and a moving (MPI) image layer"
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
        if fixed_layer is not None:
            self.fixed_combo.setCurrentText(getattr(fixed_layer, "name", fixed_layer))
        if moving_layer is not None:
            self.moving_combo.setCurrentText(getattr(moving_layer, "name", moving_layer))
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
        """The mold panel's matched wells, on the images chosen in the mold panel."""
        panel = self.mold_panel
        fixed = getattr(getattr(panel, "fixed_combo", None), "currentText", lambda: None)()
        moving = getattr(getattr(panel, "moving_combo", None), "currentText", lambda: None)()
        self.load_pairs(
            names,
            fixed_xyz_mm,
            moving_xyz_mm,
            fixed_layer=fixed or None,
            moving_layer=moving or None,
        )

    def _replace(self, st: PairState) -> None:
        self._set_state(st)
        self.excluded = set(st.excluded)
        self._record()
        self._notified.clear()
        self.update_preview(notify_too_few=True)

    # ------------------------------------------------------------ point edits
    def _on_points_data(self, event) -> None:
        if self._busy or self.pairs is None:
            return
        action = str(getattr(event, "action", "changed"))
        if action in ("adding", "removing", "changing"):
            return
        layer = event.source
        self._busy = True
        try:
            if action == "added":
                self.pairs.name_new_points(layer, getattr(event, "data_indices", None) or None)
                other = self.pairs.moving if layer is self.pairs.fixed else self.pairs.fixed
                QTimer.singleShot(0, lambda: self._activate(other))
            key = (id(layer), tuple(getattr(event, "data_indices", ()) or ()))
            self._record(drag_key=key if action == "changed" else None)
            self.pairs.restyle()
        except Exception as exc:  # noqa: BLE001 - never let an error escape into Qt
            show_error(f"Fiducial registration: {exc}")
        finally:
            self._busy = False
        if action == "changed" and layer is self.pairs.moving:
            self._preview_timer.start()  # a drag in the layer that the preview moves
        else:
            self.update_preview()

    def _activate(self, layer) -> None:
        if self.pairs is not None and layer in self.viewer.layers:
            self.viewer.layers.selection.active = layer
            layer.mode = "add"

    def _record(self, drag_key=None) -> None:
        """Push the previous state on the undo stack if the points changed."""
        cur = self.pairs.state(self.excluded)
        now = time.monotonic()
        if self._last is not None and not cur.same_as(self._last):
            same_drag = (
                drag_key is not None
                and drag_key == self._last_key
                and now - self._last_time < DRAG_GAP_S
            )
            if not same_drag:
                self._undo.append(self._last)
                del self._undo[:-200]
        self._last, self._last_key, self._last_time = cur, drag_key, now

    def undo(self) -> None:
        """Restore the fiducials as they were before the last edit."""
        if self.pairs is None or not self._undo:
            show_info("Fiducial registration: nothing to undo")
            return
        st = self._undo.pop()
        self._set_state(st)
        self.excluded = set(st.excluded)
        self._last, self._last_key = st, None
        self.update_preview()

    def _edit(self, fn) -> None:
        """Apply ``fn(state) -> state`` to the fiducials as one undoable edit."""
        if self.pairs is None:
            return
        try:
            st = fn(self.pairs.state(self.excluded))
        except (KeyError, ValueError) as exc:
            show_warning(f"Fiducial registration: {exc}")
            self._refresh_table()
            return
        self._replace(st)

    def rename_pair(self, old: str, new: str) -> None:
        """Rename a fiducial in both layers."""
        new = new.strip()

        def fn(st):
            if not new:
                raise ValueError("a fiducial name cannot be empty")
            if new != old and (new in st.fixed_names or new in st.moving_names):
                raise ValueError(f"the name {new!r} is already used")
            st.fixed_names = [new if n == old else n for n in st.fixed_names]
            st.moving_names = [new if n == old else n for n in st.moving_names]
            st.excluded = frozenset(new if n == old else n for n in st.excluded)
            return st

        self._edit(fn)

    def delete_pair(self, name: str | None) -> None:
        """Delete the fiducial called ``name`` from both layers."""
        if name is None:
            return

        def fn(st):
            fk = [i for i, n in enumerate(st.fixed_names) if n != name]
            mk = [i for i, n in enumerate(st.moving_names) if n != name]
            return PairState(
                [st.fixed_names[i] for i in fk],
                st.fixed_xyz[fk],
                [st.moving_names[i] for i in mk],
                st.moving_xyz[mk],
                st.excluded - {name},
            )

        self._edit(fn)

    def move_pair(self, name: str | None, step: int) -> None:
        """Move a fiducial up (``step=-1``) or down (``+1``) in the pair order."""
        if name is None:
            return

        def fn(st):
            order = list(range(len(st.fixed_names)))
            i = st.fixed_names.index(name)
            j = min(max(i + step, 0), len(order) - 1)
            order.insert(j, order.pop(i))
            st.fixed_names = [st.fixed_names[k] for k in order]
            st.fixed_xyz = st.fixed_xyz[order]
            return st

        self._edit(fn)
        self._select_row_of(name)

    def set_included(self, name: str, included: bool) -> None:
        """Use (``True``) or exclude a fiducial from the fit."""
        self._edit(
            lambda st: PairState(
                st.fixed_names,
                st.fixed_xyz,
                st.moving_names,
                st.moving_xyz,
                (st.excluded - {name}) if included else (st.excluded | {name}),
            )
        )

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
        """Draw the moving layer in world through a fixed → moving transform (physical mm)."""
        fixed, moving = self.pairs.fixed_image, self.pairs.moving_image
        m = np.asarray(matrix, dtype=float)
        t = np.asarray(translation, dtype=float)
        wf = world_from_physical_affine(fixed)  # fixed physical (zyx) → world (zyx)
        if not np.allclose(wf, np.eye(len(wf)), atol=1e-9):
            g = np.linalg.inv(wf)  # world → fixed physical, as a map on (x, y, z)
            d = len(g) - 1
            g_lin, g_t = matrix_xyz_to_zyx(g[:d, :d]), zyx_to_xyz(g[:d, d])
            m, t = m @ g_lin, m @ g_t + t
        vol = volume_from_layer(moving)
        placed = np.allclose(moving.scale[-vol.ndim :], xyz_to_zyx(vol.spacing_mm)) and not np.any(
            moving.translate
        )
        if not placed:
            apply_registration(moving, m, t, fixed_name=fixed.name)
            self.pairs.follow_images()
        else:
            # fast path for live edits: only the affines of the MPI and of its markers
            # change; the viewer's world-extent update (a third of each napari affine
            # set) is deferred and done once after the edits settle
            aff = registered_affine(vol, m, t)
            extent_update = getattr(self.viewer, "_on_layers_change", None)
            layers = (moving, self.pairs.moving)
            with contextlib.ExitStack() as stack:
                if extent_update is not None:
                    for lyr in layers:
                        stack.enter_context(lyr.events.affine.blocker(extent_update))
                if not np.allclose(moving.affine.affine_matrix, aff, rtol=0, atol=1e-12):
                    moving.affine = aff
                self.pairs.follow_images()
            if extent_update is not None:
                self._extent_timer.start()
            meta(moving)["transform_fixed_to_moving"] = {
                "matrix": m.tolist(),
                "translation": t.tolist(),
                "fixed": fixed.name,
            }
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
            f"Expected TRE at {where}: {tre:.3f} mm (FLE {self.fle_spin.value():.2f} mm; "
            f"{'affine formula' if self.fit.model == 'affine' else 'rigid-body formula'})"
        )
        self.tre_label.setToolTip(
            f"{where} at x, y, z = {_fmt_xyz(target)} mm in the fixed image; {self.fit.tre_formula}"
            + ("" if self.fit.model == "affine" else ", doi:10.1109/42.736021")
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

    # ------------------------------------------------------------------ table
    def _refresh_table(self, names=None, f=None, m=None) -> None:
        if self.pairs is None:
            self.table.setRowCount(0)
            return
        if names is None:
            names, f, m = self.pairs.pairs()
        res = (
            np.asarray(self.fit.residuals_mm, float)
            if self.fit is not None
            else np.full(len(names), np.nan)
        )
        tol = self.tol_spin.value()
        self.table.blockSignals(True)
        self.table.setRowCount(len(names))
        for r, name in enumerate(names):
            cells = [
                "",
                name,
                "—" if not np.isfinite(res[r]) else f"{res[r]:.3f}",
                _fmt_xyz(f[r]),
                _fmt_xyz(m[r]),
            ]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                flags = Qt.ItemIsSelectable | Qt.ItemIsEnabled
                if c == NAME:
                    flags |= Qt.ItemIsEditable
                if c == USE:
                    flags |= Qt.ItemIsUserCheckable
                    item.setCheckState(Qt.Unchecked if name in self.excluded else Qt.Checked)
                if c == FRE and np.isfinite(res[r]):
                    item.setBackground(
                        GREEN if res[r] < tol / 2 else AMBER if res[r] < tol else RED
                    )
                    item.setForeground(QColor("white"))
                    item.setToolTip("green < tolerance/2, amber < tolerance, red above")
                if c == FRE:
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                item.setFlags(flags)
                item.setData(Qt.UserRole, name)
                self.table.setItem(r, c, item)
        self.table.blockSignals(False)

    def _on_item_changed(self, item) -> None:
        name = item.data(Qt.UserRole)
        if item.column() == NAME and item.text() != name:
            QTimer.singleShot(0, lambda: self.rename_pair(name, item.text()))
        elif item.column() == USE:
            included = item.checkState() == Qt.Checked
            if included == (name in self.excluded):
                QTimer.singleShot(0, lambda: self.set_included(name, included))

    def _selected_name(self):
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            show_info("Fiducial registration: select a pair in the table first")
            return None
        return self.table.item(rows[0].row(), NAME).data(Qt.UserRole)

    def _select_row_of(self, name: str) -> None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, NAME).data(Qt.UserRole) == name:
                self.table.selectRow(r)

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
            t = read_transform(path)
            matrix, translation = transform_to_matrix(t)
        except (MPIViewerError, OSError, RuntimeError) as exc:
            show_error(f"{path}: {exc}")
            return False
        self.loaded_transform = (np.asarray(matrix, float), np.asarray(translation, float), t)
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

    # ------------------------------------------------------- resample, refine
    def _sitk_transform(self):
        src = self.transform[2]
        return src.to_sitk() if hasattr(src, "to_sitk") else src

    def resample(self):
        """Add the moving image resampled on the fixed grid (linear; display only)."""
        if self.pairs is None or self.transform is None:
            show_error("Fiducial registration: no transform yet (click at least 3 pairs)")
            return None
        try:
            vol = resample_to_fixed(
                volume_from_layer(self.pairs.moving_image),
                volume_from_layer(self.pairs.fixed_image),
                self._sitk_transform(),
            )
            return add_volume(
                self.viewer, vol, name=f"{self.pairs.moving_image.name} resampled (display only)"
            )
        except Exception as exc:  # noqa: BLE001
            show_error(f"Fiducial registration: resampling failed: {exc}")
            return None

    @property
    def refining(self) -> bool:
        return self._worker is not None

    def refine(self):
        """Refine the current transform by intensity in a worker thread; returns the worker.

        Tests wait with ``qtbot.waitUntil(lambda: not dock.refining)``.
        """
        if self.pairs is None or self.transform is None or self._worker is not None:
            show_error("Fiducial registration: refinement needs a landmark fit first")
            return None
        from napari.qt.threading import thread_worker
        from napari.utils import progress

        reg = _reg()
        fixed = volume_from_layer(self.pairs.fixed_image)
        moving = volume_from_layer(self.pairs.moving_image)
        initial = self._sitk_transform()
        self._stop = False
        self._progress = 0.0

        def on_progress(fraction, *args):
            self._progress = float(fraction)

        model = "affine" if self.model_combo.currentText() == "affine" else "rigid"
        spacing_mm = max(1.0, *moving.spacing_mm)  # the MPI resolution is ~1 mm or coarser

        @thread_worker
        def work():
            try:  # errors come back as values: the dock reports them, not napari's relay
                return True, reg.refine_intensity(
                    fixed,
                    moving,
                    initial,
                    model=model,
                    progress=on_progress,
                    should_stop=lambda: self._stop,
                    working_spacing_mm=spacing_mm,
                )
            except Exception as exc:  # noqa: BLE001
                return False, exc

        self._pbar = progress(total=100, desc="Refining registration (intensity)")
        self._pbar_n = 0
        worker = work()
        worker.returned.connect(self._refined)
        worker.finished.connect(self._refine_done)
        self._worker = worker
        self.refine_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self._poll.start()
        worker.start()
        return worker

    def cancel_refine(self) -> None:
        """Ask the running refinement to stop (it ends at its next iteration)."""
        self._stop = True

    def _poll_progress(self) -> None:
        n = int(min(max(self._progress, 0.0), 1.0) * 100)
        if n > self._pbar_n:
            self._pbar.update(n - self._pbar_n)
            self._pbar_n = n

    def _refined(self, outcome) -> None:
        ok, result = outcome
        if not ok:
            self._refine_failed(result)
            return
        if self.pairs is None or not self.pairs.alive():
            return
        t = getattr(result, "transform", result)
        try:
            matrix, translation = transform_to_matrix(t)
            self._draw(matrix, translation, t)
            show_info(
                "Fiducial registration: refined by intensity; FRE in the table is of the landmark fit"
            )
        except Exception as exc:  # noqa: BLE001
            show_error(f"Fiducial registration: refinement result unusable: {exc}")

    def _refine_failed(self, exc) -> None:
        if isinstance(exc, CancelledError) or self._stop:
            show_info("Fiducial registration: refinement cancelled; the landmark fit is kept")
        else:
            show_error(f"Fiducial registration: refinement failed: {exc}")

    def _refine_done(self) -> None:
        self._poll.stop()
        self._pbar.close()
        self._worker = None
        self.refine_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
