"""Calibration: MPI signal → iron mass (or cell number) with uncertainty.

MPI signal becomes iron only through a calibration made with the same tracer, the
same scan parameters and the same ROI method as the image it is applied to (Sehl et
al., Tomography 6:315, 2020, doi:10.18383/j.tom.2020.00043). Ureña Horno et al.
(Nanoscale 17:24060, 2025, doi:10.1039/d5nr02393a) show that solution calibrations
under-estimate iron in labelled cells by 20–70 %, recommend calibrating against
labelled cells, prefer fixed-concentration over fixed-volume (serial dilution)
phantoms, and fit lines *not* forced through the origin.

The pieces, each usable on its own:

- :func:`read_phantoms_csv` → :class:`Phantom` (``name,x,y,z,iron_ug``, MPI mm), or
  :func:`phantoms_from_template` (a phantom-holder template found in the MPI);
- :func:`measure_phantoms` → :class:`CalibrationPoint` measured with exactly the ROI
  method and parameters used for the targets (:func:`mpi_viewer.roi.measure`);
- :func:`fit_calibration` → :class:`CalibrationFit`: ``signal = slope × x + intercept``
  by ordinary or relative-weighted least squares, through the origin on request, or
  the single-reference-phantom ratio;
- :func:`inverse_predict`: x (iron or cells) of a new measurement with the classical
  calibration interval (Fieller / Draper & Smith inverse prediction);
- :func:`detection_limit`: the iron whose ROI peak equals the method's noise
  threshold;
- :class:`Calibration`: everything above plus tracer, environment, preparation,
  acquisition and ROI parameters, saved as versioned JSON; :class:`CalibrationLibrary`
  is a folder of them;
- :func:`compatibility_warnings` and :func:`apply_calibration`: iron (and cells) per
  ROI with intervals, the detection-limit flag and warnings, as table rows.

Units: signal is the ROI's total signal in a.u.·mm³ (a.u.·mm² for 2-D images), iron
in µg Fe, cells in cells, peaks and noise in a.u.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

SCHEMA_VERSION = 1
KINDS = ("iron", "cells")
ENVIRONMENTS = ("solution", "cells")
PREPARATIONS = ("fixed_concentration", "fixed_volume")
WEIGHTINGS = ("ols", "relative")
MODES = ("line", "single_reference")
X_UNITS = {"iron": "µg", "cells": "cells"}
MIN_R2 = 0.95
MIN_POINTS = 3


# -- phantoms -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Phantom:
    """A calibration phantom: its name, centre (mm, x, y, z, MPI frame) and iron (µg)."""

    name: str
    xyz_mm: tuple[float, float, float]
    iron_ug: float


def read_phantoms_csv(path: str | Path, *, min_count: int = 2) -> list[Phantom]:
    """Read a phantom CSV with header ``name,x,y,z,iron_ug`` (mm, µg Fe).

    Parameters
    ----------
    path : str or Path
        CSV file; extra columns are ignored, blank lines skipped.
    min_count : int
        Fewest phantoms accepted (2 for a line, 1 for a single reference).

    Raises
    ------
    InputError
        Missing file or columns, duplicate names, non-numeric or non-finite
        coordinates, non-numeric or negative iron, fewer than ``min_count`` rows.
    """
    from .points import read_text_file

    p = Path(path)
    text = read_text_file(p, "phantom file")
    rows = list(csv.reader(line for line in text.splitlines() if line.strip()))
    if not rows:
        raise InputError(f"{p}: empty phantom file (expected header name,x,y,z,iron_ug)")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ("name", "x", "y", "z", "iron_ug") if c not in header]
    if missing:
        raise InputError(f"{p}: missing column(s) {', '.join(missing)} (expected header name,x,y,z,iron_ug)")
    col = {c: header.index(c) for c in ("name", "x", "y", "z", "iron_ug")}
    phantoms: list[Phantom] = []
    seen: set[str] = set()
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) < len(header):
            raise InputError(f"{p} line {lineno}: expected {len(header)} columns, got {len(row)}")
        name = row[col["name"]].strip()
        if not name:
            raise InputError(f"{p} line {lineno}: empty phantom name")
        if name in seen:
            raise InputError(f"{p} line {lineno}: duplicate phantom name {name!r}")
        seen.add(name)
        try:
            xyz = tuple(float(row[col[a]]) for a in ("x", "y", "z"))
        except ValueError:
            raise InputError(f"{p} line {lineno}: phantom {name!r} has a non-numeric coordinate") from None
        if not all(math.isfinite(v) for v in xyz):
            raise InputError(f"{p} line {lineno}: phantom {name!r} has a non-finite coordinate")
        raw = row[col["iron_ug"]].strip()
        try:
            iron = float(raw)
        except ValueError:
            raise InputError(f"{p} line {lineno}: phantom {name!r} iron_ug {raw!r} is not a number") from None
        if not math.isfinite(iron) or iron < 0:
            raise InputError(f"{p} line {lineno}: phantom {name!r} iron_ug {raw!r} must be a finite number ≥ 0")
        phantoms.append(Phantom(name, xyz, iron))  # type: ignore[arg-type]
    if len(phantoms) < min_count:
        raise InputError(f"{p}: {len(phantoms)} phantom(s), at least {min_count} needed for a calibration")
    return phantoms


def phantoms_outside(volume, phantoms, *, raise_error: bool = True) -> list[str]:
    """Names of phantoms whose centre lies outside ``volume``; InputError by default.

    Raises
    ------
    InputError
        Naming the first phantom outside the image (when ``raise_error``).
    """
    if not phantoms:
        return []
    inside = volume.contains_physical(np.array([ph.xyz_mm for ph in phantoms], dtype=float))
    out = [ph.name for ph, ok in zip(phantoms, inside, strict=True) if not ok]
    if out and raise_error:
        ph = next(p for p in phantoms if p.name == out[0])
        where = ", ".join(f"{v:g}" for v in ph.xyz_mm)
        raise InputError(f"phantom {ph.name!r} at ({where}) mm lies outside the image {volume.name!r}")
    return out


def phantoms_from_template(volume, template, iron_ug, *, tolerance_mm: float = 1.5,
                           min_count: int = 2) -> tuple[list[Phantom], Any]:
    """Phantom positions from a phantom-holder template found in the MPI image.

    The holder's fiducials are detected as hot spots
    (:func:`mpi_viewer.molds.detect_fiducials`), matched to the template
    (:func:`mpi_viewer.molds.match_fiducials`: the template → image pose), and the
    template's wells are carried into the image by that pose.

    Parameters
    ----------
    volume : Volume
        The MPI image holding the phantom holder.
    template : str, Path or Template
        A template with ``wells`` (e.g. ``"phantom_holder_7well_v1"``).
    iron_ug : dict or sequence
        Iron per well (µg): ``{well name: µg}`` (wells left out are empty) or one
        value per well in template order (``None`` for an empty well).
    tolerance_mm : float
        Fiducial matching tolerance, mm.
    min_count : int
        Fewest filled wells accepted.

    Returns
    -------
    phantoms : list of Phantom
        Filled wells, centres in the MPI's physical frame (mm).
    match : MoldMatch
        The pose and its residuals (to show the user).

    Raises
    ------
    InputError
        A template without wells, holder fiducials not found or ambiguous, unknown
        well names, negative iron, too few filled wells, a well outside the image.
    """
    from . import molds

    t = molds.load_template(template)
    wells = list(t.wells)
    if not wells:
        raise InputError(f"template {t.name!r} has no phantom wells")
    names = [str(w["name"]) for w in wells]
    if isinstance(iron_ug, dict):
        unknown = sorted(set(iron_ug) - set(names))
        if unknown:
            raise InputError(f"template {t.name!r} has no well(s) {', '.join(unknown)} (wells: {', '.join(names)})")
        amounts = [iron_ug.get(n) for n in names]
    else:
        amounts = list(iron_ug)
        if len(amounts) != len(names):
            raise InputError(f"template {t.name!r} has {len(names)} wells, {len(amounts)} iron values given")
    match = molds.match_fiducials(molds.detect_fiducials(volume, t, modality="MPI"), t, tolerance_mm=tolerance_mm)
    pos = match.template_to_image([w["position_mm"] for w in wells])
    phantoms = []
    for name, p, fe in zip(names, pos, amounts, strict=True):
        if fe is None:
            continue
        try:
            fe = float(fe)
        except (TypeError, ValueError):
            raise InputError(f"well {name}: iron {fe!r} µg is not a number") from None
        if not math.isfinite(fe) or fe < 0:
            raise InputError(f"well {name}: iron {fe!r} µg must be a finite number ≥ 0")
        phantoms.append(Phantom(name, tuple(float(v) for v in p), fe))  # type: ignore[arg-type]
    if len(phantoms) < min_count:
        raise InputError(f"template {t.name!r}: {len(phantoms)} filled well(s), at least {min_count} needed")
    phantoms_outside(volume, phantoms)
    return phantoms, match


# -- calibration points -------------------------------------------------------------------
@dataclass
class CalibrationPoint:
    """One phantom's measurement: known amount against measured ROI signal.

    Attributes
    ----------
    name : str
    signal : float
        ROI total signal, a.u.·mm³ (a.u.·mm² in 2-D).
    iron_ug : float or None
        Known iron, µg Fe (iron calibrations).
    cells : float or None
        Known number of labelled cells (cell calibrations).
    peak_au, mean_au, volume_mm3, noise_sd_au, snr : float or None
        ROI statistics of the phantom (a.u., mm³).
    signal_sd : float or None
        Standard deviation of ``signal`` expected from image noise alone,
        ``noise_sd · sqrt(ROI volume · voxel volume)`` (a.u.·mm³).
    xyz_mm : tuple or None
        Seed position, mm (x, y, z).
    flags : list of str
        ROI flags reported by the ROI method.
    """

    name: str
    signal: float
    iron_ug: float | None = None
    cells: float | None = None
    peak_au: float | None = None
    mean_au: float | None = None
    volume_mm3: float | None = None
    noise_sd_au: float | None = None
    snr: float | None = None
    signal_sd: float | None = None
    xyz_mm: tuple[float, ...] | None = None
    flags: list[str] = field(default_factory=list)

    def amount(self, kind: str) -> float:
        v = self.iron_ug if kind == "iron" else self.cells
        if v is None:
            raise InputError(f"calibration point {self.name!r} has no {'iron_ug' if kind == 'iron' else 'cells'} value")
        return float(v)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["xyz_mm"] is not None:
            d["xyz_mm"] = [float(v) for v in d["xyz_mm"]]
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrationPoint:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if kw.get("xyz_mm") is not None:
            kw["xyz_mm"] = tuple(float(v) for v in kw["xyz_mm"])
        kw["flags"] = list(kw.get("flags") or [])
        return cls(**kw)


def roi_signal_sd(result, voxel_volume_mm3: float) -> float | None:
    """Noise-only SD of an ROI's total signal, a.u.·mm³.

    The sum of ``n`` independent voxels of SD σ times the voxel volume ``v`` has SD
    ``σ·√n·v = σ·√(V·v)`` with ROI volume ``V = n·v``. It ignores the (correlated)
    change of the ROI outline with noise, so it is a lower bound; it is used only for
    the single-reference mode, where no residual scatter is available.
    """
    vol = _roi_volume(result)
    sd = getattr(result, "noise_sd", None)
    if vol is None or sd is None or not np.isfinite(sd) or vol <= 0:
        return None
    return float(sd) * math.sqrt(float(vol) * float(voxel_volume_mm3))


def _roi_volume(result) -> float | None:
    """ROI volume (mm³) or area (mm²) of an ROI result."""
    for attr in ("size", "volume_mm3", "area_mm2", "area"):
        v = getattr(result, attr, None)
        if v is not None and np.isfinite(v):
            return float(v)
    return None


def measure_phantoms(volume, phantoms, roi_params, *, kind: str = "iron") -> list[CalibrationPoint]:
    """Measure each phantom with exactly the ROI method and parameters of the targets.

    Parameters
    ----------
    volume : Volume
        The MPI image holding the phantoms (native grid).
    phantoms : list of Phantom
        Centres (mm) and iron (µg). For ``kind="cells"`` the ``iron_ug`` column holds
        the number of cells.
    roi_params : ROIParams
        The same parameters the targets are measured with.

    Returns
    -------
    list of CalibrationPoint

    Raises
    ------
    InputError
        A phantom outside the image.
    """
    from . import roi

    phantoms_outside(volume, phantoms)
    results = roi.measure(volume, [ph.xyz_mm for ph in phantoms], roi_params, names=[ph.name for ph in phantoms])
    vv = volume.voxel_volume_mm
    points = []
    for ph, r in zip(phantoms, results, strict=True):
        amount = {"iron_ug": float(ph.iron_ug)} if kind == "iron" else {"cells": float(ph.iron_ug)}
        points.append(CalibrationPoint(
            name=ph.name, signal=float(r.total_signal), **amount,
            peak_au=_f(getattr(r, "peak_au", None)), mean_au=_f(getattr(r, "mean_au", None)),
            volume_mm3=_f(_roi_volume(r)), noise_sd_au=_f(getattr(r, "noise_sd", None)),
            snr=_f(getattr(r, "snr", None)), signal_sd=roi_signal_sd(r, vv),
            xyz_mm=tuple(float(v) for v in ph.xyz_mm), flags=list(getattr(r, "flags", []) or []),
        ))
    return points


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
        kw["cov"] = [[float("nan") if v is None else float(v) for v in row] for row in kw.get("cov", [[0, 0], [0, 0]])]
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


def fit_calibration(signal, amount, *, through_origin: bool = False, weighting: str = "ols",
                    mode: str = "line", signal_sd=None) -> CalibrationFit:
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
    sd = None if signal_sd is None else [float("nan") if v is None else float(v) for v in np.atleast_1d(signal_sd)]
    if mode == "single_reference":
        if x.size != 1:
            raise InputError(f"single-reference calibration: expected one phantom, got {x.size}")
        if x[0] <= 0 or y[0] <= 0:
            raise InputError("single-reference calibration: the reference phantom's amount and signal must be > 0")
        slope = y[0] / x[0]
        s0 = sd[0] if sd else float("nan")
        se = s0 / x[0] if np.isfinite(s0) else float("nan")
        return CalibrationFit(slope=float(slope), intercept=0.0, se_slope=float(se), se_intercept=0.0,
                              cov=[[float(se) ** 2, 0.0], [0.0, 0.0]], r_squared=float("nan"),
                              residual_sd=float("nan"), dof=0, n=1, through_origin=True, weighting="ols",
                              mode=mode, x=x.tolist(), y=y.tolist(), y_sd=sd)
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
        raise InputError(f"calibration: slope {slope:.4g} ≤ 0 — the signal does not increase with the amount")
    return CalibrationFit(slope=slope, intercept=intercept, se_slope=math.sqrt(cov[0][0]) if dof > 0 else float("nan"),
                          se_intercept=(math.sqrt(cov[1][1]) if dof > 0 else float("nan")) if not through_origin else 0.0,
                          cov=cov, r_squared=float(r2), residual_sd=math.sqrt(s2) if dof > 0 else float("nan"),
                          dof=int(dof), n=int(n), through_origin=bool(through_origin), weighting=weighting,
                          mode="line", x=x.tolist(), y=y.tolist(), y_sd=sd)


def _t_quantile(confidence: float, dof: float) -> float:
    from scipy import stats

    if not 0 < confidence < 1:
        raise InputError(f"confidence {confidence!r}: expected a number between 0 and 1")
    p = 0.5 + confidence / 2
    return float(stats.norm.ppf(p)) if not np.isfinite(dof) else float(stats.t.ppf(p, dof))


def new_observation_variance(fit: CalibrationFit, signal: float, signal_sd: float | None = None) -> float:
    """Variance (a.u.·mm³)² of a single new measurement at ``signal``.

    Line fits: the residual variance (times ``signal²`` for relative weighting).
    Single reference: ``signal_sd²`` (noise only), NaN when unknown.
    """
    if fit.mode == "single_reference":
        return float(signal_sd) ** 2 if signal_sd is not None and np.isfinite(signal_sd) else float("nan")
    s2 = fit.residual_sd**2
    return s2 * signal**2 if fit.weighting == "relative" else s2


def inverse_predict(fit: CalibrationFit, signal: float, *, confidence: float = 0.95,
                    signal_sd: float | None = None) -> tuple[float, float, float]:
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


def prediction_band(fit: CalibrationFit, x, *, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
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


def detection_limit(peak_per_unit: float | None, noise_sd_au: float | None, roi_params=None) -> float | None:
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
    if peak_per_unit is None or noise_sd_au is None or not np.isfinite(noise_sd_au) or peak_per_unit <= 0:
        return None
    n_sd = float(getattr(roi_params, "n_sd", 5.0) or 5.0) if roi_params is not None else 5.0
    return n_sd * float(noise_sd_au) / float(peak_per_unit)


def detection_limit_ug(fit_or_cal, noise_sd_au: float | None, roi_params=None) -> float | None:
    """:func:`detection_limit` of a :class:`Calibration` (µg Fe, or cells for a cell one)."""
    cal = fit_or_cal
    points = getattr(cal, "points", None) or []
    return detection_limit(peak_per_amount(points, getattr(cal, "kind", "iron")), noise_sd_au, roi_params)


# -- the calibration record ---------------------------------------------------------------------
@dataclass
class Calibration:
    """A calibration as saved in a library: provenance, raw points and the fit.

    Attributes
    ----------
    name : str
        Short name; the library file is ``<name>.json``.
    kind : {"iron", "cells"}
        Signal against iron (µg) or against the number of labelled cells
        (Ureña Horno et al. 2025).
    tracer, tracer_lot : str or None
    environment : {"solution", "cells"}
    preparation : {"fixed_concentration", "fixed_volume"}
    acquisition : dict
        ``Acquisition.to_dict()`` of the phantom scan (mode, gradient_T_per_m,
        drive_amplitude_mT, drive_frequency_kHz, averages, …).
    roi : dict
        ``ROIParams.to_dict()`` the phantoms were measured with.
    points : list of CalibrationPoint
    through_origin, weighting, mode : fit options
    fit : CalibrationFit
    date : str
        ISO date of the calibration.
    notes : str
    """

    name: str
    kind: str
    points: list[CalibrationPoint]
    fit: CalibrationFit
    tracer: str | None = None
    tracer_lot: str | None = None
    environment: str = "solution"
    preparation: str = "fixed_concentration"
    acquisition: dict[str, Any] = field(default_factory=dict)
    roi: dict[str, Any] = field(default_factory=dict)
    through_origin: bool = False
    weighting: str = "ols"
    mode: str = "line"
    date: str = field(default_factory=lambda: _dt.date.today().isoformat())
    notes: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def x_unit(self) -> str:
        return X_UNITS[self.kind]

    @property
    def peak_per_unit(self) -> float | None:
        return peak_per_amount(self.points, self.kind)

    @classmethod
    def from_points(cls, name: str, points: list[CalibrationPoint], *, kind: str = "iron",
                    through_origin: bool = False, weighting: str = "ols", mode: str = "line",
                    reference: str | None = None, tracer: str | None = None, tracer_lot: str | None = None,
                    environment: str | None = None, preparation: str = "fixed_concentration",
                    acquisition: dict | None = None, roi: dict | None = None, date: str | None = None,
                    notes: str = "") -> Calibration:
        """Fit ``points`` and wrap the result with its provenance.

        ``mode="single_reference"`` uses the phantom named ``reference`` (the one with
        the most iron when not given).
        """
        _check_choice("kind", kind, KINDS)
        _check_choice("preparation", preparation, PREPARATIONS)
        environment = environment or ("cells" if kind == "cells" else "solution")
        _check_choice("environment", environment, ENVIRONMENTS)
        used = list(points)
        if mode == "single_reference":
            if reference is None:
                used = [max(points, key=lambda p: p.amount(kind))]
            else:
                used = [p for p in points if p.name == reference]
                if not used:
                    raise InputError(f"reference phantom {reference!r} not among {', '.join(p.name for p in points)}")
        fit = fit_calibration([p.signal for p in used], [p.amount(kind) for p in used],
                              through_origin=through_origin, weighting=weighting, mode=mode,
                              signal_sd=[p.signal_sd for p in used])
        return cls(name=_safe_name(name), kind=kind, points=list(points), fit=fit, tracer=tracer,
                   tracer_lot=tracer_lot, environment=environment, preparation=preparation,
                   acquisition=dict(acquisition or {}), roi=dict(roi or {}), through_origin=through_origin,
                   weighting=weighting, mode=mode, date=date or _dt.date.today().isoformat(), notes=notes)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe({
            "schema_version": self.schema_version, "name": self.name, "kind": self.kind,
            "x_unit": self.x_unit, "signal_unit": "a.u.·mm³", "tracer": self.tracer,
            "tracer_lot": self.tracer_lot, "environment": self.environment,
            "preparation": self.preparation, "acquisition": dict(self.acquisition), "roi": dict(self.roi),
            "points": [p.to_dict() for p in self.points],
            "fit_options": {"through_origin": self.through_origin, "weighting": self.weighting, "mode": self.mode},
            "fit": self.fit.to_dict(), "date": self.date, "notes": self.notes,
        })

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "calibration") -> Calibration:
        if not isinstance(d, dict):
            raise InputError(f"{source}: not a calibration (expected a JSON object)")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(f"{source}: calibration schema version {version!r}, this program reads version {SCHEMA_VERSION}")
        try:
            kind = d["kind"]
            _check_choice("kind", kind, KINDS)
            points = [CalibrationPoint.from_dict(p) for p in d.get("points", [])]
            opts = d.get("fit_options", {})
            fit = CalibrationFit.from_dict(d["fit"])
            return cls(name=str(d.get("name") or "calibration"), kind=kind, points=points, fit=fit,
                       tracer=d.get("tracer"), tracer_lot=d.get("tracer_lot"),
                       environment=d.get("environment", "solution"),
                       preparation=d.get("preparation", "fixed_concentration"),
                       acquisition=dict(d.get("acquisition") or {}), roi=dict(d.get("roi") or {}),
                       through_origin=bool(opts.get("through_origin", False)),
                       weighting=opts.get("weighting", "ols"), mode=opts.get("mode", "line"),
                       date=str(d.get("date", "")), notes=str(d.get("notes", "")))
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: malformed calibration ({type(exc).__name__}: {exc})") from None

    def summary(self) -> str:
        f = self.fit
        unit = self.x_unit
        if f.mode == "single_reference":
            return f"{self.name}: single reference, {f.slope:.4g} a.u.·mm³/{unit}"
        return (f"{self.name}: signal = {f.slope:.4g} × {self.kind} + {f.intercept:.4g} "
                f"(R² {f.r_squared:.4f}, n {f.n}, {self.tracer or 'tracer ?'}, {self.environment})")


def _check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise InputError(f"{what} {value!r}: expected one of {', '.join(choices)}")


def _safe_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name).strip()).strip("._")
    return s or "calibration"


def save_calibration(calibration: Calibration, path: str | Path) -> Path:
    """Write a calibration as JSON, atomically (temporary file, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(calibration.to_dict(), indent=2, ensure_ascii=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration JSON; InputError for a missing, malformed or other-version file."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such calibration file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{p}: not a readable calibration JSON ({_one_line(exc)})") from None
    return Calibration.from_dict(d, source=str(p))


def _one_line(exc) -> str:
    return " ".join(str(exc).split())


class CalibrationLibrary:
    """A folder of calibration JSON files (``<name>.json``) the user chooses."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _path(self, name: str) -> Path:
        return self.folder / f"{_safe_name(name)}.json"

    def list(self) -> list[Calibration]:
        """Every readable calibration in the folder, by name (unreadable files skipped)."""
        out = []
        if not self.folder.is_dir():
            return out
        for p in sorted(self.folder.glob("*.json")):
            try:
                out.append(load_calibration(p))
            except InputError:
                continue
        return out

    def names(self) -> list[str]:
        return [c.name for c in self.list()]

    def get(self, name: str) -> Calibration:
        p = self._path(name)
        if not p.is_file():
            raise InputError(f"calibration {name!r} not in library {self.folder}")
        return load_calibration(p)

    def add(self, calibration: Calibration, *, overwrite: bool = False) -> Path:
        p = self._path(calibration.name)
        if p.exists() and not overwrite:
            raise InputError(f"calibration {calibration.name!r} already in library {self.folder}")
        return save_calibration(calibration, p)

    def import_file(self, path: str | Path, *, overwrite: bool = False) -> Calibration:
        """Validate a calibration file and copy it into the library."""
        cal = load_calibration(path)
        self.add(cal, overwrite=overwrite)
        return cal

    def export(self, name: str, path: str | Path) -> Path:
        return save_calibration(self.get(name), path)


# -- compatibility and application -------------------------------------------------------------
_ACQ_FIELDS = (("mode", "scan mode", None), ("gradient_T_per_m", "gradient", "T/m"),
               ("drive_amplitude_mT", "drive amplitude", "mT"), ("drive_frequency_kHz", "drive frequency", "kHz"),
               ("averages", "averages", None))


def compatibility_warnings(calibration: Calibration, acquisition=None, roi_params=None, *,
                           for_cells: bool = False) -> list[str]:
    """Why this calibration may not fit this image: one short sentence each.

    Checks (Sehl et al. 2020; Ureña Horno et al. 2025): tracer, scan parameters and
    ROI method/parameters differ from the image's; fewer than 3 points or R² < 0.95;
    a fixed-volume (serial dilution) preparation; a solution calibration applied to
    labelled cells (``for_cells``: 20–70 % under-estimate).
    """
    w: list[str] = []
    acq = acquisition.to_dict() if hasattr(acquisition, "to_dict") else dict(acquisition or {})
    cal_acq = dict(calibration.acquisition or {})
    img_tracer = acq.get("tracer")
    if calibration.tracer and img_tracer and _norm(calibration.tracer) != _norm(img_tracer):
        w.append(f"tracer differs: calibration {calibration.tracer!r}, image {img_tracer!r}")
    lot = acq.get("tracer_lot")
    if calibration.tracer_lot and lot and _norm(calibration.tracer_lot) != _norm(lot):
        w.append(f"tracer lot differs: calibration {calibration.tracer_lot!r}, image {lot!r}")
    for key, label, unit in _ACQ_FIELDS:
        a, b = cal_acq.get(key), acq.get(key)
        if a is None or b is None:
            continue
        same = math.isclose(float(a), float(b), rel_tol=1e-3) if unit or key == "averages" else _norm(a) == _norm(b)
        if not same:
            u = f" {unit}" if unit else ""
            w.append(f"{label} differs: calibration {a}{u}, image {b}{u}")
    if not acq:
        w.append("image has no acquisition metadata: tracer and scan parameters not checked")
    if roi_params is not None:
        img_roi = roi_params.to_dict() if hasattr(roi_params, "to_dict") else dict(roi_params)
        w.extend(_roi_differences(calibration.roi, img_roi))
    f = calibration.fit
    if f.mode == "single_reference":
        w.append("single-reference calibration: no fit residuals, interval from image noise only")
    else:
        if f.n < MIN_POINTS:
            w.append(f"calibration has {f.n} points (fewer than {MIN_POINTS})")
        if np.isfinite(f.r_squared) and f.r_squared < MIN_R2:
            w.append(f"calibration R² {f.r_squared:.3f} < {MIN_R2}")
    if calibration.preparation == "fixed_volume":
        w.append("fixed-volume (serial dilution) calibration: concentration effects can bias the line "
                 "(Ureña Horno et al. 2025)")
    if for_cells and calibration.kind == "iron" and calibration.environment == "solution":
        w.append("solution calibration applied to labelled cells: iron in cells may be under-estimated "
                 "by 20–70 % (Ureña Horno et al. 2025); prefer a cell calibration")
    return w


def _norm(v) -> str:
    return str(v).strip().lower()


_ROI_KEYS = {"halfmax": ("fraction",), "nsd": ("n_sd",), "kmeans": ()}


def _roi_differences(cal_roi: dict, img_roi: dict) -> list[str]:
    if not cal_roi:
        return ["calibration does not record its ROI method: ROI match not checked"]
    ma, mb = cal_roi.get("method"), img_roi.get("method")
    if ma != mb:
        return [f"ROI method differs: calibration {ma!r}, image {mb!r}"]
    out = []
    keys = set(_ROI_KEYS.get(str(ma), ())) | {"split_sources"}
    for k in sorted(keys | (set(cal_roi) & set(img_roi)) - {"method", "noise_sd"}):
        a, b = cal_roi.get(k), img_roi.get(k)
        if a is None or b is None:
            continue
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            same = math.isclose(float(a), float(b), rel_tol=1e-6)
        else:
            same = a == b
        if not same:
            out.append(f"ROI parameter {k} differs: calibration {a}, image {b}")
    return out


@dataclass
class QuantityResult:
    """Iron (and cells) of one ROI: the columns a calibration adds to the results table."""

    name: str
    signal: float
    iron_ug: float | None = None
    iron_ci_low_ug: float | None = None
    iron_ci_high_ug: float | None = None
    cells: float | None = None
    cells_ci_low: float | None = None
    cells_ci_high: float | None = None
    below_lod: bool = False
    lod: float | None = None
    warnings: list[str] = field(default_factory=list)

    def columns(self, *, include_cells: bool = True) -> dict[str, Any]:
        """The table columns (numbers; ``None`` for values not reported, e.g. below the
        detection limit). ``warnings`` holds every warning of the ROI, ``; ``-separated."""
        def num(v):
            return None if v is None or not math.isfinite(v) else float(v)
        d: dict[str, Any] = {"iron_ug": num(self.iron_ug), "iron_ci_low_ug": num(self.iron_ci_low_ug),
                             "iron_ci_high_ug": num(self.iron_ci_high_ug), "below_lod": bool(self.below_lod)}
        if include_cells:
            d.update({"cells": num(self.cells), "cells_ci_low": num(self.cells_ci_low),
                      "cells_ci_high": num(self.cells_ci_high)})
        d["warnings"] = "; ".join(self.warnings)
        return d


QUANTITY_COLUMNS = ("iron_ug", "iron_ci_low_ug", "iron_ci_high_ug", "below_lod",
                    "cells", "cells_ci_low", "cells_ci_high", "warnings")


def apply_calibration(roi_results, calibration: Calibration, *, acquisition=None, roi_params=None,
                      voxel_volume_mm3: float | None = None, noise_sd_au: float | None = None,
                      iron_per_cell=None, confidence: float = 0.95) -> list[QuantityResult]:
    """Iron (µg) and cells of each ROI with intervals, detection-limit flags and warnings.

    Parameters
    ----------
    roi_results : list of ROIResult
        From :func:`mpi_viewer.roi.measure` (``name``, ``total_signal`` a.u.·mm³,
        ``peak_au``, ``noise_sd``, volume).
    calibration : Calibration
    acquisition : Acquisition or dict, optional
        The image's acquisition metadata (compared with the calibration's).
    roi_params : ROIParams, optional
        The targets' ROI parameters (compared; ``n_sd`` sets the detection limit).
    voxel_volume_mm3 : float, optional
        Needed for single-reference intervals (noise SD of the ROI signal).
    noise_sd_au : float, optional
        Image noise SD (a.u.); each ROI's own ``noise_sd`` is used when present.
    iron_per_cell : IronPerCell, optional
        Adds cells with intervals (:func:`mpi_viewer.cells.cells_from_iron`) for an
        iron calibration; a cell calibration gives cells directly.
    confidence : float

    Notes
    -----
    An ROI is ``below_lod`` when its peak is below ``n_sd`` × noise SD — the
    definition of :func:`detection_limit` applied to the measured peak, which does
    not depend on the calibration's intercept — or, when the ROI has no peak or
    noise, when its estimated amount is below the detection limit. Its iron and cell
    columns are then left empty. Results with a negative amount are flagged; lower
    bounds are clipped at 0 (iron and cells cannot be negative; clipping keeps the
    coverage of the interval).
    """
    from .cells import cells_from_iron

    common = compatibility_warnings(calibration, acquisition, roi_params,
                                    for_cells=iron_per_cell is not None)
    fit = calibration.fit
    lo_sig, hi_sig = fit.signal_range
    n_sd = float(getattr(roi_params, "n_sd", 5.0) or 5.0) if roi_params is not None else 5.0
    ppu = calibration.peak_per_unit
    out = []
    for r in roi_results:
        warn = list(common)
        name = getattr(r, "name", "roi")
        y0 = float(r.total_signal)
        sd_noise = getattr(r, "noise_sd", None)
        sd_noise = noise_sd_au if sd_noise is None else sd_noise
        ssd = roi_signal_sd(r, voxel_volume_mm3) if voxel_volume_mm3 else None
        x, lo, hi = inverse_predict(fit, y0, confidence=confidence, signal_sd=ssd)
        lod = detection_limit(ppu, sd_noise, roi_params)
        peak = getattr(r, "peak_au", None)
        if peak is not None and sd_noise is not None and np.isfinite(sd_noise) and np.isfinite(peak):
            # the definition of the detection limit, applied to the measured peak
            below = bool(peak < n_sd * sd_noise)
        else:
            below = bool(lod is not None and x < lod)
        if not np.isfinite(y0):
            below = True
        if len(fit.y) > 1 and (y0 < lo_sig or y0 > hi_sig) and not below:
            warn.append(f"signal {y0:.4g} a.u.·mm³ outside the calibrated range "
                        f"[{lo_sig:.4g}, {hi_sig:.4g}]: extrapolated")
        if x < 0:
            warn.append(f"negative {calibration.kind} estimate ({x:.3g} {calibration.x_unit})")
        if not (np.isfinite(lo) and np.isfinite(hi)) and not below:
            warn.append("no finite confidence interval for this calibration")
        for text in [*(getattr(r, "flags", []) or []), *(getattr(r, "warnings", []) or [])]:
            if text and text not in warn:
                warn.append(str(text))
        res = QuantityResult(name=name, signal=y0, below_lod=below, lod=lod, warnings=warn)
        if below:
            if lod is not None:
                warn.append(f"below detection limit ({lod:.3g} {calibration.x_unit})")
            else:
                warn.append("below detection limit")
        elif calibration.kind == "iron":
            res.iron_ug, res.iron_ci_low_ug, res.iron_ci_high_ug = x, _clip0(lo), hi
            if iron_per_cell is not None:
                dof = fit.dof if fit.mode == "line" else float("inf")
                n, nlo, nhi = cells_from_iron(x, lo, hi, iron_per_cell, confidence=confidence, dof=dof)
                res.cells, res.cells_ci_low, res.cells_ci_high = n, _clip0(nlo), nhi
        else:
            res.cells, res.cells_ci_low, res.cells_ci_high = x, _clip0(lo), hi
            if iron_per_cell is not None:
                f = iron_per_cell.mean_pg * 1e-6
                res.iron_ug, res.iron_ci_low_ug, res.iron_ci_high_ug = x * f, _clip0(lo) * f, hi * f
        out.append(res)
    return out


def _clip0(v: float) -> float:
    """Lower bounds of iron and cells are clipped at 0 (NaN and −inf kept as they are)."""
    return max(v, 0.0) if np.isfinite(v) else v
