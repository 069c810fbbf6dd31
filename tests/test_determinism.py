"""A session replayed on another machine must give the same numbers: ROI totals may not
depend on how many threads BLAS/OpenMP use there."""

import json
import os
import subprocess
import sys

CODE = (
    "import json\n"
    "from mpi_viewer.demo import make_demo_study\n"
    "from mpi_viewer.roi import measure, ROIParams\n"
    "s = make_demo_study(include_ct=False)\n"
    "r = measure(s.mpi, [x['mpi_mm'] for x in s.truth['sources']], ROIParams())\n"
    "print(json.dumps([x.total_signal for x in r]))\n"
)


def _totals(threads: int) -> list[float]:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    out = subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_roi_totals_do_not_depend_on_the_thread_count():
    assert _totals(1) == _totals(2)  # bit for bit
