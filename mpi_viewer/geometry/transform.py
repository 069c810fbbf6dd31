"""The transform between two scans: (matrix, translation) ↔ SimpleITK ↔ napari affine; resampling and projections.

Transforms follow ITK: they map points of the **fixed** image (MRI/CT) to the
**moving** image (MPI), ``moving ≈ matrix @ fixed + translation`` (mm, ITK (x, y, z)).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.axes import affine_xyz_to_zyx

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from mpi_viewer.geometry.volume import Volume

_AXES = ("x", "y", "z")
MODELS = ("rigid", "similarity", "affine")


# -- the one transform type ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Transform:
    """A linear fixed → moving transform, ``moving = matrix @ fixed + translation`` (mm, ITK
    (x, y, z) order): the one type a registration, a session and the pipeline hold.

    ``model`` (rigid, similarity, affine) says how it was fitted and which SimpleITK type
    :meth:`to_sitk` builds. Converts to and from SimpleITK (:meth:`to_sitk`,
    :meth:`from_sitk`), napari (:meth:`napari_affine`) and ITK ``.tfm`` files
    (:func:`mpi_viewer.io.transform_files.write_transform` / ``load_transform``). Unpacks as
    ``matrix, translation``.
    """

    matrix: np.ndarray
    translation: np.ndarray
    model: str = "affine"

    def __post_init__(self) -> None:
        m = np.array(self.matrix, dtype=float)
        t = np.array(self.translation, dtype=float).reshape(-1)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or t.shape != (m.shape[0],):
            raise InputError(f"transform: a {m.shape} matrix and {t.shape} translation do not fit")
        if not (np.isfinite(m).all() and np.isfinite(t).all()):
            raise InputError("transform: not finite")
        if self.model not in MODELS:
            raise InputError(f"transform model {self.model!r}: expected one of {', '.join(MODELS)}")
        m.setflags(write=False)
        t.setflags(write=False)
        object.__setattr__(self, "matrix", m)
        object.__setattr__(self, "translation", t)

    def __iter__(self):
        return iter((self.matrix, self.translation))

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Transform)
            and self.model == other.model
            and np.array_equal(self.matrix, other.matrix)
            and np.array_equal(self.translation, other.translation)
        )

    __hash__ = None  # mutable-looking arrays: not hashable

    @property
    def ndim(self) -> int:
        return int(self.matrix.shape[0])

    @classmethod
    def identity(cls, ndim: int = 3) -> Transform:
        return cls(np.eye(ndim), np.zeros(ndim), "rigid")

    @classmethod
    def from_sitk(cls, tx: sitk.Transform, model: str = "affine") -> Transform:
        """The linear SimpleITK transform ``tx`` (any kind, linear composites included)."""
        return cls(*transform_to_matrix(tx), model)

    @classmethod
    def from_any(cls, transform, model: str | None = None) -> Transform:
        """A Transform from a Transform, a :class:`LandmarkFit` (its model), a SimpleITK
        transform or ``(matrix, translation)``."""
        if isinstance(transform, Transform):
            return transform if model in (None, transform.model) else transform.with_model(model)
        m, t = transform_to_matrix(transform)
        return cls(m, t, model or getattr(transform, "model", None) or "affine")

    def with_model(self, model: str) -> Transform:
        return Transform(self.matrix, self.translation, model)

    def to_sitk(self) -> sitk.Transform:
        """Euler (rigid), Similarity (similarity) or Affine SimpleITK transform."""
        return matrix_to_sitk(self.matrix, self.translation, model=self.model)

    def transform_points(self, xyz) -> np.ndarray:
        """Fixed-frame points (n, d) in mm → moving frame."""
        return np.atleast_2d(np.asarray(xyz, dtype=float)) @ self.matrix.T + self.translation

    def inverse_points(self, xyz) -> np.ndarray:
        """Moving-frame points (n, d) in mm → fixed frame."""
        p = np.atleast_2d(np.asarray(xyz, dtype=float))
        return np.linalg.solve(self.matrix, (p - self.translation).T).T

    def napari_affine(self, moving_volume: Volume) -> np.ndarray:
        """The napari ``affine`` that draws ``moving_volume`` in the fixed frame
        (:func:`napari_affine_for_moving`)."""
        return napari_affine_for_moving(moving_volume, self)

    def to_dict(self) -> dict:
        return {
            "matrix": self.matrix.tolist(),
            "translation": self.translation.tolist(),
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Transform:
        return cls(d["matrix"], d["translation"], d.get("model", "affine"))


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
    if hasattr(transform, "matrix") and hasattr(transform, "translation"):  # a LandmarkFit
        return np.asarray(transform.matrix, dtype=float).copy(), np.asarray(
            transform.translation, dtype=float
        ).copy()
    if isinstance(transform, tuple) and len(transform) == 2:
        return np.asarray(transform[0], dtype=float).copy(), np.asarray(
            transform[1], dtype=float
        ).copy()
    import SimpleITK as sitk

    if not isinstance(transform, sitk.Transform):
        raise InputError(f"not a transform: {type(transform).__name__}")
    if not transform.IsLinear():
        raise InputError(
            f"the transform is not linear ({transform.GetName()}); only linear transforms "
            "can be used here"
        )
    d = transform.GetDimension()
    t = np.asarray(transform.TransformPoint([0.0] * d), dtype=float)
    m = np.empty((d, d))
    for j in range(d):
        e = [0.0] * d
        e[j] = 1.0
        m[:, j] = np.asarray(transform.TransformPoint(e), dtype=float) - t
    return m, t


def as_sitk_transform(transform) -> sitk.Transform:
    """A SimpleITK transform from a :class:`Transform`, a :class:`LandmarkFit`, a SimpleITK
    transform or ``(matrix, translation)``."""
    import SimpleITK as sitk

    if hasattr(transform, "to_sitk"):  # a LandmarkFit
        return transform.to_sitk()
    if isinstance(transform, sitk.Transform):
        return transform
    if isinstance(transform, tuple) and len(transform) == 2:
        return matrix_to_sitk(*transform)
    raise InputError(f"not a transform: {type(transform).__name__}")


_as_sitk = as_sitk_transform  # older private name, used by mpi_viewer.report


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


def resample_to_fixed(
    moving: Volume, fixed: Volume, transform, *, default_value: float = 0.0
) -> Volume:
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
    img = sitk.Resample(
        moving.image, fixed.image, tx, sitk.sitkLinear, float(default_value), sitk.sitkFloat32
    )
    return dataclasses.replace(
        moving,
        image=img,
        name=f"{moving.name} on {fixed.name} grid",
        source=None,
        metadata={**moving.metadata, "resampled_to": fixed.name, "display_only": True},
        _array=None,
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
        corners = (
            np.array(np.meshgrid(*[(-0.5, n - 0.5) for n in size[::-1]], indexing="ij"))
            .reshape(3, -1)
            .T
        )
        phys = volume.index_to_physical(corners)
        lo = phys.min(axis=0) + spacing / 2
        hi = phys.max(axis=0) - spacing / 2
        new_size = [
            max(1, int(np.floor((h - lo_) / s)) + 1)
            for lo_, h, s in zip(lo, hi, spacing, strict=True)
        ]
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
    from mpi_viewer.geometry.volume import Volume

    return Volume(
        image=img2,
        modality=volume.modality,
        units=units,
        acquisition=volume.acquisition,
        metadata={
            **volume.metadata,
            "projection": {"axis": axis, "method": method, "kept_axes": [_AXES[j] for j in keep]},
        },
        name=f"{volume.name} ({method} along {axis})",
        source=None,
    )


def project_points(xyz, axis: str) -> np.ndarray:
    """Drop the ``axis`` coordinate of 3-D points: the 2-D coordinates :func:`project` uses (mm)."""
    if axis not in _AXES:
        raise InputError(f"projection axis {axis!r}: expected 'x', 'y' or 'z'")
    p = np.asarray(xyz, dtype=float)
    keep = [j for j in range(3) if j != _AXES.index(axis)]
    return p[..., keep].copy()
