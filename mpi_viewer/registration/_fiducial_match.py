"""Correspondence between detected candidates and a mold template (private).

Hypotheses come from distance invariants of triplets: a rigid motion keeps the
three side lengths of every triangle, so each template triangle is compared with
every candidate triangle; each consistent pair gives a pose (Kabsch), which is
scored by how many template fiducials it puts within the tolerance of a candidate
(one-to-one), then refined on its inliers. Exhaustive over triangles (the sets are
small: a mold has 3–10 fiducials, an image a few tens of candidates), so the result
does not depend on a random seed.

References: Kabsch, Acta Cryst. A32 (1976) 922, doi:10.1107/S0567739476001873;
Fischler & Bolles, Comm. ACM 24 (1981) 381, doi:10.1145/358669.358692 (hypothesise
from minimal sets, verify by consensus).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from mpi_viewer.registration._closed_form import fit_rigid as kabsch  # the one Kabsch/Umeyama


@dataclass
class _Hypothesis:
    pairs: tuple[tuple[int, int], ...]  # (template index, candidate index), sorted
    rotation: np.ndarray
    translation: np.ndarray
    residuals: np.ndarray  # per pair, mm

    @property
    def n(self) -> int:
        return len(self.pairs)

    def score(self, tol: float) -> float:
        """Truncated-quadratic consensus: Σ (1 − (r/tol)²) over the matched fiducials.

        A fiducial matched exactly counts 1, one at the tolerance 0; so a few chance
        matches at large residuals do not outweigh fewer precise ones (MSAC, Torr &
        Zisserman 2000, doi:10.1006/cviu.1999.0832).
        """
        return float(np.sum(1.0 - (self.residuals / tol) ** 2))

    @property
    def rms(self) -> float:
        return float(np.sqrt(np.mean(self.residuals**2))) if len(self.residuals) else np.inf


def _assign(pred: np.ndarray, cand: np.ndarray, tol: float) -> list[tuple[int, int, float]]:
    """Greedy one-to-one nearest assignment of predicted template points to candidates."""
    d = np.linalg.norm(pred[:, None, :] - cand[None, :, :], axis=2)
    ti, ci = np.nonzero(d <= tol)
    order = np.argsort(d[ti, ci], kind="stable")
    used_t: set[int] = set()
    used_c: set[int] = set()
    out = []
    for k in order:
        a, b = int(ti[k]), int(ci[k])
        if a in used_t or b in used_c:
            continue
        used_t.add(a)
        used_c.add(b)
        out.append((a, b, float(d[a, b])))
    return sorted(out)


def _verify(
    tmpl: np.ndarray,
    cand: np.ndarray,
    r: np.ndarray,
    t: np.ndarray,
    tol: float,
    iterations: int = 4,
) -> _Hypothesis | None:
    """Inliers of a pose, refined by refitting on them until the set is stable."""
    pairs: list[tuple[int, int, float]] = []
    for _ in range(iterations):
        new = _assign(tmpl @ r.T + t, cand, tol)
        if len(new) < 3:
            return None
        same = [(a, b) for a, b, _ in new] == [(a, b) for a, b, _ in pairs]
        pairs = new
        ti = [a for a, _, _ in pairs]
        ci = [b for _, b, _ in pairs]
        r, t = kabsch(tmpl[ti], cand[ci])
        if same:
            break
    ti = [a for a, _, _ in pairs]
    ci = [b for _, b, _ in pairs]
    res = np.linalg.norm(tmpl[ti] @ r.T + t - cand[ci], axis=1)
    # drop pairs the refined pose no longer explains, refit once more
    keep = res <= tol
    if keep.sum() < 3:
        return None
    if not keep.all():
        ti = [a for a, k in zip(ti, keep, strict=True) if k]
        ci = [b for b, k in zip(ci, keep, strict=True) if k]
        r, t = kabsch(tmpl[ti], cand[ci])
        res = np.linalg.norm(tmpl[ti] @ r.T + t - cand[ci], axis=1)
    return _Hypothesis(tuple(zip(ti, ci, strict=True)), r, t, res)


def _triangle_ok(p: np.ndarray, min_side: float) -> bool:
    a, b, c = p
    sides = (np.linalg.norm(a - b), np.linalg.norm(a - c), np.linalg.norm(b - c))
    if min(sides) < min_side:
        return False
    # not (nearly) collinear: the height on the longest side is at least min_side
    area2 = np.linalg.norm(np.cross(b - a, c - a))
    return area2 / max(sides) >= min_side


def search(
    tmpl: np.ndarray, cand: np.ndarray, tol: float, *, max_hypotheses: int = 20000
) -> tuple[list[_Hypothesis], int]:
    """All distinct verified poses, best first, and the number of hypotheses tried.

    Parameters
    ----------
    tmpl : (m, 3) template fiducial positions, mm.
    cand : (n, 3) candidate positions, mm.
    tol : float
        Residual tolerance, mm; side lengths may differ by ``2·tol``.
    """
    m, n = len(tmpl), len(cand)
    if m < 3 or n < 3:
        return [], 0
    dc = np.linalg.norm(cand[:, None] - cand[None], axis=2)
    np.fill_diagonal(dc, -1e9)  # never compatible with itself
    dt = np.linalg.norm(tmpl[:, None] - tmpl[None], axis=2)
    side_tol = 2.0 * tol
    found: dict[tuple[tuple[int, int], ...], _Hypothesis] = {}
    tried = 0
    compat = {}
    for a, b, c in itertools.combinations(range(m), 3):
        if not _triangle_ok(tmpl[[a, b, c]], 2.0 * tol):
            continue
        for i, j in ((a, b), (a, c), (b, c)):
            if (i, j) not in compat:
                compat[i, j] = np.abs(dc - dt[i, j]) <= side_tol
        ok = compat[a, b][:, :, None] & compat[a, c][:, None, :] & compat[b, c][None, :, :]
        for p, q, r_ in zip(*np.nonzero(ok), strict=True):
            tried += 1
            if tried > max_hypotheses:
                break
            if any(
                ((a, int(p)) in h.pairs and (b, int(q)) in h.pairs and (c, int(r_)) in h.pairs)
                for h in found.values()
            ):
                continue  # this triangle is already explained by a verified pose
            rot, t = kabsch(tmpl[[a, b, c]], cand[[p, q, r_]])
            res = np.linalg.norm(tmpl[[a, b, c]] @ rot.T + t - cand[[p, q, r_]], axis=1)
            if np.any(res > tol):
                continue  # a mirror image or a distorted triangle
            h = _verify(tmpl, cand, rot, t, tol)
            if h is not None and h.pairs not in found:
                found[h.pairs] = h
    hyps = sorted(found.values(), key=lambda h: (-h.score(tol), -h.n))
    return hyps, tried


def pose_distance(h1: _Hypothesis, h2: _Hypothesis, tmpl: np.ndarray) -> float:
    """Largest displacement (mm) of a template fiducial between two poses."""
    p1 = tmpl @ h1.rotation.T + h1.translation
    p2 = tmpl @ h2.rotation.T + h2.translation
    return float(np.max(np.linalg.norm(p1 - p2, axis=1)))
