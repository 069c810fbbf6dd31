"""Layers ↔ volumes: the few conversions every dock needs.

A layer made by mpi-viewer carries ``metadata["mpi_viewer"]`` (modality, units,
spacing, origin, direction, acquisition). From it :func:`volume_from_layer` rebuilds
the core :class:`~mpi_viewer.geometry.volume.Volume` on the layer's own (native) grid, so docks
quantify on the MPI as acquired whatever the layer's display transform.

World coordinates are physical mm in (z, y, x) *of the fixed (anatomical) space* once
a registration is applied; before, they are the layer's own physical mm.
:func:`world_to_physical` and :func:`physical_to_world` go through the layer's own
data↔world transform, so they are right in both cases.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

import numpy as np

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.axes import affine_xyz_to_zyx, xyz_to_zyx, zyx_to_xyz
from mpi_viewer.geometry.volume import DEFAULT_UNITS, Acquisition, Volume, image_from_array

_VOLUMES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: ``metadata["mpi_viewer"]`` key naming the layer a display twin stands in for (see
#: :mod:`mpi_viewer.plugins._display2d`).
TWIN_KEY = "display_twin_of"


#: ``metadata["mpi_viewer"]`` key of an empty layer made ahead of the step that takes it
#: (see :mod:`mpi_viewer.plugins._layer_pool`).
POOL_KEY = "pooled"


def is_pooled(layer) -> bool:
    """Whether a layer is an empty one of the layer pool (never the user's or the study's)."""
    return bool(getattr(layer, "metadata", {}).get("mpi_viewer", {}).get(POOL_KEY))


def is_display_twin(layer) -> bool:
    """Whether a layer is only a 2-D display copy of another (never quantify or save it)."""
    return bool(getattr(layer, "metadata", {}).get("mpi_viewer", {}).get(TWIN_KEY))


def meta(layer) -> dict[str, Any]:
    """The layer's ``mpi_viewer`` metadata dict (created empty if missing)."""
    return layer.metadata.setdefault("mpi_viewer", {})


def modality_of(layer) -> str:
    return layer.metadata.get("mpi_viewer", {}).get("modality", "unknown")


def _current_frame(layer, n: int) -> int:
    """The frame of a time-axis layer (multi-frame MDF) that napari currently shows:
    the viewer's time-slider position in the layer's data (frame 0 without a viewer)."""
    k = 0.0
    try:
        import napari

        viewer = napari.current_viewer()
        if viewer is not None and layer in viewer.layers:
            point = np.asarray(viewer.dims.point, dtype=float)[-layer.ndim :]
            k = float(np.asarray(layer.world_to_data(point))[0])
    except Exception:  # noqa: BLE001 - no viewer (headless use): the first frame
        k = 0.0
    return min(max(int(round(k)), 0), n - 1)


def image_selection(layer) -> dict[str, Any]:
    """Which part of its file a layer shows, as a session records it (``InputFile.selection``):
    the frame on screen of a time-axis MDF layer, its channel, a .mat/.npz variable."""
    m = layer.metadata.get("mpi_viewer", {})
    head = m.get("header") or {}
    sel: dict[str, Any] = {}
    if m.get("frames") and np.ndim(layer.data) == len(m.get("spacing_mm", ())) + 1:
        sel["frame"] = _current_frame(layer, int(np.shape(layer.data)[0]))
    elif head.get("frame") is not None:
        sel["frame"] = head["frame"]
    if head.get("channel") is not None:
        sel["channel"] = int(head["channel"])
    variable = head.get("matlab_variable") or head.get("npz_variable")
    if variable:
        sel["variable"] = str(variable)
    return sel


def volume_from_layer(layer) -> Volume:
    """The core Volume behind an Image or Labels layer, on the layer's native grid.

    Uses the geometry in ``metadata["mpi_viewer"]`` when present, else the layer's
    ``scale`` and ``translate`` (identity direction).

    Raises
    ------
    InputError
        The layer holds RGB, multiscale or non-numeric data, or is a 2-D display twin.
    """
    if is_display_twin(layer):
        of = layer.metadata["mpi_viewer"][TWIN_KEY]
        raise InputError(f"layer {layer.name!r} is only a 2-D display of {of!r}: use {of!r}")
    cached = _VOLUMES.get(layer)
    if cached is not None and cached.array is layer.data:
        return cached
    if getattr(layer, "multiscale", False) or getattr(layer, "rgb", False):
        raise InputError(f"layer {layer.name!r}: RGB or multiscale data cannot be quantified")
    data = np.asarray(layer.data)
    m = layer.metadata.get("mpi_viewer", {})
    if m.get("frames") and data.ndim == len(m.get("spacing_mm", ())) + 1:
        data = data[_current_frame(layer, data.shape[0])]  # a time axis: the frame on screen
    d = data.ndim
    if "spacing_mm" in m and len(m["spacing_mm"]) == d:
        spacing, origin, direction = m["spacing_mm"], m["origin_mm"], m["direction"]
    else:
        spacing = zyx_to_xyz(np.asarray(layer.scale)[-d:])
        origin = zyx_to_xyz(np.asarray(layer.translate)[-d:])
        direction = np.eye(d).ravel()
    img = image_from_array(data, spacing_mm=spacing, origin_mm=origin, direction=direction)
    modality = m.get("modality", "unknown")
    vol = Volume(
        image=img,
        modality=modality,
        units=m.get("units", DEFAULT_UNITS.get(modality, "a.u.")),
        acquisition=Acquisition.from_dict(m.get("acquisition")),
        name=layer.name,
        source=m.get("source"),
    )
    vol._array = layer.data if isinstance(layer.data, np.ndarray) and layer.data.ndim == d else data
    _VOLUMES[layer] = vol
    return vol


def image_layer_kwargs(volume: Volume) -> dict[str, Any]:
    """``add_image`` keyword arguments: placement in world mm plus the field's display
    (the reader's :func:`~mpi_viewer.plugins._reader.layer_data_tuple`, one definition)."""
    from mpi_viewer.plugins._reader import layer_data_tuple

    return layer_data_tuple(volume)[1]


def add_volume(viewer, volume: Volume, **overrides):
    """Add a Volume as an Image layer placed in world mm; returns the layer."""
    kwargs = image_layer_kwargs(volume)
    kwargs.update(overrides)
    layer = viewer.add_image(volume.array, **kwargs)
    _VOLUMES[layer] = volume
    return layer


def world_to_physical(layer, world_zyx) -> np.ndarray:
    """Physical mm (x, y, z) in the layer's *own* scanner frame of world points (z, y, x)."""
    vol = volume_from_layer(layer)
    w = np.atleast_2d(np.asarray(world_zyx, dtype=float))
    d = vol.ndim
    idx = np.array([np.asarray(layer.world_to_data(p[-layer.ndim :]))[-d:] for p in w])
    return vol.index_to_physical(idx)


def physical_to_world(layer, points_xyz) -> np.ndarray:
    """World (z, y, x) of points given in the layer's own physical mm (x, y, z)."""
    vol = volume_from_layer(layer)
    idx = vol.physical_to_index(points_xyz)
    return np.array([np.asarray(layer.data_to_world(i)) for i in idx])


def registered_affine(volume: Volume, matrix, translation) -> np.ndarray:
    """napari affine that draws ``volume`` (moving) in the fixed space.

    ``matrix``/``translation`` are the ITK fixed → moving transform (maps fixed mm to
    moving mm, x, y, z). The layer must have ``scale`` = spacing (z, y, x) and
    ``translate`` = 0.
    """
    m = np.asarray(matrix, dtype=float)
    t = np.asarray(translation, dtype=float)
    d = m.shape[0]
    inv = np.linalg.inv(m)
    # moving physical p = D·diag(s)·i + o ; fixed = inv·(p − t)
    lin = inv @ volume.direction
    off = inv @ (np.asarray(volume.origin_mm) - t)
    a = affine_xyz_to_zyx(lin, off)
    assert a.shape == (d + 1, d + 1)
    return a


def apply_registration(
    layer, matrix, translation, *, fixed_name: str | None = None, followers=()
) -> None:
    """Draw a moving layer (and layers that follow it, e.g. its ROIs) in the fixed space.

    Stores the fixed → moving transform in the layer's metadata so sessions and
    other docks can read it.
    """
    vol = volume_from_layer(layer)
    aff = registered_affine(vol, matrix, translation)
    scale = xyz_to_zyx(vol.spacing_mm)
    zero = np.zeros(vol.ndim)
    for lyr in (layer, *followers):
        set_placement(lyr, scale, zero, aff)
    meta(layer)["transform_fixed_to_moving"] = {
        "matrix": np.asarray(matrix, dtype=float).tolist(),
        "translation": np.asarray(translation, dtype=float).tolist(),
        "fixed": fixed_name,
    }
    _install_2d_display_for(layer)


def _install_2d_display_for(layer) -> None:
    """Correct 2-D slices of the now oblique layer in the current viewer (if it holds it)."""
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001 - no Qt, no viewer: nothing is drawn
        return
    layer = getattr(layer, "__wrapped__", layer)  # docks from the menu hold proxies
    if viewer is not None and any(lyr is layer for lyr in viewer.layers):
        from mpi_viewer.plugins._display2d import install_2d_display

        install_2d_display(viewer)


def placement_of(src, ndim: int | None = None) -> dict:
    """``scale``, ``translate``, ``affine`` (layer keyword arguments) placing a layer of
    ``ndim`` dimensions on ``src``'s grid (its space axes when ``src`` has a time axis)."""
    n = src.ndim if ndim is None else ndim
    return {
        "scale": list(src.scale)[-n:],
        "translate": list(src.translate)[-n:],
        "affine": np.asarray(src.affine.affine_matrix)[-(n + 1) :, -(n + 1) :],
    }


def set_placement(layer, scale, translate, affine) -> None:
    """Set a layer's data → world transform; only what differs is set (each set costs
    napari a re-slice and a redraw). Two or three sets are announced once, by the last:
    each announcement makes napari recompute the world extent and re-slice every layer,
    and the layers that follow this one (the mold's wells) move again; every listener
    reads the whole transform (an MPI registered for the first time: translate, affine)."""
    sets = []
    if not np.allclose(layer.scale, scale):
        sets.append(("scale", list(scale)))
    if not np.allclose(layer.translate, translate):
        sets.append(("translate", list(translate)))
    if not np.allclose(layer.affine.affine_matrix, affine):
        sets.append(("affine", affine))
    if not sets:
        return
    from mpi_viewer.plugins import _napari_compat as compat

    *quiet, (key, value) = sets
    with compat.one_refresh(layer) if quiet else contextlib.nullcontext():
        with contextlib.ExitStack() as stack:
            for k, v in quiet:  # set unannounced
                stack.enter_context(getattr(layer.events, k).blocker())
                setattr(layer, k, v)
        setattr(layer, key, value)  # announced: every listener reads the whole transform


def copy_placement(src, dst) -> None:
    """Give ``dst`` the same data → world transform as ``src`` (same grid)."""
    p = placement_of(src, dst.ndim)
    set_placement(dst, p["scale"], p["translate"], p["affine"])


@contextlib.contextmanager
def keeping_active(viewer):
    """Layers added inside do not take the user's active layer (the one their clicks go
    to) nor change the selection."""
    layers = viewer.layers
    selected, active = set(layers.selection), layers.selection.active
    try:
        yield
    finally:
        if layers.selection.active is not active or set(layers.selection) != selected:
            layers.selection.clear()
            layers.selection.update(selected & set(layers))
            layers.selection.active = active if active in layers else None


def layer_kind(layer) -> str:
    """``"image"``, ``"labels"``, ``"points"``, ``"shapes"``… (napari's layer class, lower case)."""
    return type(layer).__name__.lower()


def find_layers(viewer, modality: str | None = None, kind: str = "image") -> list:
    """Layers of a kind (``image``, ``labels``, ``points``…) and, optionally, a modality.

    2-D display twins (:func:`is_display_twin`) and pooled layers (:func:`is_pooled`)
    are never returned."""
    out = []
    for lyr in viewer.layers:
        if layer_kind(lyr) != kind or is_display_twin(lyr) or is_pooled(lyr):
            continue
        if modality is None or modality_of(lyr) == modality:
            out.append(lyr)
    return out


_MM_VIEWERS: weakref.WeakSet = weakref.WeakSet()


def install_mm_units(viewer) -> None:
    """Give every layer of ``viewer``, now and later, millimetre units.

    World coordinates are physical mm; layers the docks make (points, labels, shapes)
    would otherwise default to pixels, and napari then drops the scale bar's unit.
    Idempotent.
    """
    if viewer in _MM_VIEWERS:
        return
    _MM_VIEWERS.add(viewer)

    def _mm(layer) -> None:
        try:
            if any(str(u) != "millimeter" for u in layer.units):
                layer.units = ("mm",) * layer.ndim
        except Exception:  # noqa: BLE001 - a napari without per-layer units: nothing to do
            pass

    for layer in viewer.layers:
        _mm(layer)
    viewer.layers.events.inserted.connect(lambda event: _mm(event.value))
