"""Calibration fits, intervals, library and warnings against analytic and synthetic truth."""

import json

import numpy as np
import pytest
from scipy import stats

from mpi_viewer import calibration as cal
from mpi_viewer.calibration.fit import detection_limit, fit_calibration, inverse_predict
from mpi_viewer.calibration.phantoms import (
    CalibrationPoint,
    Phantom,
    phantoms_outside,
    read_phantoms_csv,
)
from mpi_viewer.calibration.record import (
    Calibration,
    CalibrationLibrary,
    compatibility_warnings,
    load_calibration,
    save_calibration,
)
from mpi_viewer.errors import InputError

X = np.array([0.5, 1.0, 2.5, 5.0, 10.0, 20.0])  # µg, the demo's vials
SLOPE, INTERCEPT = 360.0, 4.0  # a.u.·mm³ per µg, a.u.·mm³


# -- fits ------------------------------------------------------------------------------------
def test_noise_free_line_is_exact():
    f = fit_calibration(SLOPE * X + INTERCEPT, X)
    assert f.slope == pytest.approx(SLOPE, rel=1e-12)
    assert f.intercept == pytest.approx(INTERCEPT, abs=1e-9)
    assert f.r_squared == pytest.approx(1.0, abs=1e-12)
    assert f.residual_sd == pytest.approx(0.0, abs=1e-9)
    assert f.dof == 4 and f.n == 6 and not f.through_origin


def test_ols_matches_closed_form_and_scipy():
    rng = np.random.default_rng(1)
    y = SLOPE * X + INTERCEPT + rng.normal(0, 5.0, X.size)
    f = fit_calibration(y, X)
    ref = stats.linregress(X, y)
    assert f.slope == pytest.approx(ref.slope, rel=1e-12)
    assert f.intercept == pytest.approx(ref.intercept, rel=1e-10)
    assert f.se_slope == pytest.approx(ref.stderr, rel=1e-10)
    assert f.se_intercept == pytest.approx(ref.intercept_stderr, rel=1e-10)
    assert f.r_squared == pytest.approx(ref.rvalue**2, rel=1e-12)
    # covariance of slope and intercept: −x̄·s²/Sxx
    s2 = np.sum((y - ref.slope * X - ref.intercept) ** 2) / 4
    assert f.cov[0][1] == pytest.approx(-X.mean() * s2 / np.sum((X - X.mean()) ** 2), rel=1e-10)


def test_estimates_within_their_standard_errors():
    """Known slope/intercept with noise: the SEs describe the estimates' real scatter."""
    rng = np.random.default_rng(2)
    slopes, inters, se_s, se_i = [], [], [], []
    for _ in range(400):
        y = SLOPE * X + INTERCEPT + rng.normal(0, 5.0, X.size)
        f = fit_calibration(y, X)
        (
            slopes.append(f.slope),
            inters.append(f.intercept),
            se_s.append(f.se_slope),
            se_i.append(f.se_intercept),
        )
    slopes, inters, se_s, se_i = map(np.asarray, (slopes, inters, se_s, se_i))
    # true SE of the slope: σ/√Sxx
    true_se = 5.0 / np.sqrt(np.sum((X - X.mean()) ** 2))
    assert np.std(slopes) == pytest.approx(true_se, rel=0.1)
    assert abs(np.mean(slopes) - SLOPE) < 3 * true_se / np.sqrt(400)
    # |estimate − truth| ≤ t₀.₈₄·SE in ~68 % of realisations (t on 4 dof)
    k = stats.t.ppf(0.84, 4)
    assert 0.62 < np.mean(np.abs(slopes - SLOPE) <= k * se_s) < 0.74
    assert 0.62 < np.mean(np.abs(inters - INTERCEPT) <= k * se_i) < 0.74


def test_through_origin():
    rng = np.random.default_rng(3)
    y = SLOPE * X + rng.normal(0, 5.0, X.size)
    f = fit_calibration(y, X, through_origin=True)
    assert f.intercept == 0.0 and f.dof == 5
    assert f.slope == pytest.approx(np.sum(X * y) / np.sum(X * X), rel=1e-12)
    s2 = np.sum((y - f.slope * X) ** 2) / 5
    assert f.se_slope == pytest.approx(np.sqrt(s2 / np.sum(X * X)), rel=1e-10)


def test_relative_weighting_matches_weighted_polyfit():
    rng = np.random.default_rng(4)
    y = (SLOPE * X + INTERCEPT) * (1 + rng.normal(0, 0.03, X.size))
    f = fit_calibration(y, X, weighting="relative")
    # numpy's w multiplies residuals: w = 1/y gives weights 1/y²; cov scaled by χ²/dof
    (m, b), cov = np.polyfit(X, y, 1, w=1 / y, cov=True)
    assert f.slope == pytest.approx(m, rel=1e-10)
    assert f.intercept == pytest.approx(b, rel=1e-8)
    assert np.allclose(f.cov, cov, rtol=1e-8)
    assert f.residual_sd == pytest.approx(0.03, rel=0.8)  # a relative SD


def test_single_reference_ratio():
    f = fit_calibration([720.0], [2.0], mode="single_reference", signal_sd=[3.0])
    assert f.slope == 360.0 and f.intercept == 0.0
    assert f.se_slope == pytest.approx(1.5)
    x, lo, hi = inverse_predict(f, 360.0, signal_sd=3.0)
    assert x == pytest.approx(1.0)
    # relative SD √((3/360)² + (3/720)²) ≈ 0.93 %, so a ±1.8 % interval
    assert lo == pytest.approx(1 - 1.96 * np.hypot(3 / 360, 3 / 720), rel=2e-3)
    assert hi == pytest.approx(1 + 1.96 * np.hypot(3 / 360, 3 / 720), rel=2e-3)
    x, lo, hi = inverse_predict(f, 360.0)  # no noise SD of the target: no interval
    assert x == pytest.approx(1.0) and np.isnan(lo) and np.isnan(hi)


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"signal": [1, 2, 3], "amount": [1, 2]}, "3 signals"),
        ({"signal": [3, 2, 1], "amount": [1, 2, 3]}, "slope"),
        ({"signal": [1], "amount": [1]}, "at least 2"),
        ({"signal": [1, 2], "amount": [2, 2]}, "same amount"),
        ({"signal": [1, np.nan], "amount": [1, 2]}, "finite"),
    ],
)
def test_fit_rejects_bad_input(kw, msg):
    with pytest.raises(InputError, match=msg):
        fit_calibration(kw["signal"], kw["amount"])


# -- inverse prediction -----------------------------------------------------------------------------
def test_inverse_prediction_interval_is_the_inverted_prediction_band():
    rng = np.random.default_rng(5)
    y = SLOPE * X + INTERCEPT + rng.normal(0, 5.0, X.size)
    f = fit_calibration(y, X)
    x0, lo, hi = inverse_predict(f, 1000.0)
    assert x0 == pytest.approx((1000.0 - f.intercept) / f.slope)
    # at the bounds, 1000 lies exactly on the prediction band (Draper & Smith)
    t = stats.t.ppf(0.975, 4)
    n, xbar, sxx = X.size, X.mean(), np.sum((X - X.mean()) ** 2)
    for xb, sign in ((lo, +1), (hi, -1)):
        band = (
            f.slope * xb
            + f.intercept
            + sign * t * f.residual_sd * np.sqrt(1 + 1 / n + (xb - xbar) ** 2 / sxx)
        )
        assert band == pytest.approx(1000.0, rel=1e-9)


@pytest.mark.parametrize("weighting", ["ols", "relative"])
def test_inverse_prediction_coverage_on_synthetic_lines(weighting):
    """95 % calibration intervals cover the true x in 93–97 % of 2000 realisations."""
    rng = np.random.default_rng(6)
    hits = 0
    n_rep = 2000
    x_true = 3.7
    for _ in range(n_rep):
        if weighting == "ols":
            e = rng.normal(0, 5.0, X.size + 1)
            y = SLOPE * X + INTERCEPT + e[:-1]
            y0 = SLOPE * x_true + INTERCEPT + e[-1]
        else:
            e = rng.normal(0, 0.03, X.size + 1)
            y = (SLOPE * X + INTERCEPT) * (1 + e[:-1])
            y0 = (SLOPE * x_true + INTERCEPT) * (1 + e[-1])
        f = fit_calibration(y, X, weighting=weighting)
        _, lo, hi = inverse_predict(f, y0)
        hits += lo <= x_true <= hi
    assert 0.93 <= hits / n_rep <= 0.975


def test_unbounded_interval_when_slope_is_not_significant():
    f = fit_calibration([1.0, 5.0, 2.0, 6.0], [1.0, 2.0, 3.0, 4.0])
    x0, lo, hi = inverse_predict(f, 3.0)
    assert np.isfinite(x0) and lo == -np.inf and hi == np.inf


# -- detection limit ----------------------------------------------------------------------------------
def test_detection_limit_is_noise_threshold_over_peak_per_ug():
    pts = [CalibrationPoint(f"v{x}", signal=SLOPE * x, iron_ug=x, peak_au=50.0 * x) for x in X]
    assert cal.peak_per_amount(pts) == pytest.approx(50.0)

    class P:
        n_sd = 5.0

    assert detection_limit(50.0, 1.5, P()) == pytest.approx(5 * 1.5 / 50)
    assert detection_limit(None, 1.5) is None


# -- phantoms CSV ---------------------------------------------------------------------------------------
def _csv(tmp_path, text):
    p = tmp_path / "ph.csv"
    p.write_text(text)
    return p


def test_read_phantoms(tmp_path):
    p = _csv(tmp_path, "name,x,y,z,iron_ug\na,1,-2,3.5,0.5\nb,4,5,6,10\n")
    ph = read_phantoms_csv(p)
    assert ph == [Phantom("a", (1.0, -2.0, 3.5), 0.5), Phantom("b", (4.0, 5.0, 6.0), 10.0)]


@pytest.mark.parametrize(
    "text, msg",
    [
        ("name,x,y,z\na,1,2,3\nb,1,2,3\n", "missing column"),
        ("name,x,y,z,iron_ug\na,1,2,3,1\na,1,2,3,2\n", "duplicate"),
        ("name,x,y,z,iron_ug\na,1,2,3,lots\nb,1,2,3,2\n", "not a number"),
        ("name,x,y,z,iron_ug\na,1,2,3,-1\nb,1,2,3,2\n", "≥ 0"),
        ("name,x,y,z,iron_ug\na,1,2,3,1\n", "at least 2"),
        ("name,x,y,z,iron_ug\na,1,two,3,1\nb,1,2,3,2\n", "non-numeric coordinate"),
    ],
)
def test_bad_phantom_csv_is_one_line(tmp_path, text, msg):
    with pytest.raises(InputError, match=msg) as e:
        read_phantoms_csv(_csv(tmp_path, text))
    assert "\n" not in str(e.value) and "ph.csv" in str(e.value)


def test_phantom_outside_image_is_named():
    from mpi_viewer.demo.study import make_demo_study

    mpi = make_demo_study(include_ct=False).mpi
    inside = mpi.index_to_physical([[5, 5, 5]])[0]
    ph = [Phantom("in", tuple(inside), 1.0), Phantom("far", (500.0, 0.0, 0.0), 1.0)]
    with pytest.raises(InputError, match="'far'"):
        phantoms_outside(mpi, ph)
    assert phantoms_outside(mpi, ph, raise_error=False) == ["far"]


# -- the record, JSON, library ---------------------------------------------------------------------------
def _cal(name="vivotrax_2025", **kw):
    pts = [
        CalibrationPoint(
            f"v{x}",
            signal=SLOPE * x + INTERCEPT + (-1) ** i * 3,
            iron_ug=float(x),
            peak_au=50.0 * x,
            xyz_mm=(1.0, 2.0, float(i)),
        )
        for i, x in enumerate(X)
    ]
    return Calibration.from_points(
        name,
        pts,
        tracer="VivoTrax",
        tracer_lot="L1",
        acquisition={
            "mode": "3D",
            "gradient_T_per_m": 5.7,
            "drive_amplitude_mT": 20.0,
            "drive_frequency_kHz": 45.0,
            "averages": 1,
        },
        roi={"method": "halfmax", "fraction": 0.5, "n_sd": 5.0, "split_sources": True},
        **kw,
    )


def test_calibration_json_round_trip(tmp_path):
    c = _cal(weighting="relative")
    c2 = Calibration.from_dict(json.loads(json.dumps(c.to_dict())))
    assert c2.to_dict() == c.to_dict()
    p = save_calibration(c, tmp_path / "c.json")
    assert load_calibration(p).to_dict() == c.to_dict()
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_other_schema_version_is_refused(tmp_path):
    d = _cal().to_dict()
    d["schema_version"] = 2
    p = tmp_path / "new.json"
    p.write_text(json.dumps(d))
    with pytest.raises(InputError, match="schema version 2"):
        load_calibration(p)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(InputError, match="junk.json"):
        load_calibration(tmp_path / "junk.json")


def test_library(tmp_path):
    lib = CalibrationLibrary(tmp_path / "lib")
    assert lib.list() == []
    lib.add(_cal("a"))
    lib.add(_cal("b", through_origin=True))
    assert lib.names() == ["a", "b"]
    assert lib.get("b").fit.intercept == 0.0
    with pytest.raises(InputError, match="already"):
        lib.add(_cal("a"))
    out = lib.export("a", tmp_path / "out" / "a.json")
    other = CalibrationLibrary(tmp_path / "other")
    assert other.import_file(out).name == "a"
    assert other.get("a").to_dict() == lib.get("a").to_dict()
    with pytest.raises(InputError, match="not in library"):
        other.get("zzz")


def test_single_reference_from_points_uses_the_named_phantom():
    c = _cal(mode="single_reference", reference="v5.0")
    assert c.fit.mode == "single_reference" and c.fit.n == 1
    assert c.fit.slope == pytest.approx((SLOPE * 5 + INTERCEPT + (-1) ** 3 * 3) / 5)


# -- warnings ------------------------------------------------------------------------------------------------
def test_compatibility_warnings():
    from mpi_viewer.geometry.volume import Acquisition

    c = _cal()

    class ROI:
        def __init__(self, **kw):
            self.d = {
                "method": "halfmax",
                "fraction": 0.5,
                "n_sd": 5.0,
                "split_sources": True,
                **kw,
            }

        def to_dict(self):
            return self.d

    same = Acquisition(
        tracer="vivotrax",
        mode="3D",
        gradient_T_per_m=5.7,
        drive_amplitude_mT=20.0,
        drive_frequency_kHz=45.0,
        averages=1,
    )
    assert compatibility_warnings(c, same, ROI()) == []
    other = Acquisition(tracer="ProMag", mode="3D", gradient_T_per_m=3.0, drive_amplitude_mT=20.0)
    w = compatibility_warnings(c, other, ROI(method="nsd"))
    assert any("tracer differs" in s for s in w)
    assert any("gradient differs" in s and "5.7 T/m" in s for s in w)
    assert any("ROI method differs" in s for s in w)
    w = compatibility_warnings(c, same, ROI(fraction=0.4), for_cells=True)
    assert any("fraction differs" in s for s in w)
    assert any("20–70 %" in s for s in w)
    # few points, poor fit, fixed-volume preparation
    pts = [
        CalibrationPoint("a", 10.0, iron_ug=1.0),
        CalibrationPoint("b", 30.0, iron_ug=2.0),
        CalibrationPoint("c", 15.0, iron_ug=3.0),
    ]
    poor = Calibration.from_points("poor", pts, preparation="fixed_volume")
    w = compatibility_warnings(poor, same)
    assert any("R² 0." in s for s in w) and any("fixed-volume" in s for s in w)
    two = Calibration.from_points("two", pts[:2])
    assert any("2 points" in s for s in compatibility_warnings(two, same))


# -- applying a calibration to ROI results ------------------------------------------------------------------
class _ROI:
    """The ROI-result fields apply_calibration reads (an ROI of 10 mm³ on 0.125 mm³ voxels)."""

    def __init__(self, name, total_signal, peak_au, noise_sd=1.5, size=10.0):
        self.name, self.total_signal, self.peak_au, self.noise_sd, self.size = (
            name,
            total_signal,
            peak_au,
            noise_sd,
            size,
        )
        self.flags, self.warnings = [], []


def test_apply_iron_calibration_lod_and_range():
    c = _cal()  # peaks 50 a.u. per µg → LOD = 5 × 1.5 / 50 = 0.15 µg
    rois = [
        _ROI("in", SLOPE * 3.0 + INTERCEPT, 150.0),
        _ROI("tiny", SLOPE * 0.1 + INTERCEPT, 5.0),
        _ROI("huge", SLOPE * 40 + INTERCEPT, 2000.0),
    ]
    q = cal.apply_calibration(rois, c, voxel_volume_mm3=0.125)
    assert q[0].iron_ug == pytest.approx(3.0, rel=0.01) and not q[0].below_lod
    assert q[0].iron_ci_low_ug < 3.0 < q[0].iron_ci_high_ug
    assert q[1].below_lod and q[1].iron_ug is None and q[1].lod == pytest.approx(0.15)
    assert any("below detection limit (0.15 µg)" in w for w in q[1].warnings)
    assert q[1].columns()["iron_ug"] is None and q[1].columns()["below_lod"] is True
    assert any("outside the calibrated range" in w for w in q[2].warnings)


def test_apply_cell_calibration_gives_cells_directly():
    n = np.array([1e4, 3e4, 1e5, 3e5, 1e6])
    per_cell = 0.004  # a.u.·mm³ per cell
    pts = [
        CalibrationPoint(f"p{i}", signal=per_cell * v, cells=float(v), peak_au=v * 5e-4)
        for i, v in enumerate(n)
    ]
    c = Calibration.from_points("cells", pts, kind="cells")
    assert c.environment == "cells" and c.x_unit == "cells"
    q = cal.apply_calibration([_ROI("r", per_cell * 2.4e5, 120.0)], c)
    assert q[0].cells == pytest.approx(2.4e5, rel=1e-9) and q[0].iron_ug is None
    assert not any(
        "20–70 %" in w for w in compatibility_warnings(c, {"tracer": "x"}, for_cells=True)
    )


def test_apply_single_reference_interval_from_image_noise():
    pts = [CalibrationPoint("ref", signal=3600.0, iron_ug=10.0, peak_au=500.0, signal_sd=2.0)]
    c = Calibration.from_points("one", pts, mode="single_reference")
    q = cal.apply_calibration([_ROI("r", 1800.0, 250.0)], c, voxel_volume_mm3=0.125)
    # noise SD of the ROI sum: 1.5 × √(10 mm³ × 0.125 mm³) ≈ 1.68 a.u.·mm³
    rel = np.hypot(1.5 * np.sqrt(10 * 0.125) / 1800, 2.0 / 3600)
    assert q[0].iron_ug == pytest.approx(5.0)
    assert q[0].iron_ci_high_ug - q[0].iron_ug == pytest.approx(1.96 * 5.0 * rel, rel=0.01)
    assert any("single-reference" in w for w in q[0].warnings)


# -- phantoms from the phantom-holder template --------------------------------------------------------------
def _holder_image(
    rotation_deg=(3.0, -4.0, 8.0),
    translation_mm=(2.0, -1.5, 4.0),
    iron=(0.5, 1, 2.5, 5, 10, 20, None),
):
    """A synthetic MPI of the 7-well holder at a known pose: Gaussian PSF (FWHM 2.4, 2.4, 3.6 mm),
    5 µg per fiducial, the wells' iron, noise SD 1.5 a.u. (the demo's sensitivity)."""
    from mpi_viewer.demo.study import load_template, rotation_matrix
    from mpi_viewer.geometry.volume import Volume, image_from_array

    t = load_template("phantom_holder_7well_v1")
    r, tr = rotation_matrix(rotation_deg), np.asarray(translation_mm)
    pts = [(np.asarray(f["position_mm"]), 5.0) for f in t["fiducials"]]
    pts += [
        (np.asarray(w["position_mm"]), fe) for w, fe in zip(t["wells"], iron, strict=True) if fe
    ]
    spacing = 0.5
    shape = (260, 50, 50)  # z, y, x
    origin = np.array([-12.5, -12.5, -65.0])
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    phys = [origin[0] + spacing * xx, origin[1] + spacing * yy, origin[2] + spacing * zz]
    sig = np.array([2.4, 2.4, 3.6]) / 2.3548
    img = np.random.default_rng(0).normal(0, 1.5, shape)
    for q, fe in pts:
        c = r @ q + tr
        e = sum(((phys[a] - c[a]) / sig[a]) ** 2 for a in range(3))
        img += 1250 * fe / ((2 * np.pi) ** 1.5 * np.prod(sig)) * np.exp(-0.5 * e)
    vol = Volume(
        image=image_from_array(img.astype(np.float32), spacing_mm=(spacing,) * 3, origin_mm=origin),
        modality="MPI",
    )
    truth = {w["name"]: r @ np.asarray(w["position_mm"]) + tr for w in t["wells"]}
    return vol, truth


def test_phantoms_from_holder_template():
    vol, truth = _holder_image()
    iron = {"W1": 0.5, "W2": 1.0, "W3": 2.5, "W4": 5.0, "W5": 10.0, "W6": 20.0}
    ph, match = cal.phantoms_from_template(vol, "phantom_holder_7well_v1", iron)
    assert [p.name for p in ph] == list(iron) and [p.iron_ug for p in ph] == list(iron.values())
    for p in ph:
        assert np.linalg.norm(np.asarray(p.xyz_mm) - truth[p.name]) < 0.5, p.name
    with pytest.raises(InputError, match="no well"):
        cal.phantoms_from_template(vol, "phantom_holder_7well_v1", {"W9": 1.0, "W1": 2.0})
    with pytest.raises(InputError, match="7 wells"):
        cal.phantoms_from_template(vol, "phantom_holder_7well_v1", [1.0, 2.0])
    with pytest.raises(InputError, match="no phantom wells"):
        cal.phantoms_from_template(vol, "mouse_mold_v1", {})
