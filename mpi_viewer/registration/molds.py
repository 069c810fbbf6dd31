"""Animal-mold registration: fiducial templates, automatic detection and matching.

A mold (or a phantom holder) carries fiducial wells at known positions. A *template*
(JSON, see below) lists them in the mold's own frame. In each image the wells are
found automatically (:func:`detect_fiducials`), the correspondence between what was
found and the template is worked out without being given (:func:`match_fiducials`),
and the wells seen in both images give the fixed → moving transform
(:func:`register_with_template`) through the landmark fit of
:mod:`mpi_viewer.registration`.

Template schema (``units`` must be ``"mm"``)::

    {"name": "mouse_mold_v1", "description": "...", "units": "mm",
     "fiducials": [{"name": "M1", "position_mm": [x, y, z], "diameter_mm": 3.0,
                    "contents": "tracer + 1 mM Gd"}, ...],          # at least 3
     "appearance": {"MPI": "hot", "MRI": "bright" | "dark", "CT": "bright" | "dark"},
     "wells": [{"name": "W1", "position_mm": [...], "diameter_mm": 4.0}, ...],  # optional
     "extent_mm": {"min": [x, y, z], "max": [x, y, z]}}                          # optional

Positions are mm in the ITK physical frame, (x, y, z) order. A *pose* maps template
(mold) coordinates to an image's physical frame: ``p = R @ q + t``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.transform import Transform
from mpi_viewer.geometry.volume import Volume


def template_path(name: str) -> Path:
    """Path of a template shipped with mpi-viewer, installed or in a source checkout."""
    try:
        from importlib.resources import files

        p = Path(str(files("mpi_viewer.fiducial_templates") / f"{name}.json"))
        if p.is_file():
            return p
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "fiducial_templates" / f"{name}.json"


#: Environment variable naming extra template folders (separated by ``os.pathsep``).
TEMPLATES_ENV = "MPI_VIEWER_TEMPLATES"


#: A different pose whose consensus score is within this of the best makes the match ambiguous
#: (one precisely matched fiducial counts 1).
AMBIGUITY_MARGIN = 1.0
APPEARANCES = {"MPI": ("hot",), "MRI": ("bright", "dark"), "CT": ("bright", "dark")}


# -- templates ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Fiducial:
    """One fiducial well of a template: name, centre (mm, mold frame, x, y, z), diameter (mm)."""

    name: str
    position_mm: tuple[float, float, float]
    diameter_mm: float
    contents: str = ""

    def __getitem__(self, key: str):  # dict-style access, as in the JSON
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "position_mm": list(self.position_mm),
            "diameter_mm": self.diameter_mm,
            "contents": self.contents,
        }


@dataclass(frozen=True)
class Template:
    """A validated mold or phantom-holder template (see the module docstring for the schema)."""

    name: str
    description: str
    units: str
    fiducials: tuple[Fiducial, ...]
    appearance: dict[str, str]
    wells: tuple[dict[str, Any], ...] = ()
    extent_mm: dict[str, list[float]] | None = None
    source: str | None = field(default=None, compare=False)

    @property
    def names(self) -> list[str]:
        """Fiducial names in template order."""
        return [f.name for f in self.fiducials]

    @property
    def positions_mm(self) -> np.ndarray:
        """(m, 3) fiducial centres, mm, mold frame (x, y, z)."""
        return np.array([f.position_mm for f in self.fiducials], dtype=float)

    @property
    def diameter_mm(self) -> float:
        """Median fiducial diameter (mm): the size detectors look for."""
        return float(np.median([f.diameter_mm for f in self.fiducials]))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "units": self.units,
            "fiducials": [f.to_dict() for f in self.fiducials],
            "appearance": dict(self.appearance),
        }
        if self.wells:
            d["wells"] = [dict(w) for w in self.wells]
        if self.extent_mm is not None:
            d["extent_mm"] = {k: list(v) for k, v in self.extent_mm.items()}
        return d

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "template") -> Template:
        """Validate a template dict; InputError naming ``where`` and the bad field otherwise."""
        return _validate(data, where)


def _fail(where: str, msg: str):
    raise InputError(f"{where}: {msg}")


def _vector(value, where: str, field_name: str) -> tuple[float, float, float]:
    if not isinstance(value, list | tuple) or len(value) != 3:
        _fail(where, f"field {field_name!r} must be a list of 3 numbers (x, y, z in mm)")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            _fail(where, f"field {field_name!r} must be a list of 3 finite numbers, got {value!r}")
        out.append(float(v))
    return tuple(out)  # type: ignore[return-value]


def _positive(value, where: str, field_name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        _fail(where, f"field {field_name!r} must be a positive number (mm), got {value!r}")
    return float(value)


def _validate(data: Any, where: str) -> Template:
    if not isinstance(data, dict):
        _fail(where, "a template must be a JSON object")
    for key in ("name", "units", "fiducials", "appearance"):
        if key not in data:
            _fail(where, f"missing field {key!r}")
    if not isinstance(data["name"], str) or not data["name"].strip():
        _fail(where, "field 'name' must be a non-empty string")
    if data["units"] != "mm":
        _fail(where, f"field 'units' is {data['units']!r}; only \"mm\" is supported")
    fids = data["fiducials"]
    if not isinstance(fids, list):
        _fail(where, "field 'fiducials' must be a list")
    parsed = []
    for i, f in enumerate(fids):
        label = f"fiducials[{i}]"
        if not isinstance(f, dict):
            _fail(where, f"{label} must be an object")
        for key in ("name", "position_mm", "diameter_mm"):
            if key not in f:
                _fail(where, f"missing field '{label}.{key}'")
        if not isinstance(f["name"], str) or not f["name"].strip():
            _fail(where, f"field '{label}.name' must be a non-empty string")
        parsed.append(
            Fiducial(
                name=f["name"],
                position_mm=_vector(f["position_mm"], where, f"{label}.position_mm"),
                diameter_mm=_positive(f["diameter_mm"], where, f"{label}.diameter_mm"),
                contents=str(f.get("contents", "")),
            )
        )
    names = [f.name for f in parsed]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        _fail(where, f"duplicate fiducial name(s) {', '.join(dup)}")
    if len(parsed) < 3:
        _fail(
            where, f"field 'fiducials' has {len(parsed)} entries; at least 3 are needed for a pose"
        )
    pos = np.array([f.position_mm for f in parsed])
    if np.linalg.matrix_rank(pos - pos.mean(axis=0), tol=1e-6) < 2:
        _fail(where, "the fiducials are collinear; they cannot fix a pose")
    app = data["appearance"]
    if not isinstance(app, dict):
        _fail(where, 'field \'appearance\' must be an object like {"MPI": "hot", "MRI": "bright"}')
    for mod, look in app.items():
        allowed = APPEARANCES.get(mod)
        if allowed is None:
            _fail(
                where,
                f"field 'appearance.{mod}': unknown modality (expected {', '.join(APPEARANCES)})",
            )
        if look not in allowed:
            _fail(
                where,
                f"field 'appearance.{mod}' is {look!r}; expected {' or '.join(map(repr, allowed))}",
            )
    wells = data.get("wells", [])
    if not isinstance(wells, list):
        _fail(where, "field 'wells' must be a list")
    wells_out = []
    for i, w in enumerate(wells):
        label = f"wells[{i}]"
        if not isinstance(w, dict):
            _fail(where, f"{label} must be an object")
        for key in ("name", "position_mm"):
            if key not in w:
                _fail(where, f"missing field '{label}.{key}'")
        entry = dict(w)
        entry["position_mm"] = list(_vector(w["position_mm"], where, f"{label}.position_mm"))
        if "diameter_mm" in w:
            entry["diameter_mm"] = _positive(w["diameter_mm"], where, f"{label}.diameter_mm")
        wells_out.append(entry)
    extent = data.get("extent_mm")
    if extent is not None:
        if not isinstance(extent, dict) or "min" not in extent or "max" not in extent:
            _fail(where, 'field \'extent_mm\' must be {"min": [x, y, z], "max": [x, y, z]}')
        lo = _vector(extent["min"], where, "extent_mm.min")
        hi = _vector(extent["max"], where, "extent_mm.max")
        if any(h <= low for low, h in zip(lo, hi, strict=True)):
            _fail(where, "field 'extent_mm': every max must exceed its min")
        extent = {"min": list(lo), "max": list(hi)}
    desc = data.get("description", "")
    return Template(
        name=data["name"],
        description=str(desc),
        units="mm",
        fiducials=tuple(parsed),
        appearance=dict(app),
        wells=tuple(wells_out),
        extent_mm=extent,
    )


def _shipped_dir() -> Path:

    return template_path("mouse_mold_v1").parent


def _template_dirs(search_dirs=()) -> list[Path]:
    dirs = [Path(d) for d in search_dirs]
    env = os.environ.get(TEMPLATES_ENV, "")
    dirs += [Path(d) for d in env.split(os.pathsep) if d.strip()]
    dirs.append(_shipped_dir())
    return dirs


def list_templates(search_dirs=()) -> list[str]:
    """Names of the templates available: user folders first, then the shipped ones.

    Parameters
    ----------
    search_dirs : sequence of path-like
        Extra folders of ``*.json`` templates (e.g. from the settings); the folders in
        the ``MPI_VIEWER_TEMPLATES`` environment variable are searched too.
    """
    names: list[str] = []
    for d in _template_dirs(search_dirs):
        if d.is_dir():
            for p in sorted(d.glob("*.json")):
                if p.stem not in names:
                    names.append(p.stem)
    return names


def load_template(name_or_path: str | os.PathLike | Template, *, search_dirs=()) -> Template:
    """Read and validate a template given by name (searched like :func:`list_templates`) or path.

    Raises
    ------
    InputError
        Unknown name, unreadable file, not JSON, or a schema problem (missing field,
        units other than mm, duplicate names, fewer than 3 fiducials, bad numbers):
        one line naming the file and the field.
    """
    if isinstance(name_or_path, Template):
        return name_or_path
    text = str(name_or_path)
    p = Path(text)
    looks_like_path = p.suffix.lower() == ".json" or "/" in text or "\\" in text
    if not p.is_file():
        if looks_like_path:
            raise InputError(f"{text}: no such template file")
        for d in _template_dirs(search_dirs):
            if (d / f"{text}.json").is_file():
                p = d / f"{text}.json"
                break
        else:
            avail = ", ".join(list_templates(search_dirs)) or "none"
            raise InputError(f"template {text!r}: no such template (available: {avail})")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read template ({exc.__class__.__name__})") from None
    except ValueError as exc:
        raise InputError(f"{p}: not valid JSON ({str(exc).splitlines()[0]})") from None
    return replace(_validate(data, str(p)), source=str(p))


def template_self_match(
    template: Template | str, *, tolerance_mm: float = 1.5
) -> tuple[int, dict[str, str]]:
    """How many of a template's fiducials a *different* pose maps onto other fiducials.

    A mold is safe to match automatically only when no rigid motion other than the
    identity maps a large subset of its wells onto wells. If the best such motion
    covers ``k`` wells, an image showing only those ``k`` (or fewer) is ambiguous and
    :func:`match_fiducials` refuses it; with more wells visible it is not.

    Returns
    -------
    k : int
        Wells in the largest self-congruent subset (0 when no 3 wells have a
        congruent copy in the template).
    mapping : dict
        Well name → the well the motion puts it on, for those ``k`` wells.
    """
    from mpi_viewer.registration import _fiducial_match as fm

    t = load_template(template)
    pos = t.positions_mm
    ident = fm._Hypothesis(
        tuple((i, i) for i in range(len(pos))), np.eye(3), np.zeros(3), np.zeros(len(pos))
    )
    hyps, _ = fm.search(pos, pos, tolerance_mm)
    for h in hyps:
        if fm.pose_distance(ident, h, pos) > tolerance_mm:
            return h.n, {t.names[a]: t.names[b] for a, b in h.pairs}
    return 0, {}


# -- detection ----------------------------------------------------------------------------
@dataclass
class Candidates:
    """Fiducial candidates found in one image.

    Attributes
    ----------
    positions_mm : (n, 3) ndarray
        Centres, physical mm, ITK order (x, y, z), strongest first.
    scores : (n,) ndarray
        Detector strength (MPI: smoothed peak signal, a.u.; MRI/CT: scale-normalised
        Laplacian-of-Gaussian response, image units).
    sizes_mm : (n,) ndarray
        Equivalent-sphere diameter of the region above half maximum, mm.
    modality : str
        The modality the detector assumed.
    """

    positions_mm: np.ndarray
    scores: np.ndarray
    sizes_mm: np.ndarray
    modality: str = "unknown"

    def __len__(self) -> int:
        return len(self.positions_mm)


def _modality(volume: Volume, template: Template, modality: str | None) -> str:
    mod = modality or volume.modality
    if mod not in APPEARANCES:
        raise InputError(
            f"image {volume.name!r}: modality {mod!r} unknown; say MPI, MRI or CT to detect fiducials"
        )
    return mod


def detect_fiducials(
    volume: Volume,
    template: Template | str,
    *,
    modality: str | None = None,
    max_candidates: int = 30,
) -> Candidates:
    """Find candidate fiducial wells in an image by the template's size and appearance.

    Parameters
    ----------
    volume : Volume
        The image (any spacing, origin, direction).
    template : Template or str
        Gives the well diameter (mm) and how wells look in each modality.
    modality : str, optional
        ``"MPI"``, ``"MRI"`` or ``"CT"``; defaults to ``volume.modality``.
    max_candidates : int
        Keep at most this many, strongest first.

    Returns
    -------
    Candidates
        Positions in physical mm (x, y, z). Not all are fiducials: labelled cells,
        calibration vials and bright organs may be among them; :func:`match_fiducials`
        sorts them out.

    Notes
    -----
    MPI: local maxima of the image smoothed at σ = d/4 above 6 noise SD (robust
    estimate), located by the weighted centroid above half maximum (sub-voxel).
    MRI/CT: scale-normalised LoG blob detector at σ = r/√3 in mm (Lindeberg 1998,
    doi:10.1023/A:1008045108935) on a block-averaged copy, refined at full
    resolution. Both work in physical units, so anisotropic voxels are handled.
    """
    from mpi_viewer.registration import _fiducial_detect as det

    template = load_template(template)
    mod = _modality(volume, template, modality)
    look = template.appearance.get(mod, APPEARANCES[mod][0])
    d = template.diameter_mm
    if mod == "MPI":
        pos, scores, sizes = det.detect_hot_spots(volume, d, max_candidates)
    else:
        pos, scores, sizes = det.detect_spheres(
            volume, d, max_candidates, bright=(look == "bright")
        )
    return Candidates(positions_mm=pos, scores=scores, sizes_mm=sizes, modality=mod)


# -- matching -----------------------------------------------------------------------------
@dataclass
class MoldMatch:
    """The correspondence between a template and an image's candidates.

    Attributes
    ----------
    template : str
        Template name.
    matrix, translation : ndarray
        Pose: image mm = ``matrix @ template mm + translation`` (rigid).
    pairs : dict
        Template fiducial name → index into the candidates.
    positions_mm : dict
        Template fiducial name → detected centre in the image (mm, x, y, z).
    residuals_mm : dict
        Template fiducial name → distance between the posed template fiducial and
        its candidate (mm).
    missing : list of str
        Template fiducials with no candidate within the tolerance.
    ambiguous : bool
        A different pose (some fiducial moved by more than the tolerance) scores
        within :data:`AMBIGUITY_MARGIN` of this one.
    tolerance_mm : float
    n_candidates, n_hypotheses : int
    runner_up : int
        Fiducials matched by the best-scoring pose that differs from this one (0 if none).
    score : float
        Consensus Σ(1 − (r/tol)²) over matched fiducials; ``runner_up_score`` likewise.
    """

    template: str
    matrix: np.ndarray
    translation: np.ndarray
    pairs: dict[str, int]
    positions_mm: dict[str, np.ndarray]
    residuals_mm: dict[str, float]
    missing: list[str]
    ambiguous: bool
    tolerance_mm: float
    n_candidates: int
    n_hypotheses: int
    runner_up: int = 0
    score: float = 0.0
    runner_up_score: float = 0.0

    @property
    def matched_names(self) -> list[str]:
        return list(self.pairs)

    @property
    def rms_mm(self) -> float:
        r = np.array(list(self.residuals_mm.values()))
        return float(np.sqrt(np.mean(r**2))) if r.size else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (for sessions and reports)."""
        return {
            "template": self.template,
            "matrix": np.asarray(self.matrix).tolist(),
            "translation": np.asarray(self.translation).tolist(),
            "pairs": dict(self.pairs),
            "positions_mm": {k: np.asarray(v).tolist() for k, v in self.positions_mm.items()},
            "residuals_mm": dict(self.residuals_mm),
            "missing": list(self.missing),
            "ambiguous": bool(self.ambiguous),
            "tolerance_mm": self.tolerance_mm,
            "n_candidates": self.n_candidates,
            "n_hypotheses": self.n_hypotheses,
            "runner_up": self.runner_up,
            "score": self.score,
            "runner_up_score": self.runner_up_score,
        }

    def template_to_image(self, points_mm) -> np.ndarray:
        """Template (mold) points (mm) in the image's physical frame (mm)."""
        return np.atleast_2d(np.asarray(points_mm, dtype=float)) @ self.matrix.T + self.translation

    def report_lines(self) -> list[str]:
        n = len(self.pairs) + len(self.missing)
        res = ", ".join(f"{k} {v:.2f}" for k, v in self.residuals_mm.items())
        lines = [
            f"{self.template}: {len(self.pairs)} of {n} fiducials matched among {self.n_candidates} "
            f"candidates (tolerance {self.tolerance_mm:g} mm), RMS residual {self.rms_mm:.2f} mm",
            f"  residuals (mm): {res}",
        ]
        if self.missing:
            lines.append(f"  not found: {', '.join(self.missing)}")
        lines.append(
            f"  ambiguous: {'YES' if self.ambiguous else 'no'} (score {self.score:.2f}; next different "
            f"pose {self.runner_up_score:.2f} with {self.runner_up} fiducials)"
        )
        return lines


def match_fiducials(
    candidates_mm,
    template: Template | str,
    *,
    tolerance_mm: float = 1.5,
    min_matches: int = 3,
    strict: bool = True,
) -> MoldMatch:
    """Find which candidates are which template fiducials, and the template → image pose.

    Hypotheses come from triangles whose three side lengths agree between template
    and candidates (within 2·tolerance); each gives a rigid pose (Kabsch 1976,
    doi:10.1107/S0567739476001873) scored by the number of template fiducials it
    puts within ``tolerance_mm`` of a distinct candidate, refined on those
    (consensus as in RANSAC, Fischler & Bolles 1981, doi:10.1145/358669.358692, but
    exhaustive). Missing fiducials and extra candidates are tolerated.

    Parameters
    ----------
    candidates_mm : (n, 3) array_like or Candidates
        Candidate centres, mm (x, y, z).
    template : Template or str
    tolerance_mm : float
        Largest accepted residual of a matched fiducial, mm.
    min_matches : int
        Fewest matched fiducials accepted (at least 3).
    strict : bool
        Raise when the match is ambiguous (default). With ``False`` an ambiguous
        match is returned with ``ambiguous=True`` for display.

    Raises
    ------
    InputError
        Fewer than ``min_matches`` fiducials match within the tolerance, or a
        different pose matches as many (ambiguous): never a wrong pose reported as
        success.
    """
    from mpi_viewer.registration import _fiducial_match as fm

    template = load_template(template)
    if isinstance(candidates_mm, Candidates):
        candidates_mm = candidates_mm.positions_mm
    cand = np.asarray(candidates_mm, dtype=float).reshape(-1, 3)
    if not (math.isfinite(tolerance_mm) and tolerance_mm > 0):
        raise InputError(f"tolerance {tolerance_mm!r} mm: must be a positive number")
    need = max(3, int(min_matches))
    tmpl = template.positions_mm
    m = len(tmpl)
    hyps, tried = fm.search(tmpl, cand, tolerance_mm)
    where = f"template {template.name!r}"
    if not hyps or hyps[0].n < need:
        best_n = max((h.n for h in hyps), default=0)
        raise InputError(
            f"{where}: only {best_n} of {m} fiducials matched within {tolerance_mm:g} mm among {len(cand)} "
            f"candidates (at least {need} needed); wrong template, or too few wells visible"
        )
    best = hyps[0]
    score = best.score(tolerance_mm)
    if score < need - 0.5 or (best.n == 3 and best.rms > tolerance_mm / 3):
        raise InputError(
            f"{where}: the best match ({best.n} of {m} fiducials, RMS residual {best.rms:.2f} mm) is no better "
            f"than chance at tolerance {tolerance_mm:g} mm; wrong template, or too few wells visible"
        )
    runner, runner_score = 0, 0.0
    ambiguous = False
    for h in hyps[1:]:
        if fm.pose_distance(best, h, tmpl) > tolerance_mm:
            runner, runner_score = h.n, h.score(tolerance_mm)
            ambiguous = h.score(tolerance_mm) >= score - AMBIGUITY_MARGIN
            break
    names = template.names
    pairs = {names[a]: int(c) for a, c in best.pairs}
    res = {names[a]: float(r) for (a, _c), r in zip(best.pairs, best.residuals, strict=True)}
    order = [n for n in names if n in pairs]
    match = MoldMatch(
        template=template.name,
        matrix=best.rotation,
        translation=best.translation,
        pairs={n: pairs[n] for n in order},
        positions_mm={n: cand[pairs[n]].copy() for n in order},
        residuals_mm={n: res[n] for n in order},
        missing=[n for n in names if n not in pairs],
        ambiguous=ambiguous,
        tolerance_mm=float(tolerance_mm),
        n_candidates=len(cand),
        n_hypotheses=tried,
        runner_up=runner,
        score=score,
        runner_up_score=runner_score,
    )
    if ambiguous and strict:
        raise InputError(
            f"{where}: ambiguous match: a different pose fits {runner} fiducials about as well as the best "
            f"fits {best.n} of {m} (tolerance {tolerance_mm:g} mm): too few wells visible to tell; "
            f"pick the fiducials by hand"
        )
    return match


# -- registration -------------------------------------------------------------------------
@dataclass
class MoldParams:
    """Settings of a mold registration, shared by the dock, the CLI and the session file."""

    template: str = "mouse_mold_v1"
    model: str = "rigid"
    tolerance_mm: float = 1.5
    min_matches: int = 3
    max_candidates: int = 30

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MoldParams:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in dict(d).items() if k in names})


@dataclass
class MoldRegistration:
    """A fixed → moving transform from the mold fiducials found in both images.

    Attributes
    ----------
    fit : LandmarkFit
        From :func:`mpi_viewer.registration.fit_landmarks` (``.matrix``,
        ``.translation``, ``.residuals_mm``, ``.rms_fre_mm``, ``.transform_points``).
    fixed_match, moving_match : MoldMatch
    matched_names : list of str
        Fiducials found in both images, in template order.
    fixed_xyz_mm, moving_xyz_mm : (k, 3) ndarray
        Their detected centres, mm.
    """

    fit: Any
    fixed_match: MoldMatch
    moving_match: MoldMatch
    matched_names: list[str]
    fixed_xyz_mm: np.ndarray
    moving_xyz_mm: np.ndarray
    template: str = ""

    @property
    def transform(self) -> Transform:
        """The fixed → moving :class:`~mpi_viewer.geometry.transform.Transform` of the fit."""
        return Transform.from_any(self.fit)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable record: template, paired fiducials (mm), both matches, the fit."""
        fit = self.fit.to_dict() if hasattr(self.fit, "to_dict") else None
        return {
            "template": self.template,
            "matched_names": list(self.matched_names),
            "fixed_xyz_mm": np.asarray(self.fixed_xyz_mm).tolist(),
            "moving_xyz_mm": np.asarray(self.moving_xyz_mm).tolist(),
            "fixed_match": self.fixed_match.to_dict(),
            "moving_match": self.moving_match.to_dict(),
            "fit": fit,
        }

    def report_lines(self) -> list[str]:
        """Human-readable summary: matched fiducials, residuals (mm), ambiguity."""
        res = np.asarray(self.fit.residuals_mm, dtype=float)
        lines = [
            f"mold template {self.template}: {len(self.matched_names)} fiducials in both images: "
            f"{', '.join(self.matched_names)}"
        ]
        lines += [
            "fixed image: " + self.fixed_match.report_lines()[0]
        ] + self.fixed_match.report_lines()[1:]
        lines += [
            "moving image: " + self.moving_match.report_lines()[0]
        ] + self.moving_match.report_lines()[1:]
        lines.append(
            "registration residuals (mm): "
            + ", ".join(f"{n} {r:.2f}" for n, r in zip(self.matched_names, res, strict=True))
            + f"; RMS FRE {float(self.fit.rms_fre_mm):.2f} mm"
        )
        return lines


def register_with_template(
    fixed: Volume,
    moving: Volume,
    template: str | Template,
    *,
    model: str = "rigid",
    tolerance_mm: float = 1.5,
    min_matches: int = 3,
    max_candidates: int = 30,
    exclude=(),
    fle_mm: float | None = None,
    fre_tolerance_mm: float | None = None,
    search_dirs=(),
    progress=None,
) -> MoldRegistration:
    """Register two images of an animal in the same mold from its fiducial wells.

    Detects and matches the template's fiducials in each image, pairs them by name
    and fits the fixed → moving transform (ITK convention: maps fixed mm to moving
    mm) with :func:`mpi_viewer.registration.fit_landmarks`.

    Parameters
    ----------
    fixed, moving : Volume
        Typically MRI or CT (fixed) and MPI (moving); modality from each volume.
    template : str or Template
        Template name, JSON path or a loaded template.
    model : {"rigid", "similarity", "affine"}
    tolerance_mm, min_matches, max_candidates
        See :func:`match_fiducials` and :func:`detect_fiducials`.
    exclude, fle_mm, fre_tolerance_mm
        Passed to :func:`~mpi_viewer.registration.fit_landmarks` (fiducial names left
        out of the fit; localisation error and FRE warning level, mm).
    progress : callable, optional
        ``progress(fraction, message)`` before each step (fraction 0–1 done), for
        progress bars; it may raise (e.g. :class:`~mpi_viewer.errors.CancelledError`)
        to stop the work between steps.

    Raises
    ------
    InputError
        A bad template, fewer than 3 fiducials found in either image, a template
        that does not fit, an ambiguous match, or fewer than 3 fiducials common to
        both images. Each message names the image.
    """
    tpl = load_template(template, search_dirs=search_dirs)
    matches = []
    for k, (role, vol) in enumerate((("fixed", fixed), ("moving", moving))):
        if progress is not None:
            progress(0.45 * k, f"detecting {tpl.name} fiducials in the {role} image")
        cands = detect_fiducials(vol, tpl, max_candidates=max_candidates)
        if progress is not None:
            progress(0.45 * k + 0.35, f"matching {len(cands)} candidates of the {role} image")
        try:
            matches.append(
                match_fiducials(cands, tpl, tolerance_mm=tolerance_mm, min_matches=min_matches)
            )
        except InputError as exc:
            raise InputError(f"{role} image {vol.name!r}: {exc}") from None
    fm, mm = matches
    names = [n for n in tpl.names if n in fm.pairs and n in mm.pairs]
    if len(names) < 3:
        raise InputError(
            f"template {tpl.name!r}: only {len(names)} fiducials found in both images "
            f"({', '.join(names) or 'none'}); at least 3 are needed"
        )
    fx = np.array([fm.positions_mm[n] for n in names])
    mx = np.array([mm.positions_mm[n] for n in names])
    if progress is not None:
        progress(0.95, "fitting the transform")
    from mpi_viewer.registration.landmarks import fit_landmarks

    unknown = [n for n in exclude if n not in names]
    if unknown:
        raise InputError(
            f"exclude: {', '.join(unknown)} not among the fiducials found in both images "
            f"({', '.join(names)})"
        )
    fit = fit_landmarks(
        fx,
        mx,
        model=model,
        names=names,
        exclude=list(exclude),
        fle_mm=fle_mm,
        fre_tolerance_mm=fre_tolerance_mm,
    )
    return MoldRegistration(
        fit=fit,
        fixed_match=fm,
        moving_match=mm,
        matched_names=names,
        fixed_xyz_mm=fx,
        moving_xyz_mm=mx,
        template=tpl.name,
    )
