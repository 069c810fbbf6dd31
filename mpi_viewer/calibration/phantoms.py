"""Calibration phantoms: phantom files, template-placed phantoms, and their measurement with the targets' ROI method."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer.calibration.fit import _f
from mpi_viewer.errors import InputError


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
    from mpi_viewer.io.points import read_text_file

    p = Path(path)
    text = read_text_file(p, "phantom file")
    from mpi_viewer.io.guards import csv_rows

    rows = csv_rows("\n".join(line for line in text.splitlines() if line.strip()), str(p))
    if not rows:
        raise InputError(f"{p}: empty phantom file (expected header name,x,y,z,iron_ug)")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ("name", "x", "y", "z", "iron_ug") if c not in header]
    if missing:
        raise InputError(
            f"{p}: missing column(s) {', '.join(missing)} (expected header name,x,y,z,iron_ug)"
        )
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
            raise InputError(
                f"{p} line {lineno}: phantom {name!r} has a non-numeric coordinate"
            ) from None
        if not all(math.isfinite(v) for v in xyz):
            raise InputError(f"{p} line {lineno}: phantom {name!r} has a non-finite coordinate")
        raw = row[col["iron_ug"]].strip()
        try:
            iron = float(raw)
        except ValueError:
            raise InputError(
                f"{p} line {lineno}: phantom {name!r} iron_ug {raw!r} is not a number"
            ) from None
        if not math.isfinite(iron) or iron < 0:
            raise InputError(
                f"{p} line {lineno}: phantom {name!r} iron_ug {raw!r} must be a finite number ≥ 0"
            )
        phantoms.append(Phantom(name, xyz, iron))  # type: ignore[arg-type]
    if len(phantoms) < min_count:
        raise InputError(
            f"{p}: {len(phantoms)} phantom(s), at least {min_count} needed for a calibration"
        )
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
    d = volume.ndim  # a 2-D image: the phantoms' x, y on its own axes (z not used)
    inside = volume.contains_physical(np.array([ph.xyz_mm[:d] for ph in phantoms], dtype=float))
    out = [ph.name for ph, ok in zip(phantoms, inside, strict=True) if not ok]
    if out and raise_error:
        ph = next(p for p in phantoms if p.name == out[0])
        where = ", ".join(f"{v:g}" for v in ph.xyz_mm)
        raise InputError(
            f"phantom {ph.name!r} at ({where}) mm lies outside the image {volume.name!r}"
        )
    return out


def phantoms_from_template(
    volume, template, iron_ug, *, tolerance_mm: float = 1.5, min_count: int = 2
) -> tuple[list[Phantom], Any]:
    """Phantom positions from a phantom-holder template found in the MPI image.

    The holder's fiducials are detected as hot spots
    (:func:`mpi_viewer.registration.molds.detect_fiducials`), matched to the template
    (:func:`mpi_viewer.registration.molds.match_fiducials`: the template → image pose), and the
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
    from mpi_viewer.registration import molds

    t = molds.load_template(template)
    wells = list(t.wells)
    if not wells:
        raise InputError(f"template {t.name!r} has no phantom wells")
    names = [str(w["name"]) for w in wells]
    if isinstance(iron_ug, dict):
        unknown = sorted(set(iron_ug) - set(names))
        if unknown:
            raise InputError(
                f"template {t.name!r} has no well(s) {', '.join(unknown)} (wells: {', '.join(names)})"
            )
        amounts = [iron_ug.get(n) for n in names]
    else:
        amounts = list(iron_ug)
        if len(amounts) != len(names):
            raise InputError(
                f"template {t.name!r} has {len(names)} wells, {len(amounts)} iron values given"
            )
    match = molds.match_fiducials(
        molds.detect_fiducials(volume, t, modality="MPI"), t, tolerance_mm=tolerance_mm
    )
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
        raise InputError(
            f"template {t.name!r}: {len(phantoms)} filled well(s), at least {min_count} needed"
        )
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
        ROI total signal, a.u.·mm³ (a.u.·mm² in 2-D): the sub-voxel integrated total
        (``total_signal_subvoxel``) of thresholded ROIs measured at revision ≥ 2, as for
        the targets the calibration is applied to; else ``total_signal``.
    iron_ug : float or None
        Known iron, µg Fe (iron calibrations).
    cells : float or None
        Known number of labelled cells (cell calibrations).
    peak_au, mean_au, volume_mm3, noise_sd_au, snr : float or None
        ROI statistics of the phantom (a.u., mm³; mean and volume of its written mask).
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
            raise InputError(
                f"calibration point {self.name!r} has no {'iron_ug' if kind == 'iron' else 'cells'} value"
            )
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


def roi_calibration_signal(result) -> float:
    """The total an ROI result gives a calibration: the sub-voxel integrated total where
    there is one (thresholded ROIs, measurement revision ≥ 2), else ``total_signal``."""
    sig = getattr(result, "calibration_signal", None)
    return float(result.total_signal if sig is None else sig)


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
    from mpi_viewer.roi import regions as roi

    phantoms_outside(volume, phantoms)
    try:
        results = roi.measure(
            volume,
            [ph.xyz_mm[: volume.ndim] for ph in phantoms],  # 2-D image: x, y only
            roi_params,
            names=[ph.name for ph in phantoms],
        )
    except InputError as exc:  # name the phantom row, not "seed (x, y, z) mm"
        for k, ph in enumerate(phantoms):
            try:
                roi.measure(volume, [ph.xyz_mm[: volume.ndim]], roi_params, names=[ph.name])
            except InputError as one:
                raise InputError(f"phantom row {k + 1} ({ph.name}): {one}") from None
        raise exc
    vv = volume.voxel_volume_mm
    points = []
    for ph, r in zip(phantoms, results, strict=True):
        amount = {"iron_ug": float(ph.iron_ug)} if kind == "iron" else {"cells": float(ph.iron_ug)}
        points.append(
            CalibrationPoint(
                name=ph.name,
                signal=roi_calibration_signal(r),
                **amount,
                peak_au=_f(getattr(r, "peak_au", None)),
                mean_au=_f(getattr(r, "mean_au", None)),
                volume_mm3=_f(_roi_volume(r)),
                noise_sd_au=_f(getattr(r, "noise_sd", None)),
                snr=_f(getattr(r, "snr", None)),
                signal_sd=roi_signal_sd(r, vv),
                xyz_mm=tuple(float(v) for v in ph.xyz_mm),
                flags=list(getattr(r, "flags", []) or []),
            )
        )
    return points
