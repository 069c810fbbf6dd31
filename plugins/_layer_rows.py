"""One row per image in the layer list: display-only layers are kept out of it.

Some layers exist only to draw another layer right: the 2-D view twin of an oblique
layer (:mod:`._display2d`), the dark backdrops and leader lines of the cell-count
labels (:mod:`._cells_overlays`). They follow their owner's visibility and properties,
the user never works on them, and in the list they doubled its length (15 rows after
the demo study). They stay napari layers (napari draws, slices and screenshots them
as usual) but their rows are hidden in the layer list view: a layer whose
``metadata["mpi_viewer"]`` names its owner under :data:`OWNER_KEYS`.

Why not the alternatives: drawing the 2-D resampled data in the native layer itself
would make the native's ``data`` differ from the image the docks measure, save and
click on; napari 0.9 slices an oblique layer without its out-of-slice rotation (up to
several mm off; fixed in napari PR #9337, unreleased), so the twin is still needed.
"""

from __future__ import annotations

import weakref

from mpi_viewer.plugins import _napari_compat as compat
from mpi_viewer.plugins._layers import TWIN_KEY

#: Metadata keys (under ``metadata["mpi_viewer"]``) naming the layer a helper layer serves.
OWNER_KEYS = (TWIN_KEY, "decoration_of", "pooled")

_INSTALLED: weakref.WeakSet = weakref.WeakSet()


def is_helper(layer) -> bool:
    """Whether ``layer`` only helps draw another layer (kept out of the layer list)."""
    md = getattr(layer, "metadata", {}).get("mpi_viewer", {})
    return any(md.get(k) for k in OWNER_KEYS)


def hide_helper_rows(viewer) -> None:
    """Hide helper layers' rows in the viewer's layer list now and after every change."""
    viewer = getattr(viewer, "__wrapped__", viewer)
    if viewer in _INSTALLED:
        compat.hide_layer_rows(viewer, is_helper)
        return
    _INSTALLED.add(viewer)
    ref = weakref.ref(viewer)

    def again(event=None) -> None:
        from qtpy.QtCore import QTimer

        v = ref()
        if v is None:
            return
        compat.hide_layer_rows(v, is_helper)  # now, and once the view has its new rows
        QTimer.singleShot(0, lambda: ref() is not None and compat.hide_layer_rows(ref(), is_helper))

    ev = viewer.layers.events
    # not ``moved``: napari emits ``reordered`` after every move, and once after all the
    # moves of a ``move_multiple`` (the rows were set again after each of them)
    for emitter in (ev.inserted, ev.removed, ev.reordered):
        emitter.connect(again)
    again()


def listed_layer_names(viewer) -> list[str]:
    """Names of the rows the user sees in the layer list, top to bottom."""
    return compat.layer_rows(viewer, shown_only=True)
