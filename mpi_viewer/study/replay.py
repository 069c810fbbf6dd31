"""Replay: compare a Study's stored numbers with the pipeline's recomputation.

:func:`compare` says which stored numbers differ (relative difference > :data:`RTOL`);
:func:`replay_path` verifies the inputs' hashes, recomputes
(:func:`mpi_viewer.study.pipeline.recompute`) and compares one session file, and never
raises for bad input (status 2 with the message), so it can run in a worker process.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer.errors import MPIViewerError
from mpi_viewer.study.pipeline import Recomputed, recompute
from mpi_viewer.study.session import Session, load_session

#: Replay tolerance: largest relative difference between a stored and a recomputed number.
RTOL = 1e-9


#: Keys whose values legitimately change between runs (dates) and are not compared.
_VOLATILE = frozenset({"date", "created", "modified", "timestamp", "software", "schema_version"})


# -- comparison --------------------------------------------------------------------------------
def _num(v) -> float | None:
    if isinstance(v, bool) or v is None:
        return None if v is None else float(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return None


def same_value(a, b, *, rtol: float = RTOL) -> bool:
    """Equal strings; numbers within ``rtol`` (relative); NaN equals NaN (and null)."""
    if a is None:
        a = math.nan
    if b is None:
        b = math.nan
    x, y = _num(a), _num(b)
    if x is None or y is None:
        return a == b
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if x == y:
        return True
    return abs(x - y) <= rtol * max(abs(x), abs(y))


def _flatten(v, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(v, dict):
        for k, x in v.items():
            if str(k).lower() in _VOLATILE:
                continue
            _flatten(x, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(v, (list, tuple, np.ndarray)):
        for i, x in enumerate(list(v)):
            _flatten(x, f"{prefix}[{i}]", out)
    else:
        out[prefix] = v
    return out


#: Text columns (not numbers): a change there is a note of a replay, not a difference.
_TEXT_KEYS = frozenset({"flags", "warnings"})


def _is_text_key(key: str) -> bool:
    return re.sub(r"\[\d+\]$", "", str(key).rsplit(".", 1)[-1]) in _TEXT_KEYS


def compare(
    session: Session, rec: Recomputed, *, rtol: float = RTOL, notes: list[str] | None = None
) -> list[str]:
    """Differences between a session's stored numbers and a recomputation, one line each.

    With ``notes`` (a list), changed flags and warnings (text a newer version may add,
    such as a new check) go there instead: a replay compares numbers.
    """
    diffs: list[str] = []

    def cmp(what: str, stored, new) -> None:
        s, n = _flatten(stored, "", {}), _flatten(new, "", {})
        for key in sorted(set(s) | set(n), key=str):
            if notes is not None and _is_text_key(key):
                if not same_value(s.get(key), n.get(key), rtol=rtol):
                    notes.append(
                        f"{what}{key} changed (text, not a number): stored {s.get(key)!r}, "
                        f"now {n.get(key)!r}"
                    )
                continue
            if key not in n:
                diffs.append(f"{what}{key}: stored {s[key]!r}, not recomputed")
            elif key not in s:
                diffs.append(f"{what}{key}: recomputed {n[key]!r}, not stored")
            elif not same_value(s[key], n[key], rtol=rtol):
                diffs.append(f"{what}{key}: stored {s[key]!r}, recomputed {n[key]!r}")

    if len(session.results) != len(rec.rows):
        diffs.append(f"results: {len(session.results)} rows stored, {len(rec.rows)} recomputed")
    for i, (old, new) in enumerate(zip(session.results, rec.rows, strict=False)):
        name = old.get("name", i)
        if "roi_revision" in new and "roi_revision" not in old:
            old = {**old, "roi_revision": 1}  # rows stored before revisions were: revision 1
        cmp(f"row {name}: ", old, new)
    reg = session.registration
    if reg is not None and rec.fit is not None and reg.matrix is not None:
        m, t = rec.transform()
        cmp(
            "transform.",
            {"matrix": reg.matrix, "translation": reg.translation, "rms_fre_mm": reg.rms_fre_mm},
            {
                "matrix": m.tolist(),
                "translation": t.tolist(),
                "rms_fre_mm": getattr(rec.fit, "rms_fre_mm", None),
            },
        )
    cal = session.calibration
    if cal is not None and rec.calibration is not None and cal.calibration:
        cmp("calibration.", cal.calibration, rec.calibration.to_dict())
    return diffs


# -- one session file ---------------------------------------------------------------------------
@dataclass
class ReplayOutcome:
    """What replaying one session file gave (picklable: it comes back from workers).

    ``status`` is 0 (every number matches), 1 (differences) or 2 (bad input).
    """

    path: str
    status: int
    differences: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def replay_session(
    session: Session, *, allow_changed_inputs: bool = False
) -> tuple[Recomputed, list[str], list[str]]:
    """Verify the inputs' hashes, recompute and compare; returns (recomputed, differences, notes).

    Raises
    ------
    InputError
        A missing input, or one whose SHA-256 changed (unless ``allow_changed_inputs``).
    """
    notes = session.verify_inputs(allow_changed=allow_changed_inputs)
    rec = recompute(session)
    return rec, compare(session, rec, notes=notes), notes


def replay_path(path: str | Path, allow_changed_inputs: bool = False) -> ReplayOutcome:
    """Replay one session file; never raises for bad input (status 2 with the message)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = ReplayOutcome(path=str(path), status=2)
    try:
        session = load_session(path)
        out.warnings = list(session.warnings)
        rec, diffs, notes = replay_session(session, allow_changed_inputs=allow_changed_inputs)
        out.warnings += notes
        out.rows = rec.rows
        out.differences = diffs
        out.status = 1 if diffs else 0
    except MPIViewerError as exc:
        out.message = " ".join(str(exc).split())
        if str(path) not in out.message:  # a batch error names the session it belongs to
            out.message = f"session {path}: {out.message}"
        out.status = 2
    out.seconds = time.perf_counter() - t0
    out.cpu_seconds = time.process_time() - c0
    return out
