"""Cells and report dock on the demo: cells per ROI against the truth, labels on the
anatomy where the sources are, bad iron per cell refused, a report folder written."""

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture
def computed(make_napari_viewer, tmp_path, errors, copy_demo):
    """Demo loaded, calibrated from its vials, ROIs at the true sources, cells at 15 ± 1.5 pg."""
    from mpi_viewer.plugins._calibration_dock import CalibrationDock
    from mpi_viewer.plugins._cells_dock import CellsDock
    from mpi_viewer.plugins._launch import load_demo
    from mpi_viewer.plugins._layers import volume_from_layer

    from mpi_viewer.roi import regions as roi

    viewer = make_napari_viewer(show=True)  # a shown window: screenshots render the canvas
    study = load_demo(viewer)
    paths = copy_demo(tmp_path / "study")
    cal = CalibrationDock(viewer)
    viewer.window.add_dock_widget(cal, name="Calibration")
    cells = CellsDock(viewer)
    viewer.window.add_dock_widget(cells, name="Cells and report")
    cal.load_phantoms_csv(paths["phantoms"])
    cal.fit(block=True)
    src = study.truth["sources"]
    params = roi.ROIParams()
    rois = roi.measure(
        volume_from_layer(cal.mpi_layer),
        [s["mpi_mm"] for s in src],
        params,
        names=[s["name"] for s in src],
        on_error="skip",
    )
    cal.apply_to_rois(rois, params)
    cells.set_iron_per_cell(study.truth["iron_per_cell_pg"], study.truth["iron_per_cell_sd_pg"])
    res = cells.compute(block=True)
    assert res and not errors
    return viewer, study, cells


def test_cells_labels_and_overlays_sit_on_the_anatomy(computed, errors):
    viewer, study, cells = computed
    names = [r.name for r in cells.results]
    i = names.index("isolated")
    iso = cells.results[i]
    truth = study.source("isolated")
    assert iso.cells == pytest.approx(truth["cells"], rel=0.05)
    assert iso.cells_ci_low < truth["cells"] < iso.cells_ci_high
    text = cells.label_texts()[i]
    assert "× 10⁵ cells" in text and text.startswith("isolated")

    labels = viewer.layers["cell counts"]
    assert list(labels.features["label"]) == cells.label_texts()
    # the label of the isolated source belongs to its MRI position (world = z, y, x)
    anchors = np.asarray(labels.metadata["mpi_viewer"]["anchors_zyx_mm"])
    np.testing.assert_allclose(anchors[i], np.asarray(truth["mri_mm"])[::-1], atol=0.5)
    # on screen, no label overlaps another or covers an ROI (placed beside, leader if moved)
    cells._layout_labels()  # as after a zoom or turn of the view
    _, _, places = cells.label_layout()
    assert all(p.clear for p in places)
    assert list(labels.features["shown"]) == cells.shown_texts
    assert all(t.startswith(r.name) for t, r in zip(cells.shown_texts, cells.results, strict=False))
    # outline and density: drawn on the MRI grid, non-empty at the source's MRI position
    mri = viewer.layers[0]
    outline, density = viewer.layers["ROI outlines"], viewer.layers["cell density (cells/mm³)"]
    assert outline.contour >= 1 and density.colorbar.visible
    idx = tuple(np.round(outline.world_to_data(anchors[i])).astype(int))
    assert outline.data[idx] > 0 and density.data[idx] > 0
    np.testing.assert_allclose(outline.affine.affine_matrix, mri.affine.affine_matrix)

    # hide one ROI: its label point, outline and density go, the others stay
    lab = next(r.label for r in cells.roi_results if r.name == "isolated")
    cells.set_visible("isolated", False)
    assert not labels.shown[i] and labels.shown.sum() == len(names) - 1
    assert not np.any(outline.data == lab) and density.data[idx] == 0
    assert np.any(outline.data > 0)
    cells.set_visible("isolated", True)
    assert outline.data[idx] == lab


@pytest.mark.parametrize("mean_pg, sd_pg", [(0.0, 0.0), (-5.0, 1.0), (10.0, 12.0)])
def test_bad_iron_per_cell_is_refused_and_results_kept(computed, errors, mean_pg, sd_pg):
    viewer, study, cells = computed
    before = [r.cells for r in cells.results]
    cells.set_iron_per_cell(mean_pg, sd_pg)
    cells.compute(block=True)
    assert len(errors) == 1 and "iron per cell" in errors[0]
    assert [r.cells for r in cells.results] == before


def test_report_folder_with_html_and_pictures(computed, errors, tmp_path):
    viewer, study, cells = computed
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine", encoding="utf-8")
    assert cells.write_report(busy, block=True) is None
    assert "not empty" in errors[-1] and (busy / "keep.txt").read_text(encoding="utf-8") == "mine"

    out = cells.write_report(tmp_path / "report", block=True)
    assert out is not None and (out / "index.html").is_file()
    html = (out / "index.html").read_text(encoding="utf-8")
    pngs = sorted(out.rglob("*.png"))
    slices = sorted(out.glob("roi_*.png"))
    assert len(slices) == len(cells.results)  # one picture of slices per ROI
    for p in pngs:
        assert p.stat().st_size > 5000, p
        assert p.relative_to(out).as_posix() in html
    from PIL import Image

    for p in slices:  # anatomy (grey), MPI (red–yellow) and outlines/labels (cyan) all shown
        rgb = np.asarray(Image.open(p))[..., :3].astype(int)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        grey = (np.abs(g - b) < 10) & (np.abs(r - g) < 10) & (g > 80) & (g < 250)
        hot = (r > 180) & (b < 90)
        cyan = (r < 90) & (g > 180) & (b > 180)
        assert grey.mean() > 0.05 and hot.mean() > 0.0001 and cyan.mean() > 0.0001, p
    assert (out / "results.csv").is_file()
    assert not (out / "napari").exists()  # nothing taken from the live window
    assert viewer.dims.ndisplay == 2


def test_cells_from_a_cell_based_calibration(make_napari_viewer, tmp_path, errors, qtbot):
    """Vials as labelled-cell phantoms (cells = iron / 15 pg): the isolated source's
    400 000 cells come straight from the line, no iron per cell needed."""
    from mpi_viewer.plugins._calibration_dock import CalibrationDock
    from mpi_viewer.plugins._cells_dock import CellsDock
    from mpi_viewer.plugins._launch import load_demo
    from mpi_viewer.plugins._layers import volume_from_layer

    from mpi_viewer.demo.study import make_demo_study
    from mpi_viewer.roi import regions as roi

    viewer = make_napari_viewer()
    study = load_demo(viewer)
    assert study is make_demo_study()
    cal = CalibrationDock(viewer)
    viewer.window.add_dock_widget(cal, name="Calibration")
    cells = CellsDock(viewer)
    viewer.window.add_dock_widget(cells, name="Cells and report")
    pg = study.truth["iron_per_cell_pg"]
    cal.kind_combo.setCurrentIndex(1)  # phantoms hold cells
    cal.set_phantoms(
        [(v["name"], v["mpi_mm"], v["iron_ug"] * 1e6 / pg) for v in study.truth["vials"]]
    )
    cal.fit(block=True)
    assert cal.calibration.kind == "cells" and cal.calibration.environment == "cells"
    truth = study.source("isolated")
    params = roi.ROIParams()
    rois = roi.measure(
        volume_from_layer(cal.mpi_layer), [truth["mpi_mm"]], params, names=["isolated"]
    )
    cal.apply_to_rois(rois, params)

    cells.set_from_cell_calibration(True)
    cells.mean_w.value = 0.0  # not used, so not an error
    cells.compute()  # off the GUI thread, as the button does
    qtbot.waitUntil(lambda: bool(cells.results), timeout=60000)
    assert not errors
    iso = cells.results[0]
    assert iso.cells == pytest.approx(truth["cells"], rel=0.05)
    assert "× 10⁵ cells" in cells.label_texts()[0]
