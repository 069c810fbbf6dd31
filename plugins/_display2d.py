"""Correct 2-D slices of layers whose data → world transform is oblique.

napari (0.9) slices a layer only along its own data axes: when a layer's
data → world linear part mixes a sliced world axis with the displayed ones (the
MPI drawn in the MRI's space through a registration with a few degrees of rotation,
an oblique MRI), the 2-D view shows the data slice *without* the out-of-slice
rotation ("Non-orthogonal slicing … displayed without applying an out-of-slice
rotation"), i.e. displaced by up to several mm. 3-D views and data ↔ world
coordinates are right. (Oblique 2-D slicing is napari PR #9337, not released.)

The fix here is display-only. A per-viewer :class:`Display2D` controller
(:func:`install_2d_display`) gives every such Image or Labels layer a *display twin*:
the layer resampled (SimpleITK; linear for images, nearest neighbour for labels)
onto a grid aligned with the world axes that covers the layer's world extent at the
layer's own voxel spacing, placed with ``scale``/``translate`` only, so napari
slices it exactly. In 2-D the twin is drawn and the native layer's drawing (its
vispy node, not its ``visible`` property) is suppressed; in 3-D the twin is hidden
and the native drawn. The native layer stays the one the user and the docks work
with: its ``visible``, contrast, colormap, opacity and blending are mirrored to the
twin, and edits the user makes on the twin (contrast, colormap, gamma, opacity,
blending, visibility) are passed back to the native. Changes of the native's
placement (the registration dock's live preview) or data (ROIs recomputed) are
resampled after a debounce (:data:`DEBOUNCE_MS`) on a worker thread.

The twin is named ``"<name> (2-D view)"``, locked against deletion, placed just
above its native layer and marked ``metadata["mpi_viewer"]["display_twin_of"]``;
``find_layers`` and the docks' layer pickers skip it, ``volume_from_layer`` refuses
it, so twins are never quantified or saved.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from mpi_viewer.plugins import _napari_compat as compat
from mpi_viewer.plugins._layers import TWIN_KEY, is_display_twin, layer_kind, meta

from mpi_viewer.geometry.axes import matrix_xyz_to_zyx, zyx_to_xyz

#: Debounce before re-resampling after the native layer changed (ms).
DEBOUNCE_MS = 250

#: Suffix of a display twin's layer name.
TWIN_SUFFIX = " (2-D view)"

#: Relative size below which an off-axis entry of the linear part counts as zero.
_AXIS_TOL = 1e-6

#: Display properties mirrored native → twin (and, for the first five, back).
_IMAGE_PROPS = ("contrast_limits", "colormap", "gamma", "opacity", "blending", "interpolation2d")
_LABELS_PROPS = ("colormap", "opacity", "blending", "contour")
_BACK_PROPS = ("contrast_limits", "colormap", "gamma", "opacity", "blending")

_CONTROLLERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ----------------------------------------------------------------------------- geometry
def data_to_world_matrix(layer) -> np.ndarray:
    """The layer's full data → world affine, (d+1)×(d+1), napari (z, y, x) order.

    Built from :meth:`napari.layers.Layer.data_to_world` on the origin and the unit
    index vectors (the map is affine, so this is exact): world mm per data index.
    """
    d = layer.ndim
    o = np.asarray(layer.data_to_world(np.zeros(d)), dtype=float)[-d:]
    cols = [np.asarray(layer.data_to_world(np.eye(d)[j]), dtype=float)[-d:] - o for j in range(d)]
    out = np.eye(d + 1)
    out[:d, :d] = np.stack(cols, axis=1)
    out[:d, d] = o
    return out


def is_axis_aligned(matrix) -> bool:
    """Whether a linear part (world × data) is a scaled permutation (napari slices it exactly)."""
    a = np.abs(np.asarray(matrix, dtype=float))
    big = a > _AXIS_TOL * max(float(a.max()), 1e-30)
    return bool(np.all(big.sum(axis=0) == 1) and np.all(big.sum(axis=1) == 1))


def needs_twin(layer) -> bool:
    """Whether napari would draw this layer's 2-D slices displaced (3-D Image/Labels, oblique)."""
    if is_display_twin(layer) or layer_kind(layer) not in ("image", "labels"):
        return False
    if layer.ndim != 3 or getattr(layer, "multiscale", False) or getattr(layer, "rgb", False):
        return False
    return not is_axis_aligned(data_to_world_matrix(layer)[:-1, :-1])


def world_aligned_grid(affine, shape_zyx) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """A grid aligned with the world axes covering a layer's voxel centres.

    Parameters
    ----------
    affine : (4, 4) array
        Data index → world mm, (z, y, x).
    shape_zyx : tuple of int
        The layer's data shape.

    Returns
    -------
    spacing_mm, origin_mm : (3,) arrays, (z, y, x)
        Along each world axis, the length (mm) of the data axis most aligned with it;
        the world position of the grid's first voxel centre.
    shape : tuple of int
        Grid shape (z, y, x) reaching the far corner of the layer's extent.
    """
    a = np.asarray(affine, dtype=float)
    d = len(shape_zyx)
    lin, off = a[:d, :d], a[:d, d]
    spacing = np.array([np.linalg.norm(lin[:, int(np.argmax(np.abs(lin[k])))]) for k in range(d)])
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape_zyx], indexing="ij")).reshape(d, -1)
    world = lin @ corners + off[:, None]
    lo, hi = world.min(axis=1), world.max(axis=1)
    shape = tuple(int(np.floor((hi[k] - lo[k]) / spacing[k] + 1e-6)) + 1 for k in range(d))
    return spacing, lo, shape


def resample_world_aligned(data, affine, *, labels: bool, cval: float = 0.0):
    """Resample a 3-D array placed by ``affine`` onto a world-aligned grid (display only).

    Parameters
    ----------
    data : array (z, y, x)
        The layer's data.
    affine : (4, 4) array
        Data index → world mm, (z, y, x) (:func:`data_to_world_matrix`).
    labels : bool
        Nearest neighbour and the input dtype (labels) or linear and float32 (images).
    cval : float
        Value outside the layer's extent.

    Returns
    -------
    array, scale_mm, translate_mm
        The resampled array (z, y, x) and the napari ``scale``/``translate`` placing it.
    """
    import SimpleITK as sitk

    a = np.asarray(affine, dtype=float)
    arr = np.asarray(data)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif not labels and arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    spacing, origin, shape = world_aligned_grid(a, arr.shape)
    img = sitk.GetImageFromArray(arr)  # unit spacing, zero origin: physical = index (x, y, z)
    inv = np.linalg.inv(a[:3, :3])
    tfm = sitk.AffineTransform(3)  # world (x, y, z) → data index (x, y, z)
    tfm.SetMatrix(matrix_xyz_to_zyx(inv).ravel().tolist())
    tfm.SetTranslation(zyx_to_xyz(-inv @ a[:3, 3]).tolist())
    out = sitk.Resample(
        img,
        [int(n) for n in zyx_to_xyz(shape)],
        tfm,
        sitk.sitkNearestNeighbor if labels else sitk.sitkLinear,
        zyx_to_xyz(origin).tolist(),
        zyx_to_xyz(spacing).tolist(),
        np.eye(3).ravel().tolist(),
        float(cval),
        img.GetPixelID() if labels else sitk.sitkFloat32,
    )
    return sitk.GetArrayFromImage(out), spacing, origin


# --------------------------------------------------------------------------- controller
def install_2d_display(viewer) -> Display2D:
    """The viewer's :class:`Display2D` controller, created and connected on first call."""
    viewer = _real(viewer)
    ctl = _CONTROLLERS.get(viewer)
    if ctl is None:
        ctl = Display2D(viewer)
        _CONTROLLERS[viewer] = ctl
    return ctl


def controller_of(viewer) -> Display2D | None:
    """The viewer's controller if :func:`install_2d_display` was called, else None."""
    return _CONTROLLERS.get(_real(viewer))


def _real(obj):
    """The napari object behind the PublicOnlyProxy a dock opened from the menu receives."""
    return getattr(obj, "__wrapped__", obj)


class _Entry:
    """Book-keeping for one native layer."""

    def __init__(self, native):
        self.native_ref = weakref.ref(native)
        self.twin = None
        self.generation = 0  # bumped by every change needing a resample
        self.done = -1  # generation the twin shows
        self.timer = None
        self.worker = None
        self.declined = False  # the user deleted the twin: leave the layer alone

    @property
    def native(self):
        return self.native_ref()


class Display2D:
    """Keeps display twins of oblique layers and swaps them with the natives on 2-D ↔ 3-D.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer whose layers to watch. Layers present now are handled at once.
    threaded : bool
        Resample on a worker thread (default); ``False`` resamples on the GUI thread.
    """

    def __init__(self, viewer, *, threaded: bool = True):
        self._viewer_ref = weakref.ref(viewer)
        self.threaded = threaded
        self._entries: dict[int, _Entry] = {}
        self._busy = False  # guards against our own property sets echoing back
        viewer.dims.events.ndisplay.connect(self._on_ndisplay)
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        viewer.layers.events.moved.connect(self._on_moved)
        for layer in list(viewer.layers):
            self._watch(layer)

    # ---- public
    @property
    def viewer(self):
        return self._viewer_ref()

    def twin_of(self, layer):
        """The display twin of a native layer (None if it has none)."""
        e = self._entries.get(id(_real(layer)))
        return None if e is None else e.twin

    def flush(self) -> None:
        """Do every pending resample now, on the calling thread (tests, screenshots)."""
        for e in list(self._entries.values()):
            if e.timer is not None:
                e.timer.stop()
            if e.native is not None and e.done != e.generation and self._wanted(e.native):
                self._resample(e, threaded=False)

    # ---- watching layers
    def _watch(self, layer) -> None:
        if (
            is_display_twin(layer)
            or layer_kind(layer) not in ("image", "labels")
            or id(layer) in self._entries
        ):
            return
        e = _Entry(layer)
        self._entries[id(layer)] = e
        ev = layer.events
        for name in ("affine", "scale", "translate", "rotate", "shear", "data"):
            getattr(ev, name).connect(self._on_geometry)
        if hasattr(ev, "labels_update"):
            ev.labels_update.connect(self._on_geometry)
        props = _LABELS_PROPS if layer_kind(layer) == "labels" else _IMAGE_PROPS
        for name in props:
            if hasattr(ev, name):
                getattr(ev, name).connect(self._on_native_prop)
        ev.visible.connect(self._on_native_visible)  # after napari's own handler ('last')
        ev.set_data.connect(self._on_native_drawn)
        ev.name.connect(self._on_native_name)
        self._schedule(e, delay_ms=0)

    def _unwatch(self, layer) -> None:
        e = self._entries.pop(id(layer), None)
        if e is None:
            return
        if e.timer is not None:
            e.timer.stop()
        ev = layer.events
        for name in (
            "affine",
            "scale",
            "translate",
            "rotate",
            "shear",
            "data",
            "labels_update",
            *_IMAGE_PROPS,
            "contour",
            "visible",
            "set_data",
            "name",
        ):
            emitter = getattr(ev, name, None)
            if emitter is None:
                continue
            for cb in (
                self._on_geometry,
                self._on_native_prop,
                self._on_native_visible,
                self._on_native_drawn,
                self._on_native_name,
            ):
                try:
                    emitter.disconnect(cb)
                except Exception:  # noqa: BLE001 - not connected to this one
                    pass
        if e.twin is not None and e.twin in self.viewer.layers:
            self._busy = True
            try:
                self.viewer.layers.remove(e.twin)
            finally:
                self._busy = False

    def _entry_of(self, layer) -> _Entry | None:
        return self._entries.get(id(layer))

    def _native_of_twin(self, twin) -> _Entry | None:
        for e in self._entries.values():
            if e.twin is twin:
                return e
        return None

    def _wanted(self, layer) -> bool:
        """Whether this native layer should have an up-to-date twin now."""
        e = self._entry_of(layer)
        return (
            e is not None
            and not e.declined
            and self.viewer.dims.ndisplay == 2
            and needs_twin(layer)
        )

    # ---- events
    def _on_inserted(self, event) -> None:
        if not self._busy:
            self._watch(event.value)

    def _on_removed(self, event) -> None:
        layer = event.value
        if self._busy:
            return
        if is_display_twin(layer):
            e = self._native_of_twin(layer)
            if e is not None:  # removed by the user (or a dock): stop twinning that layer
                e.twin = None
                e.declined = True
                if e.native is not None:
                    self._show_native(e.native)
            return
        self._unwatch(layer)

    def _on_moved(self, event) -> None:
        if self._busy:
            return
        for e in self._entries.values():
            self._place_twin(e)

    def _on_ndisplay(self, event=None) -> None:
        for e in list(self._entries.values()):
            if e.native is None:
                continue
            if self._wanted(e.native) and e.done != e.generation:
                self._schedule(e, delay_ms=0)
            self._apply_visibility(e)

    def _on_geometry(self, event) -> None:
        e = self._entry_of(event.source)
        if e is None:
            return
        e.generation += 1
        if self._wanted(e.native):
            self._schedule(e)
        elif e.twin is not None and not needs_twin(e.native):
            self._drop_twin(e)

    def _on_native_prop(self, event) -> None:
        e = self._entry_of(event.source)
        if e is not None and e.twin is not None and not self._busy:
            self._copy_props(e.native, e.twin, (event.type,))

    def _on_twin_prop(self, event) -> None:
        e = self._native_of_twin(event.source)
        if e is not None and e.native is not None and not self._busy:
            self._copy_props(e.twin, e.native, (event.type,))

    def _on_native_visible(self, event) -> None:
        e = self._entry_of(event.source)
        if e is not None and not self._busy:
            self._apply_visibility(e)

    def _on_twin_visible(self, event) -> None:
        e = self._native_of_twin(event.source)
        if e is not None and e.native is not None and not self._busy and self._showing_twin(e):
            e.native.visible = e.twin.visible  # the user toggled the twin's eye in 2-D

    def _on_native_drawn(self, event) -> None:
        """napari re-sliced the native (and reset its node's visibility): hide it again."""
        e = self._entry_of(event.source)
        if e is not None and self._showing_twin(e):
            self._hide_native(e.native)

    def _on_native_name(self, event) -> None:
        e = self._entry_of(event.source)
        if e is not None and e.twin is not None:
            self._busy = True
            try:
                e.twin.name = e.native.name + TWIN_SUFFIX
                meta(e.twin)[TWIN_KEY] = e.native.name
            finally:
                self._busy = False

    # ---- resampling
    def _schedule(self, e: _Entry, delay_ms: int = DEBOUNCE_MS) -> None:
        if e.native is None or not self._wanted(e.native):
            return
        from qtpy.QtCore import QTimer

        if e.timer is None:
            e.timer = QTimer()
            e.timer.setSingleShot(True)
            e.timer.timeout.connect(lambda e=e: self._resample(e, threaded=self.threaded))
        e.timer.start(int(delay_ms))

    def _resample(self, e: _Entry, *, threaded: bool) -> None:
        layer = e.native
        if layer is None or not self._wanted(layer):
            return
        gen = e.generation
        affine = data_to_world_matrix(layer)
        data = layer.data
        is_labels = layer_kind(layer) == "labels"

        def work():
            cval = 0.0 if is_labels else np.nan  # NaN: napari draws nothing there
            return resample_world_aligned(data, affine, labels=is_labels, cval=cval)

        if not threaded:
            self._apply_result(e, gen, work())
            return
        from napari.qt.threading import create_worker

        worker = create_worker(work, _start_thread=False)
        worker.returned.connect(lambda res, e=e, gen=gen: self._apply_result(e, gen, res))
        worker.errored.connect(
            lambda exc, layer=layer: _warn(f"2-D view of {layer.name!r} not updated ({exc})")
        )
        e.worker = worker  # keep a reference while it runs
        worker.start()

    def _apply_result(self, e: _Entry, gen: int, res) -> None:
        layer = e.native
        if layer is None or gen != e.generation or id(layer) not in self._entries or e.declined:
            return  # stale (a newer change is on its way) or the layer went away
        arr, spacing, origin = res
        self._busy = True
        try:
            if e.twin is None or e.twin not in self.viewer.layers:
                e.twin = self._add_twin(layer, arr, spacing, origin)
            else:
                twin = e.twin
                if not np.allclose(twin.scale, spacing):
                    twin.scale = list(spacing)
                if not np.allclose(twin.translate, origin):
                    twin.translate = list(origin)
                twin.data = arr
            e.done = gen
        finally:
            self._busy = False
        self._apply_visibility(e)

    def _add_twin(self, layer, arr, spacing, origin):
        from napari.layers import Image, Labels

        kwargs: dict[str, Any] = dict(
            name=layer.name + TWIN_SUFFIX,
            scale=list(spacing),
            translate=list(origin),
            opacity=layer.opacity,
            blending=layer.blending,
            visible=False,
            metadata={"mpi_viewer": {TWIN_KEY: layer.name}},
        )
        if layer_kind(layer) == "labels":
            twin = Labels(arr, **kwargs)
        else:
            twin = Image(
                arr,
                contrast_limits=list(layer.contrast_limits),
                colormap=layer.colormap,
                gamma=layer.gamma,
                interpolation2d=layer.interpolation2d,
                **kwargs,
            )
        self._copy_props(
            layer, twin, _LABELS_PROPS if layer_kind(layer) == "labels" else _IMAGE_PROPS
        )
        try:
            twin.units = layer.units  # same world units as the native (mm)
        except Exception:  # noqa: BLE001 - a napari without per-layer units
            pass
        twin.locked = True
        if layer_kind(layer) == "labels":
            twin.editable = False
        layers = self.viewer.layers
        selected, active = set(layers.selection), layers.selection.active
        layers.insert(layers.index(layer) + 1, twin)
        layers.selection.clear()
        layers.selection.update(selected & set(layers))
        layers.selection.active = active if active in layers else None
        ev = twin.events
        for name in _BACK_PROPS:
            if hasattr(ev, name):
                getattr(ev, name).connect(self._on_twin_prop)
        ev.visible.connect(self._on_twin_visible)
        return twin

    def _drop_twin(self, e: _Entry) -> None:
        twin, e.twin = e.twin, None
        if twin is not None and twin in self.viewer.layers:
            self._busy = True
            try:
                self.viewer.layers.remove(twin)
            finally:
                self._busy = False
        if e.native is not None:
            self._show_native(e.native)

    def _place_twin(self, e: _Entry) -> None:
        """Keep the twin just above its native layer (same drawing order)."""
        layers = self.viewer.layers
        if e.twin is None or e.native is None or e.twin not in layers or e.native not in layers:
            return
        ni, ti = layers.index(e.native), layers.index(e.twin)
        if ti == ni + 1:
            return
        self._busy = True
        try:
            layers.move(ti, ni + 1 if ti > ni else ni)
        finally:
            self._busy = False

    # ---- drawing
    def _showing_twin(self, e: _Entry) -> bool:
        return (
            e.twin is not None
            and e.native is not None
            and e.done >= 0
            and self._wanted(e.native)
            and e.twin in self.viewer.layers
        )

    def _apply_visibility(self, e: _Entry) -> None:
        if e.native is None or e.twin is None:
            return
        show_twin = self._showing_twin(e)
        want = bool(e.native.visible) and show_twin
        if e.twin.visible != want or (layer_kind(e.twin) == "labels" and e.twin.editable):
            self._busy = True
            try:
                if e.twin.visible != want:
                    e.twin.visible = want
                if layer_kind(e.twin) == "labels":
                    e.twin.editable = False  # painting belongs on the native layer
            finally:
                self._busy = False
        if show_twin:
            self._hide_native(e.native)
        else:
            self._show_native(e.native)

    def _visual(self, layer):
        return compat.layer_visual(self.viewer, layer)

    def _hide_native(self, layer) -> None:
        compat.set_node_visible(self.viewer, layer, False)

    def _show_native(self, layer) -> None:
        compat.set_node_visible(self.viewer, layer, bool(layer.visible))

    def _copy_props(self, src, dst, names) -> None:
        self._busy = True
        try:
            for name in names:
                if not hasattr(src, name) or not hasattr(dst, name):
                    continue
                value = getattr(src, name)
                try:
                    if name == "contrast_limits" and np.allclose(value, dst.contrast_limits):
                        continue
                    if (
                        name in ("colormap",)
                        and getattr(value, "name", value) == getattr(dst.colormap, "name", None)
                        and layer_kind(src) == "image"
                    ):
                        continue
                    if name == "contrast_limits":
                        # the twin's range must admit the native's limits
                        lo, hi = value
                        rng = dst.contrast_limits_range
                        if lo < rng[0] or hi > rng[1]:
                            dst.contrast_limits_range = [min(lo, rng[0]), max(hi, rng[1])]
                    setattr(dst, name, value)
                except Exception:  # noqa: BLE001 - a property one layer type refuses is not drawn
                    pass
        finally:
            self._busy = False


def _warn(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)
