"""The private napari API mpi-viewer relies on, in one module: this fails loudly (naming
what is gone) when napari changes underneath it, and nothing else in plugins/ uses it."""

import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

PRIVATE = re.compile(
    r"_qt_window|_qt_viewer|_on_layers_change|layer_to_visual|_dock_widgets|_block_refresh|\.node\."
    r"|_set_welcome_visible|_welcome_widget"
)
#: files allowed private access besides the compat module: none
PENDING: set[str] = set()


def test_private_napari_api_only_in_the_compat_module():
    root = Path(__file__).resolve().parents[1] / "plugins"
    offenders = [
        f"{p.name}:{i}"
        for p in sorted(root.glob("*.py"))
        if p.name not in {"_napari_compat.py", *PENDING}
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if PRIVATE.search(line) and not line.lstrip().startswith("#")
    ]
    assert not offenders, offenders


def test_every_private_access_still_works(make_napari_viewer, qtbot):
    from mpi_viewer.plugins import _napari_compat as compat
    from qtpy.QtCore import QObject

    viewer = make_napari_viewer(show=True, show_welcome_screen=True)
    layer = viewer.add_points(np.zeros((1, 3)), text={"string": "x"}, units=compat.MM_UNITS)
    assert compat.check(viewer) == []  # names what napari removed, if anything
    # the welcome screen shown over a window whose only layers are helpers
    assert compat.welcome_screen_shown(viewer) is False  # (napari's: a layer is there)
    assert compat.show_welcome_screen(viewer)
    assert compat.welcome_screen_shown(viewer) is True
    assert compat.qt_window(viewer) is not None
    assert compat.install_close_filter(viewer, QObject())
    assert compat.set_node_visible(viewer, layer, False)
    assert compat.layer_visual(viewer, layer).node.visible is False
    assert compat.set_node_visible(viewer, layer, True)
    assert compat.text_on_top(viewer, layer)
    assert callable(compat.extent_updater(viewer))
    w, h = compat.canvas_size_px(viewer)
    assert w > 100 and h > 100
    compat.resize_window(viewer, 1200, 800)
    # a dock added to the window is seen (the Plugins menu's docks: plugins/_plugin_docks.py)
    from qtpy.QtWidgets import QWidget

    seen = []
    stop = compat.on_dock_added(viewer, lambda: seen.append(dict(compat.dock_widgets(viewer))))
    viewer.window.add_dock_widget(QWidget(), name="a dock")
    qtbot.waitUntil(lambda: bool(seen))
    assert "a dock" in seen[0]
    stop()
    # napari's "in progress" spinner (33 frames/s, each a whole window composed again: a
    # core under software OpenGL) slowed by the study's controller, in the status bar
    from mpi_viewer.plugins._controller import get_controller
    from qtpy.QtWidgets import QLabel, QStatusBar

    get_controller(viewer)
    bar = compat.qt_window(viewer).findChild(QStatusBar)
    speeds = [lbl.movie().speed() for lbl in bar.findChildren(QLabel) if lbl.movie() is not None]
    assert speeds == [compat.SPINNER_SPEED_PERCENT]
    # the first progress bar (the first ROI's) shows the spinner: the window's layout and
    # the canvas keep their size (a resize repaints the whole window and remakes the
    # canvas's OpenGL buffer in the middle of the step)
    from napari.utils import progress

    qtbot.wait(50)
    before = (compat.canvas_size_px(viewer), bar.height())
    bar_ = progress(total=0, desc="first")
    qtbot.wait(100)
    during = (compat.canvas_size_px(viewer), bar.height())
    bar_.close()
    assert during == before


@pytest.fixture
def shown():
    """Every napari notification's message (however it was raised)."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    cb = lambda n: seen.append(str(n.message))  # noqa: E731
    notification_manager.notification_ready.connect(cb)
    yield seen
    notification_manager.notification_ready.disconnect(cb)


def test_our_layers_cause_no_unit_warnings(make_napari_viewer, shown):
    """napari draws a new layer before any plugin callback runs: a layer made in pixels
    and set to mm afterwards warns "Inconsistent units across layers"."""
    from mpi_viewer.plugins import _napari_compat as compat

    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((4, 4, 4)), units=compat.MM_UNITS)
    viewer.add_points(np.zeros((1, 3)), units=compat.mm_units(3))
    viewer.add_labels(np.zeros((4, 4, 4), np.uint8), units=compat.mm_units(3))
    viewer.add_vectors(np.zeros((0, 2, 3)), units=compat.mm_units(3))
    viewer.screenshot(canvas_only=True)
    assert not [m for m in shown if "units" in m]
    viewer.add_points(np.zeros((1, 3)))  # the cause, shown once: a layer in pixels
    viewer.screenshot(canvas_only=True)
    assert [m for m in shown if "Inconsistent units" in m]


def test_one_extent_update_recomputes_the_world_extent_once(make_napari_viewer):
    """A layer placed and filled (scale, translate, data: three sets) inside
    one_extent_update: the viewer's dims ranges are recomputed once, and right."""
    from mpi_viewer.plugins import _napari_compat as compat

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 4, 4), np.float32), units=compat.MM_UNITS)

    def place(layer, z0):
        layer.scale = (2.0, 1.0, 1.0)
        layer.translate = (z0, 0.0, 0.0)
        layer.data = np.zeros((8, 4, 4), np.uint16)

    counts = []
    for batched, z0 in ((False, 10.0), (True, 20.0)):
        layer = viewer.add_labels(np.zeros((4, 4, 4), np.uint16), units=compat.MM_UNITS)
        seen: list = []
        viewer.dims.events.range.connect(seen.append)
        if batched:
            with compat.one_refresh(layer), compat.one_extent_update(viewer, layer):
                place(layer, z0)
        else:
            place(layer, z0)
        viewer.dims.events.range.disconnect(seen.append)
        counts.append(len(seen))
        # the world reaches the last voxel of the placed layer: z0 + 2 mm × 7 (+ half a step)
        assert viewer.dims.range[0].stop >= z0 + 14.0
    assert counts[1] == 1 < counts[0]
