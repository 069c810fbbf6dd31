"""MDF, the Magnetic Particle Imaging Data Format (HDF5): reconstructed images.

What the specification (v2.1, "Reconstruction Results") defines and how it is read:

``/reconstruction/data`` (Number, Q × P × S)
    Q reconstructed frames × P voxels × S (multispectral) channels; the first
    dimension is the slowest (row-major, as h5py sees it; MPIFiles.jl writes the
    same bytes as a Julia ``(S, P, Q)`` array). MDF v1 files have ``Q × P``. One
    frame and one channel make one image; with several, a choice is needed
    (``frame=N`` or ``frame="mean"``, ``channel=N``, both counted from 0), or
    :func:`read_mdf_stack` gives all frames of every channel (napari's time axis
    and one layer per channel).
``/reconstruction/size`` (Int64, 3), ``order`` (String, default ``"xyz"``)
    Voxel ``p`` runs over the grid (nx, ny, nz); the first letter of ``order``
    varies fastest.
``/reconstruction/fieldOfView``, ``fieldOfViewCenter`` (Float64, 3, m)
    ``spacing = fov / size``, ``origin = centre - fov / 2 + spacing / 2`` (centre of
    voxel 0), as MPIFiles.jl's ``loadRecoData``; mm in mpi-viewer.
``/reconstruction/positions`` (Float64, P × 3, m)
    The (x, y, z) of every voxel. Without ``size``/``fieldOfView`` the grid is
    derived from them; with them they must agree (a file whose positions do not
    lie on the stated grid is refused: it cannot be shown on one grid).
``/reconstruction/isOverscanRegion`` (Int8, P)
    Voxels the field-free region's trajectory did not cover. They are cropped away
    (the image keeps the bounding box of the covered voxels) and covered-box voxels
    that are still overscan become NaN ("outside the reconstruction"); the volume's
    ``metadata["notes"]`` says so.

A reconstruction with one voxel along one axis (``size`` = (nx, ny, 1) or any
permutation) is a 2-D image on the two other axes, in mm; no thickness is
invented. ``metadata["plane"]`` names the axes (``"xy"``, ``"xz"`` or ``"yz"``: the
image's x and y) and ``metadata["slice_position_mm"]`` the position along the third.

Acquisition metadata: ``/tracer/name`` and ``batch`` (dimension A: several tracers
are joined with ", "), ``/scanner/manufacturer`` + ``name`` (v1: ``/scanner/name``),
``/acquisition/gradient`` (T/m, J × Y × 3 × 3 or older J × 3; the strongest
entry), ``/acquisition/drivefield/strength`` (T → mT) and ``baseFrequency`` /
``divider`` (the strongest channel's frequency), ``/acquisition/numAverages``
(block averages; v1: ``/acquisition/drivefield/averages``). Strings that only hold
a placeholder ("n.a", "n.a.", "N/A", "none", "unknown", "-", empty) are unknown.
Header fields: ``/experiment/isSimulation``, ``/measurement/isBackgroundCorrected``
and the number of background frames, when the file has them.

Files without ``/reconstruction/data`` are refused with the reason (raw or
system-matrix measurements need reconstructing first); HDF5 files that are not
MDF are called "HDF5 file" in messages.

References
----------
Knopp T. et al., "MDF: Magnetic Particle Imaging Data Format", arXiv:1602.06072;
specification at https://github.com/MagneticParticleImaging/MDF (specification/MDF.tex).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.volume import Acquisition, Volume, image_from_array, validate_image_data
from mpi_viewer.io.images import display_name

MDF_EXTENSIONS = (".mdf", ".h5", ".hdf5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MDF_GROUPS = (
    "study",
    "experiment",
    "scanner",
    "acquisition",
    "tracer",
    "measurement",
    "calibration",
)
PLACEHOLDERS = {"", "n.a", "n.a.", "na", "n/a", "none", "null", "unknown", "-", "--", "?", "nan"}


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


def _is_mdf(f) -> bool:
    """An MDF file names its version or has one of the specification's groups."""
    return "version" in f or any(g in f for g in MDF_GROUPS)


def _get(f, key: str):
    if key not in f:
        return None
    try:
        return f[key][()]
    except Exception:  # noqa: BLE001 - a damaged optional field is just absent
        return None


def _text(value) -> str | None:
    """A string field (or the A values of a per-tracer field joined by ", "); placeholders → None."""
    if value is None:
        return None
    vals = np.atleast_1d(np.asarray(value, dtype=object)).ravel()
    out = []
    for v in vals:
        s = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        s = s.strip().strip("\x00").strip()
        if s.lower() in PLACEHOLDERS:
            continue
        if s not in out:
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


def _flag(value) -> bool | None:
    if value is None:
        return None
    try:
        return bool(np.asarray(value).ravel()[0])
    except (TypeError, ValueError, IndexError):
        return None


def read_acquisition(f, mode: str) -> tuple[Acquisition, dict[str, Any]]:
    """MPI acquisition parameters and header fields from an open MDF file."""
    acq: dict[str, Any] = {}
    acq["tracer"] = _text(_get(f, "tracer/name"))
    acq["tracer_lot"] = _text(_get(f, "tracer/batch"))
    # Gradient of the selection field (T/m; J × Y × 3 × 3 Jacobian): the strongest entry.
    acq["gradient_T_per_m"] = _number(_get(f, "acquisition/gradient")) or None
    strength = _get(f, "acquisition/drivefield/strength")  # T (µ0⁻¹), J × D × F
    acq["drive_amplitude_mT"] = _number(strength, 1e3)
    base = _get(f, "acquisition/drivefield/baseFrequency")  # Hz
    divider = _get(f, "acquisition/drivefield/divider")  # D × F
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
    averages = _get(f, "acquisition/numAverages")  # MDF v2
    if averages is None:
        averages = _get(f, "acquisition/drivefield/averages")  # MDF v1
    if averages is not None:
        try:
            n = int(np.asarray(averages).ravel()[0])
            if n > 0:
                acq["averages"] = n
        except (TypeError, ValueError, IndexError):
            pass
    scanner = None
    if "scanner/manufacturer" in f:  # v2: manufacturer and name
        parts = [_text(_get(f, "scanner/manufacturer")), _text(_get(f, "scanner/name"))]
        scanner = " ".join(p for p in parts if p) or None
    else:
        scanner = _text(_get(f, "scanner/name"))  # v1
    acq["scanner"] = scanner
    acq["mode"] = mode
    header: dict[str, Any] = {
        "mdf_version": _text(_get(f, "version")),
        "uuid": _text(_get(f, "uuid")),
        "time": _text(_get(f, "time")),
        "scanner_topology": _text(_get(f, "scanner/topology")),
        "scanner_facility": _text(_get(f, "scanner/facility")),
        "study": _text(_get(f, "study/name")),
        "experiment": _text(_get(f, "experiment/name")),
        "subject": _text(_get(f, "experiment/subject")),
        "tracer_vendor": _text(_get(f, "tracer/vendor")),
        "simulated": _flag(_get(f, "experiment/isSimulation")),
        "background_corrected": _flag(_get(f, "measurement/isBackgroundCorrected")),
    }
    bg = _get(f, "measurement/isBackgroundFrame")
    if bg is not None:
        header["background_frames"] = int(np.count_nonzero(np.asarray(bg)))
    return Acquisition.from_dict({k: v for k, v in acq.items() if v is not None}), {
        k: v for k, v in header.items() if v is not None
    }


# -- the grid ------------------------------------------------------------------------------------
@dataclass
class _Grid:
    size_xyz: list[int]
    order: str
    spacing_mm: np.ndarray  # (3,)
    origin_mm: np.ndarray  # (3,) centre of voxel 0
    geometry_from: str


def _grid_from_positions(path: Path, pos_mm: np.ndarray, order: str | None) -> _Grid:
    """The regular grid whose voxel centres are ``positions`` (P × 3, mm), and its order."""
    size, spacing, origin = [], [], []
    for a in range(3):
        u = np.unique(np.round(pos_mm[:, a], 6))
        size.append(len(u))
        if len(u) > 1:
            d = np.diff(u)
            if np.ptp(d) > 1e-3 * max(d.mean(), 1e-9):
                raise InputError(
                    f"{path}: /reconstruction/positions are not on a regular grid along {'xyz'[a]}; "
                    "one grid is needed to show the image"
                )
            spacing.append(float(d.mean()))
        else:
            spacing.append(0.0)
        origin.append(float(u[0]))
    if int(np.prod(size)) != len(pos_mm):
        raise InputError(
            f"{path}: /reconstruction/positions ({len(pos_mm)}) do not fill a grid of "
            f"{size[0]} × {size[1]} × {size[2]} voxels"
        )
    if order is None:  # the axis that changes between voxel 0 and voxel 1 varies fastest
        steps = []
        for a in range(3):
            stride = np.flatnonzero(np.abs(np.diff(pos_mm[:, a])) > 1e-9)
            steps.append(stride[0] + 1 if stride.size else np.inf)
        order = "".join("xyz"[a] for a in np.argsort(steps, kind="stable"))
    spacing = np.asarray(spacing)
    spacing[spacing == 0] = 1.0  # singleton axes (dropped for 2-D images)
    return _Grid(size, order, spacing, np.asarray(origin), "MDF /reconstruction/positions")


def _check_positions(path: Path, grid: _Grid, pos_mm: np.ndarray) -> None:
    idx = np.indices([grid.size_xyz["xyz".index(a)] for a in grid.order[::-1]])
    idx = idx.reshape(3, -1)  # slowest first; the last row varies fastest
    ijk = np.zeros((3, idx.shape[1]))
    for row, a in enumerate(grid.order[::-1]):
        ijk["xyz".index(a)] = idx[row]
    expected = grid.origin_mm[:, None] + ijk * grid.spacing_mm[:, None]
    off = np.abs(expected.T - pos_mm)
    tol = 0.01 * np.where(np.asarray(grid.size_xyz) > 1, grid.spacing_mm, np.inf)
    if np.any(off > np.maximum(tol, 1e-6)):
        raise InputError(
            f"{path}: /reconstruction/positions disagree with /reconstruction/size, fieldOfView and "
            f"order (up to {off.max():.3g} mm off); the file is inconsistent"
        )


def _grid(path: Path, f, n_vox: int, spacing_mm, origin_mm) -> _Grid:
    size = _get(f, "reconstruction/size")
    fov_m = _get(f, "reconstruction/fieldOfView")
    order = _text(_get(f, "reconstruction/order"))
    pos = _get(f, "reconstruction/positions")
    pos_mm = None
    if pos is not None:
        pos_mm = np.asarray(pos, dtype=float) * 1e3
        if pos_mm.ndim != 2 or pos_mm.shape[1] != 3 or pos_mm.shape[0] != n_vox:
            raise InputError(
                f"{path}: /reconstruction/positions of shape {np.shape(pos)}; "
                f"{n_vox} × 3 (x, y, z in m) expected"
            )
    if order is not None and sorted(order.lower()) != ["x", "y", "z"]:
        raise InputError(f"{path}: /reconstruction/order {order!r} is not a permutation of 'xyz'")
    order = order.lower() if order else None
    if size is None or np.asarray(size).size != 3:
        if pos_mm is not None:
            return _grid_from_positions(path, pos_mm, order)
        raise InputError(
            f"{path}: MDF file without a 3-value /reconstruction/size (nx, ny, nz) or positions"
        )
    size_xyz = [int(s) for s in np.asarray(size).ravel()]
    if min(size_xyz) < 1:
        raise InputError(f"{path}: /reconstruction/size {tuple(size_xyz)} has an empty axis")
    order = order or "xyz"
    if fov_m is not None and np.asarray(fov_m).size == 3:
        fov_mm = np.asarray(fov_m, dtype=float).ravel() * 1e3
        centre_m = _get(f, "reconstruction/fieldOfViewCenter")
        centre_mm = (
            np.zeros(3) if centre_m is None else np.asarray(centre_m, dtype=float).ravel()[:3] * 1e3
        )
        spacing = fov_mm / np.asarray(size_xyz, dtype=float)
        single = np.asarray(size_xyz) == 1
        if np.any(~single & ~(spacing > 0)) or not np.all(np.isfinite(spacing)):
            raise InputError(
                f"{path}: /reconstruction/fieldOfView {tuple(fov_m)} m gives no positive voxel size"
            )
        spacing = np.where(single & ~(spacing > 0), 1.0, spacing)
        origin = centre_mm - np.asarray(size_xyz) * spacing / 2 + spacing / 2  # c - fov/2 + s/2
        grid = _Grid(size_xyz, order, spacing, origin, "MDF /reconstruction")
    elif pos_mm is not None:
        grid = _grid_from_positions(path, pos_mm, order)
        if grid.size_xyz != size_xyz:
            raise InputError(
                f"{path}: /reconstruction/positions form a {grid.size_xyz} grid but "
                f"/reconstruction/size says {size_xyz}"
            )
        return grid
    else:
        from mpi_viewer.io._formats._arrays import array_geometry

        keep = [a for a in range(3) if size_xyz[a] > 1]
        nd = 2 if len(keep) == 2 else 3
        geo = array_geometry(
            path,
            nd,
            spacing_mm=spacing_mm,
            origin_mm=origin_mm,
            kind="MDF file without /reconstruction/fieldOfView",
        )
        sp = list(geo["spacing_mm"])
        org = list(geo["origin_mm"])
        if nd == 2:  # a 2-D image: its x, y are the two non-singleton scanner axes
            sp3, org3 = [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]
            for i, a in enumerate(keep):
                sp3[a], org3[a] = sp[i], org[i]
            sp, org = sp3, org3
        grid = _Grid(size_xyz, order, np.asarray(sp), np.asarray(org), geo["geometry_from"])
    if pos_mm is not None:
        _check_positions(path, grid, pos_mm)
    return grid


def _to_zyx(flat: np.ndarray, grid: _Grid) -> np.ndarray:
    """``(..., P)`` voxel vectors → ``(..., nz, ny, nx)``."""
    n = dict(zip("xyz", grid.size_xyz, strict=True))
    slow_to_fast = grid.order[::-1]  # the first letter of ``order`` varies fastest
    lead = flat.shape[:-1]
    g = flat.reshape(*lead, *[n[a] for a in slow_to_fast])
    k = len(lead)
    return np.transpose(g, [*range(k), *(k + slow_to_fast.index(a) for a in "zyx")])


# -- reading -------------------------------------------------------------------------------------
@dataclass
class MDFStack:
    """Every frame of every channel of an MDF reconstruction, on one grid.

    ``data`` is (Q, S, nz, ny, nx) — or (Q, S, ny, nx) for a 2-D reconstruction —
    after overscan cropping; ``volume(frame, channel)`` makes one image of it.
    """

    path: Path
    data: np.ndarray
    spacing_mm: list[float]
    origin_mm: list[float]
    acquisition: Acquisition
    metadata: dict[str, Any] = field(default_factory=dict)
    selected_frame: int | str | None = None  # read one frame (or the mean) only
    total_frames: int | None = None

    @property
    def n_frames(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.data.shape[1])

    def volume(self, frame: int | str | None = None, channel: int | None = None) -> Volume:
        """One image: ``frame`` (index from 0, or ``"mean"``) of ``channel`` (from 0).

        Raises
        ------
        InputError
            Several frames or channels and no choice, or a choice out of range.
        """
        if self.selected_frame is not None:  # read selectively: the one frame held
            frame = self.selected_frame
            c = _choose_channel(self.path, channel, self.n_channels)
            meta = dict(self.metadata)
            if (self.total_frames or 1) > 1 or frame != 0:
                meta["frame"] = frame
                meta["frames"] = self.total_frames
            if self.n_channels > 1 or channel not in (None, 0):
                meta["channel"] = c
                meta["channels"] = self.n_channels
            return _volume(self.path, np.ascontiguousarray(self.data[0, c]), self, meta)
        if frame is None:
            if self.n_frames > 1:
                raise InputError(_choose_frame_message(self.path, self.n_frames))
            frame = 0
        c = _choose_channel(self.path, channel, self.n_channels)
        if _is_mean(frame):
            with np.errstate(invalid="ignore"):
                image = (
                    self.data[:, c]
                    .mean(axis=0, dtype=np.float64)
                    .astype(np.result_type(self.data.dtype, np.float32))
                )
            label = "mean"
        else:
            q = _index(self.path, frame, self.n_frames, "--frame", "frame")
            image = self.data[q, c]
            label = q
        meta = dict(self.metadata)
        if self.n_frames > 1 or frame not in (None, 0):
            meta["frame"] = label
            meta["frames"] = self.n_frames
        if self.n_channels > 1 or channel not in (None, 0):
            meta["channel"] = c
            meta["channels"] = self.n_channels
        return _volume(self.path, np.ascontiguousarray(image), self, meta)


def _is_mean(frame) -> bool:
    return isinstance(frame, str) and frame.strip().lower() == "mean"


def _choose_frame_message(path: Path, n: int) -> str:
    return (
        f"{path}: {n} reconstructed frames; choose one with --frame N (0…{n - 1}) "
        "or average them with --frame mean"
    )


def _read_frames(ds, frame, q: int, p: int, s: int, path: Path) -> tuple[np.ndarray, Any]:
    """(frames × P × S data, label): all frames, one frame, or their mean (read frame by
    frame, accumulated in float64), reading from the file only what is needed."""
    try:
        if frame == "all" or ds.ndim == 1:
            return np.asarray(ds[()]).reshape(q, p, s), None
        if frame is None:
            if q > 1:
                raise InputError(_choose_frame_message(path, q))
            frame = 0
        if _is_mean(frame):
            acc = np.zeros((p, s), np.float64)
            step = max(1, (64 << 20) // max(1, p * s * ds.dtype.itemsize))  # ~64 MiB at a time
            for k in range(0, q, step):
                block = np.asarray(ds[k : k + step]).reshape(-1, p, s)
                acc += block.sum(axis=0, dtype=np.float64)
            out_dtype = np.result_type(ds.dtype, np.float32)
            return (acc / q).astype(out_dtype)[None], "mean"
        k = _index(path, frame, q, "--frame", "frame")
        return np.asarray(ds[k]).reshape(1, p, s), k
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated datasets raise OSError
        raise InputError(
            f"{path}: /reconstruction/data cannot be read ({str(exc).splitlines()[0][:160]})"
        ) from None


def _index(path: Path, value, n: int, flag: str, what: str) -> int:
    try:
        i = int(str(value).strip()) if not isinstance(value, (int, np.integer)) else int(value)
    except ValueError:
        raise InputError(f"{flag} {value!r}: expected a {what} number (from 0) or 'mean'") from None
    if not 0 <= i < n:
        raise InputError(f"{flag} {i}: {path} has {n} {what}{'s' if n != 1 else ''} (0…{n - 1})")
    return i


def _choose_channel(path: Path, channel, n: int) -> int:
    if channel is None:
        if n > 1:
            raise InputError(
                f"{path}: {n} reconstructed (multispectral) channels; choose one with "
                f"--channel N (0…{n - 1})"
            )
        return 0
    return _index(path, channel, n, "--channel", "channel")


def _volume(path: Path, image: np.ndarray, stack: MDFStack, meta: dict[str, Any]) -> Volume:
    value_range = validate_image_data(image, str(path))
    img = image_from_array(image, spacing_mm=stack.spacing_mm, origin_mm=stack.origin_mm)
    vol = Volume(
        image=img,
        modality="MPI",
        units="a.u.",
        acquisition=Acquisition.from_dict(stack.acquisition.to_dict()),
        metadata=meta,
        name=display_name(path),
    )
    vol._range = value_range
    return vol


def _open(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError for bad/truncated files
        first = str(exc).strip().splitlines()
        kind = "MDF (HDF5)" if path.name.lower().endswith(".mdf") else "HDF5"
        raise InputError(
            f"{path}: not a readable {kind} file ({(first[0] if first else type(exc).__name__)[:160]})"
        ) from None


def _refuse_without_reconstruction(path: Path, f) -> None:
    if not _is_mdf(f):
        names = ", ".join(sorted(f.keys())[:8]) or "nothing"
        raise InputError(
            f"{path}: HDF5 file that is not MDF (no /reconstruction/data; it holds {names}); "
            "mpi-viewer reads MDF reconstructions from HDF5"
        )
    if "measurement/data" in f:
        shape = f["measurement/data"].shape
        what = (
            "a system-matrix (calibration) measurement"
            if "calibration" in f
            else "raw MPI measurements"
        )
        raise InputError(
            f"{path}: MDF file with {what} (/measurement/data {tuple(shape)}) but no "
            "/reconstruction; reconstruct it first (e.g. MPIReco.jl) and open the reconstruction"
        )
    raise InputError(
        f"{path}: MDF file without /reconstruction/data (no image); a reconstructed image is expected"
    )


def read_mdf_stack(
    path: Path, *, spacing_mm=None, origin_mm=None, frame: int | str | None = "all"
) -> MDFStack:
    """Frames and channels of an MDF reconstruction (see the module docstring).

    ``frame="all"`` reads every frame; an index or ``"mean"`` reads only what that
    needs (one frame, or the frames one at a time for the mean); ``None`` reads the
    only frame and refuses several.
    """
    path = Path(path)
    f = _open(path)
    try:
        if "reconstruction/data" not in f:
            _refuse_without_reconstruction(path, f)
        ds = f["reconstruction/data"]
        if ds.dtype.names is not None or np.issubdtype(ds.dtype, np.complexfloating):
            raise InputError(f"{path}: complex reconstruction; a real-valued image is expected")
        if not (np.issubdtype(ds.dtype, np.number) or ds.dtype == bool):
            raise InputError(f"{path}: /reconstruction/data of type {ds.dtype}; numbers expected")
        shape = tuple(ds.shape)
        if len(shape) == 3:
            q, p, s = shape  # v2: Q × P × S
        elif len(shape) == 2:
            (q, p), s = shape, 1  # v1: Q × P
        elif len(shape) == 1:
            (p,), q, s = shape, 1, 1
        else:
            raise InputError(
                f"{path}: /reconstruction/data of shape {shape}; frames × voxels × channels expected"
            )
        grid = _grid(path, f, p, spacing_mm, origin_mm)
        n_vox = int(np.prod(grid.size_xyz))
        if n_vox != p:
            raise InputError(
                f"{path}: /reconstruction/data of shape {shape} has {p} voxels per frame but "
                f"/reconstruction/size {tuple(grid.size_xyz)} gives {n_vox}"
            )
        data, selected = _read_frames(ds, frame, q, p, s, path)
        data = np.moveaxis(data, 2, 1)  # → Q × S × P
        if data.dtype == bool:
            data = data.astype(np.uint8)
        overscan = _get(f, "reconstruction/isOverscanRegion")
        singles = [a for a in range(3) if grid.size_xyz[a] == 1]
        if len(singles) >= 2:
            raise InputError(
                f"{path}: 1-D reconstruction (/reconstruction/size {tuple(grid.size_xyz)}); "
                "a 2-D or 3-D image is expected"
            )
        mode = "2D" if singles else "3D"
        acquisition, header = read_acquisition(f, mode)
    finally:
        f.close()
    zyx = _to_zyx(data, grid)  # Q × S × nz × ny × nx
    spacing = np.asarray(grid.spacing_mm, dtype=float)
    origin = np.asarray(grid.origin_mm, dtype=float)
    notes: list[str] = []
    if overscan is not None:
        mask = np.asarray(overscan).ravel()
        if mask.size != p:
            raise InputError(
                f"{path}: /reconstruction/isOverscanRegion has {mask.size} values for {p} voxels"
            )
        zyx, origin, note = _crop_overscan(path, zyx, _to_zyx(mask != 0, grid), spacing, origin)
        if note:
            notes.append(note)
    header["geometry_from"] = grid.geometry_from
    if singles:
        a_drop = singles[0]
        keep = [a for a in range(3) if a != a_drop]  # image x, y = these scanner axes
        zyx = zyx.squeeze(axis=2 + (2 - a_drop))  # numpy axes after Q, S are z, y, x
        header["plane"] = "".join("xyz"[a] for a in keep)
        header["slice_position_mm"] = float(origin[a_drop])
        spacing_out, origin_out = spacing[keep], origin[keep]
    else:
        spacing_out, origin_out = spacing, origin
    n_inplane = np.asarray(zyx.shape[2:][::-1])
    header["fov_mm"] = [float(v) for v in n_inplane * spacing_out]
    if q > 1:
        header["frames"] = q
    if s > 1:
        header["channels"] = s
    if header.get("background_corrected") is False:
        notes.append(
            "/measurement/isBackgroundCorrected is 0: the data were not background-corrected"
        )
    if header.get("simulated"):
        notes.append("/experiment/isSimulation is 1: the file holds simulated data")
    if notes:
        header["notes"] = notes
    return MDFStack(
        selected_frame=selected,
        total_frames=q,
        path=path,
        data=zyx,
        spacing_mm=[float(v) for v in spacing_out],
        origin_mm=[float(v) for v in origin_out],
        acquisition=acquisition,
        metadata=header,
    )


def _crop_overscan(path, zyx, over_zyx, spacing, origin):
    """Crop to the covered voxels' bounding box; overscan voxels left inside become NaN."""
    covered = ~over_zyx
    n_over = int(over_zyx.sum())
    if n_over == 0:
        return zyx, origin, None
    if not covered.any():
        raise InputError(f"{path}: /reconstruction/isOverscanRegion marks every voxel as overscan")
    box = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        hit = np.flatnonzero(covered.any(axis=other))
        box.append((int(hit[0]), int(hit[-1]) + 1))
    sl = tuple(slice(a, b) for a, b in box)
    before = zyx.shape[2:]
    out = zyx[(slice(None), slice(None), *sl)]
    inside = over_zyx[sl]
    n_inside = int(inside.sum())
    if n_inside:
        out = out.astype(np.result_type(out.dtype, np.float32), copy=True)
        out[:, :, inside] = np.nan
    else:
        out = np.ascontiguousarray(out)
    start_zyx = np.asarray([b[0] for b in box], dtype=float)
    origin = origin + start_zyx[::-1] * spacing  # (x, y, z)
    after = out.shape[2:]
    dims = lambda s: " × ".join(str(v) for v in s[::-1] if v > 1) or "1"  # noqa: E731
    note = (
        f"overscan region (/reconstruction/isOverscanRegion, {n_over} voxels): image cropped "
        f"from {dims(before)} to the covered {dims(after)} voxels"
        + (f"; {n_inside} overscan voxels inside it masked (NaN)" if n_inside else "")
    )
    return out, origin, note


def read_mdf(path: Path, *, spacing_mm=None, origin_mm=None, frame=None, channel=None) -> Volume:
    """One image of an MDF reconstruction: ``frame`` (from 0, or ``"mean"``) of ``channel``."""
    stack = read_mdf_stack(path, spacing_mm=spacing_mm, origin_mm=origin_mm, frame=frame)
    return stack.volume(frame, channel)
