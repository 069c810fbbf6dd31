"""What a calibration shows: its one-line summary, the scan it was made on, the data of
its plot and the warnings an iron table says once or per ROI.

The Calibration dock and the report draw these; nothing here draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_ACQ_TEXT = (
    ("mode", "{} scan"),
    ("gradient_T_per_m", "gradient {:g} T/m"),
    ("drive_amplitude_mT", "drive {:g} mT"),
    ("drive_frequency_kHz", "{:g} kHz"),
    ("averages", "{} average(s)"),
    ("scanner", "scanner {}"),
)


def fmt(v, digits: int = 4) -> str:
    """A number for a table cell or a label (empty for None/NaN, ∞ kept, booleans yes/no)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return ""
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    return f"{f:.{digits}g}"


def describe_acquisition(acq: dict | None) -> str:
    """``3D scan, gradient 5.7 T/m, drive 20 mT, 45 kHz, 1 average(s), scanner X``."""
    acq = acq or {}
    parts = [f.format(acq[k]) for k, f in _ACQ_TEXT if acq.get(k) is not None]
    return ", ".join(parts) if parts else "no acquisition metadata on the image"


def describe_fit(cal) -> str:
    """The fit of a :class:`~mpi_viewer.calibration.Calibration` in one line (slope ± SE,
    intercept ± SE, R², n, options; units of its kind)."""
    f, u = cal.fit, cal.x_unit
    if f.mode == "single_reference":
        return (
            f"{cal.name}: single reference, slope {fmt(f.slope)} ± {fmt(f.se_slope, 2)} "
            f"a.u.·mm³/{u} (ratio, intercept 0)"
        )
    return (
        f"{cal.name}: slope {fmt(f.slope)} ± {fmt(f.se_slope, 2)} a.u.·mm³/{u}, "
        f"intercept {fmt(f.intercept)} ± {fmt(f.se_intercept, 2)} a.u.·mm³, "
        f"R² {f.r_squared:.4f}, n {f.n}"
        + (", through origin" if f.through_origin else "")
        + (", relative weights" if f.weighting == "relative" else "")
    )


def split_warnings(warning_lists) -> tuple[list[str], list[list[str]]]:
    """Warnings every row shares (said once, beside the table) and each row's own.

    A calibration-level warning (e.g. a solution calibration applied to cells) is true of
    every ROI: repeating it on every row hides the warnings that concern one number."""
    lists = [list(w or []) for w in warning_lists]
    if len(lists) < 2:
        return [], lists
    common = [w for w in lists[0] if all(w in other for other in lists[1:])]
    return common, [[w for w in ws if w not in common] for ws in lists]


def iron_rows(results, kind: str) -> tuple[list[str], list[list[str]], list[str]]:
    """The iron-per-ROI table: headers (with units), rows, the warnings of every row.

    ``results`` are :class:`~mpi_viewer.calibration.QuantityResult`; ``kind`` is the
    calibration's (``"iron"``: µg Fe, ``"cells"``: cells). The last column holds each
    row's own warnings (:func:`split_warnings`)."""
    unit = "µg Fe" if kind == "iron" else "cells"
    common, own = split_warnings([r.warnings for r in results])
    rows = []
    for r, warns in zip(results, own, strict=True):
        v, lo, hi = (
            (r.iron_ug, r.iron_ci_low_ug, r.iron_ci_high_ug)
            if kind == "iron"
            else (r.cells, r.cells_ci_low, r.cells_ci_high)
        )
        rows.append(
            [
                r.name,
                fmt(r.signal),
                fmt(v),
                fmt(lo),
                fmt(hi),
                fmt(bool(r.below_lod)),
                "; ".join(warns),
            ]
        )
    headers = [
        "ROI",
        "total signal (a.u.·mm³)",
        f"{kind} ({unit})",
        f"95 % CI low ({unit})",
        f"95 % CI high ({unit})",
        "below LOD",
        "warnings",
    ]
    return headers, rows, common


@dataclass
class CalibrationPlot:
    """The arrays of a calibration plot (amount on x: µg Fe or cells; signal a.u.·mm³)."""

    x: np.ndarray
    y: np.ndarray
    names: list
    line_x: np.ndarray
    line_y: np.ndarray
    band_lo: np.ndarray | None
    band_hi: np.ndarray | None
    residuals: np.ndarray | None
    roi_x: list | None
    roi_y: list | None
    roi_names: list | None
    x_label: str
    title: str


def calibration_plot(cal, iron_results=()) -> CalibrationPlot:
    """Phantoms, the fitted line with its 95 % prediction band, residuals, and the ROIs
    placed on the line at their calibrated amounts (those above the detection limit)."""
    from mpi_viewer.calibration.fit import prediction_band

    f = cal.fit
    pts = [p for p in cal.points if (p.iron_ug if cal.kind == "iron" else p.cells) is not None]
    x = np.array([p.amount(cal.kind) for p in pts], dtype=float)
    y = np.array([p.signal for p in pts], dtype=float)
    roi_x = roi_y = roi_names = None
    if iron_results:
        res = [r for r in iron_results if not r.below_lod]
        val = [(r.iron_ug if cal.kind == "iron" else r.cells) for r in res]
        keep = [(v, r) for v, r in zip(val, res, strict=True) if v is not None and np.isfinite(v)]
        roi_x = [v for v, _ in keep]
        roi_y = [r.signal for _, r in keep]
        roi_names = [r.name for _, r in keep]
    hi = max([*(x.tolist() or [1.0]), *(roi_x or [])]) * 1.08
    line_x = np.linspace(0.0, hi, 200)
    lo_b, hi_b = prediction_band(f, line_x)
    summary = cal.summary()
    return CalibrationPlot(
        x=x,
        y=y,
        names=[p.name for p in pts],
        line_x=line_x,
        line_y=f.predict(line_x),
        band_lo=lo_b if np.isfinite(lo_b).any() else None,
        band_hi=hi_b if np.isfinite(hi_b).any() else None,
        residuals=y - f.predict(x) if len(x) else None,
        roi_x=roi_x,
        roi_y=roi_y,
        roi_names=roi_names,
        x_label="iron (µg Fe)" if cal.kind == "iron" else "cells",
        title=summary if len(summary) < 70 else cal.name,
    )
