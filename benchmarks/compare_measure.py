"""Every number ``measure`` gives, from two versions of the code, compared.

    PYTHONPATH=/path/to/main python benchmarks/compare_measure.py dump main.pkl
    python benchmarks/compare_measure.py dump branch.pkl
    python benchmarks/compare_measure.py diff main.pkl branch.pkl [RTOL]

``dump`` measures (``mpi_viewer.roi.measure``, ``on_error="skip"``) and records every
column of every ROI (``ROIResult.to_row``: totals, areas, intervals' SDs, flags,
warnings) and a hash of its mask, with the CPU time of each case:

- the demo study, Langevin and Gaussian PSF: vials and sources, in separate calls and
  together, with the default parameters, revision 1, n·SD, k-means, no splitting,
  Gaussian point-spread models, the voxel peak and face connectivity; its noise-free
  image;
- the coverage realisations of ``tests/test_coverage.py`` (``1000 + k``, k < 10; both
  revisions for k < 3);
- the real FFL reconstructions of ``tests/test_roi_real.py`` (each at its maximum with
  every variant; phantom 29's three blobs).

``diff`` prints every difference larger than ``RTOL`` (relative; 0 by default: bit for
bit), every differing string, flag or mask, and the CPU ratio.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import sys
import time
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "mpi_ffl_phantoms"

VARIANTS = {
    "default": {},
    "rev1": dict(revision=1),
    "nsd": dict(method="nsd"),
    "kmeans": dict(method="kmeans"),
    "nosplit": dict(split_sources=False),
    "gausspsf": dict(psf="gaussian"),
    "voxelpeak": dict(peak_convention="voxel"),
    "face": dict(connectivity="face"),
}


def _record(results) -> dict:
    rows = []
    for r in results:
        row = r.to_row()
        row["neighbour_signal_sd"] = r.neighbour_signal_sd
        row["delineation_sd"] = r.delineation_sd
        row["mask"] = (
            tuple(r.mask.start),
            tuple(r.mask.array.shape),
            hashlib.sha1(np.ascontiguousarray(r.mask.array).tobytes()).hexdigest(),
        )
        rows.append(row)
    return {"rows": rows, "errors": list(getattr(results, "errors", []))}


def dump(path: str) -> int:
    from scipy import ndimage as ndi

    from mpi_viewer.demo.study import make_demo_study
    from mpi_viewer.io.images import read_volume
    from mpi_viewer.roi import regions as roi

    out: dict = {}
    times: dict = {}

    def case(name, vol, seeds, **kw):
        t = time.process_time()
        try:
            out[name] = _record(roi.measure(vol, seeds, roi.ROIParams(**kw), on_error="skip"))
        except Exception as exc:  # noqa: BLE001 - recorded and compared like a number
            out[name] = {"exception": f"{type(exc).__name__}: {exc}"}
        times[name] = time.process_time() - t

    for psf in ("langevin", "gaussian"):
        s = make_demo_study(include_ct=False, psf=psf)
        vials = [v["mpi_mm"] for v in s.truth["vials"]]
        srcs = [x["mpi_mm"] for x in s.truth["sources"]]
        for vn, kw in VARIANTS.items():
            case(f"demo-{psf}-{vn}-vials", s.mpi, vials, **kw)
            case(f"demo-{psf}-{vn}-sources", s.mpi, srcs, **kw)
            if vn in ("default", "rev1"):
                case(f"demo-{psf}-{vn}-all", s.mpi, srcs + vials, **kw)
        clean = make_demo_study(include_ct=False, noise_sd_au=0.0, psf=psf)
        case(f"clean-{psf}-default-all", clean.mpi, srcs + vials)
        for k in range(10):
            noise = np.random.default_rng(1000 + k).normal(0.0, 1.5, size=clean.mpi.shape)
            mpi = clean.mpi.with_array(
                (clean.mpi.array.astype(np.float64) + noise).astype(np.float32)
            )
            for rev in (2, 1) if k < 3 else (2,):
                case(f"real{k}-{psf}-rev{rev}-vials", mpi, vials, revision=rev)
                case(f"real{k}-{psf}-rev{rev}-sources", mpi, srcs, revision=rev)
    if REAL.is_dir():
        for n in (1, 24, 29, 62, 68):
            vol = read_volume(
                REAL / f"ffl_phantom_{n}.mat", modality="MPI", spacing_mm=(20 / 64, 20 / 64)
            )
            a = vol.array
            seed = vol.index_to_physical([np.unravel_index(int(np.argmax(a)), a.shape)])[0]
            for vn, kw in VARIANTS.items():
                case(f"ffl{n}-{vn}", vol, [seed], **kw)
            if n == 29:
                blobs, nb = ndi.label(a >= 0.5 * a.max())
                centres = ndi.center_of_mass(a, blobs, range(1, nb + 1))
                seeds = [vol.index_to_physical([np.asarray(c) + (1.5, -1.0)])[0] for c in centres]
                for vn, kw in VARIANTS.items():
                    case(f"ffl29blobs-{vn}", vol, seeds, **kw)
    with open(path, "wb") as f:
        pickle.dump({"results": out, "times": times}, f)
    print(f"{len(out)} cases, {sum(times.values()):.1f} s CPU")
    return 0


def diff(path_a: str, path_b: str, rtol: float = 0.0) -> int:
    with open(path_a, "rb") as f:
        a = pickle.load(f)
    with open(path_b, "rb") as f:
        b = pickle.load(f)
    ra, rb = a["results"], b["results"]
    bad, worst, numbers = 0, 0.0, 0
    for name, x in ra.items():
        y = rb.get(name)
        if (
            y is None
            or ("exception" in x) != ("exception" in y)
            or len(x.get("rows", ())) != len(y.get("rows", ()))
        ):
            print(f"{name}: {x if 'exception' in x else len(x['rows'])} vs {y}")
            bad += 1
            continue
        if "exception" in x:
            bad += x != y
            continue
        if x["errors"] != y["errors"]:
            print(f"{name}: errors {x['errors']} vs {y['errors']}")
            bad += 1
        for i, (p, q) in enumerate(zip(x["rows"], y["rows"], strict=True)):
            for k in sorted(set(p) | set(q)):
                u, v = p.get(k), q.get(k)
                if isinstance(u, float) and isinstance(v, float):
                    numbers += 1
                    if u == v or (math.isnan(u) and math.isnan(v)):
                        continue
                    rel = abs(u - v) / max(abs(u), abs(v))
                    worst = max(worst, rel)
                    if rel > rtol:
                        print(f"{name} [{i}] {k}: {u!r} vs {v!r} (relative {rel:.2e})")
                        bad += 1
                elif u != v:
                    print(f"{name} [{i}] {k}: {u!r} vs {v!r}")
                    bad += 1
    ta, tb = sum(a["times"].values()), sum(b["times"].values())
    print(
        f"{len(ra)} cases, {numbers} numbers: worst relative difference {worst:.2e}, "
        f"{bad} differences; CPU {ta:.1f} s vs {tb:.1f} s (ratio {ta / tb:.2f})"
    )
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "dump":
        return dump(argv[1])
    if len(argv) in (3, 4) and argv[0] == "diff":
        return diff(argv[1], argv[2], float(argv[3]) if len(argv) == 4 else 0.0)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
