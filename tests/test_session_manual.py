"""Manual ROIs in sessions: a box painted in napari's ROI dock survives save → replay →
reopen; ``quantify --mask --save-session`` records the label image as a hashed input.

Every total is checked against the demo's noise-free truth (``render_sources`` summed
over the same box, within 4 noise SD of a sum of that many voxels)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from mpi_viewer.cli import main
from mpi_viewer.demo.study import make_demo_study
from mpi_viewer.io.images import read_volume
from mpi_viewer.study import session as S

HALF = 8  # half-size of the painted box, voxels


def _box(vol, xyz_mm, half=HALF):
    c = np.rint(vol.physical_to_index([xyz_mm])[0]).astype(int)
    return tuple(slice(v - half, v + half + 1) for v in c)


def _truth_total(study, name, mask):
    """Noise-free total signal (a.u.·mm³) of source ``name`` in ``mask`` and 4 noise SD of that sum."""
    src = study.source(name)
    vox = study.mpi.voxel_volume_mm
    total = float(study.render_sources([src["mpi_mm"]], [src["iron_ug"]])[mask].sum()) * vox
    return total, 4 * study.truth["noise_sd_au"] * math.sqrt(mask.sum()) * vox


# -- command line -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_study(tmp_path_factory, copy_demo):
    folder = tmp_path_factory.mktemp("quantify_mask_session")
    copy_demo(folder)
    study = make_demo_study()
    mpi = read_volume(folder / "mpi.nii.gz")
    lab = np.zeros(mpi.shape, dtype=np.uint16)
    lab[_box(mpi, study.source("isolated")["mpi_mm"])] = 3
    img = sitk.GetImageFromArray(lab)
    img.CopyInformation(mpi.image)
    sitk.WriteImage(img, str(folder / "painted.nii.gz"), useCompression=True)
    return folder, study, lab


def test_quantify_mask_session_replays_and_refuses_changed_mask(cli_study, tmp_path, capsys):
    folder, study, lab = cli_study
    mask = folder / "painted.nii.gz"
    before = S.sha256_file(mask)
    session = folder / "q.json"  # beside its inputs: no "outside its folder" note
    seed = ",".join(f"{round(float(c), 1)}" for c in study.source("strong")["mpi_mm"])
    assert (
        main(
            [
                "quantify",
                str(folder / "mpi.nii.gz"),
                f"--seed={seed}",
                "--mask",
                str(mask),
                "-o",
                str(tmp_path / "q.csv"),
                "--save-session",
                str(session),
            ]
        )
        == 0
    )
    assert S.sha256_file(mask) == before  # an input: never written
    s = S.load_session(session)
    assert [m.sha256 for m in s.rois[0].masks] == [before]
    rows = s.results
    assert [r["method"] for r in rows] == ["halfmax", "manual"] and rows[1]["name"] == "manual_3"
    exp, tol = _truth_total(study, "isolated", lab > 0)
    assert abs(rows[1]["total_signal_au_mm3"] - exp) < tol
    capsys.readouterr()
    assert main(["replay", str(session)]) == 0

    changed = lab.copy()
    changed[changed > 0] = 0
    changed[_box(study.mpi, study.source("faint")["mpi_mm"], 4)] = 1
    img = sitk.GetImageFromArray(changed)
    img.CopyInformation(study.mpi.image)
    moved = tmp_path / "painted.nii.gz"
    sitk.WriteImage(img, str(moved), useCompression=True)
    mask.replace(folder / "painted_original.nii.gz")
    moved.replace(mask)
    try:
        capsys.readouterr()
        assert main(["replay", str(session)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "painted.nii.gz" in err[0] and "changed" in err[0]
    finally:
        (folder / "painted_original.nii.gz").replace(mask)


def test_quantify_mask_only_session(cli_study, tmp_path, capsys):
    folder, study, lab = cli_study
    session = folder / "only.json"
    assert (
        main(
            [
                "quantify",
                str(folder / "mpi.nii.gz"),
                "--mask",
                str(folder / "painted.nii.gz"),
                "-o",
                str(tmp_path / "only.csv"),
                "--save-session",
                str(session),
            ]
        )
        == 0
    )
    rows = S.load_session(session).results
    assert [r["name"] for r in rows] == ["manual_3"]  # as quantify's CSV names it
    exp, tol = _truth_total(study, "isolated", lab > 0)
    assert abs(rows[0]["total_signal_au_mm3"] - exp) < tol
    capsys.readouterr()
    assert main(["replay", str(session)]) == 0
    assert "differs" not in capsys.readouterr().err


# -- napari: paint, save, replay, reopen ----------------------------------------------------------
@pytest.fixture
def notes(monkeypatch, tmp_path):
    import napari.utils.notifications as notifications

    monkeypatch.setenv(S.RECOVERY_ENV, str(tmp_path / "recovery"))
    shown = {"error": [], "warning": []}
    monkeypatch.setattr(notifications, "show_error", lambda m: shown["error"].append(str(m)))
    monkeypatch.setattr(notifications, "show_warning", lambda m: shown["warning"].append(str(m)))
    monkeypatch.setattr(notifications, "show_info", lambda m: None)
    return shown


def _docks(viewer):
    from mpi_viewer.plugins._roi_dock import ROIDock
    from mpi_viewer.plugins._session_dock import SessionDock

    roi = ROIDock(viewer)
    viewer.window.add_dock_widget(roi, name="MPI ROIs")
    return roi, SessionDock(viewer, autosave_ms=0, ask=lambda q: True)


@pytest.mark.gui
def test_painted_roi_saved_replayed_and_reopened(make_napari_viewer, notes, tmp_path, capsys):
    from mpi_viewer.plugins._launch import load_demo
    from mpi_viewer.plugins._roi_dock import MANUAL, PAINT_LAYER

    va = make_napari_viewer()
    study = load_demo(va)
    roi_a, sess_a = _docks(va)
    roi_a.method.setCurrentIndex(roi_a.method.findData(MANUAL))
    box = _box(study.mpi, study.source("isolated")["mpi_mm"])
    data = np.zeros(study.mpi.shape, dtype=np.uint16)
    data[box] = 1
    va.layers[PAINT_LAYER].data = data  # what painting does
    roi_a.manual_btn.click()
    assert [r.method for r in roi_a.results] == ["manual"]
    total_a, name_a = roi_a.results[0].total_signal, roi_a.results[0].name
    exp, tol = _truth_total(study, "isolated", data > 0)
    assert abs(total_a - exp) < tol

    out = sess_a.save(tmp_path / "manual.json")
    assert out is not None and not notes["error"]
    s = S.load_session(out)
    (mask,) = s.rois[0].masks
    assert mask.path.endswith(".nrrd") and mask.names == [name_a]
    capsys.readouterr()
    assert main(["replay", str(out)]) == 0

    vb = make_napari_viewer()
    roi_b, sess_b = _docks(vb)
    assert sess_b.open(out) and sess_b.differences == []
    assert not notes["error"] and not notes["warning"]
    (row,) = roi_b.results
    assert row.name == name_a and row.method == "manual"
    assert abs(row.total_signal - total_a) <= 1e-9 * abs(total_a)
    painted = np.asarray(vb.layers[PAINT_LAYER].data)
    assert int((painted > 0).sum()) == int(data.sum()) and (painted[box] > 0).all()

    # the viewer closing: ROIs whose MPI layer is gone are left out of the autosave, quietly
    assert roi_b.add_seed_mm(study.source("strong")["mpi_mm"]) is not None
    vb.layers.remove(roi_b.mpi_layer)
    assert sess_b.autosave_now() is not None
    assert not notes["warning"] and not notes["error"]


def test_session_over_the_mask_is_refused(cli_study, tmp_path, capsys):
    folder, _, _ = cli_study
    mask = folder / "painted.nii.gz"
    before = S.sha256_file(mask)
    assert (
        main(
            [
                "quantify",
                str(folder / "mpi.nii.gz"),
                "--mask",
                str(mask),
                "-o",
                str(tmp_path / "x.csv"),
                "--save-session",
                str(mask),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "painted.nii.gz" in err[0]
    assert S.sha256_file(mask) == before and not (tmp_path / "x.csv").exists()
