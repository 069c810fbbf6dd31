"""Landmark registration against the demo study's known transform and analytic cases.

FLE convention (Fitzpatrick, West & Maurer 1998, doi:10.1109/42.736021): the fiducial
localisation error is the RMS *length* of the 3-D error vector, so "0.15 mm FLE" is
Gaussian noise of SD 0.15/√3 mm per axis, added independently in each image.
"""

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

from mpi_viewer.demo.study import make_demo_study, rotation_matrix, truth_transform
from mpi_viewer.errors import CancelledError, InputError
from mpi_viewer.geometry.axes import xyz_to_zyx
from mpi_viewer.geometry.transform import (
    napari_affine_for_moving,
    project,
    project_points,
    resample_to_fixed,
    transform_to_matrix,
)
from mpi_viewer.io.points import PointSet
from mpi_viewer.io.transform_files import read_transform, write_transform
from mpi_viewer.registration.intensity import refine_intensity
from mpi_viewer.registration.landmarks import (
    LandmarkFit,
    RegistrationParams,
    fit_landmarks,
    pair_points,
)

OBLIQUE = {"mri_direction_deg": (10.0, -20.0, 15.0), "mri_spacing_mm": (0.3, 0.35, 0.5)}
FLE_MM = 0.15


def _truth(study):
    t = study.truth["transform_fixed_to_moving"]
    fid = study.truth["fiducials"]
    return (
        np.asarray(t["matrix"]),
        np.asarray(t["translation"]),
        [f["name"] for f in fid],
        np.array([f["mri_mm"] for f in fid]),
        np.array([f["mpi_mm"] for f in fid]),
        np.array([s["mri_mm"] for s in study.truth["sources"]]),
        np.array([s["mpi_mm"] for s in study.truth["sources"]]),
    )


@pytest.fixture(scope="module")
def study():
    return make_demo_study()


@pytest.fixture(scope="module")
def oblique():
    return make_demo_study(**OBLIQUE)


# -- exact recovery ------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["rigid", "similarity", "affine"])
def test_exact_recovery_without_noise(study, model):
    m, t, names, fx, mv, src_f, src_m = _truth(study)
    fit = fit_landmarks(fx, mv, model=model, names=names)
    assert_allclose(fit.matrix, m, atol=1e-9)
    assert_allclose(fit.translation, t, atol=1e-9)
    assert_allclose(fit.transform_points(src_f), src_m, atol=1e-9)
    assert_allclose(fit.inverse_points(src_m), src_f, atol=1e-9)
    assert fit.rms_fre_mm < 1e-9 and fit.warnings == []
    # the SimpleITK transform is the same map, of the expected kind
    tx = fit.to_sitk()
    assert (
        tx.GetName()
        == {
            "rigid": "Euler3DTransform",
            "similarity": "Similarity3DTransform",
            "affine": "AffineTransform",
        }[model]
    )
    assert_allclose([tx.TransformPoint(p.tolist()) for p in src_f], src_m, atol=1e-9)


def test_affine_recovers_known_anisotropic_affine_exactly():
    rng = np.random.default_rng(3)
    fixed = rng.uniform(-20, 20, size=(8, 3))
    a = np.array(
        [[1.10, 0.05, -0.02], [0.03, 0.90, 0.10], [-0.04, 0.02, 1.30]]
    )  # scales and shears
    b = np.array([2.0, -7.5, 11.0])
    fit = fit_landmarks(fixed, fixed @ a.T + b, model="affine")
    assert_allclose(fit.matrix, a, atol=1e-9)
    assert_allclose(fit.translation, b, atol=1e-9)
    # rigid cannot fit it: the spread differs and a warning says so
    rigid = fit_landmarks(fixed, fixed @ a.T + b, model="rigid")
    assert any("spread" in w for w in rigid.warnings)


def test_similarity_recovers_scale():
    rng = np.random.default_rng(4)
    fixed = rng.uniform(-10, 10, size=(6, 3))
    r = rotation_matrix((20, -5, 40))
    fit = fit_landmarks(fixed, 1.7 * fixed @ r.T + [1, 2, 3], model="similarity")
    assert_allclose(fit.matrix, 1.7 * r, atol=1e-9)
    assert fit.scale == pytest.approx(1.7, abs=1e-12)


def test_rigid_never_reflects_even_for_mirrored_points():
    rng = np.random.default_rng(5)
    fixed = rng.uniform(-15, 15, size=(7, 3))
    mirror = np.diag([-1.0, 1.0, 1.0])
    for model in ("rigid", "similarity"):
        fit = fit_landmarks(fixed, fixed @ mirror.T, model=model)
        assert np.linalg.det(fit.matrix) > 0
        r = fit.matrix / fit.scale
        assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert fit.rms_fre_mm > 1.0  # a mirror image cannot be fitted by a rotation


# -- with fiducial localisation error --------------------------------------------------------
@pytest.mark.parametrize("which", ["default", "oblique"])
@pytest.mark.parametrize("model", ["rigid", "affine"])
def test_tre_at_sources_with_fle(study, oblique, model, which):
    """With 0.15 mm FLE in both images, TRE at the iron sources ≤ 0.3 mm, every one of 50 draws."""
    s = study if which == "default" else oblique
    m, t, names, fx, mv, src_f, src_m = _truth(s)
    rng = np.random.default_rng(11)
    sd = FLE_MM / np.sqrt(3)
    fle_combined = FLE_MM * np.sqrt(2)
    n = len(fx)
    # matrix tolerance from the least-squares covariance: var(a_ij) = σ² [(XᵀX)⁻¹]_jj,
    # σ² = 2·sd² (noise in both images); 4 σ
    x = np.hstack([fx, np.ones((n, 1))])
    cov = np.linalg.inv(x.T @ x)
    mat_atol = 4 * np.sqrt(2) * sd * np.sqrt(np.diag(cov)[:3]).max()
    for _ in range(50):
        fit = fit_landmarks(
            fx + rng.normal(0, sd, fx.shape),
            mv + rng.normal(0, sd, mv.shape),
            model=model,
            names=names,
            fle_mm=fle_combined,
        )
        tre = np.linalg.norm(fit.transform_points(src_f) - src_m, axis=1)
        assert tre.max() <= 0.3, tre
        assert_allclose(fit.matrix, m, atol=mat_atol)
        # translation = the map at the physical origin: tolerance 4× its predicted TRE
        assert_allclose(fit.translation, t, atol=4 * fit.expected_tre_mm(np.zeros(3)))
        assert fit.warnings == []
    # the oblique, anisotropic MRI grid holds every fiducial and source
    assert s.mri.contains_physical(np.vstack([fx, src_f])).all()


def test_rms_tre_with_015mm_per_axis_noise_is_below_03mm(study):
    """Stricter reading (SD 0.15 mm per axis in both images): RMS TRE over 300 draws ≤ 0.3 mm."""
    m, t, names, fx, mv, src_f, src_m = _truth(study)
    rng = np.random.default_rng(12)
    for model in ("rigid", "affine"):
        sq = []
        for _ in range(300):
            fit = fit_landmarks(
                fx + rng.normal(0, 0.15, fx.shape), mv + rng.normal(0, 0.15, mv.shape), model=model
            )
            sq.append(np.sum((fit.transform_points(src_f) - src_m) ** 2, axis=1))
        assert np.sqrt(np.mean(sq, axis=0)).max() <= 0.3


@pytest.mark.parametrize("model", ["rigid", "affine"])
def test_expected_tre_matches_monte_carlo(study, model):
    """Fitzpatrick's prediction (rigid) and the least-squares one (affine) within 15 % of 500 trials."""
    m, t, names, fx, mv, src_f, src_m = _truth(study)
    targets = np.vstack([src_f, fx.mean(axis=0) + [0, 40.0, 0], fx.mean(axis=0)])
    targets_m = targets @ m.T + t
    rng = np.random.default_rng(13)
    fle = 0.3
    sq = np.zeros(len(targets))
    trials = 500
    for _ in range(trials):
        fit = fit_landmarks(fx, mv + rng.normal(0, fle / np.sqrt(3), mv.shape), model=model)
        sq += np.sum((fit.transform_points(targets) - targets_m) ** 2, axis=1)
    mc = np.sqrt(sq / trials)
    predicted = fit_landmarks(fx, mv, model=model).expected_tre_mm(targets, fle)
    assert_allclose(predicted, mc, rtol=0.15)
    # the far target is predicted worse than the centroid, as the formula says
    assert predicted[-2] > 1.5 * predicted[-1]


def test_expected_tre_analytic_at_centroid():
    """At the fiducials' centroid, TRE² = FLE²/N (rigid: d_k = 0; affine: h(XᵀX)⁻¹h = 1/N)."""
    rng = np.random.default_rng(1)
    fixed = rng.uniform(-10, 10, (9, 3))
    for model in ("rigid", "affine"):
        fit = fit_landmarks(fixed, fixed, model=model)
        assert fit.expected_tre_mm(fixed.mean(axis=0), 0.6) == pytest.approx(0.6 / 3, rel=1e-9)


# -- bad input and warnings --------------------------------------------------------------------
def test_bad_input_raises_one_line_errors():
    pts = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10], [5, 5, 5]], dtype=float)
    cases = [
        (lambda: fit_landmarks(pts[:2], pts[:2]), "needs at least 3"),
        (lambda: fit_landmarks(pts[:3], pts[:3], model="affine"), "needs at least 4 non-coplanar"),
        (
            lambda: fit_landmarks(np.where(np.arange(15).reshape(5, 3) == 4, np.nan, pts), pts),
            "NaN",
        ),
        (lambda: fit_landmarks(pts, pts[:4]), "pair one to one"),
        (lambda: fit_landmarks(np.outer(np.arange(5.0), [1, 2, 3]), pts), "collinear"),
        (lambda: fit_landmarks(pts * [1, 1, 0], pts, model="affine"), "coplanar"),
        (lambda: fit_landmarks(pts, pts, exclude=range(5)), "every fiducial pair is excluded"),
        (lambda: fit_landmarks(pts, pts, exclude=["nope"]), "no fiducial named"),
        (lambda: fit_landmarks(pts, pts, names=list("abcda")), "duplicate fiducial name 'a'"),
        (lambda: fit_landmarks(pts, pts, model="bspline"), "expected one of"),
        (
            lambda: fit_landmarks(pts, pts, names=list("abcde"), exclude=["a", "b", "c"]),
            "2 fiducial pair",
        ),
        (lambda: fit_landmarks(pts, pts * [1, 1, 0], model="affine"), "coplanar"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message) as e:
            call()
        assert "\n" not in str(e.value)


def test_exclusion_keeps_residual_and_warnings_flag_outlier():
    rng = np.random.default_rng(2)
    fixed = rng.uniform(-20, 20, (8, 3))
    moving = fixed + [1.0, 2.0, 3.0]
    moving[3] += [3.0, 0, 0]  # a misplaced click
    names = [f"F{i}" for i in range(8)]
    fit = fit_landmarks(fixed, moving, names=names, fre_tolerance_mm=0.5)
    assert any("F3" in w and "much worse" in w for w in fit.warnings)
    assert any("above the tolerance" in w for w in fit.warnings)
    clean = fit_landmarks(fixed, moving, names=names, exclude=["F3"])
    assert_allclose(clean.translation, [1, 2, 3], atol=1e-9)
    assert clean.used.tolist() == [True] * 3 + [False] + [True] * 4
    assert clean.residuals_mm[3] == pytest.approx(3.0, abs=1e-9)  # excluded, still reported
    assert clean.rms_fre_mm < 1e-9 and clean.warnings == []


def test_nearly_collinear_points_warn():
    fixed = np.array([[0, 0, 0], [10, 0, 0], [20, 0.2, 0], [30, 0, 0.1]], dtype=float)
    fit = fit_landmarks(fixed, fixed, model="rigid")
    assert any("nearly collinear" in w for w in fit.warnings)


def test_pair_points_by_name():
    fixed = PointSet(["a", "b", "c", "d"], np.arange(12.0).reshape(4, 3))
    moving = PointSet(["d", "x", "b", "a"], np.arange(12.0).reshape(4, 3) + 100)
    names, f, m, warnings = pair_points(fixed, moving)
    assert names == ["a", "b", "d"]
    assert_allclose(f, fixed.xyz_mm[[0, 1, 3]])
    assert_allclose(m, moving.xyz_mm[[3, 2, 0]])
    assert any("'c'" in w or "c " in w for w in warnings) and any("x" in w for w in warnings)
    with pytest.raises(InputError, match="no moving point"):
        pair_points(fixed, moving, strict=True)
    with pytest.raises(InputError, match="no fixed point"):
        pair_points(fixed, moving, strict=True, exclude=["c"])
    assert pair_points(fixed, moving, strict=True, exclude=["c", "x"])[0] == ["a", "b", "d"]
    with pytest.raises(InputError, match="duplicate"):
        pair_points(PointSet(["a", "a"], np.zeros((2, 3))), moving)
    with pytest.raises(InputError, match="2-D"):
        pair_points(PointSet(["a"], [[0.0, 1.0]]), moving)


# -- serialisation, .tfm, resampling, napari ---------------------------------------------------
def test_params_and_fit_round_trip_through_json(study):
    p = RegistrationParams(model="affine", fle_mm=0.2, fre_tolerance_mm=0.8, exclude=["M2"])
    assert RegistrationParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(InputError):
        RegistrationParams(model="warp")
    m, t, names, fx, mv, *_ = _truth(study)
    fit = fit_landmarks(fx, mv + 0.1, names=names, exclude=["M2"])
    back = LandmarkFit.from_dict(json.loads(json.dumps(fit.to_dict())))
    assert_allclose(back.matrix, fit.matrix, atol=0)
    assert back.used.tolist() == fit.used.tolist() and back.names == names
    assert back.expected_tre_mm(fx[0]) == pytest.approx(fit.expected_tre_mm(fx[0]))


@pytest.mark.parametrize("model", ["rigid", "similarity", "affine"])
def test_tfm_round_trip(tmp_path, study, model):
    m, t, names, fx, mv, src_f, src_m = _truth(study)
    fit = fit_landmarks(fx, mv, model=model, names=names)
    path = write_transform(tmp_path / "t.tfm", fit)
    tx = read_transform(path)
    mat, tr = transform_to_matrix(tx)
    assert_allclose(mat, m, atol=1e-9)
    assert_allclose(tr, t, atol=1e-9)
    assert "Transform" in path.read_text().splitlines()[1]  # ITK text format (3D Slicer reads it)
    assert [p.name for p in tmp_path.iterdir()] == ["t.tfm"]


def test_transform_files_bad_input(tmp_path):
    import SimpleITK as sitk

    (tmp_path / "junk.tfm").write_text("not a transform\n")
    with pytest.raises(InputError, match="not a readable"):
        read_transform(tmp_path / "junk.tfm")
    with pytest.raises(InputError, match="no such file"):
        read_transform(tmp_path / "none.tfm")
    with pytest.raises(InputError, match="does not exist"):
        write_transform(tmp_path / "no" / "t.tfm", (np.eye(3), np.zeros(3)))
    field = sitk.DisplacementFieldTransform(3)
    with pytest.raises(InputError, match="not linear"):
        transform_to_matrix(field)


def test_resample_and_tfm_put_hot_spot_on_its_mri_location(tmp_path, oblique):
    """MPI of the isolated source, through the written .tfm onto the oblique, anisotropic MRI grid."""
    import SimpleITK as sitk

    s = oblique
    m, t, names, fx, mv, src_f, src_m = _truth(s)
    src = s.source("isolated")
    clean = s.mpi.with_array(s.render_sources([src["mpi_mm"]], [src["iron_ug"]]).astype(np.float32))
    fit = fit_landmarks(fx, mv, names=names)
    path = write_transform(tmp_path / "mri_to_mpi.tfm", fit)
    for img in (
        sitk.Resample(clean.image, s.mri.image, read_transform(path)),
        resample_to_fixed(clean, s.mri, fit).image,
    ):
        arr = sitk.GetArrayFromImage(img).astype(float)
        w = np.where(arr > 0.5 * arr.max(), arr, 0.0)
        idx = np.argwhere(w > 0)
        centroid_zyx = (idx * w[w > 0][:, None]).sum(0) / w.sum()
        pos = s.mri.index_to_physical(centroid_zyx)[0]
        assert_allclose(pos, src["mri_mm"], atol=0.1)  # a symmetric PSF: its centroid is the source


def test_resample_of_demo_mpi_is_on_the_fixed_grid(study):
    out = resample_to_fixed(study.mpi, study.mri, truth_transform(study))
    assert out.shape == study.mri.shape and out.spacing_mm == study.mri.spacing_mm
    assert out.modality == "MPI" and out.metadata["display_only"] is True


def test_napari_affine_places_moving_voxels_at_fixed_positions(study, oblique):
    for s in (study, oblique):
        m, t, names, fx, mv, src_f, src_m = _truth(s)
        fit = fit_landmarks(fx, mv, names=names)
        a = napari_affine_for_moving(s.mpi, fit)
        idx = s.mpi.physical_to_index(src_m)  # (z, y, x) voxel indices of the sources in the MPI
        scale = xyz_to_zyx(s.mpi.spacing_mm)
        world = (np.hstack([idx * scale, np.ones((len(idx), 1))]) @ a.T)[:, :3]
        assert_allclose(world, xyz_to_zyx(src_f), atol=1e-9)
    # identity: just the moving image's own placement
    a0 = napari_affine_for_moving(study.mpi)
    w0 = a0 @ np.r_[np.zeros(3), 1]
    assert_allclose(w0[:3], xyz_to_zyx(study.mpi.origin_mm))


# -- 2-D --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["rigid", "similarity", "affine"])
def test_2d_fits_recover_known_maps(model):
    rng = np.random.default_rng(6)
    fixed = rng.uniform(-20, 20, (5, 2))
    th = np.deg2rad(17.0)
    r = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    a = {"rigid": r, "similarity": 0.8 * r, "affine": np.array([[1.2, 0.1], [-0.05, 0.7]])}[model]
    fit = fit_landmarks(fixed, fixed @ a.T + [3, -4], model=model)
    assert_allclose(fit.matrix, a, atol=1e-9)
    assert_allclose(fit.translation, [3, -4], atol=1e-9)
    tx = fit.to_sitk()
    assert tx.GetDimension() == 2
    assert_allclose(tx.TransformPoint(fixed[0].tolist()), fit.transform_points(fixed[0]), atol=1e-9)
    assert np.isfinite(fit.expected_tre_mm([0.0, 0.0]))


def test_projection_and_2d_registration_against_truth(study):
    """Project the MRI along z; a 2-D MPI point set rotated about z registers onto it."""
    from mpi_viewer.geometry.volume import Volume, image_from_array

    arr = np.zeros((10, 12, 14), dtype=np.float32)
    arr[7, 3, 5] = 100.0
    spacing, origin = (0.5, 0.6, 0.7), (10.0, -5.0, 2.0)
    vol = Volume(image=image_from_array(arr, spacing_mm=spacing, origin_mm=origin), modality="MRI")
    p = vol.index_to_physical([[7, 3, 5]])[0]
    for axis in ("x", "y", "z"):
        proj = project(vol, axis, method="max")
        assert proj.ndim == 2
        peak = np.unravel_index(np.argmax(proj.array), proj.shape)
        assert_allclose(proj.index_to_physical([peak])[0], project_points(p, axis), atol=1e-9)
    summed = project(vol, "y", method="sum")
    assert summed.array.sum() * np.prod(summed.spacing_mm) == pytest.approx(
        100.0 * np.prod(spacing)
    )
    # an oblique MRI: the projection keeps the physical position of a bright fiducial well
    mri = make_demo_study(**OBLIQUE).mri
    proj = project(mri, "z", method="max")
    assert np.allclose(proj.direction, np.eye(2))
    fid = make_demo_study(**OBLIQUE).truth["fiducials"][0]["mri_mm"]
    val_at = proj.array[
        tuple(np.round(proj.physical_to_index(project_points(fid, "z"))[0]).astype(int))
    ]
    assert val_at > 0.8 * 1100  # fiducial wells are 1100 a.u. in the demo MRI
    # 2-D landmark registration between projections along z of an MPI rotated about z only
    r2 = rotation_matrix((0, 0, 8.0))
    m, t, names, fx, mv, *_ = _truth(study)
    mpi_pts = fx @ r2.T + [2.0, -3.0, 1.0]
    fit = fit_landmarks(project_points(fx, "z"), project_points(mpi_pts, "z"), names=names)
    assert_allclose(fit.matrix, r2[:2, :2], atol=1e-9)
    assert_allclose(fit.translation, [2.0, -3.0], atol=1e-9)


# -- intensity refinement ---------------------------------------------------------------------
def _ct_truth(s):
    p = s.truth["poses_mold_to_scanner"]
    rm, tm = np.asarray(p["mri"]["matrix"]), np.asarray(p["mri"]["translation"])
    rc, tc = np.asarray(p["ct"]["matrix"]), np.asarray(p["ct"]["translation"])
    m = rc @ rm.T
    return m, tc - m @ tm  # MRI (fixed) → CT (moving)


def test_refine_intensity_ct_to_mri_improves_a_perturbed_start(study):
    m, t = _ct_truth(study)
    targets = np.array(
        [f["mri_mm"] for f in study.truth["fiducials"]]
        + [s["mri_mm"] for s in study.truth["sources"]]
    )

    def error(mat, tr):
        return np.linalg.norm(targets @ mat.T + tr - (targets @ m.T + t), axis=1).max()

    m0 = rotation_matrix((2.0, -3.0, 2.0)) @ m
    t0 = t + [2.0, -1.5, 1.0]
    assert error(m0, t0) > 3.0
    calls = []
    tx = refine_intensity(
        study.mri,
        study.ct,
        (m0, t0),
        working_spacing_mm=0.6,
        shrink_factors=(2, 1),
        smoothing_sigmas_vox=(1.0, 0.0),
        progress=lambda f, msg: calls.append((f, msg)),
    )
    assert error(*transform_to_matrix(tx)) < 0.5
    fractions = [f for f, _ in calls]
    assert calls and all(0.0 <= f <= 1.0 for f in fractions) and fractions[-1] == 1.0


def test_refine_intensity_can_be_cancelled(study):
    m, t = _ct_truth(study)
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) >= 3

    with pytest.raises(CancelledError):
        refine_intensity(
            study.mri,
            study.ct,
            (m, t),
            working_spacing_mm=1.0,
            shrink_factors=(2, 1),
            smoothing_sigmas_vox=(1.0, 0.0),
            should_stop=should_stop,
        )
    assert len(polls) <= 4  # stopped at once, not after the remaining iterations and levels


def test_fit_pointsets_pairs_by_name_and_reports_unpaired(study):
    from mpi_viewer.registration.landmarks import fit_pointsets

    m, t, names, fx, mv, *_ = _truth(study)
    fixed = PointSet(names, fx)
    moving = PointSet(names[::-1][:-1], mv[::-1][:-1])  # reversed order, M1 missing
    fit = fit_pointsets(fixed, moving, RegistrationParams(model="rigid", exclude=["M2"]))
    assert fit.names == names[1:] and fit.used.tolist() == [False] + [True] * 5
    assert_allclose(fit.matrix, m, atol=1e-9)
    assert any("M1" in w for w in fit.warnings)
    with pytest.raises(InputError, match="M1"):
        fit_pointsets(fixed, moving, strict=True)
