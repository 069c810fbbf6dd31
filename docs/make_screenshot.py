"""Make docs/screenshot.png: the real napari window with the demo study worked through
(mold-registered MPI on the MRI, ROIs, calibration from the vials, cells on the anatomy).

    xvfb-run -a -s "-screen 0 1920x1200x24" python docs/make_screenshot.py [OUT.png]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from mpi_viewer.plugins import _napari_compat as compat
from mpi_viewer.plugins._launch import load_demo, open_docks
from qtpy.QtWidgets import QApplication, QDockWidget

from mpi_viewer.demo.study import write_demo_study

#: Seconds of events handled before the shot: the cells' labels are laid out again for
#: the final view after a debounce, and the 3-D view is redrawn with them.
SETTLE_S = 0.3


def _pump(seconds: float) -> None:
    """Handle the window's events for ``seconds`` (timers, deferred layouts, redraws)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)
    QApplication.processEvents()


def main(out: str, ndisplay: int = 2) -> None:
    viewer = napari.Viewer(title="mpi-viewer — demo study (synthetic)")
    compat.resize_window(viewer, 1900, 1050)
    viewer.canvas.overlays.scale_bar.visible = True
    widgets = {type(w).__name__: w for w in open_docks(viewer)}
    study = load_demo(viewer)
    folder = Path(tempfile.mkdtemp())
    paths = write_demo_study(folder)
    roi = widgets["ROIDock"]
    for src in study.truth["sources"]:
        roi.add_seed_mm(src["mpi_mm"], name=src["name"])
    cal = widgets["CalibrationDock"]
    cal.load_phantoms_csv(paths["phantoms"])
    cal.fit(block=True)
    cal.apply_to_rois()
    cells = widgets["CellsDock"]
    cells.set_iron_per_cell(15.0, 1.5)
    cells.compute(block=True)
    # a coronal-ish 2-D slice through the isolated source, the cells dock in front
    iso = next(s for s in study.truth["sources"] if s["name"] == "isolated")
    if ndisplay == 3:
        from mpi_viewer.plugins._launch import DEMO_CAMERA_ANGLES

        viewer.layers["CT (synthetic demo)"].visible = False
        viewer.dims.ndisplay = 3
    else:
        viewer.dims.ndisplay = 2
        viewer.dims.order = (1, 0, 2)  # slice along y: x horizontal, z vertical
        point = list(viewer.dims.point)
        point[1] = iso["mri_mm"][1]
        viewer.dims.point = point
    dock = cells.parentWidget()  # the cells dock in front (its QDockWidget, through Qt)
    while not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    dock.raise_()
    QApplication.processEvents()
    viewer.reset_view()
    if ndisplay == 3:
        viewer.scene.camera.angles = DEMO_CAMERA_ANGLES
        viewer.scene.camera.zoom *= 1.15
    _pump(SETTLE_S)  # the view drawn whole: labels laid out for it (debounced), 3-D redrawn
    viewer.screenshot(out, canvas_only=False)
    print(out, np.round(viewer.scene.camera.zoom, 2))
    viewer.close()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--3d"]
    main(
        args[0] if args else str(Path(__file__).with_name("screenshot.png")),
        3 if "--3d" in sys.argv else 2,
    )
