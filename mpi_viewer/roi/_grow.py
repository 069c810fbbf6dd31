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
from mpi_viewer.roi._memo import owned, remembered

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
        sd = _background_sd(arr)
    if not sd > 0:
        raise InputError("image: no noise spread found (constant background); give the noise SD")
    return sd


#: Background search: voxels farther than this many MAD-SDs from the median are signal…
_HOT_SD = 4.0
#: …and so is everything within this fraction of the image's smallest extent of them.
_HOT_GROW = 0.15


def _background_sd(arr: np.ndarray) -> float:
    """SD of the image's background: the voxels away from every hot (or cold) structure.

    A reconstruction's background is not the bulk of its voxels: ring artefacts,
    negative lobes and the sources' tails spread over much of a small field of view,
    and the robust ``1.4826 × MAD`` of all voxels read 1.1–3.3× the SD of the corners
    of real FFL reconstructions. Here, iterated four times from the MAD estimate:
    voxels more than ``_HOT_SD`` SDs from the background median are structure; every
    voxel within ``_HOT_GROW`` × the image's smallest extent of them is excluded; the
    sample SD of what is left is the noise (within 20 % of the corners' SD on the five
    real reconstructions of ``mpi_ffl_phantoms``). Large images are subsampled
    regularly to ~2.5·10⁵ voxels first.
    """
    from scipy import ndimage as ndi

    step = max(1, int(math.ceil((arr.size / 2.5e5) ** (1.0 / arr.ndim))))
    a = np.asarray(arr[(slice(None, None, step),) * arr.ndim], dtype=np.float32)
    ok = np.isfinite(a)
    vals = a[ok]
    if vals.size < 2:
        raise InputError("image: too few finite voxels to estimate the noise SD")
    from scipy.stats import median_abs_deviation

    med = float(np.median(vals))
    sd = float(median_abs_deviation(vals, scale="normal"))
    if sd <= 0:
        # mostly constant background (e.g. zero-filled): the SD below the median
        low = vals[vals <= med]
        return float(np.std(low)) if low.size > 1 else 0.0
    grow = max(2, int(round(_HOT_GROW * min(a.shape))))
    for _ in range(4):
        hot = ok & (np.abs(a - med) > _HOT_SD * sd)
        if not hot.any():
            break
        # city-block distance (the structure grown face-wise ``grow`` times)
        far = ndi.distance_transform_cdt(~hot, metric="taxicab") > grow
        bg = a[far & ok]
        if bg.size < max(50, 0.02 * a.size):
            break
        med, new = float(np.median(bg)), float(np.std(bg, ddof=1))
        if not new > 0 or abs(new - sd) <= 1e-3 * sd:
            sd = new if new > 0 else sd
            break
        sd = new
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


def _peak_in_box(sub, at, psf=None, *, fitted_only=False, with_sd=False):
    """Sub-voxel peak (continuous index, a.u.) near ``at``.

    With a measured PSF: its template fitted (amplitude, centre, constant) to the core
    (±½ FWHM) around ``at`` — the continuous peak of a point source of that shape,
    wherever it lies between voxels (a log-quadratic fit of a sharp, heavy-tailed
    x-space peak reads 1–2 % low depending on the offset, and the half-maximum
    region's total twice that). Else the log-quadratic fit of
    :func:`mpi_viewer.roi._fwhm.subvoxel_peak`. ``fitted_only``: ``None`` instead of
    the log-quadratic fallback when the template cannot be fitted. ``with_sd``: a third
    value, the fitted amplitude's SD (``None`` for the fallback).
    """
    from mpi_viewer.roi._fwhm import subvoxel_peak

    if psf is None:
        idx, peak = subvoxel_peak(sub, at)
        return None if fitted_only else (idx, peak) + ((None,) if with_sd else ())
    idx, peak, fit = _peak_fit(sub, at, psf)
    if fit is None:
        return None if fitted_only else (idx, peak) + ((None,) if with_sd else ())
    centre, amp, amp_sd = fit
    if with_sd:
        return centre, amp, amp_sd
    return centre, amp


#: Template peak fits kept per measured PSF (see :func:`_peak_fit`).
_PEAK_FITS = 4096


def _peak_fit(sub, at, psf):
    """The log-quadratic peak near ``at`` and the template fitted to the core around it
    (``(centre, amplitude, amplitude SD)``, or ``None`` when it cannot be fitted).

    Both depend only on the core's values and on where it lies in the box, so a fit is
    kept with the PSF, keyed by those bytes: the same core fitted again (a source
    re-measured, its neighbours' uncertain models changing nothing there, the threshold
    jitter's reference peak) costs a hash instead of a least-squares fit.
    """
    import hashlib

    from mpi_viewer.roi._fwhm import subvoxel_peak
    from mpi_viewer.roi._psf import fit_template

    r = np.maximum(np.ceil(0.5 * psf.fwhm_vox).astype(int), 1)
    lo = np.maximum(np.asarray(at) - r, 0)
    hi = np.minimum(np.asarray(at) + r + 1, sub.shape)
    core = sub[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    key = (
        tuple(int(v) for v in at),
        tuple(sub.shape),
        core.dtype.str,
        hashlib.sha1(np.ascontiguousarray(core).tobytes()).digest(),
    )
    idx, peak, fit = remembered(
        owned(psf, "_peak_fits"),
        key,
        lambda: _fit_peak(sub, at, psf, r, lo, hi, subvoxel_peak, fit_template),
        _PEAK_FITS,
    )
    return (
        np.array(idx),
        peak,
        None if fit is None else (np.array(fit[0]), fit[1], fit[2]),
    )


def _fit_peak(sub, at, psf, r, lo, hi, subvoxel_peak, fit_template):
    idx, peak = subvoxel_peak(sub, at)
    if np.any(np.asarray(at) - lo < r) or np.any(hi - 1 - np.asarray(at) < r):
        return idx, peak, None  # too near the box edge
    mask = np.zeros(sub.shape, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    mask &= np.isfinite(sub)
    if mask.sum() < 3 * sub.ndim + 2:
        return idx, peak, None
    _, amps, points, _ = fit_template(
        np.nan_to_num(sub), [tuple(at)], mask, psf, max_nfev=12, with_models=False
    )
    if not (0.7 * peak <= amps[0] <= 1.5 * peak):
        return idx, peak, None
    return idx, peak, (points[0].centre, float(amps[0]), points[0].amplitude_sd)


def grow_region(
    arr,
    peak: tuple[int, ...],
    params,
    noise: float,
    structure,
    seed_text: str,
    fixed_threshold: float | None = None,
    psf=None,
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
        return grow_region(
            arr, peak, params, noise, structure, seed_text, fixed_threshold=thr, psf=psf
        )
    ext = np.full(d, 8)
    lo = np.maximum(pk - ext, 0)
    hi = np.minimum(pk + ext + 1, shape)
    peak_au = None
    for _ in range(40):
        sub = _box(arr, lo, hi, curve)
        at = tuple(pk - lo)
        if peak_au is None:
            lo0 = lo.copy()
            idx, fitted = _peak_in_box(sub, at, psf)
            # the source's brightest voxel: its peak voxel or a neighbour of it
            near = sub[tuple(slice(max(i - 1, 0), i + 2) for i in at)]
            vmax = float(np.nanmax(near))
            peak_au = max(fitted, vmax) if params.peak_convention == "subvoxel" else vmax
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
            # the peak found in the first box, in this box's index frame
            return _Grown(lo, hi, sub, region, thr, float(peak_au), idx + lo0 - lo)
        ext = ext * 2
        lo, hi = new_lo, new_hi
        if np.prod(hi - lo) > _MAX_BOX_VOXELS and np.any(hi - lo < shape):
            raise InputError(
                f"seed {seed_text}: the ROI spreads over more than {_MAX_BOX_VOXELS} voxels "
                f"at threshold {thr:.4g} a.u. (too close to the noise; raise the threshold)"
            )
    raise InputError(f"seed {seed_text}: the ROI did not settle")  # pragma: no cover


def reference_peak(sub, region, fitted: float, params, at, structure, allowed=None):
    """The half-maximum's reference peak and the region it gives, never below a voxel.

    ``"subvoxel"`` (default): the sub-voxel fitted peak (between voxels, less noisy than
    one voxel), but never below the brightest voxel of the region; ``"voxel"``: the
    brightest voxel, as a DICOM viewer's ROI tool (Horos) reads the maximum. On an
    extended shape the fitted peak lies 3–35 % below the brightest voxel, which put
    the threshold below the field's "half of the source's maximum".
    Returns ``(region, peak)``; ``allowed`` restricts the region (a split source's).
    """
    frac = float(params.fraction)
    peak = float(fitted) if params.peak_convention == "subvoxel" else float(sub[at])
    for _ in range(10):
        vmax = float(np.nanmax(np.where(region, sub, -np.inf)))
        new = max(peak, vmax) if params.peak_convention == "subvoxel" else vmax
        if new <= peak * (1 + 1e-7) and peak > 0 and np.all(sub[region] >= frac * peak):
            return region, peak
        peak = new
        cand = sub >= frac * peak
        if allowed is not None:
            cand &= allowed
        nxt = _component(cand, at, structure)
        if not nxt.any():  # the clicked voxel itself fell below: keep the brightest voxel's part
            top = np.unravel_index(int(np.nanargmax(np.where(region, sub, -np.inf))), sub.shape)
            nxt = _component(cand, top, structure)
        region = nxt
    return region, peak


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


def _no_hot_spot(volume, arr, seed, idx0, radius, floor, curve) -> InputError:
    """The error of a seed with no hot spot near it, naming the nearest one and its distance."""
    from scipy import ndimage as ndi

    where = ", ".join(f"{v:.4g}" for v in seed)
    msg = f"no hot spot above the noise within {radius:g} mm of ({where}) mm"
    if not math.isfinite(floor):
        return InputError(msg)
    full = _box(arr, np.zeros(arr.ndim, int), np.asarray(arr.shape), curve)
    sm = _smooth(full)
    lab, n = ndi.label(sm >= floor)
    if n == 0:
        return InputError(f"{msg}; no voxel of the image is above {floor:.3g} a.u.")
    peaks = ndi.maximum_position(sm, lab, range(1, n + 1))
    xyz = volume.index_to_physical(np.asarray(peaks, dtype=float))
    dist = np.linalg.norm(xyz - np.asarray(seed, dtype=float), axis=1)
    k = int(np.argmin(dist))
    near = ", ".join(f"{v:.1f}" for v in xyz[k])
    return InputError(
        f"{msg}; nearest at ({near}) mm, {dist[k]:.1f} mm away (above {floor:.3g} a.u. = "
        "min_snr × noise SD)"
    )


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


def one_roi(volume, arr, seed, params, noise, structure, external=None, psf=None):
    """Grow and measure one seed's ROI (see :func:`mpi_viewer.roi.measure`).

    ``external``: point-source models (:class:`mpi_viewer.roi._psf.PointModel`, centre
    in image index) of other measured sources whose peaks lie outside this source's
    region but whose tails reach into it; they are subtracted before thresholding, like
    the in-region neighbours' models. ``psf``: the PSF measured on the image
    (:func:`mpi_viewer.roi._psf.measure_psf`), else Gaussian models are fitted.
    The returned dict carries ``_fit`` (box, region, peaks, own model) for
    :func:`measure_seeds`.

    Three stages, so that a source re-measured with its neighbours' tails subtracted
    (:func:`measure_seeds`) grows its region and fits its peaks once
    (:func:`_start_roi`), and its first pass stops once its peak is known
    (:func:`_delineate`) instead of computing the statistics and intervals that the
    second pass replaces (:func:`_complete`).
    """
    return _complete(
        _delineate(_start_roi(volume, arr, seed, params, noise, structure, psf), external)
    )


def _start_roi(volume, arr, seed, params, noise, structure, psf=None):
    """Stage 1 of :func:`one_roi`: climb to the peak, grow the region, find and fit its
    peaks (independent of the neighbours outside the region). Returns a namespace."""
    from types import SimpleNamespace

    from scipy import ndimage as ndi

    from mpi_viewer.roi._split import MAX_FIT_PEAKS, explained, find_peaks, fit_sources

    d = arr.ndim
    seed, st, idx0 = _check_seed(volume, arr, seed)
    spacing_zyx = np.asarray(volume.spacing_mm, dtype=float)[::-1]
    curve = params.saturation_curve
    conn = d if params.connectivity == "full" else 1
    radius = float(params.search_radius_mm)
    # the signal's own peak may lie farther than the search radius when the click is on a
    # hidden weak source's shoulder: climb without the limit, check it after
    floor = float(params.min_snr) * noise if math.isfinite(noise) else -math.inf
    try:
        signal_peak = climb(arr, idx0, curve, spacing_zyx, 4 * radius, st)
    except InputError:
        raise _no_hot_spot(volume, arr, seed, idx0, radius, floor, curve) from None
    cand = (
        _shoulder(arr, idx0, signal_peak, params, spacing_zyx, st) if params.split_sources else None
    )
    own_peak = cand if cand is not None else signal_peak
    top = float(np.nanmax(_box(arr, np.asarray(signal_peak), np.asarray(signal_peak) + 1, curve)))
    if not top >= floor:
        raise _no_hot_spot(volume, arr, seed, idx0, radius, floor, curve)
    far = float(np.linalg.norm((np.asarray(own_peak) - idx0) * spacing_zyx))
    if far > radius:
        near = ", ".join(f"{v:.1f}" for v in volume.index_to_physical([own_peak])[0])
        raise InputError(
            f"seed {st}: no local maximum within {radius:g} mm; the signal there rises to a peak "
            f"at ({near}) mm, {far:.1f} mm away (click closer to the hot spot, seed that peak, or "
            "raise the search radius)"
        )

    for _attempt in range(2):
        try:
            g = grow_region(arr, own_peak, params, noise, structure, st, psf=psf)
        except InputError as exc:
            if "below the threshold" not in str(exc):
                raise
            raise _no_hot_spot(volume, arr, seed, idx0, radius, floor, curve) from None
        sub, region = g.sub, g.region
        at = tuple(int(v) for v in np.asarray(own_peak) - g.lo)
        if g.peak_au <= 0 or g.peak_au < float(params.min_snr) * noise:
            if cand is not None and own_peak == cand:
                own_peak, cand = signal_peak, None
                continue
            raise _no_hot_spot(volume, arr, seed, idx0, radius, floor, curve)
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
        unexplained = False
        misfit = None
        if len(peaks) > 1 and params.split_sources:
            sigma0 = _half_widths(sm, peaks[int(np.argmax([sm[p] for p in peaks]))]) / math.sqrt(
                2 * math.log(2)
            )
            fit_mask = ndi.binary_dilation(region, structure=structure, iterations=2) & np.isfinite(
                sub
            )
            models, amps, points, rms = fit_sources(
                np.nan_to_num(sub), peaks, fit_mask, sigma0, psf
            )
            for pm in points:
                pm.centre = pm.centre + g.lo
            own_model = points[own]
            floor = float(params.min_snr) * noise if math.isfinite(noise) else 0.05 * g.peak_au
            if cand is not None and own_peak == cand and amps[own] < floor:
                own_peak, cand = signal_peak, None  # the "shoulder" was the flank itself
                continue
            if not explained(rms, g.peak_au, noise):
                if cand is not None and own_peak == cand:
                    own_peak, cand = signal_peak, None
                    continue
                # an extended structure (a vessel, an S, a ring): point sources do not
                # explain it, so it is not cut between its maxima
                models, own_model, unexplained = None, None, True
                misfit = rms
        break

    if (
        np.isnan(sub).any()
        and ndi.binary_dilation(region, structure=structure)[np.isnan(sub)].any()
    ):
        raise InputError(f"seed {st}: the image has NaN values inside the ROI")
    return SimpleNamespace(
        volume=volume,
        arr=arr,
        params=params,
        noise=noise,
        structure=structure,
        psf=psf,
        seed=seed,
        st=st,
        g=g,
        sub=sub,
        region=region,
        at=at,
        peaks=peaks,
        own=own,
        models=models,
        points=points if models is not None else None,
        own_model=own_model,
        unexplained=unexplained,
        misfit=misfit,
        sm=sm,
        own_peak=own_peak,
        fit=None,
    )


def _delineate(s, external=None):
    """Stage 2 of :func:`one_roi`: subtract the neighbours' models (``external``: those
    outside the region), delineate the source (split, faint-source model) and find its
    peak. Returns a namespace for :func:`_complete`, with ``peak_au``, ``peak_voxel``
    (image index of the brightest ROI voxel) and ``fit`` (shared by every pass of ``s``)."""
    from types import SimpleNamespace

    volume, params, noise, structure, psf = s.volume, s.params, s.noise, s.structure, s.psf
    st, g, sub, region, at, peaks, own = s.st, s.g, s.sub, s.region, s.at, s.peaks, s.own
    models, points, unexplained, misfit = s.models, s.points, s.unexplained, s.misfit
    curve = params.saturation_curve
    # other sources outside the region whose point-spread tails reach into the box
    peaks_img = [np.asarray(p) + g.lo for p in peaks]
    ext = None
    nb_sd: list = []  # the neighbours' models' SDs on the box (measured template's noise)
    nb_parts: list = []  # each neighbour's model on the box and its amplitude's relative SD
    for pe in external or ():
        if any(np.all(np.abs(np.asarray(pe.centre) - q) <= 1.5) for q in peaks_img):
            continue  # already fitted as a peak of this region
        m = pe.on_box(g.lo, sub.shape)
        ext = m if ext is None else ext + m
        nb_sd.append(pe.sd_on_box(g.lo, sub.shape))
        nb_parts.append((m, _amplitude_rel_sd(pe)))

    flags: list[str] = []
    warnings: list[str] = []
    corr = sub
    others = None
    blocked = None
    split = None
    thr = g.threshold
    peak_idx, peak_au = g.peak_idx, g.peak_au
    roi = region
    if unexplained and params.method == "halfmax":
        # one extended source: half of its brightest voxel, wherever in the region
        roi, peak_au = reference_peak(sub, region, peak_au, params, at, structure)
        thr = float(params.fraction) * peak_au
        region = roi
    if unexplained:
        flags.append("multiple_peaks")
        warnings.append(
            f"the region holds {len(peaks)} maxima that point sources do not explain "
            f"(fit residual {100 * misfit / g.peak_au:.0f} % of the peak): measured as one "
            "extended ROI, not split."
        )
    if (len(peaks) > 1 and not unexplained) or ext is not None:
        if len(peaks) > 1 and not unexplained and params.split_sources:
            flags.append("shared_signal")
        elif len(peaks) > 1 and not unexplained:
            flags.append("multiple_peaks")
        if models is not None or ext is not None:
            parts = [m for k, m in enumerate(models) if k != own] if models is not None else []
            if ext is not None:
                parts.append(ext)
            others = np.sum(parts, axis=0)
            if models is not None:
                nb_sd += [pm.sd_on_box(g.lo, sub.shape) for k, pm in enumerate(points) if k != own]
                nb_parts += [
                    (m, _amplitude_rel_sd(points[k])) for k, m in enumerate(models) if k != own
                ]
            blocked = np.zeros(sub.shape, dtype=bool)  # voxels given to a neighbour (its own core)
            for k, m in enumerate(models or ()):
                if k == own:
                    continue
                core = m >= (
                    float(params.fraction) * float(m.max()) if params.method == "halfmax" else thr
                )
                blocked |= core & (m > models[own])
            if models is not None:
                # the source's own half-maximum core is never a neighbour's (a strong
                # neighbour's heavy tail can exceed a weak source's model even there)
                blocked &= ~(models[own] >= 0.5 * float(models[own].max()))

            thr0 = thr  # n·SD and k-means: the threshold does not follow the peak

            def split(change=None):
                """The source's own signal, peak, threshold and region once its
                neighbours' models are removed; ``change``: a further signal removed
                (a neighbour's model's uncertainty)."""
                c = sub - others if change is None else sub - others - change
                # the own peak as grown (a lone source's tail-corrected peak stays where it was)
                t = _ascend(c, peaks[own]) if models is not None else at
                p_idx, p_au = _peak_in_box(c, t, psf)
                if params.peak_convention == "voxel":
                    p_au = float(c[t])
                th = float(params.fraction) * p_au if params.method == "halfmax" else thr0
                r_ = _component((c >= th) & ~blocked & region, t, structure)
                if params.method == "halfmax" and r_.any():
                    r_, p_au = reference_peak(
                        c, r_, p_au, params, t, structure, allowed=~blocked & region
                    )
                    th = float(params.fraction) * p_au
                return c, t, p_idx, p_au, th, r_

            corr, top, peak_idx, peak_au, thr, roi = split()
            if not roi.any():
                raise InputError(
                    f"seed {st}: nothing of this source is left above the threshold once its "
                    "neighbours' signal is removed"
                )
            if models is not None:
                warnings.append(
                    f"{len(peaks) - 1} neighbouring source(s) share this region; their "
                    "point-spread model was subtracted."
                )
        else:
            warnings.append(
                f"the region holds {len(peaks)} peaks and was not split (split_sources off)."
            )

    delineated = None  # a faint lone point source delineated on its fitted model (revision 2)
    if (
        params.revision >= 2
        and models is None
        and not unexplained
        and psf is not None
        and curve is None
        and params.method == "halfmax"
        and params.peak_convention == "subvoxel"
        and math.isfinite(noise)
        and noise > 0
        and peak_au < _MODEL_SNR * noise
    ):
        delineated = _model_delineation(
            corr, at, psf, params, structure, float(np.prod(volume.spacing_mm)), others, noise
        )
        if delineated is not None:
            roi, thr, peak_idx, peak_au = (delineated[k] for k in ("roi", "thr", "idx", "peak"))
    if s.fit is None:
        s.fit = dict(
            lo=g.lo,
            sub=sub,
            region=region,
            at=at,
            peaks_img=peaks_img,
            model=s.own_model,
            hw=_half_widths(s.sm, at),
            own_peak=np.asarray(s.own_peak),
        )
    top_i = np.unravel_index(int(np.argmax(np.where(roi, corr, -np.inf))), corr.shape)
    return SimpleNamespace(
        s=s,
        ext=ext,
        nb_sd=nb_sd,
        nb_parts=nb_parts,
        flags=flags,
        warnings=warnings,
        corr=corr,
        others=others,
        blocked=blocked,
        thr=thr,
        peak_idx=peak_idx,
        peak_au=peak_au,
        roi=roi,
        split=split,
        delineated=delineated,
        peak_voxel=tuple(int(v) for v in np.asarray(top_i) + g.lo),
    )


def _complete(L) -> dict:
    """Stage 3 of :func:`one_roi`: the statistics, sub-voxel totals and interval terms
    of a delineated source (``L`` from :func:`_delineate`)."""
    from mpi_viewer.roi._subvoxel import subvoxel_stats

    s = L.s
    volume, arr, params, noise, structure, psf = (
        s.volume,
        s.arr,
        s.params,
        s.noise,
        s.structure,
        s.psf,
    )
    seed, g, unexplained = s.seed, s.g, s.unexplained
    curve = params.saturation_curve
    ext, nb_sd, nb_parts, flags, warnings = L.ext, L.nb_sd, L.nb_parts, L.flags, L.warnings
    corr, others, blocked, thr = L.corr, L.others, L.blocked, L.thr
    peak_idx, peak_au, roi, split, delineated = L.peak_idx, L.peak_au, L.roi, L.split, L.delineated
    neighbour = 0.0
    if others is not None:
        neighbour = float(others[roi].astype(np.float64).sum()) * float(np.prod(volume.spacing_mm))
    stats = region_stats(
        volume, arr, corr, roi, g.lo, noise, curve, peak_idx=peak_idx, peak_au=peak_au
    )
    # total and size integrated at sub-voxel resolution (see mpi_viewer.roi._subvoxel)
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
    revised = params.revision >= 2  # measurement revision 2: the additive corrections below
    if delineated is not None:  # a faint lone source: its model-placed region's totals
        fine = delineated["fine"]
    if revised:
        # revision 2: total, size and mean are those of the written voxel set (what a user
        # re-measures from the mask); the sub-voxel integration of the same threshold
        # surface is reported beside them and is what the calibration uses
        stats.update(
            total_signal_subvoxel=fine["total"] if fine is not None else stats["total_signal"],
            size_subvoxel=fine["size"] if fine is not None else stats["size"],
        )
    elif fine is not None:  # revision 1: the sub-voxel integration in place of the voxel set's
        stats.update(total_signal=fine["total"], size=fine["size"], mean_au=fine["mean"])
        neighbour = fine["neighbour"]
    neighbour_sd = 0.0
    if others is not None and revised:
        var = sum(np.square(v, dtype=np.float64) for v in nb_sd if v is not None)
        sub_sum = abs(float(others[roi].astype(np.float64).sum()))
        u_noise = (
            math.sqrt(float(np.sum(var[roi]))) / sub_sum
            if isinstance(var, np.ndarray) and sub_sum > 0
            else 0.0
        )
        neighbour_sd = _subtraction_sd(
            split,
            [(m, math.hypot(u_noise, NEIGHBOUR_MODEL_REL_SD, u)) for m, u in nb_parts],
            structure,
            float(np.prod(volume.spacing_mm)),
            blocked,
        )
    delineation_sd = delineated["sd"] if delineated is not None else 0.0
    if (
        delineated is None
        and params.revision >= 2
        and params.method == "halfmax"
        and not unexplained
        and math.isfinite(noise)
        and noise > 0
    ):
        delineation_sd = _threshold_sd(
            corr,
            tuple(np.asarray(stats["_peak_voxel"]) - g.lo),
            peak_au,
            thr,
            params,
            structure,
            float(np.prod(volume.spacing_mm)),
            blocked,
            noise,
            psf,
        )
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
    warnings += stats.pop("warnings")
    return dict(
        seed_mm=seed,
        **stats,
        threshold_au=float(thr),
        method=params.method,
        neighbour_signal=neighbour,
        neighbour_signal_sd=neighbour_sd,
        delineation_sd=delineation_sd,
        flags=flags,
        warnings=warnings,
        _fit=s.fit,
    )


#: Systematic relative uncertainty (1 SD) of a neighbour's point-spread model where it
#: is subtracted from another source's ROI, beyond the measured template's own noise
#: (which is propagated voxel by voxel). On the noise-free Langevin demo the measured
#: PSF leaves the weak source beside the strong one at −1.4 %, what scaling the strong's
#: model by 0.12 % does (the template is sampled on the grid and cut at its box); 0.2 %
#: is that with a margin. A weak source's total is very sensitive to it (×11 on the demo:
#: its threshold sits on the strong's tail), a lone source's not at all.
NEIGHBOUR_MODEL_REL_SD = 0.002


def _amplitude_rel_sd(pm) -> float:
    """Relative SD of a neighbour's fitted amplitude (0 when not known)."""
    a, sd = float(pm.amplitude), getattr(pm, "amplitude_sd", None)
    if sd is None or not (math.isfinite(sd) and a > 0):
        return 0.0
    return float(sd) / a


def _subtraction_sd(split, parts, structure, voxel_size: float, blocked) -> float:
    """SD (a.u.·mm³) of an ROI's total due to the uncertainty of its neighbours' models.

    ``parts``: each neighbour's model on the box and its relative SD ``u`` (1 SD: the
    template's noise, :data:`NEIGHBOUR_MODEL_REL_SD` and the SD of the amplitude it was
    fitted with — a weak neighbour's model, fitted over a strong source's tail, is far
    less certain than a strong one's). Each model in turn is scaled by ``1 ± u`` and the
    whole delineation (peak, threshold, region, sub-voxel total) repeated (``split``):
    half the spread of the two totals is that neighbour's share, the shares add in
    quadrature (independent fits). That is the model's effect on the total,
    region and threshold included — far more than the signal subtracted inside the
    final ROI when the source's threshold lies on a neighbour's tail.
    """
    from mpi_viewer.roi._subvoxel import subvoxel_stats

    parts = [(m, u) for m, u in parts if u > 0]
    if not parts:
        return 0.0

    def total(res) -> float:
        c, t, _p_idx, _p_au, th, r_ = res
        if not r_.any():
            return 0.0
        fine = subvoxel_stats(c, r_, th, t, structure, voxel_size=voxel_size, blocked=blocked)
        return (
            fine["total"]
            if fine is not None
            else float(c[r_].astype(np.float64).sum()) * voxel_size
        )

    var = 0.0
    for m, u in parts:
        var += (0.5 * (total(split(u * m)) - total(split(-u * m)))) ** 2
    return math.sqrt(var)


def _threshold_sd(corr, top, peak, thr, params, structure, voxel_size, blocked, noise, psf):
    """SD (a.u.·mm³) of a half-maximum ROI's total from its threshold's jitter.

    Why: the threshold is ``fraction ×`` the (noisy) reference peak, so the region's
    boundary moves with the peak's noise; on a source with heavy point-spread tails
    the total changes by ``dT/dθ × SD(θ)``, several times the summed voxels' own noise
    (on the demo over realisations: the strong source's total correlates with its peak
    at r = −0.95, an SD of 0.2 % against 0.03 % from the voxels). The slope is the
    symmetric finite difference of the sub-voxel total at ``θ ± 1 %`` (same source,
    same neighbours given away), ``SD(θ) = fraction × SD(peak)``: the template fit's
    amplitude SD (:func:`mpi_viewer.roi._psf.fit_template`) when the reference peak is
    the fitted one, the noise SD when it is a voxel's value (the brightest voxel above
    the fit, or no template), their mixture by the chance that the peak voxel's noise
    lifts it above the fit when it lies within a few noise SDs of it.
    """
    from mpi_viewer.roi._subvoxel import subvoxel_stats

    if not (math.isfinite(thr) and thr > 0 and math.isfinite(peak) and peak > 0):
        return 0.0
    if not np.isfinite(corr[top]) or not corr[top] >= thr:
        return 0.0
    fitted = (
        _peak_in_box(corr, top, psf, fitted_only=True, with_sd=True) if psf is not None else None
    )
    sd_peak = float(noise)
    near = corr[tuple(slice(max(i - 1, 0), i + 2) for i in top)]
    voxel = bool(np.any(near.astype(np.float64) == float(peak)))  # a voxel's value is the peak
    if fitted is not None and fitted[2] is not None and not voxel:
        # the reference is max(fit, brightest voxel): a voxel takes over with the
        # probability that its noise lifts it above the fit (a source centred on a
        # voxel, e.g. the demo's strong one: 896 against a 899 fit at noise SD 1.5)
        gap = (float(fitted[1]) - near[np.isfinite(near)].astype(np.float64)) / float(noise)
        below = np.prod([0.5 * math.erfc(-g / math.sqrt(2)) for g in gap])  # Φ(gap)
        p = 1.0 - float(below)
        sd_peak = math.sqrt(p * noise**2 + (1 - p) * min(float(fitted[2]), noise) ** 2)
    allowed = np.isfinite(corr) if blocked is None else np.isfinite(corr) & ~blocked

    def total(t: float) -> float | None:
        r = _component((corr >= t) & allowed, top, structure)
        if not r.any():
            return None
        fine = subvoxel_stats(corr, r, t, top, structure, voxel_size=voxel_size, blocked=blocked)
        return (
            fine["total"]
            if fine is not None
            else float(corr[r].astype(np.float64).sum()) * voxel_size
        )

    step = 0.01 * thr
    hi, lo = total(thr + step), total(thr - step)
    if hi is None or lo is None:
        return 0.0
    return abs(hi - lo) / (2 * step) * float(params.fraction) * sd_peak


#: Below this peak SNR a lone point source is delineated on its fitted point-spread
#: model (measurement revision 2, :func:`_model_delineation`).
_MODEL_SNR = 30.0


def _model_delineation(corr, at, psf, params, structure, voxel_size, others, noise):
    """A faint lone point source's half-maximum ROI placed by its fitted model.

    Why: near the detection limit the noise shapes a thresholded ROI twice. The
    reference peak is never below the region's brightest voxel, and the brightest of
    the ~30 voxels around a faint peak exceeds the source's maximum by 1–2 noise SDs
    (+16 % on the demo's 0.195 µg source at SNR 6.5): the threshold rises and the
    region shrinks. And the voxels the noise lifts above the threshold join the region
    with the noise that lifted them (+27 % on that source with an unbiased peak). Both
    grow as 1/SNR, so the calibration's brighter vials do not cancel them.

    How: the measured point-spread template is fitted (amplitude, centre, constant) to
    the source's core (:func:`_peak_in_box`; a least-squares amplitude carries no
    max-of-noise bias). The half-maximum region is that model's: ``model ≥ fraction ×
    amplitude`` (which depends on the fitted centre only, not on the amplitude), the
    same region as the noise-free image's up to the template's accuracy. The total is
    the model's sub-voxel integral over it plus the residual (image − model) summed
    over its voxels — the image's own signal over a region the noise did not choose, so
    the noise adds no bias, only its variance. That SD (the residual sum's, plus the
    region's rim moving with the centre — the amplitude's scatter does not move it) is
    returned as ``sd``; the calibration interval carries it.

    Returns a dict (``roi``, ``thr``, ``idx``, ``peak``, ``fine`` as from
    :func:`mpi_viewer.roi._subvoxel.subvoxel_stats` with the corrected total, ``sd``),
    or ``None`` when the template cannot be fitted (then the ROI is the thresholded one).
    """
    from mpi_viewer.roi._psf import PointModel
    from mpi_viewer.roi._subvoxel import subvoxel_stats

    fitted = _peak_in_box(corr, at, psf, fitted_only=True)
    if fitted is None:
        return None
    c_idx, amp = fitted
    if not (math.isfinite(amp) and amp > 0):
        return None
    model = PointModel(float(amp), np.asarray(c_idx, dtype=float), psf=psf).on_box(
        np.zeros(corr.ndim), corr.shape
    )
    thr = float(params.fraction) * float(amp)
    top = tuple(int(v) for v in np.clip(np.round(c_idx), 0, np.asarray(corr.shape) - 1))
    if not model[top] >= thr:
        return None
    roi = _component(model >= thr, top, structure)
    if np.any([np.any(np.take(roi, [0, -1], axis=a)) for a in range(roi.ndim)]):
        return None  # the box cuts it
    fine = subvoxel_stats(model, roi, thr, top, structure, voxel_size=voxel_size, others=others)
    if fine is None:
        return None
    resid = float((corr[roi].astype(np.float64) - model[roi]).sum()) * voxel_size
    total = fine["total"] + resid
    fine = dict(fine, total=total, mean=total / fine["size"])
    # the residual sum's noise; the centre's jitter moves the rim, a second-order change
    sd = float(noise) * math.sqrt(float(roi.sum())) * voxel_size
    return {
        "roi": roi,
        "thr": thr,
        "idx": np.asarray(c_idx),
        "peak": float(amp),
        "fine": fine,
        "sd": sd,
    }


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

    # the FWHM describes a point source; say so when the source is not one: its
    # half-maximum region against the ellipse (ellipsoid) those FWHMs give
    fw = np.asarray(fwhm_zyx, dtype=float)
    hm = _component(
        np.nan_to_num(sub, nan=-np.inf) >= 0.5 * float(peak_au),
        tuple(int(v) for v in top_i),
        _structure(d, "full"),
    )
    hm_size = float(hm.sum()) * vox
    ellipse = (math.pi / 4 if d == 2 else math.pi / 6) * float(np.prod(fw)) if d in (2, 3) else 0.0
    if hm_size > 0 and (
        not np.all(np.isfinite(fw))
        or not (1 / _EXTENDED_RATIO <= hm_size / ellipse <= _EXTENDED_RATIO)
    ):
        flags.append("extended")
        shown = ", ".join(f"{v:.2g}" for v in fw[::-1])
        warnings.append(
            f"not point-like: the half-maximum region ({hm_size:.3g} {'mm2' if d == 2 else 'mm3'}) "
            f"is not the {'ellipse' if d == 2 else 'ellipsoid'} of the FWHM ({shown} mm along "
            f"{'x, y' if d == 2 else 'x, y, z'}); the FWHM describes the profile through the "
            "peak, not the source's size."
        )

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
    psf = image_psf(arr, params, noise)
    # each seed grown and delineated once; its statistics (the costly part) wait until it
    # is known whether its neighbours' tails are subtracted (then it is delineated again)
    firsts: list[tuple[int, object]] = []
    for i, seed in enumerate(seeds):
        try:
            firsts.append(
                (
                    i,
                    _delineate(_start_roi(volume, arr, seed, params, noise, structure, psf=psf)),
                )
            )
        except InputError as exc:
            if on_error == "raise":
                raise
            out.errors.append((i, str(exc)))
    exts = None
    if params.split_sources and len(firsts) > 1:
        exts = _outside_neighbours(params, noise, structure, firsts, psf)
    grown: list[tuple[int, dict]] = []
    for n, (i, first) in enumerate(firsts):
        ext = [firsts[m][1].s.fit["model"] for m in exts[n]] if exts is not None else []
        if not ext:
            grown.append((i, _complete(first)))
            continue
        try:
            r = _complete(_delineate(first.s, ext))
        except InputError as exc:
            r = _complete(first)
            r["warnings"].append(f"neighbouring sources' tails could not be subtracted ({exc}).")
        grown.append((i, r))
    if exts is not None and params.revision >= 2:
        _share_split_sd(grown, exts)
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
    from mpi_viewer.roi._unseeded import flag_unseeded

    flag_unseeded(volume, arr, out, params, noise, psf)
    return out


#: A half-maximum region more than this factor away from its FWHM ellipse is "extended".
_EXTENDED_RATIO = 1.6


#: A neighbour is subtracted when its peak lies within this many of its FWHM of an ROI's box.
_REACH_FWHM = 3.0


def _own_model(fit: dict, structure, psf=None, noise: float = float("nan")):
    """The source's point-source model (image index frame), fitted once on its own box;
    ``None`` when a point source does not explain its region (an extended structure)."""
    from scipy import ndimage as ndi

    from mpi_viewer.roi._split import explained, fit_sources

    if fit["model"] is None and not fit.get("model_tried"):
        fit["model_tried"] = True
        sub = fit["sub"]
        mask = ndi.binary_dilation(fit["region"], structure=structure, iterations=2) & np.isfinite(
            sub
        )
        _, amps, points, rms = fit_sources(
            np.nan_to_num(sub), [fit["at"]], mask, fit["hw"] / math.sqrt(2 * math.log(2)), psf
        )
        if explained(rms, amps[0], noise):
            pm = points[0]
            pm.centre = pm.centre + fit["lo"]
            fit["model"] = pm
    return fit["model"]


def _outside_neighbours(params, noise, structure, firsts, psf):
    """The other sources whose tails reach into each ROI's box, to be subtracted.

    A neighbour whose peak lies in the ROI's own region was already fitted and removed
    (the split path); one whose peak lies outside it (e.g. a weak source 4.3 mm from a
    strong one: the strong's half-maximum region holds no second peak) still adds its
    tail. Each source's point-source model (the measured PSF's, else a Gaussian) is
    fitted once (the split fit's when there was one) and subtracted from every ROI
    whose box lies within ``_REACH_FWHM`` of its FWHM (of the measured PSF's box, when
    larger); :func:`measure_seeds` then delineates that ROI again (:func:`_delineate`).
    ``firsts``: (seed index, first delineation) pairs. Returns, for each of ``firsts``,
    the positions in ``firsts`` of the sources whose models are subtracted from it
    (their models: ``firsts[m][1].s.fit["model"]``).
    """
    fits = [f.s.fit for _, f in firsts]
    reach = _REACH_FWHM
    exts: list[list[int]] = []
    for n, (_i, r) in enumerate(firsts):
        fi = fits[n]
        lo = np.asarray(fi["lo"], dtype=float)
        hi = lo + np.asarray(fi["sub"].shape) - 1
        ext = []
        for m, fj in enumerate(fits):
            if m == n or r.peak_voxel == firsts[m][1].peak_voxel:
                continue
            pj = fj["own_peak"].astype(float)
            if any(np.all(np.abs(pj - q) <= 1.5) for q in fi["peaks_img"]):
                continue
            dist = np.maximum(np.maximum(lo - pj, pj - hi), 0.0)
            inside_psf = psf is not None and np.all(dist <= np.asarray(psf.centre))
            if np.sqrt(np.sum((dist / (2.0 * fj["hw"])) ** 2)) > reach and not inside_psf:
                continue
            mj = _own_model(fj, structure, psf, noise)
            if mj is None:
                continue
            if float(np.abs(mj.on_box(fi["lo"], fi["sub"].shape)).max()) < 1e-5 * abs(
                float(r.peak_au)
            ):
                continue  # its tail is negligible here
            ext.append(m)
        exts.append(ext)
    return exts


def _share_split_sd(grown, exts) -> None:
    """Sources that divide a signal between them share the division's uncertainty.

    Why: a split ROI's ``neighbour_signal_sd`` is computed from its neighbours' models
    (their errors change its region and total). But an error in how a shared signal is
    divided shows with opposite signs in both shares, and a bright source's own figure
    is tiny (the demo's strong source: 0.03 %, from the weak one's model) while it
    reads +0.13 % on the noise-free Langevin demo — about the 19 a.u.·mm³ its weak
    neighbour's share (−1.7 %, whose SD is 26) lacks. So two sources that share a
    signal — each holds the other's peak in its region or has the other's subtracted
    tail > 0.5 % of its own total (a faint source on a strong one's tail does not
    share the strong one's signal) — carry the larger of their two SDs. ``grown``
    is updated in place (``exts``: from :func:`_outside_neighbours`).
    """
    fits = [r["_fit"] for _, r in grown]

    def shares(n: int, m: int) -> bool:
        r = grown[n][1]
        if m in exts[n] and abs(r["neighbour_signal"]) > 0.005 * abs(r["total_signal"]):
            return True
        pm = np.asarray(fits[m]["own_peak"], dtype=float)
        return any(np.all(np.abs(pm - q) <= 1.5) for q in fits[n]["peaks_img"])

    sds = [float(r.get("neighbour_signal_sd", 0.0) or 0.0) for _, r in grown]
    for n, (_i, r) in enumerate(grown):
        partners = [
            m
            for m in range(len(grown))
            if m != n
            and grown[m][1]["_peak_voxel"] != r["_peak_voxel"]
            and shares(n, m)
            and shares(m, n)
        ]
        if partners:
            r["neighbour_signal_sd"] = max([sds[n]] + [sds[m] for m in partners])


def image_psf(arr, params, noise: float):
    """The PSF measured on the image (``params.psf == "measured"``), else ``None`` (Gaussian)."""
    if not params.split_sources or params.psf != "measured":
        return None
    from mpi_viewer.roi._psf import measure_psf

    return measure_psf(arr, noise, revision=params.revision)


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
