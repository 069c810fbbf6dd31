"""ITK ``.tfm`` transform files (fixed → moving), which 3D Slicer and ITK read."""

from __future__ import annotations

import os
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

    from mpi_viewer.io.atomic import atomic_write

    p = Path(path)
    tx = _as_sitk(transform)
    suffix = "".join(p.suffixes[-1:]) or ".tfm"

    def _write(tmp: Path) -> None:
        from mpi_viewer.errors import OutputError
        from mpi_viewer.io.guards import quiet_native_output

        with quiet_native_output():
            sitk.WriteTransform(tx, str(tmp))
            try:  # ITK does not report every failed write (a full disk): read it back
                ok = bool(sitk.ReadTransform(str(tmp)).GetParameters() or True)
            except RuntimeError:
                ok = False
        if not ok or os.path.getsize(tmp) == 0:
            from mpi_viewer.io.atomic import _itk_reason

            reason = _itk_reason(RuntimeError("the transform file came out incomplete"), p)
            raise OutputError(f"{p}: cannot write: {reason}")

    return atomic_write(p, _write, suffix=suffix)


def read_transform(path: str | os.PathLike) -> sitk.Transform:
    """Read an ITK transform file (fixed → moving); a one-element composite is unwrapped."""
    import SimpleITK as sitk

    from mpi_viewer.io.guards import check_regular_file, quiet_native_output

    p = check_regular_file(path, "transform file", max_bytes=1 << 24)
    try:
        with quiet_native_output():
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
