"""ROIs on the default demo, whose x-space Langevin PSF the ROI code does not assume.

Truth: the demo's PSF is L'(k|G r|) (heavy tails); the signal a half-maximum ROI holds
is the fraction of that kernel inside its own half-maximum region
(``truth["psf_halfmax_fraction"]``, integrated from the kernel), times the sensitivity
and the iron. The ROI code measures its point-spread model from the image.
"""

import math

import numpy as np
import pytest

from mpi_viewer.demo.study import make_demo_study
from mpi_viewer.roi._psf import measure_psf
from mpi_viewer.roi.regions import ROIParams, estimate_noise_sd, grow_roi, measure


@pytest.fixture(scope="module")
def lstudy():
    return make_demo_study(include_ct=False)


def _expected(study, iron_ug):
    t = study.truth
    return t["psf_halfmax_fraction"] * t["sensitivity_au_mm3_per_ug"] * iron_ug


@pytest.mark.parametrize("name", ["isolated", "vial_2.5ug", "vial_10ug"])
def test_halfmax_total_is_the_kernels_half_maximum_share(lstudy, name):
    src = lstudy.source(name)
    r = grow_roi(lstudy.mpi, np.asarray(src["mpi_mm"]) + (0.3, -0.2, 0.1))
    assert r.peak_au == pytest.approx(lstudy.peak_au(src["iron_ug"]), rel=0.02)
    assert r.calibration_signal == pytest.approx(_expected(lstudy, src["iron_ug"]), rel=0.02)
    assert r.flags == []


def test_psf_measured_from_the_image_is_the_langevin_kernel(lstudy):
    noise = estimate_noise_sd(lstudy.mpi)
    assert noise == pytest.approx(lstudy.truth["noise_sd_au"], rel=0.05)
    psf = measure_psf(lstudy.mpi.array, noise)
    assert psf is not None and len(psf.samples) >= 3
    # its samples are point sources (vials, the isolated spot), not the fiducial wells
    pts = [lstudy.mpi.index_to_physical([p])[0] for p in psf.samples]
    known = [s["mpi_mm"] for s in lstudy.truth["vials"] + lstudy.truth["sources"]]
    for p in pts:
        assert min(np.linalg.norm(np.asarray(k) - p) for k in known) < 1.0
    fwhm_mm = psf.fwhm_vox[::-1] * np.asarray(lstudy.mpi.spacing_mm)
    np.testing.assert_allclose(fwhm_mm, lstudy.truth["psf_fwhm_mm"], rtol=0.06)
    # the tail 4 mm out along x: 3·L'(ξ) of the truth, not a Gaussian's
    f = lstudy.truth["psf_fwhm_mm"][0]
    xi = 2 * 2.0805 * 4.0 / f
    lp = 3 * (1 / xi**2 - 1 / math.sinh(xi) ** 2)
    off = [np.zeros(1)] * 3
    off[2] = np.array([4.0 / lstudy.mpi.spacing_mm[0]])
    assert psf.values(off)[0] == pytest.approx(lp, rel=0.1, abs=0.01)


def test_weak_source_beside_strong_with_the_measured_psf(lstudy):
    strong, weak = lstudy.source("strong"), lstudy.source("weak")
    rs = measure(lstudy.mpi, [strong["mpi_mm"], weak["mpi_mm"]], names=["strong", "weak"])
    s, w = rs
    assert "duplicate" not in w.flags and "shared_signal" in w.flags
    assert w.calibration_signal == pytest.approx(_expected(lstudy, weak["iron_ug"]), rel=0.05)
    assert s.calibration_signal == pytest.approx(_expected(lstudy, strong["iron_ug"]), rel=0.02)
    # a Gaussian model cannot split them here (no tails: the weak one is lost or
    # swallowed by the strong one's region)
    g = measure(
        lstudy.mpi, [strong["mpi_mm"], weak["mpi_mm"]], ROIParams(psf="gaussian"), on_error="skip"
    )
    gw = [r for r in g if r.name == "roi_2"]
    assert (
        not gw
        or "duplicate" in gw[0].flags
        or abs(gw[0].calibration_signal / _expected(lstudy, weak["iron_ug"]) - 1)
        > abs(w.calibration_signal / _expected(lstudy, weak["iron_ug"]) - 1)
    )
