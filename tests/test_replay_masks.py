"""Sessions with painted masks (label images beside the session, NIfTI on the MPI grid):
measured as manual ROIs on replay, compared like any other ROI; a changed mask is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from mpi_viewer.cli import main
from mpi_viewer.demo.study import make_demo_study
from mpi_viewer.io.images import read_volume
from mpi_viewer.roi.regions import ROIParams
from mpi_viewer.study import pipeline as P
from mpi_viewer.study import session as S

HALF = 10  # box half-size, voxels


def _write_labels(path, mpi, labels):
    img = sitk.GetImageFromArray(labels.astype(np.uint16))
    img.CopyInformation(mpi.image)
    sitk.WriteImage(img, str(path), useCompression=True)


def _box(mpi, xyz_mm, half):
    c = np.rint(mpi.physical_to_index([xyz_mm])[0]).astype(int)
    return tuple(slice(v - half, v + half + 1) for v in c)


@pytest.fixture(scope="module")
def masked_session(tmp_path_factory, copy_demo):
    folder = tmp_path_factory.mktemp("mask_session")
    copy_demo(folder)
    study = make_demo_study()
    mpi = read_volume(folder / "mpi.nii.gz")
    lab = np.zeros(mpi.shape, dtype=np.uint16)
    lab[_box(mpi, study.source("isolated")["mpi_mm"], HALF)] = 1
    mask_path = folder / "painted_isolated.nii.gz"
    _write_labels(mask_path, mpi, lab)
    path = folder / "manual.json"
    s = P.new_session(path, mpi=folder / "mpi.nii.gz")
    s.rois = [
        S.ROISection(
            method="manual",
            params=ROIParams().to_dict(),
            seeds_xyz_mm=[[round(float(c), 1) for c in study.source("strong")["mpi_mm"]]],
            names=["strong"],
            masks=[
                S.MaskFile(
                    name="isolated_painted",
                    path=S.relative_path(mask_path, path),
                    sha256=S.sha256_file(mask_path),
                )
            ],
        )
    ]
    P.compute_and_save(s, path)
    return path, mask_path, study, lab


def test_painted_mask_measured_against_truth_and_replays(masked_session, capsys):
    path, _, study, lab = masked_session
    rows = S.load_session(path).results
    assert [r["name"] for r in rows] == ["strong", "isolated_painted"]
    row = rows[1]
    assert row["method"] == "manual" and row["label"] == 2
    src = study.source("isolated")
    m = lab > 0
    vox = study.mpi.voxel_volume_mm
    expected = float(study.render_sources([src["mpi_mm"]], [src["iron_ug"]])[m].sum()) * vox
    assert (
        abs(row["total_signal_au_mm3"] - expected)
        < 4 * study.truth["noise_sd_au"] * math.sqrt(m.sum()) * vox
    )
    assert row["volume_mm3"] == pytest.approx((2 * HALF + 1) ** 3 * vox)
    assert main(["replay", str(path)]) == 0
    assert "every number matches" in capsys.readouterr().out


def test_changed_mask_is_refused_naming_it(masked_session, tmp_path, capsys):
    import shutil

    path, mask_path, study, lab = masked_session
    folder = tmp_path / "copy"
    shutil.copytree(path.parent, folder)
    mpi = read_volume(folder / "mpi.nii.gz")
    changed = np.zeros_like(lab)
    changed[_box(mpi, study.source("isolated")["mpi_mm"], HALF - 3)] = 1
    _write_labels(folder / mask_path.name, mpi, changed)
    capsys.readouterr()
    assert main(["replay", str(folder / path.name)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and mask_path.name in err[0] and "changed" in err[0]
    # with --allow-changed-inputs the new mask is measured and differs from the stored numbers
    assert main(["replay", "--allow-changed-inputs", str(folder / path.name)]) == 1
    assert "isolated_painted" in capsys.readouterr().out
