"""Plugin start-up: time to import the plugin and build its docks in a running napari,
and which heavy modules (SciPy, SimpleITK, scikit-image, h5py, matplotlib) that loads
beyond what napari itself loaded. Needs a display (run under xvfb-run -a).

Reference, side by side: creating the napari viewer itself.
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
