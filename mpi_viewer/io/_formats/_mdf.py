"""MDF, the Magnetic Particle Imaging Data Format (HDF5), reconstructed images only.

The image is ``/reconstruction/data``, an array of ``Q × P × S`` (frames × voxels ×
channels, as h5py sees it; MDF v1 files have ``Q × P``). Voxel ``p`` runs over the
grid ``/reconstruction/size`` (nx, ny, nz) with x fastest (``/reconstruction/order``,
default ``"xyz"``). ``/reconstruction/fieldOfView`` and ``fieldOfViewCenter`` are in
metres, in the scanner frame; mpi-viewer uses mm::

    spacing = fieldOfView / size
    origin  = fieldOfViewCenter - fieldOfView / 2 + spacing / 2   (centre of voxel 0)

as MPIFiles.jl does (``loadRecoData``). A 2-D reconstruction (one of the sizes 1)
stays a one-slice 3-D image so its position along the third axis is kept.

Acquisition metadata comes from ``/tracer`` (name, batch), ``/scanner`` and
``/acquisition`` (gradient in T/m, drive-field strength in T → mT, base frequency and
divider in Hz → kHz, number of averages).

References
----------
Knopp T. et al., "MDF: Magnetic Particle Imaging Data Format", arXiv:1602.06072;
specification at https://github.com/MagneticParticleImaging/MDF.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.volume import Acquisition, Volume, image_from_array, validate_image_data
from mpi_viewer.io.images import display_name

MDF_EXTENSIONS = (".mdf", ".h5", ".hdf5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


def has_reconstruction(path: Path) -> bool:
    """Whether an HDF5 file holds an MDF reconstruction; never raises."""
    if not is_hdf5(path):
        return False
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return "reconstruction/data" in f
    except Exception:  # noqa: BLE001 - claims() must never raise
        return False


def _get(f, key: str):
    if key not in f:
        return None
    try:
        return f[key][()]
    except Exception:  # noqa: BLE001 - a damaged optional field is just absent
        return None


def _text(value) -> str | None:
    if value is None:
        return None
    vals = np.atleast_1d(np.asarray(value, dtype=object)).ravel()
    out = []
    for v in vals:
        s = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        s = s.strip()
        if s and s not in out:
            out.append(s)
    return ", ".join(out) or None


def _number(value, scale: float = 1.0) -> float | None:
    if value is None:
        return None
    try:
        a = np.abs(np.asarray(value, dtype=float)).ravel()
    except (TypeError, ValueError):
        return None
    a = a[np.isfinite(a)]
    return float(a.max()) * scale if a.size else None


def read_acquisition(f, size) -> tuple[Acquisition, dict[str, Any]]:
    """MPI acquisition parameters and a few header fields from an open MDF file."""
    acq: dict[str, Any] = {}
    acq["tracer"] = _text(_get(f, "tracer/name"))
    acq["tracer_lot"] = _text(_get(f, "tracer/batch"))
    # Gradient strength of the selection field (T/m, per axis): report the strongest axis.
    acq["gradient_T_per_m"] = _number(_get(f, "acquisition/gradient"))
    strength = _get(f, "acquisition/drivefield/strength")  # T (µ0⁻¹), J × D × F
    acq["drive_amplitude_mT"] = _number(strength, 1e3)
    base = _get(f, "acquisition/drivefield/baseFrequency")  # Hz
    divider = _get(f, "acquisition/drivefield/divider")
    if base is not None and divider is not None:
        try:
            div = np.asarray(divider, dtype=float)
            pick = 0
            if strength is not None:
                s = np.abs(np.asarray(strength, dtype=float))
                s = s.reshape(-1, *div.shape)[0] if s.size % max(div.size, 1) == 0 else None
                if s is not None:
                    pick = int(np.argmax(s))  # the channel with the strongest drive field
            acq["drive_frequency_kHz"] = (
                float(np.asarray(base, dtype=float).ravel()[0]) / float(div.ravel()[pick]) / 1e3
            )
        except (TypeError, ValueError, IndexError, ZeroDivisionError):
            pass
    averages = _get(f, "acquisition/receiver/numAverages")
    if averages is None:
        averages = _get(f, "acquisition/drivefield/averages")  # MDF v1
    if averages is not None:
        try:
            acq["averages"] = int(np.asarray(averages).ravel()[0])
        except (TypeError, ValueError, IndexError):
            pass
    scanner = _text(_get(f, "scanner/name"))  # MDF v1
    if scanner is None:
        parts = [_text(_get(f, "scanner/manufacturer")), _text(_get(f, "scanner/model"))]
        scanner = " ".join(p for p in parts if p) or None
    acq["scanner"] = scanner
    acq["mode"] = "2D" if min(int(s) for s in size) == 1 else "3D"
    header = {
        "mdf_version": _text(_get(f, "version")),
        "uuid": _text(_get(f, "uuid")),
        "time": _text(_get(f, "time")),
        "scanner_topology": _text(_get(f, "scanner/topology")),
        "scanner_facility": _text(_get(f, "scanner/facility")),
        "study": _text(_get(f, "study/name")),
        "experiment": _text(_get(f, "experiment/name")),
        "subject": _text(_get(f, "experiment/subject")),
    }
    return Acquisition.from_dict({k: v for k, v in acq.items() if v is not None}), {
        k: v for k, v in header.items() if v is not None
    }


def _image_array(path: Path, data: np.ndarray, size_xyz: list[int], order: str) -> np.ndarray:
    """The (z, y, x) image from ``/reconstruction/data`` of shape Q × P × S (or Q × P)."""
    n_vox = int(np.prod(size_xyz))
    shape = data.shape
    if data.size != n_vox:
        if n_vox in shape:
            others = int(np.prod(shape)) // n_vox
            raise InputError(
                f"{path}: /reconstruction/data of shape {shape} holds {others} frames or channels; "
                "one 3-D image is expected (save one frame per file)"
            )
        raise InputError(
            f"{path}: /reconstruction/data of shape {shape} does not match /reconstruction/size "
            f"{tuple(size_xyz)} ({n_vox} voxels)"
        )
    axes = order.lower()
    if sorted(axes) != ["x", "y", "z"]:
        raise InputError(f"{path}: /reconstruction/order {order!r} is not a permutation of 'xyz'")
    n = dict(zip("xyz", size_xyz, strict=True))
    slow_to_fast = axes[::-1]  # the first letter of ``order`` varies fastest
    grid = np.asarray(data).reshape([n[a] for a in slow_to_fast])
    return np.transpose(grid, [slow_to_fast.index(a) for a in "zyx"])


def read_mdf(path: Path, *, spacing_mm=None, origin_mm=None) -> Volume:
    """Read the reconstructed image of an MDF file (see the module docstring)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError for bad/truncated files
        first = str(exc).strip().splitlines()
        raise InputError(
            f"{path}: not a readable HDF5/MDF file ({(first[0] if first else type(exc).__name__)[:160]})"
        ) from None
    try:
        if "reconstruction/data" not in f:
            what = "raw measurements" if "measurement" in f else "no image"
            raise InputError(
                f"{path}: MDF file without /reconstruction/data ({what}); a reconstructed image is expected"
            )
        size = _get(f, "reconstruction/size")
        fov_m = _get(f, "reconstruction/fieldOfView")
        if size is None or np.asarray(size).size != 3:
            raise InputError(
                f"{path}: MDF file without a 3-value /reconstruction/size (nx, ny, nz)"
            )
        size_xyz = [int(s) for s in np.asarray(size).ravel()]
        order = _text(_get(f, "reconstruction/order")) or "xyz"
        try:
            data = f["reconstruction/data"][()]
        except Exception as exc:  # noqa: BLE001 - truncated datasets raise OSError
            raise InputError(
                f"{path}: /reconstruction/data cannot be read ({str(exc).splitlines()[0][:160]})"
            ) from None
        if data.dtype.names is not None or np.iscomplexobj(data):
            raise InputError(f"{path}: complex reconstruction; a real-valued image is expected")
        zyx = _image_array(path, data, size_xyz, order)
        if fov_m is not None and np.asarray(fov_m).size == 3:
            fov_mm = np.asarray(fov_m, dtype=float).ravel() * 1e3
            centre_m = _get(f, "reconstruction/fieldOfViewCenter")
            centre_mm = (
                np.zeros(3)
                if centre_m is None
                else np.asarray(centre_m, dtype=float).ravel()[:3] * 1e3
            )
            spacing = fov_mm / np.asarray(size_xyz, dtype=float)
            # A 2-D reconstruction may give no extent along its single slice.
            spacing = np.where((np.asarray(size_xyz) == 1) & ~(spacing > 0), 1.0, spacing)
            origin = (
                centre_mm - np.asarray(size_xyz) * spacing / 2 + spacing / 2
            )  # = c - fov/2 + s/2
            geometry_from = "MDF /reconstruction"
        else:
            from mpi_viewer.io._formats._arrays import array_geometry

            geo = array_geometry(
                path,
                3,
                spacing_mm=spacing_mm,
                origin_mm=origin_mm,
                kind="MDF file without /reconstruction/fieldOfView",
            )
            spacing, origin = np.asarray(geo["spacing_mm"]), np.asarray(geo["origin_mm"])
            geometry_from = geo["geometry_from"]
        acquisition, header = read_acquisition(f, size_xyz)
    finally:
        f.close()
    value_range = validate_image_data(zyx, str(path))
    img = image_from_array(zyx, spacing_mm=spacing, origin_mm=origin)
    header["geometry_from"] = geometry_from
    header["fov_mm"] = [float(v) for v in np.asarray(size_xyz) * spacing]
    vol = Volume(
        image=img,
        modality="MPI",
        units="a.u.",
        acquisition=acquisition,
        metadata=header,
        name=display_name(path),
    )
    vol._range = value_range
    return vol
