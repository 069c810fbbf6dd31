"""Run every benchmark (``bench_*.py`` beside this file), one process each, and print
their tables. GUI benchmarks need a display: run this under ``xvfb-run -a``.

    python benchmarks/run.py            # all
    python benchmarks/run.py roi molds  # the ones whose name contains a word
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    scripts = sorted(here.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(w in s.stem for w in argv)]
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        t = time.perf_counter()
        r = subprocess.run([sys.executable, str(script)])
        print(
            f"--- {script.stem}: exit {r.returncode}, {time.perf_counter() - t:.1f} s", flush=True
        )
        if r.returncode:
            failed.append(script.stem)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
