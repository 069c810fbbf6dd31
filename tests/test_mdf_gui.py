"""A multi-frame, multi-channel MDF opened in napari: one layer per channel, frames on a
time axis, and an ROI clicked on the frame the user is looking at."""

import numpy as np
import pytest
from test_mdf import REAL_MDF, spec_mdf

pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(not REAL_MDF.is_file(), reason="../shared/data/real/mdf is absent"),
]


def _pick(combo, text: str) -> None:
    """Choose an item of a combo box as a user does (the ``activated`` signal)."""
    i = combo.findText(text)
    assert i >= 0, [combo.itemText(k) for k in range(combo.count())]
    combo.setCurrentIndex(i)
    combo.activated.emit(i)


def test_roi_on_the_frame_shown(make_napari_viewer, tmp_path):
    from mpi_viewer.plugins._layers import physical_to_world
    from mpi_viewer.plugins._roi_dock import LABELS_LAYER, ROIDock

    z, y, x = np.indices((9, 9, 9))
    blob = (50.0 * np.exp(-((x - 4) ** 2 + (y - 4) ** 2 + (z - 4) ** 2) / (2 * 1.2**2))).reshape(-1)
    # frame k, channel c: (k + 1)·(c + 1)·blob, a source at (0, 0, 0) mm
    data = np.stack([np.stack([blob * (k + 1) * (c + 1) for c in range(2)], -1) for k in range(3)])
    path = spec_mdf(tmp_path / "dyn.mdf", data, size_xyz=(9, 9, 9), fov_m=(0.009,) * 3)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="mpi-viewer")
    assert [lyr.name for lyr in layers] == ["dyn [channel 0]", "dyn [channel 1]"]
    assert viewer.dims.nsteps[0] == 3  # the time slider
    dock = ROIDock(viewer)
    viewer.window.add_dock_widget(dock, name="MPI ROIs")
    _pick(dock.layer_combo, "dyn [channel 1]")  # the user picks channel 1
    layer = dock.mpi_layer
    assert layer is layers[1]
    dock.start_clicking()
    for frame in (2, 0):
        viewer.dims.set_current_step(0, frame)  # the user moves the time slider
        world = np.asarray(physical_to_world(layer, [[0.0, 0.0, 0.0]])[0])
        world[0] = frame
        dock._seed_layer.add(world)  # what a click in add mode does
        r = dock.results[-1]
        assert r.peak_au == pytest.approx(50.0 * (frame + 1) * 2, rel=1e-4)
    assert viewer.layers[LABELS_LAYER].data.shape == (9, 9, 9)


def test_gui_session_records_frame_and_channel_and_replays(make_napari_viewer, tmp_path):
    from mpi_viewer.plugins._launch import open_docks

    from mpi_viewer import cli
    from mpi_viewer.study import session as S

    z, y, x = np.indices((9, 9, 9))
    blob = (50.0 * np.exp(-((x - 4) ** 2 + (y - 4) ** 2 + (z - 4) ** 2) / (2 * 1.2**2))).reshape(-1)
    data = np.stack([np.stack([blob * (k + 1) * (c + 1) for c in range(2)], -1) for k in range(3)])
    path = spec_mdf(tmp_path / "dyn.mdf", data, size_xyz=(9, 9, 9), fov_m=(0.009,) * 3)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="mpi-viewer")
    docks = {type(w).__name__: w for w in open_docks(viewer)}
    roi = docks["ROIDock"]
    _pick(roi.layer_combo, "dyn [channel 1]")
    viewer.dims.set_current_step(0, 1)  # frame 1 on screen
    r = roi.add_seed_mm([0.0, 0.0, 0.0], name="src")
    assert r is not None and r.peak_au == pytest.approx(200.0, rel=1e-4)  # 2 × 2 × 50
    # both channels stay open: the one analysed is the session's MPI
    out = docks["SessionDock"].save(tmp_path / "gui.json")
    assert out is not None
    saved = S.load_session(out)
    [mpi] = [i for i in saved.inputs if i.name == "dyn [channel 1]"]
    assert mpi.role == "mpi" and mpi.selection.as_kwargs() == {"frame": 1, "channel": 1}
    [other] = [i for i in saved.inputs if i.name == "dyn [channel 0]"]
    assert other.role == "other" and other.selection.as_kwargs()["channel"] == 0
    assert cli.main(["replay", str(out)]) == 0
    # reopened: both channels back, the ROI on channel 1 with the same peak
    viewer.layers.clear()
    assert docks["SessionDock"].open(out) is not None
    names = {lyr.name for lyr in viewer.layers}
    assert {"dyn [channel 0]", "dyn [channel 1]"} <= names
    assert roi.results and roi.results[0].peak_au == pytest.approx(200.0, rel=1e-4)
