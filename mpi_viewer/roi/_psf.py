"""The point-spread function measured from the image itself, and point-source models.

Splitting a weak source from a strong neighbour means subtracting the neighbour's
signal, tails included, from the weak source's region. A Gaussian point-spread model
has no tails: on an MPI whose PSF is the x-space Langevin kernel (Goodwill & Conolly,
IEEE TMI 29:1851, 2010, doi:10.1109/TMI.2010.2052284), with tails falling as 1/r² or
slower, a fitted Gaussian leaves the neighbour's tail in the weak source's ROI (about
9× its own iron on held-out studies). So the PSF is measured from the image:

1. :func:`measure_psf` — the image's bright, isolated, point-like sources (the
   calibration vials, isolated labelled-cell spots): local maxima more than 30 noise
   SDs high with no other maximum within 1.5 FWHM, point-symmetric (a weak neighbour
   hidden on the flank makes a box asymmetric), whose half-maximum region is the
   smallest among those (wide objects such as fiducial wells or vessels are left out).
   Each box (±3 FWHM), background-corrected (median of its outer shell), is shifted by
   cubic B-spline so its sub-voxel peak lies at the box centre and normalised to a
   peak of 1; the part of a box nearer to another maximum than to its own is masked
   out. The template is the voxel-wise mean of the boxes and their point reflections
   (the reflection fills a masked part) weighted by each sample's SNR², leaving out
   values more than 4 noise SDs from the voxel-wise median (a stray tail). Its tails
   are kept as measured, out to the box's edge; its noise SD is kept beside it.
2. :class:`PointModel` — one point source: amplitude × template shifted to its centre
   (cubic spline of the template; zero outside it), or an axis-aligned Gaussian when
   no PSF could be measured.
3. :func:`fit_template` — amplitudes and centres of several sources (+ a constant) by
   least squares with an analytic Jacobian (the template's gradient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mpi_viewer.roi._memo import remembered

#: Sources above this SNR can be PSF samples.
_MIN_SNR = 30.0
#: Box half-size per axis, in FWHM of the sources.
_BOX_FWHM = 3.0
#: A sample's half-maximum region may be at most this much larger than the smallest.
_POINT_LIKE = 1.3
#: At most this many samples are averaged.
_MAX_SAMPLES = 8
#: At most this many voxels enter a template fit.
_MAX_TEMPLATE_FIT_VOXELS = 4000
#: Peaks within 1.5 FWHM of a sample, above this fraction of it, disqualify it.
_NEIGHBOUR_FRACTION = 0.02


@dataclass
class MeasuredPSF:
    """A PSF template measured on the image (peak 1 at the centre index ``centre``)."""

    template: np.ndarray
    centre: np.ndarray  # continuous index of the peak in the template (numpy order)
    samples: list[tuple[int, ...]] = field(default_factory=list)  # image index of each source
    #: SD of the template from its samples' noise (same grid; peak-1 units)
    template_sd: np.ndarray | None = field(default=None, repr=False)
    coef: np.ndarray | None = field(default=None, repr=False)
    grad: list[np.ndarray] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        from scipy import ndimage as ndi

        t = np.asarray(self.template, dtype=np.float64)
        self.coef = ndi.spline_filter(t, order=3, mode="constant")
        self.grad = [
            ndi.spline_filter(g, order=3, mode="constant")
            for g in (np.gradient(t) if t.ndim > 1 else [np.gradient(t)])
        ]

    def values(self, offsets: list[np.ndarray], *, derivative: int | None = None) -> np.ndarray:
        """Template at ``offsets`` (voxels from the source's centre, one array per axis)."""
        from scipy import ndimage as ndi

        coords = [
            np.asarray(o, dtype=np.float64) + c for o, c in zip(offsets, self.centre, strict=True)
        ]
        src = self.coef if derivative is None else self.grad[derivative]
        shape = np.asarray(self.template.shape)
        out = ndi.map_coordinates(src, coords, order=3, mode="constant", cval=0.0, prefilter=False)
        inside = np.ones(out.shape, dtype=bool)
        for a, c in enumerate(coords):
            inside &= (c >= 0) & (c <= shape[a] - 1)
        return np.where(inside, out, 0.0)

    @property
    def fwhm_vox(self) -> np.ndarray:
        """FWHM of the template along each axis (voxels)."""
        if getattr(self, "_fwhm", None) is not None:
            return self._fwhm
        d = self.template.ndim
        out = np.empty(d)
        for a in range(d):
            t = np.linspace(-self.centre[a], self.template.shape[a] - 1 - self.centre[a], 801)
            offs = [t if i == a else np.zeros_like(t) for i in range(d)]
            v = self.values(offs)
            above = t[v >= 0.5 * v.max()]
            out[a] = above.max() - above.min() if above.size else float("nan")
        self._fwhm = out
        return out


@dataclass
class PointModel:
    """One point source's model: ``amplitude`` × PSF centred at ``centre`` (image index).

    ``psf`` is a :class:`MeasuredPSF`, or ``None`` for an axis-aligned Gaussian of SD
    ``sigma`` (voxels, numpy order).
    """

    amplitude: float
    centre: np.ndarray
    psf: MeasuredPSF | None = None
    sigma: np.ndarray | None = None
    #: SD of ``amplitude`` from its fit (the residual RMS through the fit's Jacobian:
    #: noise and misfit, e.g. a neighbour's tail under it); ``None`` when not fitted
    amplitude_sd: float | None = None

    def on_box(self, lo, shape) -> np.ndarray:
        """The model (a.u., float32) on the box ``lo … lo + shape`` of the image."""
        d = len(shape)
        lo = np.asarray(lo, dtype=np.float64)
        if self.psf is None:
            out = np.full((1,) * d, float(self.amplitude), dtype=np.float64)
            for a in range(d):
                t = np.arange(shape[a], dtype=np.float64) + lo[a] - float(self.centre[a])
                prof = np.exp(-0.5 * (t / float(self.sigma[a])) ** 2)
                out = out * prof.reshape(tuple(-1 if i == a else 1 for i in range(d)))
            return out.astype(np.float32)
        offs = [
            g.astype(np.float64) + lo[a] - float(self.centre[a])
            for a, g in enumerate(np.indices(tuple(shape)))
        ]
        return (float(self.amplitude) * self.psf.values(offs)).astype(np.float32)

    def sd_on_box(self, lo, shape) -> np.ndarray | None:
        """SD (a.u.) of the model on the box from the measured template's noise
        (``None`` for a Gaussian model or a template without one)."""
        if self.psf is None or self.psf.template_sd is None:
            return None
        from scipy import ndimage as ndi

        lo = np.asarray(lo, dtype=np.float64)
        coords = [
            g.astype(np.float64) + lo[a] - float(self.centre[a]) + float(self.psf.centre[a])
            for a, g in enumerate(np.indices(tuple(shape)))
        ]
        sd = ndi.map_coordinates(self.psf.template_sd, coords, order=1, mode="constant", cval=0.0)
        return (abs(float(self.amplitude)) * sd).astype(np.float32)


#: The last few images' PSFs (the vials and the targets of one image are measured in
#: separate calls): key → PSF.
_CACHE: dict = {}


def _key(arr: np.ndarray, noise: float, revision: int):
    a = np.asarray(arr)
    step = max(1, a.size // 4096)
    probe = np.ascontiguousarray(a.reshape(-1)[::step]) if a.flags.c_contiguous else None
    if probe is None:
        return None
    import hashlib

    digest = hashlib.sha1(probe.tobytes()).hexdigest()
    return (a.shape, str(a.dtype), float(noise), int(revision), digest)


def measure_psf(arr: np.ndarray, noise: float, *, revision: int = 2) -> MeasuredPSF | None:
    """The image's PSF from its bright, isolated, point-like sources (module docstring).

    Returns ``None`` when the image holds no such source (extended structures only).
    Cached for the last few images (keyed by shape, noise and a regular sample of the
    voxels). ``revision`` (:attr:`mpi_viewer.roi.ROIParams.revision`): 1 — the template is
    the voxel-wise median of the samples; 2 — their SNR²-weighted mean.
    """
    key = _key(arr, noise, revision)
    if key is None:
        return _measure_psf(arr, noise, revision)
    return remembered(_CACHE, key, lambda: _measure_psf(arr, noise, revision), 4)


def _measure_psf(arr: np.ndarray, noise: float, revision: int = 2) -> MeasuredPSF | None:
    from scipy import ndimage as ndi

    from mpi_viewer.roi._fwhm import subvoxel_peak

    a = np.nan_to_num(np.asarray(arr, dtype=np.float32), nan=0.0)
    d = a.ndim
    sm = ndi.gaussian_filter(a, 1.0, mode="nearest")
    if not (math.isfinite(noise) and noise > 0):
        return None
    size = 5
    mx = ndi.maximum_filter(sm, size=size, mode="nearest")
    low = 5.0 * noise
    maxima = np.argwhere((sm == mx) & (sm > low))
    if maxima.shape[0] == 0:
        return None
    vals = sm[tuple(maxima.T)]
    order = np.argsort(-vals)
    maxima, vals = maxima[order], vals[order]
    cands = [k for k in range(len(vals)) if vals[k] >= _MIN_SNR * noise][:40]
    if not cands:
        return None
    shape = np.asarray(a.shape)
    # the half-width (smoothed) of every candidate, and its half-maximum size (raw)
    info = []
    for k in cands:
        p = maxima[k]
        hw = np.ones(d)
        for ax in range(d):
            line = sm[tuple(slice(None) if i == ax else p[i] for i in range(d))]
            top = line[p[ax]]
            r = p[ax]
            while r + 1 < line.size and line[r + 1] >= 0.5 * top:
                r += 1
            left = p[ax]
            while left > 0 and line[left - 1] >= 0.5 * top:
                left -= 1
            hw[ax] = (r - left + 1) / 2.0
        info.append((k, hw))
    med_hw = np.median(np.array([h for _, h in info]), axis=0)
    half = np.clip(np.ceil(2 * _BOX_FWHM * med_hw).astype(int), 4, 24)
    fwhm = 2.0 * med_hw
    centre = half.astype(np.float64)
    # each axis's offsets from the box centre, shaped to broadcast (sums of squares over
    # them are the full grid's, term by term, without building the grid)
    grid = [
        (np.arange(2 * h + 1) - h).reshape(tuple(-1 if i == a else 1 for i in range(d)))
        for a, h in enumerate(half)
    ]
    # smoothing lowers the noise SD by (4π)^(d/4) (Gaussian of SD 1 voxel)
    sm_noise = noise / (4 * math.pi) ** (d / 4)
    good = []
    flip = (slice(None, None, -1),) * d

    def prepared(k):
        """A candidate's box, background-corrected, and its half-maximum size, or None."""
        p = maxima[k]
        lo, hi = p - half, p + half + 1
        clo, chi = np.maximum(lo, 0), np.minimum(hi, shape)
        if np.any(p - clo < fwhm) or np.any(chi - 1 - p < fwhm):
            return None  # the image edge cuts its core: no sample
        # other maxima: none of note in the core (1.5 FWHM); farther ones only mask out
        # the part of the box nearer to them than to this source
        dist = np.sqrt((((maxima - p) / fwhm) ** 2).sum(axis=1))
        near = (dist < 1.5) & (vals >= _NEIGHBOUR_FRACTION * vals[k])
        near[k] = False
        if near.any():
            return None
        valid = np.ones(tuple(2 * half + 1), dtype=bool)
        own = sum((g / f) ** 2 for g, f in zip(grid, fwhm, strict=True))
        for m in np.flatnonzero((dist < 2 * _BOX_FWHM * 1.8) & (np.arange(len(vals)) != k)):
            q = maxima[m] - p
            valid &= sum(((g - qa) / f) ** 2 for g, qa, f in zip(grid, q, fwhm, strict=True)) > own
        # the box, beyond the image edge masked out (the reflection fills it)
        box = np.zeros(tuple(2 * half + 1), dtype=np.float64)
        inner = tuple(slice(c0 - l0, c1 - l0) for c0, c1, l0 in zip(clo, chi, lo, strict=True))
        box[inner] = a[tuple(slice(i, j) for i, j in zip(clo, chi, strict=True))]
        inside = np.zeros(box.shape, dtype=bool)
        inside[inner] = True
        valid &= inside
        shell = np.ones(box.shape, dtype=bool)
        shell[tuple(slice(2, -2) for _ in range(d))] = False
        if not (shell & valid).any():  # the source fills its box: no background around it
            return None
        box = box - float(np.median(box[shell & valid]))
        at = tuple(int(v) for v in half)
        c, pk = subvoxel_peak(box, at)
        pk = max(pk, float(box[at]))
        if not pk > _MIN_SNR * noise:
            return None
        reg = box >= 0.5 * pk
        lab, _ = ndi.label(reg)
        n_half = int((lab == lab[at]).sum())
        box[~inside] = 0.0
        return k, box, valid, c, pk, n_half

    done: dict = {}

    def sample(prep):
        """The candidate centred and normalised, or None when it is not point-symmetric."""
        k, box, valid, c, pk, n_half = prep
        if k in done:
            return done[k]
        shifted = ndi.shift(box, centre - c, order=3, mode="nearest") / pk
        vshift = ndi.shift(valid.astype(np.float32), centre - c, order=0, mode="constant") > 0.5
        # a point source is point-symmetric (x-space and Gaussian PSFs alike): a hidden
        # weak neighbour on the flank (no maximum of its own) makes the box asymmetric
        both = vshift & vshift[flip]
        smd = ndi.gaussian_filter(shifted, 1.0)
        asym = float(np.max(np.abs(smd - smd[flip])[both])) if both.any() else 0.0
        done[k] = None if asym > 0.03 + 6.0 * sm_noise / pk else (k, shifted, vshift, pk, n_half)
        return done[k]

    # the samples: the point-symmetric candidates whose half-maximum region is within
    # _POINT_LIKE of the smallest such region, the brightest _MAX_SAMPLES of them. Only
    # the candidates that can be among them are centred (the costly part): the smallest
    # is found from the smallest regions up, then the brightest within reach of it
    preps = [q for q in (prepared(k) for k, _hw in info) if q is not None]
    smallest = None
    for q in sorted(preps, key=lambda q: q[5]):
        if sample(q) is not None:
            smallest = q[5]
            break
    if smallest is None:
        return None
    good = []
    for q in preps:
        if len(good) >= _MAX_SAMPLES:
            break
        if q[5] <= _POINT_LIKE * smallest and sample(q) is not None:
            good.append(done[q[0]])
    # every sample and its point reflection (the PSF is symmetric): the reflection fills
    # what a neighbour masked out; voxel-wise median, robust to a stray tail
    layers, masks, rel_sd = [], [], []
    for _k, sh, v, pk, _n in good:
        layers += [sh, sh[flip]]
        masks += [v, v[flip]]
        rel_sd += [noise / pk] * 2  # a normalised sample's noise SD
    stack = np.where(np.stack(masks), np.stack(layers), np.nan)
    rel_sd = np.asarray(rel_sd).reshape((-1,) + (1,) * d)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ref = np.nanmedian(stack, axis=0)
            # an inverse-variance (SNR²) weighted mean of the samples that agree with
            # the median within their noise: the median of samples of very different
            # SNR (a 0.5 µg and a 20 µg vial) is as noisy as its middle ones, and that
            # noise, in the tails, is subtracted from a weak neighbour's ROI (its total
            # scattered by ±4 % on the demo); a stray tail (> 4 SD off) is left out
            ref_sd = 1.253 * float(np.median(rel_sd)) / math.sqrt(len(layers))
            ok = np.abs(stack - ref) <= 4.0 * np.sqrt(rel_sd**2 + ref_sd**2)
            w = np.where(ok, 1.0 / rel_sd**2, 0.0)
            wsum = w.sum(axis=0)
            template = np.where(wsum > 0, np.nansum(w * np.nan_to_num(stack), axis=0) / wsum, ref)
            template_var = np.where(wsum > 0, 1.0 / wsum, float(np.max(rel_sd)) ** 2)
            if revision < 2:  # measurement revision 1: the median itself
                template = ref
    template = np.nan_to_num(template, nan=0.0)
    norm = float(template[tuple(half)])
    template /= norm
    template_var = np.nan_to_num(template_var, nan=0.0) / norm**2

    return MeasuredPSF(
        template=template,
        centre=centre,
        samples=[tuple(int(v) for v in maxima[g[0]]) for g in good],
        template_sd=np.sqrt(template_var),
    )


def fit_template(
    sub: np.ndarray,
    peaks: list[tuple[int, ...]],
    fit_mask: np.ndarray,
    psf: MeasuredPSF,
    *,
    max_nfev: int = 40,
    with_models: bool = True,
) -> tuple[list[np.ndarray], list[float], list[PointModel], float]:
    """Fit ``Σ_k A_k · psf(x − c_k) + b`` to ``sub`` where ``fit_mask`` (box index frame).

    Returns
    -------
    models : list of ndarray
        Each source's model on the whole box (float32, without the constant).
    amplitudes : list of float
    points : list of PointModel
        Centres in the box's index frame (the caller shifts them to the image's).
    rms : float
        Root-mean-square residual over ``fit_mask`` (a.u.).
    """
    from scipy.optimize import least_squares

    d = sub.ndim
    n = len(peaks)
    pts = np.nonzero(fit_mask)
    if pts[0].size > _MAX_TEMPLATE_FIT_VOXELS:  # a regular subsample: fast, and unbiased
        step = pts[0].size // _MAX_TEMPLATE_FIT_VOXELS + 1
        pts = tuple(p[::step] for p in pts)
    coords = [p.astype(np.float64) for p in pts]
    y = sub[pts].astype(np.float64)
    npar = 1 + d
    memo: dict = {}

    def values(c, derivative=None):
        """The template (or its derivative) at the fit voxels for a source at ``c``:
        computed once per point of the solver (its residuals and Jacobian share them)."""
        key = (tuple(float(v) for v in c), derivative)
        if key not in memo:
            if len(memo) > 4 * (d + 1) * n:
                memo.clear()
            memo[key] = psf.values([coords[a] - c[a] for a in range(d)], derivative=derivative)
        return memo[key]

    def unpack(q):
        return [(q[k * npar], q[k * npar + 1 : (k + 1) * npar]) for k in range(n)], q[-1]

    def model(q):
        srcs, b = unpack(q)
        out = np.full(y.shape, b)
        for amp, c in srcs:
            out += amp * values(c)
        return out

    def jac(q):
        srcs, _ = unpack(q)
        j = np.empty((y.size, n * npar + 1))
        j[:, -1] = 1.0
        for k, (amp, c) in enumerate(srcs):
            j[:, k * npar] = values(c)
            for a in range(d):
                j[:, k * npar + 1 + a] = -amp * values(c, derivative=a)
        return j

    x0, lo, hi = [], [], []
    for p in peaks:
        amp = max(float(sub[p]), 1e-9)
        x0 += [amp, *map(float, p)]
        lo += [0.0, *(np.asarray(p) - 2.0)]
        hi += [10.0 * amp, *(np.asarray(p) + 2.0)]
    scale = max(float(np.max(np.abs(y))), 1e-9)
    x0.append(0.0)
    lo.append(-scale)
    hi.append(scale)
    x0 = np.clip(np.asarray(x0), np.asarray(lo) + 1e-9, np.asarray(hi) - 1e-9)
    res = least_squares(
        lambda q: model(q) - y,
        x0,
        jac=jac,
        bounds=(lo, hi),
        x_scale="jac",
        max_nfev=max_nfev,
        tr_solver="lsmr",  # no dense SVD: fast and the same whatever the BLAS threads
    )
    srcs, _ = unpack(res.x)
    rms = float(np.sqrt(np.mean(res.fun**2)))
    amp_sd = [None] * n
    # the amplitudes' SDs: residual RMS × sqrt(diag((JᵀJ)⁻¹)) (Gauss–Newton)
    try:
        jj = np.asarray(res.jac.T @ res.jac) if not hasattr(res.jac, "toarray") else None
        if jj is not None:
            dof = max(y.size - (n * npar + 1), 1)
            s_res = float(np.sqrt(np.sum(res.fun**2) / dof))
            cov = np.linalg.pinv(jj)
            amp_sd = [s_res * math.sqrt(max(float(cov[k * npar, k * npar]), 0.0)) for k in range(n)]
    except (ValueError, np.linalg.LinAlgError):  # pragma: no cover - degenerate fit
        pass
    models, amps, points = [], [], []
    for (amp, c), a_sd in zip(srcs, amp_sd, strict=True):
        pm = PointModel(float(amp), np.asarray(c, dtype=np.float64), psf=psf, amplitude_sd=a_sd)
        models.append(pm.on_box(np.zeros(d), sub.shape) if with_models else None)
        amps.append(float(amp))
        points.append(pm)
    return models, amps, points, rms
