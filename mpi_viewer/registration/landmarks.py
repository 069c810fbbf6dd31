"""Coregistration of an MPI image (moving) to an MRI or CT (fixed).

Transforms follow ITK: they map points of the **fixed** image to the **moving**
image, ``moving ≈ matrix @ fixed + translation`` (mm, ITK (x, y, z) order), so
``sitk.Resample(moving.image, fixed.image, T)`` puts the MPI on the MRI grid. They
are written as ITK ``.tfm`` files, which 3D Slicer and ITK read.

Landmark fits are closed form: rigid and similarity by the SVD solution of Umeyama
(1991, doi:10.1109/34.88573), which never returns a reflection; affine by linear
least squares. Per-fiducial residuals (FRE), their RMS and the expected target
registration error (TRE) of Fitzpatrick, West & Maurer (1998, IEEE TMI
17(5):694-702, doi:10.1109/42.736021) come with every fit.

Intensity refinement (:func:`refine_intensity`) uses SimpleITK's
ImageRegistrationMethod with Mattes mutual information (Mattes et al. 2003, IEEE
TMI 22(1):120-128, doi:10.1109/TMI.2003.809072), multi-resolution.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.transform import Transform, matrix_to_sitk
from mpi_viewer.io.points import PointSet
from mpi_viewer.registration import _closed_form as _landmarks

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk


MODELS = _landmarks.MODELS
_AXES = ("x", "y", "z")


# -- parameters ---------------------------------------------------------------------------
@dataclass
class RegistrationParams:
    """Landmark-registration settings shared by the dock, the command line and sessions.

    Attributes
    ----------
    model : str
        ``"rigid"``, ``"similarity"`` or ``"affine"``.
    fle_mm : float
        Fiducial localisation error (mm, RMS length of the error vector, both images
        combined: ``sqrt(FLE_fixed² + FLE_moving²)``) used for the expected TRE.
    fre_tolerance_mm : float
        RMS FRE (mm) above which the fit carries a warning.
    exclude : list of str
        Fiducial names left out of the fit (their residuals are still reported).
    """

    model: str = "rigid"
    fle_mm: float = 0.15
    fre_tolerance_mm: float = 1.0
    exclude: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise InputError(f"model {self.model!r}: expected one of {', '.join(MODELS)}")
        for key in ("fle_mm", "fre_tolerance_mm"):
            v = float(getattr(self, key))
            if not np.isfinite(v) or v < 0:
                raise InputError(f"{key} = {v}: must be a finite number ≥ 0 (mm)")
            setattr(self, key, v)
        self.exclude = [str(n) for n in self.exclude]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RegistrationParams:
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# -- result -------------------------------------------------------------------------------
@dataclass
class LandmarkFit:
    """A landmark registration: the fitted map and how well it fits.

    Attributes
    ----------
    model : str
        ``"rigid"``, ``"similarity"`` or ``"affine"``.
    matrix : numpy.ndarray, shape (d, d)
        Linear part of the fixed → moving map (ITK order).
    translation : numpy.ndarray, shape (d,)
        Translation (mm): ``moving ≈ matrix @ fixed + translation``.
    names : list of str
        Fiducial names, one per pair.
    fixed_xyz, moving_xyz : numpy.ndarray, shape (n, d)
        The paired fiducials (mm, each in its own image's physical frame).
    used : numpy.ndarray of bool, shape (n,)
        Which pairs the fit used (False for excluded ones).
    residuals_mm : numpy.ndarray, shape (n,)
        ``|T(fixed_i) − moving_i|`` (mm, moving frame), for every pair, also excluded ones.
    rms_fre_mm : float
        RMS of the residuals over the used pairs (fiducial registration error).
    fle_mm : float
        Fiducial localisation error (mm) assumed for :meth:`expected_tre_mm`.
    warnings : list of str
        Things the user should look at (FRE above tolerance, a nearly degenerate
        configuration, an outlying fiducial…).
    """

    model: str
    matrix: np.ndarray
    translation: np.ndarray
    names: list[str]
    fixed_xyz: np.ndarray
    moving_xyz: np.ndarray
    used: np.ndarray
    residuals_mm: np.ndarray
    rms_fre_mm: float
    fle_mm: float = 0.15
    fre_tolerance_mm: float = 1.0
    warnings: list[str] = field(default_factory=list)

    @property
    def ndim(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_used(self) -> int:
        return int(np.count_nonzero(self.used))

    @property
    def scale(self) -> float:
        """Isotropic scale (moving mm per fixed mm): |det(matrix)|^(1/d)."""
        return float(abs(np.linalg.det(self.matrix)) ** (1.0 / self.ndim))

    def transform_points(self, xyz) -> np.ndarray:
        """Map fixed-frame points (mm, (n, d) or (d,)) to the moving frame."""
        p = np.asarray(xyz, dtype=float)
        out = np.atleast_2d(p) @ self.matrix.T + self.translation
        return out if p.ndim == 2 else out[0]

    def inverse_points(self, xyz) -> np.ndarray:
        """Map moving-frame points (mm) to the fixed frame."""
        p = np.asarray(xyz, dtype=float)
        out = np.linalg.solve(self.matrix, (np.atleast_2d(p) - self.translation).T).T
        return out if p.ndim == 2 else out[0]

    @property
    def tre_formula(self) -> str:
        """Which formula :meth:`expected_tre_mm` uses for this model (shown with every TRE)."""
        if self.model == "affine":
            return "affine least-squares prediction error"
        if self.model == "similarity":
            return (
                "rigid-body formula of Fitzpatrick, West & Maurer 1998 (scale error not included)"
            )
        return "rigid-body formula of Fitzpatrick, West & Maurer 1998"

    def expected_tre_mm(self, target_xyz, fle_mm: float | None = None) -> np.ndarray | float:
        """Expected RMS target registration error (mm) at fixed-frame target point(s).

        Rigid and similarity: Fitzpatrick, West & Maurer (1998), doi:10.1109/42.736021,
        ``TRE²(r) ≈ FLE²/N · (1 + 1/3 Σ_k d_k²/f_k²)`` with ``d_k`` the distance of the
        target from the k-th principal axis of the N used fixed fiducials and ``f_k``
        the RMS distance of those fiducials from that axis (1/2 instead of 1/3 in 2-D).
        Affine: the exact least-squares prediction error ``TRE²(r) = FLE² hᵀ(XᵀX)⁻¹h``,
        ``h = [r, 1]``, ``X`` the used fixed fiducials in homogeneous coordinates.

        Parameters
        ----------
        target_xyz : array_like, shape (d,) or (m, d)
            Target position(s) in the fixed image (mm).
        fle_mm : float, optional
            RMS fiducial localisation error (mm, vector length, both images combined);
            the fit's ``fle_mm`` by default.

        Returns
        -------
        float or numpy.ndarray
            Expected RMS TRE in mm (a float for one target).
        """
        fle = self.fle_mm if fle_mm is None else float(fle_mm)
        t = np.asarray(target_xyz, dtype=float)
        fixed = self.fixed_xyz[self.used]
        if self.model == "affine":
            out = _landmarks.tre_affine(fixed, np.atleast_2d(t), fle)
        else:
            out = _landmarks.tre_rigid(fixed, np.atleast_2d(t), fle)
        return float(out[0]) if t.ndim == 1 else out

    @property
    def transform(self) -> Transform:
        """The fitted fixed → moving :class:`~mpi_viewer.geometry.transform.Transform`."""
        return Transform(self.matrix, self.translation, self.model)

    def to_sitk(self) -> sitk.Transform:
        """The map as a SimpleITK transform (Euler / Similarity for those models, else Affine)."""
        return matrix_to_sitk(self.matrix, self.translation, model=self.model)

    def report_lines(self) -> list[str]:
        """A plain-text table of the residuals with units, the RMS FRE and the warnings."""
        width = max([len("fiducial"), *(len(n) for n in self.names)])
        lines = [
            f"model: {self.model}, {self.n_used} of {len(self.names)} fiducial pairs used",
            f"{'fiducial':<{width}}  {'residual_mm':>11}  used",
        ]
        for n, r, u in zip(self.names, self.residuals_mm, self.used, strict=True):
            lines.append(f"{n:<{width}}  {r:>11.3f}  {'yes' if u else 'no (excluded)'}")
        lines.append(f"RMS FRE: {self.rms_fre_mm:.3f} mm")
        centre = self.fixed_xyz[self.used].mean(axis=0)
        lines.append(
            f"expected TRE at the fiducials' centroid: {self.expected_tre_mm(centre):.3f} mm "
            f"(FLE {self.fle_mm:.3f} mm; {self.tre_formula})"
        )
        lines += [f"warning: {w}" for w in self.warnings]
        return lines

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (round-trips through :meth:`from_dict`)."""
        return {
            "model": self.model,
            "matrix": self.matrix.tolist(),
            "translation": self.translation.tolist(),
            "names": list(self.names),
            "fixed_xyz": self.fixed_xyz.tolist(),
            "moving_xyz": self.moving_xyz.tolist(),
            "used": [bool(u) for u in self.used],
            "residuals_mm": self.residuals_mm.tolist(),
            "rms_fre_mm": float(self.rms_fre_mm),
            "fle_mm": float(self.fle_mm),
            "fre_tolerance_mm": float(self.fre_tolerance_mm),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LandmarkFit:
        return cls(
            model=str(d["model"]),
            matrix=np.asarray(d["matrix"], dtype=float),
            translation=np.asarray(d["translation"], dtype=float),
            names=[str(n) for n in d["names"]],
            fixed_xyz=np.asarray(d["fixed_xyz"], dtype=float),
            moving_xyz=np.asarray(d["moving_xyz"], dtype=float),
            used=np.asarray(d["used"], dtype=bool),
            residuals_mm=np.asarray(d["residuals_mm"], dtype=float),
            rms_fre_mm=float(d["rms_fre_mm"]),
            fle_mm=float(d.get("fle_mm", 0.15)),
            fre_tolerance_mm=float(d.get("fre_tolerance_mm", 1.0)),
            warnings=[str(w) for w in d.get("warnings", [])],
        )


# -- fitting ----------------------------------------------------------------------------------
def pair_points(
    fixed: PointSet, moving: PointSet, *, strict: bool = False, exclude: Sequence[str] = ()
) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Pair two named point sets by name.

    Parameters
    ----------
    fixed, moving : PointSet
        Fiducials in the fixed and in the moving image (mm, each in its own frame).
    strict : bool
        Raise :class:`InputError` for a point without a partner (the command line);
        otherwise report it in the warnings (the dock).
    exclude : sequence of str
        Names that need no partner (points the user left out on purpose).

    Returns
    -------
    names : list of str
        Names present in both sets, in the fixed set's order.
    fixed_xyz, moving_xyz : numpy.ndarray, shape (n, d)
        Paired positions (mm).
    warnings : list of str
        Unpaired names.

    Raises
    ------
    InputError
        Duplicate or empty names, NaN coordinates, different dimensions, or
        (``strict``) an unpaired point.
    """
    fixed.validate("fixed points")
    moving.validate("moving points")
    if fixed.ndim != moving.ndim:
        raise InputError(f"fixed points are {fixed.ndim}-D but moving points are {moving.ndim}-D")
    mset = set(moving.names)
    fset = set(fixed.names)
    skip = set(exclude)
    names = [n for n in fixed.names if n in mset]
    warnings = []
    only_f = [n for n in fixed.names if n not in mset and n not in skip]
    only_m = [n for n in moving.names if n not in fset and n not in skip]
    if only_f:
        msg = f"fixed point(s) {', '.join(only_f)} have no moving point of the same name"
        if strict:
            raise InputError(msg + " (exclude them or add the missing points)")
        warnings.append(msg)
    if only_m:
        msg = f"moving point(s) {', '.join(only_m)} have no fixed point of the same name"
        if strict:
            raise InputError(msg + " (exclude them or add the missing points)")
        warnings.append(msg)
    d = fixed.ndim
    fx = np.array([fixed.get(n) for n in names]).reshape(-1, d)
    mv = np.array([moving.get(n) for n in names]).reshape(-1, d)
    return names, fx, mv, warnings


def fit_landmarks(
    fixed_xyz,
    moving_xyz,
    *,
    model: str = "rigid",
    names: Sequence[str] | None = None,
    exclude: Sequence[str] | Sequence[int] = (),
    fle_mm: float | None = None,
    fre_tolerance_mm: float | None = None,
) -> LandmarkFit:
    """Fit the fixed → moving map from paired landmarks (closed form).

    Parameters
    ----------
    fixed_xyz, moving_xyz : array_like, shape (n, d), d = 2 or 3
        Paired fiducial positions (mm, ITK order), row i of one paired with row i of
        the other: fixed in the fixed image's frame, moving in the moving image's.
    model : {"rigid", "similarity", "affine"}
        Rigid: rotation + translation, least squares by SVD (Umeyama 1991,
        doi:10.1109/34.88573), never a reflection, needs 3 non-collinear pairs (2
        distinct pairs in 2-D). Similarity: rigid + one isotropic scale, same needs.
        Affine: linear least squares, needs 4 non-coplanar pairs (3 non-collinear in 2-D).
    names : sequence of str, optional
        One name per pair (``"1"``, ``"2"``… by default).
    exclude : sequence of str or int
        Pairs (by name or row index) left out of the fit; their residuals are
        still computed.
    fle_mm : float, optional
        Fiducial localisation error (mm) for the expected TRE (default 0.15 mm).
    fre_tolerance_mm : float, optional
        RMS FRE (mm) above which a warning is added (default 1 mm).

    Returns
    -------
    LandmarkFit

    Raises
    ------
    InputError
        Mismatched shapes, NaN or infinite coordinates, fewer used pairs than the
        model needs, every pair excluded, collinear (rigid/similarity) or coplanar
        (affine) fixed points, or moving points that collapse the affine map.
    """
    defaults = RegistrationParams()
    fle = defaults.fle_mm if fle_mm is None else float(fle_mm)
    tol = defaults.fre_tolerance_mm if fre_tolerance_mm is None else float(fre_tolerance_mm)
    if model not in MODELS:
        raise InputError(f"model {model!r}: expected one of {', '.join(MODELS)}")
    fx = np.asarray(fixed_xyz, dtype=float)
    mv = np.asarray(moving_xyz, dtype=float)
    if fx.ndim != 2 or fx.shape[1] not in (2, 3):
        raise InputError(f"fixed points: expected an (n, 3) or (n, 2) array, got shape {fx.shape}")
    if mv.shape != fx.shape:
        raise InputError(
            f"{fx.shape[0]} fixed points but {mv.shape[0] if mv.ndim == 2 else mv.shape} moving points; "
            "they must pair one to one"
        )
    n, d = fx.shape
    names = [str(i + 1) for i in range(n)] if names is None else [str(v) for v in names]
    if len(names) != n:
        raise InputError(f"{len(names)} names for {n} point pairs")
    if len(set(names)) != n:
        dup = next(v for v in names if names.count(v) > 1)
        raise InputError(f"duplicate fiducial name {dup!r}")
    for arr, what in ((fx, "fixed"), (mv, "moving")):
        bad = ~np.all(np.isfinite(arr), axis=1)
        if bad.any():
            raise InputError(
                f"{what} point {names[int(np.flatnonzero(bad)[0])]!r} has a NaN or infinite coordinate"
            )
    used = np.ones(n, dtype=bool)
    for e in exclude:
        if isinstance(e, (int, np.integer)) and not isinstance(e, bool):
            if not 0 <= int(e) < n:
                raise InputError(f"exclude: row {e} is out of range (0..{n - 1})")
            used[int(e)] = False
        elif str(e) in names:
            used[names.index(str(e))] = False
        else:
            raise InputError(f"exclude: no fiducial named {e!r}")
    need = _landmarks.min_pairs(model, d)
    nu = int(used.sum())
    if nu == 0:
        raise InputError("every fiducial pair is excluded; nothing to fit")
    if nu < need:
        shape = "non-coplanar" if (model == "affine" and d == 3) else "non-collinear"
        raise InputError(
            f"{nu} fiducial pair(s) used; the {model} model needs at least {need} {shape} pairs"
        )
    warnings = _landmarks.check_configuration(fx[used], model, "fixed points")
    if model == "affine":
        warnings += _landmarks.check_configuration(mv[used], model, "moving points")
    matrix, translation = _landmarks.fit(fx[used], mv[used], model)
    if model != "rigid" and abs(np.linalg.det(matrix)) < 1e-9 * max(1.0, np.abs(matrix).max() ** d):
        raise InputError(
            f"the {model} fit collapses space (singular matrix); check the moving points"
        )
    if model == "affine" and np.linalg.det(matrix) < 0:
        warnings.append(
            "the affine fit includes a reflection (det < 0): check that the points are paired correctly"
        )
    pred = fx @ matrix.T + translation
    residuals = np.linalg.norm(pred - mv, axis=1)
    rms = float(np.sqrt(np.mean(residuals[used] ** 2)))
    if rms > tol:
        warnings.append(f"RMS FRE {rms:.3f} mm is above the tolerance {tol:.3f} mm")
    if (
        nu == _landmarks.min_pairs("affine", d)
        and model == "affine"
        or (nu == 2 and d == 2 and model != "affine")
    ):
        warnings.append(
            f"only {nu} pairs: the {model} fit passes through every fiducial, so the FRE says nothing "
            "about the accuracy; add fiducials"
        )
    elif nu > need and rms > 0:
        # a fiducial whose residual is 3× the RMS of the other used ones (and above 2 FLE)
        ru = residuals[used]
        total = float(np.sum(ru**2))
        big = []
        for nm, r, u in zip(names, residuals, used, strict=True):
            if u:
                rms_others = np.sqrt(max(total - r**2, 0.0) / (nu - 1))
                if r > 3.0 * rms_others and r > 2.0 * fle:
                    big.append(f"{nm} ({r:.2f} mm)")
        if big:
            warnings.append(
                f"fiducial(s) {', '.join(big)} fit much worse than the others: check or exclude them"
            )
    if model == "rigid":
        sf = np.sqrt(np.mean(np.sum((fx[used] - fx[used].mean(0)) ** 2, axis=1)))
        sm = np.sqrt(np.mean(np.sum((mv[used] - mv[used].mean(0)) ** 2, axis=1)))
        if sf > 0 and abs(sm / sf - 1.0) > 0.05:
            warnings.append(
                f"the moving points spread {sm / sf:.3f}× as far as the fixed points: "
                "check the image spacings or use the similarity model"
            )
    return LandmarkFit(
        model=model,
        matrix=matrix,
        translation=translation,
        names=names,
        fixed_xyz=fx.copy(),
        moving_xyz=mv.copy(),
        used=used,
        residuals_mm=residuals,
        rms_fre_mm=rms,
        fle_mm=fle,
        fre_tolerance_mm=tol,
        warnings=warnings,
    )


def fit_pointsets(
    fixed: PointSet,
    moving: PointSet,
    params: RegistrationParams | None = None,
    *,
    strict: bool = False,
) -> LandmarkFit:
    """Pair two named point sets by name and fit them with ``params`` (the dock's one call).

    Unpaired names become warnings of the fit (``strict=False``) or an
    :class:`InputError` (``strict=True``); names in ``params.exclude`` need no partner.
    Excluded names that are paired are left out of the fit but keep their residual.
    """
    params = params or RegistrationParams()
    names, fx, mv, pair_warnings = pair_points(fixed, moving, strict=strict, exclude=params.exclude)
    fit = fit_landmarks(
        fx,
        mv,
        model=params.model,
        names=names,
        exclude=[n for n in params.exclude if n in names],
        fle_mm=params.fle_mm,
        fre_tolerance_mm=params.fre_tolerance_mm,
    )
    fit.warnings = pair_warnings + fit.warnings
    return fit
