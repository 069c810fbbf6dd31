"""Display twins of the 2-D view (see :mod:`._display2d`): resampling a layer onto a
world-aligned grid off the GUI thread (:mod:`mpi_viewer.geometry.display_grid`),
adding, placing and dropping the twin layer, and drawing either it or its native.

A mixin of :class:`~mpi_viewer.plugins._display2d.Display2D`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from mpi_viewer.plugins import _napari_compat as compat
from mpi_viewer.plugins._layers import TWIN_KEY, is_display_twin, keeping_active, layer_kind
from mpi_viewer.plugins._work import start_work

from mpi_viewer.geometry.display_grid import is_axis_aligned, resample_world_aligned

if TYPE_CHECKING:  # pragma: no cover
    from mpi_viewer.plugins._display2d import _Entry

DEBOUNCE_MS = 250

#: Suffix of a display twin's layer name.
TWIN_SUFFIX = " (2-D view)"

#: Display properties mirrored native → twin (and, for the first five, back).
_IMAGE_PROPS = ("contrast_limits", "colormap", "gamma", "opacity", "blending", "interpolation2d")
_LABELS_PROPS = ("colormap", "opacity", "blending", "contour")
_BACK_PROPS = ("contrast_limits", "colormap", "gamma", "opacity", "blending")


def _same(current, value) -> bool:
    """Whether a layer property already holds ``value`` (False when unsure)."""
    try:
        if isinstance(value, (str, int, float, bool)) or value is None:
            return type(current) is type(value) and current == value
        return bool(current == value)  # napari's models (colour maps) compare by value
    except Exception:  # noqa: BLE001 - arrays of another shape, models that refuse ==
        return False


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


def needs_twin(layer) -> bool:
    """Whether napari would draw this layer's 2-D slices displaced (3-D Image/Labels, oblique)."""
    if is_display_twin(layer) or layer_kind(layer) not in ("image", "labels"):
        return False
    if layer.ndim != 3 or getattr(layer, "multiscale", False) or getattr(layer, "rgb", False):
        return False
    return not is_axis_aligned(data_to_world_matrix(layer)[:-1, :-1])


def same_array(a, b) -> bool:
    """Whether ``a`` (an array or None) holds exactly ``b``'s values (shape and dtype)."""
    return (
        isinstance(a, np.ndarray)
        and a.shape == b.shape
        and a.dtype == b.dtype
        and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    )


def _warn(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)


class TwinsMixin:
    """Part of :class:`~mpi_viewer.plugins._display2d.Display2D`."""

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
        shown = e.twin.data if e.twin is not None and e.twin in self.viewer.layers else None

        def work():
            cval = 0.0 if is_labels else np.nan  # NaN: napari draws nothing there
            arr, spacing, origin = resample_world_aligned(data, affine, labels=is_labels, cval=cval)
            # what the twin shows already (e.g. a reopened session's identical ROIs): its
            # data is not set again (a re-slice, a texture upload and a redraw of nothing new)
            same = same_array(shown, arr)
            return (shown if same else arr), spacing, origin

        if not threaded:
            self._apply_result(e, gen, work())
            return
        e.worker = start_work(  # no progress bar: display work, quick and frequent
            work,
            on_done=lambda res, e=e, gen=gen: self._apply_result(e, gen, res),
            desc=None,
            on_error=lambda exc, layer=layer: _warn(
                f"2-D view of {layer.name!r} not updated ({exc})"
            ),
        )

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
                if arr is not twin.data:
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
        from mpi_viewer.plugins._layer_pool import take

        labels = layer_kind(layer) == "labels"
        pooled = take(  # the pool's (made with the study's images, or at start-up)
            self.viewer, "labels twin" if labels else "image twin", name=kwargs["name"],
            metadata=kwargs["metadata"], ndim=np.ndim(arr), move=False,
        )  # fmt: skip
        if pooled is not None:
            self._unwatch(pooled)  # watched as a layer of its own until now: a twin from here
            twin = pooled  # placed (one voxel moved), then filled, drawn once
            with compat.one_refresh(twin), compat.one_extent_update(self.viewer, twin):
                twin.scale, twin.translate = kwargs["scale"], kwargs["translate"]
                twin.data = arr  # (opacity, blending: copied below, with the rest)
                self._copy_props(layer, twin, _LABELS_PROPS if labels else _IMAGE_PROPS)
        elif labels:
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
        if pooled is None:  # (the pooled twin's were copied above, in its one refresh)
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
        with keeping_active(self.viewer):
            if pooled is None:
                layers.insert(layers.index(layer) + 1, twin)
            elif layers.index(twin) != layers.index(layer) + 1:  # just above its native
                # napari's move inserts before ``dest`` counted before the removal
                layers.move(layers.index(twin), layers.index(layer) + 1)
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
                    if _same(getattr(dst, name), value):
                        continue  # each set costs napari events and a redraw
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
