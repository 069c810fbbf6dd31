"""Issue 12's crash report, as a user does it: the demo with phantoms measured and a
calibration fitted, an ROI, then the MPI layer removed in 3-D (or 2-D), the display
switched, and the window drawn after each step. Run in its own process by
tests/test_remove_mpi.py, so that a crash in OpenGL fails a test instead of the suite."""

import sys

import napari
from mpi_viewer.plugins._launch import prepare
from qtpy.QtWidgets import QApplication

from mpi_viewer.demo.study import make_demo_study


def _draw(viewer) -> None:
    for _ in range(20):
        QApplication.processEvents()
    viewer.screenshot(canvas_only=True, flash=False)


def main(ndisplay: int) -> None:
    study = make_demo_study()
    viewer = napari.Viewer(show=True)
    docks = {
        type(w).__name__: w for w in prepare(viewer, demo=True, study=study, ndisplay=ndisplay)
    }
    cal, roi = docks["CalibrationDock"], docks["ROIDock"]
    cal.set_phantoms([(v["name"], tuple(v["mpi_mm"]), v["iron_ug"]) for v in study.truth["vials"]])
    cal.measure(block=True)
    cal.fit(block=True)
    iso = study.source("isolated")["mpi_mm"]
    assert roi.add_seed_mm(list(iso), name="iso") is not None
    _draw(viewer)
    viewer.layers.remove(roi.mpi_layer)
    _draw(viewer)
    viewer.dims.ndisplay = 5 - ndisplay
    _draw(viewer)
    print("layers:", "|".join(lyr.name for lyr in viewer.layers))
    viewer.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
