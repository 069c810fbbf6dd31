"""``mpi-viewer calibrate`` and quantify's calibration / cell flags on the written demo."""

import json
import math

import pytest
from scipy import stats

from mpi_viewer.calibration.record import load_calibration
from mpi_viewer.cli import main
from mpi_viewer.demo.study import make_demo_study
from mpi_viewer.io.tables import read_csv

#: Fraction of a 3-D Gaussian's integral above half its maximum: P(χ²₃ ≤ 2 ln 2).
HALFMAX_FRACTION = stats.chi2.cdf(2 * math.log(2), 3)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory, copy_demo):
    d = tmp_path_factory.mktemp("demo")
    copy_demo(d, include_ct=False)
    return d


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_calibrate_builds_the_line(demo_dir, tmp_path, capsys):
    out = tmp_path / "cal.json"
    lib = tmp_path / "lib"
    rc = main(
        [
            "calibrate",
            str(demo_dir / "mpi.nii.gz"),
            "--phantoms",
            str(demo_dir / "phantoms.csv"),
            "--name",
            "demo_vivotrax",
            "--library",
            str(lib),
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    c = load_calibration(out)
    truth = make_demo_study(include_ct=False).truth
    # slope = sensitivity × the half-maximum ROI's share of the demo's PSF (its truth)
    assert c.fit.slope == pytest.approx(
        truth["sensitivity_au_mm3_per_ug"] * truth["psf_halfmax_fraction"], rel=0.05
    )
    assert abs(c.fit.intercept) < 3 * c.fit.se_intercept
    assert c.fit.n == 6 and c.fit.r_squared > 0.999
    assert c.roi["method"] == "halfmax" and c.tracer == "VivoTrax (synthetic)"
    assert c.acquisition["gradient_T_per_m"] == 5.7
    assert (lib / "demo_vivotrax.json").is_file()
    assert "R²" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, msg",
    [
        ("name,x,y,iron_ug\na,1,2,1\nb,1,2,2\n", "missing column"),
        ("name,x,y,z,iron_ug\na,1,2,3,1\na,1,2,3,2\n", "duplicate"),
        ("name,x,y,z,iron_ug\na,1,2,3,x\nb,1,2,3,2\n", "not a number"),
        ("name,x,y,z,iron_ug\na,1,2,3,-2\nb,1,2,3,2\n", "≥ 0"),
        ("name,x,y,z,iron_ug\na,1,2,3,1\n", "at least 2"),
        ("name,x,y,z,iron_ug\na,1,2,3,1\nfar_away,900,0,0,2\n", "'far_away'"),
    ],
)
def test_bad_phantoms_exit_2(demo_dir, tmp_path, capsys, text, msg):
    ph = tmp_path / "ph.csv"
    ph.write_text(text)
    out = tmp_path / "cal.json"
    rc = main(["calibrate", str(demo_dir / "mpi.nii.gz"), "--phantoms", str(ph), "-o", str(out)])
    assert rc == 2
    assert msg in _one_error_line(capsys)
    assert not out.exists()


def _quantify(demo_dir, out, *extra):
    truth = json.loads((demo_dir / "truth.json").read_text())
    seeds = [f"--seed={','.join(f'{v:.3f}' for v in s['mpi_mm'])}" for s in truth["sources"][:3]]
    return main(["quantify", str(demo_dir / "mpi.nii.gz"), *seeds, "-o", str(out), *extra])


def test_quantify_with_phantoms_and_cells(demo_dir, tmp_path):
    out = tmp_path / "q.csv"
    rc = _quantify(
        demo_dir,
        out,
        "--phantoms",
        str(demo_dir / "phantoms.csv"),
        "--iron-per-cell",
        "15",
        "--iron-per-cell-sd",
        "1.5",
    )
    assert rc == 0
    rows = read_csv(out)
    truth = {s["name"]: s for s in make_demo_study(include_ct=False).truth["sources"]}
    for row, (name, tol) in zip(
        rows, (("isolated", 0.05), ("strong", 0.10), ("weak", 0.10)), strict=True
    ):
        for col in (
            "iron_ug",
            "iron_ci_low_ug",
            "iron_ci_high_ug",
            "below_lod",
            "warnings",
            "cells",
            "cells_ci_low",
            "cells_ci_high",
        ):
            assert col in row
        assert float(row["iron_ug"]) == pytest.approx(truth[name]["iron_ug"], rel=tol)
        assert float(row["cells"]) == pytest.approx(truth[name]["cells"], rel=tol)
        assert float(row["cells_ci_low"]) <= truth[name]["cells"] <= float(row["cells_ci_high"])
        assert row["below_lod"] == "False"
        assert "20–70 %" in row["warnings"]  # solution calibration applied to cells


def test_quantify_with_a_saved_calibration_matches_phantoms(demo_dir, tmp_path, capsys):
    cal_json = tmp_path / "cal.json"
    assert (
        main(
            [
                "calibrate",
                str(demo_dir / "mpi.nii.gz"),
                "--phantoms",
                str(demo_dir / "phantoms.csv"),
                "-o",
                str(cal_json),
            ]
        )
        == 0
    )
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert _quantify(demo_dir, a, "--phantoms", str(demo_dir / "phantoms.csv")) == 0
    assert _quantify(demo_dir, b, "--calibration", str(cal_json)) == 0
    ra, rb = read_csv(a), read_csv(b)
    for x, y in zip(ra, rb, strict=True):
        assert float(x["iron_ug"]) == pytest.approx(float(y["iron_ug"]), rel=1e-5)
        assert "cells" not in x  # no iron per cell, no cell columns
    # a calibration made with another ROI method is applied, loudly
    nsd = tmp_path / "nsd.json"
    assert (
        main(
            [
                "calibrate",
                str(demo_dir / "mpi.nii.gz"),
                "--phantoms",
                str(demo_dir / "phantoms.csv"),
                "--method",
                "nsd",
                "-o",
                str(nsd),
            ]
        )
        == 0
    )
    c = tmp_path / "c.csv"
    # a calibration made with another ROI method is an error (nothing written) ...
    assert _quantify(demo_dir, c, "--calibration", str(nsd)) == 2
    assert not c.exists()
    # a parameter mismatch too (the fraction of a half-maximum ROI), named in one line
    capsys.readouterr()
    assert _quantify(demo_dir, c, "--calibration", str(cal_json), "--fraction", "0.4") == 2
    assert "ROI parameter fraction differs: calibration 0.5, image 0.4" in _one_error_line(capsys)
    assert not c.exists()
    # ... unless the user says so; then applied loudly
    assert _quantify(demo_dir, c, "--calibration", str(nsd), "--allow-method-mismatch") == 0
    assert all("ROI method differs" in r["warnings"] for r in read_csv(c))


@pytest.mark.parametrize(
    "extra, msg",
    [
        (["--iron-per-cell", "0"], "must be a number > 0"),
        (["--iron-per-cell", "-15"], "must be a number > 0"),
        (["--iron-per-cell", "15", "--iron-per-cell-sd", "20"], "larger than the mean"),
        (["--iron-per-cell-sd", "2"], "needs --iron-per-cell"),
    ],
)
def test_bad_iron_per_cell_exit_2(demo_dir, tmp_path, capsys, extra, msg):
    out = tmp_path / "q.csv"
    rc = _quantify(demo_dir, out, "--phantoms", str(demo_dir / "phantoms.csv"), *extra)
    assert rc == 2
    assert msg in _one_error_line(capsys)
    assert not out.exists()


def test_iron_per_cell_without_calibration_and_other_schema(demo_dir, tmp_path, capsys):
    out = tmp_path / "q.csv"
    assert _quantify(demo_dir, out, "--iron-per-cell", "15") == 2
    assert "needs a calibration" in _one_error_line(capsys)
    cal_json = tmp_path / "cal.json"
    assert (
        main(
            [
                "calibrate",
                str(demo_dir / "mpi.nii.gz"),
                "--phantoms",
                str(demo_dir / "phantoms.csv"),
                "-o",
                str(cal_json),
            ]
        )
        == 0
    )
    capsys.readouterr()
    d = json.loads(cal_json.read_text())
    d["schema_version"] = 99
    cal_json.write_text(json.dumps(d))
    assert _quantify(demo_dir, out, "--calibration", str(cal_json)) == 2
    assert "schema version 99" in _one_error_line(capsys)
    assert not out.exists()


def test_calibrate_strict_refuses_a_calibration_with_warnings(demo_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "single.json"
    args = ["calibrate", str(demo_dir / "mpi.nii.gz"), "--phantoms", str(demo_dir / "phantoms.csv")]
    args += ["--reference-phantom", "vial_5ug", "-o", str(out)]
    assert main([*args, "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == (
        "mpi-viewer: warning: single-reference calibration: no fit residuals, interval from "
        "image noise only"
    )
    assert err[-1] == "mpi-viewer: error: --strict: 1 warning(s) above; nothing written"
    assert not out.exists() and not out.parent.exists()
    assert main(args) == 0 and out.is_file()  # without --strict: written, the folder created
