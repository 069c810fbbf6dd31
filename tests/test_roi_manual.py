"""Manual ROIs (masks painted or drawn by the user) against known truths: the demo study's
PSF and iron (noise-free renders), analytic polygon areas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.volume import image_from_array
from mpi_viewer.roi.regions import (
    ROIMask,
    ROIParams,
    measure_label_image,
    measure_mask,
    polygon_to_mask,
    rois_to_label_image,
)


@pytest.fixture(scope="module")
def study():
    """The demo's Gaussian variant: the expectations below are closed-form Gaussian
    integrals (the default Langevin demo is checked in test_roi_langevin.py)."""
    from mpi_viewer.demo.study import make_demo_study

    return make_demo_study(psf="gaussian")


def _box_mask(study, xyz_mm, half_vox):
    c = np.rint(study.mpi.physical_to_index([xyz_mm])[0]).astype(int)
    m = np.zeros(study.mpi.shape, dtype=bool)
    m[tuple(slice(v - half_vox, v + half_vox + 1) for v in c)] = True
    return m


def _volume_2d(arr, spacing=(0.4, 0.25), origin=(-3.0, 5.0)):
    from mpi_viewer.geometry.volume import Volume

    return Volume(image=image_from_array(arr, spacing_mm=spacing, origin_mm=origin), modality="MPI")


def test_halfmax_mask_of_noise_free_source_gives_psf_total(study):
    src = study.source("isolated")
    clean = study.render_sources([src["mpi_mm"]], [src["iron_ug"]])
    amp = study.peak_au(src["iron_ug"])
    mask = clean >= 0.5 * amp
    r = measure_mask(study.mpi.with_array(clean.astype(np.float32)), mask, name="hm")
    vox = study.mpi.voxel_volume_mm
    # the PSF's own signal over the mask
    assert r.total_signal == pytest.approx(float(clean[mask].sum()) * vox, rel=1e-5)
    # and the analytic fraction of a 3-D Gaussian inside its half-maximum ellipsoid
    analytic = (
        chi2.cdf(2 * math.log(2), 3) * study.truth["sensitivity_au_mm3_per_ug"] * src["iron_ug"]
    )
    assert r.total_signal == pytest.approx(analytic, rel=0.05)
    assert r.n_voxels == int(mask.sum()) and r.volume_mm3 == pytest.approx(mask.sum() * vox)
    assert r.mean_au == pytest.approx(r.total_signal / r.volume_mm3)
    assert r.peak_au == pytest.approx(amp, rel=0.01)
    assert np.linalg.norm(np.subtract(r.peak_mm, src["mpi_mm"])) < 0.1
    np.testing.assert_allclose(r.fwhm_mm, study.truth["psf_fwhm_mm"], rtol=0.06)
    assert r.method == "manual" and r.name == "hm" and r.size_unit == "mm3"
    assert math.isnan(r.snr)  # a noiseless image has no noise SD
    assert np.linalg.norm(np.subtract(r.seed_mm, src["mpi_mm"])) < 0.3  # centroid of the mask


@pytest.mark.parametrize("half_vox", [8, 12])
def test_painted_box_captures_iron_times_sensitivity_minus_tails(study, half_vox):
    src = study.source("isolated")
    mask = _box_mask(study, src["mpi_mm"], half_vox)
    r = measure_mask(study.mpi, mask, name="box")
    vox = study.mpi.voxel_volume_mm
    clean = study.render_sources([src["mpi_mm"]], [src["iron_ug"]])
    expected = (
        float(clean[mask].sum()) * vox
    )  # 1250 a.u.·mm³/µg × iron, less the tails outside the box
    full = study.truth["sensitivity_au_mm3_per_ug"] * src["iron_ug"]
    assert expected == pytest.approx(full, rel=0.01) and expected < full
    noise_of_sum = study.truth["noise_sd_au"] * math.sqrt(mask.sum()) * vox
    assert abs(r.total_signal - expected) < 4 * noise_of_sum
    assert r.noise_sd == pytest.approx(study.truth["noise_sd_au"], rel=0.05)
    assert r.snr == pytest.approx(
        study.peak_au(src["iron_ug"]) / study.truth["noise_sd_au"], rel=0.05
    )
    np.testing.assert_allclose(r.fwhm_mm, study.truth["psf_fwhm_mm"], rtol=0.06)
    assert r.flags == []


def test_roimask_and_full_mask_agree_and_params_noise_used(study):
    src = study.source("isolated")
    full = _box_mask(study, src["mpi_mm"], 6)
    c = np.argwhere(full).min(axis=0)
    box = ROIMask(start=tuple(int(v) for v in c), array=np.ones((13, 13, 13), dtype=bool))
    a = measure_mask(study.mpi, full)
    b = measure_mask(study.mpi, box, ROIParams(noise_sd=3.0), label=7)
    assert a.total_signal == b.total_signal and a.n_voxels == b.n_voxels == 13**3
    assert b.noise_sd == 3.0 and b.snr == pytest.approx(b.peak_au / 3.0) and b.label == 7


def test_label_image_one_roi_per_label(study):
    iso, strong = study.source("isolated"), study.source("faint")
    lab = np.zeros(study.mpi.shape, dtype=np.uint16)
    lab[_box_mask(study, iso["mpi_mm"], 10)] = 3
    lab[_box_mask(study, strong["mpi_mm"], 6)] = 5
    rs = measure_label_image(study.mpi, lab, names=["iso", "faint"])
    assert [r.name for r in rs] == ["iso", "faint"] and [r.label for r in rs] == [3, 5]
    vox = study.mpi.voxel_volume_mm
    for r, src in zip(rs, (iso, strong), strict=True):
        m = lab == r.label
        exp = float(study.render_sources([src["mpi_mm"]], [src["iron_ug"]])[m].sum()) * vox
        assert abs(r.total_signal - exp) < 4 * study.truth["noise_sd_au"] * math.sqrt(m.sum()) * vox
    assert np.array_equal(rois_to_label_image(study.mpi, rs), lab)
    default = measure_label_image(study.mpi, lab)
    assert [r.name for r in default] == ["manual_3", "manual_5"]


def test_polygon_area_2d_within_one_pixel():
    vol = _volume_2d(np.zeros((80, 60), dtype=np.float32))
    sx, sy = vol.spacing_mm
    ox, oy = vol.origin_mm
    # rectangle with corners on pixel edges: exactly 20 × 30 pixels
    x0, y0 = ox + 9.5 * sx, oy + 19.5 * sy
    rect = [(x0, y0), (x0 + 20 * sx, y0), (x0 + 20 * sx, y0 + 30 * sy), (x0, y0 + 30 * sy)]
    m = polygon_to_mask(vol, rect)
    assert m.sum() * sx * sy == pytest.approx(20 * sx * 30 * sy)
    assert m[20:50, 10:30].all()
    # a triangle: pixel count × pixel area within a one-pixel band along the edge of the true area
    tri = np.array([(ox + 2.0, oy + 1.0), (ox + 20.0, oy + 3.0), (ox + 8.0, oy + 17.0)])
    (ax, ay), (bx, by) = tri[1] - tri[0], tri[2] - tri[0]
    area = 0.5 * abs(ax * by - ay * bx)
    perimeter = sum(np.linalg.norm(tri[i] - tri[i - 1]) for i in range(3))
    got = polygon_to_mask(vol, tri).sum() * sx * sy
    assert abs(got - area) <= 0.5 * perimeter * max(sx, sy)


def test_polygon_2d_measures_signal_inside():
    arr = np.zeros((40, 40), dtype=np.float32)
    arr[10:20, 12:25] = 4.0  # 10 × 13 pixels of 4 a.u.
    vol = _volume_2d(arr, spacing=(0.5, 0.5), origin=(0.0, 0.0))
    poly = [(5.0, 4.0), (13.0, 4.0), (13.0, 10.5), (5.0, 10.5)]  # covers the block and some zeros
    r = measure_mask(vol, polygon_to_mask(vol, poly), ROIParams(noise_sd=1.0))
    assert r.total_signal == pytest.approx(4.0 * 10 * 13 * 0.25)
    assert r.size_unit == "mm2" and r.area_mm2 == pytest.approx(r.n_voxels * 0.25)
    assert len(r.fwhm_mm) == 2 and len(r.peak_mm) == 2


def test_polygon_3d_on_one_slice(study):
    src = study.source("isolated")
    x, y, z = src["mpi_mm"]
    poly = [(x - 3, y - 3, z), (x + 3, y - 3, z), (x + 3, y + 3, z), (x - 3, y + 3, z)]
    m = polygon_to_mask(study.mpi, poly)
    k = int(np.rint(study.mpi.physical_to_index([src["mpi_mm"]])[0][0]))
    assert m[k].sum() == 12 * 12 and m.sum() == 12 * 12  # 6 mm / 0.5 mm = 12 pixels a side
    with pytest.raises(InputError, match="one slice"):
        polygon_to_mask(study.mpi, [(x, y, z), (x + 3, y, z + 2), (x, y + 3, z)])


def test_bad_inputs_raise_one_line(study):
    shape = study.mpi.shape
    cases = [
        (lambda: measure_mask(study.mpi, np.zeros((3, 3, 3), dtype=bool)), "not on the MPI grid"),
        (lambda: measure_mask(study.mpi, np.zeros(shape, dtype=bool)), "empty"),
        (lambda: measure_label_image(study.mpi, np.zeros(shape, dtype=np.uint8)), "no labelled"),
        (
            lambda: measure_label_image(study.mpi, np.zeros((2, 2), dtype=np.uint8)),
            "not on the MPI grid",
        ),
        (lambda: polygon_to_mask(study.mpi, [(0, 0, 0), (1, 1, 0)]), "at least three"),
        (lambda: polygon_to_mask(study.mpi, [(0, 0), (1, 1), (1, 0)]), "3 coordinates"),
    ]
    nan = study.mpi.array.copy()
    src = study.source("isolated")
    mask = _box_mask(study, src["mpi_mm"], 4)
    nan[tuple(np.argwhere(mask)[10])] = np.nan
    cases.append((lambda: measure_mask(study.mpi.with_array(nan), mask), "NaN"))
    for fn, text in cases:
        with pytest.raises(InputError, match=text) as info:
            fn()
        assert "\n" not in str(info.value)
