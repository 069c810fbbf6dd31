"""Calibration dock on the demo study: phantoms from the CSV, fit, library, iron per ROI.

Truths: the demo's vials and sources (``make_demo_study().truth``) and the slope an
ideal half-maximum ROI gives, computed here from the noise-free point-spread images
(``study.render_sources``), independently of the dock and of the ROI code.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture
def demo(make_napari_viewer, tmp_path):
    from mpi_viewer.plugins._calibration_dock import CalibrationDock
    from mpi_viewer.plugins._launch import load_demo

    from mpi_viewer.demo.study import write_demo_study

    viewer = make_napari_viewer()
    study = load_demo(viewer)
    paths = write_demo_study(tmp_path / "study")
    dock = CalibrationDock(viewer)
    viewer.window.add_dock_widget(dock, name="Calibration")
    return viewer, study, paths, dock


def _half_max_slope(study) -> float:
    """Signal per µg of an ideal half-maximum ROI: the noise-free PSF image of each vial,
    summed over the voxels at or above half the PSF's true peak (``DemoStudy.peak_au``)."""
    vv = float(np.prod(study.mpi.spacing_mm))
    ratios = []
    for v in study.truth["vials"]:
        img = study.render_sources([v["mpi_mm"]], [v["iron_ug"]])
        peak = study.peak_au(v["iron_ug"])
        ratios.append(img[img >= peak / 2].sum() * vv / v["iron_ug"])
    return float(np.mean(ratios))


def _pixels(pixmap) -> np.ndarray:
    """(h, w, 3) uint8 of a QPixmap."""
    from qtpy.QtGui import QImage

    img = pixmap.toImage().convertToFormat(QImage.Format.Format_RGBA8888)
    buf = np.frombuffer(img.constBits().asstring(img.sizeInBytes()), np.uint8)
    return buf.reshape(img.height(), img.bytesPerLine() // 4, 4)[:, : img.width(), :3]


def _has_colour(rgb: np.ndarray, colour, tol: int = 12, min_px: int = 20) -> bool:
    return int((np.abs(rgb.astype(int) - colour).max(axis=2) <= tol).sum()) >= min_px


def test_plot_is_drawn_off_the_gui_thread_at_the_panel_size(qtbot):
    """The calibration plot: drawn in a worker, shown at the panel's size and drawn again
    at the new size once a resize has paused."""
    from mpi_viewer.plugins._plot_canvas import PlotPanel

    panel = PlotPanel(height_px=300)
    qtbot.addWidget(panel)
    panel.resize(420, 320)
    panel.show()
    x = np.array([1.0, 2.0, 5.0, 10.0])
    with qtbot.waitSignal(panel.rendered, timeout=60_000):
        panel.plot_calibration(
            x, 3.0 * x, line_x=np.array([0.0, 10.0]), line_y=np.array([0.0, 30.0]),
            residuals=np.zeros(4),
        )  # fmt: skip
    dpr = panel.pixmap.devicePixelRatio()
    assert (panel.pixmap.width() / dpr, panel.pixmap.height() / dpr) == (420, 320)
    assert _has_colour(_pixels(panel.pixmap), (0x4C, 0x8B, 0xF5))  # the fitted line
    with qtbot.waitSignal(panel.rendered, timeout=60_000):
        panel.resize(380, 400)
    assert (panel.pixmap.width() / dpr, panel.pixmap.height() / dpr) == (380, 400)
    assert len(panel.figure.axes) == 2


def test_csv_fit_slope_and_iron_of_the_isolated_source(demo, errors):
    viewer, study, paths, dock = demo
    assert dock.load_phantoms_csv(paths["phantoms"])
    assert dock.phantom_table.rowCount() == len(study.truth["vials"])
    assert "defaults" in dock.roi_label.text()  # no ROI dock open: said so
    dock.fit(block=True)
    cal = dock.calibration
    assert cal is not None and not errors
    expected = _half_max_slope(study)
    # the ideal half-max ROI captures the kernel's half-maximum share of the sensitivity
    share = expected / study.truth["sensitivity_au_mm3_per_ug"]
    assert share == pytest.approx(study.truth["psf_halfmax_fraction"], rel=0.1)
    assert cal.fit.slope == pytest.approx(expected, rel=0.05)
    assert cal.fit.n == 6 and cal.fit.r_squared > 0.99
    assert "slope" in dock.fit_label.text() and "R²" in dock.fit_label.text()
    assert dock.plot.figure is not None and len(dock.plot.figure.axes) == 2  # fit + residuals
    # what the dock shows: the fitted line (blue) and the phantoms (amber) in its picture
    shown = _pixels(dock.plot.pixmap)
    assert _has_colour(shown, (0x4C, 0x8B, 0xF5)) and _has_colour(shown, (0xFF, 0xB0, 0x00))
    assert cal.tracer == study.mpi.acquisition.tracer  # prefilled from the MPI layer

    # the MPI ROIs dock, seeded at the true sources: "Apply to ROIs" takes its ROIs and method
    from mpi_viewer.plugins._roi_dock import ROIDock

    roi_dock = ROIDock(viewer)
    viewer.window.add_dock_widget(roi_dock, name="MPI ROIs")
    for s in study.truth["sources"]:
        roi_dock.add_seed_mm(s["mpi_mm"], name=s["name"])
    assert len(roi_dock.results) >= 3 and not errors
    res = dock.apply_to_rois()
    assert res is dock.iron_results and [r.name for r in res] == [r.name for r in roi_dock.results]
    assert "from the MPI ROIs dock" in dock.roi_label.text()
    iso = next(r for r in res if r.name == "isolated")
    truth = study.source("isolated")["iron_ug"]
    assert iso.iron_ug == pytest.approx(truth, rel=0.05)
    assert iso.iron_ci_low_ug < iso.iron_ug < iso.iron_ci_high_ug
    assert not iso.below_lod
    assert dock.iron_table.rowCount() == len(res)
    headers = [
        dock.iron_table.horizontalHeaderItem(j).text() for j in range(dock.iron_table.columnCount())
    ]
    assert any("µg Fe" in h for h in headers)
    # warnings: ⚠n beside the iron they concern, each said whole once under the table
    assert "warnings" not in headers
    flagged = [r for r in res if r.warnings]
    if flagged:
        assert dock.iron_table.mpi_viewer_warning_notes.text()


def test_library_save_export_import_and_bad_inputs(demo, errors, tmp_path, qtbot):
    viewer, study, paths, dock = demo
    dock.load_phantoms_csv(paths["phantoms"])
    dock.fit()  # off the GUI thread, as the button does
    qtbot.waitUntil(lambda: dock.calibration is not None, timeout=60000)
    slope = dock.calibration.fit.slope
    dock.set_library_folder(tmp_path / "library")
    assert dock.save_to_library() is not None
    assert dock.library_list.count() == 1
    out = dock.export_calibration(tmp_path / "exported.json")
    assert out.is_file()
    dock.calibration = None
    cal = dock.import_calibration(out)
    assert cal.fit.slope == pytest.approx(slope, rel=1e-12)
    assert not errors

    # bad input: a notification each, nothing crashes, the calibration is kept
    bad = tmp_path / "bad.csv"
    bad.write_text("name,x,y,iron_ug\nv1,0,0,1\n", encoding="utf-8")
    assert not dock.load_phantoms_csv(bad)
    other = tmp_path / "other.json"
    other.write_text('{"schema_version": 99, "kind": "iron"}', encoding="utf-8")
    assert dock.import_calibration(other) is None
    assert len(errors) == 2 and "missing column" in errors[0] and "schema version" in errors[1]
    assert dock.calibration is cal


def test_clicked_phantoms_are_converted_to_mpi_mm(demo, errors):
    from mpi_viewer.plugins._layers import physical_to_world

    viewer, study, paths, dock = demo
    dock.start_clicking()
    layer = viewer.layers["phantoms"]
    assert layer.mode == "add"
    vial = study.truth["vials"][3]
    layer.add(physical_to_world(dock.mpi_layer, vial["mpi_mm"]))  # as a click in world coordinates
    ph = dock.phantoms()
    assert len(ph) == 1 and ph[0].name == "phantom_1"
    np.testing.assert_allclose(ph[0].xyz_mm, vial["mpi_mm"], atol=1e-6)
    assert dock.phantom_table.rowCount() == 1
