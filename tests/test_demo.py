"""The demo study is the ground truth of the whole suite: check it against itself
from first principles (geometry, PSF integral, where things show)."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from mpi_viewer.demo.study import make_demo_study, truth_transform, write_demo_study


def test_transform_maps_fiducials_and_sources_between_frames():
    s = make_demo_study()
    t = s.truth["transform_fixed_to_moving"]
    m, tr = np.asarray(t["matrix"]), np.asarray(t["translation"])
    assert_allclose(m @ m.T, np.eye(3), atol=1e-12)  # rigid
    assert math.isclose(np.linalg.det(m), 1.0)
    for item in s.truth["fiducials"] + s.truth["sources"]:
        assert_allclose(m @ np.asarray(item["mri_mm"]) + tr, item["mpi_mm"], atol=1e-9)
    sitk_t = truth_transform(s)
    p = s.truth["sources"][0]
    assert_allclose(sitk_t.TransformPoint(p["mri_mm"]), p["mpi_mm"], atol=1e-9)


def test_mpi_total_signal_is_sensitivity_times_iron():
    s = make_demo_study(psf="gaussian")  # the Langevin tails reach past the field of view
    k = s.truth["sensitivity_au_mm3_per_ug"]
    iron = sum(x["iron_ug"] for x in s.truth["sources"] + s.truth["vials"])
    iron += sum(1 for f in s.truth["fiducials"] if f["in_mpi"]) * s.params.fiducial_iron_ug
    total = float(s.mpi.array.astype(np.float64).sum()) * s.mpi.voxel_volume_mm
    # noise adds sd·sqrt(N)·voxel volume at most a few times
    noise = s.truth["noise_sd_au"] * math.sqrt(s.mpi.array.size) * s.mpi.voxel_volume_mm
    assert abs(total - k * iron) < 4 * noise + 1e-3 * k * iron


def test_hot_spots_peak_where_the_truth_says():
    s = make_demo_study()
    peak_per_ug = s.peak_au(1.0)
    for src in s.truth["sources"]:
        idx = np.round(s.mpi.physical_to_index(src["mpi_mm"])[0]).astype(int)
        value = s.mpi.array[tuple(idx)]
        # the other sources' tails there (the Langevin PSF's reach 8 mm)
        others = [o for o in s.truth["sources"] if o is not src]
        tails = s.render_sources([o["mpi_mm"] for o in others], [o["iron_ug"] for o in others])
        own = peak_per_ug * src["iron_ug"]
        # nearest voxel is within half a voxel of the peak: at least 85 % of it
        assert 0.85 * own - 5 < value - tails[tuple(idx)] < own + 5


def test_fiducials_are_bright_in_mri_and_ct_and_cells_darken_mri():
    s = make_demo_study()
    for f in s.truth["fiducials"]:
        for vol, key, level in ((s.mri, "mri_mm", 900), (s.ct, "ct_mm", 1500)):
            idx = np.round(vol.physical_to_index(f[key])[0]).astype(int)
            assert vol.array[tuple(idx)] > level
    body = np.median(s.mri.array[s.mri.array > 200])
    strong = next(x for x in s.truth["sources"] if x["name"] == "strong")
    idx = np.round(s.mri.physical_to_index(strong["mri_mm"])[0]).astype(int)
    assert s.mri.array[tuple(idx)] < 0.5 * body


def test_missing_fiducial_and_extras_and_noise_seed():
    a = make_demo_study(missing_fiducials=("M3",), extra_hot_spots=2, include_ct=False)
    assert [f["name"] for f in a.truth["fiducials"] if not f["in_mpi"]] == ["M3"]
    m3 = next(f for f in a.truth["fiducials"] if f["name"] == "M3")
    idx = np.round(a.mpi.physical_to_index(m3["mpi_mm"])[0]).astype(int)
    assert a.mpi.array[tuple(idx)] < 10  # only noise there
    assert len(a.truth["extra_hot_spots"]) == 2
    b = make_demo_study(noise_seed=7)
    c = make_demo_study()
    assert b.mri is c.mri  # anatomy cached apart from MPI noise
    assert not np.array_equal(b.mpi.array, c.mpi.array)
    assert np.std(b.mpi.array - c.mpi.array) < 3 * b.truth["noise_sd_au"]


@pytest.mark.parametrize("psf", ["langevin", "gaussian"])
def test_render_sources_integrates_to_sensitivity(psf):
    s = make_demo_study(psf=psf, include_ct=False)
    src = s.truth["sources"][0]
    img = s.render_sources([src["mpi_mm"]], [src["iron_ug"]])
    assert_allclose(
        img.sum() * s.mpi.voxel_volume_mm,
        s.truth["sensitivity_au_mm3_per_ug"] * src["iron_ug"],
        rtol=1e-3,
    )


def test_write_demo_study_files(tmp_path):
    from mpi_viewer.io.images import read_volume

    paths = write_demo_study(tmp_path)
    mpi = read_volume(paths["mpi"])
    assert mpi.modality == "MPI" and mpi.acquisition.tracer.startswith("VivoTrax")
    assert read_volume(paths["mri"]).modality == "MRI"
    assert paths["phantoms"].read_text().splitlines()[0] == "name,x,y,z,iron_ug"
    assert len(paths["phantoms"].read_text().splitlines()) == 7


def test_default_demo_psf_is_the_langevin_x_space_kernel():
    """The default MPI's PSF comes from the Langevin magnetization, not from the ROI
    model: checked here from first principles (constants, the acquisition metadata)."""
    from scipy.optimize import brentq

    s = make_demo_study(include_ct=False)
    assert s.truth["psf"] == "langevin" and "synthetic" in s.truth["description"]
    g = s.mpi.acquisition.gradient_T_per_m
    assert g == pytest.approx(5.7)
    core_m = s.mpi.metadata["particle_core_nm"] * 1e-9
    moment = 4.46e5 * math.pi * core_m**3 / 6  # A·m², magnetite
    k_per_T = moment / (1.380649e-23 * 310.0)
    # L'(ξ) = 1/ξ² − 1/sinh²ξ falls to half its peak (1/3) at ξ = 2.0805
    xi_half = brentq(lambda x: 1 / x**2 - 1 / math.sinh(x) ** 2 - 1 / 6, 0.5, 5)
    # Maxwell field-free point: G along the bore (z), G/2 across (x, y)
    fwhm = [2 * xi_half / (k_per_T * gi) * 1e3 for gi in (g / 2, g / 2, g)]
    assert_allclose(s.truth["psf_fwhm_mm"], fwhm, rtol=1e-3)
    assert fwhm[0] == pytest.approx(2 * fwhm[2])  # the drive axis: half the resolution

    # the image shows it: profiles through the isolated source, noise-free
    clean = make_demo_study(include_ct=False, noise_sd_au=0.0)
    src = clean.source("isolated")
    img = clean.render_sources([src["mpi_mm"]], [src["iron_ug"]])
    c = np.asarray(clean.mpi.physical_to_index(src["mpi_mm"])[0])  # (z, y, x)
    box = tuple(slice(int(i) - 10, int(i) + 11) for i in np.round(c))
    assert np.abs(clean.mpi.array[box] - img[box]).max() < 1e-3 * img.max()  # nothing else
    from scipy.ndimage import map_coordinates

    for axis_zyx, f in zip((2, 1, 0), fwhm, strict=True):
        t = np.linspace(-3 * f, 3 * f, 1201)  # mm
        pts = np.repeat(c[:, None], t.size, axis=1)
        pts[axis_zyx] += t / clean.mpi.spacing_mm[2 - axis_zyx]
        prof = map_coordinates(img, pts, order=3)
        above = t[prof >= 0.5 * prof.max()]
        assert above.max() - above.min() == pytest.approx(f, rel=0.06)
        # long tails: 4 mm out the profile is 3·L'(ξ), heavier than a Gaussian of that FWHM
        xi = 2 * xi_half * 4.0 / f
        lp = 3 * (1 / xi**2 - 1 / math.sinh(xi) ** 2)
        i = np.argmin(np.abs(t - 4.0))
        assert prof[i] / prof.max() == pytest.approx(lp, rel=0.05)
        assert lp > 1.5 * 2 ** (-4 * (4.0 / f) ** 2)


def test_gaussian_variant_and_relaxation_blur():
    g = make_demo_study(psf="gaussian", include_ct=False)
    assert g.truth["psf"] == "gaussian"
    assert_allclose(g.truth["psf_fwhm_mm"], (2.4, 2.4, 3.6))
    assert g.truth["sensitivity_au_mm3_per_ug"] == 1250.0
    # same peak per µg in both (the same SNRs), so the studies compare
    lv = make_demo_study(include_ct=False)
    assert lv.peak_au(1.0) == pytest.approx(g.peak_au(1.0), rel=1e-6)
    # relaxation blur: along the drive axis (x) only, signal kept
    r = make_demo_study(include_ct=False, noise_sd_au=0.0, relaxation_mm=1.0)
    c = make_demo_study(include_ct=False, noise_sd_au=0.0)
    src = c.source("isolated")
    idx = tuple(np.round(c.mpi.physical_to_index(src["mpi_mm"])[0]).astype(int))
    a, b = c.mpi.array.astype(np.float64), r.mpi.array.astype(np.float64)
    assert b[idx] < 0.9 * a[idx]
    assert b.sum() == pytest.approx(a.sum(), rel=1e-3)  # blur moves signal, keeps it
    wx = (b[idx[0], idx[1], :] >= 0.5 * b[idx]).sum()
    assert wx > (a[idx[0], idx[1], :] >= 0.5 * a[idx]).sum()
    # along x only: every x line keeps its signal
    assert_allclose(b.sum(axis=2), a.sum(axis=2), atol=1e-3 * a.max() * a.shape[2])
    with pytest.raises(ValueError, match="psf"):
        make_demo_study(psf="lorentzian")
