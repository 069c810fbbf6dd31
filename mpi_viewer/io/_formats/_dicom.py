"""DICOM: single files, enhanced multi-frame files and series folders.

Pixels and geometry are read by SimpleITK (GDCM), which applies the modality rescale
(so CT comes out in HU). Tags come from pydicom: the modality (``MR`` → MRI, ``CT`` →
CT; an MPI export is recognised by ``Modality = MPI``, a Magnetic Insight
manufacturer or "MPI" in the series description) and, for MPI, the tracer from
Contrast/Bolus Agent (0018,0010), averages from Number of Averages (0018,0083) and the
scanner from Manufacturer and Model Name. Everything else MPI-specific comes from the
sidecar JSON.

For enhanced multi-frame files the geometry is taken from the functional groups
(Pixel Measures, Plane Orientation, per-frame Plane Position), which GDCM does not
always read. A file that states no pixel spacing at all is treated like a plain array:
spacing from the sidecar JSON or the arguments, else an error saying how to give it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.volume import Acquisition, Volume
from mpi_viewer.io.images import display_name

DICOM_EXTENSIONS = (".dcm", ".ima", ".dicom")


# -- recognising DICOM -----------------------------------------------------------------
def is_dicom_file(path) -> bool:
    """A Part-10 file: 128-byte preamble then ``DICM``; never raises."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def folder_has_dicom(path, *, max_files: int = 64) -> bool:
    """Whether a folder directly holds DICOM files (looks at a few); never raises."""
    try:
        with os.scandir(path) as it:
            for i, entry in enumerate(it):
                if i >= max_files:
                    break
                try:
                    if entry.is_file() and (
                        entry.name.lower().endswith(DICOM_EXTENSIONS) or is_dicom_file(entry.path)
                    ):
                        return True
                except OSError:
                    continue
    except OSError:
        return False
    return False


# -- tags ----------------------------------------------------------------------------------
def _header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except InvalidDicomError:
        raise InputError(f"{path}: not a DICOM file") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged files
        raise InputError(f"{path}: cannot read DICOM header ({_first_line(exc)})") from None


def _str(ds, keyword: str) -> str | None:
    v = ds.get(keyword)
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def modality_from_tags(ds) -> str:
    """``MRI``, ``CT``, ``MPI`` or ``unknown`` from Modality, Manufacturer and descriptions."""
    code = (_str(ds, "Modality") or "").upper()
    if code == "MR":
        return "MRI"
    if code == "CT":
        return "CT"
    manufacturer = (_str(ds, "Manufacturer") or "").lower()
    words = " ".join(
        _str(ds, k) or "" for k in ("SeriesDescription", "ProtocolName", "StudyDescription")
    )
    tokens = {t for t in "".join(c if c.isalnum() else " " for c in words.upper()).split()}
    if code == "MPI" or "magnetic insight" in manufacturer or "MPI" in tokens:
        return "MPI"
    return "unknown"


def tags_to_volume_info(ds, modality: str) -> tuple[str, Acquisition, dict[str, Any]]:
    """Units, MPI acquisition parameters and header fields worth showing."""
    units = "HU" if modality == "CT" else "a.u."
    acq: dict[str, Any] = {}
    if modality == "MPI":
        acq["tracer"] = _str(ds, "ContrastBolusAgent")
        try:
            if ds.get("NumberOfAverages") is not None:
                acq["averages"] = int(float(ds.NumberOfAverages))
        except (TypeError, ValueError):
            pass
        scanner = " ".join(
            s for s in (_str(ds, "Manufacturer"), _str(ds, "ManufacturerModelName")) if s
        )
        acq["scanner"] = scanner or None
    header: dict[str, Any] = {}
    for key in (
        "Modality",
        "Manufacturer",
        "ManufacturerModelName",
        "SeriesDescription",
        "SeriesNumber",
        "StudyDate",
        "SliceThickness",
        "RescaleSlope",
        "RescaleIntercept",
        "ContrastBolusAgent",
    ):
        v = _str(ds, key)
        if v is not None:
            header[key] = v
    sop = ds.get("SOPClassUID")
    if sop is not None:
        header["SOPClass"] = getattr(sop, "name", str(sop))
    return units, Acquisition.from_dict({k: v for k, v in acq.items() if v}), header


# -- geometry from functional groups ------------------------------------------------------
def _find(ds, seq: str, keyword: str, frame: int = 0):
    """A value from the per-frame, then shared functional groups, then the top level."""
    per = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    groups = []
    if per is not None and frame < len(per):
        groups.append(per[frame])
    if shared is not None and len(shared):
        groups.append(shared[0])
    for g in groups:
        item = g.get(seq)
        if item is not None and len(item) and keyword in item[0]:
            return item[0].get(keyword)
    return ds.get(keyword)


def has_pixel_spacing(ds) -> bool:
    return any(
        v is not None and len(v) == 2
        for v in (_find(ds, "PixelMeasuresSequence", "PixelSpacing"), ds.get("ImagerPixelSpacing"))
    )


def multiframe_geometry(ds, path: Path, n_frames: int) -> dict[str, Any] | None:
    """Spacing, origin, direction (ITK order, mm) of a multi-frame file from its tags.

    ``None`` when the file lacks orientation or positions (GDCM's geometry is kept).

    Raises
    ------
    InputError
        Frames not evenly spaced along one line, or stacked off the slice normal
        (e.g. gantry tilt), which one grid cannot represent.
    """
    ps = _find(ds, "PixelMeasuresSequence", "PixelSpacing")
    orient = _find(ds, "PlaneOrientationSequence", "ImageOrientationPatient")
    if ps is None or orient is None or len(orient) != 6:
        return None
    positions = [
        _find(ds, "PlanePositionSequence", "ImagePositionPatient", i) for i in range(n_frames)
    ]
    if any(p is None or len(p) != 3 for p in positions):
        return None
    pos = np.asarray([[float(v) for v in p] for p in positions])
    row = np.asarray([float(v) for v in orient[:3]])
    col = np.asarray([float(v) for v in orient[3:]])
    normal = np.cross(row, col)
    sx, sy = float(ps[1]), float(ps[0])  # PixelSpacing = (between rows, between columns)
    offsets = grid_frame_offsets(ds, path, n_frames)
    source = "functional groups"
    if offsets is not None and n_frames > 1 and np.ptp(pos, axis=0).max() == 0:
        source = "Grid Frame Offset Vector"
        # RT dose and similar: one Image Position for the first frame, the others placed
        # along the slice normal by Grid Frame Offset Vector (3004,000C)
        pos = pos[0] + (offsets - offsets[0])[:, None] * normal
    if n_frames > 1:
        step = (pos[-1] - pos[0]) / (n_frames - 1)
        dz = float(np.linalg.norm(step))
        if dz == 0:
            raise InputError(
                f"{path}: all {n_frames} frames are at the same position; not a volume"
            )
        expected = pos[0] + np.arange(n_frames)[:, None] * step
        if np.abs(pos - expected).max() > max(1e-3, 0.01 * dz):
            raise InputError(
                f"{path}: frames are not evenly spaced along one line (missing or mixed frames)"
            )
        third = step / dz
        if abs(abs(float(third @ normal)) - 1) > 1e-3:
            raise InputError(
                f"{path}: frames are stacked off the slice normal (gantry tilt); cannot place them on one grid"
            )
    else:
        thick = ds.get("SpacingBetweenSlices") or _find(
            ds, "PixelMeasuresSequence", "SliceThickness"
        )
        dz = float(thick) if thick else 1.0
        third = normal
    direction = np.column_stack([row, col, third])
    return {
        "spacing_mm": [sx, sy, dz],
        "origin_mm": list(pos[0]),
        "direction": list(direction.ravel()),
        "geometry_from": source,
    }


def grid_frame_offsets(ds, path: Path, n_frames: int) -> np.ndarray | None:
    """Grid Frame Offset Vector (3004,000C) in mm, one value per frame, or ``None``.

    DICOM RT (C.8.8.3.2): offsets along the slice normal from the Image Position
    of the first frame (first value 0), or, for axial slices, the frames' z
    positions (first value = Image Position z); both give the same placement
    relative to the first frame.
    """
    g = ds.get("GridFrameOffsetVector")
    if g is None:
        return None
    try:
        values = np.atleast_1d(np.asarray(g, dtype=float)).ravel()
    except (TypeError, ValueError):
        raise InputError(
            f"{path}: Grid Frame Offset Vector {g!r} is not a list of numbers"
        ) from None
    if values.size != n_frames:
        raise InputError(
            f"{path}: Grid Frame Offset Vector has {values.size} values for {n_frames} frames"
        )
    return values


# -- readers -------------------------------------------------------------------------------
def read_dicom(path: Path, *, spacing_mm=None, origin_mm=None) -> Volume:
    if path.is_dir():
        return read_dicom_series(path, spacing_mm=spacing_mm, origin_mm=origin_mm)
    return read_dicom_file(path, spacing_mm=spacing_mm, origin_mm=origin_mm)


def _sitk_read(path, files=None):
    import SimpleITK as sitk

    try:
        if files is None:
            return sitk.ReadImage(str(path))
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        return reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read DICOM pixels ({_sitk_detail(exc)})") from None


def _finish(img, ds, path: Path, *, spacing_mm, origin_mm, extra: dict[str, Any]) -> Volume:
    if img.GetNumberOfComponentsPerPixel() > 1:
        raise InputError(
            f"{path}: colour DICOM ({img.GetNumberOfComponentsPerPixel()} samples per pixel); "
            "a grey-level image is expected"
        )
    if not has_pixel_spacing(ds):
        from mpi_viewer.io._formats._arrays import array_geometry

        geo = array_geometry(
            path,
            img.GetDimension(),
            spacing_mm=spacing_mm,
            origin_mm=origin_mm,
            kind="DICOM without Pixel Spacing",
        )
        img.SetSpacing(geo["spacing_mm"])
        img.SetOrigin(geo["origin_mm"])
        if geo["direction"] is not None:
            img.SetDirection(geo["direction"])
        extra["geometry_from"] = geo["geometry_from"]
    modality = modality_from_tags(ds)
    units, acquisition, header = tags_to_volume_info(ds, modality)
    header.update(extra)
    return Volume(
        image=img,
        modality=modality,
        units=units,
        acquisition=acquisition,
        metadata=header,
        name=display_name(path),
    )


def read_dicom_file(path: Path, *, spacing_mm=None, origin_mm=None) -> Volume:
    """One DICOM file: a single slice (a one-slice 3-D image) or an enhanced multi-frame volume."""
    ds = _header(path)
    img = _sitk_read(path)
    try:
        n_frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        n_frames = 1
    extra: dict[str, Any] = {}
    if img.GetDimension() == 3 and (
        n_frames > 1 or ds.get("PerFrameFunctionalGroupsSequence") is not None
    ):
        geo = multiframe_geometry(ds, path, n_frames)
        if geo is not None and img.GetSize()[2] == n_frames:
            img.SetSpacing(geo["spacing_mm"])
            img.SetOrigin(geo["origin_mm"])
            img.SetDirection(geo["direction"])
            extra["geometry_from"] = geo["geometry_from"]
        extra["frames"] = n_frames
    return _finish(img, ds, path, spacing_mm=spacing_mm, origin_mm=origin_mm, extra=extra)


def count_dicom_files(path: Path) -> int:
    """Files directly in ``path`` that look like DICOM (extension or ``DICM`` signature)."""
    n = 0
    try:
        with os.scandir(path) as it:
            for e in it:
                if e.is_file() and (
                    e.name.lower().endswith(DICOM_EXTENSIONS) or is_dicom_file(e.path)
                ):
                    n += 1
    except OSError:
        pass
    return n


def _release_freed_memory() -> None:
    """Hand memory freed by GDCM's scanner back to the system (glibc only).

    GDCM's file-name scan reads every file, pixels included, and frees it; without
    this the freed heap stays resident and the series read that follows stacks on
    top of it, doubling the peak memory of opening a series.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def series_files(path: Path) -> tuple[list[str], dict[str, Any]]:
    """Slice files of the folder's series in order (the largest series when there are several)."""
    import SimpleITK as sitk

    try:
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path)))
        _release_freed_memory()
        extra: dict[str, Any] = {}
        if len(files) != count_dicom_files(path):  # other series, or non-image DICOM files
            ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
            if len(ids) > 1:
                series = {}
                for sid in ids:
                    series[sid] = list(
                        sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), sid)
                    )
                    _release_freed_memory()
                chosen = max(series, key=lambda s: len(series[s]))
                files = series[chosen]
                extra["series_uid"] = chosen
                extra["other_series"] = {s: len(f) for s, f in series.items() if s != chosen}
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot scan for DICOM series ({_sitk_detail(exc)})") from None
    return files, extra


def read_dicom_series(path: Path, *, spacing_mm=None, origin_mm=None) -> Volume:
    """A folder holding a DICOM series (the largest one when it holds several)."""
    files, extra = series_files(path)
    if not files:
        raise InputError(f"{path}: no DICOM images in this folder")
    extra["files"] = len(files)
    if len(files) == 1:
        vol = read_dicom_file(Path(files[0]), spacing_mm=spacing_mm, origin_mm=origin_mm)
        vol.metadata.update(extra)
        return vol
    ds = _header(Path(files[0]))
    if int(ds.get("NumberOfFrames") or 1) > 1:
        raise InputError(
            f"{path}: the series is made of {len(files)} multi-frame files; open one file at a time"
        )
    if len(files) > 2:
        _check_even_slices(path, files)
    img = _sitk_read(path, files)
    return _finish(img, ds, path, spacing_mm=spacing_mm, origin_mm=origin_mm, extra=extra)


def _check_even_slices(path: Path, files: list[str]) -> None:
    """Refuse a series with a missing or duplicated slice, from three headers.

    GDCM sorts slices along their normal; with one slice missing, the step between
    the first two differs from the mean step over the whole series.
    """
    import pydicom

    try:
        p = [
            np.asarray(
                [
                    float(v)
                    for v in pydicom.dcmread(
                        f, stop_before_pixels=True, specific_tags=["ImagePositionPatient"]
                    ).ImagePositionPatient
                ]
            )
            for f in (files[0], files[1], files[-1])
        ]
    except Exception:  # noqa: BLE001 - no positions: GDCM sorted by other means, nothing to check
        return
    step = float(np.linalg.norm(p[1] - p[0]))
    mean = float(np.linalg.norm(p[2] - p[0])) / (len(files) - 1)
    if mean == 0 or abs(step - mean) > max(1e-3, 0.01 * mean):
        raise InputError(
            f"{path}: slices are not evenly spaced ({step:.4g} mm between the first two, "
            f"{mean:.4g} mm on average); missing or duplicated slices?"
        )


def _sitk_detail(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    detail = next((ln for ln in lines if "rror" in ln), lines[-1] if lines else type(exc).__name__)
    return detail[:160]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]
