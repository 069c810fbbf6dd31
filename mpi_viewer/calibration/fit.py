"""The calibration line: least-squares fit, inverse prediction with intervals, detection limit."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mpi_viewer.defaults import CONFIDENCE, N_SD
from mpi_viewer.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from mpi_viewer.calibration.phantoms import CalibrationPoint

SCHEMA_VERSION = 1
KINDS = ("iron", "cells")
ENVIRONMENTS = ("solution", "cells")
PREPARATIONS = ("fixed_concentration", "fixed_volume")
WEIGHTINGS = ("ols", "relative")
MODES = ("line", "single_reference")
X_UNITS = {"iron": "µg", "cells": "cells"}
MIN_R2 = 0.95
MIN_POINTS = 3


def _f(v) -> float | None:
    return None if v is None else float(v)


# -- the fit --------------------------------------------------------------------------------
@dataclass
class CalibrationFit:
    """A fitted calibration line ``signal = slope × x + intercept``.

    Attributes
    ----------
    slope : float
        Signal per unit x (a.u.·mm³ per µg, or per cell).
    intercept : float
        Signal at x = 0, a.u.·mm³ (0 when forced through the origin).
    se_slope, se_intercept : float
        Standard errors (NaN when not estimable, e.g. one point).
    cov : list of list of float
        2×2 covariance of (slope, intercept).
    r_squared : float
        ``1 − SSR/SST`` (weighted sums for relative weighting, always about the
        weighted mean so the number compares between options).
    residual_sd : float
        √(SSR/dof); for relative weighting a *relative* SD (fraction of signal).
    dof : int
        Residual degrees of freedom (n − 2, n − 1 through the origin, 0 for one point).
    n : int
    through_origin : bool
    weighting : str
        ``"ols"`` or ``"relative"`` (weights 1/signal²).
    mode : str
        ``"line"`` or ``"single_reference"``.
    x, y : list of float
        The points fitted (x in µg or cells; y in a.u.·mm³).
    y_sd : list of float or None
        Noise-only SD of each y (single-reference uncertainty).
    """

    slope: float
    intercept: float
    se_slope: float
    se_intercept: float
    cov: list[list[float]]
    r_squared: float
    residual_sd: float
    dof: int
    n: int
    through_origin: bool = False
    weighting: str = "ols"
    mode: str = "line"
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    y_sd: list[float] | None = None

    @property
    def x_range(self) -> tuple[float, float]:
        return (float(min(self.x)), float(max(self.x)))

    @property
    def signal_range(self) -> tuple[float, float]:
        return (float(min(self.y)), float(max(self.y)))

    def predict(self, x) -> np.ndarray:
        """Signal (a.u.·mm³) the line predicts at x."""
        return self.slope * np.asarray(x, dtype=float) + self.intercept

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return _json_safe(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrationFit:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("slope", "intercept", "se_slope", "se_intercept", "r_squared", "residual_sd"):
            kw[k] = float("nan") if kw.get(k) is None else float(kw[k])
        kw["cov"] = [
            [float("nan") if v is None else float(v) for v in row]
            for row in kw.get("cov", [[0, 0], [0, 0]])
        ]
        return cls(**kw)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def fit_calibration(
    signal,
    amount,
    *,
    through_origin: bool = False,
    weighting: str = "ols",
    mode: str = "line",
    signal_sd=None,
) -> CalibrationFit:
    """Fit ``signal = slope × amount + intercept`` by least squares.

    Parameters
    ----------
    signal : array_like
        ROI total signal of each phantom, a.u.·mm³.
    amount : array_like
        Known iron (µg) or cell number of each phantom.
    through_origin : bool
        Force ``intercept = 0``. Off by default: Ureña Horno et al. 2025
        (doi:10.1039/d5nr02393a) deliberately do not force the line through the
        origin because the signal is least precise near the detection limit.
    weighting : {"ols", "relative"}
        Ordinary least squares, or weights ``1/signal²`` for errors proportional to
        the signal (relative error, as GraphPad Prism's "1/Y²").
    mode : {"line", "single_reference"}
        ``"single_reference"``: one reference phantom, slope = signal / amount and
        intercept 0 (Sehl et al. 2020, doi:10.18383/j.tom.2020.00043). Its only
        uncertainty is the image noise in the reference ROI (``signal_sd``).
    signal_sd : array_like, optional
        Noise-only SD of each signal (a.u.·mm³), used by ``single_reference``.

    Returns
    -------
    CalibrationFit

    Raises
    ------
    InputError
        Lengths differ, non-finite values, too few points (2 for a line, 3 for a line
        with an intercept to have an uncertainty is not required), no spread in the
        amounts, or a slope ≤ 0 (signal that does not grow with iron).
    """
    y = np.asarray(signal, dtype=float).ravel()
    x = np.asarray(amount, dtype=float).ravel()
    if weighting not in WEIGHTINGS:
        raise InputError(f"weighting {weighting!r}: expected one of {', '.join(WEIGHTINGS)}")
    if mode not in MODES:
        raise InputError(f"calibration mode {mode!r}: expected one of {', '.join(MODES)}")
    if x.size != y.size:
        raise InputError(f"calibration: {y.size} signals but {x.size} amounts")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InputError("calibration: signals and amounts must be finite numbers")
    sd = (
        None
        if signal_sd is None
        else [float("nan") if v is None else float(v) for v in np.atleast_1d(signal_sd)]
    )
    if mode == "single_reference":
        if x.size != 1:
            raise InputError(f"single-reference calibration: expected one phantom, got {x.size}")
        if x[0] <= 0 or y[0] <= 0:
            raise InputError(
                "single-reference calibration: the reference phantom's amount and signal must be > 0"
            )
        slope = y[0] / x[0]
        s0 = sd[0] if sd else float("nan")
        se = s0 / x[0] if np.isfinite(s0) else float("nan")
        return CalibrationFit(
            slope=float(slope),
            intercept=0.0,
            se_slope=float(se),
            se_intercept=0.0,
            cov=[[float(se) ** 2, 0.0], [0.0, 0.0]],
            r_squared=float("nan"),
            residual_sd=float("nan"),
            dof=0,
            n=1,
            through_origin=True,
            weighting="ols",
            mode=mode,
            x=x.tolist(),
            y=y.tolist(),
            y_sd=sd,
        )
    n = x.size
    need = 1 if through_origin else 2
    if n < max(need, 2):
        raise InputError(f"calibration: {n} point(s), at least 2 needed for a line")
    if not through_origin and np.ptp(x) == 0:
        raise InputError("calibration: all phantoms have the same amount; cannot fit a line")
    if weighting == "relative":
        if np.any(y <= 0):
            raise InputError("calibration: relative weighting needs every phantom signal > 0")
        w = 1.0 / y**2
    else:
        w = np.ones_like(y)
    design = x[:, None] if through_origin else np.column_stack([x, np.ones_like(x)])
    xtwx = design.T @ (w[:, None] * design)
    beta = np.linalg.solve(xtwx, design.T @ (w * y))
    slope = float(beta[0])
    intercept = 0.0 if through_origin else float(beta[1])
    resid = y - (slope * x + intercept)
    ssr = float(np.sum(w * resid**2))
    ybar = float(np.sum(w * y) / np.sum(w))
    sst = float(np.sum(w * (y - ybar) ** 2))
    dof = n - design.shape[1]
    r2 = 1.0 - ssr / sst if sst > 0 else float("nan")
    if dof > 0:
        s2 = ssr / dof
        cov_b = s2 * np.linalg.inv(xtwx)
    else:
        s2 = float("nan")
        cov_b = np.full((design.shape[1],) * 2, np.nan)
    if through_origin:
        cov = [[float(cov_b[0, 0]), 0.0], [0.0, 0.0]]
    else:
        cov = [[float(cov_b[0, 0]), float(cov_b[0, 1])], [float(cov_b[1, 0]), float(cov_b[1, 1])]]
    if slope <= 0:
        raise InputError(
            f"calibration: slope {slope:.4g} ≤ 0 — the signal does not increase with the amount"
        )
    return CalibrationFit(
        slope=slope,
        intercept=intercept,
        se_slope=math.sqrt(cov[0][0]) if dof > 0 else float("nan"),
        se_intercept=(math.sqrt(cov[1][1]) if dof > 0 else float("nan"))
        if not through_origin
        else 0.0,
        cov=cov,
        r_squared=float(r2),
        residual_sd=math.sqrt(s2) if dof > 0 else float("nan"),
        dof=int(dof),
        n=int(n),
        through_origin=bool(through_origin),
        weighting=weighting,
        mode="line",
        x=x.tolist(),
        y=y.tolist(),
        y_sd=sd,
    )


def _t_quantile(confidence: float, dof: float) -> float:
    from scipy import stats

    if not 0 < confidence < 1:
        raise InputError(f"confidence {confidence!r}: expected a number between 0 and 1")
    p = 0.5 + confidence / 2
    return float(stats.norm.ppf(p)) if not np.isfinite(dof) else float(stats.t.ppf(p, dof))


def new_observation_variance(
    fit: CalibrationFit, signal: float, signal_sd: float | None = None
) -> float:
    """Variance (a.u.·mm³)² of a single new measurement at ``signal``.

    Line fits: the residual variance (times ``signal²`` for relative weighting).
    Single reference: ``signal_sd²`` (noise only), NaN when unknown.
    """
    if fit.mode == "single_reference":
        return (
            float(signal_sd) ** 2
            if signal_sd is not None and np.isfinite(signal_sd)
            else float("nan")
        )
    s2 = fit.residual_sd**2
    return s2 * signal**2 if fit.weighting == "relative" else s2


def inverse_predict(
    fit: CalibrationFit,
    signal: float,
    *,
    confidence: float = CONFIDENCE,
    signal_sd: float | None = None,
    extra_sd: float | None = None,
) -> tuple[float, float, float]:
    """Amount (µg or cells) of a new single measurement and its calibration interval.

    ``x̂₀ = (y₀ − b)/m``. The interval is the classical calibration (inverse
    prediction) interval, Fieller's solution (Draper & Smith, *Applied Regression
    Analysis*, 3rd ed., §3.2): the set of x for which ``y₀`` lies inside the
    prediction band of the line at x,

    ``(y₀ − b − m·x)² ≤ t² · [s₀² + V(b) + 2x·C(m,b) + x²·V(m)]``,

    a quadratic in x solved exactly, with ``t`` the Student quantile on the fit's
    residual degrees of freedom and ``s₀²`` the variance of one new observation
    (:func:`new_observation_variance`). With a single reference phantom the
    variances are the image-noise SDs of the two ROIs and ``t`` the normal quantile.
    ``extra_sd`` (a.u.·mm³): an uncertainty of this measurement that the calibration
    phantoms do not share, added to ``s₀²`` with the normal quantile (e.g. the
    subtraction of a neighbouring source's signal,
    :attr:`mpi_viewer.roi.ROIResult.neighbour_signal_sd`).

    Returns
    -------
    (x, low, high) : tuple of float
        ``low``/``high`` are ±inf when the slope is not significantly different from
        zero at this confidence (the interval is unbounded), NaN when no uncertainty
        can be computed (single reference without noise SDs).
    """
    y0 = float(signal)
    m, b = fit.slope, fit.intercept
    x0 = (y0 - b) / m
    if fit.mode == "single_reference":
        s0 = new_observation_variance(fit, y0, signal_sd)
        vm = fit.cov[0][0]
        if not (np.isfinite(s0) and np.isfinite(vm)):
            return x0, float("nan"), float("nan")
        t = _t_quantile(confidence, float("inf"))
        vbb, vbm = 0.0, 0.0
    else:
        if fit.dof <= 0:
            return x0, float("nan"), float("nan")
        t = _t_quantile(confidence, fit.dof)
        s0 = new_observation_variance(fit, y0)
        vm, vbm, vbb = fit.cov[0][0], fit.cov[0][1], fit.cov[1][1]
    if extra_sd is not None and np.isfinite(extra_sd) and extra_sd > 0:
        # known from the measurement itself, not from the fit's residuals: its own
        # quantile is the normal one (the formula multiplies every term by t²)
        z = _t_quantile(confidence, float("inf"))
        s0 = s0 + (float(extra_sd) * z / t) ** 2
    d = y0 - b
    t2 = t * t
    a = m * m - t2 * vm
    bq = -2.0 * (d * m + t2 * vbm)
    c = d * d - t2 * (s0 + vbb)
    disc = bq * bq - 4 * a * c
    if a <= 0 or disc < 0:
        return x0, float("-inf"), float("inf")
    r = math.sqrt(disc)
    lo, hi = sorted(((-bq - r) / (2 * a), (-bq + r) / (2 * a)))
    return float(x0), float(lo), float(hi)


def prediction_band(
    fit: CalibrationFit, x, *, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper prediction band (a.u.·mm³) of a single new signal at x."""
    x = np.asarray(x, dtype=float)
    yhat = fit.predict(x)
    if fit.mode == "single_reference" or fit.dof <= 0:
        return yhat * np.nan, yhat * np.nan
    t = _t_quantile(confidence, fit.dof)
    var_line = fit.cov[0][0] * x**2 + 2 * fit.cov[0][1] * x + fit.cov[1][1]
    s0 = fit.residual_sd**2 * (yhat**2 if fit.weighting == "relative" else 1.0)
    h = t * np.sqrt(var_line + s0)
    return yhat - h, yhat + h


# -- detection limit --------------------------------------------------------------------------
def peak_per_amount(points: list[CalibrationPoint], kind: str = "iron") -> float | None:
    """Peak signal (a.u.) per µg (or per cell) of the phantoms: LS ratio through 0."""
    pairs = [(p.amount(kind), p.peak_au) for p in points if p.peak_au is not None and _has(p, kind)]
    pairs = [(x, y) for x, y in pairs if x > 0 and np.isfinite(y)]
    if not pairs:
        return None
    x, y = np.array(pairs, dtype=float).T
    return float(np.sum(x * y) / np.sum(x * x))


def _has(p: CalibrationPoint, kind: str) -> bool:
    return (p.iron_ug if kind == "iron" else p.cells) is not None


def detection_limit(
    peak_per_unit: float | None, noise_sd_au: float | None, roi_params=None
) -> float | None:
    """The amount (µg or cells) whose ROI peak equals the ROI method's noise threshold.

    Definition: ``LOD = n_sd · σ / (peak per unit amount)``, with σ the image's noise
    SD (a.u.), ``n_sd`` the ROI method's noise multiple (``roi_params.n_sd``, 5 by
    default: Ureña Horno et al. 2025 keep only voxels above five times the noise SD)
    and the peak per unit amount measured on the calibration phantoms (same tracer,
    scanner and PSF). A source below it has no voxel above the method's noise
    threshold, so neither a half-maximum nor an n·SD ROI of it is delineated by the
    source rather than by noise. We prefer this to Currie's ``3.3·σ_blank/slope``
    because the latter needs the SD of a blank *ROI*, which the half-maximum method
    does not define (its ROI size scales with the peak); the peak criterion is the
    one the ROI method itself applies.

    Returns ``None`` when the noise or the phantoms' peaks are unknown.
    """
    if (
        peak_per_unit is None
        or noise_sd_au is None
        or not np.isfinite(noise_sd_au)
        or peak_per_unit <= 0
    ):
        return None
    n_sd = float(getattr(roi_params, "n_sd", N_SD) or N_SD) if roi_params is not None else N_SD
    return n_sd * float(noise_sd_au) / float(peak_per_unit)


def detection_limit_ug(fit_or_cal, noise_sd_au: float | None, roi_params=None) -> float | None:
    """:func:`detection_limit` of a :class:`Calibration` (µg Fe, or cells for a cell one)."""
    cal = fit_or_cal
    points = getattr(cal, "points", None) or []
    return detection_limit(
        peak_per_amount(points, getattr(cal, "kind", "iron")), noise_sd_au, roi_params
    )
