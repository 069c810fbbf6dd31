"""Nearby sources in one region: find their peaks and model them.

A weak source beside a strong one shares its half-maximum region with it, often
without a maximum of its own (Sehl et al., Tomography 2020, fig. 5,
doi:10.18383/j.tom.2020.00043). Here:

1. :func:`find_peaks` — the region's maxima whose dynamic (height above the saddle to
   a higher peak) exceeds ``h`` (morphological h-maxima of the smoothed signal); the
   caller adds the clicked source's own peak, found on the curvature (negative
   Laplacian of Gaussian) when it is only a shoulder;
2. :func:`fit_gaussians` — a sum of axis-aligned Gaussians (the point-spread model,
   one per peak, own amplitude, centre and widths) plus a constant background,
   fitted by least squares (analytic Jacobian) to the region's neighbourhood;
3. the caller subtracts the *other* peaks' models (their tails inside this source's
   region), thresholds what is left from the source's own peak, and gives voxels in a
   neighbour's own core, where the neighbour's model dominates, to the neighbour, so
   neighbouring ROIs never overlap.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def find_peaks(
    smoothed: np.ndarray, region: np.ndarray, h: float, *, connectivity: int
) -> list[tuple[int, ...]]:
    """Integer positions (box index) of the region's maxima with dynamic ≥ ``h``, brightest first."""
    from scipy import ndimage as ndi
    from skimage.morphology import h_maxima

    if not region.any():
        return []
    floor = float(smoothed[region].min())
    img = np.where(region, smoothed, floor).astype(np.float64)
    img -= floor
    if h <= 0:
        h = 1e-6 * float(img.max() or 1.0)
    footprint = ndi.generate_binary_structure(img.ndim, connectivity)
    hm = h_maxima(img, h, footprint=footprint).astype(bool) & region
    lab, n = ndi.label(hm, structure=footprint)
    peaks = []
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        sub = np.where(lab[sl] == i, img[sl], -np.inf)
        loc = np.unravel_index(int(np.argmax(sub)), sub.shape)
        peaks.append(tuple(int(s.start + j) for s, j in zip(sl, loc, strict=True)))
    peaks.sort(key=lambda p: -img[p])
    return peaks


def _model(params: np.ndarray, coords: list[np.ndarray], n: int, d: int) -> np.ndarray:
    out = np.full(coords[0].shape, params[-1])
    for k in range(n):
        p = params[k * (1 + 2 * d) : (k + 1) * (1 + 2 * d)]
        e = np.zeros(coords[0].shape)
        for a in range(d):
            e += ((coords[a] - p[1 + a]) / p[1 + d + a]) ** 2
        out += p[0] * np.exp(-0.5 * e)
    return out


def _jac(params: np.ndarray, coords: list[np.ndarray], n: int, d: int) -> np.ndarray:
    npar = 1 + 2 * d
    jac = np.empty((coords[0].size, n * npar + 1))
    jac[:, -1] = 1.0
    for k in range(n):
        p = params[k * npar : (k + 1) * npar]
        e = np.zeros(coords[0].shape)
        for a in range(d):
            e += ((coords[a] - p[1 + a]) / p[1 + d + a]) ** 2
        base = np.exp(-0.5 * e)
        g = p[0] * base
        jac[:, k * npar] = base
        for a in range(d):
            u = coords[a] - p[1 + a]
            s2 = p[1 + d + a] ** 2
            jac[:, k * npar + 1 + a] = g * u / s2
            jac[:, k * npar + 1 + d + a] = g * u**2 / (s2 * p[1 + d + a])
    return jac


#: At most this many peaks (the own and the brightest others) and voxels enter a fit.
MAX_FIT_PEAKS = 6
MAX_FIT_VOXELS = 20_000


def fit_gaussians(
    sub: np.ndarray, peaks: list[tuple[int, ...]], fit_mask: np.ndarray, sigma0_vox: np.ndarray
) -> tuple[list[np.ndarray], list[float], list[np.ndarray]]:
    """Fit one Gaussian per peak (+ a constant) to ``sub`` where ``fit_mask``.

    Returns
    -------
    models : list of ndarray
        Each peak's model evaluated on the whole box (without the constant), float32.
    amplitudes : list of float
        Each peak's fitted amplitude (a.u.).
    params : list of ndarray
        Each peak's model parameters ``(amplitude a.u., centre (d, box index),
        sigma (d, voxels))`` (numpy axis order), for :func:`gaussian_on_box`.
    rms : float
        Root-mean-square residual over ``fit_mask`` (a.u.).
    """
    from scipy.optimize import least_squares

    d = sub.ndim
    n = len(peaks)
    pts = np.nonzero(fit_mask)
    if pts[0].size > MAX_FIT_VOXELS:
        step = pts[0].size // MAX_FIT_VOXELS + 1
        pts = tuple(p[::step] for p in pts)
    coords = [p.astype(np.float64) for p in pts]
    y = sub[pts].astype(np.float64)
    x0, lo, hi = [], [], []
    shape = np.asarray(sub.shape, dtype=float)
    for p in peaks:
        amp = max(float(sub[p]), 1e-9)
        x0 += [amp, *map(float, p), *map(float, sigma0_vox)]
        lo += [0.0, *(np.asarray(p) - 3.0), *([0.3] * d)]
        hi += [10.0 * amp, *(np.asarray(p) + 3.0), *(np.maximum(shape, 3.0))]
    x0.append(0.0)
    scale = max(float(np.max(np.abs(y))), 1e-9)
    lo.append(-scale)
    hi.append(scale)
    x0 = np.clip(np.asarray(x0), np.asarray(lo) + 1e-9, np.asarray(hi) - 1e-9)
    res = least_squares(
        lambda q: _model(q, coords, n, d) - y,
        x0,
        jac=lambda q: _jac(q, coords, n, d),
        bounds=(lo, hi),
        x_scale="jac",
        max_nfev=100,
        tr_solver="lsmr",  # no dense SVD: fast and the same whatever the BLAS threads
    )
    q = res.x
    full = [g.astype(np.float64) for g in np.indices(sub.shape)]
    models, params = [], []
    for k in range(n):
        qk = np.concatenate([q[k * (1 + 2 * d) : (k + 1) * (1 + 2 * d)], [0.0]])
        models.append(_model(qk, full, 1, d).astype(np.float32))
        params.append(np.asarray(qk[:-1], dtype=np.float64))
    rms = float(np.sqrt(np.mean(res.fun**2)))
    return models, [float(q[k * (1 + 2 * d)]) for k in range(n)], params, rms


def fit_sources(sub, peaks, fit_mask, sigma0_vox, psf=None):
    """Fit one point-source model per peak (+ a constant): the measured PSF when given
    (:func:`mpi_viewer.roi._psf.fit_template`), else axis-aligned Gaussians.

    Returns
    -------
    models : list of ndarray
        Each peak's model on the whole box (float32, without the constant).
    amplitudes : list of float
    points : list of PointModel
        Centres in the box's index frame.
    rms : float
        Root-mean-square residual of the fit over ``fit_mask`` (a.u.): how well point
        sources explain the region (see :func:`explained`).
    """
    from mpi_viewer.roi._memo import owned, remembered
    from mpi_viewer.roi._psf import PointModel, fit_template

    if psf is not None:
        # a measured template's fits are kept with it, keyed by their exact inputs (the
        # same region fitted again when its seeds are measured again: every click)
        key = _fit_key(sub, peaks, fit_mask)

        def fit():
            models, amps, points, rms = fit_template(sub, peaks, fit_mask, psf)
            for m in models:
                m.setflags(write=False)  # shared by every caller: never changed in place
            # kept without their PSF: a PSF → its cache → point → PSF loop is freed only
            # by the cycle collector, which the GUI's freeze policy defers
            return models, amps, [dataclasses.replace(pm, psf=None) for pm in points], rms

        cache = owned(psf, "_source_fits")
        models, amps, points, rms = remembered(cache, key, fit, _SOURCE_FITS)
        return list(models), list(amps), [dataclasses.replace(pm, psf=psf) for pm in points], rms
    models, amps, params, rms = fit_gaussians(sub, peaks, fit_mask, sigma0_vox)
    d = sub.ndim
    points = [
        PointModel(
            float(p[0]), np.asarray(p[1 : 1 + d], dtype=np.float64), sigma=np.asarray(p[1 + d :])
        )
        for p in params
    ]
    return models, amps, points, rms


#: Region fits kept per measured PSF (each holds its models on the box: ~0.2–1 MB).
_SOURCE_FITS = 32


def _fit_key(sub, peaks, fit_mask) -> tuple:
    """The exact inputs of a template fit: the box's values and shape, the peaks, the mask."""
    import hashlib

    h = hashlib.sha1(np.ascontiguousarray(sub).tobytes())
    h.update(np.packbits(np.ascontiguousarray(fit_mask, dtype=bool)).tobytes())
    return (
        tuple(sub.shape),
        sub.dtype.str,
        tuple(tuple(int(v) for v in p) for p in peaks),
        h.digest(),
    )


#: A point-source model explains a region when its residual RMS is at most this
#: fraction of the region's peak (or 3 noise SDs, whichever is larger).
GOF_FRACTION = 0.05


def explained(rms: float, peak: float, noise: float) -> bool:
    """Whether a point-source fit with residual ``rms`` explains a region of ``peak``."""
    floor = 3.0 * noise if math.isfinite(noise) else 0.0
    return rms <= max(floor, GOF_FRACTION * abs(peak))


def gaussian_on_box(p: np.ndarray, offset, shape) -> np.ndarray:
    """A fitted Gaussian (parameters from :func:`fit_gaussians`) evaluated on another box.

    Parameters
    ----------
    p : ndarray
        ``(amplitude, centre…, sigma…)`` with the centre in the index frame of the box it
        was fitted in (numpy order, voxels).
    offset : sequence of int
        That box's origin minus the new box's origin (voxels, numpy order).
    shape : tuple of int
        The new box's shape.

    Returns
    -------
    ndarray of float32
        The model (a.u.) on the new box, separable (one 1-D profile per axis).
    """
    d = len(shape)
    out = np.full((1,) * d, float(p[0]), dtype=np.float64)
    for a in range(d):
        t = np.arange(shape[a], dtype=np.float64) - (float(p[1 + a]) + float(offset[a]))
        prof = np.exp(-0.5 * (t / float(p[1 + d + a])) ** 2)
        out = out * prof.reshape(tuple(-1 if i == a else 1 for i in range(d)))
    return out.astype(np.float32)
