"""MDF v2 reconstructions laid out as the specification says, on a real scanner's metadata.

Each file is built in the test: the ``/study``, ``/experiment``, ``/scanner``,
``/tracer`` and ``/acquisition`` groups (and root ``time``/``uuid``/``version``) are
copied from the real MDF 2.0 file in ``../shared/data/real/mdf/systemMatrix.mdf``
(read only, never copied into the repository), and a synthetic ``/reconstruction``
is added: ``data`` is Q frames × P voxels × S channels (row-major, as the
specification's "leading dimension is the slowest"), voxels x fastest unless
``order`` says otherwise. Values encode their own frame, channel and voxel, so every
reading is checked against the truth written.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mpi_viewer.cli import main
from mpi_viewer.errors import InputError
from mpi_viewer.io.images import read_volume, read_volume_stacks

REAL_MDF = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "data"
    / "real"
    / "mdf"
    / "systemMatrix.mdf"
)
if not REAL_MDF.is_file():
    REAL_MDF = Path("/work/shared/data/real/mdf/systemMatrix.mdf")
pytestmark = pytest.mark.skipif(
    not REAL_MDF.is_file(), reason="../shared/data/real/mdf/systemMatrix.mdf is absent"
)


def spec_mdf(
    path: Path,
    data_qps: np.ndarray,
    *,
    size_xyz,
    fov_m=None,
    centre_m=(0.0, 0.0, 0.0),
    order: str | None = None,
    overscan: np.ndarray | None = None,
    positions_m: np.ndarray | None = None,
    extra: dict | None = None,
) -> Path:
    """An MDF v2 reconstruction file on the real file's metadata (see the module docstring)."""
    import h5py

    with h5py.File(REAL_MDF, "r") as src, h5py.File(path, "w") as f:
        for group in ("study", "experiment", "scanner", "tracer", "acquisition"):
            src.copy(src[group], f, name=group)
        for key in ("time", "uuid", "version"):
            f[key] = src[key][()]
        f["reconstruction/data"] = np.asarray(data_qps, dtype=np.float32)
        if size_xyz is not None:
            f["reconstruction/size"] = np.asarray(size_xyz, dtype=np.int64)
        if fov_m is not None:
            f["reconstruction/fieldOfView"] = np.asarray(fov_m, dtype=float)
            f["reconstruction/fieldOfViewCenter"] = np.asarray(centre_m, dtype=float)
        if order is not None:
            f["reconstruction/order"] = order
        if overscan is not None:
            f["reconstruction/isOverscanRegion"] = np.asarray(overscan, dtype=np.int8)
        if positions_m is not None:
            f["reconstruction/positions"] = np.asarray(positions_m, dtype=float)
        for k, v in (extra or {}).items():
            f[k] = v
    return path


def frames_channels(zyx: np.ndarray, q: int, s: int) -> np.ndarray:
    """Q × P × S data: frame k, channel c hold ``zyx * (k + 1) + 1000 * c`` (x fastest)."""
    flat = np.ascontiguousarray(zyx, dtype=np.float64).reshape(-1)
    return np.stack(
        [np.stack([flat * (k + 1) + 1000.0 * c for c in range(s)], axis=-1) for k in range(q)]
    )


def encoded(shape_zyx) -> np.ndarray:
    z, y, x = np.indices(shape_zyx)
    return (100.0 * x + 10 * y + z).astype(np.float64)


# -- metadata ------------------------------------------------------------------------------------
def test_real_metadata_read_as_the_specification_defines(tmp_path):
    zyx = encoded((3, 4, 5))
    path = spec_mdf(
        tmp_path / "r.mdf",
        frames_channels(zyx, 1, 1),
        size_xyz=(5, 4, 3),
        fov_m=(0.01, 0.008, 0.006),
    )
    vol = read_volume(path)
    acq = vol.acquisition
    assert acq.averages == 1000  # /acquisition/numAverages
    assert acq.drive_amplitude_mT == pytest.approx(5.0)  # 0.005 T
    assert acq.drive_frequency_kHz == pytest.approx(125e6 / 4864 / 1e3)  # 25.7 kHz
    # "n.a" placeholders are unknown, not names
    assert acq.tracer is None and acq.tracer_lot is None and acq.scanner is None
    assert acq.gradient_T_per_m is None  # all zeros: no selection field stated
    assert acq.mode == "3D"
    meta = vol.metadata
    assert meta["scanner_topology"] == "FFP" and meta["study"] == "TestTobi"
    assert meta["mdf_version"] == "2.0" and meta["simulated"] is False
    assert "subject" not in meta and "scanner_facility" not in meta  # "n.a." / "n.a"
    np.testing.assert_array_equal(vol.array, zyx.astype(np.float32))


def test_background_correction_flag_and_real_names(tmp_path):
    zyx = encoded((2, 3, 4))
    path = spec_mdf(
        tmp_path / "r.mdf",
        frames_channels(zyx, 1, 1),
        size_xyz=(4, 3, 2),
        fov_m=(0.004, 0.003, 0.002),
        extra={"measurement/isBackgroundCorrected": np.int8(1)},
    )
    import h5py

    with h5py.File(path, "r+") as f:
        for key, value in (
            ("tracer/name", "perimag"),
            ("tracer/batch", "L-2291"),
            ("scanner/name", "MPI 25/20 FF"),
        ):
            del f[key]
            f[key] = value
        del f["scanner/manufacturer"]
        f["scanner/manufacturer"] = "Bruker"
    vol = read_volume(path)
    assert vol.metadata["background_corrected"] is True and "notes" not in vol.metadata
    assert vol.acquisition.tracer == "perimag" and vol.acquisition.tracer_lot == "L-2291"
    assert vol.acquisition.scanner == "Bruker MPI 25/20 FF"


# -- frames and channels ------------------------------------------------------------------------
def test_frames_need_a_choice_and_give_frame_or_mean(tmp_path):
    zyx = encoded((3, 4, 5))
    path = spec_mdf(
        tmp_path / "dyn.mdf",
        frames_channels(zyx, 4, 1),
        size_xyz=(5, 4, 3),
        fov_m=(0.01, 0.008, 0.006),
    )
    with pytest.raises(
        InputError, match=r"4 reconstructed frames; choose one with --frame N \(0…3\) or"
    ):
        read_volume(path)
    np.testing.assert_allclose(read_volume(path, frame=2).array, 3 * zyx)
    np.testing.assert_allclose(read_volume(path, frame="mean").array, 2.5 * zyx, rtol=1e-6)
    assert read_volume(path, frame="mean").metadata["frame"] == "mean"
    with pytest.raises(InputError, match=r"--frame 7: .* has 4 frames \(0…3\)"):
        read_volume(path, frame=7)


def test_channels_are_the_last_dimension_and_need_a_choice(tmp_path):
    zyx = encoded((2, 3, 4))
    path = spec_mdf(
        tmp_path / "multi.mdf",
        frames_channels(zyx, 1, 2),
        size_xyz=(4, 3, 2),
        fov_m=(0.004, 0.003, 0.002),
    )
    with pytest.raises(
        InputError, match=r"2 reconstructed \(multispectral\) channels; choose one with --channel N"
    ):
        read_volume(path)
    np.testing.assert_array_equal(read_volume(path, channel=0).array, zyx.astype(np.float32))
    np.testing.assert_array_equal(
        read_volume(path, channel=1).array, (zyx + 1000).astype(np.float32)
    )
    with pytest.raises(InputError, match="--channel 2: .* has 2 channels"):
        read_volume(path, channel=2)
    with pytest.raises(InputError, match="--frame: .* not an MDF reconstruction"):
        np.save(tmp_path / "a.npy", np.ones((3, 3)))
        read_volume(tmp_path / "a.npy", spacing_mm=(1, 1), frame=0)


def test_stacks_for_napari_time_axis_and_one_entry_per_channel(tmp_path):
    zyx = encoded((2, 3, 4))
    path = spec_mdf(
        tmp_path / "dyn.mdf",
        frames_channels(zyx, 3, 2),
        size_xyz=(4, 3, 2),
        fov_m=(0.004, 0.003, 0.002),
    )
    stacks = read_volume_stacks(path)
    assert len(stacks) == 2
    for c, (vol, frames) in enumerate(stacks):
        assert frames.shape == (3, 2, 3, 4)
        for k in range(3):
            np.testing.assert_array_equal(frames[k], (zyx * (k + 1) + 1000 * c).astype(np.float32))
        assert vol.name == f"dyn [channel {c}]" and vol.modality == "MPI"
        assert vol.value_range() == (1000 * c, 3 * zyx.max() + 1000 * c)


def test_napari_reader_time_axis_and_channel_layers(tmp_path):
    from napari.components import ViewerModel
    from npe2 import PluginManager

    PluginManager.instance().discover()
    zyx = encoded((2, 3, 4))
    path = spec_mdf(
        tmp_path / "dyn.mdf",
        frames_channels(zyx, 3, 2),
        size_xyz=(4, 3, 2),
        fov_m=(0.004, 0.003, 0.002),
        centre_m=(0.01, 0, 0),
    )
    viewer = ViewerModel()
    layers = viewer.open(str(path), plugin="mpi-viewer")
    assert [lyr.name for lyr in layers] == ["dyn [channel 0]", "dyn [channel 1]"]
    lyr = layers[1]
    assert lyr.data.shape == (3, 2, 3, 4) and lyr.metadata["mpi_viewer"]["frames"] == 3
    # frame 2, voxel (z=1, y=2, x=3): value and physical place (mm, z y x)
    assert lyr.data[2, 1, 2, 3] == pytest.approx(3 * zyx[1, 2, 3] + 1000)
    np.testing.assert_allclose(lyr.data_to_world((2, 1, 2, 3)), [2, 0.5, 1.0, 10 - 2 + 3.5])


# -- 2-D reconstructions ---------------------------------------------------------------------------
def test_two_d_reconstruction_is_a_two_d_image(tmp_path):
    zyx = encoded((1, 40, 40))  # as MPIFiles' reco test: 40 × 40 × 1, FOV 44 × 44 × 1 mm
    path = spec_mdf(
        tmp_path / "r2d.mdf",
        frames_channels(zyx, 1, 1),
        size_xyz=(40, 40, 1),
        fov_m=(0.044, 0.044, 0.001),
    )
    vol = read_volume(path)
    assert vol.ndim == 2 and vol.shape == (40, 40) and vol.acquisition.mode == "2D"
    np.testing.assert_allclose(vol.spacing_mm, [1.1, 1.1])
    assert vol.voxel_volume_mm == pytest.approx(1.21)  # an area, mm²: no 1 mm thickness
    np.testing.assert_allclose(vol.origin_mm, [-22 + 0.55, -22 + 0.55])
    assert vol.metadata["plane"] == "xy" and vol.metadata["slice_position_mm"] == 0


def test_two_d_reconstruction_in_the_xz_plane(tmp_path):
    zyx = encoded((6, 1, 8))
    path = spec_mdf(
        tmp_path / "xz.mdf",
        frames_channels(zyx, 1, 1),
        size_xyz=(8, 1, 6),
        fov_m=(0.016, 0.002, 0.012),
        centre_m=(0.0, 0.003, 0.001),
    )
    vol = read_volume(path)
    assert vol.ndim == 2 and vol.shape == (6, 8)  # rows: scanner z, columns: scanner x
    assert vol.metadata["plane"] == "xz" and vol.metadata["slice_position_mm"] == pytest.approx(3.0)
    np.testing.assert_array_equal(vol.array, zyx[:, 0, :].astype(np.float32))
    np.testing.assert_allclose(vol.spacing_mm, [2, 2])
    np.testing.assert_allclose(vol.origin_mm, [-8 + 1, 1 - 6 + 1])  # (x, z) of voxel 0


def test_quantify_two_d_mdf_with_a_two_value_seed(tmp_path, capsys):
    y, x = np.mgrid[0:40, 0:40]
    blob = 100.0 * np.exp(-((x - 20) ** 2 + (y - 14) ** 2) / (2 * 1.5**2))
    path = spec_mdf(
        tmp_path / "r2d.mdf",
        frames_channels(blob[None], 1, 1),
        size_xyz=(40, 40, 1),
        fov_m=(0.04, 0.04, 0.001),
    )
    # voxel (x=20, y=14) has its centre at -20 + 0.5 + 20 = 0.5 mm, -20 + 0.5 + 14 = -5.5 mm
    out = tmp_path / "r.csv"
    assert main(["quantify", str(path), "--seed=0.5,-5.5", "-o", str(out)]) == 0
    [row] = list(csv.DictReader(out.open(encoding="utf-8")))
    assert "area_mm2" in row and not any(k.endswith("_mm3") for k in row)  # mm², no invented mm³
    assert float(row["peak_au"]) == pytest.approx(100.0, rel=1e-5)
    assert "seed_z_mm" not in row


# -- overscan -------------------------------------------------------------------------------------
def test_overscan_region_is_cropped_and_masked_and_said(tmp_path, capsys):
    zyx = encoded((4, 6, 8))
    over = np.zeros(zyx.shape, bool)
    over[:, :, :2] = True  # two columns of x not covered
    over[:, 5, :] = True  # nor the last row of y
    over[0, 0, 2] = True  # one voxel inside the covered box
    path = spec_mdf(
        tmp_path / "o.mdf",
        frames_channels(zyx, 1, 1),
        size_xyz=(8, 6, 4),
        fov_m=(0.008, 0.006, 0.004),
        overscan=over.reshape(-1),
    )
    full = spec_mdf(
        tmp_path / "full.mdf",
        frames_channels(zyx, 1, 1),
        size_xyz=(8, 6, 4),
        fov_m=(0.008, 0.006, 0.004),
    )
    vol, ref = read_volume(path), read_volume(full)
    assert vol.shape == (4, 5, 6)
    # the same voxel keeps its value and its physical place
    np.testing.assert_allclose(
        vol.index_to_physical([[1, 2, 3]]), ref.index_to_physical([[1, 2, 5]])
    )
    assert vol.array[1, 2, 3] == ref.array[1, 2, 5]
    assert np.isnan(vol.array[0, 0, 0]) and np.isnan(vol.array).sum() == 1
    [note] = vol.metadata["notes"]
    assert "cropped from 8 × 6 × 4 to the covered 6 × 5 × 4 voxels" in note
    assert "1 overscan voxels inside it masked (NaN)" in note
    # the command line says so too (stderr), and measures on the covered voxels
    z, y, x = np.indices(zyx.shape)
    blob = 100.0 * np.exp(-((x - 5) ** 2 + (y - 2) ** 2 + (z - 2) ** 2) / (2 * 0.8**2))
    src = spec_mdf(
        tmp_path / "src.mdf",
        frames_channels(blob, 1, 1),
        size_xyz=(8, 6, 4),
        fov_m=(0.008, 0.006, 0.004),
        overscan=over.reshape(-1),
    )
    out = tmp_path / "r.csv"
    # voxel (x=5, y=2, z=2): (-4 + 0.5 + 5, -3 + 0.5 + 2, -2 + 0.5 + 2) mm
    code = main(["quantify", str(src), "--seed=1.5,-0.5,0.5", "-o", str(out), "--no-split"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"mpi-viewer: note: {src}: overscan region" in err
    [row] = list(csv.DictReader(out.open(encoding="utf-8")))
    assert float(row["peak_au"]) == pytest.approx(100.0, rel=1e-4)


# -- positions ------------------------------------------------------------------------------------
def test_grid_from_positions_and_inconsistent_positions_refused(tmp_path):
    zyx = encoded((2, 3, 4))
    z, y, x = np.indices(zyx.shape)
    pos_m = np.stack([x, y, z], axis=-1).reshape(-1, 3) * 0.0005 + [0.001, 0.002, 0.003]
    path = spec_mdf(
        tmp_path / "p.mdf", frames_channels(zyx, 1, 1), size_xyz=None, positions_m=pos_m
    )
    vol = read_volume(path)
    np.testing.assert_array_equal(vol.array, zyx.astype(np.float32))
    np.testing.assert_allclose(vol.spacing_mm, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(vol.origin_mm, [1, 2, 3])
    # positions that contradict size and fieldOfView
    bad = spec_mdf(
        tmp_path / "bad.mdf",
        frames_channels(zyx, 1, 1),
        size_xyz=(4, 3, 2),
        fov_m=(0.004, 0.003, 0.002),
        positions_m=pos_m,
    )
    with pytest.raises(InputError, match="positions disagree with /reconstruction/size"):
        read_volume(bad)


# -- refusals -------------------------------------------------------------------------------------
def test_measurement_only_and_plain_hdf5_refused_with_the_reason(tmp_path):
    import h5py

    with pytest.raises(
        InputError,
        match=r"system-matrix \(calibration\) measurement .* no /reconstruction; reconstruct it first",
    ):
        read_volume(REAL_MDF)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["images/stack"] = np.ones((3, 3))
    with pytest.raises(
        InputError, match=r"HDF5 file that is not MDF \(no /reconstruction/data; it holds images\)"
    ) as exc:
        read_volume(tmp_path / "other.h5")
    assert "MDF file" not in str(exc.value)


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "mpi_viewer.cli", *map(str, args)],
        capture_output=True,
        encoding="utf-8",
        cwd=cwd,
    )


def test_cli_frame_channel_flags_exit_2_with_one_line(tmp_path, capsys):
    zyx = np.zeros((3, 5, 5))
    zyx[1, 2, 2] = 50.0
    path = spec_mdf(
        tmp_path / "dyn.mdf",
        frames_channels(zyx, 3, 2),
        size_xyz=(5, 5, 3),
        fov_m=(0.005, 0.005, 0.003),
    )
    out = tmp_path / "r.csv"
    # as typed in a shell: one real process
    r = _cli("quantify", path, "--seed=0,0,0", "-o", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"mpi-viewer: error: {path}: 3 reconstructed frames; choose one with --frame N (0…2) "
        "or average them with --frame mean"
    ]
    for args, needle in [
        (
            ["--frame", "1"],
            "2 reconstructed (multispectral) channels; choose one with --channel N (0…1)",
        ),
        (
            ["--frame", "x", "--channel", "0"],
            "--frame: 'x': expected a frame number (from 0) or 'mean'",
        ),
        (["--frame", "5", "--channel", "0"], "--frame 5:"),
        (["--frame", "mean", "--channel", "-1"], "--channel: '-1': channels are counted from 0"),
        (["--frame", "0", "--channel", "0", "--variable", "v"], "--variable:"),
    ]:
        try:
            code = main(["quantify", str(path), "--seed=0,0,0", "-o", str(out), *args])
        except SystemExit as exc:  # argparse's own one-line usage error
            code = exc.code
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and needle in lines[0], (args, err)
        assert not out.exists()


def test_cli_frame_mean_and_session_replay(tmp_path, capsys):
    z, y, x = np.indices((9, 9, 9))
    blob = 50.0 * np.exp(-((x - 4) ** 2 + (y - 4) ** 2 + (z - 4) ** 2) / (2 * 1.2**2))
    flat = blob.reshape(-1)
    # frame k, channel c: (k + 1)·(c + 1)·blob
    data = np.stack([np.stack([flat * (k + 1) * (c + 1) for c in range(2)], -1) for k in range(3)])
    path = spec_mdf(tmp_path / "dyn.mdf", data, size_xyz=(9, 9, 9), fov_m=(0.009, 0.009, 0.009))
    out, session = tmp_path / "r.csv", tmp_path / "s.json"
    args = ["quantify", str(path), "--seed=0,0,0", "--frame", "mean", "--channel", "1"]
    assert main([*args, "-o", str(out), "--save-session", str(session)]) == 0
    [row] = list(csv.DictReader(out.open(encoding="utf-8")))
    # mean over frames of channel 1: 2 × 2 × 50 at the source's centre voxel (0, 0, 0) mm
    assert float(row["peak_au"]) == pytest.approx(200.0, rel=1e-5)
    doc = json.loads(session.read_text(encoding="utf-8"))
    [mpi] = [i for i in doc["inputs"] if i["role"] == "mpi"]
    assert mpi["selection"] == {"frame": "mean", "channel": 1}
    capsys.readouterr()
    assert main(["replay", str(session)]) == 0
    assert "every number matches" in capsys.readouterr().out


def test_calibrate_on_a_chosen_frame_of_a_two_d_mdf(tmp_path, capsys):
    from mpi_viewer.calibration.record import load_calibration

    # three phantoms on a 2-D reconstruction (1 mm pixels): 100 a.u. peak per µg Fe,
    # Gaussian σ = 1.5 mm; frame 1 is twice frame 0
    y, x = np.mgrid[0:48, 0:48]
    phantoms = [("p1", 12, 12, 1.0), ("p2", 34, 14, 2.0), ("p4", 22, 34, 4.0)]
    img = sum(
        100.0 * ug * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 1.5**2))
        for _, cx, cy, ug in phantoms
    )
    path = spec_mdf(
        tmp_path / "cal.mdf",
        frames_channels(img[None], 2, 1),
        size_xyz=(48, 48, 1),
        fov_m=(0.048, 0.048, 0.001),
    )
    ph = tmp_path / "ph.csv"
    ph.write_text(
        "name,x,y,z,iron_ug\n"
        + "".join(f"{n},{cx - 23.5},{cy - 23.5},0,{ug}\n" for n, cx, cy, ug in phantoms),
        encoding="utf-8",
    )
    slopes = []
    for frame in ("0", "1"):
        out = tmp_path / f"cal{frame}.json"
        rc = main(["calibrate", str(path), "--phantoms", str(ph), "--frame", frame, "-o", str(out)])
        assert rc == 0, capsys.readouterr().err
        slopes.append(load_calibration(out).fit.slope)
    # a 2-D Gaussian holds half its integral (2π σ² A) inside its half-maximum contour
    assert slopes[0] == pytest.approx(100 * 2 * np.pi * 1.5**2 * 0.5, rel=0.05)
    assert slopes[1] / slopes[0] == pytest.approx(2.0, rel=1e-6)
