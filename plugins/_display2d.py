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
above its native layer, has no row in the layer list (:mod:`._layer_rows`: one row
per image; the native's row and controls drive both) and is marked
``metadata["mpi_viewer"]["display_twin_of"]``;
``find_layers`` and the docks' layer pickers skip it, ``volume_from_layer`` refuses
it, so twins are never quantified or saved.
"""

from __future__ import annotations

import weakref

from mpi_viewer.plugins._display2d_twins import (  # noqa: F401 - the public names stay here
    _BACK_PROPS,
    _IMAGE_PROPS,
    _LABELS_PROPS,
    DEBOUNCE_MS,
    TWIN_SUFFIX,
    TwinsMixin,
    data_to_world_matrix,
    needs_twin,
)
from mpi_viewer.plugins._layer_rows import hide_helper_rows
from mpi_viewer.plugins._layers import TWIN_KEY, is_display_twin, layer_kind, meta

#: Debounce before re-resampling after the native layer changed (ms).
_CONTROLLERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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


class Display2D(TwinsMixin):
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
        hide_helper_rows(viewer)  # the twins draw, but have no row in the layer list

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
