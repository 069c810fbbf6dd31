"""Plain arrays from MPI pipelines: MATLAB ``.mat`` (v5 and v7.3), ``.npy``, ``.npz`` and TIFF.

These files carry pixels but no geometry. Spacing and origin come from the sidecar
JSON beside the file (``scan.json`` beside ``scan.mat``: ``spacing_mm``,
``origin_mm``, optional ``direction``, all in ITK (x, y, z) order), else from the
``spacing_mm``/``origin_mm`` arguments of :func:`mpi_viewer.io.images.read_volume`;
with neither, reading stops with a :class:`~mpi_viewer.geometry.volume.MissingSpacingError`
saying how to give them.

Axis conventions (numpy order is (z, y, x) everywhere in mpi-viewer):

- ``.npy``: the array is taken as (z, y, x), or (y, x) for 2-D.
- TIFF: pages, rows, columns = (z, y, x).
- MATLAB: rows, columns, pages = (y, x, z), as ``imagesc``/``imshow`` and
  ``meshgrid`` use them, so a 2-D matrix keeps the orientation MATLAB displays.
  v7.3 files are HDF5 and store the column-major matrix transposed; the reader
  undoes it.
- ``.npz``: as ``.npy``.

Files holding several arrays (``.mat``, ``.npz``): ``variable=NAME`` (``--variable``)
chooses one. Without it the reader takes the only 2-D or 3-D numeric array that fits
the sidecar's geometry and refuses to guess between several, listing them with their
shapes; the sidecar's ``"variable"`` names one as ``--variable`` does (napari's File >
Open has no flag). An array fits when its non-singleton dimensions are the sidecar's ``size``
(voxels, x, y[, z]; ``shape`` is accepted too) or ``fov_mm / spacing_mm``, and a 2-D
``spacing_mm`` is not given to a 3-D array: a 338 × 1352 interpolation matrix never
opens as a 64 × 64 image. The chosen array's name is kept in ``metadata``
(``matlab_variable``, ``npz_variable``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.volume import (
    MissingSpacingError,
    Volume,
    image_from_array,
    validate_image_data,
)
from mpi_viewer.io.images import display_name, read_sidecar, sidecar_path

MAT_EXTENSIONS = (".mat",)
NPY_EXTENSIONS = (".npy",)
TIFF_EXTENSIONS = (".tif", ".tiff")


# -- array → Volume ------------------------------------------------------------------
def squeeze_to_image(array: np.ndarray, what: str) -> np.ndarray:
    """Drop singleton axes of data with more than 3 dimensions; refuse real 4-D data."""
    a = np.asarray(array)
    if a.ndim > 3:
        a = a.reshape([s for s in a.shape if s != 1] or [1])
    if a.ndim > 3:
        raise InputError(
            f"{what}: {array.ndim}-D data of shape {array.shape}; a 2-D or 3-D image is expected"
        )
    if a.ndim < 2:
        raise InputError(
            f"{what}: {a.ndim}-D data of shape {a.shape}; a 2-D or 3-D image is expected"
        )
    return a


def _vector(value, name: str, what: str) -> list[float]:
    try:
        out = [float(v) for v in np.asarray(value, dtype=float).ravel()]
    except (TypeError, ValueError):
        raise InputError(f"{what}: {name} {value!r} is not a list of numbers") from None
    return out


def _fit_length(values: list[float], ndim: int, name: str, what: str) -> list[float]:
    """``ndim`` values; a 2-D image accepts x, y, z and keeps x, y."""
    if len(values) == ndim:
        return values
    if ndim == 2 and len(values) == 3:
        return values[:2]
    raise InputError(
        f"{what}: {name} has {len(values)} values but the image is {ndim}-D "
        f"(give {'x,y' if ndim == 2 else 'x,y,z'} in mm)"
    )


def array_geometry(
    path: Path, ndim: int, *, spacing_mm=None, origin_mm=None, kind: str = "file"
) -> dict[str, Any]:
    """Spacing, origin and direction (ITK order) for a plain array.

    The sidecar JSON wins over the arguments (it travels with the file). Origin
    defaults to 0 mm and direction to the identity.

    Raises
    ------
    MissingSpacingError
        Neither the sidecar nor the arguments give a spacing.
    """
    what = str(path)
    sc = read_sidecar(path)
    source = None
    spacing = origin = direction = None
    if sc.get("spacing_mm") is not None:
        spacing, source = sc["spacing_mm"], sidecar_path(path).name
        origin = sc.get("origin_mm")
        direction = sc.get("direction")
    elif spacing_mm is not None:
        spacing, source = spacing_mm, "arguments"
    if origin is None and origin_mm is not None:
        origin = origin_mm
    if spacing is None:
        xyz = "X,Y" if ndim == 2 else "X,Y,Z"
        raise MissingSpacingError(
            f"{what}: {kind} has no spacing: put spacing_mm in a sidecar JSON "
            f"{sidecar_path(path).name} or pass --spacing-mm {xyz} (command line)"
        )
    spacing = _fit_length(_vector(spacing, "spacing_mm", what), ndim, "spacing_mm", what)
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise InputError(f"{what}: spacing_mm {tuple(spacing)} is not positive and finite")
    origin = (
        [0.0] * ndim
        if origin is None
        else _fit_length(_vector(origin, "origin_mm", what), ndim, "origin_mm", what)
    )
    if direction is not None:
        dvec = _vector(direction, "direction", what)
        if len(dvec) == 9 and ndim == 2:
            dvec = list(np.asarray(dvec).reshape(3, 3)[:2, :2].ravel())
        if len(dvec) != ndim * ndim:
            raise InputError(
                f"{what}: direction has {len(dvec)} values; {ndim * ndim} expected for a {ndim}-D image"
            )
        dmat = np.asarray(dvec).reshape(ndim, ndim)
        if not np.allclose(dmat @ dmat.T, np.eye(ndim), atol=1e-4):
            raise InputError(
                f"{what}: direction {dvec} is not a rotation (its columns must be orthonormal)"
            )
        direction = dvec
    return {
        "spacing_mm": spacing,
        "origin_mm": origin,
        "direction": direction,
        "geometry_from": source,
    }


def volume_from_array(
    array: np.ndarray,
    path: Path,
    *,
    spacing_mm=None,
    origin_mm=None,
    kind: str = "file",
    metadata=None,
) -> Volume:
    """A Volume from a (z, y, x) or (y, x) array and the geometry found for ``path``."""
    what = str(path)
    a = squeeze_to_image(array, what)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    elif a.dtype == np.float16:
        a = a.astype(np.float32)
    value_range = validate_image_data(a, what)
    geo = array_geometry(path, a.ndim, spacing_mm=spacing_mm, origin_mm=origin_mm, kind=kind)
    img = image_from_array(
        a, spacing_mm=geo["spacing_mm"], origin_mm=geo["origin_mm"], direction=geo["direction"]
    )
    meta = dict(metadata or {})
    meta["geometry_from"] = geo["geometry_from"]
    vol = Volume(
        image=img, units="", name=display_name(path), metadata=meta
    )  # units from the modality
    vol._range = value_range
    return vol


# -- .npy --------------------------------------------------------------------------------
def read_npy(path: Path, *, spacing_mm=None, origin_mm=None) -> Volume:
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({_first_line(exc)})") from None
    if not isinstance(a, np.ndarray):
        raise InputError(f"{path}: holds no array")
    return volume_from_array(a, path, spacing_mm=spacing_mm, origin_mm=origin_mm, kind=".npy array")


# -- TIFF ----------------------------------------------------------------------------------
def read_tiff(path: Path, *, spacing_mm=None, origin_mm=None) -> Volume:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            a = series.asarray()
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for bad files
        raise InputError(f"{path}: not a readable TIFF ({_first_line(exc)})") from None
    if "S" in axes and a.shape[axes.index("S")] > 1:
        raise InputError(
            f"{path}: colour (RGB) TIFF of shape {a.shape}; a grey-level image is expected"
        )
    return volume_from_array(a, path, spacing_mm=spacing_mm, origin_mm=origin_mm, kind="TIFF image")


# -- MATLAB --------------------------------------------------------------------------------
def is_mat_v73(path: Path) -> bool:
    """MATLAB v7.3 files are HDF5 (signature at byte 512) behind a 128-byte text header."""
    try:
        with open(path, "rb") as f:
            head = f.read(520)
    except OSError:
        return False
    return len(head) >= 520 and head[512:520] == b"\x89HDF\r\n\x1a\n"


def _matlab_to_zyx(a: np.ndarray) -> np.ndarray:
    """MATLAB index order (row=y, col=x, page=z) to numpy (z, y, x)."""
    if a.ndim == 3:
        return np.transpose(a, (2, 0, 1))
    if a.ndim == 4:  # (y, x, z, 1)-style: move pages first, keep the rest for squeezing
        return np.transpose(a, (3, 2, 0, 1))
    return a


def _shape_text(shape) -> str:
    return " × ".join(str(int(v)) for v in shape)


def sidecar_size_xyz(path: Path, ndim: int) -> list[int] | None:
    """Voxel counts (ITK order) the sidecar states: ``size`` (or ``shape``), else ``fov_mm / spacing_mm``."""
    sc = read_sidecar(path)
    what = str(sidecar_path(path))
    size = sc.get("size", sc.get("shape"))
    if size is not None:
        vals = _vector(size, "size", what)
        if not all(v >= 1 and float(v).is_integer() for v in vals):
            raise InputError(f"{what}: size {size!r} is not a list of voxel counts")
        return [int(v) for v in vals]
    if sc.get("fov_mm") is not None and sc.get("spacing_mm") is not None:
        fov = _vector(sc["fov_mm"], "fov_mm", what)
        sp = _vector(sc["spacing_mm"], "spacing_mm", what)
        if len(fov) == len(sp) and all(v > 0 for v in sp):
            return [int(round(f / s)) for f, s in zip(fov, sp, strict=True)]
    return None


def _fits(path: Path, shape_zyx: tuple[int, ...]) -> str | None:
    """Why an array of (z, y, x) shape ``shape_zyx`` cannot be the sidecar's image (None: it fits)."""
    sc = read_sidecar(path)
    dims = [int(v) for v in shape_zyx if v > 1]
    if sc.get("spacing_mm") is not None:
        n_sp = len(np.atleast_1d(np.asarray(sc["spacing_mm"], dtype=object)).ravel())
        if n_sp == 2 and len(dims) == 3:
            return (
                f"{_shape_text(shape_zyx)} is 3-D but {sidecar_path(path).name} gives 2-D spacing"
            )
    size = sidecar_size_xyz(path, len(dims))
    if size is None:
        return None
    want = [v for v in size[::-1] if v > 1]
    if dims != want:
        return (
            f"{_shape_text(shape_zyx)} does not fit the {_shape_text(size)} voxels (x, y"
            f"{', z' if len(size) == 3 else ''}) of {sidecar_path(path).name}"
        )
    return None


def _pick_variable(
    path: Path,
    candidates: dict[str, Any],
    all_names: list[str],
    variable: str | None,
    to_zyx=lambda shape: shape,
) -> tuple[str, Any]:
    """The one array to open: ``variable`` if given, else the only image-shaped array that
    fits the sidecar's geometry; several candidates are refused, listing them."""
    names = ", ".join(all_names) or "none"
    flag = f"--variable {variable}"
    if variable is None:  # the sidecar may name it (the way to choose in napari's File > Open)
        variable = read_sidecar(path).get("variable")
        flag = f"{sidecar_path(path).name}: variable {variable!r}"
        if variable is not None and not isinstance(variable, str):
            raise InputError(f"{flag} must be the name (text) of one of {names}")
    if variable is not None:
        if variable not in all_names:
            raise InputError(f"{flag}: {path} has no such variable (it holds {names})")
        if variable not in candidates:
            raise InputError(f"{flag}: {path}: {variable!r} is not a numeric array")
        a = candidates[variable]
        nd = sum(1 for s in a.shape if s > 1)
        if nd not in (2, 3):
            raise InputError(
                f"{flag}: {path}: {variable!r} of shape {_shape_text(a.shape)} "
                "is not a 2-D or 3-D image"
            )
        why = _fits(path, to_zyx(tuple(a.shape)))
        if why:
            raise InputError(f"{flag}: {path}: {variable!r} of shape {why}")
        return variable, a
    images = {k: v for k, v in candidates.items() if sum(1 for s in v.shape if s > 1) in (2, 3)}
    if not images:
        raise InputError(f"{path}: no 2-D or 3-D numeric array among the variables ({names})")
    fitting = {k: v for k, v in images.items() if _fits(path, to_zyx(tuple(v.shape))) is None}
    if not fitting:
        k, v = next(iter(images.items()))
        raise InputError(
            f"{path}: no variable fits the image geometry ("
            + "; ".join(f"{k} {_fits(path, to_zyx(tuple(v.shape)))}" for k, v in images.items())
            + ")"
        )
    if len(fitting) > 1:
        listed = ", ".join(f"{k} ({_shape_text(v.shape)})" for k, v in fitting.items())
        raise InputError(
            f"{path}: several image variables: {listed}; choose one with --variable NAME "
            f'(or "variable": "NAME" in a sidecar {sidecar_path(path).name} beside it)'
        )
    return next(iter(fitting.items()))


def read_mat(path: Path, *, spacing_mm=None, origin_mm=None, variable=None) -> Volume:
    if is_mat_v73(path):
        name, a = _read_mat_v73(path, variable)
    else:
        name, a = _read_mat_v5(path, variable)
    return volume_from_array(
        _matlab_to_zyx(a),
        path,
        spacing_mm=spacing_mm,
        origin_mm=origin_mm,
        kind="MATLAB file",
        metadata={"matlab_variable": name},
    )


def _matlab_shape_to_zyx(shape: tuple[int, ...]) -> tuple[int, ...]:
    s = tuple(int(v) for v in shape)
    if len(s) == 3:
        return (s[2], s[0], s[1])
    if len(s) == 4:
        return (s[3], s[2], s[0], s[1])
    return s


# -- .npz --------------------------------------------------------------------------------------
def _npz_arrays(path: Path) -> tuple[list[str], dict[str, Any]]:
    """Names of an ``.npz`` archive's arrays and, for the numeric ones, their shapes, from
    the ``.npy`` headers only (no array is read)."""
    import zipfile
    from types import SimpleNamespace

    names, numeric = [], {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[: -len(".npy")]
            names.append(name)
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(fh)
            if np.issubdtype(dtype, np.number) or dtype == np.dtype(bool):
                numeric[name] = SimpleNamespace(shape=tuple(shape), dtype=dtype)
    return names, numeric


def read_npz(path: Path, *, spacing_mm=None, origin_mm=None, variable=None) -> Volume:
    """A NumPy ``.npz`` archive: one array, (z, y, x) as ``.npy`` (chosen by ``variable``).

    Only the chosen array is read; the others are known from their headers.
    """
    import zipfile

    try:
        names, arrays = _npz_arrays(path)
        name, _ = _pick_variable(path, arrays, names, variable)
        with np.load(path, allow_pickle=False) as z:
            a = z[name]
    except InputError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable .npz archive ({_first_line(exc)})") from None
    return volume_from_array(
        a,
        path,
        spacing_mm=spacing_mm,
        origin_mm=origin_mm,
        kind=".npz array",
        metadata={"npz_variable": name},
    )


def _read_mat_v5(path: Path, variable: str | None = None) -> tuple[str, np.ndarray]:
    import scipy.io

    try:
        contents = scipy.io.loadmat(path, squeeze_me=False)
    except NotImplementedError:  # v7.3 without the HDF5 signature where expected
        return _read_mat_v73(path, variable)
    except Exception as exc:  # noqa: BLE001 - scipy raises ValueError, TypeError, OSError…
        raise InputError(f"{path}: not a readable MATLAB file ({_first_line(exc)})") from None
    names = [k for k in contents if not k.startswith("__")]
    numeric = {
        k: v
        for k, v in contents.items()
        if k in names
        and isinstance(v, np.ndarray)
        and (np.issubdtype(v.dtype, np.number) or v.dtype == bool)
    }
    return _pick_variable(path, numeric, names, variable, _matlab_shape_to_zyx)


def _read_mat_v73(path: Path, variable: str | None = None) -> tuple[str, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names = [k for k in f.keys() if not k.startswith("#")]
            numeric = {}
            for k in names:
                obj = f[k]
                if not isinstance(obj, h5py.Dataset):
                    continue
                cls = obj.attrs.get("MATLAB_class", b"")
                cls = cls.decode() if isinstance(cls, bytes) else str(cls)
                if cls in ("char", "cell", "struct", "function_handle"):
                    continue
                if obj.dtype.names is not None:  # complex: compound (real, imag)
                    if variable == k:
                        raise InputError(
                            f"{path}: variable {k!r} is complex; a real-valued (magnitude) image is expected"
                        )
                    continue
                if np.issubdtype(obj.dtype, np.number) or obj.dtype == bool:
                    numeric[k] = _Transposed(obj)
            name, ds = _pick_variable(path, numeric, names, variable, _matlab_shape_to_zyx)
            data = ds.ds[()]
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError/KeyError/ValueError…
        raise InputError(f"{path}: not a readable MATLAB v7.3 file ({_first_line(exc)})") from None
    # HDF5 holds MATLAB's column-major array with its dimensions reversed.
    return name, np.ascontiguousarray(data.T)


class _Transposed:
    """An h5py dataset of a v7.3 file seen with MATLAB's shape (HDF5 stores it reversed)."""

    def __init__(self, ds):
        self.ds = ds
        self.shape = tuple(ds.shape[::-1])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]
