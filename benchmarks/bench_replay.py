"""Replay speed: the demo session headless, and 20 sessions in batch on 2 processes.

    python benchmarks/bench_replay.py [--sessions 20] [--jobs 2]

1. Headless replay of the demo session (mold-template registration, four half-maximum
   ROIs, calibration from six in-image vials, cells), as ``mpi-viewer replay`` does it:
   load, hash inputs, read images, recompute, compare. Target < 5 s.
2. Batch: N copies of the session replayed one by one in this process (the reference)
   against :func:`mpi_viewer.study.batch.replay_many` with ``--jobs`` worker processes, pool
   start-up included. Target close to 2× on 2 cores.

The machine may be shared: the ratio is measured side by side in one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    from mpi_viewer.demo.study import make_demo_session
    from mpi_viewer.study import pipeline as P
    from mpi_viewer.study.batch import replay_many
    from mpi_viewer.study.session import load_session

    tmp = Path(tempfile.mkdtemp(prefix="bench_replay_"))
    try:
        t = time.perf_counter()
        path = make_demo_session(tmp)
        t_make = time.perf_counter() - t

        # -- 1. one session, headless, step by step ----------------------------------------------------
        times, steps = [], {}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            s = load_session(path)
            s.verify_inputs()
            t1 = time.perf_counter()
            vols = P.read_inputs(s)
            t2 = time.perf_counter()
            fit, mold = P.run_registration(s, vols)
            t3 = time.perf_counter()
            rois = P.run_rois(s, vols)
            t4 = time.perf_counter()
            cal = P.run_calibration(s, vols)
            ipc = P.run_cells(s)
            q = P.run_quantities(s, vols, cal, rois, ipc)
            t5 = time.perf_counter()
            assert len(q) == 4
            out = P.replay_path(path)
            t6 = time.perf_counter()
            assert out.status == 0, out.differences or out.message
            times.append(t6 - t5)
            for k, v in (
                ("load + SHA-256 of inputs", t1 - t0),
                ("read images", t2 - t1),
                ("mold registration", t3 - t2),
                ("4 ROIs", t4 - t3),
                ("calibration (6 vials) + iron + cells", t5 - t4),
            ):
                steps.setdefault(k, []).append(v)
        print(f"demo session built through the pipeline in {t_make:.2f} s ({path.name})")
        print()
        print(f"{'step (median of ' + str(args.repeats) + ')':42s} {'s':>8s}")
        for k, v in steps.items():
            print(f"{k:42s} {statistics.median(v):8.3f}")
        med = statistics.median(times)
        print(
            f"{'whole replay (replay_path)':42s} {med:8.3f}   target < 5 s: {'PASS' if med < 5 else 'FAIL'}"
        )

        # -- 2. batch --------------------------------------------------------------------------
        copies = []
        for i in range(args.sessions):
            c = path.with_name(f"copy_{i:02d}.json")
            shutil.copy(path, c)
            copies.append(c)
        t = time.perf_counter()
        seq = replay_many(copies, jobs=1)
        t_seq = time.perf_counter() - t
        t = time.perf_counter()
        par = replay_many(copies, jobs=args.jobs)
        t_par = time.perf_counter() - t
        assert all(o.status == 0 for o in seq + par), [o.message for o in seq + par if o.status]
        print()
        print(f"{'batch of ' + str(args.sessions) + ' sessions':42s} {'s':>8s} {'ratio':>8s}")
        print(f"{'one by one (reference)':42s} {t_seq:8.2f} {1.0:8.2f}")
        print(
            f"{f'replay_many, {args.jobs} processes':42s} {t_par:8.2f} {t_seq / t_par:8.2f}x"
            f"   target close to {args.jobs}x"
        )
        cpu_seq = sum(o.cpu_seconds for o in seq)
        cpu_par = sum(o.cpu_seconds for o in par)
        print(
            f"CPU time of the replays: one by one {cpu_seq:.2f} s, in workers {cpu_par:.2f} s; "
            f"cores the workers got on average: {cpu_par / t_par:.2f} of {args.jobs} "
            f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: other work on the machine)"
        )
        print(
            f"ratio if the workers had had their {args.jobs} cores: "
            f"{t_seq / (cpu_par / args.jobs):.2f}x  (one-by-one wall time / (worker CPU time / {args.jobs}))"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
