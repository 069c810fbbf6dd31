"""2-D views of obliquely placed layers: the registered demo MPI (and ROI labels placed
like it) drawn where the demo truth puts the sources on the MRI.

napari slices a layer along its own data axes; with the registration's few degrees of
rotation it drew the MPI ~3–5 mm off in 2-D. The display twin fixes that. Positions
are measured on screen: the camera is centred on a source's true MRI position (a
marker placed there lands on the canvas centre), and the brightest displayed pixels
must lie within 0.6 mm of it (``camera.zoom`` = screen px per mm).
"""

import numpy as np
import pytest

pytestmark = pytest.mark.gui

MPI = "MPI (synthetic demo)"
ZOOM_PX_PER_MM = 20.0
TOL_MM = 0.6


def _shot(viewer):
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    return np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].astype(float)


def _camera(viewer):
    scene = getattr(viewer, "scene", None)  # napari >= 0.9
    return scene.camera if scene is not None else viewer.camera


def _centre_on(viewer, world_zyx):
    viewer.dims.set_point(0, float(world_zyx[0]))
    _camera(viewer).center = tuple(float(c) for c in world_zyx)
    _camera(viewer).zoom = ZOOM_PX_PER_MM  # screen px per world mm


def _hot_offset_mm(img, window_mm=6.0):
    """(row, col) offset, mm, of the brightest pixels' centroid from the canvas centre."""
    lum = img.mean(axis=-1)
    c = np.array(lum.shape) / 2.0
    r = int(window_mm * ZOOM_PX_PER_MM)
    r0, c0 = int(c[0]) - r, int(c[1]) - r
    win = lum[r0 : r0 + 2 * r, c0 : c0 + 2 * r]
    assert win.max() > 40, "nothing bright drawn near the source"
    hot = np.argwhere(win >= win.max() - 2).mean(axis=0) + (r0, c0)
    return (hot - c) / ZOOM_PX_PER_MM


@pytest.fixture
def demo(make_napari_viewer):
    from mpi_viewer.plugins._display2d import install_2d_display
    from mpi_viewer.plugins._launch import load_demo

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1000, 800)
    study = load_demo(viewer)
    viewer.dims.ndisplay = 2
    ctl = install_2d_display(viewer)
    ctl.flush()
    srcs = {s["name"]: s for s in study.truth["sources"]}
    return viewer, ctl, study, srcs


def test_mpi_and_roi_labels_drawn_at_the_true_sources_in_2d(demo, tmp_path):
    from mpi_viewer.plugins._layers import copy_placement, find_layers, volume_from_layer

    from mpi_viewer.errors import InputError

    viewer, ctl, study, srcs = demo
    native = viewer.layers[MPI]
    twin = ctl.twin_of(native)
    assert twin is not None and twin.visible and twin.name == MPI + " (2-D view)"
    assert ctl._visual(native).node.visible is False  # the displaced native slice is not drawn
    # twins are display only: never listed for quantification, never quantified
    assert twin not in find_layers(viewer) and native in find_layers(viewer, "MPI")
    with pytest.raises(InputError, match="2-D display"):
        volume_from_layer(twin)

    for lyr in viewer.layers:
        if lyr is not native and lyr is not twin:
            lyr.visible = False
    # display edits on the native reach the twin: gray, unsaturated, drawn alone
    native.colormap = "gray"
    native.blending = "translucent"
    native.contrast_limits = (0.0, float(np.max(native.data)))
    assert twin.colormap.name == "gray" and np.allclose(
        twin.contrast_limits, native.contrast_limits
    )
    marker = viewer.add_points(
        np.zeros((1, 3)), size=0.5, face_color="lime", border_width=0, name="truth", visible=False
    )
    for name in ("isolated", "strong"):
        w = np.asarray(srcs[name]["mri_mm"], dtype=float)[::-1]
        _centre_on(viewer, w)
        off = _hot_offset_mm(_shot(viewer))
        assert np.linalg.norm(off) < TOL_MM, (name, off)
        # the world → canvas mapping used above: a marker at the source lands on the centre
        marker.data = [w]
        marker.visible = True
        img = _shot(viewer)
        lime = np.argwhere((img[..., 1] > 200) & (img[..., 0] < 80) & (img[..., 2] < 80)).mean(
            axis=0
        )
        assert np.linalg.norm(lime - np.array(img.shape[:2]) / 2) / ZOOM_PX_PER_MM < 0.1
        marker.visible = False

    # a Labels layer on the MPI grid placed like it (the ROI dock's "MPI ROIs")
    vol = volume_from_layer(native)
    lab = np.zeros(vol.shape, dtype=np.uint8)
    zz, yy, xx = np.indices(vol.shape)
    for k, name in enumerate(("isolated", "strong"), start=1):
        i = vol.physical_to_index([srcs[name]["mpi_mm"]])[0]
        lab[(zz - i[0]) ** 2 + (yy - i[1]) ** 2 + (xx - i[2]) ** 2 <= 4] = k  # 1 mm ball
    rois = viewer.add_labels(lab, name="MPI ROIs", opacity=1.0)
    copy_placement(native, rois)
    native.visible = False
    assert not twin.visible  # the twin follows the native's eye
    ctl.flush()
    rtwin = ctl.twin_of(rois)
    assert rtwin is not None and rtwin.visible and rtwin.editable is False
    rois.contour, rois.opacity = 2, 0.8  # drawn as its native (set only when they differ)
    for prop in ("contour", "opacity", "blending", "colormap"):
        assert getattr(rtwin, prop) == getattr(rois, prop), prop
    for name in ("isolated", "strong"):
        _centre_on(viewer, np.asarray(srcs[name]["mri_mm"], dtype=float)[::-1])
        img = _shot(viewer)
        c = np.array(img.shape[:2]) / 2
        drawn = np.argwhere(img.max(axis=-1) > 60)
        drawn = drawn[np.linalg.norm(drawn - c, axis=1) < 4 * ZOOM_PX_PER_MM]
        assert len(drawn) > 100, name
        assert np.linalg.norm(drawn.mean(axis=0) - c) / ZOOM_PX_PER_MM < TOL_MM, name


def test_3d_draws_the_native_and_registration_changes_follow(demo, qtbot):
    from mpi_viewer.plugins._layers import apply_registration, find_layers

    viewer, ctl, study, srcs = demo
    native = viewer.layers[MPI]
    twin = ctl.twin_of(native)
    viewer.dims.ndisplay = 3
    assert not twin.visible and ctl._visual(native).node.visible is True
    viewer.dims.ndisplay = 2
    assert twin.visible and ctl._visual(native).node.visible is False
    assert viewer.layers.index(twin) == viewer.layers.index(native) + 1
    # the user hides the MPI from the twin's eye: the native hides too
    twin.visible = False
    assert native.visible is False
    native.visible = True
    assert twin.visible

    # a registration without rotation: napari slices the native exactly, the twin goes
    viewer.layers.selection.active = viewer.layers["MRI (synthetic demo)"]
    apply_registration(native, np.eye(3), [1.0, 2.0, 3.0], fixed_name="MRI (synthetic demo)")
    ctl.flush()
    assert ctl.twin_of(native) is None and MPI + " (2-D view)" not in viewer.layers
    assert ctl._visual(native).node.visible is True
    # the demo's rotation again: a new twin, and the active layer is left alone
    tf = study.truth["transform_fixed_to_moving"]
    apply_registration(native, tf["matrix"], tf["translation"], fixed_name="MRI (synthetic demo)")
    assert ctl.twin_of(native) is None  # debounced, then resampled on a worker thread
    qtbot.waitUntil(lambda: ctl.twin_of(native) is not None, timeout=10000)
    assert ctl._visual(native).node.visible is False
    assert viewer.layers.selection.active is viewer.layers["MRI (synthetic demo)"]
    assert [lyr.name for lyr in find_layers(viewer)] == [
        "MRI (synthetic demo)",
        "CT (synthetic demo)",
        MPI,
    ]
    viewer.layers.remove(native)
    assert MPI + " (2-D view)" not in viewer.layers


def test_a_change_made_in_3d_reaches_the_2d_view_when_the_user_returns(demo, qtbot):
    """ROIs clicked (or an image replaced) while the view is 3-D: the 2-D copy, which
    nothing shows in 3-D, is remade as soon as the user goes back to 2-D."""
    viewer, ctl, study, srcs = demo
    native = viewer.layers[MPI]
    twin = ctl.twin_of(native)
    before = float(np.nanmax(twin.data))  # NaN outside the MPI's field of view
    viewer.dims.ndisplay = 3
    native.data = np.asarray(native.data) * 2.0  # the data changes while in 3-D
    viewer.dims.ndisplay = 2
    qtbot.waitUntil(
        lambda: (
            ctl.twin_of(native) is not None
            and float(np.nanmax(ctl.twin_of(native).data)) > 1.5 * before
        ),
        timeout=10000,
    )
    assert float(np.nanmax(ctl.twin_of(native).data)) == pytest.approx(2 * before, rel=0.02)
