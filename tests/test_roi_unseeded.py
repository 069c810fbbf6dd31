"""A source no seed measures is flagged ``unseeded_peak`` on the ROI that counts it —
inside the ROI, or near enough that its tail raises the ROI's total by more than 1 % —
with its position (within 0.5 mm of the demo's truth) and how much it adds (against the
same image with that source removed), on both demo PSFs (x-space Langevin, the default,
and Gaussian) and with every ROI method; the seed it suggests clears the flag; a lone
source is never flagged, over ten noise realisations; the command line prints the flag
and ``--strict`` makes it exit 2."""

import re

import numpy as np
import pytest

from mpi_viewer.roi.regions import METHODS, ROIParams, measure

PSFS = ("langevin", "gaussian")


@pytest.fixture(scope="module")
def gaussian_study():
    from mpi_viewer.demo.study import make_demo_study

    return make_demo_study(psf="gaussian")


def _demo(psf, study, gaussian_study):
    return gaussian_study if psf == "gaussian" else study


def _unseeded(result):
    """(position mm, % added, inside?) of each unseeded source the ROI's warnings name."""
    out = []
    for w in result.warnings:
        m = re.search(r"unseeded source at \(([^)]*)\) mm", w)
        if m:
            pct = float(re.search(r"([0-9.]+) % ", w).group(1))
            out.append(([float(v) for v in m.group(1).split(",")], pct, "inside this ROI" in w))
    return out


def _without(study, name):
    """The demo's MPI with one source's known (noise-free) signal removed: the truth of
    what the ROI would be if that source were not there."""
    s = study.source(name)
    sig = study.render_sources([s["mpi_mm"]], [s["iron_ug"]])
    return study.mpi.with_array((study.mpi.array.astype(np.float64) - sig).astype(np.float32))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("psf", PSFS)
def test_unseeded_neighbour_flagged_with_its_position(study, gaussian_study, psf, method):
    study = _demo(psf, study, gaussian_study)
    strong, weak = study.source("strong"), study.source("weak")
    params = ROIParams(method=method)
    (r,) = measure(study.mpi, [strong["mpi_mm"]], params)
    (alone,) = measure(_without(study, "weak"), [strong["mpi_mm"]], params)
    assert "unseeded_peak" not in alone.flags
    added = r.total_signal / alone.total_signal - 1  # what the weak source adds (truth)
    at = np.rint(study.mpi.physical_to_index([weak["mpi_mm"]])[0]).astype(int)
    inside = bool(r.mask.to_full(study.mpi.shape)[tuple(at)])
    found = _unseeded(r)
    if method == "nsd":
        assert inside  # the n·SD region reaches the weak source 4 mm away
    if psf == "langevin" and method == "halfmax":
        # the open item of issue 13: outside the half-maximum region, its tail adds ~5 %
        assert not inside and added > 0.03
    if not inside:
        assert abs(added - 0.01) > 0.002  # clear of the 1 % line either way
    # flagged exactly when the weak source is inside the ROI or adds more than 1 %
    assert ("unseeded_peak" in r.flags) == (inside or added > 0.01) == bool(found), (
        method,
        added,
        r.warnings,
    )
    if found:
        ((xyz, pct, said_inside),) = found
        assert np.linalg.norm(np.subtract(xyz, weak["mpi_mm"])) < 0.5  # mm
        assert said_inside == inside
        # what it adds, at the ROI's own threshold (k-means' threshold itself moves by a
        # few % when the source is removed: its classes are the neighbourhood's)
        assert pct == pytest.approx(100 * added, abs=max(1.0, 30 * added)), r.warnings
        # the seed it suggests gives the weak source its own ROI and clears the flag
        (seed,) = re.findall(r"--seed=([-\d.,]+)\)", " ".join(r.warnings))
        both = measure(study.mpi, [strong["mpi_mm"], [float(v) for v in seed.split(",")]], params)
        assert all("unseeded_peak" not in x.flags for x in both), [x.warnings for x in both]
        assert np.linalg.norm(np.subtract(both[1].peak_mm, weak["mpi_mm"])) < 0.5
    # seeded, nobody is flagged
    both = measure(study.mpi, [strong["mpi_mm"], weak["mpi_mm"]], params)
    assert all("unseeded_peak" not in x.flags for x in both)


def _lone(study):
    names = ["isolated", "faint"] + [v["name"] for v in study.truth["vials"]]
    return names, [study.source(n)["mpi_mm"] for n in names]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("psf", PSFS)
def test_lone_sources_are_not_flagged(study, gaussian_study, psf, method):
    study = _demo(psf, study, gaussian_study)
    names, seeds = _lone(study)
    for r in measure(study.mpi, seeds, ROIParams(method=method), names=names):
        assert "unseeded_peak" not in r.flags, (method, r.name, r.warnings)


@pytest.mark.slow
@pytest.mark.parametrize(("psf", "n"), [("langevin", 10), ("gaussian", 5)])
def test_lone_sources_are_not_flagged_over_noise_realisations(psf, n):
    """The demo's own noise realisations (``noise_seed=k``, drawn here on its noise-free
    MPI), one method each in turn: half maximum and k-means on every lone source, n·SD
    (the costliest here) on the brightest vial, where a misfit of the measured PSF is
    largest (the x-space tail lobe it once flagged). The whole grid (10 realisations ×
    3 methods × 2 PSFs, fiducial wells too): ``benchmarks/bench_unseeded.py``."""
    from mpi_viewer.demo.study import make_demo_study

    clean = make_demo_study(psf=psf, include_ct=False, noise_sd_au=0.0)
    names, seeds = _lone(clean)
    for k in range(n):
        noise = np.random.default_rng(k).normal(0.0, 1.5, size=clean.mpi.shape)
        mpi = clean.mpi.with_array((clean.mpi.array.astype(np.float64) + noise).astype(np.float32))
        method = METHODS[k % 3]
        if method == "nsd":
            names, seeds = ["vial_20ug"], [clean.source("vial_20ug")["mpi_mm"]]
        else:
            names, seeds = _lone(clean)
        for r in measure(mpi, seeds, ROIParams(method=method), names=names):
            assert "unseeded_peak" not in r.flags, (k, method, r.name, r.warnings)


def test_command_line_prints_the_flag_and_strict_exits_2(study, tmp_path, capsys):
    """``quantify`` with only the strong source seeded (half maximum, the default): the
    warning on stderr names where the weak source is; ``--strict`` exits 2, nothing
    written."""
    from mpi_viewer.cli import main
    from mpi_viewer.io.images import write_volume

    mpi = write_volume(study.mpi, tmp_path / "mpi.nii.gz")
    weak = study.source("weak")
    seed = "--seed=" + ",".join(f"{v:.2f}" for v in study.source("strong")["mpi_mm"])
    out = tmp_path / "r.csv"
    assert main(["quantify", str(mpi), seed, "-o", str(out)]) == 0
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "unseeded source" in x]
    assert line.startswith("mpi-viewer: warning: roi_1: unseeded source at (")
    xyz = [float(v) for v in re.search(r"at \(([^)]*)\) mm", line).group(1).split(",")]
    assert np.linalg.norm(np.subtract(xyz, weak["mpi_mm"])) < 0.5
    assert "its tail adds" in line and "--seed=" in line
    assert "unseeded_peak" in out.read_text(encoding="utf-8")
    strict = tmp_path / "strict.csv"
    assert main(["quantify", str(mpi), seed, "--strict", "-o", str(strict)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("unseeded source" in x for x in err) and "--strict" in err[-1]
    assert not strict.exists()
