"""The plugin as a user meets it: napari lists it, File > Open Sample loads the demo,
the layers sit where their physical coordinates say, and a 3-D screenshot shows them."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numpy.testing import assert_allclose

pytestmark = pytest.mark.gui


def test_napari_lists_the_plugin_and_its_contributions():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    mf = pm.get_manifest("mpi-viewer")
    assert mf.contributions.readers and mf.contributions.sample_data
    assert any(s.key == "demo" for s in mf.contributions.sample_data)


def test_open_sample_places_mpi_sources_on_the_mri(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("mpi-viewer", "demo")
    names = [lyr.name for lyr in viewer.layers]
    assert names[0].startswith("MRI") and names[-1].startswith("MPI")
    mri, mpi = viewer.layers[0], viewer.layers[-1]
    assert mpi.colormap.name == "hot" and mpi.blending == "additive"
    assert tuple(mpi.contrast_limits) == pytest.approx(
        (float(mpi.data.min()), float(mpi.data.max()))
    )
    from mpi_viewer.demo.study import make_demo_study

    truth = make_demo_study().truth
    for src in truth["sources"] + [f for f in truth["fiducials"] if f["in_mpi"]]:
        # index of the source in the MPI's own grid → world must be its MRI position
        from mpi_viewer.plugins._layers import volume_from_layer

        idx = volume_from_layer(mpi).physical_to_index(src["mpi_mm"])[0]
        world = np.asarray(mpi.data_to_world(idx))
        assert_allclose(world, np.asarray(src["mri_mm"])[::-1], atol=0.3)
        # and the MRI layer puts the same world point at the same physical point
        mri_idx = np.asarray(mri.world_to_data(world))
        from mpi_viewer.plugins._layers import volume_from_layer as vfl

        assert_allclose(vfl(mri).index_to_physical(mri_idx)[0], src["mri_mm"], atol=0.3)


def test_three_d_screenshot_shows_hot_spots_over_anatomy(make_napari_viewer):
    viewer = make_napari_viewer(show=True)  # the GL canvas renders only when shown
    viewer.open_sample("mpi-viewer", "demo")
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot.shape[2] == 4
    rgb = shot[..., :3].astype(int)
    # anatomy: grey (g ≈ b), possibly tinted red by the additive MPI background
    grey = (np.abs(rgb[..., 1] - rgb[..., 2]) < 10) & (rgb[..., 1] > 40)
    hot = (rgb[..., 0] > 180) & (rgb[..., 0] - rgb[..., 2] > 100)
    assert grey.mean() > 0.02, "anatomy not visible"
    assert hot.sum() > 20, "no MPI hot spots visible"


def test_plugin_start_up_adds_no_scipy_or_simpleitk():
    """Importing the plugin and building its docks loads no SciPy/SimpleITK module
    beyond those napari itself loaded."""
    code = textwrap.dedent(
        """
        import json, sys, time
        import napari
        viewer = napari.Viewer(show=False)
        before = set(sys.modules)
        t = time.perf_counter()
        from mpi_viewer.plugins._launch import open_docks
        widgets = open_docks(viewer)
        elapsed = time.perf_counter() - t
        new = sorted(m for m in set(sys.modules) - before
                     if m.split('.')[0] in ('scipy', 'SimpleITK', 'skimage', 'h5py', 'matplotlib'))
        print(json.dumps({"new": new, "docks": len(widgets), "seconds": elapsed}))
        viewer.close()
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["new"] == [], out["new"]


def test_docks_opened_before_the_data_quantify_the_mpi(make_napari_viewer):
    """`mpi-viewer demo` opens the docks first, then loads the study: the ROI dock must
    measure the MPI (not the first layer inserted, the MRI), and every layer is in mm."""

    from mpi_viewer.plugins._launch import load_demo, open_docks

    viewer = make_napari_viewer()
    docks = {type(w).__name__: w for w in open_docks(viewer)}
    study = load_demo(viewer)
    roi = docks["ROIDock"]
    iso = next(s for s in study.truth["sources"] if s["name"] == "isolated")
    roi.add_seed_mm(iso["mpi_mm"], name="isolated")
    assert roi.mpi_layer.name.startswith("MPI")
    t = study.truth  # the demo kernel's share inside its half-maximum region
    expected = t["sensitivity_au_mm3_per_ug"] * iso["iron_ug"] * t["psf_halfmax_fraction"]
    assert roi.results[0].calibration_signal == pytest.approx(expected, rel=0.02)
    assert all(str(u) == "millimeter" for lyr in viewer.layers for u in lyr.units)
