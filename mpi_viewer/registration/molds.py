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

Few visible wells
-----------------
When an image shows only part of the mold (a small MRI field of view), its wells may
fit more than one pose: in ``mouse_mold_v1`` wells M3–M6 fit a 180° turn of the mold
within 0.25 mm. :func:`register_with_template` then forms the candidate fixed → moving
transforms (each pose of one image with each pose of the other) and decides with the
**orientation prior**: both scans hold the animal the same way round, so the mold turns
by at most ``max_rotation_deg`` (default 45°) between the two images' axes. It refuses
(:class:`AmbiguousPoseError`, with the candidates) only when the prior cannot decide.
The anatomy can veto the prior: in MRI and CT every well shows, so a pose that puts a
well wholly inside the field of view where none was found (:func:`unseen_wells`) is
not taken on the prior alone. Wells cut by the edge of a field of view are flagged and
left out of the fit while enough whole wells remain.

For a GUI: ``reg = register_with_template(fixed, moving, tpl, strict=False)``; if
``reg.ambiguous``, show ``reg.candidates`` (at most two; ``c.summary()``,
``c.matched_names``, ``c.fit.residuals_mm``, ``c.fixed_match.positions_mm`` to draw
each reading's labels) and apply the one the user clicks with
``reg.with_pose(c.rank)``. Even when decided (``reg.decided_by == "prior"``), the other
candidate stays in ``reg.candidates`` for the user to switch to. The command line
prints the candidates and takes ``--pose N`` and ``--max-rotation-deg DEG``.
"""

from __future__ import annotations

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
#: At most this many distinct poses are kept per image when its match is ambiguous.
MAX_POSES = 3
#: At most this many candidate registrations (poses) are offered to the user.
MAX_CANDIDATES = 2
#: Default orientation prior: the largest rotation (degrees) of the mold between the
#: fixed and the moving scan (see :func:`register_with_template`).
MAX_ROTATION_DEG = 45.0


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
    from mpi_viewer.io.guards import read_json_file

    data = read_json_file(p, "template")
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
    edge_mm : (n,) ndarray or None
        Distance from each centre to the nearest face of the image's field of view, mm.
    truncated : (n,) bool ndarray or None
        The well reaches beyond the field of view (``edge_mm`` below its radius plus half
        a voxel): only part of it is imaged, so its centre is biased inwards.
    """

    positions_mm: np.ndarray
    scores: np.ndarray
    sizes_mm: np.ndarray
    modality: str = "unknown"
    edge_mm: np.ndarray | None = None
    truncated: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.positions_mm)


def _modality(volume: Volume, template: Template, modality: str | None) -> str:
    mod = modality or volume.modality
    if mod not in APPEARANCES:
        where = volume.source or volume.name
        raise InputError(
            f"{where}: modality {mod!r}: the wells look different in MPI, MRI and CT; say which "
            'in a sidecar JSON beside the file ({"modality": "MRI"}) or in the Image geometry dock'
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
    edge = edge_distance_mm(volume, pos)
    return Candidates(
        positions_mm=pos,
        scores=scores,
        sizes_mm=sizes,
        modality=mod,
        edge_mm=edge,
        truncated=edge < 0.5 * d + 0.5 * float(max(volume.spacing_mm)),
    )


def edge_distance_mm(volume: Volume, points_xyz) -> np.ndarray:
    """Distance (mm) from each physical point to the nearest face of the image's field of view.

    The field of view spans the voxels' outer edges (index −0.5 … size − 0.5 on each
    axis); points outside get negative distances.
    """
    pts = np.asarray(points_xyz, dtype=float).reshape(-1, 3)
    if len(pts) == 0:
        return np.zeros(0)
    idx = volume.physical_to_index(pts)  # (z, y, x)
    shape = np.asarray(volume.shape, dtype=float)
    sp = np.asarray(volume.spacing_mm, dtype=float)[::-1]
    d = np.minimum(idx + 0.5, shape - 0.5 - idx) * sp
    return d.min(axis=1)


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
    cut_by_edge : list of str
        Matched wells that reach beyond the image's field of view, the most cut first
        (their centres are biased; a registration leaves them out of the fit while
        enough wells remain for the model).
    alternatives : list of MoldMatch
        When ``ambiguous``: the other distinct poses that score within
        :data:`AMBIGUITY_MARGIN` of this one (best first, at most
        :data:`MAX_POSES` − 1), each a full match. A registration resolves them
        with what is known of the two scans (:func:`register_with_template`).
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
    alternatives: list[MoldMatch] = field(default_factory=list, repr=False)
    cut_by_edge: list[str] = field(default_factory=list)

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
            "cut_by_edge": list(self.cut_by_edge),
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
        if self.cut_by_edge:
            lines.append(f"  cut by the edge of the field of view: {', '.join(self.cut_by_edge)}")
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
    truncated = edge = None
    if isinstance(candidates_mm, Candidates):
        truncated, edge = candidates_mm.truncated, candidates_mm.edge_mm
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
    kept = [best]
    for h in hyps[1:]:
        if h.score(tolerance_mm) < score - AMBIGUITY_MARGIN or len(kept) >= MAX_POSES:
            break
        if all(fm.pose_distance(k, h, tmpl) > tolerance_mm for k in kept):
            if len(kept) == 1:
                runner, runner_score = h.n, h.score(tolerance_mm)
                ambiguous = True
            kept.append(h)
    if not ambiguous:
        for h in hyps[1:]:
            if fm.pose_distance(best, h, tmpl) > tolerance_mm:
                runner, runner_score = h.n, h.score(tolerance_mm)
                break
    common = dict(
        template=template,
        cand=cand,
        tolerance_mm=float(tolerance_mm),
        tried=tried,
        truncated=truncated,
        edge=edge,
    )
    match = _as_match(best, ambiguous=ambiguous, runner=(runner, runner_score), **common)
    match.alternatives = [
        _as_match(h, ambiguous=True, runner=(best.n, score), **common) for h in kept[1:]
    ]
    if ambiguous and strict:
        raise InputError(
            f"{where}: ambiguous match: a different pose fits {runner} fiducials about as well as the best "
            f"fits {best.n} of {m} (tolerance {tolerance_mm:g} mm): too few wells visible to tell; "
            f"pick the fiducials by hand"
        )
    return match


def _as_match(
    h,
    *,
    template: Template,
    cand,
    tolerance_mm,
    tried,
    ambiguous,
    runner,
    truncated=None,
    edge=None,
) -> MoldMatch:
    names = template.names
    pairs = {names[a]: int(c) for a, c in h.pairs}
    res = {names[a]: float(r) for (a, _c), r in zip(h.pairs, h.residuals, strict=True)}
    order = [n for n in names if n in pairs]
    return MoldMatch(
        template=template.name,
        matrix=h.rotation,
        translation=h.translation,
        pairs={n: pairs[n] for n in order},
        positions_mm={n: cand[pairs[n]].copy() for n in order},
        residuals_mm={n: res[n] for n in order},
        missing=[n for n in names if n not in pairs],
        ambiguous=ambiguous,
        tolerance_mm=tolerance_mm,
        n_candidates=len(cand),
        n_hypotheses=tried,
        runner_up=runner[0],
        score=h.score(tolerance_mm),
        runner_up_score=runner[1],
        cut_by_edge=[] if truncated is None else _cut(order, pairs, truncated, edge),
    )


def _cut(order, pairs, truncated, edge) -> list[str]:
    """Matched wells cut by the field of view's edge, the most cut first."""
    cut = [n for n in order if bool(np.asarray(truncated)[pairs[n]])]
    if edge is not None:
        cut.sort(key=lambda n: float(np.asarray(edge)[pairs[n]]))
    return cut


# -- registration -------------------------------------------------------------------------
@dataclass
class MoldParams:
    """Settings of a mold registration, shared by the dock, the CLI and the session file.

    ``max_rotation_deg`` is the orientation prior of :func:`register_with_template`
    (``None``: no prior); ``pose`` the candidate pose the user chose (1-based, ``None``:
    decided automatically).
    """

    template: str = "mouse_mold_v1"
    model: str = "rigid"
    tolerance_mm: float = 1.5
    min_matches: int = 3
    max_candidates: int = 30
    max_rotation_deg: float | None = MAX_ROTATION_DEG
    pose: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MoldParams:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in dict(d).items() if k in names})


def rotation_angle_deg(matrix) -> float:
    """Angle (degrees, 0–180) of the rotation nearest to a 3 × 3 matrix."""
    from mpi_viewer.registration._fiducial_match import kabsch

    m = np.asarray(matrix, dtype=float)
    r, _ = kabsch(np.eye(3), np.eye(3) @ m.T)  # nearest rotation (polar part)
    c = (float(np.trace(r)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


@dataclass
class PoseCandidate:
    """One way of reading the wells of both images: a candidate fixed → moving transform.

    When few wells are visible, a mold's wells can fit in more than one pose (in
    ``mouse_mold_v1``, M3–M6 fit a 180° turn of the mold within 0.25 mm). Each
    combination of a pose in the fixed image and one in the moving image that shares
    at least 3 wells is a candidate.

    Attributes
    ----------
    rank : int
        1-based position among the candidates (``--pose N`` on the command line).
    fit : LandmarkFit
        The fixed → moving fit on the wells found in both images under this reading.
    fixed_match, moving_match : MoldMatch
        The pose of the mold in each image (template → image) and its wells.
    matched_names : list of str
        Wells in both images, template order.
    fixed_xyz_mm, moving_xyz_mm : (k, 3) ndarray
        Their centres, mm.
    rotation_deg : float
        Angle of the mold's rotation between the two scans (the fixed → moving rotation
        ``R_moving · R_fixedᵀ`` of the two poses), degrees.
    within_prior : bool
        ``rotation_deg`` is at most the registration's ``max_rotation_deg`` (always True
        without a prior).
    score : float
        Sum of the two matches' consensus scores (a precisely matched well counts 1 per image).
    cut_excluded : list of str
        Wells cut by the edge of either image's field of view, left out of the fit
        (their residuals are still reported) because enough whole wells remain.
    unseen : list of str
        Wells this reading puts wholly inside the MRI's or CT's field of view where no
        well was found (evidence against it; see :func:`unseen_wells`).
    """

    rank: int
    fit: Any
    fixed_match: MoldMatch
    moving_match: MoldMatch
    matched_names: list[str]
    fixed_xyz_mm: np.ndarray
    moving_xyz_mm: np.ndarray
    rotation_deg: float
    within_prior: bool
    score: float
    cut_excluded: list[str] = field(default_factory=list)
    unseen: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: wells, rotation between the scans, RMS FRE and residuals (mm)."""
        res = np.asarray(self.fit.residuals_mm, dtype=float)
        per = ", ".join(f"{n} {r:.2f}" for n, r in zip(self.matched_names, res, strict=True))
        return (
            f"pose {self.rank}: {len(self.matched_names)} wells in both images "
            f"({', '.join(self.matched_names)}); mold turned {self.rotation_deg:.0f}° between the "
            f"scans; RMS FRE {float(self.fit.rms_fre_mm):.2f} mm; residuals (mm) {per}"
            + (
                f"; puts {', '.join(self.unseen)} in view where no well was found"
                if self.unseen
                else ""
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "matched_names": list(self.matched_names),
            "rotation_deg": self.rotation_deg,
            "within_prior": bool(self.within_prior),
            "score": self.score,
            "cut_excluded": list(self.cut_excluded),
            "unseen": list(self.unseen),
            "rms_fre_mm": float(self.fit.rms_fre_mm),
            "residuals_mm": np.asarray(self.fit.residuals_mm, dtype=float).tolist(),
            "matrix": np.asarray(self.fit.matrix).tolist(),
            "translation": np.asarray(self.fit.translation).tolist(),
        }


class AmbiguousPoseError(InputError):
    """The wells fit more than one pose and the orientation prior cannot tell which.

    Attributes
    ----------
    candidates : list of PoseCandidate
        The candidate poses (at most :data:`MAX_CANDIDATES`), best first; the user
        picks one (``registration.with_pose(n)``, ``--pose N``).
    registration : MoldRegistration
        The undecided registration (``ambiguous`` is True; its ``fit`` is candidate 1,
        for display only).
    """

    def __init__(self, message: str, registration: MoldRegistration):
        super().__init__(message)
        self.registration = registration
        self.candidates = list(registration.candidates)


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
    candidates : list of PoseCandidate
        The ways the wells can be read (at most :data:`MAX_CANDIDATES`, ranked: within
        the orientation prior first, then by score); one when the wells decide alone.
    chosen : int
        Index into ``candidates`` of the pose used for ``fit``.
    decided_by : str
        ``"wells"`` (only one pose fits), ``"prior"`` (one pose within
        ``max_rotation_deg``), ``"user"`` (:meth:`with_pose`, ``pose=``) or
        ``"undecided"`` (``ambiguous``: not a result, shown for the user to choose).
    max_rotation_deg : float or None
        The orientation prior used.
    """

    fit: Any
    fixed_match: MoldMatch
    moving_match: MoldMatch
    matched_names: list[str]
    fixed_xyz_mm: np.ndarray
    moving_xyz_mm: np.ndarray
    template: str = ""
    candidates: list[PoseCandidate] = field(default_factory=list)
    chosen: int = 0
    decided_by: str = "wells"
    max_rotation_deg: float | None = MAX_ROTATION_DEG

    @property
    def ambiguous(self) -> bool:
        """True when no pose was decided (only with ``strict=False``): not a result."""
        return self.decided_by == "undecided"

    @property
    def pose(self) -> int:
        """1-based rank of the chosen candidate."""
        return self.chosen + 1

    def with_pose(self, n: int) -> MoldRegistration:
        """The registration on candidate ``n`` (1-based), chosen by the user.

        Raises
        ------
        InputError
            ``n`` is not the rank of a candidate.
        """
        if (
            isinstance(n, bool)
            or not isinstance(n, int | np.integer)
            or not (1 <= n <= len(self.candidates))
        ):
            raise InputError(
                f"pose {n!r}: choose 1 to {len(self.candidates)} (the candidate poses listed)"
            )
        c = self.candidates[int(n) - 1]
        return replace(
            self,
            fit=c.fit,
            fixed_match=c.fixed_match,
            moving_match=c.moving_match,
            matched_names=list(c.matched_names),
            fixed_xyz_mm=c.fixed_xyz_mm,
            moving_xyz_mm=c.moving_xyz_mm,
            chosen=int(n) - 1,
            decided_by="user",
        )

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
            "pose": self.pose,
            "decided_by": self.decided_by,
            "max_rotation_deg": self.max_rotation_deg,
            "candidates": [c.to_dict() for c in self.candidates],
        }

    def decision_line(self) -> str:
        """How the pose was chosen, one line."""
        n = len(self.candidates)
        if not self.candidates:
            return "pose: decided by the wells"
        c = self.candidates[self.chosen]
        others = [o for o in self.candidates if o is not c]
        prior = (
            "no orientation prior"
            if self.max_rotation_deg is None
            else f"prior: at most {self.max_rotation_deg:g}° between the scans"
        )
        alt = "; ".join(f"pose {o.rank} turns it {o.rotation_deg:.0f}°" for o in others)
        if self.decided_by == "wells":
            return f"pose: only one pose fits the wells (mold turned {c.rotation_deg:.0f}° between the scans)"
        if self.decided_by == "prior":
            return (
                f"pose {c.rank} of {n}: chosen by the orientation prior ({prior}): the mold turned "
                f"{c.rotation_deg:.0f}° between the scans; {alt} (choose it with --pose)"
            )
        if self.decided_by == "user":
            return (
                f"pose chosen by the user (candidate {c.rank} of {n}; mold turned "
                f"{c.rotation_deg:.0f}° between the scans; {prior})"
            )
        return f"pose: UNDECIDED among {n} candidate poses ({prior}); choose one"

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
        cut = self.candidates[self.chosen].cut_excluded if self.candidates else []
        if cut:
            lines.append(
                f"left out of the fit: {', '.join(cut)} (cut by the edge of the field of view, "
                "centre biased inwards)"
            )
        lines.append(self.decision_line())
        if len(self.candidates) > 1:
            lines += ["  " + c.summary() for c in self.candidates]
        return lines


@dataclass
class _Reading:
    """One (fixed pose, moving pose) combination: a candidate fixed → moving map."""

    outside: bool  # beyond the orientation prior
    unseen: list[str]  # wells it puts inside an anatomical image where none was found
    score: float
    angle: float
    fixed: MoldMatch
    moving: MoldMatch
    names: list[str]
    rotation: np.ndarray
    translation: np.ndarray

    @property
    def key(self):
        return (self.outside, len(self.unseen), -self.score, self.angle)


def unseen_wells(match: MoldMatch, volume: Volume, template: Template) -> list[str]:
    """Wells a pose puts wholly inside an anatomical image's field of view that were not found.

    In MRI and CT every well of the mold shows (Gd or plastic), so a pose that puts an
    unfound well inside the field of view is contradicted by the image. MPI wells may be
    left empty, so MPI images give no such evidence (empty list).
    """
    if volume.modality == "MPI":
        return []
    names = [n for n in template.names if n not in match.pairs]
    if not names:
        return []
    q = np.array([template.fiducials[template.names.index(n)].position_mm for n in names])
    edge = edge_distance_mm(volume, match.template_to_image(q))
    margin = 0.5 * template.diameter_mm + float(max(volume.spacing_mm))
    return [n for n, e in zip(names, edge, strict=True) if e > margin]


def _combine(fixed_poses, moving_poses, tolerance_mm: float, max_rotation_deg, unseen):
    """Distinct (fixed pose, moving pose) readings sharing ≥ 3 wells, ranked.

    Ranked by: within the orientation prior, fewest wells put where an anatomical image
    shows none, best score, smallest turn. Two readings are the same when their rigid
    fixed → moving maps (through the two poses) move no fixed-image well by more than
    the tolerance: the two 180°-turned readings of the same subset in both images give
    one map.
    """
    out = []
    for f in fixed_poses:
        for m in moving_poses:
            names = [n for n in f.pairs if n in m.pairs]
            if len(names) < 3:
                continue
            rot = m.matrix @ f.matrix.T
            angle = rotation_angle_deg(rot)
            out.append(
                _Reading(
                    outside=max_rotation_deg is not None and angle > max_rotation_deg,
                    unseen=unseen(f, "fixed") + unseen(m, "moving"),
                    score=f.score + m.score,
                    angle=angle,
                    fixed=f,
                    moving=m,
                    names=names,
                    rotation=rot,
                    translation=m.translation - rot @ f.translation,
                )
            )
    out.sort(key=lambda c: c.key)
    ref = fixed_poses[0]
    probe = ref.template_to_image(np.array(list(ref.positions_mm.values())))
    distinct: list[_Reading] = []
    for c in out:
        mapped = probe @ c.rotation.T + c.translation
        if all(
            np.max(np.linalg.norm(mapped - (probe @ d.rotation.T + d.translation), axis=1))
            > tolerance_mm
            for d in distinct
        ):
            distinct.append(c)
    return distinct


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
    max_rotation_deg: float | None = MAX_ROTATION_DEG,
    pose: int | None = None,
    strict: bool = True,
    search_dirs=(),
    progress=None,
) -> MoldRegistration:
    """Register two images of an animal in the same mold from its fiducial wells.

    Detects and matches the template's fiducials in each image, pairs them by name
    and fits the fixed → moving transform (ITK convention: maps fixed mm to moving
    mm) with :func:`mpi_viewer.registration.fit_landmarks`.

    When an image shows few wells they may fit more than one pose of the mold (in
    ``mouse_mold_v1`` wells M3–M6 fit a 180° turn of the animal in the bore within
    0.25 mm). Each pose of the fixed image combined with each pose of the moving image
    (sharing ≥ 3 wells) is a *candidate* fixed → moving transform. What a user knows
    decides between them, the **orientation prior**: both scans hold the same mold,
    placed the same way round (head-first in both, or feet-first in both, same side
    up), so the mold turns by at most ``max_rotation_deg`` (default 45°) between the
    two images' axes. A 180° turn of one reading makes the other candidate turn by at
    least 180° − (the true angle), so with a true turn below 45° the prior always
    separates them; if the scans hold the animal the opposite way round (e.g.
    head-first in the MRI, feet-first in the MPI), pass ``max_rotation_deg=None`` (or
    180) and choose with ``pose``. A prior about the bore axis alone cannot help: a
    head-first and a feet-first mouse both lie along the bore.

    The decision: one candidate → it (``decided_by="wells"``, whatever its angle);
    several → the only one within the prior (``"prior"``), unless it puts more wells than
    another candidate inside the MRI's or CT's field of view where none was found
    (:func:`unseen_wells`); none or several within the prior, or that contradiction →
    :class:`AmbiguousPoseError` listing the candidates (with ``strict=False``:
    a registration with ``ambiguous=True``, for display only). ``pose=n`` takes
    candidate ``n`` (``"user"``).

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
    max_rotation_deg : float or None
        Orientation prior: largest rotation (degrees) of the mold between the two
        scans' axes; ``None`` for no prior (ambiguous wells are then refused).
    pose : int, optional
        1-based rank of the candidate to use (see ``MoldRegistration.candidates``).
    strict : bool
        Raise :class:`AmbiguousPoseError` when undecided (default).
    progress : callable, optional
        ``progress(fraction, message)`` before each step (fraction 0–1 done), for
        progress bars; it may raise (e.g. :class:`~mpi_viewer.errors.CancelledError`)
        to stop the work between steps.

    Returns
    -------
    MoldRegistration
        With its ``candidates`` (at most :data:`MAX_CANDIDATES`), ``chosen`` and
        ``decided_by``; :meth:`MoldRegistration.with_pose` switches to another candidate.

    Raises
    ------
    InputError
        A 2-D image, a bad template, fewer than 3 fiducials found in either image, a template
        that does not fit, fewer than 3 fiducials common to both images, a bad
        ``pose`` or ``max_rotation_deg``. Each message names the image.
    AmbiguousPoseError
        (an InputError) The wells fit several poses and the prior cannot decide.
    """
    if max_rotation_deg is not None and (
        isinstance(max_rotation_deg, bool)
        or not isinstance(max_rotation_deg, int | float)
        or not (0 < max_rotation_deg <= 180)
    ):
        raise InputError(
            f"maximum rotation {max_rotation_deg!r}°: must be a number in (0, 180] degrees"
        )
    flat = [
        f"{role} image {v.name!r} is {v.ndim}-D"
        for role, v in (("fixed", fixed), ("moving", moving))
        if v.ndim != 3
    ]
    if flat:
        raise InputError(
            f"{'; '.join(flat)}: a mold's wells are placed in 3-D; register 3-D images with "
            "the template (2-D projections: with landmarks)"
        )
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
                match_fiducials(
                    cands, tpl, tolerance_mm=tolerance_mm, min_matches=min_matches, strict=False
                )
            )
        except InputError as exc:
            raise InputError(f"{role} image {vol.name!r}: {exc}") from None
    fm, mm = matches
    vols = {"fixed": fixed, "moving": moving}
    combos = _combine(
        [fm, *fm.alternatives],
        [mm, *mm.alternatives],
        tolerance_mm,
        max_rotation_deg,
        lambda match, role: unseen_wells(match, vols[role], tpl),
    )
    if not combos:
        names = [n for n in tpl.names if n in fm.pairs and n in mm.pairs]
        raise InputError(
            f"template {tpl.name!r}: only {len(names)} fiducials found in both images "
            f"({', '.join(names) or 'none'}); at least 3 are needed"
        )
    n_within = sum(not c.outside for c in combos)
    conflict = ""
    if len(combos) == 1:
        decided_by = "wells"
    elif max_rotation_deg is not None and n_within == 1:
        decided_by = "prior"
        # the prior's pick must not be contradicted by the anatomy more than the others
        if len(combos[0].unseen) > min(len(c.unseen) for c in combos[1:]):
            decided_by = "undecided"
            conflict = (
                f"the pose within the prior puts {', '.join(combos[0].unseen)} inside the field "
                "of view where no well was found"
            )
    else:
        decided_by = "undecided"
    combos = combos[:MAX_CANDIDATES]
    chosen = 0
    if pose is not None:
        if (
            isinstance(pose, bool)
            or not isinstance(pose, int | np.integer)
            or not (1 <= pose <= len(combos))
        ):
            raise InputError(
                f"pose {pose!r}: this registration has {len(combos)} candidate pose"
                f"{'s' if len(combos) > 1 else ''}; choose 1"
                + (f" to {len(combos)}" if len(combos) > 1 else "")
            )
        chosen, decided_by = int(pose) - 1, "user"
    if progress is not None:
        progress(0.95, "fitting the transform")
    from mpi_viewer.registration.landmarks import fit_landmarks

    names_chosen = combos[chosen].names
    unknown = [n for n in exclude if n not in names_chosen]
    if unknown:
        raise InputError(
            f"exclude: {', '.join(unknown)} not among the fiducials found in both images "
            f"({', '.join(names_chosen)})"
        )
    candidates = []
    for rank, reading in enumerate(combos, start=1):
        f, m, names = reading.fixed, reading.moving, reading.names
        fx = np.array([f.positions_mm[n] for n in names])
        mx = np.array([m.positions_mm[n] for n in names])
        user_ex = [n for n in exclude if n in names]
        cut = [n for n in [*f.cut_by_edge, *m.cut_by_edge] if n in names and n not in user_ex]
        cut = list(dict.fromkeys(cut))  # most cut first; keep enough wells for the model
        cut = cut[: max(0, len(names) - len(user_ex) - (4 if model == "affine" else 3))]
        fit = fit_landmarks(
            fx,
            mx,
            model=model,
            names=names,
            exclude=user_ex + cut,
            fle_mm=fle_mm,
            fre_tolerance_mm=fre_tolerance_mm,
        )
        candidates.append(
            PoseCandidate(
                rank=rank,
                fit=fit,
                fixed_match=f,
                moving_match=m,
                matched_names=names,
                fixed_xyz_mm=fx,
                moving_xyz_mm=mx,
                rotation_deg=reading.angle,
                within_prior=not reading.outside,
                score=reading.score,
                cut_excluded=cut,
                unseen=list(reading.unseen),
            )
        )
    c = candidates[chosen]
    reg = MoldRegistration(
        fit=c.fit,
        fixed_match=c.fixed_match,
        moving_match=c.moving_match,
        matched_names=list(c.matched_names),
        fixed_xyz_mm=c.fixed_xyz_mm,
        moving_xyz_mm=c.moving_xyz_mm,
        template=tpl.name,
        candidates=candidates,
        chosen=chosen,
        decided_by=decided_by,
        max_rotation_deg=None if max_rotation_deg is None else float(max_rotation_deg),
    )
    if reg.ambiguous and strict:
        which = "fixed" if fm.ambiguous else "moving"
        if conflict:
            why = conflict
        elif max_rotation_deg is None:
            why = "no orientation prior given"
        elif n_within == 0:
            why = f"none turns the mold by at most {max_rotation_deg:g}° between the scans"
        else:
            why = f"{n_within} turn the mold by at most {max_rotation_deg:g}° between the scans"
        listing = "; ".join(
            f"pose {x.rank}: {len(x.matched_names)} wells, turned {x.rotation_deg:.0f}°, "
            f"RMS FRE {float(x.fit.rms_fre_mm):.2f} mm"
            for x in candidates
        )
        raise AmbiguousPoseError(
            f"template {tpl.name!r}: ambiguous match: the wells of the {which} image fit "
            f"{len(combos)} poses of the mold and the orientation prior cannot decide ({why}): "
            f"{listing}; choose one",
            reg,
        )
    return reg
