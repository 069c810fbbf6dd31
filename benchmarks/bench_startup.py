"""Plugin start-up: time to import the plugin and build its docks in a running napari,
and which heavy modules (SciPy, SimpleITK, scikit-image, h5py, matplotlib) that loads
beyond what napari itself loaded. Needs a display (run under xvfb-run -a).

Reference, side by side: creating the napari viewer itself.

``--program`` also times the program's own start-up in a shown window (``mpi-viewer``:
the docks, then :func:`mpi_viewer.plugins._warm_up.settle`, whose warm-up draws one layer
of each kind the study adds, by the steps' style functions), then the first image opened
(the demo's MRI, CT and MPI) and the layer pool of :mod:`mpi_viewer.plugins._layer_pool`
filled on it: its wall time and the longest GUI-thread gap (a 10 ms QTimer heartbeat)
until the pool is ready, with and without the warm-up (``no warm-up``: the freeze only),
best of three each, the two interleaved.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CODE = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import napari
    viewer = napari.Viewer(show=False)
    t1 = time.perf_counter()
    before = set(sys.modules)
    from mpi_viewer.plugins._launch import open_docks
    widgets = open_docks(viewer)
    t2 = time.perf_counter()
    heavy = sorted({m.split('.')[0] for m in set(sys.modules) - before}
                   & {'scipy', 'SimpleITK', 'skimage', 'h5py', 'matplotlib', 'pydicom', 'dask'})
    print(json.dumps({"napari_s": t1 - t0, "plugin_s": t2 - t1, "docks": len(widgets), "heavy": heavy}))
    viewer.close()
    """
)


PROGRAM = textwrap.dedent(
    """
    import gc, json, sys, time
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    from mpi_viewer.plugins._launch import load_demo, open_docks
    from mpi_viewer.plugins._layer_pool import ready
    from mpi_viewer.plugins import _warm_up
    open_docks(viewer)
    QApplication.processEvents()
    t0 = time.perf_counter()
    if WARM:
        _warm_up.settle(viewer)
    else:  # the collector's freeze alone
        gc.collect(); gc.freeze(); _warm_up._POLICY.update(on=True, added=0)
    t1 = time.perf_counter()
    beats = []
    hb = QTimer(); hb.setInterval(10); hb.timeout.connect(lambda: beats.append(time.perf_counter()))
    hb.start()
    t2 = time.perf_counter()
    load_demo(viewer)
    while not ready(viewer):
        QApplication.processEvents(); time.sleep(0.002)
    t3 = time.perf_counter()
    ts = [t2, *[b for b in beats if t2 <= b <= t3], t3]
    gap = max(b - a for a, b in zip(ts, ts[1:]))
    print(json.dumps({"settle_s": t1 - t0, "open_s": t3 - t2, "gap_ms": 1000 * gap}))
    _warm_up.stop_freezing()
    viewer.close()
    """
)


def program() -> None:
    """The program's start-up with and without the warm-up (module docstring)."""
    runs: dict = {True: [], False: []}
    for _ in range(3):
        for warm in (True, False):
            code = f"WARM = {warm}\n" + PROGRAM
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if r.returncode:
                raise SystemExit(r.stderr[-2000:])
            runs[warm].append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(
        f"\n{'start-up, then the demo opened':<34}{'settle (s)':>12}{'open + pool (s)':>17}"
        f"{'longest gap (ms)':>18}"
    )
    for warm, label in ((True, "warm-up + freeze"), (False, "no warm-up (freeze only)")):
        best = {k: min(r[k] for r in runs[warm]) for k in ("settle_s", "open_s", "gap_ms")}
        print(f"{label:<34}{best['settle_s']:>12.2f}{best['open_s']:>17.2f}{best['gap_ms']:>18.0f}")


def main() -> None:
    runs = []
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["plugin_s"])
    print(f"{'what':<40}{'seconds':>10}")
    print(f"{'napari viewer (reference)':<40}{best['napari_s']:>10.3f}")
    print(f"{'plugin import + ' + str(best['docks']) + ' docks':<40}{best['plugin_s']:>10.3f}")
    print(f"ratio plugin / napari: {best['plugin_s'] / best['napari_s']:.2f}")
    print(f"heavy modules the plugin loaded beyond napari: {best['heavy'] or 'none'}")


if __name__ == "__main__":
    main()
    if "--program" in sys.argv:
        program()
