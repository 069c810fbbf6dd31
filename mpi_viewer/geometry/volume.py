"""Volumes: an image with its physical geometry, modality and acquisition metadata.

A :class:`Volume` wraps a SimpleITK image (spacing, origin and direction kept as read)
with what the rest of the program needs to know about it: the modality (``"MPI"``,
``"MRI"``, ``"CT"`` or ``"unknown"``), the unit of its values and, for MPI, the
acquisition parameters that a calibration must match.

:func:`read_volume` is the one reader for every format; the napari reader is a thin
wrapper over it. Format-specific code lives in :mod:`mpi_viewer.io._formats`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.axes import image_to_world_affine, xyz_to_zyx, zyx_to_xyz

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk


MODALITIES = ("MPI", "MRI", "CT", "unknown")


class MissingSpacingError(InputError):
    """A file without voxel spacing (plain arrays, some DICOM): the user must give it.

    The message says how (a sidecar JSON or ``--spacing-mm``); a GUI can catch this
    class to ask for spacing and origin and read again with ``spacing_mm=``.
    """


DEFAULT_UNITS = {"MPI": "a.u.", "MRI": "a.u.", "CT": "HU", "unknown": "a.u."}


@dataclass
class Acquisition:
    """MPI acquisition parameters, each ``None`` when the file does not say.

    A calibration is valid only for images acquired with the same tracer and scan
    parameters (Sehl et al., Tomography 2020, doi:10.18383/j.tom.2020.00043); these
    fields are what :mod:`mpi_viewer.calibration` compares.
    """

    tracer: str | None = None
    tracer_lot: str | None = None
    mode: str | None = None  # "2D" or "3D"
    gradient_T_per_m: float | None = None
    drive_amplitude_mT: float | None = None
    drive_frequency_kHz: float | None = None
    averages: int | None = None
    scanner: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Acquisition:
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        for k in ("gradient_T_per_m", "drive_amplitude_mT", "drive_frequency_kHz"):
            if kwargs.get(k) is not None:
                kwargs[k] = float(kwargs[k])
        if kwargs.get("averages") is not None:
            kwargs["averages"] = int(kwargs["averages"])
        return cls(**kwargs)


@dataclass
class Volume:
    """An image in physical space.

    Attributes
    ----------
    image : SimpleITK.Image
        Pixel data with spacing (mm), origin (mm) and direction, as read.
    modality : str
        ``"MPI"``, ``"MRI"``, ``"CT"`` or ``"unknown"``.
    units : str
        Unit of the pixel values (``"a.u."`` for MPI signal, ``"HU"`` for CT).
    acquisition : Acquisition
        MPI acquisition parameters (empty for other modalities).
    metadata : dict
        Other header fields worth showing (JSON-serialisable).
    name : str
        Short name for layers and tables.
    source : str or None
        Path the volume was read from.
    """

    image: sitk.Image
    modality: str = "unknown"
    units: str = "a.u."
    acquisition: Acquisition = field(default_factory=Acquisition)
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str = "volume"
    source: str | None = None
    _array: np.ndarray | None = field(default=None, repr=False, compare=False)
    _range: tuple[float, float] | None = field(default=None, repr=False, compare=False)

    # -- geometry -------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return self.image.GetDimension()

    @property
    def spacing_mm(self) -> tuple[float, ...]:
        """Voxel size in mm, ITK order (x, y, z)."""
        return tuple(self.image.GetSpacing())

    @property
    def origin_mm(self) -> tuple[float, ...]:
        """Physical position (mm) of voxel 0's centre, ITK order (x, y, z)."""
        return tuple(self.image.GetOrigin())

    @property
    def direction(self) -> np.ndarray:
        """Direction cosines as a (d, d) matrix acting on (x, y, z)."""
        d = self.ndim
        return np.asarray(self.image.GetDirection(), dtype=float).reshape(d, d)

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape in numpy order (z, y, x)."""
        return tuple(self.image.GetSize())[::-1]

    @property
    def voxel_volume_mm(self) -> float:
        """Volume of one voxel in mm³ (area in mm² for a 2-D image)."""
        return float(np.prod(self.spacing_mm))

    @property
    def array(self) -> np.ndarray:
        """Pixel data in numpy order (z, y, x); one copy, made on first use and kept."""
        if self._array is None:
            import SimpleITK as sitk

            self._array = sitk.GetArrayFromImage(self.image)
        return self._array

    def value_range(self) -> tuple[float, float]:
        """(min, max) of the finite pixel values, in :attr:`units`; computed once and kept.

        Readers fill it while validating the data, so display code (contrast limits at
        the full dynamic range) does not scan the array again.
        """
        if self._range is None:
            self._range = finite_range(self.array)
        return self._range

    def index_to_world_affine(self) -> np.ndarray:
        """Homogeneous map from array index (z, y, x) to physical mm (z, y, x)."""
        return image_to_world_affine(self.spacing_mm, self.origin_mm, self.image.GetDirection())

    def physical_to_index(self, points_xyz) -> np.ndarray:
        """Continuous array indices (z, y, x) of physical points given in mm (x, y, z)."""
        pts = np.atleast_2d(np.asarray(points_xyz, dtype=float))
        a = self.index_to_world_affine()
        d = self.ndim
        zyx = xyz_to_zyx(pts)
        idx = np.linalg.solve(a[:d, :d], (zyx - a[:d, d]).T).T
        return idx

    def index_to_physical(self, index_zyx) -> np.ndarray:
        """Physical mm (x, y, z) of continuous array indices given in (z, y, x)."""
        idx = np.atleast_2d(np.asarray(index_zyx, dtype=float))
        a = self.index_to_world_affine()
        d = self.ndim
        return zyx_to_xyz(idx @ a[:d, :d].T + a[:d, d])

    def contains_physical(self, points_xyz, *, margin_voxels: float = 0.5) -> np.ndarray:
        """Whether each physical point lies inside the image (voxel edges + margin)."""
        idx = self.physical_to_index(points_xyz)
        shape = np.asarray(self.shape, dtype=float)
        return np.all((idx >= -margin_voxels) & (idx <= shape - 1 + margin_voxels), axis=1)

    def with_array(
        self, array: np.ndarray, *, name: str | None = None, units: str | None = None
    ) -> Volume:
        """A new Volume with the same geometry and metadata and other pixel data."""
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(np.asarray(array))
        img.CopyInformation(self.image)
        return dataclasses.replace(
            self,
            image=img,
            name=name or self.name,
            units=units or self.units,
            _array=None,
            _range=None,
        )

    # -- napari ----------------------------------------------------------------------
    def layer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``viewer.add_image`` that place the data in world mm.

        napari world coordinates are physical mm in (z, y, x). ``scale`` carries the
        spacing; ``translate`` the origin when the direction is the identity; any other
        direction (flips, obliques) goes into ``affine``.
        """
        d = self.ndim
        scale = list(xyz_to_zyx(self.spacing_mm))
        direction = self.direction
        kwargs: dict[str, Any] = {"scale": scale, "name": self.name, "units": ("mm",) * d}
        if np.allclose(direction, np.eye(d)):
            kwargs["translate"] = list(xyz_to_zyx(self.origin_mm))
        else:
            a = image_to_world_affine([1.0] * d, self.origin_mm, direction.ravel())
            kwargs["affine"] = a
        kwargs["metadata"] = self.layer_metadata()
        return kwargs

    def layer_metadata(self) -> dict[str, Any]:
        return {
            "mpi_viewer": {
                "modality": self.modality,
                "units": self.units,
                "spacing_mm": list(self.spacing_mm),
                "origin_mm": list(self.origin_mm),
                "direction": list(self.image.GetDirection()),
                "acquisition": self.acquisition.to_dict(),
                "source": self.source,
                **({"header": self.metadata} if self.metadata else {}),
            }
        }


def validate_image_data(array: np.ndarray, what: str) -> tuple[float, float]:
    """Refuse data no analysis can use: empty, more than 3-D, all-NaN or infinite.

    Returns
    -------
    (float, float)
        Minimum and maximum of the finite values (NaN voxels are allowed beside
        finite ones; they mean "outside the reconstruction").

    Notes
    -----
    Two vectorised passes (min and max) settle the common case of clean data; the
    slower NaN/infinity scans run only when min or max is not finite.
    """
    if array.size == 0:
        raise InputError(f"{what}: the image is empty")
    squeezed_ndim = sum(1 for s in array.shape if s > 1)
    if array.ndim > 3 and squeezed_ndim > 3:
        raise InputError(
            f"{what}: {array.ndim}-D data of shape {array.shape}; a 2-D or 3-D image is expected"
        )
    if np.issubdtype(array.dtype, np.complexfloating):
        raise InputError(f"{what}: complex data; a real-valued (magnitude) image is expected")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"{what}: data of type {array.dtype}; a numeric image is expected")
    if np.issubdtype(array.dtype, np.floating):
        lo, hi = array.min(), array.max()
        if np.isfinite(lo) and np.isfinite(hi):
            return float(lo), float(hi)
        if np.isinf(array).any():
            if not np.isfinite(array).any():
                raise InputError(f"{what}: no finite values (all NaN or infinite)")
            raise InputError(f"{what}: contains infinite values")
        if np.isnan(array).all():
            raise InputError(f"{what}: no finite values (all NaN)")
        return float(np.nanmin(array)), float(np.nanmax(array))
    return float(array.min()), float(array.max())


def finite_range(array: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values of ``array``; (0, 0) when there are none."""
    a = np.asarray(array)
    if a.size == 0:
        return 0.0, 0.0
    if np.issubdtype(a.dtype, np.floating):
        lo, hi = a.min(), a.max()
        if np.isfinite(lo) and np.isfinite(hi):
            return float(lo), float(hi)
        finite = a[np.isfinite(a)]
        return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return float(a.min()), float(a.max())


class _ImageBuffer:
    """A SimpleITK image's pixel buffer exposed to numpy; keeps the image alive."""

    def __init__(self, image) -> None:
        import SimpleITK as sitk

        view = sitk.GetArrayViewFromImage(image)  # calls image.MakeUnique() first
        self.image = image
        self.__array_interface__ = dict(view.__array_interface__)


def array_view(image) -> np.ndarray:
    """Read-only numpy view (z, y, x) of a SimpleITK image's pixels, without a copy.

    Unlike :func:`SimpleITK.GetArrayViewFromImage`, the returned array holds a
    reference to the image, so the view stays valid however long it is kept. Volumes
    read from files use it: the pixels live once in memory, shared by ``.image`` and
    ``.array`` (treat them as immutable; :meth:`Volume.with_array` makes new data).
    """
    arr = np.asarray(_ImageBuffer(image))
    arr.flags.writeable = False
    return arr


def validate_geometry(spacing, what: str) -> None:
    sp = np.asarray(spacing, dtype=float)
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise InputError(f"{what}: spacing {tuple(sp)} mm is not positive and finite")


def image_from_array(
    array: np.ndarray,
    *,
    spacing_mm=None,
    origin_mm=None,
    direction=None,
) -> sitk.Image:
    """A SimpleITK image from a numpy array in (z, y, x) order with ITK-order geometry."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    d = img.GetDimension()
    if spacing_mm is not None:
        img.SetSpacing([float(s) for s in spacing_mm][:d])
    if origin_mm is not None:
        img.SetOrigin([float(o) for o in origin_mm][:d])
    if direction is not None:
        img.SetDirection([float(v) for v in np.asarray(direction, dtype=float).ravel()])
    return img
