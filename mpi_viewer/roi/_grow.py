"""Growing ROIs from seeds in a local box (the algorithm behind :mod:`mpi_viewer.roi`).

Everything works on a small float32 copy of the neighbourhood of the seed (the *box*),
which grows until the region stays clear of its edge; the whole volume is never
labelled, thresholded or copied. See :mod:`mpi_viewer.roi` for the methods and their
references.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mpi_viewer.errors import InputError

#: Voxels the region must stay away from the box edge (room for tails and profiles).
_MARGIN = 3


#: Largest box (voxels) before an ROI is declared to leak over the image.
_MAX_BOX_VOXELS = 1 << 24


#: Smoothing (voxels, Gaussian SD) of the signal the climb and the peak search run on.
_SMOOTH_VOX = 1.0


class ResultList(list):
    """A list of ROI results with ``errors``: (seed index, message) of the seeds left out."""

    errors: list[tuple[int, str]]

    def __init__(self, *args):
        super().__init__(*args)
        self.errors = []


# -- noise -----------------------------------------------------------------------------------
#: SD of normal noise per unit of median absolute deviation (the rounded constant the
#: numbers were always computed with; scipy's ``scale="normal"`` is 1.482602…).
MAD_TO_SD = 1.4826


def noise_sd(arr: np.ndarray, *, mask=None, bbox=None) -> float:
    """See :func:`mpi_viewer.roi.estimate_noise_sd`."""
    if mask is not None or bbox is not None:
        if bbox is not None:
            sl = tuple(slice(int(a), int(b)) for a, b in bbox)
            vals = np.asarray(arr[sl], dtype=np.float64).ravel()
        else:
            m = np.asarray(mask, dtype=bool)
            if m.shape != arr.shape:
                raise InputError(f"background mask of shape {m.shape}: the image is {arr.shape}")
            vals = np.asarray(arr[m], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if vals.size < 2:
            raise InputError(
                "background region: fewer than two finite voxels to measure the noise SD"
            )
        sd = float(np.std(vals, ddof=1))
    else:
        step = max(1, int(math.ceil((arr.size / 1e6) ** (1.0 / arr.ndim))))
        vals = np.asarray(arr[(slice(None, None, step),) * arr.ndim], dtype=np.float32).ravel()
        vals = vals[np.isfinite(vals)]
        if vals.size < 2:
            raise InputError("image: too few finite voxels to estimate the noise SD")
        from scipy.stats import median_abs_deviation

        med = np.median(vals)
        sd = MAD_TO_SD * float(median_abs_deviation(vals))
        if (
            sd <= 0
        ):  # mostly constant background (e.g. zero-filled): fall back to the SD below the median
            low = vals[vals <= med]
            sd = float(np.std(low)) if low.size > 1 else 0.0
    if not sd > 0:
        raise InputError("image: no noise spread found (constant background); give the noise SD")
    return sd


# -- box helpers ------------------------------------------------------------------------------
def _box(arr, lo, hi, curve) -> np.ndarray:
    sub = np.array(arr[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))], dtype=np.float32)
    if curve is not None:
        sub = curve(sub)
    return sub


def _smooth(sub: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    if np.isnan(sub).any():
        fill = float(np.nanmin(sub)) if np.isfinite(sub).any() else 0.0
        sub = np.where(np.isnan(sub), fill, sub)
    return gaussian_filter(sub, _SMOOTH_VOX, mode="nearest")


def _structure(d: int, connectivity: str):
    from scipy import ndimage as ndi

    return ndi.generate_binary_structure(d, d if connectivity == "full" else 1)


def _component(mask: np.ndarray, at: tuple[int, ...], structure) -> np.ndarray:
    from scipy import ndimage as ndi

    if not mask[at]:
        out = np.zeros(mask.shape, dtype=bool)
        return out
    lab, _ = ndi.label(mask, structure=structure)
    return lab == lab[at]


# -- climb ----------------------------------------------------------------------------------
def climb(
    arr,
    start: np.ndarray,
    curve,
    spacing_zyx: np.ndarray,
    radius_mm: float,
    seed_text: str,
    field=None,
) -> tuple[int, ...]:
    """Steepest ascent from ``start`` to its local maximum.

    The ascent runs on ``field(box)`` (the lightly smoothed signal by default) in a
    window that follows the climb.
    """
    field = field or _smooth
    shape = np.asarray(arr.shape)
    w = 10
    pos = np.asarray(start, dtype=int)
    for _ in range(200):
        lo = np.maximum(pos - w, 0)
        hi = np.minimum(pos + w + 1, shape)
        sm = field(_box(arr, lo, hi, curve))
        p = pos - lo
        edge_lo = np.where(lo > 0, 4, 0)
        edge_hi = np.where(hi < shape, hi - lo - 5, hi - lo - 1)
        inner = True
        while True:
            nlo = np.maximum(p - 1, 0)
            nhi = np.minimum(p + 2, hi - lo)
            nb = sm[tuple(slice(a, b) for a, b in zip(nlo, nhi, strict=True))]
            q = np.asarray(np.unravel_index(int(np.argmax(nb)), nb.shape)) + nlo
            if not sm[tuple(q)] > sm[tuple(p)]:
                break
            p = q
            if np.any(p < edge_lo) or np.any(p > edge_hi):
                inner = False
                break
        pos = lo + p
        if np.linalg.norm((pos - start) * spacing_zyx) > radius_mm:
            raise InputError(
                f"seed {seed_text}: no local maximum within {radius_mm:g} mm "
                "(click closer to the hot spot or raise the search radius)"
            )
        if inner:
            return tuple(int(v) for v in pos)
    raise InputError(
        f"seed {seed_text}: the climb to a local maximum did not settle"
    )  # pragma: no cover


# -- thresholds -----------------------------------------------------------------------------------
def kmeans_threshold(values: np.ndarray, k: int) -> float:
    """Boundary between the lowest and the next of ``k`` 1-D k-means intensity classes."""
    v = values[np.isfinite(values)].astype(np.float64).ravel()
    if v.size > 200_000:
        v = v[:: v.size // 200_000 + 1]
    centres = np.quantile(v, (np.arange(k) + 0.5) / k)
    for _ in range(100):
        centres = np.sort(centres)
        bounds = (centres[1:] + centres[:-1]) / 2
        cls = np.searchsorted(bounds, v)
        new = np.array([v[cls == i].mean() if np.any(cls == i) else centres[i] for i in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    centres = np.sort(centres)
    return float((centres[0] + centres[1]) / 2)


@dataclass
class _Grown:
    lo: np.ndarray
    hi: np.ndarray
    sub: np.ndarray
    region: np.ndarray
    threshold: float
    peak_au: float
    peak_idx: np.ndarray  # continuous, box index


def _peak_in_box(sub, at):
    from mpi_viewer.roi._fwhm import subvoxel_peak

    return subvoxel_peak(sub, at)


def grow_region(
    arr,
    peak: tuple[int, ...],
    params,
    noise: float,
    structure,
    seed_text: str,
    fixed_threshold: float | None = None,
) -> _Grown:
    """Threshold region of the peak in a box that grows until the region is clear of its edge.

    k-means classes are computed once, on the source's neighbourhood: its half-maximum
    box widened by its own size on every side.
    """
    shape = np.asarray(arr.shape)
    d = arr.ndim
    curve = params.saturation_curve
    pk = np.asarray(peak)
    if params.method == "kmeans" and fixed_threshold is None:
        import dataclasses

        hm = grow_region(
            arr, peak, dataclasses.replace(params, method="halfmax"), noise, structure, seed_text
        )
        ext = hm.hi - hm.lo
        klo, khi = np.maximum(hm.lo - ext, 0), np.minimum(hm.hi + ext, shape)
        kbox = _box(arr, klo, khi, curve)
        thr = kmeans_threshold(kbox[kbox <= hm.peak_au], int(params.kmeans_clusters))
        # never below the n·SD noise threshold: a faint source's classes are noise
        if math.isfinite(noise):
            thr = max(thr, float(params.n_sd) * noise)
        return grow_region(arr, peak, params, noise, structure, seed_text, fixed_threshold=thr)
    ext = np.full(d, 8)
    lo = np.maximum(pk - ext, 0)
    hi = np.minimum(pk + ext + 1, shape)
    peak_au = None
    for _ in range(40):
        sub = _box(arr, lo, hi, curve)
        at = tuple(pk - lo)
        if peak_au is None:
            idx, peak_au = _peak_in_box(sub, at)
        thr = (
            fixed_threshold
            if fixed_threshold is not None
            else threshold_for(params, sub, peak_au, noise)
        )
        region = _component(sub >= thr, at, structure)
        if not region.any():
            raise InputError(
                f"seed {seed_text}: its peak ({peak_au:.4g} a.u.) is below the threshold "
                f"({thr:.4g} a.u.)"
            )
        grew = False
        new_lo, new_hi = lo.copy(), hi.copy()
        for a in range(d):
            proj = np.any(region, axis=tuple(i for i in range(d) if i != a))
            nz = np.flatnonzero(proj)
            if lo[a] > 0 and nz[0] < _MARGIN:
                new_lo[a] = max(0, lo[a] - max(ext[a], _MARGIN))
                grew = True
            if hi[a] < shape[a] and nz[-1] > (hi[a] - lo[a]) - 1 - _MARGIN:
                new_hi[a] = min(shape[a], hi[a] + max(ext[a], _MARGIN))
                grew = True
        if not grew:
            idx, _ = _peak_in_box(sub, at)
            return _Grown(lo, hi, sub, region, thr, float(peak_au), idx)
        ext = ext * 2
        lo, hi = new_lo, new_hi
        if np.prod(hi - lo) > _MAX_BOX_VOXELS and np.any(hi - lo < shape):
            raise InputError(
                f"seed {seed_text}: the ROI spreads over more than {_MAX_BOX_VOXELS} voxels "
                f"at threshold {thr:.4g} a.u. (too close to the noise; raise the threshold)"
            )
    raise InputError(f"seed {seed_text}: the ROI did not settle")  # pragma: no cover


def threshold_for(params, sub, peak_au: float, noise: float) -> float:
    if params.method == "halfmax":
        return float(params.fraction) * peak_au
    if params.method == "nsd":
        return float(params.n_sd) * noise
    # classes of the neighbourhood up to this source's own peak (a brighter neighbour's
    # core would otherwise become the "hot" class)
    return kmeans_threshold(sub[sub <= peak_au], int(params.kmeans_clusters))  # pragma: no cover


# -- one seed ---------------------------------------------------------------------------------------
def _seed_text(seed) -> str:
    return "(" + ", ".join(f"{v:g}" for v in seed) + ") mm"


def _half_widths(sm: np.ndarray, at: tuple[int, ...]) -> np.ndarray:
    """Half-width at half maximum (voxels) of the smoothed signal along each axis from ``at``."""
    d = sm.ndim
    top = sm[at]
    out = np.ones(d)
    for a in range(d):
        line = sm[tuple(slice(None) if i == a else at[i] for i in range(d))]
        c = at[a]
        r = c
        while r + 1 < len(line) and line[r + 1] >= 0.5 * top:
            r += 1
        left = c
        while left - 1 >= 0 and line[left - 1] >= 0.5 * top:
            left -= 1
        out[a] = max((r - left + 1) / 2.0, 0.5)
    return out


def _log_field(sigma_vox):
    from scipy.ndimage import gaussian_laplace

    def f(sub):
        if np.isnan(sub).any():
            sub = np.where(
                np.isnan(sub), float(np.nanmin(sub)) if np.isfinite(sub).any() else 0.0, sub
            )
        return -gaussian_laplace(sub, sigma_vox, mode="nearest")

    return f


def _check_seed(volume, arr, seed) -> tuple[tuple[float, ...], str, np.ndarray]:
    d = arr.ndim
    seed = tuple(float(v) for v in seed)
    st = _seed_text(seed)
    if len(seed) != d:
        raise InputError(
            f"seed {st}: {len(seed)} coordinates on a {d}-D image; give "
            f"{'x,y,z' if d == 3 else 'x,y'} in mm"
        )
    if not all(math.isfinite(v) for v in seed):
        raise InputError(f"seed {st}: coordinates must be finite")
    if not bool(volume.contains_physical([seed])[0]):
        lo_mm = volume.index_to_physical([[0] * d])[0]
        hi_mm = volume.index_to_physical([[n - 1 for n in arr.shape]])[0]
        ext = ", ".join(
            f"{min(a, b):.4g}…{max(a, b):.4g}" for a, b in zip(lo_mm, hi_mm, strict=True)
        )
        raise InputError(
            f"seed {st} is outside the image (x, y{', z' if d == 3 else ''} extent {ext} mm)"
        )
    shape = np.asarray(arr.shape)
    idx0 = np.clip(np.rint(volume.physical_to_index([seed])[0]).astype(int), 0, shape - 1)
    if not np.isfinite(arr[tuple(idx0)]):
        raise InputError(f"seed {st}: the image is NaN there")
    return seed, st, idx0


def _shoulder(arr, idx0, peak, params, spacing_zyx, st):
    """A source hidden on the flank of a brighter one (Sehl et al. 2020, fig. 5), or None.

    The signal has no maximum of its own there; the negative Laplacian of Gaussian
    (curvature) does. A climb on it from the click that ends away from the signal's
    peak, outside that peak's half-maximum core, is a candidate; the point-spread fit
    later keeps it only if its amplitude is above the noise.
    """
    shape = np.asarray(arr.shape)
    w = 8
    lo = np.maximum(np.asarray(peak) - w, 0)
    hi = np.minimum(np.asarray(peak) + w + 1, shape)
    sm = _smooth(_box(arr, lo, hi, params.saturation_curve))
    sigma = _half_widths(sm, tuple(np.asarray(peak) - lo)) / math.sqrt(2 * math.log(2))
    sigma_l = np.maximum(0.5 * sigma, 1.0)
    try:
        q = climb(
            arr,
            idx0,
            params.saturation_curve,
            spacing_zyx,
            float(params.search_radius_mm),
            st,
            field=_log_field(sigma_l),
        )
    except InputError:
        return None
    if np.all(np.abs(np.asarray(q) - np.asarray(peak)) <= np.maximum(2.0, sigma)):
        return None
    vq = _smooth(
        _box(
            arr,
            np.maximum(np.asarray(q) - 3, 0),
            np.minimum(np.asarray(q) + 4, shape),
            params.saturation_curve,
        )
    )
    at = tuple(np.minimum(np.asarray(q), 3))
    if not vq[at] < 0.5 * float(sm[tuple(np.asarray(peak) - lo)]):
        return None
    return q


def one_roi(volume, arr, seed, params, noise, structure, external=None):
    """Grow and measure one seed's ROI (see :func:`mpi_viewer.roi.measure`).

    ``external``: point-spread models (parameters as from
    :func:`mpi_viewer.roi._split.fit_gaussians`, centre in image index) of other measured
    sources whose peaks lie outside this source's region but whose tails reach into it;
    they are subtracted before thresholding, like the in-region neighbours' models.
    The returned dict carries ``_fit`` (box, region, peaks, own model) for
    :func:`measure_seeds`.
    """
    from scipy import ndimage as ndi

    from mpi_viewer.roi._fwhm import subvoxel_peak
    from mpi_viewer.roi._split import MAX_FIT_PEAKS, find_peaks, fit_gaussians, gaussian_on_box
    from mpi_viewer.roi._subvoxel import subvoxel_stats

    d = arr.ndim
    seed, st, idx0 = _check_seed(volume, arr, seed)
    spacing_zyx = np.asarray(volume.spacing_mm, dtype=float)[::-1]
    curve = params.saturation_curve
    conn = d if params.connectivity == "full" else 1
    radius = float(params.search_radius_mm)
    # the signal's own peak may lie farther than the search radius when the click is on a
    # hidden weak source's shoulder: climb without the limit, check it after
    signal_peak = climb(arr, idx0, curve, spacing_zyx, 4 * radius, st)
    cand = (
        _shoulder(arr, idx0, signal_peak, params, spacing_zyx, st) if params.split_sources else None
    )
    own_peak = cand if cand is not None else signal_peak
    if np.linalg.norm((np.asarray(own_peak) - idx0) * spacing_zyx) > radius:
        raise InputError(
            f"seed {st}: no local maximum within {radius:g} mm "
            "(click closer to the hot spot or raise the search radius)"
        )

    for _attempt in range(2):
        g = grow_region(arr, own_peak, params, noise, structure, st)
        sub, region = g.sub, g.region
        at = tuple(int(v) for v in np.asarray(own_peak) - g.lo)
        if g.peak_au <= 0 or g.peak_au < float(params.min_snr) * noise:
            if cand is not None and own_peak == cand:
                own_peak, cand = signal_peak, None
                continue
            raise InputError(
                f"seed {st}: no peak above the noise there (local maximum {g.peak_au:.3g} a.u. "
                f"= {g.peak_au / noise:.1f} × noise SD {noise:.3g} a.u.; need {params.min_snr:g})"
            )
        sm = _smooth(sub)
        h = max(3.0 * noise, 0.1 * g.peak_au) if math.isfinite(noise) else 0.1 * g.peak_au
        peaks = find_peaks(sm, region, h, connectivity=conn)
        near = [k for k, p in enumerate(peaks) if np.all(np.abs(np.asarray(p) - at) <= 1.5)]
        if near:
            own = near[0]
        else:
            peaks.insert(0, at)
            own = 0
        if len(peaks) > MAX_FIT_PEAKS:  # the own peak and the brightest others
            keep = [own] + [k for k in range(len(peaks)) if k != own][: MAX_FIT_PEAKS - 1]
            peaks = [peaks[k] for k in keep]
            own = 0
        models = None
        own_model = None
        if len(peaks) > 1 and params.split_sources:
            sigma0 = _half_widths(sm, peaks[int(np.argmax([sm[p] for p in peaks]))]) / math.sqrt(
                2 * math.log(2)
            )
            fit_mask = ndi.binary_dilation(region, structure=structure, iterations=2) & np.isfinite(
                sub
            )
            models, amps, mparams = fit_gaussians(np.nan_to_num(sub), peaks, fit_mask, sigma0)
            own_model = mparams[own].copy()
            own_model[1 : 1 + d] += g.lo
            floor = float(params.min_snr) * noise if math.isfinite(noise) else 0.05 * g.peak_au
            if cand is not None and own_peak == cand and amps[own] < floor:
                own_peak, cand = signal_peak, None  # the "shoulder" was the flank itself
                continue
        break

    if (
        np.isnan(sub).any()
        and ndi.binary_dilation(region, structure=structure)[np.isnan(sub)].any()
    ):
        raise InputError(f"seed {st}: the image has NaN values inside the ROI")

    # other sources outside the region whose point-spread tails reach into the box
    peaks_img = [np.asarray(p) + g.lo for p in peaks]
    ext = None
    for pe in external or ():
        if any(np.all(np.abs(np.asarray(pe[1 : 1 + d]) - q) <= 1.5) for q in peaks_img):
            continue  # already fitted as a peak of this region
        m = gaussian_on_box(pe, -g.lo, sub.shape)
        ext = m if ext is None else ext + m

    flags: list[str] = []
    warnings: list[str] = []
    corr = sub
    others = None
    blocked = None
    thr = g.threshold
    peak_idx, peak_au = g.peak_idx, g.peak_au
    roi = region
    if len(peaks) > 1 or ext is not None:
        if len(peaks) > 1:
            flags.append("shared_signal")
        if models is not None or ext is not None:
            parts = [m for k, m in enumerate(models) if k != own] if models is not None else []
            if ext is not None:
                parts.append(ext)
            others = np.sum(parts, axis=0)
            corr = sub - others
            # the own peak as grown (a lone source's tail-corrected peak stays where it was)
            top = _ascend(corr, peaks[own]) if models is not None else at
            peak_idx, peak_au = subvoxel_peak(corr, top)
            if params.method == "halfmax":
                thr = float(params.fraction) * peak_au
            blocked = np.zeros(corr.shape, dtype=bool)  # voxels given to a neighbour (its own core)
            for k, m in enumerate(models or ()):
                if k == own:
                    continue
                core = m >= (
                    float(params.fraction) * float(m.max()) if params.method == "halfmax" else thr
                )
                blocked |= core & (m > models[own])
            roi = _component((corr >= thr) & ~blocked & region, top, structure)
            if not roi.any():
                raise InputError(
                    f"seed {st}: nothing of this source is left above the threshold once its "
                    "neighbours' signal is removed"
                )
            if len(peaks) > 1:
                warnings.append(
                    f"{len(peaks) - 1} neighbouring source(s) share this region; their "
                    "point-spread model was subtracted."
                )
        else:
            warnings.append(
                f"the region holds {len(peaks)} peaks and was not split (split_sources off)."
            )

    neighbour = 0.0
    if others is not None:
        neighbour = float(others[roi].astype(np.float64).sum()) * float(np.prod(volume.spacing_mm))
    stats = region_stats(
        volume, arr, corr, roi, g.lo, noise, curve, peak_idx=peak_idx, peak_au=peak_au
    )
    # total, size and mean integrated at sub-voxel resolution (see mpi_viewer.roi._subvoxel)
    fine = subvoxel_stats(
        corr,
        roi,
        thr,
        tuple(np.asarray(stats["_peak_voxel"]) - g.lo),
        structure,
        voxel_size=float(np.prod(volume.spacing_mm)),
        others=others,
        blocked=blocked,
    )
    if fine is not None:
        stats.update(total_signal=fine["total"], size=fine["size"], mean_au=fine["mean"])
        neighbour = fine["neighbour"]
    if (
        ext is not None
        and "shared_signal" not in flags
        and neighbour > 0.005 * abs(stats["total_signal"])
    ):
        flags.append("shared_signal")
        warnings.append(
            f"neighbouring sources' tails reach into this ROI ({neighbour:.4g} a.u., "
            f"{100 * neighbour / abs(stats['total_signal']):.1f} % of its total); their "
            "point-spread model was subtracted."
        )
    flags += stats.pop("flags")
    fit = dict(
        lo=g.lo,
        sub=sub,
        region=region,
        at=at,
        peaks_img=peaks_img,
        model=own_model,
        hw=_half_widths(sm, at),
        own_peak=np.asarray(own_peak),
    )
    warnings += stats.pop("warnings")
    return dict(
        seed_mm=seed,
        **stats,
        threshold_au=float(thr),
        method=params.method,
        neighbour_signal=neighbour,
        flags=flags,
        warnings=warnings,
        _fit=fit,
    )


def region_stats(
    volume, arr, sub, roi, lo, noise: float, curve=None, *, peak_idx=None, peak_au=None
) -> dict:
    """Signal statistics of a region given in a box: the one code behind every ROI method.

    Parameters
    ----------
    volume : Volume
        The MPI image (geometry: spacing and physical frame).
    arr : ndarray
        The raw image array (numpy order), for the receiver-saturation flag.
    sub : ndarray
        The signal (a.u.) in the box ``lo … lo + sub.shape`` (saturation-corrected,
        neighbours subtracted…), numpy order.
    roi : ndarray of bool
        The region, same shape as ``sub``.
    lo : sequence of int
        Index (z, y, x) of the box's first voxel in the image.
    noise : float
        Noise SD (a.u.; NaN when unknown: SNR is then NaN).
    curve : SaturationCurve, optional
        Receiver response the box was corrected with (flags ``saturated``).
    peak_idx, peak_au : optional
        The peak (continuous box index, a.u.) when the caller has it; else the sub-voxel
        peak (:func:`mpi_viewer.roi._fwhm.subvoxel_peak`) of the brightest region voxel.

    Returns
    -------
    dict
        ``peak_mm`` (x, y, z mm), ``peak_au``, ``mean_au``, ``n_voxels``, ``size`` (mm³ or
        mm²), ``size_unit``, ``total_signal`` (sum × voxel size, a.u.·mm³ or a.u.·mm²),
        ``snr``, ``fwhm_mm`` (x, y, z; Lorentzian fit of the line profile through the
        brightest region voxel, Ureña Horno et al. 2025, doi:10.1039/d5nr02393a),
        ``noise_sd``, ``mask`` (ROIMask), ``flags`` and ``warnings`` (``saturated``,
        ``edge``) and ``_peak_voxel`` (image index of the brightest region voxel).
    """
    from mpi_viewer.roi._fwhm import lorentzian_fwhm, subvoxel_peak
    from mpi_viewer.roi.regions import ROIMask

    d = sub.ndim
    lo = np.asarray(lo, dtype=int)
    shape = np.asarray(arr.shape)
    hi = lo + np.asarray(sub.shape)
    spacing_zyx = np.asarray(volume.spacing_mm, dtype=float)[::-1]
    vox = float(np.prod(volume.spacing_mm))
    vals = sub[roi].astype(np.float64)
    n = int(vals.size)
    total = float(vals.sum()) * vox
    mean = float(vals.mean())
    top_i = np.unravel_index(int(np.argmax(np.where(roi, sub, -np.inf))), sub.shape)
    if peak_idx is None:
        peak_idx, peak_au = subvoxel_peak(sub, top_i)
    flags: list[str] = []
    warnings: list[str] = []
    if curve is not None:
        pk_i = tuple(np.clip(np.rint(np.asarray(peak_idx) + lo).astype(int), 0, shape - 1))
        raw_peak = float(np.asarray(arr[pk_i]))
        if abs(float(curve(np.asarray([raw_peak], dtype=np.float64))[0]) - raw_peak) > 0.01 * abs(
            raw_peak
        ):
            flags.append("saturated")
    if any(
        (lo[a] == 0 and roi.take(0, axis=a).any())
        or (hi[a] == shape[a] and roi.take(-1, axis=a).any())
        for a in range(d)
    ):
        flags.append("edge")
        warnings.append(
            "the ROI reaches the image edge: part of the source may be outside the field of view."
        )

    # FWHM from line profiles through the brightest ROI voxel, along x, y(, z)
    fwhm_zyx = []
    for a in range(d):
        line = sub[tuple(slice(None) if i == a else top_i[i] for i in range(d))]
        t = np.arange(line.size) * spacing_zyx[a]
        fwhm_zyx.append(lorentzian_fwhm(t, line))

    peak_mm = volume.index_to_physical([np.asarray(peak_idx) + lo])[0]
    return dict(
        peak_mm=tuple(float(v) for v in peak_mm),
        peak_au=float(peak_au),
        mean_au=mean,
        n_voxels=n,
        size=n * vox,
        size_unit="mm3" if d == 3 else "mm2",
        total_signal=total,
        snr=float(peak_au / noise),
        fwhm_mm=tuple(float(v) for v in fwhm_zyx[::-1]),
        noise_sd=float(noise),
        mask=ROIMask(start=tuple(int(v) for v in lo), array=roi),
        flags=flags,
        warnings=warnings,
        _peak_voxel=tuple(int(v) for v in np.asarray(top_i) + lo),
    )


def _ascend(f: np.ndarray, start) -> tuple[int, ...]:
    """Steepest ascent on ``f`` inside the box from ``start``."""
    p = np.asarray(start)
    for _ in range(1000):
        nlo = np.maximum(p - 1, 0)
        nhi = np.minimum(p + 2, f.shape)
        nb = f[tuple(slice(a, b) for a, b in zip(nlo, nhi, strict=True))]
        q = np.asarray(np.unravel_index(int(np.nanargmax(nb)), nb.shape)) + nlo
        if not f[tuple(q)] > f[tuple(p)]:
            break
        p = q
    return tuple(int(v) for v in p)


# -- several seeds ----------------------------------------------------------------------------------
def measure_seeds(volume, arr, seeds, params, *, names=None, on_error="raise"):
    from mpi_viewer.roi.regions import ROIResult

    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    seeds = [tuple(np.atleast_1d(np.asarray(s, dtype=float))) for s in seeds]
    if names is not None and len(names) != len(seeds):
        raise InputError(f"{len(names)} ROI names for {len(seeds)} seeds")
    out = ResultList()
    if not seeds:
        return out
    if arr.ndim != volume.ndim:  # pragma: no cover - Volume guarantees it
        raise InputError("image array and geometry disagree on the dimension")
    noise = _noise_for(arr, params)
    structure = _structure(arr.ndim, params.connectivity)
    grown: list[tuple[int, dict]] = []
    for i, seed in enumerate(seeds):
        try:
            grown.append((i, one_roi(volume, arr, seed, params, noise, structure)))
        except InputError as exc:
            if on_error == "raise":
                raise
            out.errors.append((i, str(exc)))
    if params.split_sources and len(grown) > 1:
        _subtract_outside_neighbours(volume, arr, seeds, params, noise, structure, grown)
    peaks_seen: dict[tuple[int, ...], str] = {}
    for i, r in grown:
        name = names[i] if names is not None else f"roi_{i + 1}"
        r.pop("_fit")
        pv = r.pop("_peak_voxel")
        res = ROIResult(name=name, label=len(out) + 1, **r)
        if pv in peaks_seen:
            res.flags.append("duplicate")
            res.warnings.append(f"same peak as {peaks_seen[pv]}.")
        else:
            peaks_seen[pv] = name
        out.append(res)
    _flag_touching(out, arr.ndim, structure)
    return out


#: A neighbour is subtracted when its peak lies within this many of its FWHM of an ROI's box.
_REACH_FWHM = 3.0


def _own_model(fit: dict, structure) -> np.ndarray:
    """The source's point-spread model (image index frame), fitted once on its own box."""
    from scipy import ndimage as ndi

    from mpi_viewer.roi._split import fit_gaussians

    if fit["model"] is None:
        sub, d = fit["sub"], fit["sub"].ndim
        mask = ndi.binary_dilation(fit["region"], structure=structure, iterations=2) & np.isfinite(
            sub
        )
        _, _, mp = fit_gaussians(
            np.nan_to_num(sub), [fit["at"]], mask, fit["hw"] / math.sqrt(2 * math.log(2))
        )
        p = mp[0].copy()
        p[1 : 1 + d] += fit["lo"]
        fit["model"] = p
    return fit["model"]


def _subtract_outside_neighbours(volume, arr, seeds, params, noise, structure, grown) -> None:
    """Re-measure each ROI with the models of the other sources reaching into its box.

    A neighbour whose peak lies in the ROI's own region was already fitted and removed
    (the split path); one whose peak lies outside it (e.g. a weak source 4.3 mm from a
    strong one: the strong's half-maximum region holds no second peak) still adds its
    tail. Each source's point-spread model is fitted once (the split fit's when there
    was one) and subtracted from every ROI whose box lies within ``_REACH_FWHM`` of its
    FWHM. ``grown`` ((seed index, one_roi dict) pairs) is updated in place.
    """
    from mpi_viewer.roi._split import gaussian_on_box

    fits = [r["_fit"] for _, r in grown]
    for n, (i, r) in enumerate(grown):
        fi = fits[n]
        lo = np.asarray(fi["lo"], dtype=float)
        hi = lo + np.asarray(fi["sub"].shape) - 1
        ext = []
        for m, fj in enumerate(fits):
            if m == n or r["_peak_voxel"] == grown[m][1]["_peak_voxel"]:
                continue
            pj = fj["own_peak"].astype(float)
            if any(np.all(np.abs(pj - q) <= 1.5) for q in fi["peaks_img"]):
                continue
            dist = np.maximum(np.maximum(lo - pj, pj - hi), 0.0)
            if np.sqrt(np.sum((dist / (2.0 * fj["hw"])) ** 2)) > _REACH_FWHM:
                continue
            mj = _own_model(fj, structure)
            if float(gaussian_on_box(mj, -fi["lo"], fi["sub"].shape).max()) < 1e-5 * abs(
                r["peak_au"]
            ):
                continue  # its tail is negligible here
            ext.append(mj)
        if not ext:
            continue
        try:
            grown[n] = (i, one_roi(volume, arr, seeds[i], params, noise, structure, external=ext))
        except InputError as exc:
            r["warnings"].append(f"neighbouring sources' tails could not be subtracted ({exc}).")
        grown[n][1]["_fit"]["model"] = fi["model"]


def _noise_for(arr, params) -> float:
    """The noise SD; NaN for a noiseless image under half maximum (which needs none)."""
    if params.noise_sd is not None:
        return float(params.noise_sd)
    user_region = params.background_mask is not None or params.background_bbox is not None
    try:
        return noise_sd(arr, mask=params.background_mask, bbox=params.background_bbox)
    except InputError:
        if params.method != "halfmax" or user_region:
            raise
        return float("nan")


def _flag_touching(results, d: int, structure) -> None:
    from scipy import ndimage as ndi

    for i, a in enumerate(results):
        for b in results[i + 1 :]:
            if "duplicate" in b.flags and b.mask.start == a.mask.start:
                continue
            lo = np.maximum(np.asarray(a.mask.start) - 1, np.asarray(b.mask.start))
            hi = np.minimum(
                np.asarray(a.mask.start) + a.mask.array.shape + 1,
                np.asarray(b.mask.start) + b.mask.array.shape,
            )
            if np.any(hi <= lo):
                continue
            # a (dilated by one voxel) against b, on the common box
            blo = np.minimum(np.asarray(a.mask.start), np.asarray(b.mask.start)) - 1
            bhi = (
                np.maximum(
                    np.asarray(a.mask.start) + a.mask.array.shape,
                    np.asarray(b.mask.start) + b.mask.array.shape,
                )
                + 1
            )
            ma = np.zeros(tuple(bhi - blo), dtype=bool)
            mb = np.zeros_like(ma)
            ma[
                tuple(
                    slice(s - l0, s - l0 + n)
                    for s, l0, n in zip(a.mask.start, blo, a.mask.array.shape, strict=True)
                )
            ] = a.mask.array
            mb[
                tuple(
                    slice(s - l0, s - l0 + n)
                    for s, l0, n in zip(b.mask.start, blo, b.mask.array.shape, strict=True)
                )
            ] = b.mask.array
            if (ndi.binary_dilation(ma, structure=structure) & mb).any():
                for r, other in ((a, b), (b, a)):
                    if "touching" not in r.flags:
                        r.flags.append("touching")
                    r.warnings.append(f"touches {other.name}.")
