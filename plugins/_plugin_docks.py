"""What the first mpi-viewer dock napari opens in a window starts: the layer pool and,
before any data, the warm-up and the garbage collector's freeze.

``mpi-viewer`` and ``mpi-viewer demo`` start these themselves as they open the docks
(:func:`._launch.open_docks`, :func:`._launch.prepare`). A user who starts napari and
opens our docks from Plugins > mpi-viewer gets docks napari made: napari 0.9's menu
command builds the widget with the viewer itself (not the ``PublicOnlyProxy`` that
``Window.add_plugin_dock_widget`` hands a widget) and adds it with
``Window.add_dock_widget`` under the title "<dock> (mpi-viewer)". So the study's controller,
as it is made (:func:`~._controller.get_controller`), :func:`watch` es the window: when a
dock widget arrives and napari has listed one of this plugin's docks under its title
(:func:`plugin_docks_open`: the Plugins menu, ``add_plugin_dock_widget``, ``mpi-viewer``),
the layer pool is installed (:func:`._layer_pool.install`, once per viewer) and, unless
``mpi-viewer`` opened the docks (:func:`launched`), a moment later
:func:`._warm_up.settle` runs: the warm-up and the freeze, as ``mpi-viewer`` starts. Each
dock the menu opens is also fitted to the docks' width (:func:`._dock_layout.fit_width`,
as ``mpi-viewer`` fits its own).

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
#: ms between the first dock's arrival and the warm-up (the dock is drawn first).
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
def dock_titles() -> frozenset[str]:
    """The titles napari gives this plugin's docks ("MPI ROIs (mpi-viewer)", …)."""
    try:
        from napari.plugins import menu_item_template
    except ImportError:  # pragma: no cover - the template as napari 0.9 spells it
        menu_item_template = "{1} ({0})"
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest(PLUGIN)
    return frozenset(
        menu_item_template.format(PLUGIN, w.display_name)
        for w in (manifest.contributions.widgets or [])
    )


def plugin_docks_open(viewer) -> bool:
    """Whether napari lists one of this plugin's docks in the viewer's window."""
    from mpi_viewer.plugins import _napari_compat as compat

    return bool(dock_titles() & set(compat.dock_widgets(viewer)))


def launched(viewer) -> None:
    """``mpi-viewer`` opens the docks of ``viewer`` and settles it itself (:func:`._launch.prepare`):
    the docks' arrival installs the pool only (it does already), never the warm-up or freeze."""
    _state(viewer)["launched"] = True


def watch(viewer) -> None:
    """Start what the first of this plugin's docks starts when it arrives in ``viewer``'s
    window (module docstring). Idempotent; nothing for a viewer without a window."""
    from mpi_viewer.plugins import _napari_compat as compat

    viewer = getattr(viewer, "__wrapped__", viewer)
    st = _state(viewer)
    if st["stop"] is not None or (st["done"] and st["launched"]):
        return
    ref = weakref.ref(viewer)
    st["stop"] = compat.on_dock_added(viewer, lambda: _arrived(ref))


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
    if st["launched"]:  # ``mpi-viewer`` fits its docks and settles itself: nothing more to see
        stop, st["stop"] = st["stop"], None
        if stop is not None:
            stop()
    else:  # each dock the menu opens asks for at most 420 px, as ``mpi-viewer``'s do
        from mpi_viewer.plugins._dock_layout import fit_width

        for title in ours:
            if docks[title] not in st["fitted"]:
                st["fitted"].add(docks[title])
                fit_width(docks[title])
    if st["done"]:
        return
    st["done"] = True
    from mpi_viewer.plugins._layer_pool import install

    install(viewer)
    if not st["launched"]:
        from qtpy.QtCore import QTimer

        QTimer.singleShot(SETTLE_DELAY_MS, lambda: _settle(ref))


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
    """The warm-up and the freeze, once per process, while the viewer holds no layer and
    its window is shown (a hidden window, a script's or a test's, is not drawn: no warm-up
    to gain)."""
    from mpi_viewer.plugins import _warm_up

    viewer = ref()
    win = _window(viewer) if viewer is not None else None
    if win is None or not win.isVisible() or len(viewer.layers) or _warm_up.freezing():
        return
    _warm_up.settle(viewer, warm=True)
