"""Fiducial candidates in one image (private; the public door is :mod:`mpi_viewer.registration.molds`).

Two detectors, both in physical units so anisotropic voxels are handled:

- **hot spots** (MPI): local maxima of a lightly smoothed image above a noise
  threshold, each located by the weighted centroid of the voxels above half its
  maximum (the half-maximum convention of Sehl et al., Tomography 2020,
  doi:10.18383/j.tom.2020.00043);
- **spheres** (MRI, CT): scale-normalised Laplacian-of-Gaussian blob detector at
  σ = r/√3, the scale whose response peaks for a sphere of radius r (Lindeberg,
  Int. J. Comput. Vis. 30 (1998) 79, doi:10.1023/A:1008045108935), run on a
  block-averaged copy of the image for speed, then refined on the full-resolution
  image by the centroid of the voxels above the level halfway between the sphere
  and its surroundings.
"""

from __future__ import annotations

import math

import numpy as np

from mpi_viewer.geometry.volume import Volume

#: Candidates whose measured size is off by more than this factor from the well are dropped.
SIZE_FACTOR = 2.0


def _robust_sd(a: np.ndarray, rng_seed: int = 0, n: int = 200_000) -> float:
    flat = a.ravel()
    if flat.size > n:
        idx = np.random.default_rng(rng_seed).integers(0, flat.size, n)
        flat = flat[idx]
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 1.0
    from scipy.stats import median_abs_deviation

    sd = float(median_abs_deviation(flat, scale="normal"))
    if sd <= 0:
        sd = float(np.std(flat)) or 1.0
    return sd


def _local_maxima(score: np.ndarray, radius_vox, threshold: float, limit: int) -> np.ndarray:
    """(k, 3) integer indices (z, y, x) of local maxima above threshold, strongest first."""
    from scipy import ndimage as ndi

    size = [2 * max(1, int(round(r))) + 1 for r in radius_vox]
    mx = ndi.maximum_filter(score, size=size, mode="nearest")  # separable: fast
    peaks = np.argwhere((score == mx) & (score > threshold))
    if len(peaks) == 0:
        return peaks.reshape(0, 3)
    vals = score[tuple(peaks.T)]
    order = np.argsort(-vals, kind="stable")
    return peaks[order[: 4 * limit]]


def _laplacian_of_gaussian_mm(a: np.ndarray, sigma_mm: float, spacing_zyx) -> np.ndarray:
    """Laplacian of Gaussian in physical units (1/mm²): σ in mm, anisotropic voxels allowed."""
    from scipy import ndimage as ndi

    sp = np.asarray(spacing_zyx, dtype=float)
    sig = sigma_mm / sp
    out = np.zeros(a.shape, dtype=np.float32)
    for ax in range(a.ndim):
        order = [0] * a.ndim
        order[ax] = 2
        out += ndi.gaussian_filter(
            a, sig, order=order, mode="nearest", output=np.float32
        ) / np.float32(sp[ax] ** 2)
    return out


def _box(centre_idx, half_vox, shape):
    lo = [max(0, int(math.floor(c - h))) for c, h in zip(centre_idx, half_vox, strict=True)]
    hi = [
        min(s, int(math.ceil(c + h)) + 1)
        for c, h, s in zip(centre_idx, half_vox, shape, strict=True)
    ]
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), np.asarray(lo)


def _level_centroid(sub: np.ndarray, seed_local, level: float, cap: float | None = None):
    """Weighted centroid (local z, y, x) of the component above ``level`` holding ``seed_local``."""
    from scipy import ndimage as ndi

    mask = sub > level
    seed = tuple(int(v) for v in np.clip(np.round(seed_local), 0, np.asarray(sub.shape) - 1))
    if not mask[seed]:
        return None, 0
    lab, _ = ndi.label(mask)
    comp = lab == lab[seed]
    w = sub - level
    if cap is not None:
        w = np.minimum(w, cap)
    w = np.where(comp, w, 0.0)
    tot = w.sum()
    if tot <= 0:
        return None, 0
    grid = np.indices(sub.shape, dtype=float)
    c = np.array([(g * w).sum() / tot for g in grid])
    return c, int(comp.sum())


def detect_hot_spots(vol: Volume, diameter_mm: float, max_candidates: int, *, snr: float = 6.0):
    """MPI hot spots: positions (n, 3) mm xyz, peak scores (a.u.), half-max sizes (mm)."""
    from scipy import ndimage as ndi

    a = np.asarray(vol.array, dtype=np.float32)
    sp_zyx = np.asarray(vol.spacing_mm, dtype=float)[::-1]
    sigma_mm = max(0.25 * diameter_mm, 0.5 * float(sp_zyx.min()))
    sm = ndi.gaussian_filter(a, sigma=sigma_mm / sp_zyx, mode="nearest")
    sd = _robust_sd(sm)
    radius_mm = 0.5 * diameter_mm + 0.5
    peaks = _local_maxima(sm, radius_mm / sp_zyx, snr * sd + float(np.median(sm)), max_candidates)
    half_box = (0.5 * diameter_mm + 4.0) / sp_zyx
    pos, scores, sizes = [], [], []
    for pk in peaks:
        sl, lo = _box(pk, half_box, a.shape)
        sub = sm[sl]
        peak = float(sm[tuple(pk)])
        c, nvox = _level_centroid(sub, pk - lo, 0.5 * peak)
        if c is None:
            continue
        p = vol.index_to_physical(c + lo)[0]
        if pos and np.min(np.linalg.norm(np.asarray(pos) - p, axis=1)) < 0.5 * diameter_mm:
            continue
        pos.append(p)
        scores.append(peak)
        sizes.append((6.0 * nvox * vol.voxel_volume_mm / math.pi) ** (1 / 3))
        if len(pos) >= max_candidates:
            break
    return _pack(pos, scores, sizes)


def detect_spheres(
    vol: Volume, diameter_mm: float, max_candidates: int, *, bright: bool = True, snr: float = 5.0
):
    """Bright (or dark) spheres of a given diameter: positions (n, 3) mm, LoG scores, sizes (mm)."""
    import SimpleITK as sitk

    radius = 0.5 * diameter_mm
    sigma_mm = radius / math.sqrt(3.0)
    sp = np.asarray(vol.spacing_mm, dtype=float)
    target = radius / 2.5
    factors = [max(1, int(round(target / s + 1e-6))) for s in sp]
    img = sitk.Cast(vol.image, sitk.sitkFloat32)
    work = sitk.BinShrink(img, factors) if max(factors) > 1 else img
    wsp_zyx = np.asarray(work.GetSpacing(), dtype=float)[::-1]
    log = _laplacian_of_gaussian_mm(sitk.GetArrayFromImage(work), sigma_mm, wsp_zyx)
    resp = log * np.float32(-(sigma_mm**2) if bright else sigma_mm**2)
    sd = _robust_sd(resp)
    peaks = _local_maxima(resp, radius / wsp_zyx, snr * sd, max_candidates)

    # refine on the full-resolution image
    a = np.asarray(vol.array, dtype=np.float32)
    if not bright:
        a = -a
    sp_zyx = sp[::-1]
    half_box = (radius + 2.0 + float(wsp_zyx.max())) / sp_zyx
    pos, scores, sizes = [], [], []
    w_origin = np.asarray(work.GetOrigin())
    w_dir = np.asarray(work.GetDirection()).reshape(3, 3)
    w_sp = np.asarray(work.GetSpacing())
    for pk in peaks:
        p0 = w_origin + w_dir @ (w_sp * pk[::-1].astype(float))
        centre = vol.physical_to_index(p0)[0]
        ok = True
        for _ in range(2):
            sl, lo = _box(centre, half_box, a.shape)
            sub = a[sl]
            rel = [np.arange(s.start, s.stop) - c for s, c in zip(sl, centre, strict=True)]
            r2 = sum(
                np.meshgrid(
                    *[(v * s) ** 2 for v, s in zip(rel, sp_zyx, strict=True)], indexing="ij"
                )
            )
            inner = sub[r2 <= (0.5 * radius) ** 2]
            shell = sub[(r2 >= (radius + 0.7) ** 2) & (r2 <= (radius + 1.7) ** 2)]
            if inner.size == 0 or shell.size == 0:
                ok = False
                break
            fg, bg = float(np.median(inner)), float(np.median(shell))
            if fg <= bg:
                ok = False
                break
            c, nvox = _level_centroid(sub, centre - lo, 0.5 * (fg + bg), cap=fg - 0.5 * (fg + bg))
            if c is None:
                ok = False
                break
            centre = c + lo
        if not ok:
            continue
        size = (6.0 * nvox * vol.voxel_volume_mm / math.pi) ** (1 / 3)
        if not (diameter_mm / SIZE_FACTOR <= size <= diameter_mm * SIZE_FACTOR):
            continue
        p = vol.index_to_physical(centre)[0]
        if pos and np.min(np.linalg.norm(np.asarray(pos) - p, axis=1)) < radius:
            continue
        pos.append(p)
        scores.append(float(resp[tuple(pk)]))
        sizes.append(size)
        if len(pos) >= max_candidates:
            break
    return _pack(pos, scores, sizes)


def _pack(pos, scores, sizes):
    if not pos:
        return np.zeros((0, 3)), np.zeros(0), np.zeros(0)
    return (
        np.asarray(pos, dtype=float),
        np.asarray(scores, dtype=float),
        np.asarray(sizes, dtype=float),
    )
