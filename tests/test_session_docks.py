"""Session dock with every dock open: what the user did in the GUI is saved, reopened in a
fresh viewer identically, and replays from the command line."""

from __future__ import annotations

import numpy as np
import pytest

from mpi_viewer.study import session as S

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def _recovery_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(S.RECOVERY_ENV, str(tmp_path / "recovery"))


def _docks(viewer) -> dict:
    from mpi_viewer.plugins._launch import open_docks

    return {type(w).__name__: w for w in open_docks(viewer)}


def _errors(monkeypatch):
    """Record error notifications of the session dock."""
    import mpi_viewer.plugins._session_dock as sd

    seen: list[tuple[str, str]] = []
    real = sd._notify
    monkeypatch.setattr(
        sd, "_notify", lambda kind, msg: (seen.append((kind, msg)), real(kind, msg))
    )
    return seen


def _table(roi_dock) -> list[dict]:
    return [r.to_row() for r in roi_dock.results]


def _same_rows(a: list[dict], b: list[dict]) -> None:
    from mpi_viewer.study.pipeline import same_value

    assert [r["name"] for r in a] == [r["name"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        bad = [k for k in ra if not same_value(ra[k], rb[k], rtol=1e-9)]
        assert not bad, (ra["name"], bad)


def test_gui_analysis_saved_reopened_and_replayed(
    make_napari_viewer, tmp_path, monkeypatch, copy_demo
):
    from mpi_viewer.plugins._launch import load_demo

    from mpi_viewer import cli

    folder = tmp_path / "study"
    copy_demo(folder)
    va = make_napari_viewer()
    study = load_demo(va)
    a = _docks(va)
    truth = study.truth

    # landmarks: the mold fiducials seen in the MPI, one excluded, similarity model
    fids = [f for f in truth["fiducials"] if f["in_mpi"]]
    names = [f["name"] for f in fids]
    a["RegistrationDock"].load_pairs(
        names,
        [f["mri_mm"] for f in fids],
        [f["mpi_mm"] for f in fids],
        fixed_layer="MRI (synthetic demo)",
        moving_layer="MPI (synthetic demo)",
        excluded=[names[0]],
        model="similarity",
    )
    lm_a = a["RegistrationDock"].landmarks()
    assert lm_a["excluded"] == [names[0]] and lm_a["model"] == "similarity"

    # ROIs seeded at the true sources, calibration from the demo's phantoms, 15 ± 1.5 pg/cell
    roi = a["ROIDock"]
    sources = {s["name"]: s for s in truth["sources"]}
    for n in ("isolated", "strong", "weak"):
        assert roi.add_seed_mm(sources[n]["mpi_mm"], name=n) is not None
    cal = a["CalibrationDock"]
    assert cal.load_phantoms_csv(folder / "phantoms.csv")
    cal.fit(block=True)
    assert cal.calibration is not None
    cells = a["CellsDock"]
    cells.set_iron_per_cell(15.0, 1.5)
    assert cells.compute(block=True)
    # the numbers are right before they are saved (truth: 1250 a.u.·mm³ per µg, 15 pg/cell)
    by_name = {r.name: r for r in cells.results}
    iso = sources["isolated"]
    assert by_name["isolated"].iron_ug == pytest.approx(iso["iron_ug"], rel=0.15)
    assert by_name["isolated"].cells == pytest.approx(iso["iron_ug"] * 1e6 / 15.0, rel=0.15)

    sess = _docks_session(va)
    out = sess.save(tmp_path / "gui.json")
    assert out is not None
    assert (
        "beside it" in sess.status.text() and ".nrrd" in sess.status.text()
    )  # demo made in memory
    saved = S.load_session(out)
    assert {i.role for i in saved.inputs} >= {"mri", "mpi", "phantoms"}
    assert saved.registration.method == "landmarks" and saved.registration.landmarks.excluded == [
        names[0]
    ]
    assert saved.calibration.source == "phantoms" and saved.cells.mean_pg == 15.0
    assert cli.main(["replay", str(out)]) == 0

    # a fresh viewer with every dock: same table, calibration, cells, landmarks, transform
    vb = make_napari_viewer()
    b = _docks(vb)
    sess_b = _docks_session(vb)
    assert sess_b.open(out)
    assert sess_b.differences == []
    _same_rows(_table(roi), _table(b["ROIDock"]))
    fa, fb = cal.calibration.fit, b["CalibrationDock"].calibration.fit
    assert fb.slope == pytest.approx(fa.slope, rel=1e-9) and fb.intercept == pytest.approx(
        fa.intercept, rel=1e-9
    )
    assert [r.cells for r in b["CellsDock"].results] == pytest.approx(
        [r.cells for r in cells.results], rel=1e-9
    )
    assert (
        b["CellsDock"].iron_per_cell.mean_pg == 15.0 and b["CellsDock"].iron_per_cell.sd_pg == 1.5
    )
    lm_b = b["RegistrationDock"].landmarks()
    assert lm_b["names"] == lm_a["names"] and lm_b["excluded"] == lm_a["excluded"]
    assert lm_b["model"] == "similarity"
    np.testing.assert_allclose(lm_b["moving_xyz_mm"], lm_a["moving_xyz_mm"], rtol=0, atol=1e-9)
    ta = va.layers["MPI (synthetic demo)"].metadata["mpi_viewer"]["transform_fixed_to_moving"]
    tb = vb.layers["MPI (synthetic demo)"].metadata["mpi_viewer"]["transform_fixed_to_moving"]
    np.testing.assert_allclose(tb["matrix"], ta["matrix"], atol=1e-9)
    np.testing.assert_allclose(tb["translation"], ta["translation"], atol=1e-9)
    # the similarity fit recovers the true MRI → MPI transform (demo truth)
    true = truth["transform_fixed_to_moving"]
    np.testing.assert_allclose(tb["matrix"], true["matrix"], atol=0.02)
    np.testing.assert_allclose(tb["translation"], true["translation"], atol=0.5)

    from qtpy.QtWidgets import QApplication

    vb.window._qt_window.resize(1500, 950)
    vb.dims.ndisplay = 2
    vb.reset_view()
    QApplication.processEvents()
    vb.screenshot("/tmp/session_reopened.png", canvas_only=False)

    # an input changed after saving: one notification naming it, nothing loaded
    seen = _errors(monkeypatch)
    mpi_file = saved.resolve(saved.input("mpi").path)
    mpi_file.write_bytes(mpi_file.read_bytes() + b"\0")
    vc = make_napari_viewer()
    from mpi_viewer.plugins._session_dock import SessionDock

    c = SessionDock(vc, autosave_ms=0, ask=lambda q: False)
    assert c.open(out) is False
    assert len(vc.layers) == 0
    errs = [m for k, m in seen if k == "error"]
    assert len(errs) == 1 and mpi_file.name in errs[0] and "changed" in errs[0]


def _docks_session(viewer):
    from mpi_viewer.plugins._session_dock import SessionDock

    for w in viewer.window.dock_widgets.values():
        if not isinstance(w, SessionDock) and hasattr(w, "widget"):
            w = w.widget()
        if isinstance(w, SessionDock):
            w._timer.stop()
            return w
    raise AssertionError("no Session dock")
