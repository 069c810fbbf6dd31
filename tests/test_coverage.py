"""Iron and cells on the demo study against its truth: accuracy and interval coverage.

The demo's vials (in the MPI image) are measured with the targets' ROI method, the
calibration line is fitted (OLS, not through the origin) and applied to every source.
Noise realisations are the demo's own: ``make_demo_study(noise_seed=k)`` adds
``normal(0, noise_sd_au)`` drawn from ``default_rng(k)`` to the noise-free MPI; the
test draws the same noise on the noise-free study (checked bit-for-bit below) so 50
realisations fit in the time budget.
"""

import numpy as np
import pytest

from mpi_viewer import calibration as cal
from mpi_viewer.calibration.cells import IronPerCell
from mpi_viewer.demo.study import make_demo_study
from mpi_viewer.roi import regions as roi

#: Realisations per PSF here (the 50-realisation table: benchmarks/bench_calibration.py).
N_REALISATIONS = 10

#: One worker runs this file (scripts/test.sh: --dist loadgroup): the realisations are shared.
pytestmark = pytest.mark.xdist_group("coverage")


def _realisation(clean, k):
    sd = clean.truth["noise_sd_au"] if clean.truth["noise_sd_au"] else 1.5
    noise = np.random.default_rng(k).normal(0.0, sd, size=clean.mpi.shape)
    return clean.mpi.with_array((clean.mpi.array.astype(np.float64) + noise).astype(np.float32))


@pytest.fixture(scope="module")
def demo():
    """``demo(psf)``: (the noise-free demo study, the noisy demo's truth) of a PSF, each
    made once here (1 s each; they were made again for every realisation)."""
    made = {}

    def get(psf):
        if psf not in made:
            made[psf] = (
                make_demo_study(include_ct=False, noise_sd_au=0.0, psf=psf),
                make_demo_study(include_ct=False, psf=psf).truth,
            )
        return made[psf]

    return get


@pytest.fixture(scope="module")
def clean(demo):
    return demo("langevin")[0]


@pytest.fixture(scope="module")
def quantified(demo):
    """``quantified(psf, k)``: the demo's noise realisation ``1000 + k`` (``psf`` its PSF)
    quantified with the default ROI parameters, computed once for every test here."""
    done = {}

    def get(psf, k):
        if (psf, k) not in done:
            clean, truth = demo(psf)
            done[psf, k] = _quantify(_realisation(clean, 1000 + k), truth)
        return done[psf, k]

    return get


def _quantify(mpi, truth, params=None):
    params = params or roi.ROIParams()
    phantoms = [cal.Phantom(v["name"], tuple(v["mpi_mm"]), v["iron_ug"]) for v in truth["vials"]]
    c = cal.Calibration.from_points(
        "demo",
        cal.measure_phantoms(mpi, phantoms, params),
        acquisition=mpi.acquisition.to_dict(),
        roi=params.to_dict(),
        tracer=mpi.acquisition.tracer,
    )
    sources = truth["sources"]
    res = roi.measure(
        mpi,
        [s["mpi_mm"] for s in sources],
        params,
        names=[s["name"] for s in sources],
        on_error="skip",
    )
    ipc = IronPerCell(truth["iron_per_cell_pg"], truth["iron_per_cell_sd_pg"])
    q = cal.apply_calibration(
        res,
        c,
        acquisition=mpi.acquisition,
        roi_params=params,
        voxel_volume_mm3=mpi.voxel_volume_mm,
        iron_per_cell=ipc,
    )
    return {r.name: r for r in q}


def test_realisations_are_the_demos_own(clean):
    a = _realisation(clean, 3).array
    b = make_demo_study(include_ct=False, noise_seed=3).mpi.array
    assert np.allclose(a, b, atol=1e-3)


def test_demo_iron_and_cells_within_tolerance():
    study = make_demo_study(include_ct=False)
    q = _quantify(study.mpi, study.truth)
    truth = {s["name"]: s for s in study.truth["sources"]}
    for name, tol in (("isolated", 0.05), ("weak", 0.10)):
        r, t = q[name], truth[name]
        assert not r.below_lod
        assert r.iron_ug == pytest.approx(t["iron_ug"], rel=tol)
        assert r.cells == pytest.approx(t["cells"], rel=tol)
        assert r.iron_ci_low_ug <= t["iron_ug"] <= r.iron_ci_high_ug
        assert r.cells_ci_low <= t["cells"] <= r.cells_ci_high
    # the solution calibration is applied to labelled cells: the user is told
    assert any("20–70 %" in w for w in q["isolated"].warnings)


@pytest.mark.slow
@pytest.mark.parametrize("psf", ["langevin", "gaussian"])
def test_coverage_over_noise_realisations(psf, demo, quantified):
    """Over 10 realisations of the default (Langevin-PSF) demo and of its Gaussian variant:
    iron within 2 % (isolated) / 5 % (weak beside the strong one) in the median, and the
    95 % iron and cell intervals cover the truth ≥ 90 % of the time for the isolated,
    strong and weak sources; the faint one (SNR 6.5) within 5 % in the median of those
    above the detection limit (its 50-realisation figures: the benchmark's table)."""
    truth = demo(psf)[1]
    assert truth["noise_sd_au"] == 1.5
    names = [s["name"] for s in truth["sources"]]
    tr = {s["name"]: s for s in truth["sources"]}
    cover = {n: [] for n in names}
    cover_cells = {n: [] for n in names}
    err = {n: [] for n in names}
    for k in range(N_REALISATIONS):
        q = quantified(psf, k)
        for n in names:
            r = q.get(n)
            if r is None or r.below_lod:
                continue
            err[n].append(r.iron_ug / tr[n]["iron_ug"] - 1)
            cover[n].append(r.iron_ci_low_ug <= tr[n]["iron_ug"] <= r.iron_ci_high_ug)
            cover_cells[n].append(r.cells_ci_low <= tr[n]["cells"] <= r.cells_ci_high)
    assert abs(np.median(err["isolated"])) < 0.02
    assert abs(np.median(err["weak"])) < 0.05
    assert abs(np.median(err["faint"])) < 0.05, err["faint"]  # −13 % before revision 2
    for n in ("isolated", "strong", "weak"):
        assert len(cover[n]) == N_REALISATIONS, n
        # measurement revision 2: the intervals carry the half-maximum threshold's jitter
        # and the split's uncertainty (on 50 Langevin realisations the strong's coverage
        # 84 % → 100 %, the weak's 84 % → 98 %; benchmarks/bench_calibration.py)
        target = 0.90
        assert np.mean(cover[n]) >= target, (n, np.mean(cover[n]))
        assert np.mean(cover_cells[n]) >= 0.90, (n, np.mean(cover_cells[n]))


def test_strong_source_iron_interval_coverage(clean, demo, quantified):
    """The strong source's narrow 95 % iron interval covers its truth."""
    truth = demo("langevin")[1]
    assert clean.params.psf == "langevin"  # the default demo's realisations
    s = next(x for x in truth["sources"] if x["name"] == "strong")
    hits = []
    for k in range(4):
        r = quantified("langevin", k)["strong"]
        hits.append(r.iron_ci_low_ug <= s["iron_ug"] <= r.iron_ci_high_ug)
    assert np.mean(hits) >= 0.9
