"""Start napari with the mpi-viewer docks (``mpi-viewer``, ``mpi-viewer demo``)."""

from __future__ import annotations

import os
import sys

#: A 3-D view from above and the side, head to the right.
DEMO_CAMERA_ANGLES = (0.0, -60.0, 30.0)

DOCK_WIDTH_PX = 420

DOCKS = ("Fiducial registration", "MPI ROIs", "Calibration", "Cells and report", "Session")


def _check_display() -> None:
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        from mpi_viewer.errors import InputError

        raise InputError(
            "no display: run it under a virtual screen, e.g. `xvfb-run -a mpi-viewer demo --screenshot demo.png`"
        )


def open_docks(viewer) -> list:
    """Add every mpi-viewer dock the manifest declares; returns the widgets."""
    from mpi_viewer.plugins import _napari_compat as compat
    from mpi_viewer.plugins._display2d import install_2d_display
    from mpi_viewer.plugins._layers import install_mm_units
    from npe2 import PluginManager

    install_mm_units(viewer)
    install_2d_display(viewer)  # oblique layers (the registered MPI) drawn right in 2-D
    pm = PluginManager.instance()
    manifest = pm.get_manifest("mpi-viewer")
    names = [w.display_name for w in (manifest.contributions.widgets or [])]
    widgets = []
    docks = []
    ordered = [n for n in DOCKS if n in names] + [n for n in names if n not in DOCKS]
    for name in ordered:
        try:
            _dock, widget = viewer.window.add_plugin_dock_widget(
                "mpi-viewer", name, tabify=bool(widgets)
            )
        except Exception as exc:  # noqa: BLE001 - one broken dock must not stop the others
            from napari.utils.notifications import show_warning

            show_warning(f"mpi-viewer: the {name!r} dock could not be opened ({exc})")
            continue
        widgets.append(widget)
        docks.append(_dock)
    if docks:
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()  # tabs exist only after the event loop has run
        docks[0].raise_()  # the first step of the workflow is the tab shown
        compat.resize_docks(viewer, docks[:1], [DOCK_WIDTH_PX])
        compat.unelide_dock_tabs(viewer)  # whole step names, scroll arrows if need be
    return widgets


def _horizontal():
    from qtpy.QtCore import Qt

    return Qt.Orientation.Horizontal


def load_demo(viewer):
    """Load the demo study into a viewer, registered; returns the DemoStudy."""
    from mpi_viewer.plugins._layers import install_mm_units
    from mpi_viewer.plugins._sample_data import demo_layer_data, demo_registration

    from mpi_viewer.demo.study import make_demo_study

    install_mm_units(viewer)
    study = make_demo_study()
    for data, kwargs, kind in demo_layer_data(study, transform=demo_registration(study)):
        viewer._add_layer_from_data(data, kwargs, kind)
    return study


def run(*, demo: bool = False, files=(), screenshot: str | None = None, ndisplay: int = 2) -> int:
    _check_display()
    import napari
    from mpi_viewer.plugins import _napari_compat as compat

    viewer = napari.Viewer(title="mpi-viewer" + (" — demo study (synthetic)" if demo else ""))
    viewer.scale_bar.visible = True
    if screenshot:
        compat.resize_window(viewer, 1600, 1000)
    open_docks(viewer)
    if demo:
        load_demo(viewer)
    for f in files:
        viewer.open(f, plugin="mpi-viewer")
    viewer.dims.ndisplay = ndisplay
    viewer.reset_view()
    if ndisplay == 3:
        viewer.camera.angles = DEMO_CAMERA_ANGLES
    if screenshot:
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()
        viewer.reset_view()
        if ndisplay == 3:
            viewer.camera.angles = DEMO_CAMERA_ANGLES
        QApplication.processEvents()
        viewer.screenshot(screenshot, canvas_only=False)
        viewer.close()
        return 0
    napari.run()
    return 0
