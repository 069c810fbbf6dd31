"""Plugin start-up: time to import the plugin and build its docks in a running napari,
and which heavy modules (SciPy, SimpleITK, scikit-image, h5py, matplotlib) that loads
beyond what napari itself loaded. Needs a display (run under xvfb-run -a).

Reference, side by side: creating the napari viewer itself.

``--program`` also times the program's own start-up in a shown window (``mpi-viewer``:
the docks, then :func:`mpi_viewer.plugins._warm_up.settle`, which makes the layer pool of
:mod:`mpi_viewer.plugins._layer_pool` then: the empty layers the steps take, by the
steps' style functions, drawn once), then the first images opened (the demo's MRI, CT and
MPI: napari adds them in one call) and, without the start-up pool (``freeze only``), the
pool filled on them: the wall time and the longest GUI-thread gap (a 10 ms QTimer
heartbeat) from the images' arrival until the pool is ready, best of three each, the two
interleaved.
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
    load_demo(viewer)  # the images added (napari's own cost, one call)
    t3 = time.perf_counter()
    while not ready(viewer):  # the pool filled, one layer per turn of the event loop
        QApplication.processEvents(); time.sleep(0.002)
    t4 = time.perf_counter()
    ts = [t3, *[b for b in beats if t3 <= b <= t4], t4]
    gap = max(b - a for a, b in zip(ts, ts[1:]))
    print(json.dumps({"settle_s": t1 - t0, "open_s": t3 - t2, "pool_s": t4 - t3,
                      "gap_ms": 1000 * gap}))
    _warm_up.stop_freezing()
    viewer.close()
    """
)


def program() -> None:
    """The program's start-up with and without the start-up pool (module docstring)."""
    runs: dict = {True: [], False: []}
    for _ in range(3):
        for warm in (True, False):
            code = f"WARM = {warm}\n" + PROGRAM
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if r.returncode:
                raise SystemExit(r.stderr[-2000:])
            runs[warm].append(json.loads(r.stdout.strip().splitlines()[-1]))
    keys = ("settle_s", "open_s", "pool_s", "gap_ms")
    print(
        f"\n{'best of 3 (s; gap ms)':<28}{'settle':>8}{'images':>8}{'pool fill':>11}"
        f"{'longest gap in the fill':>25}"
    )
    for warm, label in ((True, "start-up pool + freeze"), (False, "freeze only")):
        b = {k: min(r[k] for r in runs[warm]) for k in keys}
        print(
            f"{label:<28}{b['settle_s']:>8.2f}{b['open_s']:>8.2f}{b['pool_s']:>11.2f}"
            f"{b['gap_ms']:>25.0f}"
        )


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
