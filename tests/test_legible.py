"""The study legible on screen (issue 12): docks as numbered steps that fit in 420 px,
ROI outlines as contours (2-D) and whole surfaces (3-D), warnings beside the number they
concern and said once in full, labels that never overlap each other or their ROIs.

The GUI test walks the demo study in the real window (``mpi-viewer demo``), as a user
gets it, and asserts what is on screen; the others test the pieces headless.
"""

import re

import numpy as np
import pytest

MAX_PX = 420


# --------------------------------------------------------------------------- headless
def test_each_warning_is_numbered_once_and_kept_whole():
    from mpi_viewer.plugins._warnings_view import marker, numbered

    shared = "solution calibration applied to labelled cells; prefer a cell calibration"
    per_row, notes = numbered(
        ["a", "b", "c"],
        [[shared, "touches b."], [shared, "touches a."], []],
    )
    assert per_row == [[1, 2], [1, 3], []]
    assert notes == [(1, "a, b", shared), (2, "a", "touches b."), (3, "b", "touches a.")]
    assert marker(per_row[0]) == "⚠1,2" and marker([]) == ""


def test_roi_label_style_follows_2d_and_3d():
    """2-D: an outline over the image; 3-D: an iso-surface drawn over the anatomy's
    volume rendering (with the depth test it is cut into speckle by the rendering)."""
    from mpi_viewer.plugins._overlay_style import style_roi_labels
    from napari.layers import Labels

    lab = np.zeros((8, 8, 8), np.uint16)
    lab[2:5, 2:5, 2:5] = 1
    layer = Labels(lab)
    style_roi_labels(layer, 2)
    assert layer.contour >= 1 and layer.opacity == 1.0
    style_roi_labels(layer, 3)
    assert layer.contour == 0 and str(layer.rendering) == "iso_categorical"
    assert str(layer.blending) == "translucent_no_depth"
    style_roi_labels(layer, 2)
    assert layer.contour >= 1 and str(layer.blending) == "translucent"


# --------------------------------------------------------------------------- the window
def _boxes_disjoint(places) -> bool:
    for i, p in enumerate(places):
        for q in places[i + 1 :]:
            if (
                abs(p.centre[0] - q.centre[0]) < (p.size[0] + q.size[0]) / 2
                and abs(p.centre[1] - q.centre[1]) < (p.size[1] + q.size[1]) / 2
            ):
                return False
    return True


def _label_layout_is_clear(viewer, cells):
    from mpi_viewer.plugins import _napari_compat as compat
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    cells._layout_labels()  # as after a zoom or a turn of the view
    _, _, places = cells.label_layout()
    w, h = compat.canvas_size_px(viewer)
    assert places and all(p.clear for p in places), [p for p in places if not p.clear]
    assert _boxes_disjoint(places)
    for p in places:  # inside the canvas
        assert p.size[0] / 2 <= p.centre[0] <= w - p.size[0] / 2
        assert p.size[1] / 2 <= p.centre[1] <= h - p.size[1] / 2


@pytest.mark.gui
def test_the_demo_study_reads_on_screen(
    make_napari_viewer, qtbot, study, tmp_path, notes, copy_demo
):
    from mpi_viewer.plugins._dock_layout import STEPS
    from mpi_viewer.plugins._launch import prepare
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication, QDockWidget, QTabBar, QTabWidget

    viewer = make_napari_viewer(show=True)
    docks = prepare(viewer, demo=True, study=study)
    by = {type(w).__name__: w for w in docks}
    QApplication.processEvents()

    # -- the docks are the steps of the work, in order, numbered, each title whole
    main = docks[0].window()
    bars = [b for b in main.findChildren(QTabBar) if b.count() == len(STEPS)]
    assert len(bars) == 1
    bar = bars[0]
    assert [bar.tabText(k) for k in range(bar.count())] == [s.tab for s in STEPS]
    assert all(bar.tabToolTip(k) for k in range(bar.count()))
    assert bar.elideMode() == Qt.TextElideMode.ElideNone
    assert main.tabPosition(Qt.DockWidgetArea.RightDockWidgetArea) == QTabWidget.TabPosition.West
    assert [s.tab.split()[0] for s in STEPS] == ["1", "2a", "2b", "3", "4", "5", "6"]
    roi = by["ROIDock"]
    dock = roi.parentWidget()
    while not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    assert dock.title.title.text() == "Step 3 of 6 · MPI ROIs"

    # -- walk the study: four ROIs, the vials' calibration, cells at 15 ± 1.5 pg
    paths = copy_demo(tmp_path / "study")
    for src in study.truth["sources"]:
        roi.add_seed_mm(src["mpi_mm"], name=src["name"])
        qtbot.waitUntil(lambda: not roi.busy, timeout=30000)
    cal, cells = by["CalibrationDock"], by["CellsDock"]
    cal.load_phantoms_csv(paths["phantoms"])
    cal.fit(block=True)
    cal.apply_to_rois()
    cells.set_iron_per_cell(15.0, 1.5)
    cells.compute(block=True)
    QApplication.processEvents()
    assert len(cells.results) == 4

    # -- every dock asks for at most 420 px with its contents, and the dock area is that wide
    for w in docks:
        assert w.sizeHint().width() <= MAX_PX, (type(w).__name__, w.sizeHint().width())
    dock.raise_()
    QApplication.processEvents()
    assert dock.width() <= MAX_PX + 10
    # -- the ROIs' table fits the dock; peak position and FWHM are the selected row's line
    from mpi_viewer.plugins._tables import details_label

    from mpi_viewer.calibration.describe import fmt

    _fits_without_scrolling(roi.table, ["ROI", "total signal", "volume", "peak", "mean", "SNR"])
    roi.table.selectRow(1)
    r = roi.results[1]
    line = details_label(roi.table).text()
    assert line.startswith(f"{r.name}: peak at x, y, z = {r.peak_mm[0]:.4g}, ") and "FWHM" in line
    assert line in " ".join(roi.table.item(1, 4).toolTip().split())  # the row's tooltip too

    # -- warnings: no column cut off; ⚠n beside the number; every warning whole, once
    for table, kind in ((cells.table, "cells"), (cal.iron_table, "iron")):
        heads = [table.horizontalHeaderItem(j).text() for j in range(table.columnCount())]
        assert "warnings" not in heads
        col = next(j for j, h in enumerate(heads) if h.startswith(kind))
        notes_text = table.mpi_viewer_warning_notes.text()
        flagged = 0
        for i in range(table.rowCount()):
            name = table.item(i, heads.index("ROI")).text()
            r = next(x for x in (cells.results if kind == "cells" else cal.iron_results)
                     if x.name == name)  # fmt: skip
            cell = table.item(i, col)
            own = [w for w in r.warnings if w not in cal_common(cells, cal, kind)]
            if own:
                flagged += 1
                assert "⚠" in cell.text()
                for w in own:  # whole in the tooltip, and said once under the table
                    assert _esc(w) in " ".join(cell.toolTip().split())
                    assert notes_text.count(_esc(w)) == 1, w
            else:
                assert "⚠" not in cell.text()
        assert flagged >= 1
    # -- the cells table fits the dock: no sideways scrolling; each number with its interval
    QApplication.processEvents()
    assert cells.table.horizontalScrollBar().maximum() == 0
    assert cells.table.viewport().width() >= sum(
        cells.table.columnWidth(j) for j in range(cells.table.columnCount() - 1)
    )
    iso_row = next(i for i in range(cells.table.rowCount())
                   if cells.table.item(i, 1).text() == "isolated")  # fmt: skip
    assert re.fullmatch(
        r"[\d\u2009]+ \([\d\u2009]+–[\d\u2009]+\)", cells.table.item(iso_row, 2).text()
    )
    # -- no bare flag codes beside their sentences, anywhere the user reads warnings
    from mpi_viewer.roi.regions import FLAGS

    shown = [table.mpi_viewer_warning_notes.text() for table in (cells.table, cal.iron_table)]
    shown += [cells.table.item(i, j).toolTip() for i in range(cells.table.rowCount())
              for j in range(cells.table.columnCount())]  # fmt: skip
    rt = roi.table
    shown += [rt.mpi_viewer_warning_notes.text()]
    shown += [rt.item(i, j).text() + " " + rt.item(i, j).toolTip()
              for i in range(rt.rowCount()) for j in range(rt.columnCount())]  # fmt: skip
    said = " ".join(shown)  # the ROIs' own sentences are there (the strong and weak sources
    assert "touches" in said or "tails reach" in said  # touch or share their signal)
    for text in shown:  # no code with an underscore anywhere, no note or tip that is a code
        assert not [f for f in FLAGS if "_" in f and f in text], text
        plain = re.sub(r"<[^>]+>", "", text).replace("&nbsp;", " ")
        parts = re.split(r"⚠\d+|; |\n", plain)
        assert not [p for p in parts if p.split(":")[-1].strip(" .") in FLAGS], text
    # the calibration dock's iron table fits its dock too (amount and interval in one cell)
    cal_dock = cal.parentWidget()
    while not isinstance(cal_dock, QDockWidget):
        cal_dock = cal_dock.parentWidget()
    cal_dock.raise_()
    QApplication.processEvents()
    assert cal.iron_table.isVisible() and cal.iron_table.horizontalScrollBar().maximum() == 0
    # the phantoms' table too: the amounts typed and the signal fitted as columns, each
    # vial's position, peak and volume on the line under the table
    cal.tabs.setCurrentIndex(0)
    _fits_without_scrolling(cal.phantom_table, ["name", "iron (µg Fe)", "total signal"])
    cal.phantom_table.selectRow(2)
    ph = cal.phantoms()[2]
    m = next(p for p in cal.points if p.name == ph.name)  # the vial measured
    line = details_label(cal.phantom_table).text()
    assert line.startswith(f"{ph.name}: at x, y, z = {fmt(ph.xyz_mm[0], 4)}, ")
    assert f"peak {fmt(m.peak_au)} a.u., ROI volume {fmt(m.volume_mm3)} mm³" in line
    cal.tabs.setCurrentIndex(3)
    dock_cells = cells.parentWidget()
    while not isinstance(dock_cells, QDockWidget):
        dock_cells = dock_cells.parentWidget()
    dock_cells.raise_()
    QApplication.processEvents()
    # -- the iron per cell is a magicgui form (as the calibration and registration docks)
    from magicgui.widgets import Container

    assert isinstance(cells.ipc_form, Container) and cells.mean_w.value == 15.0
    # toasts say what to do in the words shown before napari cuts the line (~40 characters)
    assert all(len(m.split(":")[0]) <= 40 for m in notes["warning"] if m.startswith("See ⚠"))

    # -- ROI layers: outlines in 2-D, whole surfaces over the rendering in 3-D
    outline, rois = viewer.layers["ROI outlines"], viewer.layers["MPI ROIs"]
    viewer.dims.ndisplay = 2
    assert outline.contour >= 1 and rois.contour >= 1
    viewer.dims.ndisplay = 3
    for layer in (outline, rois):
        assert layer.contour == 0 and str(layer.rendering) == "iso_categorical"
        assert str(layer.blending) == "translucent_no_depth"

    # -- labels beside their ROIs: axial and coronal 2-D slices through a source, and 3-D
    iso = study.source("isolated")
    viewer.dims.ndisplay = 2
    viewer.dims.set_point(0, float(iso["mri_mm"][2]))
    viewer.reset_view()
    _label_layout_is_clear(viewer, cells)
    viewer.dims.order = (1, 0, 2)
    viewer.dims.set_point(1, float(iso["mri_mm"][1]))
    viewer.reset_view()
    _label_layout_is_clear(viewer, cells)
    viewer.dims.order = (0, 1, 2)
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    viewer.scene.camera.angles = (0.0, -60.0, 30.0)
    _label_layout_is_clear(viewer, cells)
    # the text is never depth-tested: a volume rendering in front would cut it to speckle
    assert str(viewer.layers["cell counts"].text.blending) == "translucent_no_depth"
    # -- the 3-D labels sit on dark backdrops: tiles covering each label's text box
    from mpi_viewer.plugins._cells_overlays import BACKDROP_LAYER

    back = viewer.layers[BACKDROP_LAYER]
    assert back.visible and len(back.data) >= len(cells.results)
    assert np.allclose(back.face_color[:, :3], 0.0) and np.all(back.face_color[:, 3] > 0.5)
    pos, _, places = cells.label_layout()
    _, right, down, zoom, (w, h) = cells._screen_frame()
    for p, anchor in zip(places, pos, strict=True):  # each label's box is covered on screen
        rel = (np.asarray(back.data) - anchor) @ right * zoom
        near = np.abs((np.asarray(back.data) - anchor) @ down * zoom) < 1
        half = back.size[near] * zoom / 2
        assert rel[near].min() - half.min() <= -p.size[0] / 2 + 8
        assert rel[near].max() + half.max() >= p.size[0] / 2 - 8
    # -- one row per image in the layer list: no "(2-D view)" twins, no label helpers
    from mpi_viewer.plugins._layer_rows import listed_layer_names

    viewer.dims.ndisplay = 2
    QApplication.processEvents()
    rows = listed_layer_names(viewer)
    assert not [n for n in rows if "2-D view" in n or n in (BACKDROP_LAYER, "cell count leaders")]
    assert rows == [
        "cell counts", "ROI outlines", "cell density (cells/mm³)", "phantoms", "MPI ROIs",
        "MPI (synthetic demo)", "CT (synthetic demo)", "MRI (synthetic demo)",
    ]  # fmt: skip
    assert any("2-D view" in lyr.name for lyr in viewer.layers)  # the twins still draw
    # the overlays did not take the user's active layer
    assert viewer.layers.selection.active is None or viewer.layers.selection.active.name not in (
        "cell count leaders",
        "cell counts",
        "ROI outlines",
    )
    # -- the fiducial pairs of the mold (7 wells of the demo) fit the registration dock: the
    # name and FRE as columns, the selected pair's positions in each image the line under it
    reg = by["RegistrationDock"]
    reg.mode_combo.setCurrentIndex(1)  # Mold
    reg.mold_panel.detect(block=True)
    _raise_dock(reg)
    _fits_without_scrolling(reg.table, ["use", "name", "FRE (mm)"])
    assert not reg.table.verticalScrollBar().isVisible()  # every pair in sight
    names, f, m = reg.pairs.pairs()
    assert reg.table.rowCount() == len(names) == 7
    reg.table.selectRow(2)
    line = details_label(reg.table).text()
    assert line.startswith(f"{names[2]}: fixed x, y, z = {f[2][0]:.2f}, ") and "moving" in line
    assert f"{m[2][2]:.2f} mm" in line
    assert not notes["error"], notes["error"]


def _raise_dock(widget):
    """Bring the dock holding ``widget`` to the front (the user clicks its tab)."""
    from qtpy.QtWidgets import QApplication, QDockWidget

    dock = widget.parentWidget()
    while not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    dock.raise_()
    QApplication.processEvents()


def _fits_without_scrolling(table, heads):
    """``table`` shown at its dock's width with no horizontal scroll bar, its columns
    (headers starting with ``heads``) all inside its viewport."""
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    got = [
        table.horizontalHeaderItem(j).text().replace("\n", " ") for j in range(table.columnCount())
    ]
    assert len(got) == len(heads) and all(
        g.startswith(h) for g, h in zip(got, heads, strict=True)
    ), got
    assert table.isVisible() and table.rowCount() >= 4
    assert table.horizontalScrollBar().maximum() == 0
    assert not table.horizontalScrollBar().isVisible()
    assert sum(table.columnWidth(j) for j in range(table.columnCount())) <= table.viewport().width()


def cal_common(cells, cal, kind):
    """Warnings true of every row (said once beside the table, not per row)."""
    from mpi_viewer.plugins._calibration_dock import split_warnings

    res = cells.results if kind == "cells" else cal.iron_results
    common, _ = split_warnings([r.warnings for r in res])
    return common


def _esc(text: str) -> str:
    import html

    return html.escape(" ".join(text.split()))
