"""A tiny synthetic study for the safety suite, and the promise every refusal keeps.

The study (32³ voxels of 1 mm, made in a few milliseconds): ``mpi.nii.gz`` with its
sidecar ``mpi.json``, four phantoms of known iron (``phantoms.csv``) and one source,
``points.csv`` (four fiducials, used as both point files of an identity registration),
``mpi.mhd`` + ``mpi.raw`` (the same image, detached data), ``mri.nii.gz``.

:func:`refused` runs a command exactly as typed and checks the promise of issue 14:
exit 2, one line on stderr (no traceback, no library chatter), every file in the study
byte-identical afterwards and no file added or removed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SIZE = 32
SIGMA_MM = 1.2
#: Phantom name → (x, y, z) mm, iron µg. Signal = SENSITIVITY × iron (a.u.·mm³).
PHANTOMS = {
    "p1": ((6.0, 6.0, 6.0), 1.0),
    "p2": ((24.0, 6.0, 6.0), 2.0),
    "p4": ((6.0, 24.0, 6.0), 4.0),
    "p8": ((24.0, 24.0, 6.0), 8.0),
}
SOURCE_MM = (15.0, 15.0, 22.0)
SOURCE_UG = 3.0
SENSITIVITY = 100.0


def _blob(center, amount):
    z, y, x = np.mgrid[0:SIZE, 0:SIZE, 0:SIZE].astype(float)
    cx, cy, cz = center
    g = np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * SIGMA_MM**2))
    return amount * SENSITIVITY * g / ((2 * np.pi) ** 1.5 * SIGMA_MM**3)


def make_study(folder: Path) -> dict[str, Path]:
    import SimpleITK as sitk

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arr = sum(_blob(c, ug) for c, ug in PHANTOMS.values()) + _blob(SOURCE_MM, SOURCE_UG)
    rng = np.random.default_rng(0)
    arr = (arr + rng.normal(0, 0.01, arr.shape)).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 1.0, 1.0))
    paths = {"mpi": folder / "mpi.nii.gz", "mhd": folder / "mpi.mhd", "mri": folder / "mri.nii.gz"}
    sitk.WriteImage(img, str(paths["mpi"]), useCompression=True)
    sitk.WriteImage(img, str(paths["mhd"]))  # writes mpi.raw beside it
    sitk.WriteImage(sitk.Cast(img * 10, sitk.sitkFloat32), str(paths["mri"]), useCompression=True)
    paths["raw"] = folder / "mpi.raw"
    paths["sidecar"] = folder / "mpi.json"
    paths["sidecar"].write_text(
        '{"modality": "MPI", "units": "a.u.", "acquisition": {"tracer": "VivoTrax", '
        '"gradient_T_per_m": 5.7, "drive_frequency_kHz": 45.0}}\n',
        encoding="utf-8",
    )
    rows = ["name,x,y,z,iron_ug"] + [
        f"{n},{c[0]},{c[1]},{c[2]},{ug}" for n, (c, ug) in PHANTOMS.items()
    ]
    paths["phantoms"] = folder / "phantoms.csv"
    paths["phantoms"].write_text("\n".join(rows) + "\n", encoding="utf-8")
    pts = ["name,x,y,z", "a,4,4,4", "b,28,4,4", "c,4,28,4", "d,4,4,28"]
    paths["points"] = folder / "points.csv"
    paths["points"].write_text("\n".join(pts) + "\n", encoding="utf-8")
    return paths


SEED = f"--seed={SOURCE_MM[0]},{SOURCE_MM[1]},{SOURCE_MM[2]}"


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every file under ``folder`` (relative path → bytes; FIFOs and links by kind)."""
    out: dict[str, bytes | str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            elif p.is_fifo() or not p.is_file():
                out[rel] = "special"
            else:
                out[rel] = p.read_bytes()
    return out


def one_line_error(err: str) -> str:
    """The single error line of ``err``; fails on anything else."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("mpi-viewer: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


def run_main(argv, capfd) -> tuple[int, str, str]:
    """``mpi-viewer ARGV`` in this process; (exit status, stdout, stderr at the fd level)."""
    from mpi_viewer.cli import main

    capfd.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capfd.readouterr()
    return rc, out, err


def refused(argv, folder: Path, capfd, *, words: str | tuple = ()) -> str:
    """Run ``argv``; assert exit 2, one line (containing ``words``), ``folder`` unchanged."""
    before = snapshot(folder)
    rc, out, err = run_main(argv, capfd)
    assert rc == 2, (rc, out, err)
    line = one_line_error(err)
    for w in (words,) if isinstance(words, str) else words:
        assert w.lower() in line.lower(), line
    after = snapshot(folder)
    assert after.keys() == before.keys(), f"files added/removed: {set(after) ^ set(before)}"
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, f"changed: {changed}"
    return line


def cli(argv, *, cwd=None, timeout=60, env=None) -> subprocess.CompletedProcess:
    """``mpi-viewer ARGV`` in a fresh process (for aborts, hangs and kills)."""
    e = dict(os.environ, **(env or {}))
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from mpi_viewer.cli import main; sys.exit(main())",
            *argv,
        ],
        cwd=cwd,
        capture_output=True,
        timeout=timeout,
        env=e,
    )


def saved_session(st, capfd, *, image: str = "mpi", name: str = "s.json") -> Path:
    """``quantify … --save-session`` on the small study ``st``: the session file (CSV beside it)."""
    s = st["mpi"].parent / name
    rc, _, err = run_main(
        [
            "quantify",
            st[image],
            SEED,
            "--phantoms",
            st["phantoms"],
            "-o",
            s.with_suffix(".csv"),
            "--save-session",
            s,
        ],
        capfd,
    )
    assert rc == 0, err
    return s
