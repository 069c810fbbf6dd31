"""Format readers behind :func:`mpi_viewer.volume.read_volume`.

Each reader returns a :class:`~mpi_viewer.volume.Volume` whose image carries the
geometry the file states, in mm. Readers raise :class:`~mpi_viewer.errors.InputError`
with the file name and the problem for anything they cannot read.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..volume import Volume, display_name

SITK_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def claims(path: str | Path) -> bool:
    """Whether mpi-viewer reads this path (by extension or DICOM folder); never raises."""
    p = str(path).lower()
    return p.endswith(SITK_EXTENSIONS)


def read(path: Path, *, spacing_mm=None, origin_mm=None) -> Volume:
    name = str(path).lower()
    if name.endswith(SITK_EXTENSIONS):
        return read_sitk(path)
    raise InputError(f"{path}: unknown file type (expected NIfTI, NRRD, MetaImage, DICOM, MDF, .mat, .npy or TIFF)")


def read_sitk(path: Path) -> Volume:
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = next((ln for ln in first if "ERROR" in ln or "rror" in ln), first[-1] if first else "")
        raise InputError(f"{path}: cannot read image ({detail.strip()[:160]})") from None
    if img.GetDimension() == 4:
        size = img.GetSize()
        if size[3] == 1:
            img = img[:, :, :, 0]
        else:
            raise InputError(f"{path}: 4-D image of size {size}; a 2-D or 3-D image is expected")
    if img.GetNumberOfComponentsPerPixel() > 1:
        raise InputError(f"{path}: {img.GetNumberOfComponentsPerPixel()} components per pixel; a scalar image is expected")
    return Volume(image=img, name=display_name(path))
