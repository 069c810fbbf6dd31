"""File > Open through mpi-viewer: a thin wrapper over :func:`mpi_viewer.io.images.read_volume`.

``get_reader`` claims NIfTI, NRRD, MetaImage, DICOM files and series folders, MDF,
MATLAB ``.mat``, ``.npy`` and TIFF (see :func:`mpi_viewer.io._formats.claims`) and
returns ``None`` for anything else, never raising. A file that cannot be read becomes
a napari error notification; the viewer keeps running and nothing is added.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.volume import Volume

# napari's "reader accepted the file but has no layers" value: napari adds nothing and
# does not report a second, vaguer error ("returned no data") after ours.
NO_LAYERS = [(None,)]

CT_WINDOW_HU = (-1000.0, 2000.0)


def layer_data_tuple(volume: Volume) -> tuple[np.ndarray, dict[str, Any], str]:
    """``(data, add_image kwargs, "image")`` placing ``volume`` in world mm, with the field's display.

    Placement comes from :meth:`Volume.layer_kwargs` (scale, translate or affine: world
    coordinates are physical mm in (z, y, x)). Display: MPI with the ``hot`` colormap,
    additive blending and contrast limits at the full dynamic range (min, max), the
    convention before half-maximum delineation (Sehl et al., Tomography 2020,
    doi:10.18383/j.tom.2020.00043); MRI and CT grey and translucent, CT windowed to
    -1000…2000 HU when its range is wider.
    """
    kwargs = volume.layer_kwargs()
    lo, hi = volume.value_range()
    if hi <= lo:
        hi = lo + 1.0
    if volume.modality == "MPI":
        kwargs.update(colormap="hot", blending="additive", contrast_limits=(lo, hi))
    else:
        limits = (lo, hi)
        if volume.modality == "CT":
            limits = (max(lo, CT_WINDOW_HU[0]), min(hi, CT_WINDOW_HU[1]))
            if limits[1] <= limits[0]:
                limits = (lo, hi)
        kwargs.update(colormap="gray", blending="translucent", contrast_limits=limits)
    return volume.array, kwargs, "image"


def _paths(path) -> list[str] | None:
    if isinstance(path, (str, bytes)) or hasattr(path, "__fspath__"):
        return [str(path)]
    if isinstance(path, Sequence) and path:
        return [str(p) for p in path]
    return None


def get_reader(path) -> Callable | None:
    """npe2 reader contribution: a reader function for paths mpi-viewer reads, else ``None``."""
    try:
        from mpi_viewer.io._formats import claims

        paths = _paths(path)
        if not paths or not all(claims(p) for p in paths):
            return None
    except Exception:  # noqa: BLE001 - napari's contract: get_reader never raises
        return None
    return read_layers


def read_layers(path) -> list:
    """Read one path or a list of paths into napari layer-data tuples.

    Bad files become error notifications; the good ones are still returned.
    """
    from mpi_viewer.geometry.volume import MissingSpacingError
    from mpi_viewer.io.images import read_volume

    out = []
    for p in _paths(path) or []:
        try:
            out.append(layer_data_tuple(read_volume(p)))
        except MissingSpacingError:
            # ask rather than refuse: open on 1 mm voxels, flagged, and say where to set them
            try:
                data, kwargs, kind = layer_data_tuple(
                    read_volume(p, spacing_mm=(1.0, 1.0, 1.0), origin_mm=(0.0, 0.0, 0.0))
                )
            except InputError as exc:
                _notify_error(str(exc))
                continue
            kwargs["metadata"]["mpi_viewer"]["geometry_missing"] = True
            out.append((data, kwargs, kind))
            _notify_warning(
                f"{p}: the file gives no voxel spacing; opened with 1 mm voxels. Set the real spacing and "
                "origin in Plugins > mpi-viewer > Image geometry (or put a sidecar JSON beside the file)."
            )
        except InputError as exc:
            _notify_error(str(exc))
        except Exception as exc:  # noqa: BLE001 - a file must never take the viewer down
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            _notify_error(f"{_shown(p)}: cannot read ({type(exc).__name__}: {detail})")
    return out or NO_LAYERS


def _shown(path) -> str:
    from mpi_viewer.io.guards import shown

    return shown(path)


def _notify_warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)
