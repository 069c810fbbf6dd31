"""The one place where mpi-viewer touches napari's private API.

napari 0.9 has no public way to do a few things the docks need (a window to resize, a
layer's vispy node, a deferred extent update, the canvas size in pixels). Everything
private goes through the functions here, each with a public fallback or a harmless
no-op, so that when napari changes underneath, one module changes and
``tests/test_napari_compat.py`` fails loudly (:func:`check` lists what broke) instead
of a dock silently misbehaving. napari warns (FutureWarning) on private access from a
plugin; these accesses are deliberate and the warning is silenced here only.

Exposed: :func:`qt_window`, :func:`install_close_filter`, :func:`resize_docks`,
:func:`resize_window`, :func:`unelide_dock_tabs`, :func:`layer_visual`, :func:`set_node_visible`,
:func:`text_on_top`, :func:`extent_updater`, :func:`canvas_size_px`,
:func:`hide_layer_rows`, :func:`layer_rows`,
:func:`dock_widgets`, :func:`on_dock_added`, :func:`calm_activity_spinner`, :func:`one_refresh`,
:func:`one_extent_update`, :data:`MM_UNITS`,
:func:`check`.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Callable, Iterator

#: Units to pass when a dock creates a layer (``viewer.add_points(..., units=MM_UNITS)``).
#: A layer created in pixels and converted later makes napari's canvas warn
#: "Inconsistent units across layers": its own layer-added callback draws at once,
#: before any plugin callback (napari core callbacks always run first) can set mm.
MM_UNITS = ("mm", "mm", "mm")


def mm_units(ndim: int = 3) -> tuple[str, ...]:
    """``("mm",) * ndim``: the ``units`` of a layer a dock creates."""
    return ("mm",) * int(ndim)


@contextlib.contextmanager
def _private() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Pp]rivate attribute access.*")
        warnings.simplefilter("ignore", FutureWarning)
        yield


def qt_window(viewer):
    """The viewer's ``QMainWindow`` (None for a viewer without a window)."""
    window = getattr(viewer, "window", None)
    if window is None:
        return None
    with _private():
        return getattr(window, "_qt_window", None)


def _qt_viewer(viewer):
    window = getattr(viewer, "window", None)
    with _private():
        return getattr(window, "_qt_viewer", None) if window is not None else None


def install_close_filter(viewer, event_filter) -> bool:
    """Install a Qt event filter on the main window (to see it close); False if none."""
    win = qt_window(viewer)
    if win is None:
        return False
    win.installEventFilter(event_filter)
    return True


def resize_window(viewer, width_px: int, height_px: int) -> None:
    """Resize the main window (screenshots, the demo)."""
    win = qt_window(viewer)
    if win is not None:
        win.resize(int(width_px), int(height_px))


def resize_docks(viewer, docks, widths_px) -> None:
    """``QMainWindow.resizeDocks`` horizontally for napari dock widgets."""
    from qtpy.QtCore import Qt

    win = qt_window(viewer)
    if win is not None and docks:
        win.resizeDocks(list(docks), [int(w) for w in widths_px], Qt.Orientation.Horizontal)


def unelide_dock_tabs(viewer) -> int:
    """Tabbed docks show their whole titles (scroll arrows instead of "Se…"); returns
    how many tab bars were changed."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QTabBar

    win = qt_window(viewer)
    if win is None:
        return 0
    bars = win.findChildren(QTabBar)
    for bar in bars:
        bar.setElideMode(Qt.TextElideMode.ElideNone)
        bar.setUsesScrollButtons(True)
    return len(bars)


def on_dock_added(viewer, callback: Callable[[], None]) -> Callable[[], None] | None:
    """Call ``callback()`` on the next turn of the event loop each time a dock widget is
    added to the viewer's main window (napari has no event for it; by then napari has
    listed it in ``Window.dock_widgets``). Returns a function that stops this; None when
    the viewer has no window (nothing done)."""
    from qtpy.QtCore import QEvent, QObject, QTimer
    from qtpy.QtWidgets import QDockWidget

    win = qt_window(viewer)
    if win is None:
        return None

    class _DockAdded(QObject):
        def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
            if event.type() == QEvent.Type.ChildAdded and isinstance(event.child(), QDockWidget):
                QTimer.singleShot(0, callback)
            return False

    watcher = _DockAdded(win)  # a child of the window: gone with it
    win.installEventFilter(watcher)
    # weak: whoever keeps ``stop`` must not keep the window (and its viewer) alive
    win_ref, watcher_ref = weakref.ref(win), weakref.ref(watcher)

    def stop() -> None:
        w, f = win_ref(), watcher_ref()
        if w is None or f is None:
            return
        with contextlib.suppress(RuntimeError):  # the window was deleted meanwhile
            w.removeEventFilter(f)
            f.deleteLater()

    return stop


def dock_widgets(viewer) -> dict:
    """Name → dock widget (public ``dock_widgets`` when napari has it)."""
    window = getattr(viewer, "window", None)
    if window is None:
        return {}
    if hasattr(window, "dock_widgets"):
        return dict(window.dock_widgets)
    with _private():
        return dict(getattr(window, "_dock_widgets", {}))


def layer_visual(viewer, layer):
    """napari's vispy layer drawing ``layer`` (has ``.node``), or None."""
    qt_viewer = _qt_viewer(viewer)
    canvas = getattr(qt_viewer, "canvas", None)
    return getattr(canvas, "layer_to_visual", {}).get(layer)


def set_node_visible(viewer, layer, visible: bool) -> bool:
    """Show or hide a layer's vispy node only (its ``visible`` property unchanged).

    Returns False when the node cannot be reached (nothing done)."""
    vis = layer_visual(viewer, layer)
    node = getattr(vis, "node", None)
    if node is None:
        return False
    node.visible = bool(visible)
    node.update()
    return True


def text_on_top(viewer, layer) -> bool:
    """Draw a Points layer's text without the depth test (a 3-D rendering in front of a
    label does not cut it). Returns False when napari's internals changed (cosmetic)."""
    vis = layer_visual(viewer, layer)
    text = getattr(getattr(vis, "node", None), "text", None)
    if text is None or not hasattr(text, "set_gl_state"):
        return False
    text.set_gl_state(depth_test=False, blend=True)
    text.update()
    return True


@contextlib.contextmanager
def one_refresh(layer) -> Iterator[None]:
    """Property sets inside (data, placement, contrast, size, features…) are drawn once, at
    the end: napari re-slices a layer, recomputes its extent and hands vispy the slice at
    each set, so three sets cost three refreshes on the GUI thread. Only for changes
    that need a refresh (one is done at the end, whatever happened inside)."""
    with _private():
        block = getattr(layer, "_block_refresh", None)
    if block is None:  # a napari without it: each set refreshes, as before
        yield
        return
    try:
        with block():
            yield
    finally:
        layer.refresh()  # after the block: a refresh inside it would be blocked too


#: A layer's events that napari answers with a recomputation of the world extent.
_EXTENT_EVENTS = ("data", "scale", "translate", "rotate", "shear", "affine")


@contextlib.contextmanager
def one_extent_update(viewer, *layers) -> Iterator[None]:
    """The viewer's world extent (and dims ranges) recomputed once, at the end, for the
    sets of the ``layers``' placement and data inside: napari recomputes it over every
    layer at each set (scale, translate, affine, data: four times for a layer placed and
    filled). Use inside :func:`one_refresh` so the layer is refreshed after the update."""
    update = extent_updater(viewer)
    if update is None:  # a napari without it: each set updates, as before
        yield
        return
    with contextlib.ExitStack() as stack:
        for layer in layers:
            for name in _EXTENT_EVENTS:
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    stack.enter_context(emitter.blocker(update))
        try:
            yield
        finally:
            stack.close()
            update()


def extent_updater(viewer) -> Callable[[], None] | None:
    """napari's handler that recomputes the world extent after layer changes (to block
    it during a burst of affine edits and call it once after), or None."""
    with _private():
        return getattr(viewer, "_on_layers_change", None)


def canvas_size_px(viewer) -> tuple[int, int]:
    """(width, height) of the canvas in screen pixels ((800, 600) without a window)."""
    qt_viewer = _qt_viewer(viewer)
    canvas = getattr(qt_viewer, "canvas", None)
    native = getattr(canvas, "native", None)
    if native is not None and native.width() > 1:
        return int(native.width()), int(native.height())
    return 800, 600


def _layer_list_view(viewer):
    """The layer list's Qt view (a ``QListView`` over a reversing proxy model), or None."""
    qt_viewer = _qt_viewer(viewer)
    with _private():
        return getattr(qt_viewer, "layers", None) if qt_viewer is not None else None


def _row_layers(view) -> list:
    """The layer shown in each row of the layer list view (napari's item role)."""
    from qtpy.QtCore import Qt

    model = view.model()
    role = Qt.ItemDataRole.UserRole  # napari's ItemRole: the item itself
    return [model.data(model.index(row, 0), role) for row in range(model.rowCount())]


def hide_layer_rows(viewer, hidden: Callable[[object], bool]) -> bool:
    """Hide the layer list rows of the layers ``hidden(layer)`` is true of (the layers
    stay in ``viewer.layers`` and are drawn). False when the view cannot be reached."""
    view = _layer_list_view(viewer)
    if view is None or not hasattr(view, "setRowHidden"):
        return False
    for row, layer in enumerate(_row_layers(view)):
        want = bool(layer is not None and hidden(layer))
        if view.isRowHidden(row) != want:
            view.setRowHidden(row, want)
    return True


def layer_rows(viewer, *, shown_only: bool = True) -> list[str]:
    """Names in the layer list view, top to bottom (only the rows not hidden)."""
    view = _layer_list_view(viewer)
    if view is None:
        return [lyr.name for lyr in reversed(viewer.layers)]
    return [
        getattr(lyr, "name", str(lyr))
        for row, lyr in enumerate(_row_layers(view))
        if not (shown_only and view.isRowHidden(row))
    ]


#: Playback speed (% of the GIF's own) of napari's "in progress" spinner: its GIF has 90
#: frames 30 ms apart (33 frames/s), and each frame makes Qt compose the whole window
#: again (the canvas is an OpenGL widget): under software OpenGL (llvmpipe: remote
#: desktops, virtual machines, CI) 20–30 ms of CPU per frame, a whole core for as long as
#: any progress bar is open. At 12 % it turns at 4 frames/s.
SPINNER_SPEED_PERCENT = 12


def calm_activity_spinner(viewer, speed_percent: int = SPINNER_SPEED_PERCENT) -> bool:
    """Slow napari's status-bar activity spinner (the animated label of the window's
    status bar) to ``speed_percent`` of its GIF's speed, and give it its size now; False
    if there is none.

    napari keeps the spinner's room in the status bar when it is hidden, but the room of
    a movie not yet started is a text's (9 × 17 px): the first progress bar of a session
    (the first ROI's) grew the status bar by a pixel, so Qt laid the whole window out
    again and the canvas was resized (its OpenGL buffer remade, every widget repainted:
    ~35 ms more of the GUI thread in the first ROI's stall). Its first frame loaded now,
    the room is the frame's (20 × 20 px) from the start."""
    from qtpy.QtWidgets import QLabel, QStatusBar

    window = qt_window(viewer)
    bar = window.findChild(QStatusBar) if window is not None else None
    if bar is None:
        return False
    labels = [lbl for lbl in bar.findChildren(QLabel) if lbl.movie() is not None]
    for lbl in labels:
        lbl.movie().setSpeed(int(speed_percent))
        if lbl.movie().currentPixmap().isNull():
            lbl.movie().jumpToFrame(0)  # its size known before it is first shown
            lbl.updateGeometry()
    return bool(labels)


def check(viewer) -> list[str]:
    """What of the private API above is missing in the running napari (empty: all there).

    ``viewer`` must have a window and at least one layer."""
    problems = []
    if qt_window(viewer) is None:
        problems.append("Window._qt_window is gone")
    qv = _qt_viewer(viewer)
    if qv is None:
        problems.append("Window._qt_viewer is gone")
    canvas = getattr(qv, "canvas", None)
    if not hasattr(canvas, "layer_to_visual"):
        problems.append("QtViewer.canvas.layer_to_visual is gone")
    elif len(viewer.layers) and not all(
        hasattr(layer_visual(viewer, lyr), "node") for lyr in viewer.layers
    ):
        problems.append("a vispy layer has no .node")
    if len(viewer.layers):
        with _private():
            if not callable(getattr(viewer.layers[0], "_block_refresh", None)):
                problems.append("Layer._block_refresh is gone")
    if not callable(extent_updater(viewer)):
        problems.append("ViewerModel._on_layers_change is gone")
    if getattr(getattr(canvas, "native", None), "width", None) is None:
        problems.append("the canvas has no native Qt widget")
    if not callable(getattr(qv, "_set_welcome_visible", None)):
        problems.append("QtViewer._set_welcome_visible is gone")
    view = _layer_list_view(viewer)
    if view is None or not hasattr(view, "setRowHidden"):
        problems.append("QtViewer.layers (the layer list view) is gone")
    elif _row_layers(view) != list(reversed(viewer.layers)):
        problems.append("the layer list view's rows are not the layers (item role changed)")
    return problems


def show_welcome_screen(viewer) -> bool:
    """Show napari's welcome screen (drag files here, Ctrl+O to open) as in a window without
    layers, when the window's only layers are hidden helpers (the layer pool made at
    start-up): napari hides it as soon as ``viewer.layers`` is not empty, and shows or
    hides it again at the next layer added or removed. Not when the user turned it off.
    False when it cannot be reached."""
    qv = _qt_viewer(viewer)
    with _private():
        setter = getattr(qv, "_set_welcome_visible", None)
    if setter is None:
        return False
    if getattr(qv, "show_welcome_screen", True) and qv.isVisible():
        setter(True)
    return True


def welcome_screen_shown(viewer) -> bool | None:
    """Whether napari's welcome screen shows (None: it cannot be reached)."""
    qv = _qt_viewer(viewer)
    with _private():
        widget = getattr(qv, "_welcome_widget", None)
    return None if widget is None else bool(widget.isVisible())


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9; ``viewer.camera``
    before, deprecated since)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def text_overlay(viewer):
    """The viewer's text overlay (``viewer.canvas.overlays.text`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    text = getattr(overlays, "text", None) if overlays is not None else None
    return text if text is not None else viewer.text_overlay
