"""Uncompressed NIfTI read straight into one SimpleITK buffer.

ITK's NIfTI reader holds the voxels twice while reading (the nifti library's buffer,
then ITK's), so opening a 256 MiB volume peaks at 512 MiB. For the common simple case
— an uncompressed single-file ``.nii`` in native byte order, no intensity scaling, a
scalar pixel type, 2-D or 3-D — this module lets ITK read the header only
(``ReadImageInformation``: size, pixel type, spacing, origin and direction exactly as
``ReadImage`` gives them) and reads the voxels from the file into the image's own
buffer: one copy in memory, and faster. NIfTI stores voxels x-fastest, which is ITK's
buffer order, so no reordering is involved. Anything else returns ``None`` and goes
through ``SimpleITK.ReadImage``.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

# NIfTI datatype code → numpy dtype (scalars only)
_DTYPES = {
    2: np.uint8,
    4: np.int16,
    8: np.int32,
    16: np.float32,
    64: np.float64,
    256: np.int8,
    512: np.uint16,
    768: np.uint32,
    1024: np.int64,
    1280: np.uint64,
}


def _simple_header(header: bytes) -> tuple[np.dtype, int] | None:
    """(dtype, voxel offset) when the header is one the fast path handles, else None."""
    native = "<" if sys.byteorder == "little" else ">"
    if len(header) >= 348 and struct.unpack(native + "i", header[:4])[0] == 348:
        if header[344:348] != b"n+1\x00":
            return None
        datatype = struct.unpack(native + "h", header[70:72])[0]
        offset = int(struct.unpack(native + "f", header[108:112])[0])
        slope, inter = struct.unpack(native + "2f", header[112:120])
    elif len(header) >= 540 and struct.unpack(native + "i", header[:4])[0] == 540:
        if header[4:12] != b"n+2\x00\r\n\x1a\n":
            return None
        datatype = struct.unpack(native + "h", header[12:14])[0]
        offset = struct.unpack(native + "q", header[168:176])[0]
        slope, inter = struct.unpack(native + "2d", header[176:192])
    else:
        return None  # other byte order, or not NIfTI
    if datatype not in _DTYPES or slope not in (0.0, 1.0) or inter != 0.0:
        return None
    return np.dtype(_DTYPES[datatype]), offset


def read_nifti_direct(path: Path):
    """A SimpleITK image read with one buffer, or ``None`` to let ``ReadImage`` do it."""
    import SimpleITK as sitk

    from mpi_viewer.geometry.volume import _ImageBuffer

    if not path.name.lower().endswith(".nii"):
        return None
    with open(path, "rb") as f:
        simple = _simple_header(f.read(540))
    if simple is None:
        return None
    dtype, offset = simple
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    if reader.GetDimension() not in (2, 3) or reader.GetNumberOfComponents() != 1:
        return None
    probe = sitk.GetImageFromArray(np.zeros((1,) * reader.GetDimension(), dtype))
    if probe.GetPixelID() != reader.GetPixelID():
        return None  # ITK would convert the pixel type: let it
    img = sitk.Image(reader.GetSize(), reader.GetPixelID())
    img.SetSpacing(reader.GetSpacing())
    img.SetOrigin(reader.GetOrigin())
    img.SetDirection(reader.GetDirection())
    buf = _ImageBuffer(img)
    ptr, _ = buf.__array_interface__["data"]
    buf.__array_interface__["data"] = (ptr, False)  # writable, for the read below only
    target = np.asarray(buf).reshape(-1).view(np.uint8)
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        view = memoryview(target)
        done = 0
        while done < target.size:
            n = f.readinto(view[done:])
            if not n:
                return None  # short file: ReadImage path reports it
            done += n
    return img


# -- NIfTI-2 ---------------------------------------------------------------------------------
def is_nifti2(path: Path) -> bool:
    """Whether a ``.nii``/``.nii.gz`` file has a NIfTI-2 header (``sizeof_hdr`` = 540)."""
    import gzip

    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as f:
            head = f.read(4)
    except (OSError, EOFError):
        return False
    return len(head) == 4 and 540 in (
        struct.unpack("<i", head)[0],
        struct.unpack(">i", head)[0],
    )


def read_nifti2(path: Path):
    """A NIfTI-2 file through nibabel, as a Volume placed as ITK places NIfTI-1.

    nibabel gives the voxel → RAS affine (the sform when its code is set, else the
    qform, as the NIfTI standard says) and the voxels with the header's scaling
    applied. ITK works in LPS: x and y change sign. Spacing is the length of the
    affine's columns, direction its normalised columns; a sheared affine (columns not
    orthogonal) cannot be one ITK grid and is refused.
    """
    import nibabel as nib

    from mpi_viewer.errors import InputError
    from mpi_viewer.geometry.volume import Volume, image_from_array, validate_image_data
    from mpi_viewer.io.images import display_name

    try:
        img = nib.Nifti2Image.from_filename(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for damaged files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise InputError(f"{path}: cannot read NIfTI-2 image ({first})") from None
    if data.ndim > 3:
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        else:
            raise InputError(
                f"{path}: {data.ndim}-D image of size {data.shape}; a 2-D or 3-D image is expected"
            )
    if data.ndim < 2:
        raise InputError(f"{path}: {data.ndim}-D image; a 2-D or 3-D image is expected")
    if data.dtype.kind == "V" or np.iscomplexobj(data):
        raise InputError(f"{path}: data of type {data.dtype}; a scalar real image is expected")
    d = data.ndim
    affine = np.asarray(img.affine, dtype=float)
    m = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]  # RAS → LPS
    origin = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, 3]
    spacing = np.linalg.norm(m, axis=0)
    if np.any(spacing <= 0) or not np.all(np.isfinite(m)):
        raise InputError(f"{path}: the header's affine has a zero or non-finite voxel size")
    direction = m / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise InputError(f"{path}: the header's affine is sheared; it cannot be placed on one grid")
    if d == 2:
        spacing, origin, direction = spacing[:2], origin[:2], direction[:2, :2]
        if not np.allclose(direction.T @ direction, np.eye(2), atol=1e-4):
            raise InputError(f"{path}: a 2-D image whose plane is not the x-y plane")
    zyx = np.ascontiguousarray(np.transpose(data, tuple(range(d))[::-1]))
    value_range = validate_image_data(zyx, str(path))
    image = image_from_array(zyx, spacing_mm=spacing, origin_mm=origin, direction=direction)
    vol = Volume(image=image, units="", name=display_name(path), metadata={"format": "NIfTI-2"})
    vol._range = value_range
    return vol
