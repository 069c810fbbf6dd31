"""ITK ``.tfm`` transform files (fixed → moving), which 3D Slicer and ITK read."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.transform import Transform, _as_sitk

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk


def write_transform(path: str | os.PathLike, transform) -> Path:
    """Write a fixed → moving transform as an ITK transform file (atomic).

    Parameters
    ----------
    path : str or Path
        Target file, normally ``.tfm`` (3D Slicer and ITK read it); ``.txt`` and
        ``.h5``/``.hdf`` work too.
    transform : Transform, LandmarkFit, SimpleITK.Transform or (matrix, translation)
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
        raise InputError(
            f"{p}: cannot write the transform ({str(exc).strip().splitlines()[-1]})"
        ) from None
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


def load_transform(path: str | os.PathLike, model: str = "affine") -> Transform:
    """Read an ITK transform file as a :class:`~mpi_viewer.geometry.transform.Transform`
    (linear transforms only)."""
    return Transform.from_sitk(read_transform(path), model)
