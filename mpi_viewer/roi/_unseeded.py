"""Hot spots no seed measures, inside an ROI or near enough that their tails add to it.

A weak source 4 mm from a strong one (Sehl et al., Tomography 6:315, 2020, fig. 5,
doi:10.18383/j.tom.2020.00043) is easily missed: often it has no maximum of its own,
only a shoulder on the strong one's flank. When only the strong one is seeded, its
signal is counted in the strong one's ROI: all of it when the ROI reaches it (an n·SD
region 4 mm wide), its tail when it does not (a half-maximum region: +4.8 % on the
Langevin demo: its tail lifts the strong one's flank above the threshold). Here, for
every thresholded ROI:

1. the box around the ROI, widened by the reach of the point-spread function (the part
   of the measured PSF distinguishable from zero, :func:`_significant`; else two FWHM),
   holds the seeded sources' point-source models: the measured PSF at each ROI's
   sub-voxel peak and amplitude (fitted on its core when the ROI was grown), else
   Gaussians fitted on their cores;
2. what they leave (the residual, lightly smoothed) is searched for hot spots:
   connected parts above half ``min_snr`` × the noise SD, outside the seeded sources'
   half-maximum cores and away from the box's edge;
3. each hot spot is fitted as a point source of the image's own PSF together with the
   seeded sources near it: its position is that fit's centre, not the maximum of a
   curvature filter (which the strong neighbour's heavy x-space tail dragged 1.1 mm
   along the drive axis). It is kept when its amplitude is at least ``min_snr`` × the
   noise SD and :data:`_MISFIT` of the seeded model there, and when the residual has
   no match on the other side of the nearest seeded source (the symmetric misfit of a
   source wider than a point, such as a fiducial well);
4. a kept hot spot is reported on the ROI when its fitted peak lies inside the ROI, or
   when it raises the ROI's total by more than :data:`TAIL_FRACTION` (:func:`_share`:
   the total over that of the region grown again at the same threshold without it).

Extended structures (an ROI flagged ``multiple_peaks``: maxima that point sources do
not explain) are left out: their maxima are parts of one object, already remarked on.
Sources closer to a seeded peak than about half its FWHM are not told apart from it.
"""

from __future__ import annotations

import math

import numpy as np

from mpi_viewer.roi._memo import owned, remembered

#: An unseeded source outside an ROI is reported when it raises the ROI's total by more
#: than this fraction.
TAIL_FRACTION = 0.01
#: Largest search box (voxels): the margin around a larger ROI is narrowed.
_MAX_BOX_VOXELS = 1 << 21
#: At most this many hot spots per ROI are fitted (the brightest).
_MAX_CANDIDATES = 4
#: A hot spot must be at least this fraction of the seeded sources' model where it lies
#: (twice the misfit a point-source model is allowed, :data:`mpi_viewer.roi._split.GOF_FRACTION`).
_MISFIT = 0.1


def _smooth(sub: np.ndarray) -> np.ndarray:
    from mpi_viewer.roi._grow import _smooth as smooth

    return smooth(sub)


#: The last few measured PSFs' significant parts: id(psf) → (psf, its significant part, reach).
_SIGNIFICANT: dict = {}


def _significant(psf):
    """The measured PSF where it is distinguishable from zero, and its reach (voxels).

    The template is a median of a few noisy sources: beyond its real tails it holds
    noise (~0.2 % of its peak per voxel on the demo), which summed over an ROI 13 mm
    away made a fiducial well "add 3 %" to a faint vial's total. Voxels where the
    lightly smoothed template is within 4 noise SDs of zero (the noise measured from
    the template's own high-pass, robustly) are set to zero; what is kept is the part
    connected to the peak. Returns ``(psf, reach)``, ``reach`` the largest offset
    (voxels, numpy order) of a kept voxel from the centre.
    """
    from scipy import ndimage as ndi

    from mpi_viewer.roi._psf import MeasuredPSF

    hit = _SIGNIFICANT.get(id(psf))
    if hit is not None and hit[0] is psf:
        return hit[1], hit[2]
    t = np.asarray(psf.template, dtype=np.float64)
    d = t.ndim
    ts = ndi.gaussian_filter(t, 1.0, mode="constant")
    hp = t - ts
    # white noise of SD s leaves s·√(1 − 2 g(0) + Σg²) in the high-pass, s·(4π)^(−d/4) smoothed
    white = (
        1.4826
        * float(np.median(np.abs(hp - np.median(hp))))
        / math.sqrt(1 - 2 * (2 * math.pi) ** (-d / 2) + (4 * math.pi) ** (-d / 2))
    )
    keep = np.abs(ts) > 4.0 * white * (4 * math.pi) ** (-d / 4)
    at = tuple(int(v) for v in np.rint(psf.centre))
    lab, _ = ndi.label(keep)
    keep = lab == lab[at] if keep[at] else np.ones(t.shape, dtype=bool)
    sig = MeasuredPSF(template=np.where(keep, t, 0.0), centre=psf.centre, samples=psf.samples)
    idx = np.nonzero(keep)
    reach = np.array(
        [int(np.ceil(np.abs(i - c).max())) + 1 for i, c in zip(idx, psf.centre, strict=True)]
    )
    if len(_SIGNIFICANT) >= 4:
        _SIGNIFICANT.pop(next(iter(_SIGNIFICANT)))
    _SIGNIFICANT[id(psf)] = (psf, sig, reach)
    return sig, reach


def _render(pm, shape) -> np.ndarray:
    """A point model on a box of ``shape`` (its centre in that box's index frame), fast:
    the measured template shifted by linear interpolation (enough to find hot spots
    in the residual; amounts use :func:`_on_voxels`)."""
    from scipy import ndimage as ndi

    if pm.psf is None:
        return pm.on_box(np.zeros(len(shape)), shape)
    out = np.zeros(tuple(shape), dtype=np.float32)
    t = np.asarray(pm.psf.template, dtype=np.float32)
    c = np.asarray(pm.centre, dtype=float)
    ic = np.rint(c).astype(int)
    # the shifted template depends only on the centre's fraction of a voxel: the same
    # source rendered in every ROI box that holds it is shifted once
    frac = c - ic
    key = tuple(float(v) for v in frac)
    moved = remembered(  # a template each
        owned(pm.psf, "_moved"),
        key,
        lambda: ndi.shift(t, frac, order=1, mode="constant", cval=0.0),
        16,
    )
    start = ic - np.rint(np.asarray(pm.psf.centre)).astype(int)  # box index of template[0]
    a = np.maximum(start, 0)
    b = np.minimum(start + np.asarray(t.shape), np.asarray(shape))
    if np.any(b <= a):
        return out
    out[tuple(slice(i, j) for i, j in zip(a, b, strict=True))] = (
        float(pm.amplitude)
        * moved[tuple(slice(i, j) for i, j in zip(a - start, b - start, strict=True))]
    )
    return out


def _on_voxels(pm, where: np.ndarray) -> np.ndarray:
    """A point model (centre in the box's index frame) at the voxels ``where`` of the box."""
    pts = [p.astype(np.float64) for p in np.nonzero(where)]
    c = np.asarray(pm.centre, dtype=float)
    if pm.psf is None:
        e = sum(((p - ca) / float(s)) ** 2 for p, ca, s in zip(pts, c, pm.sigma, strict=True))
        return float(pm.amplitude) * np.exp(-0.5 * e)
    return float(pm.amplitude) * pm.psf.values([p - ca for p, ca in zip(pts, c, strict=True)])


def _share(sub, region, pm, threshold: float, at, structure) -> float:
    """How much a source (point model ``pm``) raises the total of an ROI (``region`` of
    ``sub``, grown from ``at`` at ``threshold``): the total over that of the region grown
    again without it, minus 1. Its own signal in the region counts, and so does the
    region's spread towards it (its tail lifts the flank above the threshold)."""
    from mpi_viewer.roi._grow import _component

    model = np.zeros(sub.shape, dtype=np.float64)
    model[region] = _on_voxels(pm, region)
    corr = sub.astype(np.float64) - model
    cand = region & (corr >= threshold)
    if not cand[tuple(at)]:
        if not cand.any():
            return float("inf")
        at = np.unravel_index(int(np.argmax(np.where(cand, corr, -np.inf))), sub.shape)
    again = _component(cand, tuple(int(v) for v in at), structure)
    new = float(corr[again].sum())
    old = float(sub[region].astype(np.float64).sum())
    return old / new - 1.0 if new > 0 else float("inf")


def _mirrored(resid, c, seeded, hw) -> bool:
    """Whether the residual at ``c`` has its match on the other side of the nearest seeded
    source (within two FWHM): the symmetric misfit of a source wider than a point (a
    fiducial well), not a second source, which leaves nothing there."""
    c = np.asarray(c, dtype=float)
    fwhm = 2.0 * np.maximum(np.asarray(hw, dtype=float), 0.5)
    dist = [float(np.sqrt(np.sum(((c - o) / fwhm) ** 2))) for o in seeded]
    k = int(np.argmin(dist))
    if dist[k] > 2.0:
        return False

    def near(p):
        i = np.rint(p).astype(int)
        if np.any(i < 0) or np.any(i >= resid.shape):
            return None
        a, b = np.maximum(i - 1, 0), np.minimum(i + 2, resid.shape)
        return float(resid[tuple(slice(x, y) for x, y in zip(a, b, strict=True))].max())

    here, there = near(c), near(2 * np.asarray(seeded[k]) - c)
    return here is not None and there is not None and there >= 0.5 * here


def _core(shape, at, half) -> np.ndarray:
    """Boolean box of ``±half`` voxels around ``at``."""
    out = np.zeros(tuple(shape), dtype=bool)
    a = np.maximum(np.asarray(at) - half, 0)
    b = np.minimum(np.asarray(at) + half + 1, np.asarray(shape))
    out[tuple(slice(int(i), int(j)) for i, j in zip(a, b, strict=True))] = True
    return out


def flag_unseeded(volume, arr, results, params, noise: float, psf=None) -> None:
    """Flag ``unseeded_peak`` on every ROI of ``results`` holding, or taking in the tail
    of, a source no seed measures (module docstring); the warning gives its position
    (mm), its distance from the ROI's peak, its share of the ROI's total and the seed to
    add. ``psf``: the image's measured PSF (:func:`mpi_viewer.roi._psf.measure_psf`),
    else ``None`` (Gaussian models)."""
    from scipy import ndimage as ndi

    from mpi_viewer.roi._grow import _box, _half_widths, _structure
    from mpi_viewer.roi._psf import PointModel
    from mpi_viewer.roi._split import fit_sources

    d = arr.ndim
    if not (math.isfinite(noise) and noise > 0) or not results:
        return
    shape = np.asarray(arr.shape)
    voxel = float(np.prod(volume.spacing_mm))
    floor = float(params.min_snr) * noise
    structure = _structure(d, params.connectivity)
    if psf is not None:
        psf, psf_reach = _significant(psf)
    own = [np.asarray(volume.physical_to_index([r.peak_mm])[0], dtype=float) for r in results]
    for r, pk in zip(results, own, strict=True):
        mask = getattr(r, "mask", None)
        if mask is None or not mask.array.any() or r.method == "manual":
            continue
        if "multiple_peaks" in r.flags:
            continue  # an extended structure (or split off): its maxima are remarked on
        mlo = np.asarray(mask.start)
        mhi = mlo + np.asarray(mask.array.shape)
        # the source's width where it peaks (half widths of the smoothed signal)
        ipk = np.clip(np.rint(pk).astype(int), 0, shape - 1)
        plo, phi = np.maximum(ipk - 8, 0), np.minimum(ipk + 9, shape)
        psm = _smooth(_box(arr, plo, phi, params.saturation_curve))
        hw = _half_widths(psm, tuple(ipk - plo))
        sigma = hw / math.sqrt(2 * math.log(2))
        half = np.maximum(np.ceil(hw).astype(int), 2)
        reach = (
            psf_reach
            if psf is not None
            else np.ceil(2.0 * 2.3548 * sigma).astype(int)  # two FWHM of a Gaussian
        )
        pad = reach.copy()
        while np.prod(np.minimum(mhi + pad, shape) - np.maximum(mlo - pad, 0)) > _MAX_BOX_VOXELS:
            pad = pad // 2
        lo = np.maximum(mlo - pad, 0)
        hi = np.minimum(mhi + pad, shape)
        sub = np.nan_to_num(_box(arr, lo, hi, params.saturation_curve), nan=0.0)
        region = np.zeros(sub.shape, dtype=bool)
        off = mlo - lo
        region[tuple(slice(o, o + n) for o, n in zip(off, mask.array.shape, strict=True))] = (
            mask.array
        )
        # 1. the seeded sources whose peak lies in the box: their point-source models (the
        # measured PSF at each ROI's sub-voxel peak and amplitude, fitted on its core when
        # the ROI was grown; Gaussians fitted here when no PSF was measured)
        inbox = [
            j for j, q in enumerate(own) if np.all(np.rint(q) >= lo) and np.all(np.rint(q) < hi)
        ]
        if not inbox:  # pragma: no cover - the ROI's own peak lies in its box
            continue
        seeded = [tuple(int(v) for v in np.rint(own[j]) - lo) for j in inbox]
        cores = np.zeros(sub.shape, dtype=bool)
        for q in seeded:
            cores |= _core(sub.shape, q, half)
        if psf is not None:
            points = [PointModel(float(results[j].peak_au), own[j] - lo, psf) for j in inbox]
        else:
            _, _, points, _ = fit_sources(sub, seeded, cores, sigma, None)
        known = np.sum([_render(pm, sub.shape) for pm in points], axis=0)
        # 2. hot spots in what they leave, away from their cores and the box's edge (a
        # source beyond the box is out of reach)
        resid = _smooth(sub - known)
        hot = (resid >= 0.5 * floor) & ~cores
        lab, n = ndi.label(hot, structure=ndi.generate_binary_structure(d, d))
        if n == 0:
            continue
        total = abs(float(r.total_signal))
        cands = []
        for p in ndi.maximum_position(resid, lab, range(1, n + 1)):
            p = tuple(int(v) for v in p)
            if any(
                (p[a] == 0 and lo[a] > 0) or (p[a] == sub.shape[a] - 1 and hi[a] < shape[a])
                for a in range(d)
            ):
                continue
            if resid[p] < _MISFIT * float(known[p]):
                continue  # the seeded sources' model misfit (checked again once fitted)
            # a first guess of what it adds to the ROI (its smoothed peak as amplitude)
            guess = PointModel(float(resid[p]), np.asarray(p, float), psf, sigma)
            added = float(_on_voxels(guess, region).sum()) * voxel
            if region[p] or added > 0.25 * TAIL_FRACTION * total:
                cands.append(p)
        if not cands:
            continue
        cands = sorted(cands, key=lambda p: -resid[p])[:_MAX_CANDIDATES]
        # 3. each hot spot fitted as a point source together with the seeded ones
        near = [q for q in seeded if any(np.all(np.abs(np.subtract(q, p)) <= reach) for p in cands)]
        fit_mask = np.zeros(sub.shape, dtype=bool)
        for q in near + cands:
            fit_mask |= _core(sub.shape, q, half)
        _, amps, points, _ = fit_sources(sub, near + cands, fit_mask, sigma, psf)
        ns = len(near)
        for pm, amp in zip(points[ns:], amps[ns:], strict=True):
            c = np.asarray(pm.centre, dtype=float)
            ci = tuple(int(v) for v in np.clip(np.rint(c), 0, np.asarray(sub.shape) - 1))
            if amp < floor or amp < _MISFIT * float(known[ci]):
                continue  # noise, or the seeded sources' model misfit
            if any(np.all(np.abs(c + lo - o) <= np.maximum(2.0, sigma)) for o in own):
                continue  # a seeded source's own peak
            if _mirrored(resid, c, [own[j] - lo for j in inbox], hw):
                continue  # a seeded source wider than a point (a fiducial well): its misfit
            # 4. inside the ROI, or its tail raises the ROI's total
            inside = bool(region[ci])
            share = _share(sub, region, pm, float(r.threshold_au), ipk - lo, structure)
            if not inside and not share > TAIL_FRACTION:
                continue
            xyz = volume.index_to_physical([c + lo])[0]
            _warn(r, xyz, amp, 100.0 * share, inside)


def _warn(r, xyz, amp: float, pct: float, inside: bool) -> None:
    """Flag ``r`` and tell the user where the unseeded source is and the seed to add."""
    where = ", ".join(f"{v:.1f}" for v in xyz)
    seed = ",".join(f"{v:.1f}" for v in xyz)
    dist = float(np.linalg.norm(np.subtract(xyz, r.peak_mm)))
    if "unseeded_peak" not in r.flags:
        r.flags.append("unseeded_peak")
    if inside:
        r.warnings.append(
            f"unseeded source at ({where}) mm ({amp:.3g} a.u.) inside this ROI, {dist:.1f} mm "
            f"from its peak: its signal is counted here (+{pct:.1f} % on the total); seed it "
            f"too (--seed={seed}) to measure it on its own."
        )
    else:
        r.warnings.append(
            f"unseeded source at ({where}) mm ({amp:.3g} a.u.), {dist:.1f} mm from this ROI's "
            f"peak, outside it: its tail adds {pct:.1f} % to the total; seed it too "
            f"(--seed={seed}) to have it subtracted."
        )
