"""ROIs against known truths: the demo study's PSF and iron, analytic Gaussians, Lorentzians."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.stats import chi2

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.volume import Volume, image_from_array
from mpi_viewer.io import tables as res
from mpi_viewer.roi._saturation import SaturationCurve
from mpi_viewer.roi.regions import (
    ROIParams,
    estimate_noise_sd,
    grow_roi,
    measure,
    rois_to_label_image,
    write_masks_nifti,
)


@pytest.fixture(scope="module")
def study():
    """The demo's Gaussian variant: the expectations below are closed-form Gaussian
    integrals (the default Langevin demo is checked in test_roi_langevin.py)."""
    from mpi_viewer.demo.study import make_demo_study

    return make_demo_study(psf="gaussian")


def _expected_total(study, src, threshold_au):
    """Signal (a.u.·mm³) of the known PSF × iron where it is ≥ threshold, in continuous space.

    Inside a 3-D Gaussian's level set {f ≥ t} lies the fraction chi2.cdf(2 ln(peak / t), 3)
    of its integral (sensitivity × iron). ROIs integrate at sub-voxel resolution, so
    this is their truth (a voxel-set sum would move ±2–4 % with the sub-voxel position).
    """
    total = study.truth["sensitivity_au_mm3_per_ug"] * src["iron_ug"]
    return total * chi2.cdf(2 * math.log(study.peak_au(src["iron_ug"]) / threshold_au), 3)


def _offset_seed(src, off=(0.7, -0.5, 0.6)):
    return np.asarray(src["mpi_mm"]) + np.asarray(off)


def _by_name(study, name):
    return study.source(name)


# -- accuracy on the demo ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["isolated", "vial_2.5ug", "vial_5ug", "vial_10ug", "vial_20ug"])
def test_halfmax_total_matches_psf_and_iron_within_2_percent(study, name):
    src = _by_name(study, name)
    r = grow_roi(study.mpi, _offset_seed(src))
    amp = study.peak_au(src["iron_ug"])
    expected = _expected_total(study, src, 0.5 * amp)
    assert r.total_signal_subvoxel == pytest.approx(expected, rel=0.02)
    # the analytic fraction inside a 3-D Gaussian's half-maximum ellipsoid (≈ 0.2911)
    analytic = (
        chi2.cdf(2 * math.log(2), 3) * study.truth["sensitivity_au_mm3_per_ug"] * src["iron_ug"]
    )
    assert expected == pytest.approx(analytic)
    assert r.peak_au == pytest.approx(amp, rel=0.01)
    assert r.threshold_au == pytest.approx(0.5 * r.peak_au)
    assert r.total_signal == pytest.approx(r.mean_au * r.volume_mm3)
    # volume of the half-maximum ellipsoid, 4/3 π Π(FWHM/2) (sub-voxel); the written voxel
    # set, whose volume and total are the ones reported, ≈ it
    ellipsoid_mm3 = 4 / 3 * math.pi * np.prod(np.asarray(study.truth["psf_fwhm_mm"]) / 2)
    assert r.size_unit == "mm3" and r.size_subvoxel == pytest.approx(ellipsoid_mm3, rel=0.03)
    assert r.n_voxels * 0.125 == pytest.approx(ellipsoid_mm3, rel=0.1)
    assert np.linalg.norm(np.subtract(r.peak_mm, src["mpi_mm"])) < 0.1
    assert r.snr == pytest.approx(amp / study.truth["noise_sd_au"], rel=0.05)
    assert r.flags == []


@pytest.mark.parametrize("name", ["isolated", "vial_1ug", "vial_5ug", "vial_20ug"])
def test_nsd_total_matches_psf_and_iron_within_2_percent(study, name):
    src = _by_name(study, name)
    r = grow_roi(study.mpi, _offset_seed(src), ROIParams(method="nsd"))
    assert r.noise_sd == pytest.approx(study.truth["noise_sd_au"], rel=0.05)
    assert r.threshold_au == pytest.approx(5 * r.noise_sd)
    expected = _expected_total(study, src, r.threshold_au)
    assert r.total_signal_subvoxel == pytest.approx(expected, rel=0.02)


def test_kmeans_total_matches_its_threshold_on_the_noise_free_source(study):
    src = _by_name(study, "isolated")
    r = grow_roi(study.mpi, _offset_seed(src), ROIParams(method="kmeans"))
    hm = grow_roi(study.mpi, _offset_seed(src))
    assert 5 * r.noise_sd <= r.threshold_au < hm.threshold_au
    expected = _expected_total(study, src, r.threshold_au)
    assert r.total_signal_subvoxel == pytest.approx(expected, rel=0.02)


def test_noise_estimate_matches_truth(study):
    assert estimate_noise_sd(study.mpi) == pytest.approx(study.truth["noise_sd_au"], rel=0.05)
    # a background box the user draws (a corner of the field of view: noise only)
    assert estimate_noise_sd(study.mpi, bbox=((0, 20), (0, 20), (0, 20))) == pytest.approx(
        1.5, rel=0.05
    )
    mask = np.zeros(study.mpi.shape, bool)
    mask[:20, :20, :20] = True
    assert estimate_noise_sd(study.mpi.array, mask=mask) == pytest.approx(1.5, rel=0.05)


def test_weak_source_beside_strong_gets_its_own_roi_and_its_iron(study):
    """Sehl et al. 2020 fig. 5: the weak (1.5 µg) source 4.3 mm from the strong (18 µg) one."""
    weak, strong = _by_name(study, "weak"), _by_name(study, "strong")
    vials = study.truth["vials"]
    rois = measure(
        study.mpi,
        [_offset_seed(weak), _offset_seed(strong)] + [v["mpi_mm"] for v in vials],
        names=["weak", "strong"] + [v["name"] for v in vials],
    )
    w, s = rois[0], rois[1]
    assert np.linalg.norm(np.subtract(w.peak_mm, weak["mpi_mm"])) < 0.3
    assert np.linalg.norm(np.subtract(s.peak_mm, strong["mpi_mm"])) < 0.3
    assert "shared_signal" in w.flags and w.neighbour_signal > 0
    assert not (w.mask.to_full(study.mpi.shape) & s.mask.to_full(study.mpi.shape)).any()
    # calibration: through-origin slope from the vials measured the same way
    slope = sum(r.total_signal for r in rois[2:]) / sum(v["iron_ug"] for v in vials)
    assert w.total_signal / slope == pytest.approx(weak["iron_ug"], rel=0.10)
    assert s.total_signal / slope == pytest.approx(strong["iron_ug"], rel=0.10)
    # a plain half-maximum region (≥ 50 % of the weak's own peak, connected, no split) is far off
    arr = study.mpi.array
    at = tuple(np.rint(study.mpi.physical_to_index([weak["mpi_mm"]])[0]).astype(int))
    region = arr >= 0.5 * w.peak_au
    lab, _ = ndi.label(region, structure=np.ones((3, 3, 3)))
    plain = float(arr[lab == lab[at]].sum()) * study.mpi.voxel_volume_mm / slope
    assert abs(plain / weak["iron_ug"] - 1) > 1.0


def test_strong_total_unchanged_by_a_weak_neighbour_outside_its_region(study):
    """The weak source's tail (peak 4.3 mm away, outside the strong's half-max region) is
    subtracted once the weak one is measured too: the strong's total is its own."""
    strong, weak = _by_name(study, "strong"), _by_name(study, "weak")
    pair = study.mpi.with_array(
        study.render_sources(
            [strong["mpi_mm"], weak["mpi_mm"]], [strong["iron_ug"], weak["iron_ug"]]
        ).astype(np.float32)
    )
    own = study.mpi.with_array(
        study.render_sources([strong["mpi_mm"]], [strong["iron_ug"]]).astype(np.float32)
    )
    truth = measure(own, [strong["mpi_mm"]])[0].calibration_signal
    alone = measure(pair, [strong["mpi_mm"]])[0]
    assert alone.calibration_signal / truth - 1 > 0.001  # the tail is really there (+0.2 %)
    both = measure(pair, [strong["mpi_mm"], weak["mpi_mm"]])
    assert both[0].calibration_signal == pytest.approx(truth, rel=5e-4)
    assert both[0].neighbour_signal > 0
    # and the weak one still gets its own signal (its own render measured alone)
    weak_own = study.mpi.with_array(
        study.render_sources([weak["mpi_mm"]], [weak["iron_ug"]]).astype(np.float32)
    )
    assert both[1].calibration_signal == pytest.approx(
        measure(weak_own, [weak["mpi_mm"]])[0].calibration_signal, rel=0.01
    )


def test_click_climbs_to_its_own_peak_not_the_brightest(study):
    iso = _by_name(study, "isolated")
    r = grow_roi(study.mpi, _offset_seed(iso, (1.2, 0.8, -1.0)))
    assert np.linalg.norm(np.subtract(r.peak_mm, iso["mpi_mm"])) < 0.1


def test_fwhm_from_lorentzian_fit_close_to_psf(study):
    r = grow_roi(study.mpi, _by_name(study, "vial_20ug")["mpi_mm"])
    # a Lorentzian fitted to the core of a Gaussian profile: within ~5 % of its FWHM
    np.testing.assert_allclose(r.fwhm_mm, study.truth["psf_fwhm_mm"], rtol=0.06)


def test_lorentzian_fwhm_exact_on_lorentzian_profile():
    from mpi_viewer.roi._fwhm import lorentzian, lorentzian_fwhm

    t = np.arange(-10, 10, 0.25)
    assert lorentzian_fwhm(t, lorentzian(t, 50.0, 0.3, 0.9)) == pytest.approx(1.8, rel=1e-4)


def test_same_peak_twice_is_flagged_duplicate(study):
    iso = _by_name(study, "isolated")
    a, b = measure(study.mpi, [iso["mpi_mm"], _offset_seed(iso)])
    assert "duplicate" in b.flags and a.total_signal == b.total_signal


def test_no_split_keeps_the_merged_region_and_flags_it(study):
    weak = _by_name(study, "weak")
    # without looking for hidden sources, the click on the weak one has no maximum of its own
    with pytest.raises(InputError, match="no local maximum within 3 mm"):
        grow_roi(study.mpi, weak["mpi_mm"], ROIParams(split_sources=False))
    # … and with a longer reach it climbs to the strong source's peak, 4.3 mm away
    r = grow_roi(study.mpi, weak["mpi_mm"], ROIParams(split_sources=False, search_radius_mm=6))
    assert np.linalg.norm(np.subtract(r.peak_mm, _by_name(study, "strong")["mpi_mm"])) < 0.3


# -- 2-D ------------------------------------------------------------------------------------------
def _gauss_2d(
    sigma_mm=(0.6, 0.8), spacing=0.25, total=500.0, noise=0.0, centre=(0.13, -0.21), seed=0
):
    n = 96
    y, x = np.mgrid[0:n, 0:n] * spacing - (n // 2) * spacing
    sx, sy = sigma_mm
    amp = total / (2 * math.pi * sx * sy)
    img = amp * np.exp(-0.5 * (((x - centre[0]) / sx) ** 2 + ((y - centre[1]) / sy) ** 2))
    img += np.random.default_rng(seed).normal(0, noise, img.shape) if noise else 0
    vol = Volume(
        image=image_from_array(
            img.astype(np.float32),
            spacing_mm=(spacing, spacing),
            origin_mm=(-(n // 2) * spacing,) * 2,
        ),
        modality="MPI",
    )
    return vol, amp, img


def test_2d_halfmax_area_and_total_analytic():
    vol, amp, img = _gauss_2d(noise=0.05)
    r = grow_roi(vol, (0.5, 0.2))
    assert r.size_unit == "mm2" and not math.isnan(r.area_mm2) and math.isnan(r.volume_mm3)
    # inside a 2-D Gaussian's half-maximum ellipse: half the total signal
    assert r.total_signal == pytest.approx(0.5 * 500.0, rel=0.02)
    assert r.area_mm2 == pytest.approx(math.pi * 2 * math.log(2) * 0.6 * 0.8, rel=0.05)
    np.testing.assert_allclose(r.peak_mm, (0.13, -0.21), atol=0.03)
    assert "total_signal_au_mm2" in r.to_row() and "area_mm2" in r.to_row()


def test_saturation_curve_restores_linear_signal():
    vol, amp, img = _gauss_2d()
    sat = 40.0
    measured = sat * np.tanh(img / sat)  # the receiver saturates
    mvol = vol.with_array(measured.astype(np.float32))
    true_grid = np.linspace(0, 3 * amp, 200)
    curve = SaturationCurve(tuple(sat * np.tanh(true_grid / sat)), tuple(true_grid))
    p = ROIParams(noise_sd=0.01, saturation_curve=curve)
    r = grow_roi(mvol, (0.0, 0.0), p)
    ref = grow_roi(vol, (0.0, 0.0), ROIParams(noise_sd=0.01))
    assert r.total_signal == pytest.approx(ref.total_signal, rel=0.01)
    assert "saturated" in r.flags
    uncorrected = grow_roi(mvol, (0.0, 0.0), ROIParams(noise_sd=0.01))
    assert uncorrected.total_signal < 0.9 * ref.total_signal


def test_saturation_curve_csv(tmp_path):
    p = tmp_path / "curve.csv"
    p.write_text("measured_au,true_au\n0,0\n10,10\n20,25\n25,40\n")
    c = SaturationCurve.from_csv(p)
    np.testing.assert_allclose(c(np.array([0.0, 10.0, 20.0, 25.0])), [0, 10, 25, 40])
    assert c(np.array([30.0]))[0] == pytest.approx(40 + 5 * 15 / 5)
    p.write_text("measured_au,true_au\n0,0\n10,5\n5,6\n")
    with pytest.raises(InputError, match="increase"):
        SaturationCurve.from_csv(p)


# -- bad input ------------------------------------------------------------------------------------
def test_bad_seeds_are_one_line_input_errors(study):
    vol = study.mpi
    bg = np.asarray(_by_name(study, "isolated")["mpi_mm"]) + [0, 0, -12.0]  # body, no iron
    for seed, match in [
        (bg, "no hot spot above the noise"),
        ((500.0, 0.0, 0.0), "outside the image"),
        ((1.0, 2.0), "2 coordinates on a 3-D image"),
    ]:
        with pytest.raises(InputError, match=match) as e:
            grow_roi(vol, seed)
        assert "\n" not in str(e.value)
    vol2, *_ = _gauss_2d()
    with pytest.raises(InputError, match="3 coordinates on a 2-D image"):
        grow_roi(vol2, (0.0, 0.0, 0.0))


def test_nan_inside_roi_is_refused_and_other_seeds_kept():
    vol, amp, img = _gauss_2d(noise=0.05)
    bad = img.copy()
    bad[48, 49] = np.nan  # beside the peak
    v = vol.with_array(bad.astype(np.float32))
    with pytest.raises(InputError, match="NaN"):
        grow_roi(v, (0.0, 0.0))
    good = measure(v, [(0.0, 0.0), (100.0, 0.0)], on_error="skip")
    assert good == [] and len(good.errors) == 2


def test_skip_keeps_the_good_rois(study):
    iso = _by_name(study, "isolated")
    out = measure(study.mpi, [(500.0, 0, 0), iso["mpi_mm"]], on_error="skip")
    assert len(out) == 1 and out.errors[0][0] == 0 and out[0].label == 1


def test_params_json_round_trip_and_validation():
    p = ROIParams(
        method="nsd",
        n_sd=4.0,
        noise_sd=2.0,
        background_bbox=((0, 4), (1, 5), (2, 6)),
        saturation_curve=SaturationCurve((0, 1, 2), (0, 1, 3)),
    )
    assert ROIParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    for bad in (
        {"method": "otsu"},
        {"fraction": 1.5},
        {"n_sd": -1},
        {"noise_sd": 0},
        {"connectivity": "x"},
    ):
        with pytest.raises(InputError):
            ROIParams(**bad)
    with pytest.raises(InputError, match="unknown"):
        ROIParams.from_dict({"colour": 1})


# -- outputs --------------------------------------------------------------------------------------
def test_label_image_and_masks_nifti(study, tmp_path):
    import SimpleITK as sitk

    rois = measure(
        study.mpi, [_by_name(study, n)["mpi_mm"] for n in ("isolated", "weak", "strong")]
    )
    lab = rois_to_label_image(study.mpi, rois)
    assert lab.dtype == np.uint16 and lab.shape == study.mpi.shape
    for r in rois:
        assert int((lab == r.label).sum()) == r.n_voxels
    p = write_masks_nifti(tmp_path / "m.nii.gz", study.mpi, rois)
    img = sitk.ReadImage(str(p))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), lab)
    np.testing.assert_allclose(img.GetOrigin(), study.mpi.origin_mm)
    np.testing.assert_allclose(img.GetSpacing(), study.mpi.spacing_mm)


def test_results_csv_has_units_in_columns(study, tmp_path):
    rois = measure(study.mpi, [_by_name(study, "isolated")["mpi_mm"]])
    rows = res.rows_from_results(rois)
    res.add_columns(rows, {"iron_ug": [1.0]})
    p = res.write_csv(tmp_path / "r.csv", rows)
    back = res.read_csv(p)
    assert float(back[0]["total_signal_au_mm3"]) == pytest.approx(rois[0].total_signal, rel=1e-5)
    for col in ("peak_au", "mean_au", "volume_mm3", "snr", "fwhm_x_mm", "fwhm_z_mm", "iron_ug"):
        assert col in back[0]
    assert res.header_label("total_signal_au_mm3") == "total signal (a.u.·mm³)"


def test_noiseless_image_halfmax_works_without_noise_estimate():
    vol, amp, img = _gauss_2d(noise=0.0)
    vol = vol.with_array(
        np.where(img < 1e-3, 0, img).astype(np.float32)
    )  # zero background: no noise
    r = grow_roi(vol, (0.2, 0.1))
    assert r.total_signal == pytest.approx(250.0, rel=0.02) and math.isnan(r.snr)
    with pytest.raises(InputError, match="noise SD"):
        grow_roi(vol, (0.2, 0.1), ROIParams(method="nsd"))
