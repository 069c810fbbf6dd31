"""`mpi-viewer quantify MPI --mask LABELS.nii.gz`: painted labels measured as manual ROIs,
totals against the demo's known PSF and iron."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from mpi_viewer.cli import main
from mpi_viewer.demo.study import make_demo_study
from mpi_viewer.io import tables as res
from mpi_viewer.io.images import read_volume


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, copy_demo):
    folder = tmp_path_factory.mktemp("cli_mask")
    copy_demo(folder)
    study = make_demo_study()
    mpi = read_volume(folder / "mpi.nii.gz")
    lab = np.zeros(mpi.shape, dtype=np.uint16)
    for value, name, half in ((4, "isolated", 10), (9, "faint", 6)):
        c = np.rint(mpi.physical_to_index([study.source(name)["mpi_mm"]])[0]).astype(int)
        lab[tuple(slice(v - half, v + half + 1) for v in c)] = value
    img = sitk.GetImageFromArray(lab)
    img.CopyInformation(mpi.image)
    sitk.WriteImage(img, str(folder / "painted.nii.gz"), useCompression=True)
    return folder, study, lab


def _expected(study, name, mask):
    src = study.source(name)
    vox = study.mpi.voxel_volume_mm
    total = float(study.render_sources([src["mpi_mm"]], [src["iron_ug"]])[mask].sum()) * vox
    return total, 4 * study.truth["noise_sd_au"] * math.sqrt(mask.sum()) * vox


def test_mask_only(study_dir, tmp_path):
    folder, study, lab = study_dir
    out = tmp_path / "rois.csv"
    assert (
        main(
            [
                "quantify",
                str(folder / "mpi.nii.gz"),
                "--mask",
                str(folder / "painted.nii.gz"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    rows = res.read_csv(out)
    assert [r["name"] for r in rows] == ["manual_4", "manual_9"]
    assert [r["method"] for r in rows] == ["manual", "manual"]
    for row, name, value in zip(rows, ("isolated", "faint"), (4, 9), strict=True):
        exp, tol = _expected(study, name, lab == value)
        assert abs(float(row["total_signal_au_mm3"]) - exp) < tol


def test_seeds_and_mask(study_dir, tmp_path):
    folder, study, lab = study_dir
    out = tmp_path / "rois.csv"
    strong = ",".join(f"{v:.2f}" for v in study.source("strong")["mpi_mm"])
    assert (
        main(
            [
                "quantify",
                str(folder / "mpi.nii.gz"),
                f"--seed={strong}",
                "--mask",
                str(folder / "painted.nii.gz"),
                "-o",
                str(out),
                "--masks",
                str(tmp_path / "m.nii.gz"),
            ]
        )
        == 0
    )
    rows = res.read_csv(out)
    assert [r["label"] for r in rows] == ["1", "2", "3"]
    assert [r["method"] for r in rows] == ["halfmax", "manual", "manual"]
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "m.nii.gz")))
    assert np.array_equal(written == 2, lab == 4) and np.array_equal(written == 3, lab == 9)


@pytest.mark.parametrize("case", ["wrong_grid", "empty", "nothing", "missing"])
def test_bad_mask_exit_2_one_line(study_dir, tmp_path, capsys, case):
    folder, _, _ = study_dir
    mask = tmp_path / "bad.nii.gz"
    if case == "wrong_grid":
        sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), dtype=np.uint8)), str(mask))
    elif case == "empty":
        img = sitk.GetImageFromArray(
            np.zeros(read_volume(folder / "mpi.nii.gz").shape, dtype=np.uint8)
        )
        img.CopyInformation(read_volume(folder / "mpi.nii.gz").image)
        sitk.WriteImage(img, str(mask))
    argv = ["quantify", str(folder / "mpi.nii.gz"), "-o", str(tmp_path / "o.csv")]
    if case != "nothing":
        argv += ["--mask", str(mask)]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert {
        "wrong_grid": "not the MPI",
        "empty": "no labelled",
        "nothing": "--mask",
        "missing": "bad.nii.gz",
    }[case] in err[0]
    assert not (tmp_path / "o.csv").exists()
