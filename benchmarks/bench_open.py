"""Opening a large volume into a napari layer, against SimpleITK.ReadImage alone.

Cases (written once under /tmp/mpi_viewer_bench, never in the repository):

- a 512 × 512 × 256 float32 NIfTI (.nii, 256 MiB);
- a DICOM series of 256 slices of 512 × 512 int16 (128 MiB of pixels).

"mpi-viewer" is the whole File > Open path without the GUI: ``read_volume`` (format
dispatch, tags, validation), the reader's layer tuple (placement and contrast limits)
and ``napari.layers.Image``. The reference is ``SimpleITK.ReadImage`` alone (for the
series, of the file list GDCM sorts for the folder). Both run in the same process,
alternately, after a warm-up that pays one-off import costs and fills the page cache;
the best of the repeats is compared (the ratio of medians is shown too). Targets: time ≤ 1.2 × the reference; peak
memory ≤ 2 × the volume's bytes, measured as ``ru_maxrss`` growth in a fresh process
per method (tracemalloc would not see SimpleITK's C++ buffers).

    python benchmarks/bench_open.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORK = Path("/tmp/mpi_viewer_bench")
SHAPE_NII = (256, 512, 512)  # z, y, x
SHAPE_DCM = (256, 512, 512)


def make_inputs() -> dict[str, Path]:
    import numpy as np
    import SimpleITK as sitk

    WORK.mkdir(parents=True, exist_ok=True)
    nii = WORK / "big_mri.nii"
    if not nii.exists():
        rng = np.random.default_rng(0)
        arr = rng.random(SHAPE_NII, dtype=np.float32)
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((0.1, 0.1, 0.2))
        img.SetOrigin((-25.6, -25.6, -25.6))
        img.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
        sitk.WriteImage(img, str(nii))
    series = WORK / "big_ct_series"
    if not (series / f"s{SHAPE_DCM[0] - 1:04d}.dcm").exists():
        series.mkdir(exist_ok=True)
        rng = np.random.default_rng(1)
        arr = rng.integers(-1000, 2000, size=SHAPE_DCM, dtype=np.int16)
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((0.2, 0.2, 0.5))
        img.SetOrigin((-51.2, -51.2, 0.0))
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        uid = "1.2.826.0.1.3680043.2.1125.9001"
        for i in range(SHAPE_DCM[0]):
            sl = img[:, :, i]
            for tag, value in (
                ("0008|0060", "CT"),
                ("0020|000e", uid),
                ("0020|000d", uid + ".1"),
                ("0020|0037", "1\\0\\0\\0\\1\\0"),
                ("0020|0013", str(i + 1)),
                ("0008|0018", f"{uid}.2.{i + 1}"),
                ("0020|0032", "\\".join(map(str, img.TransformIndexToPhysicalPoint((0, 0, i))))),
            ):
                sl.SetMetaData(tag, value)
            writer.SetFileName(str(series / f"s{i:04d}.dcm"))
            writer.Execute(sl)
    return {"NIfTI 512x512x256 float32": nii, "DICOM series 256 x 512x512 int16": series}


# -- the two ways of opening ------------------------------------------------------------
def open_reference(path: Path):
    import SimpleITK as sitk

    if path.is_dir():
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path))
        return sitk.ReadImage(files)
    return sitk.ReadImage(str(path))


def open_mpi_viewer(path: Path):
    from mpi_viewer.plugins._reader import layer_data_tuple
    from napari.layers import Image

    from mpi_viewer.io.images import read_volume

    data, kwargs, _ = layer_data_tuple(read_volume(path))
    return Image(data, **kwargs)


METHODS = {"SimpleITK.ReadImage": open_reference, "mpi-viewer → napari layer": open_mpi_viewer}


def _warm_up(path: Path) -> None:
    """Import everything, pay napari's first-layer costs on a tiny file, fill the page cache.

    The big file is read through one small reusable buffer, so the process's peak
    resident memory stays at its baseline.
    """
    import numpy as np
    import SimpleITK as sitk

    small = WORK / "warm.nii"
    if not small.exists():
        sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), np.float32)), str(small))
    open_mpi_viewer(small)
    open_reference(small)
    buf = bytearray(1 << 20)
    for f in sorted(path.iterdir()) if path.is_dir() else [path]:
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


def worker_time(path: Path, repeats: int) -> dict[str, list[float]]:
    _warm_up(path)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(repeats):
        for name, fn in METHODS.items():
            t = time.perf_counter()
            out = fn(path)
            times[name].append(time.perf_counter() - t)
            del out
    return times


def worker_memory(path: Path, method: str) -> dict[str, float]:
    _warm_up(path)
    import gc

    gc.collect()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    out = METHODS[method](path)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    nbytes = (
        out.data.nbytes
        if hasattr(out, "data")
        else out.GetNumberOfPixels() * out.GetSizeOfPixelComponent()
    )
    return {"peak_mb": (peak - base) / 1024, "volume_mb": nbytes / 2**20}


def _run_worker(*args) -> dict:
    r = subprocess.run(
        [sys.executable, __file__, "--worker", *map(str, args)], capture_output=True, text=True
    )
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        kind, path, *rest = args.worker
        out = (
            worker_time(Path(path), int(rest[0]))
            if kind == "time"
            else worker_memory(Path(path), rest[0])
        )
        print(json.dumps(out))
        return 0

    t = time.perf_counter()
    inputs = make_inputs()
    print(f"inputs ready in {time.perf_counter() - t:.1f} s under {WORK}")
    rows = []
    failed = False
    for case, path in inputs.items():
        times = _run_worker("time", path, args.repeats)
        mem = {m: _run_worker("memory", path, m) for m in METHODS}
        # best of the repeats: the machine is shared, and load only ever adds time
        ref_t = min(times["SimpleITK.ReadImage"])
        ours_t = min(times["mpi-viewer → napari layer"])
        med = statistics.median(times["mpi-viewer → napari layer"]) / statistics.median(
            times["SimpleITK.ReadImage"]
        )
        vol_mb = mem["mpi-viewer → napari layer"]["volume_mb"]
        ours_mem = mem["mpi-viewer → napari layer"]["peak_mb"]
        ref_mem = mem["SimpleITK.ReadImage"]["peak_mb"]
        t_ratio, m_ratio = ours_t / ref_t, ours_mem / vol_mb
        failed |= t_ratio > 1.2 or m_ratio > 2.0
        rows.append((case, ref_t, ours_t, t_ratio, med, vol_mb, ref_mem, ours_mem, m_ratio))

    head = (
        "case",
        "ReadImage s",
        "mpi-viewer s",
        "time ratio (≤1.2)",
        "ratio of medians",
        "volume MiB",
        "ReadImage peak MiB",
        "mpi-viewer peak MiB",
        "peak / volume (≤2)",
    )
    print()
    print(" | ".join(head))
    print(" | ".join("-" * len(h) for h in head))
    for case, ref_t, ours_t, t_ratio, med, vol_mb, ref_mem, ours_mem, m_ratio in rows:
        print(
            f"{case} | {ref_t:.3f} | {ours_t:.3f} | {t_ratio:.2f} | {med:.2f} | {vol_mb:.0f} | "
            f"{ref_mem:.0f} | {ours_mem:.0f} | {m_ratio:.2f}"
        )
    print(
        f"\n{'FAIL' if failed else 'ok'}: targets time ≤ 1.2 × ReadImage, peak ≤ 2 × volume bytes"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
