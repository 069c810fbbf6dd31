"""ROI totals do not depend on where a source sits within a voxel (sub-voxel integration,
the ``*_subvoxel_*`` columns that calibrations use; the reported total is the voxel set's).

Truth: noise-free point sources of known iron rendered with the demo's known PSF
(``DemoStudy.render_sources``) and analytic 2-D Gaussians; the continuous-space signal
inside a Gaussian's level set {f ≥ t} is K × iron × chi2.cdf(2 ln(peak / t), d).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2

from mpi_viewer.demo.study import make_demo_study
from mpi_viewer.geometry.volume import Volume, image_from_array
from mpi_viewer.roi.regions import ROIParams, grow_roi

IRON_UG = 2.0
N_OFFSETS = 12


@pytest.fixture(scope="module")
def study():
    # the Gaussian variant: its half-maximum total has a closed form
    return make_demo_study(psf="gaussian")


def _sigma_mm(study):
    return np.asarray(study.truth["psf_fwhm_mm"], dtype=float) / (2 * math.sqrt(2 * math.log(2)))


def _amp(study, iron_ug):
    k = study.truth["sensitivity_au_mm3_per_ug"]
    return k * iron_ug / ((2 * math.pi) ** 1.5 * np.prod(_sigma_mm(study)))


def _offsets(n, d, seed=7):
    """Sub-voxel offsets (voxel units, −0.5…0.5) spread over the voxel (stratified on axis 0)."""
    rng = np.random.default_rng(seed)
    off = rng.uniform(-0.5, 0.5, size=(n, d))
    off[:, 0] = (np.arange(n) + rng.uniform(0, 1, n)) / n - 0.5
    return off


@pytest.fixture(scope="module")
def clean_rois(study):
    """Half-max and 5 × SD ROIs of one 2 µg source at N_OFFSETS sub-voxel positions."""
    base = np.asarray(study.source("isolated")["mpi_mm"])
    spacing = np.asarray(study.mpi.spacing_mm)
    # on a voxel centre, then moved by a sub-voxel offset
    centre = study.mpi.index_to_physical([np.rint(study.mpi.physical_to_index([base])[0])])[0]
    out = {"halfmax": [], "nsd": [], "native_halfmax": []}
    for off in _offsets(N_OFFSETS, 3):
        p = centre + off * spacing
        arr = study.render_sources([p], [IRON_UG]).astype(np.float32)
        vol = study.mpi.with_array(arr)
        seed = p + (0.6, -0.4, 0.5)
        r = grow_roi(vol, seed)
        out["halfmax"].append(r)
        out["native_halfmax"].append(
            float(arr[r.mask.slices][r.mask.array].sum()) * study.mpi.voxel_volume_mm
        )
        out["nsd"].append(
            grow_roi(vol, seed, ROIParams(method="nsd", noise_sd=study.truth["noise_sd_au"]))
        )
    return out


def _spread(values):
    v = np.asarray(values, dtype=float)
    return (v.max() - v.min()) / v.mean()


def test_halfmax_total_is_subvoxel_stable_and_matches_the_continuous_value(study, clean_rois):
    k = study.truth["sensitivity_au_mm3_per_ug"]
    per_ug = [r.total_signal_subvoxel / IRON_UG for r in clean_rois["halfmax"]]
    # the reported total is the written voxel set's own sum (measurement revision 2), which
    # moves by several % with the offset: the test can see the problem
    native = clean_rois["native_halfmax"]
    assert [r.total_signal for r in clean_rois["halfmax"]] == pytest.approx(native, rel=1e-6)
    assert _spread(native) > 0.02
    # the sub-voxel total beside it, which calibrations use, does not
    assert _spread(per_ug) < 0.01
    assert [r.calibration_signal for r in clean_rois["halfmax"]] == [
        r.total_signal_subvoxel for r in clean_rois["halfmax"]
    ]
    continuous = k * chi2.cdf(2 * math.log(2), 3)  # ≈ 0.2911 × K
    assert np.mean(per_ug) == pytest.approx(continuous, rel=0.01)
    assert all(
        r.total_signal_subvoxel / IRON_UG == pytest.approx(continuous, rel=0.01)
        for r in clean_rois["halfmax"]
    )


def test_halfmax_volume_and_mean_match_the_half_maximum_ellipsoid(study, clean_rois):
    fwhm = np.asarray(study.truth["psf_fwhm_mm"], dtype=float)
    ellipsoid_mm3 = 4 / 3 * math.pi * np.prod(fwhm / 2)
    vols = [r.size_subvoxel for r in clean_rois["halfmax"]]
    assert _spread(vols) < 0.02
    assert np.mean(vols) == pytest.approx(ellipsoid_mm3, rel=0.01)
    k = study.truth["sensitivity_au_mm3_per_ug"]
    mean_au = k * IRON_UG * chi2.cdf(2 * math.log(2), 3) / ellipsoid_mm3
    for r in clean_rois["halfmax"]:
        assert r.total_signal_subvoxel / r.size_subvoxel == pytest.approx(mean_au, rel=0.02)
        # the reported volume and mean are the mask's (the native voxel set: display, label
        # images): ≈ the ellipsoid in voxels
        assert r.volume_mm3 == r.n_voxels * study.mpi.voxel_volume_mm
        assert r.volume_mm3 == pytest.approx(ellipsoid_mm3, rel=0.1)
        assert r.total_signal == pytest.approx(r.mean_au * r.volume_mm3)


def test_nsd_total_is_subvoxel_stable_and_matches_the_continuous_value(study, clean_rois):
    k = study.truth["sensitivity_au_mm3_per_ug"]
    thr = 5 * study.truth["noise_sd_au"]
    continuous = k * IRON_UG * chi2.cdf(2 * math.log(_amp(study, IRON_UG) / thr), 3)
    totals = [r.total_signal_subvoxel for r in clean_rois["nsd"]]
    assert all(r.threshold_au == pytest.approx(thr) for r in clean_rois["nsd"])
    assert _spread(totals) < 0.01
    assert np.mean(totals) == pytest.approx(continuous, rel=0.01)


def _gauss_2d(centre_mm, *, total=500.0, fwhm_mm=(2.4, 2.4), spacing=0.5, n=48):
    sx, sy = np.asarray(fwhm_mm) / (2 * math.sqrt(2 * math.log(2)))
    amp = total / (2 * math.pi * sx * sy)
    c = (np.arange(n) - n // 2) * spacing
    y, x = np.meshgrid(c, c, indexing="ij")
    img = amp * np.exp(-0.5 * (((x - centre_mm[0]) / sx) ** 2 + ((y - centre_mm[1]) / sy) ** 2))
    vol = Volume(
        image=image_from_array(
            img.astype(np.float32),
            spacing_mm=(spacing, spacing),
            origin_mm=(-(n // 2) * spacing,) * 2,
        ),
        modality="MPI",
    )
    return vol


def test_2d_halfmax_total_and_area_are_subvoxel_stable():
    total = 500.0  # a.u.·mm²: the Gaussian's integral
    fwhm = (2.4, 2.4)
    totals, areas = [], []
    for off in _offsets(N_OFFSETS, 2, seed=3):
        centre = off * 0.5
        r = grow_roi(_gauss_2d(centre, total=total, fwhm_mm=fwhm), centre + (0.4, -0.3))
        assert r.size_unit == "mm2"
        totals.append(r.total_signal_subvoxel)
        areas.append(r.size_subvoxel)
        assert r.area_mm2 == r.n_voxels * 0.25  # the reported area: the written mask's
    assert _spread(totals) < 0.01
    # inside a 2-D Gaussian's half-maximum ellipse: half its integral, area π·(FWHM/2)²
    assert np.mean(totals) == pytest.approx(0.5 * total, rel=0.01)
    assert np.mean(areas) == pytest.approx(math.pi * fwhm[0] / 2 * fwhm[1] / 2, rel=0.01)
