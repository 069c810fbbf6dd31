"""Start napari with the mpi-viewer docks (``mpi-viewer``, ``mpi-viewer demo``)."""

from __future__ import annotations

import os
import sys

from mpi_viewer.plugins._dock_layout import DOCK_MAX_WIDTH_PX, STEPS

#: A 3-D view from above and the side, head to the right.
DEMO_CAMERA_ANGLES = (0.0, -60.0, 30.0)

DOCK_WIDTH_PX = DOCK_MAX_WIDTH_PX
#: Width of the vertical strip of step tabs beside the docks (px).
TAB_STRIP_PX = 30

#: The docks in the order of the work: geometry (plain arrays only) → register → ROIs →
#: calibrate → cells → report and session (``_dock_layout.STEPS``: numbered tab titles).
DOCKS = tuple(s.display_name for s in STEPS)
#: The tab shown first: the first step a study with geometry needs.
FIRST_SHOWN = "Mold registration"


#: Scanner formats napari's own reader also claims (and would read without their physical
#: geometry): under ``mpi-viewer``, File > Open reads them with mpi-viewer without asking.
READER_PATTERNS = ("*.nii", "*.nii.gz", "*.nrrd", "*.nhdr", "*.mha", "*.mhd", "*.dcm", "*.DCM")


def prefer_plugin_reader() -> None:
    """Make mpi-viewer napari's reader for :data:`READER_PATTERNS` (public settings API).

    Without it File > Open asks, for every NIfTI/NRRD/MetaImage/DICOM file, which of two
    readers to use. A choice the user made already (napari's reader dialog or its
    preferences) is kept. napari stores the setting, as it does for "Remember this choice".
    """
    from napari.settings import get_settings

    plugins = get_settings().plugins
    current = dict(plugins.extension2reader)
    missing = {p: "mpi-viewer" for p in READER_PATTERNS if p not in current}
    if missing:
        plugins.extension2reader = {**current, **missing}


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
    from mpi_viewer.plugins._controller import get_controller
    from mpi_viewer.plugins._display2d import install_2d_display
    from mpi_viewer.plugins._dock_layout import fit_width, number_docks
    from mpi_viewer.plugins._layers import install_mm_units
    from mpi_viewer.plugins._plugin_docks import launched
    from npe2 import PluginManager

    install_mm_units(viewer)
    launched(viewer)  # settled by prepare (or not: tests), not by the docks' arrival
    get_controller(viewer)  # the study's roles and registration, shared by every dock
    from mpi_viewer.plugins._layer_pool import install as install_layer_pool

    install_layer_pool(viewer)  # the layers the steps add, made as the study's images open
    install_2d_display(viewer)  # oblique layers (the registered MPI) drawn right in 2-D
    pm = PluginManager.instance()
    manifest = pm.get_manifest("mpi-viewer")
    names = [w.display_name for w in (manifest.contributions.widgets or [])]
    widgets = []
    docks = []
    ordered_added: list[str] = []
    shown = None
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
        fit_width(widget)
        widgets.append(widget)
        ordered_added.append(name)
        docks.append(_dock)
        if name == FIRST_SHOWN:
            shown = _dock
    if docks:
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()  # tabs exist only after the event loop has run
        (shown or docks[0]).raise_()
        main = docks[0].parent()  # the napari window, through Qt (no private napari API)
        number_docks(main, dict(zip(ordered_added, docks, strict=True)))
        QApplication.processEvents()
        # the dock on top (Qt ignores a hidden tab's size); the vertical tab strip beside it
        front = shown or docks[0]
        main.resizeDocks([front], [DOCK_WIDTH_PX + TAB_STRIP_PX], _horizontal())
    return widgets


def _horizontal():
    from qtpy.QtCore import Qt

    return Qt.Orientation.Horizontal


def load_demo(viewer, study=None):
    """Load the demo study (made here unless given) into a viewer, registered; returns it."""
    from mpi_viewer.plugins._controller import get_controller
    from mpi_viewer.plugins._sample_data import demo_layer_data, demo_registration

    from mpi_viewer.demo.study import make_demo_study

    get_controller(viewer)  # roles from each layer's modality as it arrives
    study = study if study is not None else make_demo_study()
    for data, kwargs, _kind in demo_layer_data(study, transform=demo_registration(study)):
        viewer.add_image(data, **kwargs)
    return study


def prepare(viewer, *, demo=False, files=(), ndisplay: int = 2, study=None, settle=False):
    """What ``mpi-viewer [demo] [FILES]`` does to a new viewer: the docks, then the data.

    Returns the widgets of the docks. ``study`` (tests): a demo study already made.
    ``settle`` (the program's own start-up): :func:`mpi_viewer.plugins._warm_up.settle`
    before the data, so the steps do not pay napari's first-of-a-kind costs.
    """
    _scale_bar(viewer).visible = True
    prefer_plugin_reader()  # File > Open: no "which reader?" for the scanners' formats
    widgets = open_docks(viewer)
    if settle:
        from mpi_viewer.plugins._warm_up import settle as _settle

        # napari's first-of-a-kind costs paid now, not in a step (by the layer pool on the
        # data's first image when data follows: no warm-up then)
        _settle(viewer, warm=not demo and not files)
    if demo:
        load_demo(viewer, study)
    for f in files:
        viewer.open(f, plugin="mpi-viewer")
    viewer.dims.ndisplay = ndisplay
    viewer.reset_view()
    if settle:  # the data's layers frozen too, while starting (not in the first step)
        from mpi_viewer.plugins._warm_up import after_step

        after_step()
    if ndisplay == 3:
        _camera(viewer).angles = DEMO_CAMERA_ANGLES
    return widgets


def _camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def _scale_bar(viewer):
    """The scale bar overlay (``viewer.canvas.overlays`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.overlays.scale_bar if canvas is not None else viewer.scale_bar


def run(
    *,
    demo: bool = False,
    files=(),
    screenshot: str | None = None,
    ndisplay: int = 2,
    psf: str = "langevin",
) -> int:
    """``mpi-viewer [demo]``: the viewer, its docks and the data; ``psf``: the demo's
    point-spread function (``"gaussian"``: the earlier demo's variant)."""
    _check_display()
    import warnings

    import napari

    # oblique layers (the registered MPI) are drawn in 2-D through world-aligned display
    # twins, so napari's warning about its own non-orthogonal slicing does not apply
    warnings.filterwarnings("ignore", message="Non-orthogonal slicing", category=UserWarning)
    # a first layer without units (a picture, a CSV read by napari's own readers) is
    # warned about while napari adds it, beside the layers made at start-up in mm; every
    # layer is given mm as it arrives (``_layers.install_mm_units``): nothing to act on
    warnings.filterwarnings("ignore", message="Inconsistent units across layers")

    viewer = napari.Viewer(title="mpi-viewer" + (" — demo study (synthetic)" if demo else ""))
    if screenshot:
        from mpi_viewer.plugins import _napari_compat as compat

        compat.resize_window(viewer, 1600, 1000)
    study = None
    if demo and psf != "langevin":
        from mpi_viewer.demo.study import make_demo_study

        study = make_demo_study(psf=psf)
    prepare(viewer, demo=demo, files=files, ndisplay=ndisplay, study=study, settle=True)
    if screenshot:
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()
        viewer.reset_view()
        if ndisplay == 3:
            _camera(viewer).angles = DEMO_CAMERA_ANGLES
        QApplication.processEvents()
        viewer.screenshot(screenshot, canvas_only=False)
        viewer.close()
        print(f"wrote {screenshot} (the window)")  # the only sign of life without a display
        return 0
    napari.run()
    return 0
