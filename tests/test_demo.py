"""The demo study is the ground truth of the whole suite: check it against itself
from first principles (geometry, PSF integral, where things show)."""

import math

import numpy as np
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
    s = make_demo_study()
    k = s.truth["sensitivity_au_mm3_per_ug"]
    iron = sum(x["iron_ug"] for x in s.truth["sources"] + s.truth["vials"])
    iron += sum(1 for f in s.truth["fiducials"] if f["in_mpi"]) * s.params.fiducial_iron_ug
    total = float(s.mpi.array.astype(np.float64).sum()) * s.mpi.voxel_volume_mm
    # noise adds sd·sqrt(N)·voxel volume at most a few times
    noise = s.truth["noise_sd_au"] * math.sqrt(s.mpi.array.size) * s.mpi.voxel_volume_mm
    assert abs(total - k * iron) < 4 * noise + 1e-3 * k * iron


def test_hot_spots_peak_where_the_truth_says():
    s = make_demo_study()
    sigma = np.asarray(s.truth["psf_fwhm_mm"]) / (2 * math.sqrt(2 * math.log(2)))
    peak_per_ug = s.truth["sensitivity_au_mm3_per_ug"] / ((2 * math.pi) ** 1.5 * np.prod(sigma))
    for src in s.truth["sources"]:
        idx = np.round(s.mpi.physical_to_index(src["mpi_mm"])[0]).astype(int)
        value = s.mpi.array[tuple(idx)]
        # nearest voxel is within half a voxel of the peak: at least 85 % of it
        assert 0.85 * peak_per_ug * src["iron_ug"] - 5 < value < peak_per_ug * src["iron_ug"] + 5


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


def test_render_sources_integrates_to_sensitivity():
    s = make_demo_study()
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
