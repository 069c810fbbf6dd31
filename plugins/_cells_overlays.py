"""Overlays of the Cells dock on the anatomy: ROI outlines, cell-count labels placed
beside their ROIs (leader lines when moved), and the cell-density map.

A mixin of :class:`~mpi_viewer.plugins._cells_dock.CellsDock`. The arrays (outline
labels, density in cells/mm³, cut to the box with something to show) are computed off
the GUI thread by :func:`mpi_viewer.report.overlays.overlay_arrays`, and what each layer
shows (:func:`shown_arrays`: the visible ROIs, the density masked to them and cut to
their box, its colour range) and the labels' texts too; here they only become layers,
each one turn of the GUI thread (:meth:`CellOverlaysMixin.overlay_steps`): the pooled
layers raised together (one scene-graph rebuild), the density, its colour bar, the
outlines, the labels, their backdrops and leaders (left where the pool made them, around
the labels: no move), each layer's sets drawn once (:func:`._napari_compat.one_refresh`)
with one world-extent update (:func:`._napari_compat.one_extent_update`). Measured in
``benchmarks/bench_gui_stalls.py``: each turn is 10–25 ms of the GUI thread, its redraw
10–30 ms more (the first draw of the density, colour bar and outlines builds their
shader programs anew: ~5 ms each).
The labels are laid out on screen (:func:`mpi_viewer.report.overlays.place_labels`, a
few µs of arithmetic) again when the view changes; only what moved is set.

The density is drawn on the anatomy's grid (the registration resamples it there, in the
worker), not on the MPI's own coarser grid with the MPI layer's affine: that would be
as correct in 3-D, but napari draws a 2-D slice of a layer whose affine mixes the sliced
axis into the displayed ones displaced by up to a few mm (the reason the MPI has a 2-D
display twin). Cut to the ROIs' box, the array napari slices in 2-D (one slice, the one
shown) and uploads whole in 3-D is a small fraction of the anatomy.
"""

from __future__ import annotations

import numpy as np
from mpi_viewer.plugins import _napari_compat as compat
from mpi_viewer.plugins._layers import keeping_active, meta, physical_to_world, set_placement
from mpi_viewer.plugins._overlay_style import style_roi_labels
from mpi_viewer.plugins._work import notify_error

from mpi_viewer.report.overlays import place_labels, text_size_px

OUTLINE_LAYER = "ROI outlines"
LABEL_LAYER = "cell counts"
DENSITY_LAYER = "cell density (cells/mm³)"
_COLORBAR_NOTE = "colour bar: cells/mm³"
LEADER_LAYER = "cell count leaders"
BACKDROP_LAYER = "cell count backdrops"
#: The labels' dark backdrop: a row of square tiles (screen-sized) behind each text.
BACKDROP_COLOR = "#0000009e"  # black, 62 % opaque
#: Label text size (screen pixels) and outline width (anatomy pixels) at any zoom.
LABEL_FONT_PX = 13
OUTLINE_PX = 2


def density_colormap():
    """Blue → cyan → white, transparent at 0 (blank voxels show the anatomy)."""
    from napari.utils.colormaps import Colormap

    return Colormap(
        colors=[[0, 0, 0, 0], [0.15, 0.25, 0.95, 0.85], [0.0, 0.85, 1.0, 0.95], [1, 1, 1, 1]],
        controls=[0.0, 1e-3, 0.55, 1.0],
        name="cell density",
    )


def label_texts_of(results) -> list[str]:
    """Each result's label text, e.g. ``isolated: 4.0 × 10⁵ cells [3.6–4.4 × 10⁵]``."""
    from mpi_viewer.report.study_report import roi_label_text

    return [roi_label_text({"name": r.name, **r.columns()}) for r in results]


def _set(obj, name: str, value) -> None:
    """Set a layer property only when it changes (each set costs napari a redraw)."""
    if getattr(obj, name) != value:
        setattr(obj, name, value)


def frame_key(rois, results, visible: dict, inside_only: bool) -> tuple:
    """What :func:`shown_arrays` depends on: the labels of the ROIs whose "show" box is
    ticked (``visible``: name → bool, default shown) and the inside-only option."""
    shown = {r.name for r in results if visible.get(r.name, True)}
    return tuple(int(r.label) for r in rois if r.name in shown), bool(inside_only)


def shown_arrays(labels, density, visible_labels, inside_only: bool):
    """What the outline and density layers show (pure numpy: run in the worker).

    Parameters
    ----------
    labels, density : ndarray
        ROI labels and cells/mm³ on the display grid (cut to their content).
    visible_labels : sequence of int
        The labels of the ROIs shown (the table's "show" boxes).
    inside_only : bool
        Density inside the shown ROIs only (the dock's default): then both arrays are cut
        to the box of every ROI (the same box whichever ROIs are shown, so hiding one
        moves nothing).

    Returns
    -------
    outlines : ndarray of uint16
        The shown ROIs' labels (0 elsewhere).
    density : ndarray of float32
        cells/mm³ to draw.
    top : float
        The density's colour range top (cells/mm³; 1 when nothing is drawn).
    offset : ndarray of float
        Voxel index of the arrays' first voxel in ``labels``.
    """
    from mpi_viewer.report.overlays import content_box

    lab = np.asarray(labels)
    box = content_box(lab > 0, margin=2) if inside_only else tuple(slice(0, n) for n in lab.shape)
    lab = lab[box]
    lut = np.zeros(int(lab.max(initial=0)) + 1, dtype=bool)  # a look-up, not np.isin
    vis = np.asarray(list(visible_labels), dtype=int)
    lut[vis[(vis > 0) & (vis < lut.size)]] = True
    mask = lut[lab]
    outlines = np.where(mask, lab, 0).astype(np.uint16)
    dens = np.asarray(density)[box]
    dens = np.where(mask, dens, np.float32(0.0)) if inside_only else dens.copy()
    peak = float(np.nanmax(dens)) if dens.size else 0.0
    top = peak if peak > 0 else 1.0
    return (
        outlines,
        dens.astype(np.float32, copy=False),
        top,
        np.array([sl.start for sl in box], dtype=float),
    )


class CellOverlaysMixin:
    """Outlines, labels and density of the Cells dock (needs its results and check boxes)."""

    def label_texts(self) -> list[str]:
        """The text of each ROI's label, e.g. ``isolated: 4.0 × 10⁵ cells [3.6–4.4 × 10⁵]``."""
        cached = getattr(self, "_texts", None)
        if cached is not None and cached[0] is self.results:
            return list(cached[1])  # made with the results, in the worker
        return label_texts_of(self.results)

    def _layer(self, name):
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def can_draw(self) -> bool:
        """Whether there is something to draw (results, and the layer to draw them on)."""
        return bool(
            self.results
            and self._labels_disp is not None
            and self._display_layer in self.viewer.layers
        )

    def overlay_steps(self) -> list:
        """The overlays as GUI-thread steps: the pooled layers raised (one move), then one
        layer each: density (below; its colour bar and unit next), outlines, labels, their
        backdrops and leader lines. Between two, the window repaints."""
        return [
            self._raise_pooled,
            self._draw_density,
            self._draw_density_bar,
            self._draw_outlines,
            self._draw_labels,
            self._draw_helpers,
        ]

    def _raise_pooled(self) -> None:
        """The pool's overlay layers above the study's, in one move (one scene-graph
        rebuild instead of one per layer taken)."""
        from mpi_viewer.plugins._layer_pool import raise_pooled

        raise_pooled(self.viewer, ("density", "outlines", "backdrops", "cell labels", "leaders"))

    def update_overlays(self) -> None:
        """(Re)draw outlines, labels and density for the visible ROIs."""
        if not self.can_draw():
            return
        try:
            for draw in self.overlay_steps():
                draw()
        except Exception as exc:  # noqa: BLE001 - never let an error reach Qt
            notify_error(exc, "drawing the overlays")

    def _visible_labels(self) -> np.ndarray:
        return np.array(self._frame_key()[0], dtype=np.uint16)

    def _placement(self, cut=None) -> dict:
        """scale, translate, affine of the overlay arrays: the display layer's grid, shifted
        to the box they were cut from (world = A·(s·(i + offset) + t)); ``cut``: the
        voxel offset of a part of them (:func:`shown_arrays`)."""
        src = self._display_layer
        scale = np.asarray(src.scale, dtype=float)
        off = np.asarray(getattr(self, "_disp_offset", np.zeros(len(scale))), dtype=float)
        if cut is not None:
            off = off + np.asarray(cut, dtype=float)
        return {
            "scale": scale,
            "translate": np.asarray(src.translate, dtype=float) + scale * off,
            "affine": np.asarray(src.affine.affine_matrix, dtype=float),
        }

    def _place(self, layer, cut=None) -> None:
        p = self._placement(cut)
        set_placement(layer, p["scale"], p["translate"], p["affine"])

    def _frame_key(self) -> tuple:
        return frame_key(
            self.roi_results, self.results, self.visible, self.inside_check.isChecked()
        )

    def _shown_frame(self) -> tuple:
        """(outlines, density, top, offset) of :func:`shown_arrays` for the current show
        boxes: made in the worker with the results, remade here after a toggle."""
        key = self._frame_key()
        frame = getattr(self, "_frame", None)
        if frame is None or frame[0] != key:
            frame = self._frame = (
                key,
                shown_arrays(self._labels_disp, self._density_disp, key[0], key[1]),
            )
        return frame[1]

    def _draw_outlines(self) -> None:
        labels, _, _, cut = self._shown_frame()
        layer = self._layer(OUTLINE_LAYER)
        if layer is None:
            layer = self._pooled("outlines", OUTLINE_LAYER, ndim=labels.ndim)
        if layer is None:
            layer = self._add_keeping_active(
                add_outline_layer, self.viewer, labels, self._placement(cut)
            )
        else:
            # placed and filled: drawn once, the world extent recomputed once
            with compat.one_refresh(layer), compat.one_extent_update(self.viewer, layer):
                self._place(layer, cut)
                layer.data = labels
        _set(layer, "editable", False)
        self._outline_style()
        _set(layer, "visible", self.outline_check.isChecked())

    def _outline_style(self) -> None:
        """2-D: a contour line; 3-D: a see-through surface drawn over the rendering
        (:mod:`mpi_viewer.plugins._overlay_style`)."""
        layer = self._layer(OUTLINE_LAYER)
        if layer is None:
            return
        style_roi_labels(layer, self.viewer.dims.ndisplay, contour=OUTLINE_PX)

    def _pooled(self, kind: str, name: str, metadata: dict | None = None, ndim: int = 3, move=True):
        """The pool's layer of ``kind`` named ``name`` (:mod:`._layer_pool`), or None."""
        from mpi_viewer.plugins._layer_pool import take

        return take(self.viewer, kind, name=name, metadata=metadata, ndim=ndim, move=move)

    def _add_keeping_active(self, add, *args, **kwargs):
        """``add(*args, **kwargs)`` (a viewer's ``add_*``): the new overlay layer does not
        take the user's active layer (the one their clicks go to)."""
        with keeping_active(self.viewer):
            return add(*args, **kwargs)

    def _anchors(self) -> tuple[np.ndarray, np.ndarray]:
        """World positions (z, y, x) of each result's peak, and each ROI's radius (mm)."""
        peaks = np.array([r.peak_mm for r in self.roi_results], dtype=float).reshape(-1, 3)
        by_name = {r.name: i for i, r in enumerate(self.roi_results)}
        idx = [by_name[r.name] for r in self.results]
        world = physical_to_world(self._mpi_layer, peaks[idx]) if idx else np.empty((0, 3))
        radii = []
        for i in idx:
            vol = getattr(self.roi_results[i], "volume_mm3", None)
            vol = float(vol) if vol is not None and np.isfinite(vol) else 4.0
            radii.append(max((3.0 * vol / (4.0 * np.pi)) ** (1.0 / 3.0), 0.5))
        return np.asarray(world, dtype=float).reshape(-1, 3), np.asarray(radii, dtype=float)

    def _screen_frame(self):
        """(centre, right, down, zoom, (w, h)): world (z, y, x) → screen pixels of the view."""
        v = self.viewer
        cam_ = compat.camera(v)
        zoom = float(cam_.zoom) or 1.0
        w, h = compat.canvas_size_px(v)
        centre = np.zeros(3)
        cam = np.asarray(cam_.center, dtype=float)
        displayed = list(v.dims.displayed)[-3:]
        for k, d in enumerate(displayed):
            centre[d] = cam[len(cam) - len(displayed) + k]
        if v.dims.ndisplay == 3:
            up = np.asarray(cam_.up_direction, dtype=float)
            view = np.asarray(cam_.view_direction, dtype=float)
            right = np.cross(up, view)
            right /= np.linalg.norm(right) or 1.0
            down = -up / (np.linalg.norm(up) or 1.0)
        else:
            right, down = np.zeros(3), np.zeros(3)
            right[displayed[-1]], down[displayed[-2]] = 1.0, 1.0
        return centre, right, down, zoom, (w, h)

    def label_layout(self):
        """Label positions (world), leader segments (world, (k, 2, 3)) and the placements
        on screen for the visible ROIs (:func:`mpi_viewer.report.overlays.place_labels`)."""
        anchors, radii = self._anchors()
        shown = [i for i, r in enumerate(self.results) if self.visible.get(r.name, True)]
        centre, right, down, zoom, (w, h) = self._screen_frame()
        rel = anchors - centre
        px = np.stack([rel @ right * zoom + w / 2, rel @ down * zoom + h / 2], axis=1)
        full = self.label_texts()
        # the whole label when the view has room for it, else without the interval, else
        # the name (a narrow canvas beside the docks); the table has every number
        for texts in (
            full,
            [t.split(" [", 1)[0] for t in full],
            [r.name for r in self.results],
        ):
            sizes = np.array([text_size_px(texts[i], LABEL_FONT_PX) for i in shown])
            places = place_labels(
                px[shown],
                sizes.reshape(-1, 2),
                np.maximum(radii[shown] * zoom, 4.0),
                (8, 8, w - 8, h - 8),  # a margin: the text estimate is not exact
            )
            if all(p.clear for p in places):
                break
        self.shown_texts = list(texts)
        pos = anchors.copy()
        leaders = []
        for i, p in zip(shown, places, strict=True):
            d = np.asarray(p.centre) - px[i]
            pos[i] = anchors[i] + (d[0] * right + d[1] * down) / zoom
            if p.leader is not None:
                (a0, a1), (b0, b1) = p.leader
                start = anchors[i] + ((a0 - px[i, 0]) * right + (a1 - px[i, 1]) * down) / zoom
                end = anchors[i] + ((b0 - px[i, 0]) * right + (b1 - px[i, 1]) * down) / zoom
                leaders.append([start, end - start])
        return pos, np.asarray(leaders, dtype=float).reshape(-1, 2, 3), places

    def _layout_labels(self, parts=("labels", "leaders", "backdrops")) -> None:
        """Lay the labels out for the view shown and set what moved (``parts``: which of
        the label points, leader lines and backdrop tiles)."""
        layer = self._layer(LABEL_LAYER)
        if layer is None or not self.results:
            return
        try:
            pos, leaders, places = self.label_layout()
        except Exception:  # noqa: BLE001 - a view being torn down: nothing to lay out
            return
        pos = self._onto_slice(pos)
        if "labels" in parts:
            self._set_label_points(layer, pos)
        lead = self._layer(LEADER_LAYER)
        if lead is not None and "leaders" in parts:
            # shown with the labels (an empty layer draws nothing): each change of a
            # layer's visibility rebuilds napari's scene graph
            _set(lead, "visible", layer.visible)
            if np.shape(lead.data) != leaders.shape or not np.allclose(lead.data, leaders):
                lead.data = leaders
        back = self._layer(BACKDROP_LAYER)
        if back is not None and "backdrops" in parts:
            _set(back, "visible", layer.visible)
            tiles, tile_sizes = self._backdrop_tiles(pos, places)
            if (
                np.shape(back.data) != tiles.shape
                or not np.allclose(back.data, tiles)
                or not np.allclose(back.size, tile_sizes)
            ):
                with compat.one_refresh(back):  # no text: safe to fill in one refresh
                    back.data = tiles
                    back.size = tile_sizes
        if self.viewer.dims.ndisplay == 3:
            compat.text_on_top(self.viewer, layer)

    def _set_label_points(self, layer, pos) -> None:
        """The label layer's points at ``pos``, with their texts, sizes and shown flags;
        only what differs is set, drawn once."""
        import pandas as pd

        _, radii = self._anchors()
        size = np.maximum(2.0 * radii, 1.0)  # the points are transparent: only their text shows
        shown = np.array([self.visible.get(r.name, True) for r in self.results], bool)
        texts = self.label_texts()
        feats = pd.DataFrame(
            {"label": texts, "name": [r.name for r in self.results], "shown": self.shown_texts}
        )
        have = layer.features
        new_feats = list(have.columns) != list(feats.columns) or not all(
            list(have[c]) == list(feats[c]) for c in feats.columns
        )
        same_n = len(layer.data) == len(pos)
        todo = {
            "data": not same_n or not np.allclose(layer.data, pos),
            "size": not same_n or not np.allclose(layer.size, size),
            "shown": not same_n or not np.array_equal(layer.shown, shown),
        }
        if not (new_feats or any(todo.values())):
            return
        # one refresh (one re-slice, one text layout) for all of it: the data first (a
        # new number of points resizes the features), then the features (napari lays
        # their text out as they are set: no refresh_text), sizes and shown flags
        with compat.one_refresh(layer):
            if todo["data"]:
                layer.data = pos
            if new_feats or not same_n:
                layer.features = feats
            if todo["size"]:
                layer.size = size
            if todo["shown"]:
                layer.shown = shown

    def _seen_here(self) -> np.ndarray:
        """Per result: whether its ROI reaches the 2-D slice shown (within its radius of
        the peak along the sliced axes); all True in 3-D."""
        v = self.viewer
        anchors, radii = self._anchors()
        if v.dims.ndisplay != 2 or not len(anchors):
            return np.ones(len(anchors), dtype=bool)
        off = [d for d in range(3) if d not in list(v.dims.displayed)[-2:]]
        here = np.asarray(v.dims.point, dtype=float)[-3:]
        return np.all(np.abs(anchors[:, off] - here[off]) <= radii[:, None], axis=1)

    def _onto_slice(self, pos):
        """2-D: the labels of ROIs that reach the slice shown, moved onto it (napari
        shows a point's text only within half a unit of its slice), so a label is seen
        on every slice its outline is; the others stay at their ROI's peak."""
        v = self.viewer
        pos = np.array(pos, dtype=float)
        if v.dims.ndisplay != 2 or not len(pos):
            return pos
        off = [d for d in range(3) if d not in list(v.dims.displayed)[-2:]]
        here = np.asarray(v.dims.point, dtype=float)[-3:]
        seen = self._seen_here()
        for d in off:
            pos[seen, d] = here[d]
        return pos

    def _backdrop_tiles(self, pos, places):
        """Square tiles (world positions and sizes in mm) that cover each shown label's
        text box: a dark backdrop that keeps the white text legible over a bright
        rendering or anatomy. The tiles' size follows the zoom (a label is a fixed number
        of screen pixels); in 2-D they lie on the slice shown, for the labels seen on it
        (the label's point is seen within its ROI's radius of the slice)."""
        _, right, _, zoom, _ = self._screen_frame()
        seen = self._seen_here()
        shown = [i for i, r in enumerate(self.results) if self.visible.get(r.name, True)]
        tiles, sizes = [], []
        for i, p in zip(shown, places, strict=True):
            if not seen[i]:
                continue  # the label is not seen on this slice
            w, h = p.size
            side = max(float(h) - 3.0, 4.0)
            n = max(int(np.ceil((w - 4.0) / side)), 1)
            centre = np.array(pos[i], dtype=float)  # on the slice already (_onto_slice)
            for k in range(n):
                tiles.append(centre + (k - (n - 1) / 2.0) * side * right / zoom)
                sizes.append(side / zoom)
        return np.asarray(tiles, dtype=float).reshape(-1, 3), np.asarray(sizes, dtype=float)

    def _draw_helpers(self, kinds=("backdrops", "leaders")) -> None:
        """The labels' backdrop tiles (below the labels) and leader lines (above); no row
        in the layer list. Laid out with the labels."""
        from mpi_viewer.plugins._layer_rows import hide_helper_rows

        added = False
        for kind, name, add in (
            ("backdrops", BACKDROP_LAYER, add_backdrop_layer),
            ("leaders", LEADER_LAYER, add_leader_layer),
        ):
            if kind not in kinds or self._layer(name) is not None:
                continue
            # left where the pool made it (just below / above the labels): placed by
            # _stack_helpers only if out of place (each move rebuilds the scene graph)
            layer = self._pooled(kind, name, _DECORATION, move=False)
            if layer is None:
                layer = self._add_keeping_active(add, self.viewer)
            layer.editable = False
            added = True
        if added:
            hide_helper_rows(self.viewer)
        self._stack_helpers()
        self._layout_labels(parts=("leaders", "backdrops"))

    def _stack_helpers(self) -> None:
        """The backdrops just below the labels and the leaders just above them, however
        the three were made (pooled, added, restored from a session): a tile drawn over
        its text would hide it. Moves only what is out of place."""
        layers = self.viewer.layers
        labels = self._layer(LABEL_LAYER)
        if labels is None:
            return
        back = self._layer(BACKDROP_LAYER)
        if back is not None and layers.index(back) > layers.index(labels):
            layers.move(layers.index(back), layers.index(labels))  # inserted before labels
        lead = self._layer(LEADER_LAYER)
        if lead is not None and layers.index(lead) < layers.index(labels):
            layers.move(layers.index(lead), layers.index(labels) + 1)  # napari: dest before removal

    def _draw_labels(self) -> None:
        anchors, _ = self._anchors()
        layer = self._layer(LABEL_LAYER)
        if layer is None:
            layer = self._pooled("cell labels", LABEL_LAYER)
            if layer is None:  # no pool: the backdrops added first, below the labels
                import pandas as pd

                self._draw_helpers(("backdrops",))

                texts = self.label_texts()
                feats = pd.DataFrame(
                    {"label": texts, "name": [r.name for r in self.results], "shown": texts}
                )
                layer = self._add_keeping_active(add_label_layer, self.viewer, anchors, feats=feats)
            layer.events.visible.connect(lambda *_: self._layout_labels())  # helpers follow
        meta(layer)["anchors_zyx_mm"] = anchors.tolist()  # the ROI peaks the labels belong to
        _set(layer, "visible", self.label_check.isChecked())
        self._layout_labels(parts=("labels",))

    def _draw_density(self) -> None:
        _, dens, top, cut = self._shown_frame()  # masked and ranged in the worker
        layer = self._layer(DENSITY_LAYER)
        if layer is None:
            # the pool's (made when the image was opened): data, range and place set below
            meta_ = {"mpi_viewer": dict(_DENSITY_META)}
            layer = self._pooled("density", DENSITY_LAYER, meta_, ndim=dens.ndim)
        if layer is None:
            layer = self._add_keeping_active(
                add_density_layer, self.viewer, dens, top, self._placement(cut)
            )
            meta(layer).update(_DENSITY_META)
        else:
            # placed, ranged, filled: drawn once, the world extent recomputed once
            with compat.one_refresh(layer), compat.one_extent_update(self.viewer, layer):
                self._place(layer, cut)
                if tuple(layer.contrast_limits) != (0.0, top):
                    layer.contrast_limits = (0.0, top)
                layer.data = dens
        _set(layer, "visible", self.density_check.isChecked())

    def _draw_density_bar(self) -> None:
        """The density's colour bar and its unit (the viewer's text overlay): a turn of
        their own after the density's (their visuals are laid out and drawn anew)."""
        layer = self._layer(DENSITY_LAYER)
        if layer is None:
            return
        _set(layer.colorbar, "visible", True)
        overlay = compat.text_overlay(self.viewer)
        if (
            not overlay.text or overlay.text == _COLORBAR_NOTE
        ):  # the colour bar's unit, if the overlay is free
            overlay.text = _COLORBAR_NOTE
            overlay.position = "top_right"
            overlay.font_size = 10
            overlay.visible = layer.visible


_DECORATION = {"mpi_viewer": {"decoration_of": LABEL_LAYER}}
_DENSITY_META = {"units": "cells/mm3", "modality": "density"}


# The overlay layers as the Cells dock adds them (and :mod:`._layer_pool` makes them
# ahead, empty, under another name).
def add_outline_layer(viewer, labels, placement: dict, name: str = OUTLINE_LAYER):
    """The ROI outlines (Labels, yellow; ``placement``: scale, translate, affine)."""
    from napari.utils.colormaps import DirectLabelColormap

    layer = viewer.add_labels(
        labels,
        name=name,
        opacity=1.0 if viewer.dims.ndisplay == 2 else 0.45,
        blending="translucent",
        units=compat.mm_units(labels.ndim),
        colormap=DirectLabelColormap(color_dict={None: "yellow", 0: "transparent"}),
        **placement,
    )
    style_roi_labels(layer, viewer.dims.ndisplay, contour=OUTLINE_PX)
    return layer


def add_backdrop_layer(viewer, name: str = BACKDROP_LAYER):
    """The labels' dark backdrop tiles (Points, no row in the layer list)."""
    return viewer.add_points(
        np.zeros((0, 3)),
        ndim=3,
        name=name,
        symbol="square",
        face_color=BACKDROP_COLOR,
        border_width=0,
        border_color="transparent",
        units=compat.mm_units(3),
        antialiasing=0,  # tiles meet without seams
        blending="translucent_no_depth",  # over the 3-D rendering, under the text
        metadata={"mpi_viewer": {"decoration_of": LABEL_LAYER}},
    )


def add_label_layer(viewer, anchors, name: str = LABEL_LAYER, *, feats=None):
    """The cell-count labels (Points whose text is the label; the points transparent)."""
    import warnings

    import pandas as pd

    if feats is None:
        feats = pd.DataFrame({k: pd.Series([], dtype=object) for k in ("label", "name", "shown")})
    with warnings.catch_warnings():
        # out_of_slice_display: deprecated in napari 0.9, still the way to see a
        # label ±2 mm around its peak
        warnings.simplefilter("ignore", FutureWarning)
        return viewer.add_points(
            anchors,
            ndim=3,
            name=name,
            features=feats,
            size=1.0,
            symbol="disc",
            units=compat.mm_units(3),
            face_color="transparent",
            border_color="transparent",
            out_of_slice_display=True,
            blending="translucent_no_depth",  # labels drawn over the 3-D rendering
            text={
                "string": "{shown}",
                "size": LABEL_FONT_PX * 0.75,  # points: LABEL_FONT_PX on screen
                "color": "white",
                "anchor": "center",
                # never cut by a 3-D rendering in front of the label (the text's own
                # blending: napari resets the text's GL state to it at each change)
                "blending": "translucent_no_depth",
            },
        )


def add_leader_layer(viewer, name: str = LEADER_LAYER):
    """The leader lines of labels moved away from their ROI (Vectors, no row)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # out_of_slice_display
        return viewer.add_vectors(
            np.zeros((0, 2, 3)),
            name=name,
            edge_width=0.25,
            edge_color="white",
            vector_style="line",
            units=compat.mm_units(3),
            out_of_slice_display=True,
            blending="translucent_no_depth",
            metadata={"mpi_viewer": {"decoration_of": LABEL_LAYER}},
        )


def add_density_layer(viewer, dens, top: float, placement: dict, name: str = DENSITY_LAYER):
    """The cell density (Image, cells/mm³; transparent at 0)."""
    return viewer.add_image(
        dens,
        name=name,
        units=compat.mm_units(dens.ndim),
        colormap=density_colormap(),
        contrast_limits=(0.0, top),
        blending="translucent",
        opacity=0.8,
        **placement,
    )
