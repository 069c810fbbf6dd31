"""The demo study: a synthetic mouse in a fiducial mold, scanned by MRI, CT and MPI.

**Synthetic.** Nothing here is a real scan. The study exists so that every number the
program computes can be checked against a known truth:

- a mouse-shaped MRI (T1-like, Rician noise, dark iron voids where labelled cells
  sit) and a CT (HU, mold plastic, spine) of the same animal in the
  ``mouse_mold_v1`` mold, whose seven fiducial wells are bright in both;
- a 3-D MPI on its own coarser grid, a known rigid transform away from the MRI,
  with Gaussian noise (so the background has negative values, as real
  reconstructions do) and a point-spread function the ROI code does not assume:
  by default the x-space PSF of a field-free-point scanner derived from the Langevin
  magnetization (:func:`langevin_psf`: the derivative of the Langevin function of the
  selection field, from the gradient of the acquisition metadata and the particles'
  core size; anisotropic, with long tails; optionally relaxation blur along the
  drive axis); ``psf="gaussian"`` gives the earlier demo's anisotropic Gaussian;
- iron hot spots of known mass from labelled cells: an isolated one, a strong one
  with a weak one close beside it (Sehl et al. 2020, fig. 5), and a faint one near
  the detection limit; iron per cell is known;
- six calibration vials of known iron (0.5 to 20 µg) in the MPI field of view.

The ground truth (transforms, fiducial positions in every frame, iron and cells per
source, the PSF and the sensitivity) is returned as a JSON-serialisable dict and
written beside the images by :func:`write_demo_study`.

Conventions: physical positions are mm, ITK order (x, y, z). A *pose* maps mold
coordinates to a scanner's physical frame: ``p = R @ q + t``. The registration
transform follows ITK (fixed → moving): it maps MRI points to MPI points, so
``T = pose_mpi ∘ pose_mri⁻¹``.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer.defaults import IRON_PER_CELL_PG, IRON_PER_CELL_SD_PG  # noqa: F401
from mpi_viewer.errors import InputError
from mpi_viewer.geometry.volume import Acquisition, Volume, image_from_array
from mpi_viewer.registration.molds import template_path
from mpi_viewer.study.pipeline import compute_and_save, new_session
from mpi_viewer.study.session import (
    CalibrationSection,
    CellsSection,
    Landmarks,
    RegistrationSection,
    ROISection,
)


def make_demo_session(
    folder: str | Path,
    *,
    name: str = "demo_session.json",
    write_study: bool = True,
    sources=("isolated", "strong", "weak", "faint"),
) -> Path:
    """The demo study's files and a session analysing them, built through the real pipeline.

    Mold-template registration of the MPI to the MRI, four half-maximum ROIs seeded at
    the demo's sources (isolated, strong, weak, faint; seeds are the source positions
    rounded to 0.1 mm, as a careful click would be), a calibration from the in-image vials
    measured with the same ROI method, and cells from the demo's iron per cell.
    """
    import json

    from mpi_viewer import demo

    folder = Path(folder)
    if write_study or not (folder / "truth.json").exists():
        demo.write_demo_study(folder)
    truth = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
    path = folder / name
    s = new_session(
        path, mpi=folder / "mpi.nii.gz", mri=folder / "mri.nii.gz", phantoms=folder / "phantoms.csv"
    )
    s.registration = RegistrationSection(
        fixed="mri",
        moving="mpi",
        method="template",
        template=truth.get("template", demo.TEMPLATE_NAME),
        model="rigid",
        landmarks=Landmarks(),
    )
    sources = [src for src in truth["sources"] if src["name"] in sources]
    from mpi_viewer.roi.regions import ROIParams

    s.rois = [
        ROISection(
            method="halfmax",
            params=ROIParams().to_dict(),
            seeds_xyz_mm=[[round(float(c), 1) for c in src["mpi_mm"]] for src in sources],
            names=[src["name"] for src in sources],
        )
    ]
    s.calibration = CalibrationSection(source="phantoms", roi_params=None)
    s.cells = CellsSection(
        mean_pg=float(truth["iron_per_cell_pg"]), sd_pg=float(truth["iron_per_cell_sd_pg"])
    )
    compute_and_save(s, path)
    return path


TEMPLATE_NAME = "mouse_mold_v1"


#: Iron per labelled cell in the demo (pg Fe/cell) and its spread: the defaults
#: (IRON_PER_CELL_PG, IRON_PER_CELL_SD_PG from mpi_viewer.calibration.cells).


#: MPI sensitivity: total signal (a.u.·mm³) per µg Fe; the PSF integrates to 1.
SENSITIVITY_AU_MM3_PER_UG = 1250.0


#: Labelled-cell sources in mold coordinates (mm) with their cell numbers.
SOURCES = (
    {"name": "isolated", "mold_mm": (-4.0, 2.0, 6.0), "cells": 400_000},
    {"name": "strong", "mold_mm": (3.0, -1.0, -16.0), "cells": 1_200_000},
    {"name": "weak", "mold_mm": (6.5, -1.0, -14.0), "cells": 100_000},
    {"name": "faint", "mold_mm": (-5.0, 3.0, -30.0), "cells": 13_000},
)


#: Calibration vials (point-like 1 µL drops in PCR tubes) beside the mold, mold coordinates.
VIALS = (
    {"name": "vial_0.5ug", "mold_mm": (24.0, 0.0, -35.0), "iron_ug": 0.5},
    {"name": "vial_1ug", "mold_mm": (24.0, 0.0, -21.0), "iron_ug": 1.0},
    {"name": "vial_2.5ug", "mold_mm": (24.0, 0.0, -7.0), "iron_ug": 2.5},
    {"name": "vial_5ug", "mold_mm": (24.0, 0.0, 7.0), "iron_ug": 5.0},
    {"name": "vial_10ug", "mold_mm": (24.0, 0.0, 21.0), "iron_ug": 10.0},
    {"name": "vial_20ug", "mold_mm": (24.0, 0.0, 35.0), "iron_ug": 20.0},
)


#: Candidate places for hot spots that are not fiducials (gut iron, injection site).
EXTRA_HOT_SPOTS = (
    {"name": "gut_iron", "mold_mm": (2.0, -4.0, -24.0), "iron_ug": 4.0},
    {"name": "injection_site", "mold_mm": (-6.0, 5.0, 16.0), "iron_ug": 7.0},
    {"name": "liver_iron", "mold_mm": (4.0, -2.0, 0.0), "iron_ug": 3.0},
)


#: MRI body parts: (name, centre mm, semi-axes mm, T1 intensity, CT HU), painted in order.
_ANATOMY = (
    ("body", (0.0, 0.0, -6.0), (11.0, 9.5, 30.0), 350.0, 40.0),
    ("head", (0.0, 1.0, 30.0), (7.5, 7.0, 10.0), 360.0, 40.0),
    ("brain", (0.0, 2.0, 32.0), (5.0, 4.5, 6.5), 430.0, 35.0),
    ("liver", (0.0, -2.0, 0.0), (9.0, 6.0, 5.0), 300.0, 60.0),
    ("lung_r", (-4.5, -1.0, 12.0), (3.5, 4.0, 6.0), 40.0, -500.0),
    ("lung_l", (4.5, -1.0, 12.0), (3.5, 4.0, 6.0), 40.0, -500.0),
    ("heart", (0.5, -3.0, 10.0), (3.0, 3.0, 3.5), 280.0, 50.0),
    ("kidney_r", (-5.0, 4.0, -12.0), (2.2, 2.0, 3.5), 480.0, 40.0),
    ("kidney_l", (5.0, 4.0, -10.0), (2.2, 2.0, 3.5), 480.0, 40.0),
    ("bladder", (0.0, -3.0, -32.0), (3.0, 3.0, 3.0), 150.0, 10.0),
    ("spine", (0.0, 7.0, -6.0), (1.6, 1.6, 28.0), 120.0, 900.0),
    ("skull", (0.0, 5.5, 31.0), (6.0, 1.2, 8.0), 100.0, 1100.0),
)


@dataclass(frozen=True)
class DemoParams:
    """Everything that varies between demo studies; the defaults are *the* demo.

    Poses are (rotation about x, y, z in degrees, translation in mm) of the mold in
    each scanner's physical frame.
    """

    seed: int = 0
    noise_seed: int | None = None  # MPI noise only; defaults to ``seed``
    mri_rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    mri_translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    mri_spacing_mm: tuple[float, float, float] = (0.3, 0.3, 0.3)
    mri_direction_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # oblique MRI grid
    mpi_rotation_deg: tuple[float, float, float] = (4.0, -3.0, 6.0)
    mpi_translation_mm: tuple[float, float, float] = (3.0, -2.0, 5.0)
    mpi_spacing_mm: tuple[float, float, float] = (0.5, 0.5, 0.5)
    ct_rotation_deg: tuple[float, float, float] = (0.0, 2.0, -3.0)
    ct_translation_mm: tuple[float, float, float] = (-2.0, 1.0, 0.0)
    ct_spacing_mm: tuple[float, float, float] = (0.4, 0.4, 0.4)
    psf: str = "langevin"  # "langevin" (x-space, the default) or "gaussian" (the old demo)
    psf_fwhm_mm: tuple[float, float, float] = (2.4, 2.4, 3.6)  # the Gaussian variant's
    gradient_T_per_m: float = 5.7  # selection-field gradient along the bore (z); x, y: half
    particle_core_nm: float = 18.0  # magnetite core diameter (Langevin PSF)
    drive_axis: str = "x"
    relaxation_mm: float = 0.0  # relaxation blur along the drive axis (0: none)
    psf_tail_mm: tuple[float, float] = (5.0, 8.0)  # Langevin tails kept to 5 mm, tapered to 0 at 8
    noise_sd_au: float = 1.5
    # total signal per µg; None: 1250 (Gaussian), or for the Langevin PSF the value that
    # gives the same peak per µg (the same SNRs; its tails carry 3× more signal)
    sensitivity_au_mm3_per_ug: float | None = None
    fiducial_iron_ug: float = 5.0
    missing_fiducials: tuple[str, ...] = ()  # wells left empty in the MPI
    extra_hot_spots: int = 0  # how many of EXTRA_HOT_SPOTS to add
    include_ct: bool = True
    include_vials: bool = True

    def __post_init__(self) -> None:
        if self.psf not in ("langevin", "gaussian"):
            raise ValueError(f"demo psf {self.psf!r}: expected 'langevin' or 'gaussian'")
        if self.drive_axis not in ("x", "y", "z"):
            raise ValueError(f"demo drive axis {self.drive_axis!r}: expected x, y or z")


@dataclass
class DemoStudy:
    """The demo's images and its ground truth."""

    mri: Volume
    mpi: Volume
    ct: Volume | None
    truth: dict[str, Any]
    params: DemoParams = field(default_factory=DemoParams)

    def render_sources(self, positions_mm, iron_ug) -> np.ndarray:
        """Noise-free MPI signal (a.u., z, y, x) of point sources on the demo's MPI grid.

        This is the known point-spread function applied to known iron: tests use it
        to compute what an ROI method should report, independently of the method.
        """
        out = np.zeros(self.mpi.shape, dtype=np.float64)
        for p, fe in zip(np.atleast_2d(positions_mm), np.atleast_1d(iron_ug), strict=True):
            _add_source(out, self.mpi, p, fe, self.params)
        return _relaxation_blur(out, self.params, self.mpi.spacing_mm)

    def peak_au(self, iron_ug: float) -> float:
        """Continuous peak (a.u.) of a point source of ``iron_ug`` (see :func:`psf_peak_au`)."""
        return psf_peak_au(self.params, iron_ug)

    def source(self, name: str) -> dict[str, Any]:
        """The truth entry of one source (or vial) by name."""
        for s in self.truth["sources"] + self.truth["vials"]:
            if s["name"] == name:
                return s
        raise KeyError(name)


# -- geometry helpers -------------------------------------------------------------------
def rotation_matrix(angles_deg) -> np.ndarray:
    """Rotation R = Rz @ Ry @ Rx for angles (about x, y, z) in degrees."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=float))
    cx, sx, cy, sy, cz, sz = (
        math.cos(ax),
        math.sin(ax),
        math.cos(ay),
        math.sin(ay),
        math.cos(az),
        math.sin(az),
    )
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _pose(rot_deg, trans_mm) -> tuple[np.ndarray, np.ndarray]:
    return rotation_matrix(rot_deg), np.asarray(trans_mm, dtype=float)


def _apply(pose, q) -> np.ndarray:
    r, t = pose
    return np.atleast_2d(q) @ r.T + t


def _compose_fixed_to_moving(pose_fixed, pose_moving) -> tuple[np.ndarray, np.ndarray]:
    """T(p) = pose_moving(pose_fixed⁻¹(p)) as (matrix, translation)."""
    rf, tf = pose_fixed
    rm, tm = pose_moving
    m = rm @ rf.T
    return m, tm - m @ tf


def load_template(name: str = TEMPLATE_NAME) -> dict[str, Any]:
    """Read a shipped fiducial template's JSON (no validation; see :mod:`mpi_viewer.registration.molds`)."""
    return json.loads(template_path(name).read_text(encoding="utf-8"))


def _grid_covering(
    points_phys, spacing, direction_deg, margin_mm
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """(origin, direction, size) of a grid with the given axes that covers the points."""
    d = rotation_matrix(direction_deg)
    local = np.atleast_2d(points_phys) @ d  # coordinates along the grid axes
    lo = local.min(axis=0) - margin_mm
    hi = local.max(axis=0) + margin_mm
    sp = np.asarray(spacing, dtype=float)
    size = tuple(int(math.ceil((h - low) / s)) + 1 for low, h, s in zip(lo, hi, sp, strict=True))
    origin = d @ lo
    return origin, d, size


def _index_to_mold(origin, direction, spacing, pose):
    """Affine (M, c) with mold = M @ index_xyz + c."""
    r, t = pose
    m = r.T @ direction @ np.diag(spacing)
    c = r.T @ (origin - t)
    return m, c


def _paint(img, shape_fn_args, value, m, c, spacing):
    """Paint a soft-edged ellipsoid (in mold mm) into img (z, y, x) with the painter's rule."""
    centre, semi = (np.asarray(a, dtype=float) for a in shape_fn_args)
    # bounding box in index space from the 8 corners of the ellipsoid's box
    corners = np.array(
        [
            [centre[i] + s * semi[i] for i, s in enumerate(signs)]
            for signs in np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).T.reshape(-1, 3)
        ]
    )
    idx = np.linalg.solve(m, (corners - c).T).T  # xyz indices
    size_xyz = img.shape[::-1]
    lo = np.clip(np.floor(idx.min(axis=0)) - 2, 0, size_xyz).astype(int)
    hi = np.clip(np.ceil(idx.max(axis=0)) + 3, 0, size_xyz).astype(int)
    if np.any(hi <= lo):
        return
    zz, yy, xx = np.meshgrid(
        *(np.arange(lo[a], hi[a], dtype=np.float32) for a in (2, 1, 0)), indexing="ij"
    )
    s2 = np.zeros(zz.shape, dtype=np.float32)
    for a in range(3):
        q = m[a, 0] * xx + m[a, 1] * yy + m[a, 2] * zz + (c[a] - centre[a])
        s2 += (q / semi[a]) ** 2
    s = np.sqrt(s2)
    width = float(np.min(spacing))
    f = np.clip(0.5 - (s - 1.0) * float(np.min(semi)) / width, 0.0, 1.0)
    sl = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    img[sl] = img[sl] * (1 - f) + value * f


def _mold_box(img, m, c, spacing, extent_min, extent_max, value):
    """Paint the mold block (CT only): an axis-aligned box in mold coordinates."""
    size_xyz = img.shape[::-1]
    zz, yy, xx = np.meshgrid(
        *(np.arange(n, dtype=np.float32) for n in size_xyz[::-1]), indexing="ij"
    )
    f = np.ones(zz.shape, dtype=np.float32)
    width = float(np.min(spacing))
    for a in range(3):
        q = m[a, 0] * xx + m[a, 1] * yy + m[a, 2] * zz + c[a]
        inside = np.minimum(q - extent_min[a], extent_max[a] - q)
        f *= np.clip(0.5 + inside / width, 0.0, 1.0)
    img[:] = img * (1 - f) + value * f


#: Physical constants (SI) for the Langevin PSF.
_KB = 1.380649e-23  # J/K
_TEMPERATURE_K = 310.0  # body temperature
_MS_A_PER_M = 4.46e5  # saturation magnetization of magnetite (A/m)
#: FWHM of L'(ξ) in ξ (2 × 2.0805), for the FWHM in mm.
_LPRIME_FWHM_XI = 4.16105


def _gradients_T_per_m(params: DemoParams) -> np.ndarray:
    """(Gx, Gy, Gz) magnitudes: a Maxwell-pair field-free point, G along the bore (z),
    G/2 across it (the three gradients sum to zero)."""
    g = float(params.gradient_T_per_m)
    return np.array([g / 2.0, g / 2.0, g])


def _langevin_k_per_T(params: DemoParams) -> float:
    """m / (k_B T) (1/T): the Langevin argument per tesla of selection field."""
    d = float(params.particle_core_nm) * 1e-9
    m = _MS_A_PER_M * math.pi * d**3 / 6.0
    return m / (_KB * _TEMPERATURE_K)


def langevin_fwhm_mm(params: DemoParams) -> np.ndarray:
    """FWHM (mm, x, y, z) of the Langevin PSF: 4.16 / (k · G_axis), before relaxation."""
    return _LPRIME_FWHM_XI / (_langevin_k_per_T(params) * _gradients_T_per_m(params)) * 1e3


def _lprime(xi: np.ndarray) -> np.ndarray:
    """L'(ξ) = 1/ξ² − 1/sinh²(ξ), the derivative of the Langevin function (1/3 at 0)."""
    xi = np.abs(np.asarray(xi, dtype=np.float64))
    out = np.empty_like(xi)
    small = xi < 1e-2
    out[small] = 1.0 / 3.0 - xi[small] ** 2 / 15.0
    x = xi[~small]
    with np.errstate(over="ignore"):
        out[~small] = 1.0 / x**2 - 1.0 / np.sinh(np.minimum(x, 350.0)) ** 2
    return out


def langevin_psf(params: DemoParams, offsets_mm_xyz) -> np.ndarray:
    """The demo's x-space PSF at physical offsets (mm, along the scanner axes x, y, z).

    ``h(r) = L'(k |G r|) · w(|r|)``, the x-space point-spread function (Goodwill &
    Conolly, IEEE TMI 29:1851, 2010, doi:10.1109/TMI.2010.2052284: the image of a point
    is the derivative of the Langevin magnetization, L'(ξ) with ξ = m μ0|H| / k_B T)
    for a field-free point moved through the selection field of a Maxwell pair, whose
    gradient is G along the bore (z) and G/2 across (x, y): the drive axis x and y have
    half the resolution of z. ``k = m / k_B T`` with m the moment of a magnetite core
    of ``particle_core_nm`` (M_s = 446 kA/m) at 310 K; G from the acquisition metadata.
    L' falls as 1/ξ²: tails far longer than a Gaussian's (2 % of the peak at 3 FWHM
    against 10⁻¹¹). The tails are kept to ``psf_tail_mm[0]`` and tapered (cos²) to zero
    at ``psf_tail_mm[1]`` (a reconstruction's finite field of view and baseline
    recovery remove the farthest ones; in 3-D a 1/r² tail would not integrate).
    Peak 1/3 at the centre (not normalised). Simplification: only the tangential
    envelope along the drive axis; the normal envelope (Goodwill & Conolly, IEEE TMI
    30:1581, 2011) is left out.
    """
    off = [np.asarray(o, dtype=np.float64) for o in offsets_mm_xyz]
    g = _gradients_T_per_m(params)
    k = _langevin_k_per_T(params)
    xi2 = sum((k * g[a] * 1e-3 * off[a]) ** 2 for a in range(3))
    h = _lprime(np.sqrt(xi2))
    r = np.sqrt(sum(off[a] ** 2 for a in range(3)))
    r1, r2 = params.psf_tail_mm
    t = np.clip((r - r1) / (r2 - r1), 0.0, 1.0)
    return h * np.cos(0.5 * math.pi * t) ** 2


_INTEGRAL_STEP_MM = 0.2


@functools.lru_cache(maxsize=8)
def _langevin_integral_mm3(params: DemoParams) -> float:
    """∫ h d³r (mm³) of :func:`langevin_psf` (relaxation blur keeps the integral)."""
    step = _INTEGRAL_STEP_MM
    r2 = float(params.psf_tail_mm[1])
    g = np.arange(-r2, r2 + step / 2, step)
    total = 0.0
    yy, xx = np.meshgrid(g, g, indexing="ij")
    for z in g:  # slice by slice: little memory
        total += float(langevin_psf(params, (xx, yy, np.full_like(xx, z))).sum())
    return total * step**3


def _psf_sigma_mm(params: DemoParams) -> np.ndarray:
    return np.asarray(params.psf_fwhm_mm, dtype=float) / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def sensitivity(params: DemoParams) -> float:
    """Total signal (a.u.·mm³) per µg Fe of the demo (see ``DemoParams``)."""
    if params.sensitivity_au_mm3_per_ug is not None:
        return float(params.sensitivity_au_mm3_per_ug)
    if params.psf == "gaussian":
        return SENSITIVITY_AU_MM3_PER_UG
    g = replace(params, psf="gaussian", sensitivity_au_mm3_per_ug=SENSITIVITY_AU_MM3_PER_UG)
    return psf_peak_au(g, 1.0) * 3.0 * _langevin_integral_mm3(params)


def psf_halfmax_fraction(params: DemoParams) -> float:
    """Fraction of a point source's signal inside its continuous half-maximum region
    (0.288 for any 3-D Gaussian; from the kernel itself for the Langevin PSF)."""
    if params.psf == "gaussian":
        from scipy.stats import chi2

        return float(chi2.cdf(2 * math.log(2), 3))
    return _langevin_halfmax_fraction(params)


@functools.lru_cache(maxsize=8)
def _langevin_halfmax_fraction(params: DemoParams) -> float:
    step = _INTEGRAL_STEP_MM / 2
    fw = langevin_fwhm_mm(params)
    axes = [np.arange(-f, f + step / 2, step) for f in fw]  # the core lies within ±FWHM
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij", sparse=True)
    h = langevin_psf(params, (xx, yy, zz))
    return float(h[h >= 0.5 / 3.0].sum()) * step**3 / _langevin_integral_mm3(params)


def psf_peak_au(params: DemoParams, iron_ug: float) -> float:
    """Continuous peak (a.u.) of a point source of ``iron_ug`` with the demo's PSF:
    sensitivity × iron / ((2π)^1.5 σx σy σz) for the Gaussian; sensitivity × iron ×
    h(0) / ∫h for the Langevin PSF (without relaxation blur, which lowers the peak)."""
    if params.psf == "langevin":
        return float(sensitivity(params) * iron_ug / (3.0 * _langevin_integral_mm3(params)))
    return float(
        sensitivity(params) * iron_ug / ((2 * math.pi) ** 1.5 * np.prod(_psf_sigma_mm(params)))
    )


def psf_fwhm_mm(params: DemoParams) -> np.ndarray:
    """FWHM (mm, x, y, z) of the demo's PSF (the Langevin's without relaxation blur)."""
    if params.psf == "langevin":
        return langevin_fwhm_mm(params)
    return np.asarray(params.psf_fwhm_mm, dtype=float)


def _add_source(out, mpi: Volume, pos_mm, iron_ug, params: DemoParams, weight: float = 1.0):
    """Add one point source of ``iron_ug`` at physical ``pos_mm`` with the demo's PSF."""
    if params.psf == "gaussian":
        return _add_gaussian(out, mpi, pos_mm, iron_ug, params, weight)
    return _add_langevin(out, mpi, pos_mm, iron_ug, params, weight)


def _add_langevin(out, mpi: Volume, pos_mm, iron_ug, params: DemoParams, weight: float = 1.0):
    """Add a point source with the Langevin PSF (:func:`langevin_psf`), integral = iron ×
    sensitivity, to ``out`` (z, y, x)."""
    scale = weight * sensitivity(params) * iron_ug / _langevin_integral_mm3(params)
    spacing = np.asarray(mpi.spacing_mm)
    idx = mpi.physical_to_index(pos_mm)[0][::-1]  # xyz continuous index
    half = np.ceil(float(params.psf_tail_mm[1]) / spacing).astype(int)
    lo = np.maximum(np.floor(idx).astype(int) - half, 0)
    hi = np.minimum(np.floor(idx).astype(int) + half + 2, np.asarray(out.shape[::-1]))
    if np.any(hi <= lo):
        return
    axes = [(np.arange(lo[a], hi[a]) - idx[a]) * spacing[a] for a in range(3)]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij", sparse=True)
    # offsets along the scanner's (grid) axes, whatever the image direction
    out[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]] += scale * langevin_psf(params, (xx, yy, zz))


def _relaxation_blur(signal: np.ndarray, params: DemoParams, spacing_xyz) -> np.ndarray:
    """Relaxation blur along the drive axis: the mean of the two sweep directions'
    one-sided exponentials (length ``relaxation_mm``), i.e. a two-sided exponential."""
    if not params.relaxation_mm > 0:
        return signal
    from scipy.ndimage import convolve1d

    a = "xyz".index(params.drive_axis)
    lam = float(params.relaxation_mm) / float(spacing_xyz[a])
    n = int(math.ceil(8 * lam))
    t = np.arange(-n, n + 1, dtype=np.float64)
    k = np.exp(-np.abs(t) / lam)
    return convolve1d(signal, k / k.sum(), axis=2 - a, mode="constant")


def _add_gaussian(out, mpi: Volume, pos_mm, iron_ug, params: DemoParams, weight: float = 1.0):
    """Add one point source of ``iron_ug`` at physical ``pos_mm`` to ``out`` (z, y, x)."""
    sigma = _psf_sigma_mm(params)
    amp = weight * psf_peak_au(params, iron_ug)
    spacing = np.asarray(mpi.spacing_mm)
    idx = mpi.physical_to_index(pos_mm)[0][::-1]  # xyz continuous index
    half = np.ceil(5.0 * sigma / spacing).astype(int)
    lo = np.maximum(np.floor(idx).astype(int) - half, 0)
    hi = np.minimum(np.floor(idx).astype(int) + half + 2, np.asarray(out.shape[::-1]))
    if np.any(hi <= lo):
        return
    axes = [np.arange(lo[a], hi[a]) - idx[a] for a in range(3)]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    # the PSF is defined along the scanner's (grid) axes: offsets along them are
    # spacing × index offset whatever the image direction
    e = (
        (spacing[0] * xx / sigma[0]) ** 2
        + (spacing[1] * yy / sigma[1]) ** 2
        + (spacing[2] * zz / sigma[2]) ** 2
    )
    out[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]] += amp * np.exp(-0.5 * e)


def _sphere_points(diameter_mm: float, step_mm: float = 0.5) -> np.ndarray:
    r = diameter_mm / 2.0
    g = np.arange(-r + step_mm / 2, r, step_mm)
    pts = np.array(np.meshgrid(g, g, g, indexing="ij")).reshape(3, -1).T
    return pts[np.linalg.norm(pts, axis=1) <= r]


# -- the study --------------------------------------------------------------------------
def make_demo_study(params: DemoParams | None = None, **overrides) -> DemoStudy:
    """Generate the synthetic demo study (a few seconds; cached for repeated calls).

    Parameters
    ----------
    params : DemoParams, optional
        Study parameters; keyword arguments override single fields.

    Returns
    -------
    DemoStudy
        ``mri``, ``ct`` and ``mpi`` volumes and the ``truth`` dict. The volumes are
        shared between calls with the same parameters: copy before modifying.
    """
    params = replace(params or DemoParams(), **overrides)
    return _make_cached(params)


@functools.lru_cache(maxsize=4)
def _make_cached(params: DemoParams) -> DemoStudy:
    template = load_template(TEMPLATE_NAME)
    fids = [
        (f["name"], np.asarray(f["position_mm"], dtype=float), float(f["diameter_mm"]))
        for f in template["fiducials"]
    ]
    ext_min = np.asarray(template["extent_mm"]["min"])
    ext_max = np.asarray(template["extent_mm"]["max"])
    pose_mri = _pose(params.mri_rotation_deg, params.mri_translation_mm)
    pose_mpi = _pose(params.mpi_rotation_deg, params.mpi_translation_mm)
    pose_ct = _pose(params.ct_rotation_deg, params.ct_translation_mm)
    corners = (
        np.array(np.meshgrid(*zip(ext_min, ext_max, strict=True), indexing="ij")).reshape(3, -1).T
    )

    # anatomy depends on neither the MPI pose nor the MPI noise: cached on its own
    mri = _anatomy(
        "MRI",
        params.mri_spacing_mm,
        params.mri_direction_deg,
        params.mri_rotation_deg,
        params.mri_translation_mm,
        params.seed,
        params.extra_hot_spots,
    )
    ct = None
    if params.include_ct:
        ct = _anatomy(
            "CT",
            params.ct_spacing_mm,
            (0.0, 0.0, 0.0),
            params.ct_rotation_deg,
            params.ct_translation_mm,
            params.seed + 1,
            params.extra_hot_spots,
        )

    # --- MPI ---------------------------------------------------------------------------
    hot_in_mold = [np.asarray(v["mold_mm"]) for v in VIALS] if params.include_vials else []
    cover = np.vstack([corners, *hot_in_mold]) if hot_in_mold else corners
    origin, direction, size = _grid_covering(
        _apply(pose_mpi, cover), params.mpi_spacing_mm, (0, 0, 0), 6.0
    )
    geom = image_from_array(
        np.zeros(size[::-1], dtype=np.float32),
        spacing_mm=params.mpi_spacing_mm,
        origin_mm=origin,
        direction=direction,
    )
    mpi_geom = Volume(image=geom, modality="MPI")
    signal = np.zeros(size[::-1], dtype=np.float64)
    sources = []
    for s in SOURCES:
        iron = s["cells"] * IRON_PER_CELL_PG * 1e-6
        p_mpi = _apply(pose_mpi, s["mold_mm"])[0]
        _add_source(signal, mpi_geom, p_mpi, iron, params)
        sources.append(
            {
                "name": s["name"],
                "kind": "cells",
                "cells": s["cells"],
                "iron_ug": iron,
                "mold_mm": list(s["mold_mm"]),
                "mpi_mm": p_mpi.tolist(),
                "mri_mm": _apply(pose_mri, s["mold_mm"])[0].tolist(),
            }
        )
    vials = []
    if params.include_vials:
        for v in VIALS:
            p_mpi = _apply(pose_mpi, v["mold_mm"])[0]
            _add_source(signal, mpi_geom, p_mpi, v["iron_ug"], params)
            vials.append({"name": v["name"], "iron_ug": v["iron_ug"], "mpi_mm": p_mpi.tolist()})
    extras = []
    for e in EXTRA_HOT_SPOTS[: params.extra_hot_spots]:
        p_mpi = _apply(pose_mpi, e["mold_mm"])[0]
        _add_source(signal, mpi_geom, p_mpi, e["iron_ug"], params)
        extras.append(
            {
                "name": e["name"],
                "iron_ug": e["iron_ug"],
                "mpi_mm": p_mpi.tolist(),
                "mri_mm": _apply(pose_mri, e["mold_mm"])[0].tolist(),
            }
        )
    fid_truth = []
    for name, q, dia in fids:
        entry = {
            "name": name,
            "mold_mm": q.tolist(),
            "diameter_mm": dia,
            "mri_mm": _apply(pose_mri, q)[0].tolist(),
            "mpi_mm": _apply(pose_mpi, q)[0].tolist(),
            "in_mpi": name not in params.missing_fiducials,
        }
        if ct is not None:
            entry["ct_mm"] = _apply(pose_ct, q)[0].tolist()
        fid_truth.append(entry)
        if name in params.missing_fiducials:
            continue
        # the Langevin kernel is wide: 1 mm sub-sources keep generation fast
        pts = _sphere_points(dia, 0.5 if params.psf == "gaussian" else 1.0)
        for sub in pts:
            _add_source(
                signal,
                mpi_geom,
                _apply(pose_mpi, q + sub)[0],
                params.fiducial_iron_ug / len(pts),
                params,
            )
    signal = _relaxation_blur(signal, params, params.mpi_spacing_mm)
    noise_rng = np.random.default_rng(
        params.seed if params.noise_seed is None else params.noise_seed
    )
    signal += noise_rng.normal(0.0, params.noise_sd_au, size=signal.shape)
    mpi_img = image_from_array(
        signal.astype(np.float32),
        spacing_mm=params.mpi_spacing_mm,
        origin_mm=origin,
        direction=direction,
    )
    mpi = Volume(
        image=mpi_img,
        modality="MPI",
        units="a.u.",
        name="demo MPI (synthetic)",
        acquisition=Acquisition(
            tracer="VivoTrax (synthetic)",
            mode="3D",
            gradient_T_per_m=float(params.gradient_T_per_m),
            drive_amplitude_mT=20.0,
            drive_frequency_kHz=45.0,
            averages=1,
            scanner="synthetic",
        ),
        metadata={
            "synthetic": True,
            "psf": params.psf,
            "particle_core_nm": float(params.particle_core_nm),
        },
    )

    m, t = _compose_fixed_to_moving(pose_mri, pose_mpi)
    truth: dict[str, Any] = {
        "synthetic": True,
        "description": "mpi-viewer demo study: synthetic mouse in mouse_mold_v1; not a real scan.",
        "params": _params_json(params),
        "template": TEMPLATE_NAME,
        "transform_fixed_to_moving": {
            "fixed": "mri",
            "moving": "mpi",
            "matrix": m.tolist(),
            "translation": t.tolist(),
        },
        "poses_mold_to_scanner": {
            k: {"matrix": p[0].tolist(), "translation": p[1].tolist()}
            for k, p in (("mri", pose_mri), ("mpi", pose_mpi), ("ct", pose_ct))
        },
        "fiducials": fid_truth,
        "sources": sources,
        "vials": vials,
        "extra_hot_spots": extras,
        "iron_per_cell_pg": IRON_PER_CELL_PG,
        "iron_per_cell_sd_pg": IRON_PER_CELL_SD_PG,
        "psf": params.psf,
        "psf_fwhm_mm": [float(v) for v in psf_fwhm_mm(params)],
        "psf_halfmax_fraction": psf_halfmax_fraction(params),
        "psf_description": (
            "x-space Langevin PSF L'(k|G r|) of a Maxwell-pair field-free point "
            f"(G = {params.gradient_T_per_m:g} T/m along z, half across; "
            f"{params.particle_core_nm:g} nm magnetite cores; drive along "
            f"{params.drive_axis}; tails tapered {params.psf_tail_mm[0]:g}-"
            f"{params.psf_tail_mm[1]:g} mm; relaxation blur {params.relaxation_mm:g} mm)"
            if params.psf == "langevin"
            else "anisotropic Gaussian"
        ),
        "sensitivity_au_mm3_per_ug": sensitivity(params),
        "noise_sd_au": params.noise_sd_au,
    }
    if ct is not None:
        mc, tc = _compose_fixed_to_moving(pose_ct, pose_mpi)
        truth["transform_ct_to_mpi"] = {
            "fixed": "ct",
            "moving": "mpi",
            "matrix": mc.tolist(),
            "translation": tc.tolist(),
        }
    return DemoStudy(mri=mri, mpi=mpi, ct=ct, truth=truth, params=params)


@functools.lru_cache(maxsize=6)
def _anatomy(
    modality, spacing, direction_deg, rotation_deg, translation_mm, seed, extra_hot_spots
) -> Volume:
    template = load_template(TEMPLATE_NAME)
    fids = [
        (f["name"], np.asarray(f["position_mm"], dtype=float), float(f["diameter_mm"]))
        for f in template["fiducials"]
    ]
    ext_min = np.asarray(template["extent_mm"]["min"])
    ext_max = np.asarray(template["extent_mm"]["max"])
    corners = (
        np.array(np.meshgrid(*zip(ext_min, ext_max, strict=True), indexing="ij")).reshape(3, -1).T
    )
    pose = _pose(rotation_deg, translation_mm)
    rng = np.random.default_rng(seed)
    origin, direction, size = _grid_covering(_apply(pose, corners), spacing, direction_deg, 2.0)
    sp = np.asarray(spacing, dtype=float)
    m, c = _index_to_mold(origin, direction, sp, pose)
    is_ct = modality == "CT"
    img = np.full(size[::-1], -1000.0 if is_ct else 0.0, dtype=np.float32)
    if is_ct:
        _mold_box(img, m, c, sp, ext_min, ext_max, 120.0)
    for _name, centre, semi, t1, hu in _ANATOMY:
        _paint(img, (centre, semi), hu if is_ct else t1, m, c, sp)
    for _name, q, dia in fids:
        _paint(img, (q, (dia / 2,) * 3), 1800.0 if is_ct else 1100.0, m, c, sp)
    if not is_ct:
        # labelled cells leave dark voids in T1/T2* MRI
        for s in SOURCES:
            radius = 0.6 + 0.25 * math.log10(max(s["cells"], 1e4) / 1e4)
            _darken(img, s["mold_mm"], radius, m, c)
        for e in EXTRA_HOT_SPOTS[:extra_hot_spots]:
            _darken(img, e["mold_mm"], 0.8, m, c)
        n1 = rng.normal(0.0, 12.0, img.shape).astype(np.float32)
        n2 = rng.normal(0.0, 12.0, img.shape).astype(np.float32)
        img = np.sqrt((img + n1) ** 2 + n2**2)
        units = "a.u."
    else:
        img += rng.normal(0.0, 15.0, img.shape).astype(np.float32)
        units = "HU"
    image = image_from_array(
        img.astype(np.float32), spacing_mm=sp, origin_mm=origin, direction=direction
    )
    return Volume(
        image=image,
        modality=modality,
        units=units,
        name=f"demo {modality} (synthetic)",
        metadata={"synthetic": True},
    )


def _darken(img, centre_mold, radius_mm, m, c):
    """Multiply by 1 - 0.8·exp(-r²/2ρ²) around a mold point (iron susceptibility void)."""
    idx = np.linalg.solve(m, np.asarray(centre_mold) - c)  # xyz
    half = np.ceil(4 * radius_mm / np.min(np.linalg.norm(m, axis=0))).astype(int)
    lo = np.maximum(np.floor(idx).astype(int) - half, 0)
    hi = np.minimum(np.floor(idx).astype(int) + half + 2, np.asarray(img.shape[::-1]))
    if np.any(hi <= lo):
        return
    zz, yy, xx = np.meshgrid(
        *(np.arange(lo[a], hi[a], dtype=float) for a in (2, 1, 0)), indexing="ij"
    )
    r2 = np.zeros(zz.shape)
    for a in range(3):
        q = m[a, 0] * xx + m[a, 1] * yy + m[a, 2] * zz + c[a] - centre_mold[a]
        r2 += q**2
    img[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]] *= (
        1 - 0.8 * np.exp(-r2 / (2 * radius_mm**2))
    ).astype(np.float32)


def _params_json(params: DemoParams) -> dict[str, Any]:
    d = asdict(params)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def truth_transform(study: DemoStudy, fixed: str = "mri"):
    """The true fixed → moving (MPI) transform as a SimpleITK AffineTransform."""
    import SimpleITK as sitk

    key = "transform_fixed_to_moving" if fixed == "mri" else f"transform_{fixed}_to_mpi"
    t = study.truth[key]
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(np.asarray(t["matrix"], dtype=float).ravel().tolist())
    tx.SetTranslation([float(v) for v in t["translation"]])
    return tx


def write_demo_study(
    folder: str | Path, params: DemoParams | None = None, **overrides
) -> dict[str, Path]:
    """Write the demo study to ``folder`` and return the paths it wrote.

    Files: ``mri.nii.gz``, ``ct.nii.gz``, ``mpi.nii.gz`` with ``mpi.json`` (modality and
    acquisition sidecar), ``phantoms.csv`` (vials, MPI frame: name,x,y,z,iron_ug),
    ``sources.csv`` (the labelled-cell sources' true centres, MPI frame: name,x,y,z:
    where to seed), ``fiducials_mri.csv`` and ``fiducials_mpi.csv`` (true fiducial centres:
    name,x,y,z), ``truth_mri_to_mpi.tfm`` and ``truth.json``.
    """
    import time

    study = make_demo_study(params, **overrides)
    started_ns = time.time_ns()
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the folder ({exc.strerror or exc})") from None
    try:
        return _write_demo_files(study, out)
    except InputError:  # a full or read-only disk: take back what this run wrote
        for name in DEMO_FILES:
            if (out / name).exists() and (out / name).stat().st_mtime_ns >= started_ns:
                (out / name).unlink()
        if created:
            try:
                out.rmdir()
            except OSError:
                pass
        raise


def _write_demo_files(study, out: Path) -> dict[str, Path]:
    from mpi_viewer.io.atomic import atomic_write_text
    from mpi_viewer.io.images import write_volume

    paths = {
        "mri": write_volume(study.mri, out / "mri.nii.gz"),
        "mpi": write_volume(study.mpi, out / "mpi.nii.gz"),
    }
    if study.ct is not None:
        paths["ct"] = write_volume(study.ct, out / "ct.nii.gz")
    rows = ["name,x,y,z,iron_ug"] + [
        f"{v['name']},{_fmt(v['mpi_mm'])},{v['iron_ug']}" for v in study.truth["vials"]
    ]
    paths["phantoms"] = out / "phantoms.csv"
    atomic_write_text(paths["phantoms"], "\n".join(rows) + "\n")
    paths["sources"] = out / "sources.csv"  # where to seed: the labelled-cell sources, MPI mm
    atomic_write_text(
        paths["sources"],
        "\n".join(
            ["name,x,y,z"]
            + [f"{src['name']},{_fmt(src['mpi_mm'])}" for src in study.truth["sources"]]
        )
        + "\n",
    )
    for frame in ("mri", "mpi"):
        rows = ["name,x,y,z"] + [
            f"{f['name']},{_fmt(f[f'{frame}_mm'])}"
            for f in study.truth["fiducials"]
            if frame != "mpi" or f["in_mpi"]
        ]
        paths[f"fiducials_{frame}"] = out / f"fiducials_{frame}.csv"
        atomic_write_text(paths[f"fiducials_{frame}"], "\n".join(rows) + "\n")
    paths["truth_transform"] = out / "truth_mri_to_mpi.tfm"
    from mpi_viewer.io.transform_files import write_transform

    write_transform(paths["truth_transform"], truth_transform(study))
    paths["truth"] = out / "truth.json"
    truth = copy.deepcopy(study.truth)
    truth["files"] = {k: p.name for k, p in paths.items() if k != "truth"}
    atomic_write_text(paths["truth"], json.dumps(truth, indent=2))
    return paths


#: The files :func:`write_demo_study` writes (``demo --write`` refuses to replace them).
DEMO_FILES = (
    "mri.nii.gz",
    "mri.json",
    "mpi.nii.gz",
    "mpi.json",
    "ct.nii.gz",
    "ct.json",
    "phantoms.csv",
    "sources.csv",
    "fiducials_mri.csv",
    "fiducials_mpi.csv",
    "truth_mri_to_mpi.tfm",
    "truth.json",
)


def _fmt(xyz) -> str:
    return ",".join(f"{v:.4f}" for v in xyz)
