"""Closed-form point-set registration (private; see :mod:`mpi_viewer.registration`).

All functions work on (n, d) arrays, d = 2 or 3, and return ``(matrix, translation)``
with ``moving ≈ matrix @ fixed + translation``.

References
----------
Umeyama S. Least-squares estimation of transformation parameters between two point
patterns. IEEE TPAMI 13(4):376-380, 1991. doi:10.1109/34.88573
Fitzpatrick JM, West JB, Maurer CR. Predicting error in rigid-body point-based
registration. IEEE TMI 17(5):694-702, 1998. doi:10.1109/42.736021
"""

from __future__ import annotations

import numpy as np

from mpi_viewer.errors import InputError

#: Singular-value ratio below which a configuration counts as degenerate (error) …
DEGENERATE_RATIO = 1e-6


#: … and below which it counts as nearly degenerate (warning).
NEAR_DEGENERATE_RATIO = 0.05
MODELS = ("rigid", "similarity", "affine")


def min_pairs(model: str, d: int) -> int:
    """Fewest point pairs that determine ``model`` in ``d`` dimensions."""
    if model == "affine":
        return d + 1
    return 3 if d == 3 else 2


def spread(points: np.ndarray) -> np.ndarray:
    """Singular values of the centred points, largest first (RMS spread along principal axes × √n)."""
    c = points - points.mean(axis=0)
    return np.linalg.svd(c, compute_uv=False)


def check_configuration(points: np.ndarray, model: str, what: str) -> list[str]:
    """Raise InputError for a degenerate configuration, return warnings for a nearly degenerate one.

    Rigid and similarity need points that are not all on a line (3-D) or all the
    same point (2-D); affine needs points not all in a plane (3-D) or on a line (2-D).
    """
    d = points.shape[1]
    s = spread(points)
    if s.size == 0 or s[0] <= 1e-12 * max(1.0, float(np.abs(points).max(initial=0.0))):
        raise InputError(f"{what}: all points are at the same position")
    # index of the singular value that must not vanish
    k = d - 1 if model == "affine" else (1 if d == 3 else 0)
    if s.size <= k:
        ratio = 0.0
    else:
        ratio = float(s[k] / s[0])
    shape = {("affine", 3): "coplanar", ("affine", 2): "collinear"}.get((model, d), "collinear")
    if ratio < DEGENERATE_RATIO:
        raise InputError(
            f"{what}: the points are {shape}; the {model} model needs points that are not"
        )
    if ratio < NEAR_DEGENERATE_RATIO:
        return [
            f"{what}: the points are nearly {shape} (spread ratio {ratio:.3f}); "
            f"the {model} fit is poorly determined"
        ]
    return []


def fit_rigid(
    fixed: np.ndarray, moving: np.ndarray, *, scale: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares rotation (+ isotropic scale) and translation, never a reflection (Umeyama 1991)."""
    mf = fixed.mean(axis=0)
    mm = moving.mean(axis=0)
    xf = fixed - mf
    xm = moving - mm
    cov = xm.T @ xf / len(fixed)
    u, sv, vt = np.linalg.svd(cov)
    dsign = np.ones(len(sv))
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        dsign[-1] = -1.0
    r = u @ np.diag(dsign) @ vt
    c = 1.0
    if scale:
        var_f = float((xf**2).sum() / len(fixed))
        c = float((sv * dsign).sum() / var_f)
        if not c > 0:
            raise InputError("similarity fit: the moving points have no spread")
    m = c * r
    return m, mm - m @ mf


def fit_affine(fixed: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares affine map (ordinary least squares on homogeneous coordinates)."""
    n, d = fixed.shape
    x = np.hstack([fixed, np.ones((n, 1))])
    a, *_ = np.linalg.lstsq(x, moving, rcond=None)
    return a[:d].T.copy(), a[d].copy()


def fit(fixed: np.ndarray, moving: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray]:
    if model == "rigid":
        return fit_rigid(fixed, moving)
    if model == "similarity":
        return fit_rigid(fixed, moving, scale=True)
    if model == "affine":
        return fit_affine(fixed, moving)
    raise InputError(f"model {model!r}: expected one of {', '.join(MODELS)}")


def tre_rigid(fixed_used: np.ndarray, targets: np.ndarray, fle_mm: float) -> np.ndarray:
    """Expected RMS TRE (mm) of a rigid fit at ``targets`` (Fitzpatrick, West & Maurer 1998).

    ``TRE²(r) ≈ FLE²/N · (1 + 1/d · Σ_k d_k²/f_k²)`` with ``d_k`` the distance of the
    target from principal axis ``k`` of the fiducials and ``f_k`` the RMS distance of
    the fiducials from that axis (eq. 46 for d = 3; the 2-D form has 1/2).
    """
    n, d = fixed_used.shape
    centre = fixed_used.mean(axis=0)
    xf = fixed_used - centre
    _, _, vt = np.linalg.svd(xf, full_matrices=False)
    axes = vt  # rows: principal axes
    pf = xf @ axes.T  # fiducials in principal coordinates
    pt = (np.atleast_2d(targets) - centre) @ axes.T
    total = np.zeros(len(pt))
    for k in range(d):
        others = [j for j in range(d) if j != k]
        f2 = float(np.mean((pf[:, others] ** 2).sum(axis=1)))
        dk2 = (pt[:, others] ** 2).sum(axis=1)
        total += dk2 / f2
    return np.sqrt(fle_mm**2 / n * (1.0 + total / d))


def tre_affine(fixed_used: np.ndarray, targets: np.ndarray, fle_mm: float) -> np.ndarray:
    """Expected RMS TRE (mm) of a least-squares affine fit at ``targets``.

    With isotropic, independent localisation error of RMS ``fle_mm`` (all axes
    together) on the moving points, the fitted map at ``r`` has error covariance
    ``σ² hᵀ(XᵀX)⁻¹h`` per axis, ``h = [r, 1]``, ``σ² = FLE²/d``: so
    ``TRE²(r) = FLE² · hᵀ(XᵀX)⁻¹h`` exactly (linear least squares).
    """
    n, d = fixed_used.shape
    x = np.hstack([fixed_used, np.ones((n, 1))])
    xtx_inv = np.linalg.inv(x.T @ x)
    h = np.hstack([np.atleast_2d(targets), np.ones((len(np.atleast_2d(targets)), 1))])
    lev = np.einsum("ij,jk,ik->i", h, xtx_inv, h)
    return fle_mm * np.sqrt(lev)
