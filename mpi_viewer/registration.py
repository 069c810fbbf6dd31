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
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _landmarks
from .coords import affine_xyz_to_zyx
from .errors import InputError
from .points import PointSet

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from .volume import Volume

MODELS = _landmarks.MODELS
_AXES = ("x", "y", "z")

__all__ = [
    "MODELS",
    "LandmarkFit",
    "RegistrationParams",
    "fit_landmarks",
    "pair_points",
    "fit_pointsets",
    "napari_affine_for_moving",
    "write_transform",
    "read_transform",
    "transform_to_matrix",
    "matrix_to_sitk",
    "as_sitk_transform",
    "resample_to_fixed",
    "project",
    "project_points",
    "refine_intensity",
]


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

    def to_sitk(self) -> sitk.Transform:
        """The map as a SimpleITK transform (Euler / Similarity for those models, else Affine)."""
        return matrix_to_sitk(self.matrix, self.translation, model=self.model)

    def report_lines(self) -> list[str]:
        """A plain-text table of the residuals with units, the RMS FRE and the warnings."""
        width = max([len("fiducial"), *(len(n) for n in self.names)])
        lines = [f"model: {self.model}, {self.n_used} of {len(self.names)} fiducial pairs used",
                 f"{'fiducial':<{width}}  {'residual_mm':>11}  used"]
        for n, r, u in zip(self.names, self.residuals_mm, self.used, strict=True):
            lines.append(f"{n:<{width}}  {r:>11.3f}  {'yes' if u else 'no (excluded)'}")
        lines.append(f"RMS FRE: {self.rms_fre_mm:.3f} mm")
        centre = self.fixed_xyz[self.used].mean(axis=0)
        lines.append(f"expected TRE at the fiducials' centroid: {self.expected_tre_mm(centre):.3f} mm "
                     f"(FLE {self.fle_mm:.3f} mm)")
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
def pair_points(fixed: PointSet, moving: PointSet, *, strict: bool = False,
                exclude: Sequence[str] = ()) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
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
        raise InputError(f"{fx.shape[0]} fixed points but {mv.shape[0] if mv.ndim == 2 else mv.shape} moving points; "
                         "they must pair one to one")
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
            raise InputError(f"{what} point {names[int(np.flatnonzero(bad)[0])]!r} has a NaN or infinite coordinate")
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
        raise InputError(f"{nu} fiducial pair(s) used; the {model} model needs at least {need} {shape} pairs")
    warnings = _landmarks.check_configuration(fx[used], model, "fixed points")
    if model == "affine":
        warnings += _landmarks.check_configuration(mv[used], model, "moving points")
    matrix, translation = _landmarks.fit(fx[used], mv[used], model)
    if model != "rigid" and abs(np.linalg.det(matrix)) < 1e-9 * max(1.0, np.abs(matrix).max() ** d):
        raise InputError(f"the {model} fit collapses space (singular matrix); check the moving points")
    if model == "affine" and np.linalg.det(matrix) < 0:
        warnings.append("the affine fit includes a reflection (det < 0): check that the points are paired correctly")
    pred = fx @ matrix.T + translation
    residuals = np.linalg.norm(pred - mv, axis=1)
    rms = float(np.sqrt(np.mean(residuals[used] ** 2)))
    if rms > tol:
        warnings.append(f"RMS FRE {rms:.3f} mm is above the tolerance {tol:.3f} mm")
    if nu == _landmarks.min_pairs("affine", d) and model == "affine" or (nu == 2 and d == 2 and model != "affine"):
        warnings.append(f"only {nu} pairs: the {model} fit passes through every fiducial, so the FRE says nothing "
                        "about the accuracy; add fiducials")
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
            warnings.append(f"fiducial(s) {', '.join(big)} fit much worse than the others: check or exclude them")
    if model == "rigid":
        sf = np.sqrt(np.mean(np.sum((fx[used] - fx[used].mean(0)) ** 2, axis=1)))
        sm = np.sqrt(np.mean(np.sum((mv[used] - mv[used].mean(0)) ** 2, axis=1)))
        if sf > 0 and abs(sm / sf - 1.0) > 0.05:
            warnings.append(f"the moving points spread {sm / sf:.3f}× as far as the fixed points: "
                            "check the image spacings or use the similarity model")
    return LandmarkFit(model=model, matrix=matrix, translation=translation, names=names,
                       fixed_xyz=fx.copy(), moving_xyz=mv.copy(), used=used, residuals_mm=residuals,
                       rms_fre_mm=rms, fle_mm=fle, fre_tolerance_mm=tol, warnings=warnings)


def fit_pointsets(fixed: PointSet, moving: PointSet, params: RegistrationParams | None = None, *,
                  strict: bool = False) -> LandmarkFit:
    """Pair two named point sets by name and fit them with ``params`` (the dock's one call).

    Unpaired names become warnings of the fit (``strict=False``) or an
    :class:`InputError` (``strict=True``); names in ``params.exclude`` need no partner.
    Excluded names that are paired are left out of the fit but keep their residual.
    """
    params = params or RegistrationParams()
    names, fx, mv, pair_warnings = pair_points(fixed, moving, strict=strict, exclude=params.exclude)
    fit = fit_landmarks(fx, mv, model=params.model, names=names,
                        exclude=[n for n in params.exclude if n in names],
                        fle_mm=params.fle_mm, fre_tolerance_mm=params.fre_tolerance_mm)
    fit.warnings = pair_warnings + fit.warnings
    return fit


# -- SimpleITK transforms --------------------------------------------------------------------
def matrix_to_sitk(matrix, translation, *, model: str | None = None) -> sitk.Transform:
    """A SimpleITK transform for ``x ↦ matrix @ x + translation`` (centre 0).

    Rigid gives an Euler3D/Euler2D transform, similarity a Similarity3D/2D
    transform (when the matrix is a scaled rotation to 1e-6), anything else an
    AffineTransform.
    """
    import SimpleITK as sitk

    m = np.asarray(matrix, dtype=float)
    t = [float(v) for v in np.asarray(translation, dtype=float)]
    d = m.shape[0]
    s = abs(np.linalg.det(m)) ** (1.0 / d) if np.linalg.det(m) > 0 else 0.0
    is_rot = s > 0 and np.allclose((m / s) @ (m / s).T, np.eye(d), atol=1e-6)
    if model in ("rigid", "similarity") and is_rot:
        if model == "rigid" and abs(s - 1.0) < 1e-6:
            tx = sitk.Euler3DTransform() if d == 3 else sitk.Euler2DTransform()
            tx.SetMatrix((m / s).ravel().tolist(), 1e-6)
        else:
            tx = sitk.Similarity3DTransform() if d == 3 else sitk.Similarity2DTransform()
            if d == 3:
                tx.SetMatrix((m / s).ravel().tolist(), 1e-6)
                tx.SetScale(float(s))
            else:
                tx.SetAngle(float(np.arctan2(m[1, 0], m[0, 0])))
                tx.SetScale(float(s))
        tx.SetTranslation(t)
        return tx
    tx = sitk.AffineTransform(d)
    tx.SetMatrix(m.ravel().tolist())
    tx.SetTranslation(t)
    return tx


def transform_to_matrix(transform) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix, translation)`` of any linear transform: ``T(x) = matrix @ x + translation``.

    Accepts a SimpleITK transform (any linear kind, composites of linear ones
    included), a :class:`LandmarkFit`, or a ``(matrix, translation)`` pair.

    Raises
    ------
    InputError
        For a non-linear transform (displacement field, B-spline…).
    """
    if isinstance(transform, LandmarkFit):
        return transform.matrix.copy(), transform.translation.copy()
    if isinstance(transform, tuple) and len(transform) == 2:
        return np.asarray(transform[0], dtype=float).copy(), np.asarray(transform[1], dtype=float).copy()
    import SimpleITK as sitk

    if not isinstance(transform, sitk.Transform):
        raise InputError(f"not a transform: {type(transform).__name__}")
    if not transform.IsLinear():
        raise InputError(f"the transform is not linear ({transform.GetName()}); only linear transforms "
                         "can be used here")
    d = transform.GetDimension()
    t = np.asarray(transform.TransformPoint([0.0] * d), dtype=float)
    m = np.empty((d, d))
    for j in range(d):
        e = [0.0] * d
        e[j] = 1.0
        m[:, j] = np.asarray(transform.TransformPoint(e), dtype=float) - t
    return m, t


def as_sitk_transform(transform) -> sitk.Transform:
    """A SimpleITK transform from a :class:`LandmarkFit`, a SimpleITK transform or ``(matrix, translation)``."""
    import SimpleITK as sitk

    if isinstance(transform, LandmarkFit):
        return transform.to_sitk()
    if isinstance(transform, sitk.Transform):
        return transform
    if isinstance(transform, tuple) and len(transform) == 2:
        return matrix_to_sitk(*transform)
    raise InputError(f"not a transform: {type(transform).__name__}")


_as_sitk = as_sitk_transform  # older private name, used by mpi_viewer.report


def write_transform(path: str | os.PathLike, transform) -> Path:
    """Write a fixed → moving transform as an ITK transform file (atomic).

    Parameters
    ----------
    path : str or Path
        Target file, normally ``.tfm`` (3D Slicer and ITK read it); ``.txt`` and
        ``.h5``/``.hdf`` work too.
    transform : LandmarkFit or SimpleITK.Transform or (matrix, translation)
    """
    import SimpleITK as sitk

    p = Path(path)
    if not p.parent.is_dir():
        raise InputError(f"{p}: folder {p.parent} does not exist")
    tx = _as_sitk(transform)
    suffix = "".join(p.suffixes[-1:]) or ".tfm"
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=suffix, dir=p.parent)
    os.close(fd)
    try:
        sitk.WriteTransform(tx, tmp)
        os.replace(tmp, p)
    except RuntimeError as exc:
        raise InputError(f"{p}: cannot write the transform ({str(exc).strip().splitlines()[-1]})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def read_transform(path: str | os.PathLike) -> sitk.Transform:
    """Read an ITK transform file (fixed → moving); a one-element composite is unwrapped."""
    import SimpleITK as sitk

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        tx = sitk.ReadTransform(str(p))
    except RuntimeError:
        raise InputError(f"{p}: not a readable ITK transform file") from None
    if tx.GetName() == "CompositeTransform":
        comp = sitk.CompositeTransform(tx)
        if comp.GetNumberOfTransforms() == 1:
            tx = comp.GetNthTransform(0)
    try:
        tx = tx.Downcast()
    except AttributeError:  # pragma: no cover - older SimpleITK
        pass
    return tx


# -- napari and resampling --------------------------------------------------------------------
def napari_affine_for_moving(moving_volume: Volume, transform=None) -> np.ndarray:
    """The napari ``affine`` that draws the moving image in the fixed image's physical space.

    Give the moving layer ``scale`` = its spacing in (z, y, x), ``translate`` = 0 and
    this ``affine``: then a voxel is drawn at ``T⁻¹(p)``, where ``p`` is its physical
    position in the moving frame and ``T`` the fixed → moving transform. The fixed
    layer is drawn as usual (``Volume.layer_kwargs()``), so both overlay in the fixed
    frame without resampling.

    Parameters
    ----------
    moving_volume : Volume
        The moving (MPI) image, 2-D or 3-D.
    transform : LandmarkFit, SimpleITK.Transform, (matrix, translation) or None
        Linear fixed → moving transform of the same dimension; None for identity.

    Returns
    -------
    numpy.ndarray, shape (d+1, d+1)
        Homogeneous affine in napari (z, y, x) order.
    """
    d = moving_volume.ndim
    to_moving_phys = affine_xyz_to_zyx(moving_volume.direction, moving_volume.origin_mm)
    if transform is None:
        return to_moving_phys
    m, t = transform_to_matrix(transform)
    if m.shape != (d, d):
        raise InputError(f"a {m.shape[0]}-D transform cannot place a {d}-D image")
    try:
        minv = np.linalg.inv(m)
    except np.linalg.LinAlgError:
        raise InputError("the transform is singular and cannot be inverted") from None
    return affine_xyz_to_zyx(minv, -minv @ t) @ to_moving_phys


def resample_to_fixed(moving: Volume, fixed: Volume, transform, *, default_value: float = 0.0) -> Volume:
    """The moving image on the fixed image's grid (linear interpolation).

    For display and export only: quantification stays on the native MPI grid,
    since resampling changes sums.

    Parameters
    ----------
    moving, fixed : Volume
        Same dimension (2-D or 3-D).
    transform : LandmarkFit, SimpleITK.Transform or (matrix, translation)
        Fixed → moving.
    default_value : float
        Value outside the moving image.
    """
    import SimpleITK as sitk

    if moving.ndim != fixed.ndim:
        raise InputError(f"cannot resample a {moving.ndim}-D image onto a {fixed.ndim}-D grid")
    tx = _as_sitk(transform)
    if tx.GetDimension() != fixed.ndim:
        raise InputError(f"a {tx.GetDimension()}-D transform cannot map {fixed.ndim}-D images")
    img = sitk.Resample(moving.image, fixed.image, tx, sitk.sitkLinear, float(default_value), sitk.sitkFloat32)
    return dataclasses.replace(
        moving, image=img, name=f"{moving.name} on {fixed.name} grid", source=None,
        metadata={**moving.metadata, "resampled_to": fixed.name, "display_only": True}, _array=None,
    )


def project(volume: Volume, axis: str, *, method: str = "mean") -> Volume:
    """2-D projection of a 3-D volume along a physical axis.

    Used to register a 2-D MPI projection against an MRI or CT: project the 3-D
    image along the MPI's projection axis, then fit 2-D landmarks. The 2-D image's
    axes are the two remaining physical axes in (x, y, z) order: projecting along
    ``z`` keeps (x, y), along ``y`` keeps (x, z), along ``x`` keeps (y, z). Oblique
    volumes are first resampled (linear) onto an axis-aligned grid.

    Parameters
    ----------
    volume : Volume
        A 3-D image.
    axis : {"x", "y", "z"}
        Physical axis to project along.
    method : {"mean", "max", "sum"}
        Mean (MRI/CT), maximum intensity, or sum × spacing along the axis
        (signal integrated along the line, a.u.·mm, like a 2-D MPI acquisition).
    """
    import SimpleITK as sitk

    if volume.ndim != 3:
        raise InputError(f"{volume.name}: projection needs a 3-D image, got {volume.ndim}-D")
    if axis not in _AXES:
        raise InputError(f"projection axis {axis!r}: expected 'x', 'y' or 'z'")
    if method not in ("mean", "max", "sum"):
        raise InputError(f"projection method {method!r}: expected 'mean', 'max' or 'sum'")
    img = volume.image
    direction = volume.direction
    if not np.allclose(direction, np.eye(3), atol=1e-9):
        # resample onto an axis-aligned grid covering the image; each physical axis
        # gets the spacing of the grid axis most aligned with it
        sp = np.asarray(volume.spacing_mm, dtype=float)
        spacing = sp[np.argmax(np.abs(direction), axis=1)]
        size = np.asarray(img.GetSize(), dtype=float)
        corners = np.array(np.meshgrid(*[(-0.5, n - 0.5) for n in size[::-1]], indexing="ij")).reshape(3, -1).T
        phys = volume.index_to_physical(corners)
        lo = phys.min(axis=0) + spacing / 2
        hi = phys.max(axis=0) - spacing / 2
        new_size = [max(1, int(np.floor((h - lo_) / s)) + 1) for lo_, h, s in zip(lo, hi, spacing, strict=True)]
        ref = sitk.Image(new_size, img.GetPixelID())
        ref.SetSpacing(spacing.tolist())
        ref.SetOrigin(lo.tolist())
        arr_min = float(np.min(volume.array))
        img = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, arr_min, sitk.sitkFloat32)
    arr = sitk.GetArrayViewFromImage(img).astype(np.float64)
    k = _AXES.index(axis)
    np_axis = 2 - k  # numpy order (z, y, x)
    spacing = np.asarray(img.GetSpacing(), dtype=float)
    if method == "mean":
        out = arr.mean(axis=np_axis)
    elif method == "max":
        out = arr.max(axis=np_axis)
    else:
        out = arr.sum(axis=np_axis) * spacing[k]
    keep = [j for j in range(3) if j != k]
    img2 = sitk.GetImageFromArray(out.astype(np.float32))
    img2.SetSpacing(spacing[keep].tolist())
    img2.SetOrigin(np.asarray(img.GetOrigin(), dtype=float)[keep].tolist())
    units = volume.units if method != "sum" else f"{volume.units}·mm"
    from .volume import Volume

    return Volume(image=img2, modality=volume.modality, units=units, acquisition=volume.acquisition,
                  metadata={**volume.metadata, "projection": {"axis": axis, "method": method,
                                                             "kept_axes": [_AXES[j] for j in keep]}},
                  name=f"{volume.name} ({method} along {axis})", source=None)


def project_points(xyz, axis: str) -> np.ndarray:
    """Drop the ``axis`` coordinate of 3-D points: the 2-D coordinates :func:`project` uses (mm)."""
    if axis not in _AXES:
        raise InputError(f"projection axis {axis!r}: expected 'x', 'y' or 'z'")
    p = np.asarray(xyz, dtype=float)
    keep = [j for j in range(3) if j != _AXES.index(axis)]
    return p[..., keep].copy()


def refine_intensity(
    fixed: Volume,
    moving: Volume,
    initial_transform,
    *,
    model: str = "rigid",
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    shrink_factors: Sequence[int] = (4, 2, 1),
    smoothing_sigmas_vox: Sequence[float] = (2.0, 1.0, 0.0),
    working_spacing_mm: float | None = None,
    iterations: int = 100,
    sampling_fraction: float = 0.1,
    seed: int = 1,
) -> sitk.Transform:
    """Refine a fixed → moving transform by Mattes mutual information (multi-resolution).

    Meant for CT ↔ MRI and MPI ↔ MPI time points, after a landmark fit.

    Parameters
    ----------
    fixed, moving : Volume
        3-D images.
    initial_transform : LandmarkFit, SimpleITK.Transform or (matrix, translation)
        Starting fixed → moving transform (e.g. a landmark fit).
    model : {"rigid", "affine"}
        Transform optimised (Euler3D or Affine).
    progress : callable(fraction, message), optional
        Called at each optimiser iteration with the fraction done (0..1).
    should_stop : callable() -> bool, optional
        Checked at each iteration; when it returns True the registration stops and
        :class:`~mpi_viewer.errors.CancelledError` is raised.
    shrink_factors, smoothing_sigmas_vox : sequence
        The multi-resolution pyramid: shrink factor and Gaussian sigma (voxels) per level.
    working_spacing_mm : float, optional
        Smooth and resample both images to this isotropic spacing (mm) first, for
        speed (e.g. 1.0 for a 0.3 mm MRI); native grids by default.
    iterations : int
        Optimiser iterations per level at most.
    sampling_fraction : float
        Fraction of fixed-image voxels sampled (randomly, with ``seed``) by the metric.

    Returns
    -------
    SimpleITK.Transform
        The refined fixed → moving transform.
    """
    from . import _intensity

    if fixed.ndim != 3 or moving.ndim != 3:
        raise InputError("intensity refinement needs two 3-D images")
    m, t = transform_to_matrix(initial_transform)
    if m.shape != (3, 3):
        raise InputError("intensity refinement needs a 3-D initial transform")
    return _intensity.refine(fixed.image, moving.image, m, t, model=model, shrink_factors=shrink_factors,
                             smoothing_sigmas_vox=smoothing_sigmas_vox, working_spacing_mm=working_spacing_mm,
                             iterations=iterations, sampling_fraction=sampling_fraction, seed=seed,
                             progress=progress, should_stop=should_stop)
