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

import datetime as _dt
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer.calibration.fit import (
    ENVIRONMENTS,
    KINDS,
    MIN_POINTS,
    MIN_R2,
    PREPARATIONS,
    SCHEMA_VERSION,
    X_UNITS,
    CalibrationFit,
    _json_safe,
    detection_limit,
    fit_calibration,
    inverse_predict,
    peak_per_amount,
)
from mpi_viewer.calibration.phantoms import (
    CalibrationPoint,
    roi_calibration_signal,
    roi_signal_sd,
)
from mpi_viewer.defaults import CONFIDENCE, N_SD
from mpi_viewer.errors import InputError


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
    def from_points(
        cls,
        name: str,
        points: list[CalibrationPoint],
        *,
        kind: str = "iron",
        through_origin: bool = False,
        weighting: str = "ols",
        mode: str = "line",
        reference: str | None = None,
        tracer: str | None = None,
        tracer_lot: str | None = None,
        environment: str | None = None,
        preparation: str = "fixed_concentration",
        acquisition: dict | None = None,
        roi: dict | None = None,
        date: str | None = None,
        notes: str = "",
    ) -> Calibration:
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
                    raise InputError(
                        f"reference phantom {reference!r} not among {', '.join(p.name for p in points)}"
                    )
        fit = fit_calibration(
            [p.signal for p in used],
            [p.amount(kind) for p in used],
            through_origin=through_origin,
            weighting=weighting,
            mode=mode,
            signal_sd=[p.signal_sd for p in used],
        )
        return cls(
            name=_safe_name(name),
            kind=kind,
            points=list(points),
            fit=fit,
            tracer=tracer,
            tracer_lot=tracer_lot,
            environment=environment,
            preparation=preparation,
            acquisition=dict(acquisition or {}),
            roi=dict(roi or {}),
            through_origin=through_origin,
            weighting=weighting,
            mode=mode,
            date=date or _dt.date.today().isoformat(),
            notes=notes,
        )

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(
            {
                "schema_version": self.schema_version,
                "name": self.name,
                "kind": self.kind,
                "x_unit": self.x_unit,
                "signal_unit": "a.u.·mm³",
                "tracer": self.tracer,
                "tracer_lot": self.tracer_lot,
                "environment": self.environment,
                "preparation": self.preparation,
                "acquisition": dict(self.acquisition),
                "roi": dict(self.roi),
                "points": [p.to_dict() for p in self.points],
                "fit_options": {
                    "through_origin": self.through_origin,
                    "weighting": self.weighting,
                    "mode": self.mode,
                },
                "fit": self.fit.to_dict(),
                "date": self.date,
                "notes": self.notes,
            }
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "calibration") -> Calibration:
        if not isinstance(d, dict):
            raise InputError(f"{source}: not a calibration (expected a JSON object)")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(
                f"{source}: calibration schema version {version!r}, this program reads version {SCHEMA_VERSION}"
            )
        try:
            kind = d["kind"]
            _check_choice("kind", kind, KINDS)
            points = [CalibrationPoint.from_dict(p) for p in d.get("points", [])]
            opts = d.get("fit_options", {})
            fit = CalibrationFit.from_dict(d["fit"])
            _check_slope(fit.slope, "fit.slope")
            return cls(
                name=str(d.get("name") or "calibration"),
                kind=kind,
                points=points,
                fit=fit,
                tracer=d.get("tracer"),
                tracer_lot=d.get("tracer_lot"),
                environment=d.get("environment", "solution"),
                preparation=d.get("preparation", "fixed_concentration"),
                acquisition=dict(d.get("acquisition") or {}),
                roi=dict(d.get("roi") or {}),
                through_origin=bool(opts.get("through_origin", False)),
                weighting=opts.get("weighting", "ols"),
                mode=opts.get("mode", "line"),
                date=str(d.get("date", "")),
                notes=str(d.get("notes", "")),
            )
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError) as exc:
            raise InputError(
                f"{source}: malformed calibration ({type(exc).__name__}: {_one_line(exc)})"
            ) from None

    def summary(self) -> str:
        f = self.fit
        unit = self.x_unit
        if f.mode == "single_reference":
            return f"{self.name}: single reference, {f.slope:.4g} a.u.·mm³/{unit}"
        return (
            f"{self.name}: signal = {line_text(f.slope, f.intercept, self.kind)} "
            f"(R² {f.r_squared:.4f}, n {f.n}, {self.tracer or 'tracer ?'}, {self.environment})"
        )


def line_text(slope: float, intercept: float, x_name: str, digits: int = 4) -> str:
    """``364.3 × iron − 1.947``: a calibration line as read aloud (a true minus sign,
    never ``+ -``; no intercept term when it is 0)."""
    text = f"{slope:.{digits}g} × {x_name}"
    if intercept == 0:
        return text
    sign = "−" if intercept < 0 else "+"
    return f"{text} {sign} {abs(intercept):.{digits}g}"


def _check_slope(slope, what: str = "slope") -> None:
    """A calibration's slope (signal per µg or per cell) must be positive and finite."""
    try:
        v = float(slope)
    except (TypeError, ValueError):
        raise InputError(f"{what} {slope!r}: not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise InputError(
            f"{what} {v:g}: a calibration slope must be positive and finite (more iron, more signal)"
        )


def _check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise InputError(f"{what} {value!r}: expected one of {', '.join(choices)}")


def _safe_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name).strip()).strip("._")
    return s or "calibration"


def save_calibration(calibration: Calibration, path: str | Path) -> Path:
    """Write a calibration as JSON, atomically (temporary file, then rename)."""
    from mpi_viewer.io.atomic import atomic_write_text

    text = json.dumps(calibration.to_dict(), indent=2, ensure_ascii=False)
    return atomic_write_text(Path(path), text + "\n", mkdir=True)


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration JSON; InputError for a missing, malformed or other-version file."""
    from mpi_viewer.io.guards import read_json_file

    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        raise InputError(f"{p}: no such calibration file")
    d = read_json_file(p, "calibration JSON")
    if not isinstance(d, dict):
        raise InputError(f"{p}: a calibration must be a JSON object, not {type(d).__name__}")
    try:
        return Calibration.from_dict(d, source=str(p))
    except InputError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise InputError(f"{p}: not a valid calibration ({_one_line(exc)})") from None


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
_ACQ_FIELDS = (
    ("mode", "scan mode", None),
    ("gradient_T_per_m", "gradient", "T/m"),
    ("drive_amplitude_mT", "drive amplitude", "mT"),
    ("drive_frequency_kHz", "drive frequency", "kHz"),
    ("averages", "averages", None),
)


def compatibility_warnings(
    calibration: Calibration, acquisition=None, roi_params=None, *, for_cells: bool = False
) -> list[str]:
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
        same = (
            math.isclose(float(a), float(b), rel_tol=1e-3)
            if unit or key == "averages"
            else _norm(a) == _norm(b)
        )
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
        w.append(
            "fixed-volume (serial dilution) calibration: concentration effects can bias the line "
            "(Ureña Horno et al. 2025)"
        )
    if for_cells and calibration.kind == "iron" and calibration.environment == "solution":
        w.append(
            "solution calibration applied to labelled cells: iron in cells may be under-estimated "
            "by 20–70 % (Ureña Horno et al. 2025); prefer a cell calibration"
        )
    return w


def _norm(v) -> str:
    return str(v).strip().lower()


_ROI_KEYS = {"halfmax": ("fraction",), "nsd": ("n_sd",), "kmeans": ()}


def roi_mismatches(calibration: Calibration, roi_params) -> list[str]:
    """How the calibration's ROI method and parameters differ from ``roi_params``
    (empty when they match, or when the calibration does not record them)."""
    if not calibration.roi or roi_params is None:
        return []
    img_roi = roi_params.to_dict() if hasattr(roi_params, "to_dict") else dict(roi_params)
    return _roi_differences(calibration.roi, img_roi)


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

        d: dict[str, Any] = {
            "iron_ug": num(self.iron_ug),
            "iron_ci_low_ug": num(self.iron_ci_low_ug),
            "iron_ci_high_ug": num(self.iron_ci_high_ug),
            "below_lod": bool(self.below_lod),
        }
        if include_cells:
            d.update(
                {
                    "cells": num(self.cells),
                    "cells_ci_low": num(self.cells_ci_low),
                    "cells_ci_high": num(self.cells_ci_high),
                }
            )
        d["warnings"] = "; ".join(self.warnings)
        return d


QUANTITY_COLUMNS = (
    "iron_ug",
    "iron_ci_low_ug",
    "iron_ci_high_ug",
    "below_lod",
    "cells",
    "cells_ci_low",
    "cells_ci_high",
    "warnings",
)


def apply_calibration(
    roi_results,
    calibration: Calibration,
    *,
    acquisition=None,
    roi_params=None,
    voxel_volume_mm3: float | None = None,
    noise_sd_au: float | None = None,
    iron_per_cell=None,
    confidence: float = CONFIDENCE,
) -> list[QuantityResult]:
    """Iron (µg) and cells of each ROI with intervals, detection-limit flags and warnings.

    Parameters
    ----------
    roi_results : list of ROIResult
        From :func:`mpi_viewer.roi.measure` (``name``, ``total_signal`` a.u.·mm³ — the
        sub-voxel ``total_signal_subvoxel`` where there is one, as for the phantoms —,
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
        Adds cells with intervals (:func:`mpi_viewer.calibration.cells.cells_from_iron`) for an
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
    coverage of the interval). An ROI's interval also carries the uncertainties of its
    own measurement that the phantoms (alone, brighter) do not show, added to the
    variance of a new observation: its neighbours' subtracted signal
    (``neighbour_signal_sd``) and its delineation (``delineation_sd``: the half-maximum
    threshold's jitter with the noisy peak, which the line's pooled scatter under-states
    for the brightest sources).
    """
    from mpi_viewer.calibration.cells import cells_from_iron

    common = compatibility_warnings(
        calibration, acquisition, roi_params, for_cells=iron_per_cell is not None
    )
    fit = calibration.fit
    _check_slope(fit.slope, f"calibration {calibration.name!r}: slope")
    lo_sig, hi_sig = fit.signal_range
    n_sd = float(getattr(roi_params, "n_sd", N_SD) or N_SD) if roi_params is not None else N_SD
    ppu = calibration.peak_per_unit
    out = []
    for r in roi_results:
        warn = list(common)
        name = getattr(r, "name", "roi")
        y0 = roi_calibration_signal(r)  # the sub-voxel total at revision ≥ 2, as the phantoms'
        sd_noise = getattr(r, "noise_sd", None)
        sd_noise = noise_sd_au if sd_noise is None else sd_noise
        ssd = roi_signal_sd(r, voxel_volume_mm3) if voxel_volume_mm3 else None
        # the neighbours' subtraction and the delineation: uncertainties of this ROI that the
        # phantoms' pooled scatter does not carry
        nsd = math.hypot(
            float(getattr(r, "neighbour_signal_sd", 0.0) or 0.0),
            float(getattr(r, "delineation_sd", 0.0) or 0.0),
        )
        x, lo, hi = inverse_predict(fit, y0, confidence=confidence, signal_sd=ssd, extra_sd=nsd)
        lod = detection_limit(ppu, sd_noise, roi_params)
        peak = getattr(r, "peak_au", None)
        if (
            peak is not None
            and sd_noise is not None
            and np.isfinite(sd_noise)
            and np.isfinite(peak)
        ):
            # the definition of the detection limit, applied to the measured peak
            below = bool(peak < n_sd * sd_noise)
        else:
            below = bool(lod is not None and x < lod)
        if not np.isfinite(y0):
            below = True
        if len(fit.y) > 1 and (y0 < lo_sig or y0 > hi_sig) and not below:
            warn.append(
                f"signal {y0:.4g} a.u.·mm³ outside the calibrated range "
                f"[{lo_sig:.4g}, {hi_sig:.4g}]: extrapolated"
            )
        if x < 0:
            warn.append(f"negative {calibration.kind} estimate ({x:.3g} {calibration.x_unit})")
        if not (np.isfinite(lo) and np.isfinite(hi)) and not below:
            warn.append("no finite confidence interval for this calibration")
        from mpi_viewer.roi.regions import flag_sentences

        own = list(getattr(r, "warnings", []) or [])
        for text in [*flag_sentences(getattr(r, "flags", []), own), *own]:
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
                n, nlo, nhi = cells_from_iron(
                    x, lo, hi, iron_per_cell, confidence=confidence, dof=dof
                )
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
