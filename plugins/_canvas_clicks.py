"""A clicking mode on the canvas: every plain left click calls back with a world point.

Installed on the viewer (``viewer.mouse_drag_callbacks``), not on a layer, so it keeps
working whichever layer is active (a layer a dock adds becomes the active one) until
the user leaves it. A press that moves more than :data:`DRAG_PX` before its release is
a pan or rotation, not a click; a click while the active layer is in an editing mode
(adding points, painting) belongs to that layer.

In 3-D a click is a ray: the point returned is the brightest voxel of ``target()``
(the MPI layer) along it, the hot spot the user sees in a maximum-intensity view.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Mouse travel (screen pixels) above which a press is a drag, not a click.
DRAG_PX = 4.0


def brightest_on_ray(layer, position, view_direction, dims_displayed) -> np.ndarray | None:
    """World point of ``layer``'s brightest voxel on the ray through a 3-D click.

    Uses napari's public ``Layer.get_ray_intersections`` (data coordinates of the ray's
    entry and exit of the layer's box) and samples the data every half voxel.
    """
    start, end = layer.get_ray_intersections(
        position, view_direction, list(dims_displayed), world=True
    )
    if start is None or end is None:
        return None
    start, end = np.asarray(start, float), np.asarray(end, float)
    n = int(np.ceil(2 * np.linalg.norm(end - start))) + 2
    pts = start + (end - start) * np.linspace(0.0, 1.0, n)[:, None]
    data = np.asarray(layer.data)
    idx = np.clip(np.round(pts).astype(int), 0, np.array(data.shape) - 1)
    values = data[tuple(idx.T)]
    best = idx[int(np.argmax(values))]
    return np.asarray(layer.data_to_world(best), dtype=float)


class ClickMode:
    """Turn plain left clicks on ``viewer``'s canvas into ``on_click(world_zyx)`` calls.

    Parameters
    ----------
    viewer : napari.Viewer
    on_click : callable
        ``on_click(world_point)`` with the world coordinates of the click (in 3-D, the
        brightest voxel of ``target()`` under the cursor).
    target : callable
        ``target()`` -> the image layer a 3-D ray is sampled in (None: ignore 3-D clicks).
    """

    def __init__(self, viewer, on_click: Callable, target: Callable):
        self.viewer = viewer
        self.on_click = on_click
        self.target = target

    @property
    def active(self) -> bool:
        return self._callback in self.viewer.mouse_drag_callbacks

    def start(self) -> None:
        if not self.active:
            self.viewer.mouse_drag_callbacks.append(self._callback)

    def stop(self) -> None:
        if self.active:
            self.viewer.mouse_drag_callbacks.remove(self._callback)

    def _callback(self, viewer, event):
        if event.type != "mouse_press" or event.button != 1 or event.modifiers:
            return
        active = viewer.layers.selection.active
        if active is not None and getattr(active, "mode", "pan_zoom") not in ("pan_zoom",):
            return  # the click adds a point, paints… in the active layer
        press_px = np.asarray(event.pos, float)
        position, direction = np.asarray(event.position), event.view_direction
        displayed = list(event.dims_displayed)
        yield
        while event.type == "mouse_move":
            if np.linalg.norm(np.asarray(event.pos, float) - press_px) > DRAG_PX:
                return  # a pan or a rotation
            yield
        if len(displayed) == 3:
            layer = self.target()
            if layer is None or direction is None:
                return
            world = brightest_on_ray(layer, position, direction, displayed)
            if world is None:
                return
        else:
            world = position
        self.on_click(world)
