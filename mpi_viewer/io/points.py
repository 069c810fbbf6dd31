"""Named point sets (fiducials, landmarks) and their CSV files.

A point file is a CSV with the header ``name,x,y,z``: one named point per row, in
physical millimetres in the image's ITK frame (LPS), ITK (x, y, z) order. A 2-D
point file (for 2-D MPI projections) has the header ``name,x,y``. Extra columns are
allowed and ignored on reading (a phantom file ``name,x,y,z,iron_ug`` reads as
points). Lines that are empty or start with ``#`` are skipped.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer.errors import InputError

_AXES = ("x", "y", "z")


@dataclass
class PointSet:
    """Named points in physical space.

    Attributes
    ----------
    names : list of str
        One unique, non-empty name per point.
    xyz_mm : numpy.ndarray, shape (n, d)
        Positions in mm, ITK order (x, y, z) — or (x, y) for 2-D points.
    """

    names: list[str] = field(default_factory=list)
    xyz_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        arr = np.asarray(self.xyz_mm, dtype=float)
        if arr.size == 0:
            arr = arr.reshape(0, arr.shape[-1] if arr.ndim == 2 else 3)
        self.xyz_mm = np.atleast_2d(arr)
        if self.xyz_mm.shape[0] != len(self.names):
            raise InputError(
                f"point set: {len(self.names)} names but {self.xyz_mm.shape[0]} positions"
            )

    def __len__(self) -> int:
        return len(self.names)

    @property
    def ndim(self) -> int:
        """Spatial dimension (2 or 3)."""
        return int(self.xyz_mm.shape[1])

    def get(self, name: str) -> np.ndarray:
        """Position (mm) of the point called ``name``."""
        try:
            return self.xyz_mm[self.names.index(name)].copy()
        except ValueError:
            raise KeyError(name) from None

    def validate(self, what: str = "point set") -> PointSet:
        """Raise :class:`InputError` for no points, empty/duplicate names, NaN or infinite values."""
        if len(self) == 0:
            raise InputError(f"{what}: no points")
        if self.ndim not in (2, 3):
            raise InputError(f"{what}: points must be 2-D or 3-D, got {self.ndim}-D")
        for n in self.names:
            if not n.strip():
                raise InputError(f"{what}: a point has an empty name")
        seen: set[str] = set()
        for n in self.names:
            if n in seen:
                raise InputError(f"{what}: duplicate point name {n!r}")
            seen.add(n)
        bad = ~np.all(np.isfinite(self.xyz_mm), axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"{what}: point {self.names[i]!r} has a NaN or infinite coordinate")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: ``{"names": [...], "xyz_mm": [[x, y, z], ...]}``."""
        return {"names": list(self.names), "xyz_mm": self.xyz_mm.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PointSet:
        xyz = np.asarray(d.get("xyz_mm", []), dtype=float)
        if xyz.size == 0:
            xyz = np.zeros((0, 3))
        return cls(names=list(d.get("names", [])), xyz_mm=xyz)


def read_text_file(path: str | Path, what: str) -> str:
    """The text of a small CSV/JSON input (UTF-8, BOM dropped); InputError in one line otherwise.

    ``what`` names the kind of file in the message ("point file", "phantom file").
    """
    from mpi_viewer.io.guards import read_small_text

    return read_small_text(path, what)


def read_points_csv(path: str | os.PathLike) -> PointSet:
    """Read a point file (``name,x,y,z`` or ``name,x,y``; mm, physical, ITK order).

    Parameters
    ----------
    path : str or Path
        CSV file with a header row. Column names are matched case-insensitively
        after stripping spaces; extra columns are ignored.

    Returns
    -------
    PointSet
        The points in file order.

    Raises
    ------
    InputError
        Unreadable file, missing ``name``/``x``/``y`` column, a non-numeric, NaN or
        infinite coordinate, an empty or duplicate name, or no points at all.
    """
    p = Path(path)
    text = read_text_file(p, "point file")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputError(
            f"{p}: empty point file (expected a header name,x,y,z and one row per point)"
        )
    from mpi_viewer.io.guards import csv_rows

    rows = csv_rows("\n".join(lines), str(p))
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ("name", "x", "y") if c not in header]
    if missing:
        raise InputError(
            f"{p}: missing column(s) {', '.join(missing)}; expected a header name,x,y,z (mm)"
        )
    axes = [a for a in _AXES if a in header]
    cols = [header.index(a) for a in axes]
    icol = header.index("name")
    names: list[str] = []
    xyz: list[list[float]] = []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) < len(header):
            raise InputError(
                f"{p}: row {lineno} has {len(row)} fields, the header has {len(header)}"
            )
        name = row[icol].strip()
        if not name:
            raise InputError(f"{p}: row {lineno} has an empty name")
        vals = []
        for a, c in zip(axes, cols, strict=True):
            try:
                v = float(row[c])
            except ValueError:
                raise InputError(
                    f"{p}: point {name!r} (row {lineno}): {a}={row[c].strip()!r} is not a number"
                ) from None
            if not math.isfinite(v):
                raise InputError(f"{p}: point {name!r} (row {lineno}): {a} is NaN or infinite")
            vals.append(v)
        names.append(name)
        xyz.append(vals)
    if not names:
        raise InputError(f"{p}: no points (only a header)")
    return PointSet(names=names, xyz_mm=np.asarray(xyz, dtype=float)).validate(str(p))


def write_points_csv(path: str | os.PathLike, pointset: PointSet) -> Path:
    """Write a point file atomically (header ``name,x,y,z`` in mm, or ``name,x,y`` for 2-D).

    Coordinates are written with 6 decimals (1 nm). The file appears complete or
    not at all: it is written beside the target and renamed.

    Raises
    ------
    InputError
        For a point set :meth:`PointSet.validate` refuses, or a name containing a
        line break.
    """
    p = Path(path)
    pointset.validate(str(p))
    if any("\n" in n or "\r" in n for n in pointset.names):
        raise InputError(f"{p}: point names must not contain line breaks")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", *_AXES[: pointset.ndim]])
    for n, row in zip(pointset.names, pointset.xyz_mm, strict=True):
        w.writerow([n, *(f"{v:.6f}" for v in row)])
    atomic_write_text(p, buf.getvalue())
    return p


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`mpi_viewer.io.atomic.atomic_write_text`)."""
    from mpi_viewer.io.atomic import atomic_write_text as _write

    return _write(path, text)
