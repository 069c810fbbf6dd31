"""MPI ROIs dock on the demo study: a click (in world coordinates, through the MPI→MRI
registration) makes an ROI whose total signal matches the known PSF and iron; a bad
click is a notification and the table keeps its rows."""

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _expected_halfmax_total(study, src):
    """The known PSF × iron inside its half-maximum level set, in continuous space: the
    demo kernel's share there (``psf_halfmax_fraction`` of its truth; chi2.cdf(2 ln 2, 3)
    for a 3-D Gaussian) of its integral (ROIs integrate at sub-voxel resolution, so a
    voxel-set sum is not their truth)."""
    t = study.truth
    return t["sensitivity_au_mm3_per_ug"] * src["iron_ug"] * t["psf_halfmax_fraction"]


def test_click_makes_roi_bad_click_keeps_table(make_napari_viewer, notes, tmp_path):
    import SimpleITK as sitk
    from mpi_viewer.plugins._launch import load_demo
    from mpi_viewer.plugins._layers import physical_to_world
    from mpi_viewer.plugins._roi_dock import LABELS_LAYER, ROIDock

    from mpi_viewer.io.tables import read_csv

    viewer = make_napari_viewer()
    study = load_demo(viewer)
    dock = ROIDock(viewer)
    viewer.window.add_dock_widget(dock, name="MPI ROIs")
    mpi_layer = dock.mpi_layer
    assert mpi_layer is not None and "MPI" in mpi_layer.name
    dock.start_clicking()

    iso = study.source("isolated")
    # the click lands in world coordinates (MRI space, the MPI is drawn through the registration)
    world = physical_to_world(mpi_layer, [np.asarray(iso["mpi_mm"]) + [0.5, -0.4, 0.3]])[0]
    dock._seed_layer.add(world)  # what a click in add mode does
    assert len(dock.results) == 1 and dock.table.rowCount() == 1
    r = dock.results[0]
    assert r.calibration_signal == pytest.approx(_expected_halfmax_total(study, iso), rel=0.02)
    assert "total signal (a.u.·mm³)" in [
        dock.table.horizontalHeaderItem(j).text().replace("\n", " ")
        for j in range(dock.table.columnCount())
    ]

    # the labels sit on the MPI grid with the MPI layer's placement
    labels = viewer.layers[LABELS_LAYER]
    assert labels.data.shape == study.mpi.shape and int((labels.data == 1).sum()) == r.n_voxels
    np.testing.assert_allclose(labels.affine.affine_matrix, mpi_layer.affine.affine_matrix)
    np.testing.assert_allclose(labels.scale, mpi_layer.scale)

    # a click on background: a notification, no ROI, the table keeps its row
    bg = physical_to_world(mpi_layer, [np.asarray(iso["mpi_mm"]) + [0, 0, -12.0]])[0]
    assert dock.add_seed_world(bg) is None
    assert notes["error"] and "no hot spot above the noise" in notes["error"][-1]
    assert len(dock.results) == 1 and dock.table.rowCount() == 1 and len(dock._seed_layer.data) == 1

    # the weak source beside the strong one: its own ROI
    weak = study.source("weak")
    out = dock.add_seed_world(physical_to_world(mpi_layer, [weak["mpi_mm"]])[0])
    assert out is not None and "shared_signal" in out.flags
    assert np.linalg.norm(np.subtract(out.peak_mm, weak["mpi_mm"])) < 0.3

    # changing the method recomputes every ROI
    dock.method.setCurrentIndex(1)  # nsd
    assert dock.params.method == "nsd" and all(x.method == "nsd" for x in dock.results)
    dock.method.setCurrentIndex(0)

    # noise SD from a background the user paints on the MPI grid (a corner: noise only)
    bg_lab = np.zeros(study.mpi.shape, np.uint8)
    bg_lab[:20, :20, :20] = 1
    viewer.add_labels(bg_lab, name="background")
    dock.background.setCurrentText("background")
    assert dock.params.background_mask is not None
    assert dock.results[0].noise_sd == pytest.approx(study.truth["noise_sd_au"], rel=0.05)
    assert dock.results[0].noise_sd == pytest.approx(
        float(study.mpi.array[:20, :20, :20].std(ddof=1))
    )

    # a linear receiver (identity curve) changes nothing
    before = [x.total_signal for x in dock.results]
    (tmp_path / "curve.csv").write_text("measured_au,true_au\n-100,-100\n0,0\n5000,5000\n")
    dock.load_saturation_curve(tmp_path / "curve.csv")
    assert dock.params.saturation_curve is not None
    np.testing.assert_allclose([x.total_signal for x in dock.results], before, rtol=1e-5)
    assert not any("saturated" in x.flags for x in dock.results)

    dock.export_csv(tmp_path / "rois.csv")
    rows = read_csv(tmp_path / "rois.csv")
    assert len(rows) == 2 and float(rows[0]["total_signal_au_mm3"]) == pytest.approx(
        r.total_signal, rel=1e-5
    )
    dock.save_masks(tmp_path / "rois.nii.gz")
    assert int(
        (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "rois.nii.gz"))) > 0).sum()
    ) == sum(x.n_voxels for x in dock.results)

    dock.resize(520, 560)
    dock.grab().save("/tmp/roi_dock.png")
