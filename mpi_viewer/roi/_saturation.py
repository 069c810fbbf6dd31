"""Receiver-saturation correction from a measured response curve.

At high tracer concentration the MPI receiver saturates and the image under-reports
the signal. Ureña Horno et al. (Nanoscale 17:24060, 2025, doi:10.1039/d5nr02393a)
measure the receiver's response (measured against true signal) and correct every
image with it before thresholding and any statistic. :class:`SaturationCurve` is that
correction: a monotone (PCHIP) interpolation of the measured → true curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer.errors import InputError


@dataclass
class SaturationCurve:
    """Measured → true MPI signal (a.u.), both strictly increasing.

    Attributes
    ----------
    measured_au, true_au : tuple of float
        Points of the receiver's response curve, sorted by ``measured_au``.

    Notes
    -----
    Between the points the correction is a monotone cubic (PCHIP) interpolation;
    beyond the last point it continues the last segment's slope, below the first
    point it scales by ``true/measured`` of the first point (identity when the
    curve starts at the origin). Reference: Ureña Horno et al. 2025,
    doi:10.1039/d5nr02393a.
    """

    measured_au: tuple[float, ...]
    true_au: tuple[float, ...]

    def __post_init__(self) -> None:
        m = np.asarray(self.measured_au, dtype=float)
        t = np.asarray(self.true_au, dtype=float)
        if m.ndim != 1 or m.shape != t.shape or m.size < 2:
            raise InputError("saturation curve: needs at least two (measured, true) points")
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(t))):
            raise InputError("saturation curve: values must be finite")
        order = np.argsort(m)
        m, t = m[order], t[order]
        if np.any(np.diff(m) <= 0) or np.any(np.diff(t) <= 0):
            raise InputError(
                "saturation curve: measured and true signal must both increase strictly"
            )
        self.measured_au = tuple(float(v) for v in m)
        self.true_au = tuple(float(v) for v in t)

    @classmethod
    def from_csv(cls, path: str | Path) -> SaturationCurve:
        """Read a CSV with a header naming a ``measured`` and a ``true`` column.

        Column names are matched by prefix (``measured_au``, ``true_au`` work); a file
        without a header is read as two columns, measured then true.
        """
        from mpi_viewer.io.guards import csv_rows, read_small_text

        p = Path(path)
        if not (p.exists() or p.is_symlink()):
            raise InputError(f"{p}: no such saturation-curve file")
        text = read_small_text(p, "saturation curve")
        rows = [r for r in csv_rows(text, str(p)) if r and any(c.strip() for c in r)]
        if not rows:
            raise InputError(f"{p}: empty saturation curve")
        header = [c.strip().lower() for c in rows[0]]
        im, it = 0, 1
        body = rows
        if any(h.startswith("measured") for h in header) or any(
            h.startswith("true") for h in header
        ):
            try:
                im = next(i for i, h in enumerate(header) if h.startswith("measured"))
                it = next(i for i, h in enumerate(header) if h.startswith("true"))
            except StopIteration:
                raise InputError(
                    f"{p}: the header needs a 'measured' and a 'true' column"
                ) from None
            body = rows[1:]
        try:
            m = [float(r[im]) for r in body]
            t = [float(r[it]) for r in body]
        except (ValueError, IndexError):
            raise InputError(
                f"{p}: saturation curve rows must hold two numbers (measured, true)"
            ) from None
        try:
            return cls(tuple(m), tuple(t))
        except InputError as exc:
            raise InputError(f"{p}: {exc}") from None

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Corrected (true) signal for measured values; float32 in, float32 out."""
        from scipy.interpolate import PchipInterpolator

        m = np.asarray(self.measured_au)
        t = np.asarray(self.true_au)
        v = np.asarray(values)
        out_dtype = v.dtype if np.issubdtype(v.dtype, np.floating) else np.float64
        f = PchipInterpolator(m, t, extrapolate=False)
        out = f(v)
        hi = v > m[-1]
        slope_hi = (t[-1] - t[-2]) / (m[-1] - m[-2])
        out = np.where(hi, t[-1] + (v - m[-1]) * slope_hi, out)
        lo = v < m[0]
        scale_lo = t[0] / m[0] if m[0] != 0 else 1.0
        out = np.where(lo, v * scale_lo if m[0] > 0 else t[0] + (v - m[0]), out)
        return out.astype(out_dtype, copy=False)

    def to_dict(self) -> dict[str, Any]:
        return {"measured_au": list(self.measured_au), "true_au": list(self.true_au)}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SaturationCurve | None:
        if not d:
            return None
        return cls(tuple(d["measured_au"]), tuple(d["true_au"]))
