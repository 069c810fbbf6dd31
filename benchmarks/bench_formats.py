"""Reading the formats of issue 15 against the plain library call that reads the same bytes.

Cases (written once under /tmp/mpi_viewer_bench, never in the repository):

- NIfTI-2, 384 × 384 × 192 float32 (108 MiB): ``read_volume`` (nibabel, since
  SimpleITK 2.5 has no NIfTI-2 reader) against ``SimpleITK.ReadImage`` of the same
  volume saved as NIfTI-1;
- MDF v2 reconstruction, 48 frames of 64³ float32 (48 MiB): ``read_volume(frame="mean")``
  against h5py reading ``/reconstruction/data`` and numpy averaging the frames (float64);
  ``read_volume(frame=40)`` against h5py reading that frame; ``read_volume_stacks``
  (napari's time axis) against the h5py read plus the min/max any viewer needs for
  contrast limits;
- ``.npz`` 256³ float32 (64 MiB, uncompressed): ``read_volume`` against ``np.load`` plus
  ``SimpleITK.GetImageFromArray`` (the least that gives a placed image).

Both run in the same process, alternately, after a warm-up (imports, page cache); the
best of the repeats is compared. Target: time ≤ 1.5 × the reference, or within 20 ms
of it (reading one small frame is dominated by the file's metadata fields).

    python benchmarks/bench_formats.py [--repeats N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

WORK = Path("/tmp/mpi_viewer_bench")


def make_inputs() -> dict[str, Path]:
    import h5py
    import nibabel as nib

    WORK.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = {}
    n1, n2 = WORK / "fmt_n1.nii", WORK / "fmt_n2.nii"
    if not n2.exists():
        a = rng.random((384, 384, 192), dtype=np.float32)  # nibabel order: x, y, z
        aff = np.diag([-0.1, -0.1, 0.2, 1.0])
        nib.save(nib.Nifti1Image(a, aff), str(n1))
        nib.save(nib.Nifti2Image(a, aff), str(n2))
    out["nifti1"], out["nifti2"] = n1, n2
    mdf = WORK / "fmt_dyn.mdf"
    if not mdf.exists():
        with h5py.File(mdf, "w") as f:
            f["version"] = "2.1.0"
            f["reconstruction/data"] = rng.random((48, 64**3, 1), dtype=np.float32)
            f["reconstruction/size"] = np.array([64, 64, 64])
            f["reconstruction/fieldOfView"] = np.array([0.032, 0.032, 0.032])
            f["reconstruction/fieldOfViewCenter"] = np.zeros(3)
            f["acquisition/numAverages"] = 1000
    out["mdf"] = mdf
    npz = WORK / "fmt_vol.npz"
    if not npz.exists():
        np.savez(npz, recon=rng.random((256, 256, 256), dtype=np.float32))
    out["npz"] = npz
    return out


def best(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import h5py
    import SimpleITK as sitk

    from mpi_viewer.io.images import read_volume, read_volume_stacks

    p = make_inputs()

    def h5_read():
        with h5py.File(p["mdf"], "r") as f:
            return f["reconstruction/data"][()]

    def h5_frame(k):
        with h5py.File(p["mdf"], "r") as f:
            return f["reconstruction/data"][k]

    cases = [
        (
            "NIfTI-2 384x384x192 f32 vs SimpleITK NIfTI-1",
            lambda: read_volume(p["nifti2"]).array,
            lambda: sitk.GetArrayViewFromImage(sitk.ReadImage(str(p["nifti1"]))),
        ),
        (
            "MDF 48 frames 64^3, --frame mean vs h5py+mean",
            lambda: read_volume(p["mdf"], frame="mean").array,
            lambda: h5_read().mean(axis=0, dtype=np.float64),  # the same float64 mean
        ),
        (
            "MDF 48 frames 64^3, --frame 40 vs h5py frame",
            lambda: read_volume(p["mdf"], frame=40).array,
            lambda: h5_frame(40),
        ),
        (
            "MDF 48 frames 64^3, time axis vs h5py+min/max",
            lambda: read_volume_stacks(p["mdf"]),
            lambda: (lambda a: (a.min(), a.max()))(h5_read()),
        ),
        (
            ".npz 256^3 f32 vs np.load+GetImageFromArray",
            lambda: read_volume(p["npz"], spacing_mm=(1, 1, 1)).array,
            lambda: sitk.GetImageFromArray(np.load(p["npz"])["recon"]),
        ),
    ]
    failed = False
    print(f"{'case':50s} {'mpi-viewer s':>12s} {'reference s':>12s} {'ratio':>6s}")
    for name, ours, ref in cases:
        ours(), ref()  # warm-up
        a, b = [], []
        for _ in range(args.repeats):
            a += best(ours, 1)
            b += best(ref, 1)
        ratio = min(a) / min(b)
        failed |= ratio > 1.5 and min(a) - min(b) > 0.02  # or within 20 ms
        print(f"{name:50s} {min(a):12.3f} {min(b):12.3f} {ratio:6.2f}")
    print("target: ratio <= 1.5 (or within 20 ms):", "FAILED" if failed else "met")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
