"""``mpi-viewer quantify`` on the demo study written to disk: ROI totals against the
known PSF and iron, the results CSV with units in its columns, label masks on the MPI
grid, and bad input as exit 2 with one stderr line and nothing written."""

import math
import re

import numpy as np
import pytest

from mpi_viewer.cli import main
from mpi_viewer.demo.study import make_demo_study, write_demo_study
from mpi_viewer.io.tables import read_csv


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    write_demo_study(d)
    return d, make_demo_study()


def _seed(xyz):
    return "--seed=" + ",".join(f"{v:.4f}" for v in xyz)


def _expected(study, src):
    """Signal inside the PSF's half-maximum region in continuous space (ROIs integrate at
    sub-voxel resolution): the demo kernel's share there (its truth) of sensitivity × iron."""
    t = study.truth
    return t["sensitivity_au_mm3_per_ug"] * src["iron_ug"] * t["psf_halfmax_fraction"]


def test_quantify_writes_csv_and_masks(demo_dir, tmp_path, capsys):
    import SimpleITK as sitk

    d, study = demo_dir
    iso, weak = study.source("isolated"), study.source("weak")
    out, masks = tmp_path / "r.csv", tmp_path / "m.nii.gz"
    rc = main(
        [
            "quantify",
            str(d / "mpi.nii.gz"),
            _seed(np.add(iso["mpi_mm"], 0.5)),
            _seed(weak["mpi_mm"]),
            "-o",
            str(out),
            "--masks",
            str(masks),
        ]
    )
    assert rc == 0
    rows = read_csv(out)
    assert [r["name"] for r in rows] == ["roi_1", "roi_2"]
    # the sub-voxel total (what the calibration uses) is the kernel's half-maximum share
    sub = float(rows[0]["total_signal_subvoxel_au_mm3"])
    assert sub == pytest.approx(_expected(study, iso), rel=0.02)
    assert "shared_signal" in rows[1]["flags"]
    for col in (
        "peak_au",
        "mean_au",
        "volume_mm3",
        "volume_subvoxel_mm3",
        "total_signal_subvoxel_au_mm3",
        "snr",
        "fwhm_x_mm",
        "fwhm_y_mm",
        "fwhm_z_mm",
        "noise_sd_au",
    ):
        assert col in rows[0]
    lab = sitk.ReadImage(str(masks))
    assert lab.GetSize() == study.mpi.image.GetSize()
    np.testing.assert_allclose(lab.GetOrigin(), study.mpi.origin_mm, atol=1e-4)
    a = sitk.GetArrayFromImage(lab)
    assert int((a == 1).sum()) == int(rows[0]["n_voxels"])
    # the reported volume is the written mask's (to the CSV's 6 digits)
    vox = float(np.prod(study.mpi.spacing_mm))
    assert float(rows[0]["volume_mm3"]) == pytest.approx(int((a == 1).sum()) * vox, rel=5e-6)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["ROI", "signal", "a.u.·mm³"]  # the readable table
    assert out[1].split()[:2] == ["roi_1", f"{float(rows[0]['total_signal_au_mm3']):.6g}"]


def test_quantify_nsd_and_noise_sd(demo_dir, tmp_path):
    d, study = demo_dir
    iso = study.source("isolated")
    out = tmp_path / "r.csv"
    assert (
        main(
            [
                "quantify",
                str(d / "mpi.nii.gz"),
                _seed(iso["mpi_mm"]),
                "--method",
                "nsd",
                "--noise-sd",
                "1.5",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    row = read_csv(out)[0]
    assert float(row["threshold_au"]) == pytest.approx(7.5)
    clean = study.render_sources([iso["mpi_mm"]], [iso["iron_ug"]])
    assert float(row["total_signal_au_mm3"]) == pytest.approx(
        clean[clean >= 7.5].sum() * 0.125, rel=0.02
    )


def test_quantify_2d_array_with_spacing_flag(tmp_path, capsys):
    n = 64
    y, x = np.mgrid[0:n, 0:n] * 0.3125
    img = 10 * np.exp(-0.5 * (((x - 10.0) / 0.7) ** 2 + ((y - 8.0) / 0.9) ** 2))
    img += np.random.default_rng(1).normal(0, 0.1, img.shape)
    p = tmp_path / "mpi_blob.npy"
    np.save(p, img.astype(np.float32))
    out = tmp_path / "r.csv"
    rc = main(
        ["quantify", str(p), "--seed=10.3,8.2", "--spacing-mm", "0.3125,0.3125", "-o", str(out)]
    )
    assert rc == 0, capsys.readouterr().err
    row = read_csv(out)[0]
    assert "area_mm2" in row and "total_signal_au_mm2" in row and "fwhm_z_mm" not in row
    # half the total signal of a 2-D Gaussian lies inside its half-maximum ellipse
    total = 10 * 2 * math.pi * 0.7 * 0.9
    assert float(row["total_signal_subvoxel_au_mm2"]) == pytest.approx(0.5 * total, rel=0.03)
    # a 3-D seed on the 2-D image
    assert (
        main(
            [
                "quantify",
                str(p),
                "--seed=10,8,0",
                "--spacing-mm",
                "0.3125,0.3125",
                "-o",
                str(out),
                "--overwrite",
            ]
        )
        == 2
    )
    assert "expected 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, words",
    [
        (["--seed=1,2"], "expected 3"),
        (["--seed=500,0,0"], "outside the image"),
        ([], "at least one --seed"),
        (["--seed=0,0,0", "--fraction", "2"], "fraction"),
        (["--seed=0,0,0", "--saturation-curve", "/nonexistent.csv"], "no such saturation-curve"),
    ],
)
def test_quantify_bad_input_exit_2_one_line_nothing_written(
    demo_dir, tmp_path, capsys, args, words
):
    d, _ = demo_dir
    out = tmp_path / "r.csv"
    capsys.readouterr()
    assert main(["quantify", str(d / "mpi.nii.gz"), *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert not out.exists()


def test_quantify_background_click_exit_2(demo_dir, tmp_path, capsys):
    d, study = demo_dir
    bg = np.add(study.source("isolated")["mpi_mm"], [0, 0, -12.0])
    out = tmp_path / "r.csv"
    assert main(["quantify", str(d / "mpi.nii.gz"), _seed(bg), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no hot spot above the noise within 3 mm of (" in err[0]
    # ... and where the nearest one is: the isolated source and fiducial M3 are both 12.0 mm away
    near = re.search(r"nearest at \(([^)]*)\) mm, ([\d.]+) mm away", err[0])
    xyz = [float(v) for v in near.group(1).split(",")]
    t = study.truth
    known = [x["mpi_mm"] for x in t["sources"] + t["vials"]]
    known += [f["mpi_mm"] for f in t["fiducials"] if f.get("in_mpi")]
    assert min(np.linalg.norm(np.subtract(xyz, k)) for k in known) < 0.5  # a voxel
    truest = min(np.linalg.norm(np.subtract(bg, k)) for k in known)
    assert float(near.group(2)) == pytest.approx(truest, abs=0.5)
    assert not out.exists()


def test_quantify_help_names_the_default_method(capsys):
    with pytest.raises(SystemExit):
        main(["quantify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default halfmax" in text and "Sehl" in text
