"""Manual ROIs in sessions: a box painted in napari's ROI dock survives save → replay →
reopen; ``quantify --mask --save-session`` records the label image as a hashed input.

Every total is checked against the demo's noise-free truth (``render_sources`` summed
over the same box, within 4 noise SD of a sum of that many voxels)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from mpi_viewer import session as S
from mpi_viewer.cli import main
from mpi_viewer.demo import make_demo_study, write_demo_study
from mpi_viewer.volume import read_volume

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
def cli_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quantify_mask_session")
    write_demo_study(folder)
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
    assert main(["quantify", str(folder / "mpi.nii.gz"), f"--seed={seed}", "--mask", str(mask),
                 "-o", str(tmp_path / "q.csv"), "--save-session", str(session)]) == 0
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
    assert main(["quantify", str(folder / "mpi.nii.gz"), "--mask", str(folder / "painted.nii.gz"),
                 "-o", str(tmp_path / "only.csv"), "--save-session", str(session)]) == 0
    rows = S.load_session(session).results
    assert [r["name"] for r in rows] == ["manual_3"]  # as quantify's CSV names it
    exp, tol = _truth_total(study, "isolated", lab > 0)
    assert abs(rows[0]["total_signal_au_mm3"] - exp) < tol
    capsys.readouterr()
    assert main(["replay", str(session)]) == 0
    assert "differs" not in capsys.readouterr().err
