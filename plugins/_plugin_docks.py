"""What the first mpi-viewer dock napari opens in a window starts: the layer pool, the 2-D
display of registered images and, before any data, the garbage collector's freeze.

``mpi-viewer`` and ``mpi-viewer demo`` start these themselves as they open the docks
(:func:`._launch.open_docks`, :func:`._launch.prepare`). A user who starts napari and
opens our docks from Plugins > mpi-viewer gets docks napari made: napari 0.9's menu
command builds the widget with the viewer itself (not the ``PublicOnlyProxy`` that
``Window.add_plugin_dock_widget`` hands a widget) and adds it with
``Window.add_dock_widget`` under the title "<dock> (mpi-viewer)". So the study's controller,
as it is made (:func:`~._controller.get_controller`), :func:`watch` es the window: when a
dock widget arrives and napari has listed one of this plugin's docks under its title
(:func:`plugin_docks_open`: the Plugins menu, ``add_plugin_dock_widget``, ``mpi-viewer``),
the layer pool and the 2-D display of registered images are installed
(:func:`._layer_pool.install`, :func:`._display2d.install_2d_display`; once per viewer,
as ``mpi-viewer`` installs them) and, unless
``mpi-viewer`` opened the docks (:func:`launched`), a moment later
:func:`._warm_up.settle` freezes start-up's objects, as ``mpi-viewer`` does (without its
warm-up: :func:`_settle`). Each
dock the menu opens is laid out as ``mpi-viewer`` lays out its own (:func:`_lay_out`: 420 px
wide, numbered, in one tab group).

That settling is done only in a shown window while the viewer holds no layer (the menu
opened before any data, the order issue 12 names): a freeze with data loaded would keep the user's images
out of the collector for good, should they be removed later; then only the pool is
installed (filled on the next study image opened). A dock that a test or a script makes
itself and adds with ``add_dock_widget`` under another title starts nothing.
"""

from __future__ import annotations

import functools
import weakref

#: The plugin's name in napari (the manifest's ``name`` and ``display_name``).
PLUGIN = "mpi-viewer"
#: ms between the first dock's arrival and the freeze (the dock is drawn first).
SETTLE_DELAY_MS = 50

_STATE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state(viewer) -> dict:
    viewer = getattr(viewer, "__wrapped__", viewer)  # the viewer behind napari's proxy
    st = _STATE.get(viewer)
    if st is None:
        st = _STATE[viewer] = {"launched": False, "done": False, "stop": None}
        st["fitted"] = weakref.WeakSet()  # the docks fitted to the docks' width
    return st


@functools.cache
def _display_names() -> dict[str, str]:
    """The title napari gives each of this plugin's docks ("MPI ROIs (mpi-viewer)") → the
    dock's display name in the manifest ("MPI ROIs")."""
    try:
        from napari.plugins import menu_item_template
    except ImportError:  # pragma: no cover - the template as napari 0.9 spells it
        menu_item_template = "{1} ({0})"
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest(PLUGIN)
    return {
        menu_item_template.format(PLUGIN, w.display_name): w.display_name
        for w in (manifest.contributions.widgets or [])
    }


def dock_titles() -> frozenset[str]:
    """The titles napari gives this plugin's docks ("MPI ROIs (mpi-viewer)", …)."""
    return frozenset(_display_names())


def plugin_docks_open(viewer) -> bool:
    """Whether napari lists one of this plugin's docks in the viewer's window."""
    from mpi_viewer.plugins import _napari_compat as compat

    return bool(dock_titles() & set(compat.dock_widgets(viewer)))


def launched(viewer) -> None:
    """``mpi-viewer`` opens the docks of ``viewer`` and settles it itself (:func:`._launch.prepare`):
    the docks' arrival installs nothing more (it does already), never the freeze."""
    _state(viewer)["launched"] = True


def watch(viewer) -> None:
    """Start what the first of this plugin's docks starts when it arrives in ``viewer``'s
    window (module docstring). Idempotent; nothing for a viewer without a window."""
    from mpi_viewer.plugins import _napari_compat as compat

    viewer = getattr(viewer, "__wrapped__", viewer)
    st = _state(viewer)
    if st["stop"] is not None:
        return
    ref = weakref.ref(viewer)
    st["stop"] = compat.on_dock_added(viewer, lambda: _arrived(ref))
    if st["stop"] is not None:  # docks there already (one that made no controller: Image geometry)
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, lambda: _arrived(ref))


def _arrived(ref) -> None:
    from mpi_viewer.plugins import _napari_compat as compat

    viewer = ref()
    if viewer is None or _window(viewer) is None:
        return
    st = _state(viewer)
    docks = compat.dock_widgets(viewer)
    ours = sorted(dock_titles() & set(docks))
    if not ours:
        return
    if st["launched"] and not st.get("adopted"):
        # ``mpi-viewer`` laid out the docks it opened (and settles itself): taken as they are
        st["adopted"] = True
        st["fitted"].update(docks[title] for title in ours)
    else:  # each dock the menu opens (again) laid out as ``mpi-viewer`` lays out its own
        for title in ours:
            if docks[title] not in st["fitted"]:
                st["fitted"].add(docks[title])
                _lay_out(viewer, st, title, docks[title])
    if st["done"]:
        return
    st["done"] = True
    from mpi_viewer.plugins._display2d import install_2d_display
    from mpi_viewer.plugins._layer_pool import install

    install(viewer, fill_now=not len(viewer.layers))  # with data: from the next image on
    install_2d_display(viewer)  # registered images drawn right in 2-D from when they open
    if not st["launched"]:
        from qtpy.QtCore import QTimer

        QTimer.singleShot(SETTLE_DELAY_MS, lambda: _settle(ref))


def _lay_out(viewer, st: dict, title: str, widget) -> None:
    """A dock the menu opened: at most 420 px wide (:func:`._dock_layout.fit_width`), its
    step's number in its tab and title bar, and in one tab group with the plugin's first
    dock (napari stacks docks one under another: seven docks each a seventh of the
    window's height, all redrawn by every step; ``benchmarks/bench_gui_stalls.py
    --plugins-menu``), shown in front."""
    from mpi_viewer.plugins._dock_layout import fit_width, number_docks
    from mpi_viewer.plugins._launch import DOCK_WIDTH_PX, TAB_STRIP_PX
    from qtpy.QtCore import Qt

    fit_width(widget)
    win, dock = _window(viewer), _dock_of(widget)
    if win is None or dock is None:
        return
    first = _live_first(win, st, dock)
    if first is None:
        st["first"] = weakref.ref(dock)
        win.resizeDocks([dock], [DOCK_WIDTH_PX + TAB_STRIP_PX], Qt.Orientation.Horizontal)
    elif not first.isFloating() and win.dockWidgetArea(first) == win.dockWidgetArea(dock):
        win.tabifyDockWidget(first, dock)
        dock.show()
        dock.raise_()  # the dock the user just opened
    number_docks(win, {_display_names()[title]: dock})


def _live_first(win, st: dict, dock):
    """The dock to tab ``dock`` with: the first dock laid out while it is still shown in
    ``win``, else another of this plugin's docks still shown there (a user may have closed
    the first: napari deletes its Qt object while its Python wrapper lives on); None when
    there is none."""
    first = st["first"]() if st.get("first") is not None else None
    others = [first] + [_dock_of(w) for w in list(st["fitted"])]
    for cand in others:
        if cand is None or cand is dock:
            continue
        try:
            if cand.parent() is win and cand.isVisible():
                st["first"] = weakref.ref(cand)
                return cand
        except RuntimeError:  # closed: its Qt object is gone
            continue
    return None


def _dock_of(widget):
    """The QDockWidget holding ``widget`` (None when it has none, or was deleted)."""
    from qtpy.QtWidgets import QDockWidget

    try:
        dock = widget.parentWidget()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
    except RuntimeError:
        return None
    return dock


def _window(viewer):
    """The viewer's main window while it exists (None: no window, or closed)."""
    from mpi_viewer.plugins import _napari_compat as compat

    win = compat.qt_window(viewer)
    if win is None:
        return None
    try:
        win.isVisible()
    except RuntimeError:  # its Qt object was deleted: the viewer was closed
        return None
    return win


def _settle(ref) -> None:
    """The freeze, once per process, while the viewer holds no layer and its window is
    shown (a hidden window is a script's or a test's).

    Without the warm-up (:func:`._warm_up.warm_up`): where ``mpi-viewer`` starts it costs
    a second more of start-up, but here it is one pause of the window the user just opened
    a dock in (2.4 s of the GUI thread's CPU, 4.2 s wall, load 3.7 on 2 cores: the imports
    of the overlay modules and the first layer of each kind, drawn at once); the layer pool
    pays the same first-of-a-kind costs one layer per turn of the event loop as the first
    image opens, as for ``mpi-viewer FILES``. The freeze itself (one full collection) is
    0.2–0.3 s once."""
    from mpi_viewer.plugins import _warm_up

    viewer = ref()
    win = _window(viewer) if viewer is not None else None
    if win is None or not win.isVisible() or len(viewer.layers) or _warm_up.freezing():
        return
    _warm_up.settle(viewer, warm=False)
