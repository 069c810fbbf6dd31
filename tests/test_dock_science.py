"""The science the docks used to hold, now in the core, against known truth.

- :func:`mpi_viewer.registration.review.review_landmarks`: the demo's true fiducials
  give its known transform; the warnings name the pair that is off, the unpaired and
  the outside fiducials; too few pairs is a state, not an error.
- :mod:`mpi_viewer.geometry.display_grid`: an array placed by a known oblique affine,
  resampled world-aligned, puts a bright voxel where the affine says.
- :mod:`mpi_viewer.calibration.describe`: the plot data sit on the fitted line; warnings
  common to every ROI are said once.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from mpi_viewer.calibration.describe import calibration_plot, iron_rows, split_warnings
from mpi_viewer.geometry.display_grid import (
    is_axis_aligned,
    resample_world_aligned,
    world_aligned_grid,
)
from mpi_viewer.registration.review import review_landmarks


def _fiducials(study):
    fids = [f for f in study.truth["fiducials"] if f["in_mpi"]]
    return (
        [f["name"] for f in fids],
        np.array([f["mri_mm"] for f in fids], dtype=float),
        np.array([f["mpi_mm"] for f in fids], dtype=float),
    )


def test_review_recovers_the_demo_transform_and_names_what_is_wrong(study):
    names, fixed, moving = _fiducials(study)
    truth = study.truth["transform_fixed_to_moving"]
    review = review_landmarks(names, fixed, moving, model="rigid", fre_tolerance_mm=1.0)
    assert review.fit is not None and not review.too_few and review.warnings == []
    assert_allclose(review.fit.matrix, truth["matrix"], atol=1e-6)
    assert_allclose(review.fit.translation, truth["translation"], atol=1e-5)
    assert review.used.all()

    # one moving fiducial 4 mm off: named above the tolerance; excluded, the truth is back
    off = moving.copy()
    off[0, 0] += 4.0
    review = review_landmarks(names, fixed, off, model="rigid", fre_tolerance_mm=1.0)
    assert any(w.startswith("FRE above 1.00 mm") and names[0] in w for w in review.warnings)
    review = review_landmarks(names, fixed, off, excluded=[names[0]], fre_tolerance_mm=1.0)
    assert not review.used[0] and review.used[1:].all()
    assert_allclose(review.fit.matrix, truth["matrix"], atol=1e-6)
    assert review.fit.residuals_mm[0] == pytest.approx(4.0, abs=0.5)  # still shown

    # unpaired and outside fiducials are named; images by the names given
    review = review_landmarks(
        names,
        fixed,
        moving,
        unpaired=(["extra"], []),
        fixed_image=study.mri,
        moving_image=study.mpi,
        image_names=("MRI", "MPI"),
    )
    assert review.warnings[0] == "unpaired: extra (fixed only)"
    far = fixed.copy()
    far[1] += 1000.0
    review = review_landmarks(names, far, moving, fixed_image=study.mri, image_names=("MRI", "MPI"))
    assert f"{names[1]} outside the fixed image 'MRI'" in review.warnings

    # two pairs: too few for a rigid fit in 3-D, said as a warning, no fit
    review = review_landmarks(names[:2], fixed[:2], moving[:2])
    assert review.fit is None and review.too_few and review.warnings


def test_world_aligned_resampling_puts_a_voxel_where_the_affine_says():
    rng = np.random.default_rng(3)
    data = np.zeros((20, 24, 28), np.float32)
    data[7, 11, 13] = 100.0
    angle = np.deg2rad(10.0)  # a rotation about z (napari axis 0) by 10 degrees
    c, s = np.cos(angle), np.sin(angle)
    lin = np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]]) @ np.diag([2.0, 1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = lin
    affine[:3, 3] = rng.uniform(-5, 5, 3)
    assert not is_axis_aligned(lin) and is_axis_aligned(np.diag([2.0, 1.0, 1.0])[[1, 0, 2]])
    spacing, origin, shape = world_aligned_grid(affine, data.shape)
    assert_allclose(spacing, [2.0, 1.0, 1.0])
    out, spacing2, origin2 = resample_world_aligned(data, affine, labels=False, cval=np.nan)
    assert out.shape == shape and out.dtype == np.float32
    assert_allclose(spacing2, spacing) and assert_allclose(origin2, origin)
    truth_world = lin @ np.array([7.0, 11.0, 13.0]) + affine[:3, 3]
    peak = np.array(np.unravel_index(np.nanargmax(out), out.shape), dtype=float)
    assert_allclose(origin + peak * spacing, truth_world, atol=1.0)  # within a voxel
    labels, *_ = resample_world_aligned((data > 0).astype(np.uint8), affine, labels=True)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1} and labels.sum() >= 1


def test_calibration_plot_and_iron_table_from_a_known_line():
    from mpi_viewer.calibration.phantoms import CalibrationPoint
    from mpi_viewer.calibration.record import Calibration

    slope, intercept = 250.0, 12.0  # a.u.·mm³ per µg, a.u.·mm³
    amounts = [1.0, 2.0, 4.0, 8.0, 16.0]
    noise = [0.5, -0.8, 0.3, 0.6, -0.4]
    points = [
        CalibrationPoint(f"v{i}", slope * a + intercept + e, iron_ug=a)
        for i, (a, e) in enumerate(zip(amounts, noise, strict=True))
    ]
    cal = Calibration.from_points(points=points, name="known")
    plot = calibration_plot(cal)
    assert_allclose(plot.x, amounts) and plot.names == [p.name for p in points]
    assert_allclose(plot.line_y, cal.fit.predict(plot.line_x))
    assert cal.fit.slope == pytest.approx(slope, rel=1e-2)
    assert_allclose(plot.residuals, plot.y - cal.fit.predict(plot.x))
    assert np.all(plot.band_lo < plot.line_y) and np.all(plot.band_hi > plot.line_y)
    assert plot.line_x.max() == pytest.approx(16.0 * 1.08)

    common, own = split_warnings([["solution on cells", "a"], ["solution on cells"]])
    assert common == ["solution on cells"] and own == [["a"], []]
    assert split_warnings([["only"]]) == ([], [["only"]])

    class R:  # the fields of a QuantityResult the table shows
        def __init__(self, name, iron, warnings):
            self.name, self.signal, self.iron_ug = name, slope * iron + intercept, iron
            self.iron_ci_low_ug, self.iron_ci_high_ug = iron - 0.1, iron + 0.1
            self.cells = self.cells_ci_low = self.cells_ci_high = None
            self.below_lod, self.warnings = False, warnings

    headers, rows, common = iron_rows([R("a", 3.0, ["w", "x"]), R("b", 5.0, ["w"])], "iron")
    assert headers[2] == "iron (µg Fe)" and headers[-1] == "warnings"
    assert common == ["w"] and rows[0][0] == "a" and rows[0][2] == "3" and rows[0][6] == "x"
    assert rows[1][6] == "" and rows[1][5] == "no"


def test_from_placed_frame_composes_with_the_anatomy_placement():
    from mpi_viewer.geometry.axes import affine_xyz_to_zyx, xyz_to_zyx
    from mpi_viewer.geometry.compose import from_placed_frame

    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    m, t = q * 1.1, rng.uniform(-20, 20, 3)  # fixed physical → moving physical (x, y, z)
    g_m, g_t = np.linalg.qr(rng.normal(size=(3, 3)))[0], rng.uniform(-5, 5, 3)
    g = affine_xyz_to_zyx(g_m, g_t)  # fixed physical → world, napari (z, y, x)
    m2, t2 = from_placed_frame(m, t, g)
    p = rng.uniform(-30, 30, (5, 3))  # fixed physical points (x, y, z)
    world_xyz = p @ g_m.T + g_t
    assert_allclose(world_xyz @ m2.T + t2, p @ m.T + t, atol=1e-9)  # the same moving points
    assert_allclose(xyz_to_zyx(world_xyz), (np.c_[xyz_to_zyx(p), np.ones(5)] @ g.T)[:, :3])
    m3, t3 = from_placed_frame(m, t, np.eye(4))
    assert_allclose(m3, m)
    assert_allclose(t3, t)  # identity placement: unchanged
