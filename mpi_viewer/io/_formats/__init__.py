"""Format readers behind :func:`mpi_viewer.io.images.read_volume`.

Each reader returns a :class:`~mpi_viewer.geometry.volume.Volume` whose image carries the
geometry the file states, in mm. Readers raise :class:`~mpi_viewer.errors.InputError`
with the file name and the problem for anything they cannot read.
"""

from __future__ import annotations

from pathlib import Path

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.volume import Volume
from mpi_viewer.io.images import display_name

SITK_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
DICOM_EXTENSIONS = (".dcm", ".ima", ".dicom")
MDF_EXTENSIONS = (".mdf",)
HDF5_EXTENSIONS = (".h5", ".hdf5")
MAT_EXTENSIONS = (".mat",)
NPY_EXTENSIONS = (".npy",)
TIFF_EXTENSIONS = (".tif", ".tiff")
EXTENSIONS = (
    SITK_EXTENSIONS
    + DICOM_EXTENSIONS
    + MDF_EXTENSIONS
    + HDF5_EXTENSIONS
    + MAT_EXTENSIONS
    + NPY_EXTENSIONS
    + TIFF_EXTENSIONS
)
KNOWN = "NIfTI, NRRD, MetaImage, DICOM, MDF, .mat, .npy or TIFF"


def claims(path: str | Path) -> bool:
    """Whether mpi-viewer reads this path; never raises.

    Files by extension (``.h5``/``.hdf5`` only when they hold an MDF reconstruction,
    so other HDF5 files stay with other readers), extension-less DICOM files by their
    ``DICM`` signature, and folders that directly hold DICOM files.
    """
    try:
        import os
        import stat

        p = Path(path)
        name = p.name.lower()
        try:
            mode = os.stat(p).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            # a FIFO or device is never opened here (it could block); claimed by name only,
            # so that reading it says why it is refused
            return name.endswith(EXTENSIONS)
        if p.is_dir():
            from mpi_viewer.io._formats._dicom import folder_has_dicom

            return folder_has_dicom(p)
        if name.endswith(HDF5_EXTENSIONS):
            from mpi_viewer.io._formats._mdf import has_reconstruction

            return has_reconstruction(p)
        if name.endswith(EXTENSIONS):
            return True
        if "." not in name and p.is_file():
            from mpi_viewer.io._formats._dicom import is_dicom_file

            return is_dicom_file(p)
    except Exception:  # noqa: BLE001 - napari's get_reader contract: never raise
        return False
    return False


def read(path: Path, *, spacing_mm=None, origin_mm=None) -> Volume:
    """Read ``path`` with the reader its type needs (see :func:`claims`).

    Raises
    ------
    InputError
        Empty, unknown, unreadable or truncated files; plain arrays without spacing
        (:class:`~mpi_viewer.geometry.volume.MissingSpacingError`).
    """
    path = Path(path)
    kw = {"spacing_mm": spacing_mm, "origin_mm": origin_mm}
    if path.is_dir():
        from mpi_viewer.io._formats._dicom import folder_has_dicom, read_dicom_series

        if not folder_has_dicom(path):
            raise InputError(
                f"{path}: folder holds no DICOM files (a folder is read as one DICOM series)"
            )
        return read_dicom_series(path, **kw)
    try:
        nbytes = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if nbytes == 0:
        raise InputError(f"{path}: the file is empty (0 bytes)")
    if not _readable(path):
        raise InputError(f"{path}: permission denied (cannot open the file for reading)")
    name = path.name.lower()
    if name.endswith(SITK_EXTENSIONS):
        return read_sitk(path)
    if name.endswith(DICOM_EXTENSIONS):
        from mpi_viewer.io._formats._dicom import read_dicom_file

        return read_dicom_file(path, **kw)
    if name.endswith(MDF_EXTENSIONS + HDF5_EXTENSIONS):
        from mpi_viewer.io._formats._mdf import read_mdf

        return read_mdf(path, **kw)
    if name.endswith(MAT_EXTENSIONS):
        from mpi_viewer.io._formats._arrays import read_mat

        return read_mat(path, **kw)
    if name.endswith(NPY_EXTENSIONS):
        from mpi_viewer.io._formats._arrays import read_npy

        return read_npy(path, **kw)
    if name.endswith(TIFF_EXTENSIONS):
        from mpi_viewer.io._formats._arrays import read_tiff

        return read_tiff(path, **kw)
    from mpi_viewer.io._formats._dicom import is_dicom_file

    if is_dicom_file(path):
        from mpi_viewer.io._formats._dicom import read_dicom_file

        return read_dicom_file(path, **kw)
    raise InputError(f"{path}: unknown file type (expected {KNOWN})")


def _readable(path: Path) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def nifti_expected_bytes(header: bytes) -> int | None:
    """Bytes a single-file NIfTI-1/NIfTI-2 must hold (voxel offset + data), from its header."""
    import struct

    for e in "<>":
        if len(header) >= 348 and struct.unpack(e + "i", header[:4])[0] == 348:
            dims = struct.unpack(e + "8h", header[40:56])
            bitpix = struct.unpack(e + "h", header[72:74])[0]
            offset = int(struct.unpack(e + "f", header[108:112])[0])
        elif len(header) >= 540 and struct.unpack(e + "i", header[:4])[0] == 540:
            dims = struct.unpack(e + "8q", header[16:80])
            bitpix = struct.unpack(e + "h", header[14:16])[0]
            offset = struct.unpack(e + "q", header[168:176])[0]
        else:
            continue
        if not 1 <= dims[0] <= 7 or bitpix <= 0:
            return None
        n = 1
        for d in dims[1 : dims[0] + 1]:
            n *= max(int(d), 1)
        return offset + n * bitpix // 8
    return None


def check_nifti_complete(path: Path) -> None:
    """Refuse a truncated NIfTI, which ITK would read without a word (zero-filled).

    ``.nii``: the file size. ``.nii.gz``: the gzip trailer's uncompressed size, and a
    full decompression only when that disagrees (multi-member gzip files).
    """
    import gzip
    import zlib

    name = path.name.lower()
    try:
        if name.endswith(".nii"):
            with open(path, "rb") as f:
                expected = nifti_expected_bytes(f.read(540))
            actual = path.stat().st_size
        elif name.endswith(".nii.gz"):
            with gzip.open(path, "rb") as f:
                expected = nifti_expected_bytes(f.read(540))
            if expected is None:
                return
            with open(path, "rb") as f:
                f.seek(-4, 2)
                isize = int.from_bytes(f.read(4), "little")
            if isize == expected % 2**32:
                return
            actual = 0
            with gzip.open(path, "rb") as f:
                while chunk := f.read(1 << 24):
                    actual += len(chunk)
        else:
            return
    except gzip.BadGzipFile:
        raise InputError(
            f"{path}: cannot read: not gzip-compressed data (damaged or misnamed file)"
        ) from None
    except (EOFError, zlib.error):
        raise InputError(
            f"{path}: truncated or damaged file (compressed data ends early)"
        ) from None
    except OSError:
        return  # let SimpleITK report what it finds
    if expected is not None and actual < expected:
        raise InputError(f"{path}: truncated file ({actual} of {expected} bytes)")


def read_sitk(path: Path) -> Volume:
    """NIfTI, NRRD or MetaImage through SimpleITK (geometry as the header states it)."""
    import SimpleITK as sitk

    from mpi_viewer.io._formats._nifti import read_nifti_direct

    check_nifti_complete(path)
    try:
        img = read_nifti_direct(path)  # one buffer for plain .nii files; None otherwise
        if img is None:
            img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "rror" in ln), lines[-1] if lines else "")
        raise InputError(f"{path}: cannot read image ({detail[:160]})") from None
    if img.GetNumberOfComponentsPerPixel() > 1:
        raise InputError(
            f"{path}: {img.GetNumberOfComponentsPerPixel()} components per pixel; a scalar image is expected"
        )
    if img.GetDimension() > 3:
        size = img.GetSize()
        if img.GetDimension() != 4 or size[3] != 1:
            raise InputError(
                f"{path}: {img.GetDimension()}-D image of size {size}; a 2-D or 3-D image is expected"
            )
        img = sitk.Extract(img, list(size[:3]) + [0], [0, 0, 0, 0])  # drop the singleton 4th axis
    return Volume(image=img, units="", name=display_name(path))  # units from the modality
