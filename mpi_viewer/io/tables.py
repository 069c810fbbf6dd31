"""The results table: one row per ROI, units in the column names, written as CSV.

Rows are plain dicts (column → value). :func:`rows_from_results` makes them from
:class:`~mpi_viewer.roi.ROIResult` objects; later stages (calibration → iron, cells)
add their own columns with :func:`add_columns`; :func:`write_csv` writes them
atomically (a temporary file, then a rename), so a failed run leaves nothing behind.

Column names carry their unit as a suffix: ``_mm``, ``_mm3``, ``_mm2``, ``_au``
(MPI signal, arbitrary units), ``_au_mm3`` (a.u.·mm³), ``_ug`` (µg Fe), ``_pg``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Human-readable header for each column suffix (GUI tables).
UNIT_SUFFIXES = (
    ("_au_mm3", "a.u.·mm³"),
    ("_au_mm2", "a.u.·mm²"),
    ("_mm3", "mm³"),
    ("_mm2", "mm²"),
    ("_mm", "mm"),
    ("_au", "a.u."),
    ("_ug", "µg Fe"),
    ("_pg", "pg Fe"),
)


def rows_from_results(results: Iterable[Any]) -> list[dict[str, Any]]:
    """One dict per ROI result (``result.to_row()``), in order."""
    return [dict(r.to_row()) for r in results]


def add_columns(
    rows: list[dict[str, Any]], columns: Mapping[str, Sequence[Any]]
) -> list[dict[str, Any]]:
    """Add columns (name → one value per row) in place; returns ``rows``.

    Column names must carry their unit (``iron_ug``, ``cells``…).
    """
    for name, values in columns.items():
        values = list(values)
        if len(values) != len(rows):
            raise ValueError(f"column {name!r}: {len(values)} values for {len(rows)} rows")
        for row, v in zip(rows, values, strict=True):
            row[name] = v
    return rows


def columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Column names in first-seen order over all rows."""
    cols: list[str] = []
    seen: set[str] = set()
    for row in rows:
        for k in row:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    return cols


def header_label(column: str) -> str:
    """``"total_signal_au_mm3"`` → ``"total signal (a.u.·mm³)"`` for GUI headers."""
    for suffix, unit in UNIT_SUFFIXES:
        if column.endswith(suffix):
            return f"{column[: -len(suffix)].replace('_', ' ')} ({unit})"
    return column.replace("_", " ")


def format_value(value: Any) -> str:
    """A cell as text: floats to 6 significant digits, NaN as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.6g}"
    return str(value)


def to_csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    cols = columns_of(rows)
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in rows:
        w.writerow([format_value(row.get(c)) for c in cols])
    return buf.getvalue()


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write rows as CSV (header = column names with units), atomically."""
    from mpi_viewer.io.atomic import atomic_write_text

    return atomic_write_text(Path(path), to_csv_text(rows), mkdir=True)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a results CSV as dicts of strings (for tests and replay)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
