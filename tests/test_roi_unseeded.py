"""An ROI that holds a second source no seed measures is flagged ``unseeded_peak`` with
the source's position (checked against the demo's truth), whatever the method; seeding
that source gives it its own ROI and clears the flag; a lone source is never flagged."""

import numpy as np
import pytest

from mpi_viewer.roi.regions import ROIParams, measure

#: Known bug (open, issue 13): on the Langevin (x-space) demo, whose PSF is twice as wide
#: along the drive axis and has long tails, the curvature search places the unseeded weak
#: source 1.1 mm off along that axis (n·SD, k-means) and flags a lone vial under n·SD. The
#: Gaussian demo passes. Kept as strict xfails so that a fix shows up as XPASS.
_LANGEVIN_BUG = pytest.mark.xfail(
    strict=True, reason="unseeded-peak search on the anisotropic Langevin PSF (known bug)"
)
_PSF_METHOD = [
    ("gaussian", "nsd"),
    ("gaussian", "halfmax"),
    ("gaussian", "kmeans"),
    pytest.param("langevin", "nsd", marks=_LANGEVIN_BUG),
    ("langevin", "halfmax"),
    pytest.param("langevin", "kmeans", marks=_LANGEVIN_BUG),
]
_LONE = [
    ("gaussian", "nsd"),
    ("gaussian", "halfmax"),
    ("gaussian", "kmeans"),
    pytest.param("langevin", "nsd", marks=_LANGEVIN_BUG),
    ("langevin", "halfmax"),
    ("langevin", "kmeans"),
]


@pytest.fixture(scope="module")
def gaussian_study():
    from mpi_viewer.demo.study import make_demo_study

    return make_demo_study(psf="gaussian")


def _demo(psf, study, gaussian_study):
    return gaussian_study if psf == "gaussian" else study


def _unseeded_positions(result):
    import re

    out = []
    for w in result.warnings:
        m = re.search(r"unseeded source at \(([^)]*)\) mm", w)
        if m:
            out.append([float(v) for v in m.group(1).split(",")])
    return out


@pytest.mark.parametrize(("psf", "method"), _PSF_METHOD)
def test_unseeded_neighbour_flagged_with_its_position(study, gaussian_study, psf, method):
    study = _demo(psf, study, gaussian_study)
    strong, weak = study.source("strong"), study.source("weak")
    params = ROIParams(method=method)
    (r,) = measure(study.mpi, [strong["mpi_mm"]], params)
    inside = bool(
        r.mask.to_full(study.mpi.shape)[
            tuple(np.rint(study.mpi.physical_to_index([weak["mpi_mm"]])[0]).astype(int))
        ]
    )
    found = _unseeded_positions(r)
    # flagged exactly when the weak source's centre lies inside the strong source's ROI
    assert ("unseeded_peak" in r.flags) == inside == bool(found), (method, r.flags, found)
    if method == "nsd":
        assert inside  # the n·SD region reaches the weak source 4.3 mm away
    if found:
        assert len(found) == 1
        assert np.linalg.norm(np.subtract(found[0], weak["mpi_mm"])) < 0.6  # about a voxel
    # seeded, the weak source has its own ROI and nobody is flagged
    both = measure(study.mpi, [strong["mpi_mm"], weak["mpi_mm"]], params)
    assert all("unseeded_peak" not in x.flags for x in both)


@pytest.mark.parametrize(("psf", "method"), _LONE)
def test_lone_sources_are_not_flagged(study, gaussian_study, psf, method):
    study = _demo(psf, study, gaussian_study)
    seeds = [study.source(n)["mpi_mm"] for n in ("isolated", "faint")]
    seeds += [v["mpi_mm"] for v in study.truth["vials"]]
    for r in measure(study.mpi, seeds, ROIParams(method=method)):
        assert "unseeded_peak" not in r.flags, (method, r.name, r.warnings)
