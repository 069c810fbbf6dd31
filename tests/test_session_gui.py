"""The Session dock: save, reopen in a fresh viewer, crash recovery after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from mpi_viewer.study import session as S

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def demo_session(tmp_path_factory):
    from test_replay import shared_demo_session

    return shared_demo_session(tmp_path_factory)


@pytest.fixture(autouse=True)
def _recovery_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(S.RECOVERY_ENV, str(tmp_path / "recovery"))
    return tmp_path / "recovery"


def _dock(viewer, **kw):
    from mpi_viewer.plugins._session_dock import SessionDock

    return SessionDock(viewer, autosave_ms=0, ask=lambda q: True, **kw)


def _state(viewer):
    out = {}
    for ly in viewer.layers:
        d = {
            "type": ly._type_string,
            "visible": ly.visible,
            "opacity": round(float(ly.opacity), 6),
            "affine": np.round(np.asarray(ly.affine.affine_matrix), 9).tolist(),
            "scale": np.round(np.asarray(ly.scale), 9).tolist(),
            "shape": tuple(np.shape(ly.data)),
        }
        if ly._type_string == "image":
            d["colormap"] = ly.colormap.name
            d["contrast_limits"] = [round(float(c), 6) for c in ly.contrast_limits]
        if ly._type_string == "labels":
            d["labels"] = np.unique(np.asarray(ly.data), return_counts=True)[1].tolist()
        out[ly.name] = d
    return out


def test_save_and_reopen_in_a_fresh_viewer(make_napari_viewer, demo_session, tmp_path):
    stored = S.load_session(demo_session)
    va = make_napari_viewer()
    a = _dock(va)
    assert a.open(demo_session)
    assert a.differences == [] and a.rows == stored.results  # identical numbers on opening
    assert {"mpi", "mri", "ROIs (session)"} <= {ly.name for ly in va.layers}
    # the MPI is drawn in MRI space: a source's MRI position maps onto its MPI voxel
    labels = va.layers["ROIs (session)"]
    assert labels.data.max() == len(stored.results)
    va.layers["mpi"].opacity = 0.55
    va.layers["mpi"].colormap = "viridis"
    va.layers["mri"].visible = False
    out = a.save(demo_session.with_name("resaved.json"))
    assert out is not None
    resaved = S.load_session(out)
    assert (
        resaved.results == stored.results
        and resaved.registration.matrix == stored.registration.matrix
    )

    vb = make_napari_viewer()
    from mpi_viewer.plugins._registration_dock import RegistrationDock

    reg_dock = RegistrationDock(vb)
    vb.window.add_dock_widget(reg_dock, name="Fiducial registration")
    b = _dock(vb)
    assert b.open(out)
    assert b.differences == [] and b.rows == stored.results
    state_a, state_b = _state(va), _state(vb)
    assert {k: state_b[k] for k in state_a} == state_a
    # the open registration dock got the session's fiducial pairs and fits the same transform
    assert reg_dock.fit is not None
    np.testing.assert_allclose(reg_dock.fit.matrix, stored.registration.matrix, atol=1e-9)
    np.testing.assert_allclose(reg_dock.fit.translation, stored.registration.translation, atol=1e-9)
    assert vb.layers["mpi"].colormap.name == "viridis" and not vb.layers["mri"].visible


def test_reopening_into_the_window_updates_its_layers_in_place(make_napari_viewer, demo_session):
    """File > Open session in a window whose layers have the session's names: the same
    layer objects show the session's voxels, placement and display again (set in place,
    none removed and added back), with the same numbers and layers as a first opening."""
    stored = S.load_session(demo_session)
    va = make_napari_viewer()
    a = _dock(va)
    assert a.open(demo_session)
    first = _state(va)
    before = {ly.name: ly for ly in va.layers}
    truth = {n: np.array(before[n].data, copy=True) for n in ("mpi", "mri")}
    # the window now shows other images under the same names (another grid for the MRI)
    before["mpi"].data = np.zeros_like(truth["mpi"])
    before["mpi"].contrast_limits = (0.0, 1.0)
    before["mri"].data = np.ones(tuple(n + 3 for n in truth["mri"].shape), dtype=np.float32)
    before["mri"].translate = np.full(3, 7.0)
    changes: list = []
    va.layers.events.removed.connect(lambda e: changes.append(("-", e.value.name)))
    va.layers.events.inserted.connect(lambda e: changes.append(("+", e.value.name)))
    assert a.open(demo_session)
    assert changes == []
    assert all(va.layers[n] is layer for n, layer in before.items())
    for n, data in truth.items():
        np.testing.assert_array_equal(va.layers[n].data, data)
    assert a.differences == [] and a.rows == stored.results
    assert _state(va) == first


def test_changed_input_is_refused_unless_the_user_agrees(
    make_napari_viewer, demo_session, tmp_path
):
    import shutil

    folder = tmp_path / "study"
    shutil.copytree(demo_session.parent, folder)
    with open(folder / "phantoms.csv", "a", encoding="utf-8") as f:
        f.write("\n")
    viewer = make_napari_viewer()
    dock = _dock(viewer)
    dock._ask = lambda q: False
    assert not dock.open(folder / demo_session.name)
    assert len(viewer.layers) == 0  # nothing half-opened
    dock._ask = lambda q: "phantoms.csv" in q
    assert dock.open(folder / demo_session.name)


_CHILD = textwrap.dedent("""
    import sys, time
    import napari
    from qtpy.QtWidgets import QApplication
    from mpi_viewer.study import session as S
    from mpi_viewer.plugins._session_dock import SessionDock

    viewer = napari.Viewer(show=False)
    dock = SessionDock(viewer, autosave_ms=200, ask=lambda q: True)
    assert dock.open(sys.argv[1])
    viewer.layers["mpi"].opacity = 0.4          # a change made after opening
    viewer.layers["mpi"].colormap = "magma"
    rp = S.recovery_path()
    t0 = time.time()
    while not rp.exists() and time.time() - t0 < 60:
        QApplication.processEvents()
        time.sleep(0.02)
    time.sleep(0.5)
    QApplication.processEvents()
    print("autosaved", rp, flush=True)
    while True:                                  # killed here with SIGKILL
        QApplication.processEvents()
        time.sleep(0.02)
""")


def test_recovery_after_a_killed_process(make_napari_viewer, demo_session, _recovery_dir):
    env = dict(os.environ, **{S.RECOVERY_ENV: str(_recovery_dir)})
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(demo_session)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        t0 = time.time()
        while "autosaved" not in line and time.time() - t0 < 120:
            line = child.stdout.readline()
            if not line and child.poll() is not None:
                pytest.fail("child died: " + child.stderr.read()[-2000:])
        assert "autosaved" in line
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    rp = _recovery_dir / f"recovery-{child.pid}.json"
    assert rp.exists()

    viewer = make_napari_viewer()
    dock = _dock(viewer)
    assert dock.pending_recoveries() == [rp]  # offered on start
    assert dock.recover(rp)
    assert not rp.exists()
    assert viewer.layers["mpi"].opacity == pytest.approx(0.4)
    assert viewer.layers["mpi"].colormap.name == "magma"
    assert dock.rows == S.load_session(demo_session).results and dock.differences == []


def test_file_menu_offers_session_open_and_save(make_napari_viewer):
    from mpi_viewer.plugins._session_dock import SessionDock, _session_dock_of

    viewer = make_napari_viewer()
    texts = []

    def walk(menu):
        for a in menu.actions():
            texts.append(a.text())
            if a.menu():
                walk(a.menu())

    walk(viewer.window.file_menu)
    for title in (
        "Open mpi-viewer session",
        "Save mpi-viewer session",
        "Save mpi-viewer session as",
    ):
        assert any(t.startswith(title) for t in texts), title
    dock = _session_dock_of(viewer)  # the menu actions open the dock once and reuse it
    assert isinstance(dock, SessionDock) and _session_dock_of(viewer) is dock


def test_saving_an_empty_viewer_says_so(make_napari_viewer, tmp_path, monkeypatch, qtbot):
    """Save from a viewer with no images: a notification, no file, the viewer keeps going."""
    import mpi_viewer.plugins._session_dock as sd
    import napari.utils.notifications as notifications
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFileDialog, QPushButton

    seen: list[str] = []
    monkeypatch.setattr(notifications, "show_warning", lambda m: seen.append(str(m)))
    target = tmp_path / "empty.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    viewer = make_napari_viewer()
    dock = _dock(viewer)
    save = next(b for b in dock.findChildren(QPushButton) if b.text() == "Save")
    qtbot.mouseClick(save, Qt.MouseButton.LeftButton)
    assert not target.exists()
    assert any("nothing to save" in m for m in seen)
    assert "nothing to save" in dock.status.text() and sd.SESSION_DOCK_NAME == "Session"
