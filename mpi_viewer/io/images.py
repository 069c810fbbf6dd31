"""Reading and writing image volumes: any supported file → :class:`~mpi_viewer.geometry.volume.Volume`, sidecars."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.volume import (
    DEFAULT_UNITS,
    MODALITIES,
    Acquisition,
    Volume,
    array_view,
    validate_geometry,
    validate_image_data,
)

if TYPE_CHECKING:  # pragma: no cover
    pass


PLAIN_ARRAY_EXTENSIONS = (".mat", ".npy", ".tif", ".tiff")


def guess_modality(path: str | Path) -> str:
    """Modality from a file name, when nothing in the file says (``mpi``, ``mri``/``mr``/``t1``/``t2``, ``ct``)."""
    import re

    stem = Path(path).name.lower()
    tokens = set(re.split(r"[^a-z0-9]+", stem))
    if "mpi" in tokens or stem.startswith("mpi"):
        return "MPI"
    if tokens & {"mri", "mr", "t1", "t2", "t1w", "t2w", "flash", "rare"}:
        return "MRI"
    if tokens & {"ct", "microct", "cbct"}:
        return "CT"
    return "unknown"


def sidecar_path(path: str | Path) -> Path:
    """``scan.json`` beside ``scan.npy`` / ``scan.nii.gz`` / ``scan.mat``…"""
    p = Path(path)
    name = p.name
    for ext in (".nii.gz", ".ome.tif", ".ome.tiff"):
        if name.lower().endswith(ext):
            return p.with_name(name[: -len(ext)] + ".json")
    return p.with_suffix(".json")


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar JSON beside ``path`` (empty dict when there is none).

    Bounded in size and depth; ``modality`` and ``units`` must be text and
    ``acquisition`` an object, or the sidecar is refused in one line.
    """
    from mpi_viewer.io.guards import read_json_file

    sc = sidecar_path(path)
    if Path(path).is_dir() or not (sc.exists() or sc.is_symlink()) or sc == Path(path):
        return {}
    data = read_json_file(sc, "JSON sidecar")
    if not isinstance(data, dict):
        raise InputError(f"{sc}: a sidecar must be a JSON object")
    for key in ("modality", "units"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise InputError(f"{sc}: {key!r} must be text, not {type(data[key]).__name__}")
    if data.get("acquisition") is not None and not isinstance(data["acquisition"], dict):
        raise InputError(
            f"{sc}: 'acquisition' must be a JSON object, not {type(data['acquisition']).__name__}"
        )
    return data


def read_volume(
    path: str | Path,
    *,
    modality: str | None = None,
    spacing_mm=None,
    origin_mm=None,
    name: str | None = None,
) -> Volume:
    """Read any supported image file (or DICOM folder) into a :class:`Volume`.

    Parameters
    ----------
    path : str or Path
        A NIfTI, NRRD, MetaImage, DICOM file or series folder, MDF (HDF5), MATLAB
        ``.mat``, ``.npy`` or TIFF file.
    modality : str, optional
        Overrides what the file (or its name) says.
    spacing_mm, origin_mm : sequence of float, optional
        Geometry in mm, ITK order, for plain arrays without a sidecar JSON.
    name : str, optional
        Layer name; the file name by default.

    Raises
    ------
    InputError
        Unreadable, truncated, empty or unknown files, data that is not 2-D or 3-D,
        all-NaN or infinite data, plain arrays with no spacing.
    """
    from mpi_viewer.io import _formats
    from mpi_viewer.io.guards import (
        check_detached_data,
        check_geometry,
        check_header_size,
        check_name,
        check_regular_file,
        quiet_native_output,
    )

    p = check_name(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    check_regular_file(p, "image", allow_dir=True)
    check_detached_data(p)
    check_header_size(p)
    for what, vec in (("--spacing-mm", spacing_mm), ("--origin-mm", origin_mm)):
        if vec is not None:
            v = [float(x) for x in vec]
            if not all(math.isfinite(x) for x in v) or (what == "--spacing-mm" and min(v) <= 0):
                raise InputError(
                    f"{what} {','.join(f'{x:g}' for x in v)}: "
                    + (
                        "must be positive and finite"
                        if what == "--spacing-mm"
                        else "must be finite"
                    )
                )
    sidecar = read_sidecar(p)
    try:
        with quiet_native_output():
            vol = _formats.read(p, spacing_mm=spacing_mm, origin_mm=origin_mm)
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{p}: the image is too large for the memory available") from None
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        OverflowError,
        RecursionError,
        OSError,
        RuntimeError,
        AttributeError,
        EOFError,
        NotImplementedError,
    ) as exc:
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise InputError(f"{p}: cannot read the image ({detail})") from None
    img = vol.image
    check_geometry(img.GetSpacing(), img.GetOrigin(), img.GetDirection(), where=str(p))
    if sidecar.get("modality") and vol.modality == "unknown":
        vol.modality = {"MR": "MRI"}.get(str(sidecar["modality"]), str(sidecar["modality"]))
        if vol.modality not in MODALITIES:
            raise InputError(
                f"{sidecar_path(p)}: modality {sidecar['modality']!r}: expected one of {', '.join(MODALITIES)}"
            )
    if sidecar.get("acquisition"):
        merged = {**sidecar["acquisition"], **vol.acquisition.to_dict()}
        try:
            vol.acquisition = Acquisition.from_dict(merged)
        except (TypeError, ValueError, OverflowError, AttributeError) as exc:
            detail = " ".join(str(exc).split())[:160]
            raise InputError(
                f"{sidecar_path(p)}: 'acquisition' has a value of the wrong type ({detail})"
            ) from None
    if modality is not None:
        if modality not in MODALITIES:
            raise InputError(f"modality {modality!r}: expected one of {', '.join(MODALITIES)}")
        vol.modality = modality
    if vol.modality == "unknown":
        vol.modality = guess_modality(p)
    if vol.modality == "unknown" and p.name.lower().endswith(PLAIN_ARRAY_EXTENSIONS):
        vol.modality = "MPI"  # plain arrays come from MPI reconstruction pipelines
    if vol.modality == "MPI" and vol.acquisition.mode is None:
        vol.acquisition.mode = "2D" if min(vol.image.GetSize()) == 1 or vol.ndim == 2 else "3D"
    if sidecar.get("units"):
        vol.units = str(sidecar["units"])
    elif vol.units in ("", None):
        vol.units = DEFAULT_UNITS[vol.modality]
    vol.name = name or vol.name or display_name(p)
    vol.source = str(p)
    if vol._array is None:
        vol._array = array_view(vol.image)
    if vol._range is None:
        vol._range = validate_image_data(vol.array, str(p))
    validate_geometry(vol.spacing_mm, str(p))
    return vol


def display_name(path: str | Path) -> str:
    n = Path(path).name
    for ext in (
        ".nii.gz",
        ".nii",
        ".nrrd",
        ".nhdr",
        ".mha",
        ".mhd",
        ".dcm",
        ".mdf",
        ".h5",
        ".hdf5",
        ".mat",
        ".npy",
        ".tif",
        ".tiff",
    ):
        if n.lower().endswith(ext):
            return n[: -len(ext)]
    return n


def write_volume(volume: Volume, path: str | Path, *, sidecar: bool = True) -> Path:
    """Write a volume with SimpleITK (format from the extension) and its sidecar JSON.

    The sidecar keeps modality, units and acquisition metadata, which NIfTI and
    friends have no place for.
    """
    from mpi_viewer.io.atomic import atomic_write_image, atomic_write_text

    p = Path(path)
    if sidecar:
        data = {
            "modality": volume.modality,
            "units": volume.units,
            "acquisition": volume.acquisition.to_dict(),
        }
        text = json.dumps(data, indent=2)
    atomic_write_image(p, volume.image, mkdir=True)
    if sidecar:
        atomic_write_text(sidecar_path(p), text)
    return p
