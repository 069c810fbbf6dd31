"""Cell number from iron: iron per cell, intervals, labels.

Number of cells in vivo = iron measured in vivo by MPI / iron per cell measured ex
vivo (Sehl et al., Tomography 6:315, 2020, doi:10.18383/j.tom.2020.00043), or directly
from a calibration against labelled cells (Ureña Horno et al., Nanoscale 17:24060,
2025, doi:10.1039/d5nr02393a; see :mod:`mpi_viewer.calibration`, ``kind="cells"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpi_viewer.defaults import CONFIDENCE, IRON_PER_CELL_PG, IRON_PER_CELL_SD_PG  # noqa: F401
from mpi_viewer.errors import InputError

#: Monte Carlo draws and seed of :func:`cells_from_iron` (fixed: results replay exactly).
MC_DRAWS = 200_000
MC_SEED = 20250101


@dataclass(frozen=True)
class IronPerCell:
    """Iron per labelled cell, pg Fe/cell: mean and the SD of that mean.

    ``sd_pg`` is the standard uncertainty of the mean iron per cell of the injected
    population (e.g. the SD of ICP-MS replicates), not the spread between single
    cells: a ROI holds 10³–10⁶ cells, whose mean varies far less than one cell does.

    Raises
    ------
    InputError
        Missing, zero, negative or non-finite mean; negative or non-finite SD; an SD
        larger than the mean.
    """

    mean_pg: float
    sd_pg: float = 0.0

    def __post_init__(self):
        m, s = self.mean_pg, self.sd_pg
        if m is None:
            raise InputError("iron per cell: missing (give the mean in pg Fe/cell)")
        try:
            m = float(m)
            s = float(0.0 if s is None else s)
        except (TypeError, ValueError):
            raise InputError(
                f"iron per cell {self.mean_pg!r} ± {self.sd_pg!r}: not a number"
            ) from None
        if not math.isfinite(m) or m <= 0:
            raise InputError(f"iron per cell {self.mean_pg!r} pg: must be a number > 0")
        if not math.isfinite(s) or s < 0:
            raise InputError(f"iron per cell SD {self.sd_pg!r} pg: must be a number ≥ 0")
        if s > m:
            raise InputError(f"iron per cell SD {s:g} pg is larger than the mean {m:g} pg")
        object.__setattr__(self, "mean_pg", m)
        object.__setattr__(self, "sd_pg", s)

    def to_dict(self) -> dict[str, Any]:
        return {"mean_pg": self.mean_pg, "sd_pg": self.sd_pg}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> IronPerCell:
        d = d or {}
        return cls(d.get("mean_pg"), d.get("sd_pg", 0.0))


def cells_from_iron(
    iron_ug: float,
    low_ug: float,
    high_ug: float,
    ipc: IronPerCell,
    *,
    confidence: float = CONFIDENCE,
    dof: float = float("inf"),
    draws: int = MC_DRAWS,
    seed: int = MC_SEED,
) -> tuple[float, float, float]:
    """Cell number with an interval carrying calibration and iron-per-cell uncertainty.

    ``cells = iron / iron_per_cell`` (µg → pg: × 10⁶).

    Method (Monte Carlo with a fixed seed, so results replay exactly): the iron
    interval from the calibration (generally asymmetric, Fieller) is turned back into
    a split Student-t distribution — ``iron + T·sᵢ`` with ``T ~ t(dof)`` and the scale
    ``sᵢ = half-width / t-quantile`` of the side ``T`` falls on — so that, without
    iron-per-cell uncertainty, its quantiles are exactly the calibration interval.
    The iron per cell is drawn from a normal distribution of the given mean and SD,
    truncated at zero. The interval is the central ``confidence`` range of the ratio.
    With ``sd_pg = 0`` the interval is the iron interval scaled exactly.

    Parameters
    ----------
    iron_ug, low_ug, high_ug : float
        Iron estimate and its interval, µg Fe (bounds may be NaN: unknown, or ±inf).
    ipc : IronPerCell
    confidence : float
        Of the iron interval and of the result.
    dof : float
        Degrees of freedom behind the iron interval (the calibration's residual dof;
        inf for a normal interval).

    Returns
    -------
    (cells, low, high) : tuple of float
    """
    from scipy import stats

    if not 0 < confidence < 1:
        raise InputError(f"confidence {confidence!r}: expected a number between 0 and 1")
    scale = 1e6 / ipc.mean_pg  # cells per µg at the mean iron per cell
    cells = iron_ug * scale
    bounds_known = np.isfinite(low_ug) and np.isfinite(high_ug)
    if (
        ipc.sd_pg == 0
        or not (np.isfinite(low_ug) or np.isnan(low_ug))
        or not (np.isfinite(high_ug) or np.isnan(high_ug))
    ):
        return float(cells), float(low_ug * scale), float(high_ug * scale)
    p = 0.5 + confidence / 2
    dist = stats.norm if not np.isfinite(dof) else stats.t(dof)
    q = float(dist.ppf(p))
    rng = np.random.default_rng(seed)
    if bounds_known:
        s_lo = max(iron_ug - low_ug, 0.0) / q
        s_hi = max(high_ug - iron_ug, 0.0) / q
        t = rng.standard_normal(draws) if not np.isfinite(dof) else rng.standard_t(dof, size=draws)
        iron = iron_ug + np.where(t < 0, t * s_lo, t * s_hi)
    else:  # interval unknown: carry the iron-per-cell part only
        iron = np.full(draws, float(iron_ug))
    ipc_draw = rng.normal(ipc.mean_pg, ipc.sd_pg, size=draws)
    bad = ipc_draw <= 0
    while np.any(bad):
        ipc_draw[bad] = rng.normal(ipc.mean_pg, ipc.sd_pg, size=int(bad.sum()))
        bad = ipc_draw <= 0
    ratio = iron * 1e6 / ipc_draw
    lo, hi = np.quantile(ratio, [1 - p, p])
    return float(cells), float(lo), float(hi)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def format_cells(
    n: float | None,
    lo: float | None = None,
    hi: float | None = None,
    *,
    digits: int = 1,
    unit: str = "cells",
) -> str:
    """``2.4 × 10⁵ cells [1.9–2.9 × 10⁵]``: a label with one shared power of ten.

    Below 1000 the numbers are written out (``850 cells [600–1100]``). Missing or
    infinite bounds are left out; a missing ``n`` gives ``"—"``.
    """
    if n is None or not np.isfinite(n):
        return "—"
    has_ci = lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi)
    if abs(n) < 1e3:
        text = f"{n:.0f} {unit}"
        return text + (f" [{lo:.0f}–{hi:.0f}]" if has_ci else "")
    exp = int(math.floor(math.log10(abs(n))))
    if round(abs(n) / 10**exp, digits) >= 10:  # 9.99e4 → 1.0 × 10⁵, not 10.0 × 10⁴
        exp += 1
    p10 = f"10{str(exp).translate(_SUPERSCRIPT)}"
    text = f"{n / 10**exp:.{digits}f} × {p10} {unit}"
    if has_ci:
        text += f" [{lo / 10**exp:.{digits}f}–{hi / 10**exp:.{digits}f} × {p10}]"
    return text


def format_iron(x: float | None, lo: float | None = None, hi: float | None = None) -> str:
    """``2.35 µg Fe [1.91–2.80]`` (three significant figures)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    text = f"{x:.3g} µg Fe"
    if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
        text += f" [{lo:.3g}–{hi:.3g}]"
    return text
