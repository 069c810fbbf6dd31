"""Intensity-based registration refinement (private; see :func:`mpi_viewer.registration.refine_intensity`).

SimpleITK ImageRegistrationMethod with Mattes mutual information (Mattes et al.,
IEEE TMI 22(1):120-128, 2003, doi:10.1109/TMI.2003.809072), a regular-step gradient
descent and a multi-resolution pyramid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from mpi_viewer.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from mpi_viewer.geometry.volume import Volume
from mpi_viewer.errors import CancelledError
from mpi_viewer.geometry.transform import Transform


def refine_intensity(
    fixed: Volume,
    moving: Volume,
    initial_transform,
    *,
    model: str = "rigid",
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    shrink_factors: Sequence[int] = (4, 2, 1),
    smoothing_sigmas_vox: Sequence[float] = (2.0, 1.0, 0.0),
    working_spacing_mm: float | None = None,
    iterations: int = 100,
    sampling_fraction: float = 0.1,
    seed: int = 1,
) -> sitk.Transform:
    """Refine a fixed → moving transform by Mattes mutual information (multi-resolution).

    Meant for CT ↔ MRI and MPI ↔ MPI time points, after a landmark fit.

    Parameters
    ----------
    fixed, moving : Volume
        3-D images.
    initial_transform : LandmarkFit, SimpleITK.Transform or (matrix, translation)
        Starting fixed → moving transform (e.g. a landmark fit).
    model : {"rigid", "affine"}
        Transform optimised (Euler3D or Affine).
    progress : callable(fraction, message), optional
        Called at each optimiser iteration with the fraction done (0..1).
    should_stop : callable() -> bool, optional
        Checked at each iteration; when it returns True the registration stops and
        :class:`~mpi_viewer.errors.CancelledError` is raised.
    shrink_factors, smoothing_sigmas_vox : sequence
        The multi-resolution pyramid: shrink factor and Gaussian sigma (voxels) per level.
    working_spacing_mm : float, optional
        Smooth and resample both images to this isotropic spacing (mm) first, for
        speed (e.g. 1.0 for a 0.3 mm MRI); native grids by default.
    iterations : int
        Optimiser iterations per level at most.
    sampling_fraction : float
        Fraction of fixed-image voxels sampled (randomly, with ``seed``) by the metric.

    Returns
    -------
    SimpleITK.Transform
        The refined fixed → moving transform.
    """
    from mpi_viewer.registration import intensity as _intensity

    if fixed.ndim != 3 or moving.ndim != 3:
        raise InputError("intensity refinement needs two 3-D images")
    m, t = Transform.from_any(initial_transform)
    if m.shape != (3, 3):
        raise InputError("intensity refinement needs a 3-D initial transform")
    return _intensity.refine(
        fixed.image,
        moving.image,
        m,
        t,
        model=model,
        shrink_factors=shrink_factors,
        smoothing_sigmas_vox=smoothing_sigmas_vox,
        working_spacing_mm=working_spacing_mm,
        iterations=iterations,
        sampling_fraction=sampling_fraction,
        seed=seed,
        progress=progress,
        should_stop=should_stop,
    )


def nearest_rotation(m: np.ndarray) -> np.ndarray:
    """The rotation closest to ``m`` in the Frobenius norm (polar decomposition, det +1)."""
    u, _, vt = np.linalg.svd(m)
    d = np.ones(m.shape[0])
    if np.linalg.det(u @ vt) < 0:
        d[-1] = -1.0
    return u @ np.diag(d) @ vt


def _working_image(image, spacing_mm: float | None):
    """Float32 image, optionally smoothed and resampled to an isotropic spacing (mm)."""
    import SimpleITK as sitk

    img = sitk.Cast(image, sitk.sitkFloat32)
    if spacing_mm is None:
        return img
    sp = np.asarray(img.GetSpacing(), dtype=float)
    if np.all(sp >= spacing_mm * 0.999):
        return img
    sigma = [max(0.0, float(np.sqrt(max(spacing_mm**2 - s**2, 0.0)) / 2.355)) for s in sp]
    smooth = sitk.SmoothingRecursiveGaussian(img, sigma) if max(sigma) > 0 else img
    size = [max(2, int(round(n * s / spacing_mm))) for n, s in zip(img.GetSize(), sp, strict=True)]
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing([float(spacing_mm)] * img.GetDimension())
    ref.SetOrigin(img.GetOrigin())
    ref.SetDirection(img.GetDirection())
    return sitk.Resample(
        smooth,
        ref,
        sitk.Transform(),
        sitk.sitkLinear,
        float(np.min(sitk.GetArrayViewFromImage(img))),
    )


def refine(
    fixed_image,
    moving_image,
    matrix: np.ndarray,
    translation: np.ndarray,
    *,
    model: str = "rigid",
    shrink_factors: Sequence[int] = (4, 2, 1),
    smoothing_sigmas_vox: Sequence[float] = (2.0, 1.0, 0.0),
    working_spacing_mm: float | None = None,
    iterations: int = 100,
    sampling_fraction: float = 0.1,
    histogram_bins: int = 50,
    seed: int = 1,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
):
    import SimpleITK as sitk

    if fixed_image.GetDimension() != 3 or moving_image.GetDimension() != 3:
        raise InputError("intensity refinement needs two 3-D images")
    if len(shrink_factors) != len(smoothing_sigmas_vox):
        raise InputError("shrink_factors and smoothing_sigmas_vox must have the same length")
    f = _working_image(fixed_image, working_spacing_mm)
    m = _working_image(moving_image, working_spacing_mm)

    centre = np.asarray(
        f.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in f.GetSize()]), dtype=float
    )
    if model == "rigid":
        r = nearest_rotation(matrix)
        tx = sitk.Euler3DTransform()
        tx.SetCenter(centre.tolist())
        tx.SetMatrix(r.ravel().tolist(), 1e-6)
        # T(x) = R(x − c) + c + t'  ==  R x + t   →   t' = t + R c − c
        tx.SetTranslation((translation + r @ centre - centre).tolist())
    elif model == "affine":
        tx = sitk.AffineTransform(3)
        tx.SetCenter(centre.tolist())
        tx.SetMatrix(np.asarray(matrix, dtype=float).ravel().tolist())
        tx.SetTranslation((translation + matrix @ centre - centre).tolist())
    else:
        raise InputError(f"intensity refinement model {model!r}: expected 'rigid' or 'affine'")

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(histogram_bins))
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(float(sampling_fraction), int(seed))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0,
        minStep=1e-4,
        numberOfIterations=int(iterations),
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([int(s) for s in shrink_factors])
    reg.SetSmoothingSigmasPerLevel([float(s) for s in smoothing_sigmas_vox])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(tx, inPlace=True)

    n_levels = len(shrink_factors)
    state = {"cancelled": False, "error": None}

    def on_iteration():
        try:
            if should_stop is not None and should_stop():
                state["cancelled"] = True
                reg.StopRegistration()
                return
            if progress is not None:
                level = reg.GetCurrentLevel()
                it = reg.GetOptimizerIteration()
                frac = min(1.0, (level + min(it, iterations) / iterations) / n_levels)
                progress(
                    frac,
                    f"level {level + 1}/{n_levels}, iteration {it}, "
                    f"metric {reg.GetMetricValue():.4f}",
                )
        except Exception as exc:  # noqa: BLE001 - re-raised after Execute
            state["error"] = exc
            reg.StopRegistration()

    reg.AddCommand(sitk.sitkIterationEvent, on_iteration)
    try:
        reg.Execute(f, m)
    except RuntimeError as exc:
        if state["cancelled"]:
            raise CancelledError("intensity registration cancelled") from None
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else "failed"
        raise InputError(f"intensity registration failed: {msg} (do the images overlap?)") from None
    if state["error"] is not None:
        raise state["error"]
    if state["cancelled"]:
        raise CancelledError("intensity registration cancelled")
    if progress is not None:
        progress(1.0, f"done: {reg.GetOptimizerStopConditionDescription()}")
    return tx
