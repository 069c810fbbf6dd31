"""MPI ROIs dock: click near a hot spot, get its ROI and signal statistics.

Thin: reads the study's MPI layer from the viewer's controller (:mod:`._controller`;
only MPI images are offered, and replacing the MPI asks before discarding ROIs), calls
:func:`mpi_viewer.roi.measure` on the seeds, writes a Labels layer on the MPI grid
(same placement as the MPI layer, so it follows the registration over the MRI) and a
table with units. Clicks are in world coordinates (the MPI's own or, once
registered, the MRI's): :func:`world_to_physical` turns them into the MPI's mm.

"Click hot spots" is a mode (:class:`._canvas_clicks.ClickMode`): every plain click
adds an ROI, in 2-D and 3-D (the brightest MPI voxel under the cursor), until the
user leaves it. ROIs are named in the table, deleted, and undone with Ctrl+Z.

The ROI definitions and results are published to the controller
(``StudyController.rois`` / ``roi_results``); ``ROIDock.results`` and
``ROIDock.params`` stay for the docks that still read them.
"""

from __future__ import annotations

from mpi_viewer.plugins._canvas_clicks import ClickMode
from mpi_viewer.plugins._controller import MPI, get_controller
from mpi_viewer.plugins._layers import (
    copy_placement,
    find_layers,
    install_mm_units,
    volume_from_layer,
)
from mpi_viewer.plugins._roi_files import ROIFilesMixin
from mpi_viewer.plugins._roi_manual import MANUAL, PAINT_LAYER, SHAPES_LAYER, ManualROIsMixin
from mpi_viewer.plugins._roi_params import _METHOD_TEXT, ROIParamsMixin, _spin
from mpi_viewer.plugins._roi_results import _COLUMNS, LABELS_LAYER, ROIResultsMixin
from mpi_viewer.plugins._roi_seeds import SEED_LAYER, SeedEditsMixin  # noqa: F401 - re-exported
from mpi_viewer.plugins._roi_session import ROISessionMixin
from napari.utils import notifications
from qtpy.QtGui import QKeySequence, QShortcut
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer.errors import InputError
from mpi_viewer.roi.regions import METHODS, ROIParams, measure


class ROIDock(
    ROIParamsMixin,
    ROIResultsMixin,
    ROISessionMixin,
    ROIFilesMixin,
    SeedEditsMixin,
    ManualROIsMixin,
    QWidget,
):
    """Quantification ROIs: one click, one ROI, on the native MPI grid."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        install_mm_units(self.viewer)  # world = physical mm, for every layer
        self.ctl = get_controller(napari_viewer)
        self.ctl.provide_section("rois", self)
        self.clicks = ClickMode(napari_viewer, self._on_canvas_click, lambda: self.mpi_layer)
        self._queue: list[tuple] = []  # (seed, name or None) clicked, waiting to be measured
        self._worker = None  # the measurement running off the GUI thread
        self._history: list[tuple[list, list]] = []  # (seeds, names) before each edit
        self.results: list = []
        self.params = ROIParams()
        self._seeds_mm: list[tuple[float, ...]] = []
        self._names: list[str] = []
        self._counter = 0
        self._seed_layer = None
        self._labels_layer = None
        self._syncing = False
        self._filling = False  # the table is being filled: no rename
        self._manual: list = []  # manual ROI results (polygons / painted labels), after the seeded ones
        self._manual_layer = None
        self._manual_names: dict[int, str] = {}  # painted label → ROI name (restored sessions)
        self._gone_layer: str | None = None  # the MPI layer the ROIs were made on, since removed

        self.layer_combo = QComboBox()
        self.method = QComboBox()
        for m in METHODS:
            self.method.addItem(_METHOD_TEXT[m], m)
        self.method.addItem("manual (polygons in 2-D, painting in 3-D)", MANUAL)
        from mpi_viewer.defaults import HALFMAX_FRACTION, N_SD

        self.fraction = _spin(0.05, 0.95, HALFMAX_FRACTION, 2, 0.05, " of peak")
        self.n_sd = _spin(0.5, 100, N_SD, 1, 0.5, " × SD")
        self.noise_sd = _spin(0.0, 1e9, 0.0, 4, 0.1, " a.u.", special="automatic")
        self.background = QComboBox()
        self.background.setToolTip(
            "A Labels layer painted on the MPI grid over background only: "
            "the noise SD is the SD of its voxels (Ureña Horno 2025)"
        )
        self.radius = _spin(0.1, 100, 3.0, 1, 0.5, " mm")
        self.sat_btn = QPushButton("Saturation curve CSV…")
        self.sat_btn.setToolTip(
            "Receiver response (measured,true signal), applied before any statistic "
            "(Ureña Horno 2025)"
        )
        self.sat_btn.clicked.connect(self._saturation_dialog)
        self.split = QCheckBox("split nearby sources (subtract neighbours' PSF)")
        self.split.setChecked(True)
        self.status = QLabel("Press 'Click hot spots', then click each hot spot.")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("MPI layer", self.layer_combo)
        form.addRow("method", self.method)
        form.addRow("half-max fraction", self.fraction)
        form.addRow("n·SD threshold", self.n_sd)
        form.addRow("noise SD", self.noise_sd)
        form.addRow("noise from background", self.background)
        form.addRow("search radius", self.radius)
        form.addRow("receiver saturation", self.sat_btn)
        form.addRow(self.split)

        self.click_btn = QPushButton("Click hot spots", checkable=True)
        self.click_btn.setToolTip(
            "While pressed, each click on a hot spot (2-D or 3-D, MPI or registered view) "
            "makes an ROI; press again to stop"
        )
        self.click_btn.toggled.connect(self._on_click_toggled)
        self.undo_btn = QPushButton("Undo", toolTip="Undo the last ROI edit (Ctrl+Z)")
        self.undo_btn.clicked.connect(self.undo)
        QShortcut(QKeySequence.StandardKey.Undo, self, activated=self.undo)
        self.remove_btn = QPushButton("Remove selected")
        self.remove_btn.clicked.connect(self.remove_selected)
        self.clear_btn = QPushButton("Clear")
        self.clear_btn.clicked.connect(self.clear)
        self.manual_btn = QPushButton("Measure painted")
        self.manual_btn.setToolTip(
            f"Measure every label painted in '{PAINT_LAYER}' (3-D) or every polygon "
            f"of '{SHAPES_LAYER}' (2-D) as a manual ROI"
        )
        self.manual_btn.clicked.connect(lambda: self._guarded(self.measure_manual))
        row1 = QHBoxLayout()
        for b in (self.click_btn, self.undo_btn, self.remove_btn, self.clear_btn, self.manual_btn):
            row1.addWidget(b)

        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setEditTriggers(
            QAbstractItemView.DoubleClicked | QAbstractItemView.EditKeyPressed
        )
        self.table.setToolTip("Double-click an ROI's name to rename it")
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.setMinimumHeight(160)
        self._set_headers(3)

        self.csv_btn = QPushButton("Export CSV…")
        self.csv_btn.clicked.connect(self._export_csv_dialog)
        self.masks_btn = QPushButton("Save masks (NIfTI)…")
        self.masks_btn.clicked.connect(self._save_masks_dialog)
        row2 = QHBoxLayout()
        row2.addWidget(self.csv_btn)
        row2.addWidget(self.masks_btn)

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(row1)
        lay.addWidget(self.table)
        lay.addLayout(row2)
        lay.addWidget(self.status)

        for w in (self.fraction, self.n_sd, self.noise_sd, self.radius):
            w.valueChanged.connect(self._on_params_changed)
        self.method.currentIndexChanged.connect(self._on_params_changed)
        self.split.toggled.connect(self._on_params_changed)
        self.background.currentIndexChanged.connect(self._on_params_changed)
        self.layer_combo.activated.connect(self._on_layer_chosen)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.ctl.events.roles.connect(self._refresh_layers)
        self.ctl.events.mpi.connect(self._on_mpi_changed)
        self.ctl.events.registration.connect(self._follow_mpi)
        self.viewer.bind_key("Control-z", lambda _viewer: self.undo(), overwrite=True)
        self._refresh_layers()
        self._update_enabled()

    # -- layers -------------------------------------------------------------------------------
    @property
    def mpi_layer(self):
        """The study's MPI layer (the controller's), None if there is none."""
        return self.ctl.mpi

    def _refresh_layers(self, event=None) -> None:
        bg = self.background.currentText()
        bg_names = ["(automatic estimate)"] + [
            lyr.name
            for lyr in find_layers(self.viewer, kind="labels")
            if lyr.name not in (LABELS_LAYER, PAINT_LAYER)
        ]
        if bg_names != [self.background.itemText(i) for i in range(self.background.count())]:
            self.background.blockSignals(True)
            self.background.clear()
            self.background.addItems(bg_names)
            if bg in bg_names:
                self.background.setCurrentText(bg)
            self.background.blockSignals(False)
        mpis = self.ctl.layers(MPI)  # only MPI images: never the anatomy
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems([lyr.name for lyr in mpis])
        self.layer_combo.setCurrentIndex(
            next((i for i, lyr in enumerate(mpis) if lyr is self.ctl.mpi), -1)
        )
        self.layer_combo.blockSignals(False)

    def _on_layer_chosen(self, index: int) -> None:
        """The user picked another MPI: the controller asks before discarding the ROIs."""
        name = self.layer_combo.itemText(index)
        layer = next((lyr for lyr in self.ctl.layers(MPI) if lyr.name == name), None)
        if layer is not None:
            self.ctl.set_mpi(layer)
        self._refresh_layers()

    def _on_mpi_changed(self, layer) -> None:
        self._refresh_layers()
        if layer is None:  # the MPI layer was removed: the ROIs stay, without a layer shown
            if self._seeds_mm or self._manual:
                self._gone_layer = self._gone_layer or (
                    self._labels_layer.metadata.get("mpi_viewer", {}).get("grid_of")
                    if self._labels_layer is not None
                    else None
                )
            return
        if not self.ctl.rois and (self._seeds_mm or self._manual):
            self.clear()  # the controller discarded them (the user said yes)
        self._gone_layer = None

    def _follow_mpi(self, registration=None) -> None:
        """Keep the ROI labels drawn where the MPI is drawn (after a registration)."""
        mpi, labels = self.mpi_layer, self._labels_layer
        if mpi is not None and labels is not None and labels in self.viewer.layers:
            copy_placement(mpi, labels)

    def _volume(self):
        layer = self.mpi_layer
        if layer is None:
            raise InputError("no MPI image layer: open an MPI image (or the demo) first")
        return volume_from_layer(layer)

    def recompute(self) -> None:
        """Measure every seed again (after a parameter or layer change)."""
        if not self._seeds_mm:
            self._set_results([])
            return
        try:
            out = measure(
                self._volume(), self._seeds_mm, self.params, names=self._names, on_error="skip"
            )
        except InputError as exc:
            notifications.show_error(str(exc))
            return
        for _, msg in out.errors:
            notifications.show_warning(msg)
        bad = {i for i, _ in out.errors}
        self._seeds_mm = [s for i, s in enumerate(self._seeds_mm) if i not in bad]
        self._names = [n for i, n in enumerate(self._names) if i not in bad]
        self._set_results(list(out))
        self._sync_points()

    def _guarded(self, fn, *args, done: str = "") -> None:
        try:
            fn(*args)
        except (InputError, OSError) as exc:
            notifications.show_error(str(exc))
            return
        if done:
            notifications.show_info(done)
