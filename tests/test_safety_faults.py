"""Issue 14, faults: a full disk, a read-only folder, kill -9 in the middle of every kind
of save, two processes writing one output.

Promises: exit 2 and one line; the folder holds exactly what it held before (an old
output kept whole, no temporary file); a killed save leaves the old file or the new
one, never part of one; two writers never crash and never mix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _safety_study import SEED, one_line_error, run_main, saved_session, snapshot


def _commands(st, s, out: Path):
    """Every kind of save, each writing into the folder ``out``."""
    q = ["quantify", st["mpi"], SEED, "--phantoms", st["phantoms"]]
    return {
        "quantify -o": [*q, "-o", out / "r.csv"],
        "quantify --masks": [*q, "-o", out / "r.csv", "--masks", out / "m.nii.gz"],
        "quantify --save-session": [*q, "-o", out / "r.csv", "--save-session", out / "s2.json"],
        "calibrate": ["calibrate", st["mpi"], "--phantoms", st["phantoms"], "-o", out / "c.json"],
        "register": [
            "register",
            st["mri"],
            st["mpi"],
            "--fixed-points",
            st["points"],
            "--moving-points",
            st["points"],
            "-o",
            out / "t.tfm",
        ],
        "replay -o": ["replay", s, "-o", out / "r.csv"],
        "report": ["report", s, "-o", out / "report"],
        "demo --write": ["demo", "--write", out / "demo"],
    }


KINDS = [
    "quantify -o",
    "quantify --masks",
    "quantify --save-session",
    "calibrate",
    "register",
    "replay -o",
    "report",
    "demo --write",
]


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_disk_is_one_line_and_keeps_the_old_output(st, capfd, monkeypatch, kind):
    """ENOSPC shim: every flush to disk fails, as on a full disk."""
    s = saved_session(st, capfd)
    out = st["mpi"].parent / "out"
    out.mkdir()
    argv = _commands(st, s, out)[kind]
    old = {
        "quantify -o": "r.csv",
        "quantify --masks": "m.nii.gz",
        "quantify --save-session": "s2.json",
        "calibrate": "c.json",
        "register": "t.tfm",
        "replay -o": "r.csv",
    }.get(kind)
    if old:  # an older output of the same name, kept whole (the user asked to replace it)
        (out / old).write_text("old output\n", encoding="utf-8")
    argv = [*argv, "--overwrite"]
    before = snapshot(st["mpi"].parent)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    rc, outp, err = run_main(argv, capfd)
    monkeypatch.undo()
    assert rc == 2, (outp, err)
    line = one_line_error(err)
    assert "no space left" in line.lower(), line
    assert snapshot(st["mpi"].parent) == before


@contextlib.contextmanager
def _small_tmpfs(tmp_path, *, read_only=False):
    """A real 256 kB tmpfs (root only), filled to the last byte or read-only."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs (the ENOSPC shim covers full disks)")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        (mnt / "out").mkdir()
        (mnt / "out" / "old.csv").write_text("old output\n", encoding="utf-8")
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        else:
            fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                with contextlib.suppress(OSError):
                    while os.write(fd, b"\0" * 512):
                        pass
            finally:
                os.close(fd)
        yield mnt / "out"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.parametrize("read_only", [False, True], ids=["full tmpfs", "read-only tmpfs"])
def test_a_really_full_or_read_only_disk(st, capfd, tmp_path, read_only):
    s = saved_session(st, capfd)
    with _small_tmpfs(tmp_path, read_only=read_only) as out:
        before = snapshot(out.parent)
        for kind, argv in _commands(st, s, out).items():
            if kind == "demo --write":
                continue  # 9 s to generate; its full-disk case is the shim's
            if kind == "replay -o":
                argv = [*argv[:-1], out / "old.csv", "--overwrite"]
            rc, outp, err = run_main(argv, capfd)
            assert rc == 2, (kind, outp, err)
            line = one_line_error(err)
            want = "read-only" if read_only else "no space left"
            assert want in line.lower() or "permission denied" in line.lower(), (kind, line)
            assert snapshot(out.parent) == before, kind


def test_a_read_only_folder_as_a_user(st, capfd, tmp_path):
    """chmod 555 stops a user (root is not stopped by permissions: the read-only tmpfs above)."""
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions; covered by the read-only tmpfs test")
    s = saved_session(st, capfd)
    out = tmp_path / "ro"
    out.mkdir()
    os.chmod(out, 0o555)
    try:
        for kind, argv in _commands(st, s, out).items():
            rc, outp, err = run_main(argv, capfd)
            assert rc == 2, (kind, outp, err)
            line = one_line_error(err)
            assert "permission denied" in line.lower(), line
            assert list(out.iterdir()) == []
    finally:
        os.chmod(out, 0o755)


# -- kill -9 and two writers -------------------------------------------------------------------------
CHILD = r"""
import sys, json, itertools
from pathlib import Path
import numpy as np
kind, target, tag, study = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
loops = int(sys.argv[5])
big = lambda v: [{"name": f"roi_{i}", "value_au": v, "pad": "x" * 200} for i in range(3000)]
if kind == "csv":
    from mpi_viewer.io.tables import write_csv
    write = lambda v: write_csv(target, big(v))
elif kind == "points":
    from mpi_viewer.io.points import PointSet, write_points_csv
    write = lambda v: write_points_csv(target, PointSet([f"p{i}" for i in range(20000)], np.full((20000, 3), float(v))))
elif kind == "session":
    from mpi_viewer.study.session import load_session, save_session
    s = load_session(study / "s.json")
    def write(v):
        s.notes = str(v) * 200000
        save_session(s, target)
elif kind == "calibration":
    from mpi_viewer.calibration.record import load_calibration, save_calibration
    c = load_calibration(study / "c.json")
    def write(v):
        c.notes = str(v) * 200000
        save_calibration(c, target)
elif kind == "transform":
    from mpi_viewer.io.transform_files import write_transform
    write = lambda v: write_transform(target, (np.eye(3), np.full(3, float(v))))
elif kind == "image":
    import SimpleITK as sitk
    from mpi_viewer.io.atomic import atomic_write_image
    write = lambda v: atomic_write_image(target, sitk.GetImageFromArray(np.full((64, 64, 64), v, np.float32)))
elif kind == "volume":
    from mpi_viewer.geometry.volume import Volume
    from mpi_viewer.io.images import write_volume
    import SimpleITK as sitk
    def write(v):
        write_volume(Volume(image=sitk.GetImageFromArray(np.full((64, 64, 64), v, np.float32)), modality="MPI", units="a.u.", name="v"), target)
elif kind == "report":
    from mpi_viewer.io.images import read_volume
    from mpi_viewer.report.study_report import write_report
    mpi = read_volume(study / "mpi.nii.gz")
    write = lambda v: write_report(target, results_rows=[{"name": "roi_1", "total_signal_au_mm3": float(v)}], mpi=mpi, overwrite=True)
print("ready", flush=True)
for i in itertools.count():
    if loops and i >= loops:
        break
    write(tag * 1000 + i % 2)
"""

KILL_KINDS = ["csv", "points", "session", "calibration", "transform", "image", "volume", "report"]


def _check_whole(kind, target: Path, study: Path):
    """The target is absent or one complete version; returns a description of it."""
    import numpy as np

    if not target.exists():
        return "absent"
    if kind == "csv":
        lines = target.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 3001 and len({ln.split(",")[1] for ln in lines[1:]}) == 1, (
            "mixed or partial CSV"
        )
    elif kind == "points":
        from mpi_viewer.io.points import read_points_csv

        p = read_points_csv(target)
        assert len(p) == 20000 and len(np.unique(p.xyz_mm)) == 1
    elif kind == "session":
        from mpi_viewer.study.session import load_session

        n = load_session(target).notes
        assert len(set(n)) <= 4 and len(n) >= 200000
    elif kind == "calibration":
        from mpi_viewer.calibration.record import load_calibration

        assert len(load_calibration(target).notes) >= 200000
    elif kind == "transform":
        from mpi_viewer.io.transform_files import read_transform

        read_transform(target)
    elif kind in ("image", "volume"):
        import SimpleITK as sitk

        a = sitk.GetArrayFromImage(sitk.ReadImage(str(target)))
        assert a.shape == (64, 64, 64) and len(np.unique(a)) == 1
        if kind == "volume":
            from mpi_viewer.io.images import read_sidecar

            assert read_sidecar(target)["modality"] == "MPI"
    elif kind == "report":
        assert (target / "index.html").is_file() and (target / "results.csv").is_file()
    return "whole"


def _target(kind, folder: Path) -> Path:
    return (
        folder
        / {
            "csv": "o.csv",
            "points": "p.csv",
            "session": "o.json",
            "calibration": "c2.json",
            "transform": "o.tfm",
            "image": "o.nii.gz",
            "volume": "v.nii.gz",
            "report": "rep",
        }[kind]
    )


def _spawn(kind, target, tag, study, loops):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, str(target), str(tag), str(study), str(loops)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def study_with_files(st, capfd):
    saved_session(st, capfd)
    rc, _, err = run_main(
        ["calibrate", st["mpi"], "--phantoms", st["phantoms"], "-o", st["mpi"].parent / "c.json"],
        capfd,
    )
    assert rc == 0, err
    return st["mpi"].parent


def test_kill_9_during_every_kind_of_save(study_with_files, tmp_path):
    """Each kind of save, killed at a random moment twice; the target is whole or absent."""
    rng = random.Random(14)
    outcomes = {}
    for rnd in range(1):
        folder = tmp_path / f"kill{rnd}"
        folder.mkdir()
        procs = {k: _spawn(k, _target(k, folder), 1, study_with_files, 0) for k in KILL_KINDS}
        for p in procs.values():
            assert p.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.2, 0.8))
        for kind, p in procs.items():
            time.sleep(rng.uniform(0.0, 0.1))
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            outcomes[(rnd, kind)] = _check_whole(kind, _target(kind, folder), study_with_files)
            leftovers = [
                f.name
                for f in folder.iterdir()
                if f.name != _target(kind, folder).name and f.name.startswith(".")
            ]
            for f in leftovers:  # a killed writer's temporary file: hidden, never the output
                assert not f.startswith(_target(kind, folder).name)
    assert sum(v == "whole" for v in outcomes.values()) >= len(KILL_KINDS) // 2, outcomes


def test_two_writers_to_one_output_never_crash_or_mix(study_with_files, tmp_path):
    """Text (CSV, session), ITK image, image + sidecar, ITK transform: two processes
    replace one output three times each, all at once; both finish, the file is whole."""
    kinds = ["csv", "session", "image", "volume", "transform"]
    procs = {}
    for kind in kinds:
        target = _target(kind, tmp_path)
        procs[kind] = [_spawn(kind, target, tag, study_with_files, 3) for tag in (1, 2)]
    for kind, pair in procs.items():
        for p in pair:
            _, err = p.communicate(timeout=180)
            assert p.returncode == 0, (kind, err.decode()[-2000:])
        assert _check_whole(kind, _target(kind, tmp_path), study_with_files) == "whole"
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_two_quantify_commands_to_one_csv(st, tmp_path):
    """Two `quantify -o same.csv` at once (no --overwrite): each writes or says the file
    exists; neither crashes; the CSV is whole, with the known iron (3 µg)."""
    out = tmp_path / "same.csv"
    argv = ["quantify", str(st["mpi"]), SEED, "--phantoms", str(st["phantoms"]), "-o", str(out)]
    base = [sys.executable, "-c", "import sys; from mpi_viewer.cli import main; sys.exit(main())"]
    procs = [
        subprocess.Popen(base + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    codes = []
    for p in procs:
        _, err = p.communicate(timeout=120)
        codes.append(p.returncode)
        assert p.returncode == 0 or (
            p.returncode == 2 and "exists" in one_line_error(err.decode())
        ), err.decode()
    assert 0 in codes
    rows = out.read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2 and rows[0].startswith("name,")
    assert abs(float(rows[1].split(",")[-4]) - 3.0) < 0.05  # iron_ug against the known 3 µg
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []
