"""Issue 15 from the user's path: real and specification-conformant files through the
`mpi-viewer` command as typed (one real process each) and through napari's File > Open
(its own menu command, file dialog and reader choice answered as a user would).

Truth: the files' own content (pydicom's tags, nibabel's header, the arrays written),
the masks the command writes, and the real FFL reconstructions' blobs found here with
scipy.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from test_formats_files import _nifti2_twin, ffl_with_matrices  # noqa: F401 - a fixture
from test_mdf import REAL_MDF, encoded, frames_channels, spec_mdf
from test_roi_real import DATA as FFL
from test_roi_real import SPACING_MM

MOUSE = FFL.parent / "mouse_mri" / "sherm_mouse_t1_1.nii"
real = pytest.mark.skipif(
    not (FFL.is_dir() and REAL_MDF.is_file() and MOUSE.is_file()),
    reason="../shared/data/real is absent",
)


def _cli(*args, cwd=None):
    """`mpi-viewer ARGS` as typed in a shell (a real process)."""
    return subprocess.run(
        [sys.executable, "-m", "mpi_viewer.cli", *map(str, args)],
        capture_output=True,
        encoding="utf-8",
        cwd=cwd,
    )


def _cut(src: Path, dst: Path) -> Path:
    """The first half of ``src`` (a download or copy that stopped)."""
    data = Path(src).read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good and bad files: MDF built on the real file's metadata, NIfTI-2 of the real
    mouse T1, pydicom's real DICOM, their truncated copies."""
    from pydicom.data import get_testdata_file

    if not (REAL_MDF.is_file() and MOUSE.is_file()):
        pytest.skip("../shared/data/real is absent")
    d = tmp_path_factory.mktemp("real")
    z, y, x = np.indices((9, 9, 9))
    blob = 50.0 * np.exp(-((x - 4) ** 2 + (y - 4) ** 2 + (z - 4) ** 2) / (2 * 1.2**2))
    f = {
        "mdf": spec_mdf(
            d / "blob.mdf", frames_channels(blob, 1, 1), size_xyz=(9, 9, 9), fov_m=(0.009,) * 3
        ),
        "mdf2d": spec_mdf(
            d / "r2d.mdf",
            frames_channels(encoded((1, 40, 40)), 1, 1),
            size_xyz=(40, 40, 1),
            fov_m=(0.044, 0.044, 0.001),
        ),
        "dyn": spec_mdf(
            d / "dyn.mdf",
            frames_channels(encoded((2, 3, 4)), 3, 2),
            size_xyz=(4, 3, 2),
            fov_m=(0.004, 0.003, 0.002),
        ),
        "nifti2": _nifti2_twin(MOUSE, d / "mouse_t1_n2.nii"),
        "rtdose": Path(get_testdata_file("rtdose.dcm")),
        "measurement_only": REAL_MDF,
    }
    f["cut_mdf"] = _cut(f["mdf"], d / "cut.mdf")
    f["cut_nifti2"] = _cut(f["nifti2"], d / "cut_n2.nii")
    f["cut_dicom"] = _cut(get_testdata_file("emri_small.dcm") or f["rtdose"], d / "cut.dcm")
    return f


# -- bad input on the command line: exit 2, one line naming the file ---------------------------
@real
@pytest.mark.parametrize(
    "key, needle",
    [
        ("cut_mdf", "not a readable MDF (HDF5) file"),
        ("measurement_only", "but no /reconstruction; reconstruct it first"),
        ("cut_nifti2", "truncated file"),
        ("cut_dicom", "cannot read DICOM pixels"),
    ],
)
def test_cli_bad_files_exit_2_with_one_line(files, tmp_path, key, needle):
    out = tmp_path / "r.csv"
    r = _cli("quantify", files[key], "--seed=0,0,0", "-o", out)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert Path(files[key]).name in lines[0] and needle in lines[0]
    assert not out.exists()
    if key in ("cut_nifti2", "cut_dicom"):  # the same file as the anatomy
        r = _cli("quantify", files["mdf"], "--seed=0,0,0", "--anatomy", files[key], "-o", out)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr


@real
def test_cli_two_d_where_three_d_is_needed(files, tmp_path):
    """A 2-D reconstruction as the anatomy of a 3-D MPI (or the other way round), a 3-value
    seed on a 2-D image: exit 2, one line; nothing written."""
    out = tmp_path / "r.csv"
    for mpi, anatomy, seed, needle in (
        (files["mdf"], files["mdf2d"], "0,0,0", "a 2-D image, but the MPI"),
        (files["mdf2d"], files["mdf"], "0,0", "a 3-D image, but the MPI"),
        (files["mdf2d"], None, "0,0,0", "expected 2 comma-separated numbers, got 3"),
    ):
        extra = ["--anatomy", anatomy] if anatomy else []
        r = _cli("quantify", mpi, f"--seed={seed}", *extra, "-o", out)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr
        assert "Traceback" not in r.stderr and not out.exists()
    tfm = tmp_path / "t.tfm"  # a mold template on a 2-D MPI
    r = _cli("register", files["nifti2"], files["mdf2d"], "--template", "mouse_mold_v1", "-o", tfm)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and not tfm.exists(), r.stderr
    assert "moving image 'r2d' is 2-D: a mold's wells are placed in 3-D" in lines[0]


# -- the real FFL reconstructions through the command ------------------------------------------
def _seeds(n):
    from mpi_viewer.io.images import read_volume

    vol = read_volume(FFL / f"ffl_phantom_{n}.mat", modality="MPI", spacing_mm=SPACING_MM)
    a = vol.array
    if n == 29:  # a click near each of the three blobs
        blobs, k = ndi.label(a >= 0.5 * a.max())
        assert k == 3
        at = [np.asarray(c) + (1.0, -1.0) for c in ndi.center_of_mass(a, blobs, range(1, 4))]
    else:  # a click on the brightest pixel
        at = [np.unravel_index(int(np.argmax(a)), a.shape)]
    return vol, [vol.index_to_physical([p])[0] for p in at]


@real
@pytest.mark.parametrize("n", [1, 24, 29, 62, 68])
def test_cli_on_real_reconstructions_reports_the_written_mask(n, tmp_path):
    """`quantify ffl_phantom_N.mat --spacing-mm … --masks M.nii.gz`: each ROI's voxel count is
    the written mask's, its area that mask's area within the rim's sub-voxel refinement; one
    ROI per blob on 29, the whole S (24) and the whole vessel (68) as one ROI each."""
    import nibabel as nib

    vol, seeds = _seeds(n)
    a = vol.array
    for extra in ([], ["--no-split"]):
        out, masks = tmp_path / f"r{n}.csv", tmp_path / f"m{n}.nii.gz"
        args = ["quantify", FFL / f"ffl_phantom_{n}.mat", "--spacing-mm", "0.3125,0.3125"]
        args += [f"--seed={x:.6f},{y:.6f}" for x, y in seeds]
        r = _cli(*args, "-o", out, "--masks", masks, "--overwrite", *extra)
        assert r.returncode == 0, r.stderr
        rows = list(csv.DictReader(out.open(encoding="utf-8")))
        lab = np.squeeze(np.asarray(nib.load(str(masks)).dataobj)).T  # NIfTI x, y → (y, x)
        assert lab.shape == a.shape
        assert len(rows) == len(seeds)
        vox = float(np.prod(SPACING_MM))
        for row in rows:
            mask = lab == int(row["label"])
            assert int(row["n_voxels"]) == int(mask.sum()) > 0
            assert float(row["area_mm2"]) == pytest.approx(mask.sum() * vox, rel=0.06)
            assert float(row["total_signal_au_mm2"]) == pytest.approx(a[mask].sum() * vox, rel=0.06)
            # the mask is one 8-connected region at the threshold: nothing dropped or added
            # (of the image itself when no neighbour's modelled tail was subtracted)
            ref, _ = ndi.label(a >= float(row["threshold_au"]), structure=np.ones((3, 3)))
            assert len(set(np.unique(ref[mask])) - {0}) == 1
            if float(row["neighbour_signal_au_mm2"] or 0) == 0:
                assert np.array_equal(mask, ref == ref[mask][0])
        # the noise SD is the background's (the image's four 8 × 8 corners) within 20 %
        corners = np.concatenate(
            [c.ravel() for c in (a[:8, :8], a[:8, -8:], a[-8:, :8], a[-8:, -8:])]
        )
        for row in rows:
            assert float(row["noise_sd_au"]) == pytest.approx(corners.std(ddof=1), rel=0.2)
        if n == 29:  # three blobs, one ROI each, each on its own blob
            blobs, _ = ndi.label(a >= 0.5 * a.max())
            own = [set(np.unique(blobs[lab == int(row["label"])])) - {0} for row in rows]
            assert sorted(min(o) for o in own) == [1, 2, 3] and all(len(o) == 1 for o in own)
        if n in (24, 68):  # one ROI: the whole shape at half its maximum
            [row] = rows
            assert "multiple_peaks" in row["flags"] and "shared_signal" not in row["flags"]
            assert "not point-like" in row["warnings"] and "not point-like" in r.stderr
            # at half the maximum (the sub-voxel peak lies up to 3 % above the brightest pixel)
            assert 0.5 * a.max() * (1 - 1e-5) <= float(row["threshold_au"]) <= 0.5 * a.max() * 1.03
            ref, _ = ndi.label(a >= 0.5 * a.max(), structure=np.ones((3, 3)))
            pk = np.unravel_index(int(np.argmax(a)), a.shape)
            whole = ref == ref[pk]
            assert lab[pk] > 0 and not (lab[~whole] > 0).any()
            assert (lab > 0).sum() >= 0.9 * whole.sum()


# -- File > Open in the window ----------------------------------------------------------------
def _file_open(viewer, monkeypatch, path, asked: list):
    """File > Open (napari's menu command): the dialog returns ``path``; when napari asks
    which reader to use (another plugin claims the extension too) the user picks mpi-viewer."""
    from napari._app_model import get_app_model
    from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog
    from napari._qt.qt_viewer import QtViewer

    monkeypatch.setattr(QtViewer, "_open_file_dialog_uni", lambda self, caption: [str(path)])

    def choose(self):
        asked.append(Path(path).name)
        return "mpi-viewer", False

    monkeypatch.setattr(QtReaderDialog, "get_user_choices", choose)
    get_app_model().commands.execute_command("napari.window.file.open_files_dialog").result()


@real
@pytest.mark.gui
def test_file_open_reads_real_files_placed(make_napari_viewer, monkeypatch, files, errors):
    import nibabel as nib
    import pydicom
    from mpi_viewer.plugins._layers import physical_to_world

    viewer = make_napari_viewer()
    asked: list[str] = []
    # NIfTI-2 of the real mouse T1 (napari's own reader claims .nii too: the user is asked)
    _file_open(viewer, monkeypatch, files["nifti2"], asked)
    t1 = viewer.layers[-1]
    img = nib.load(str(files["nifti2"]))
    assert t1.data.shape == img.shape[::-1]
    np.testing.assert_allclose(t1.scale, np.abs(img.header.get_zooms()[::-1]), rtol=1e-5)
    # rtdose: 15 frames placed by Grid Frame Offset Vector, 5 mm apart
    _file_open(viewer, monkeypatch, files["rtdose"], asked)
    dose = viewer.layers[-1]
    ds = pydicom.dcmread(files["rtdose"])
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    off = np.array([float(v) for v in ds.GridFrameOffsetVector])
    assert dose.data.shape == (15, 10, 10)
    world = physical_to_world(dose, [ipp + [0, 0, off[14]]])[0]  # frame 14's first voxel
    np.testing.assert_allclose(dose.world_to_data(world), [14, 0, 0], atol=1e-6)
    # 3 frames × 2 channels of an MDF: one layer per channel, the frames on a time axis
    n_asked = len(asked)
    _file_open(viewer, monkeypatch, files["dyn"], asked)
    ch0, ch1 = viewer.layers[-2:]
    assert [ch0.name, ch1.name] == ["dyn [channel 0]", "dyn [channel 1]"]
    assert ch1.data.shape == (3, 2, 3, 4) and ch1.axis_labels[0] == "frame"
    assert ch1.data[2, 1, 2, 3] == pytest.approx(3 * encoded((2, 3, 4))[1, 2, 3] + 1000)
    # a 2-D MDF reconstruction (only mpi-viewer reads .mdf: nobody is asked)
    _file_open(viewer, monkeypatch, files["mdf2d"], asked)
    assert len(asked) == n_asked and viewer.layers[-1].data.ndim == 2
    np.testing.assert_allclose(viewer.layers[-1].scale, [1.1, 1.1])
    # a real FFL reconstruction (.mat, no spacing): opened on 1 mm voxels and said so
    _file_open(viewer, monkeypatch, FFL / "ffl_phantom_24.mat", asked)
    assert viewer.layers[-1].data.shape == (64, 64)
    assert asked == ["mouse_t1_n2.nii", "rtdose.dcm"]
    assert not errors, errors


@real
@pytest.mark.gui
def test_file_open_of_bad_files_is_one_notification_each(
    make_napari_viewer, monkeypatch, files, errors
):
    """Truncated MDF, NIfTI-2 and DICOM, a measurement-only MDF: a one-line error
    notification naming the file each, nothing added, the viewer keeps going."""
    viewer = make_napari_viewer()
    keys = ("cut_mdf", "measurement_only", "cut_nifti2", "cut_dicom")
    for key in keys:
        _file_open(viewer, monkeypatch, files[key], [])
    assert len(viewer.layers) == 0
    assert len(errors) == len(keys), errors
    for key, e in zip(keys, errors, strict=True):
        assert "\n" not in e and Path(files[key]).name in e, e
    _file_open(viewer, monkeypatch, files["mdf"], [])  # and the next good file opens
    assert len(viewer.layers) == 1 and viewer.layers[0].data.shape == (9, 9, 9)


# -- mold registration with four wells, one cut: never a wrong transform reported as success ------
def test_cli_four_wells_scanned_the_other_way_round_is_refused_not_wrong(tmp_path):
    """Head-first in the MRI, feet-first in the MPI, four wells in the MRI (M3 cut): the
    default prior (45°) cannot decide, so `register --template` exits 2 with one line,
    writes no transform and prints the two candidate poses, one of them right; `--pose N`
    of the right one registers within 0.5 mm of the truth."""
    import SimpleITK as sitk
    from test_molds_poses import SMALL, crop_to_wells

    from mpi_viewer.demo.study import make_demo_study, truth_transform
    from mpi_viewer.io.images import write_volume

    study = make_demo_study(
        **SMALL, mpi_rotation_deg=(3.0, 178.0, -4.0), mpi_translation_mm=(2.0, 1.0, -3.0)
    )
    fixed = write_volume(crop_to_wells(study, cut=("M3", 0.3)), tmp_path / "mri_four.nii.gz")
    moving = write_volume(study.mpi, tmp_path / "mpi.nii.gz")
    out = tmp_path / "t.tfm"
    r = _cli("register", fixed, moving, "--template", "mouse_mold_v1", "-o", out)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "--pose" in lines[0], r.stderr
    assert not out.exists()
    assert "pose 1:" in r.stdout and "pose 2:" in r.stdout and "pose 3:" not in r.stdout
    truth = truth_transform(study)
    errs = []
    for n in (1, 2):
        r = _cli("register", fixed, moving, "--template", "mouse_mold_v1", "--pose", n, "-o", out)
        assert r.returncode == 0, r.stderr
        tx = sitk.ReadTransform(str(out))
        errs.append(
            max(
                np.linalg.norm(np.subtract(tx.TransformPoint(p), truth.TransformPoint(p)))
                for p in ([float(v) for v in s["mri_mm"]] for s in study.truth["sources"])
            )
        )
        out.unlink()
    assert min(errs) < 0.5 < 20 < max(errs)


@real
def test_cli_anatomy_of_unknown_modality_says_how_to_name_it(files, tmp_path):
    import shutil

    brain = shutil.copy(MOUSE, tmp_path / "brain.nii")  # a name that says nothing
    r = _cli(
        "register", brain, files["mdf"], "--template", "mouse_mold_v1", "-o", tmp_path / "t.tfm"
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "brain.nii: modality 'unknown'" in lines[0] and '{"modality": "MRI"}' in lines[0]


# -- the ROI dock on a real reconstruction: File > Open, its spacing set, clicks -----------------
@real
@pytest.mark.gui
def test_roi_dock_on_real_reconstructions(make_napari_viewer, qtbot, monkeypatch, notes, tmp_path):
    """`mpi-viewer`, File > Open ffl_phantom_24.mat and ffl_phantom_29.mat, their 0.3125 mm
    pixels set in the Image geometry dock (Apply), then the MPI ROIs dock's "Click hot
    spots" and real clicks: the S is one ROI (the whole S at half its maximum), the three
    blobs three ROIs each on its own blob; the area in the table is that of the ROI drawn
    in the "MPI ROIs" layer (within the rim's sub-voxel refinement) and its pixel count is.
    The session saved then (the spacing given in the window kept) replays on the command
    line with every number."""
    from mpi_viewer.plugins._controller import get_controller
    from mpi_viewer.plugins._launch import prepare
    from mpi_viewer.plugins._layers import physical_to_world, volume_from_layer
    from mpi_viewer.plugins._roi_results import LABELS_LAYER
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QPushButton
    from test_launch_orders import _by_class, click_world

    viewer = make_napari_viewer(show=True)
    docks = prepare(viewer)
    geo, roi = _by_class(docks, "GeometryDock"), _by_class(docks, "ROIDock")
    ctl = get_controller(viewer)
    vox = float(np.prod(SPACING_MM))
    for n in (24, 29):
        _file_open(viewer, monkeypatch, FFL / f"ffl_phantom_{n}.mat", [])
        layer = viewer.layers[-1]
        assert any("no voxel spacing" in w for w in notes["warning"])
        geo.layer_combo.setCurrentText(layer.name)
        geo.spacing[0].setValue(SPACING_MM[0])
        geo.spacing[1].setValue(SPACING_MM[1])
        apply = next(b for b in geo.findChildren(QPushButton) if b.text() == "Apply to layer")
        qtbot.mouseClick(apply, Qt.MouseButton.LeftButton)
        ctl.set_mpi(layer)
        vol = volume_from_layer(layer)
        np.testing.assert_allclose(vol.spacing_mm, SPACING_MM)
        a = vol.array
        if n == 29:
            blobs, _ = ndi.label(a >= 0.5 * a.max())
            at = [np.asarray(c) for c in ndi.center_of_mass(a, blobs, range(1, 4))]
        else:
            at = [np.unravel_index(int(np.argmax(a)), a.shape)]
        viewer.reset_view()
        if not roi.click_btn.isChecked():
            qtbot.mouseClick(roi.click_btn, Qt.MouseButton.LeftButton)
        for k, idx in enumerate(at, start=1):
            world = physical_to_world(layer, [vol.index_to_physical([idx])[0]])[0]
            click_world(qtbot, viewer, world)
            qtbot.waitUntil(lambda k=k: not roi.busy and len(roi.results) == k, timeout=20000)
        lab = np.asarray(viewer.layers[LABELS_LAYER].data)
        assert lab.shape == a.shape
        for r in roi.results:
            drawn = lab == r.label
            assert r.n_voxels == int(drawn.sum())
            assert r.area_mm2 == pytest.approx(drawn.sum() * vox, rel=0.06)
        if n == 24:
            [r] = roi.results
            assert "multiple_peaks" in r.flags
            ref, _ = ndi.label(a >= r.threshold_au, structure=np.ones((3, 3)))
            pk = at[0]
            assert np.array_equal(lab == r.label, ref == ref[pk])  # the whole S
            assert r.threshold_au <= 0.5 * a.max() * 1.03
        else:
            own = [set(np.unique(blobs[lab == r.label])) - {0} for r in roi.results]
            assert own == [{1}, {2}, {3}]
            session = _by_class(docks, "SessionDock")
            saved = session.save(tmp_path / "ffl29.json")
            assert saved is not None, (notes, session.status.text())
            r = _cli("replay", saved)
            assert r.returncode == 0 and "every number matches" in r.stdout, (r.stdout, r.stderr)
        qtbot.mouseClick(roi.clear_btn, Qt.MouseButton.LeftButton)
    assert not notes["error"], notes["error"]


@real
@pytest.mark.gui
def test_file_open_mat_and_npz_with_several_arrays(
    make_napari_viewer,
    monkeypatch,
    ffl_with_matrices,  # noqa: F811 - the fixture imported above
    notes,
    tmp_path,
):
    """File > Open of phantom 68's reconstruction beside a 338 × 1352 matrix and 11 stacked
    reconstructions: refused in one notification listing them and saying how to choose
    (no flag in a dialog); the sidecar's "variable" chooses, in the window and on the
    command line alike. An .npz (napari's own reader claims it too: the user is asked)."""
    import json

    path, recon = ffl_with_matrices
    viewer = make_napari_viewer()
    _file_open(viewer, monkeypatch, path, [])
    assert len(viewer.layers) == 0 and len(notes["error"]) == 1
    [msg] = notes["error"]
    assert "several image variables: interp (338 × 1352), recons (338 × 11)" in msg
    assert '"variable": "NAME" in a sidecar ffl_68_all.json' in msg and "\n" not in msg
    path.with_suffix(".json").write_text(
        json.dumps({"variable": "reconstructed_full", "spacing_mm": [0.3125, 0.3125]})
    )
    _file_open(viewer, monkeypatch, path, [])
    [layer] = viewer.layers
    np.testing.assert_array_equal(layer.data, recon)
    np.testing.assert_allclose(layer.scale, [0.3125, 0.3125])
    r, c = np.unravel_index(np.argmax(recon), recon.shape)
    out = tmp_path / "r.csv"
    res = _cli("quantify", path, f"--seed={0.3125 * c},{0.3125 * r}", "--no-split", "-o", out)
    assert res.returncode == 0, res.stderr
    [row] = list(csv.DictReader(out.open(encoding="utf-8")))
    assert float(row["peak_au"]) == pytest.approx(recon.max(), rel=0.05)
    # a sidecar naming the matrix is refused as --variable is: it does not fit the geometry
    path.with_suffix(".json").write_text(
        json.dumps({"variable": "interp", "spacing_mm": [0.3125, 0.3125], "size": [64, 64]})
    )
    res = _cli("quantify", path, "--seed=1,1", "-o", out, "--overwrite")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1
    assert "ffl_68_all.json: variable 'interp'" in lines[0] and "does not fit" in lines[0]

    np.savez(tmp_path / "scan.npz", recon=recon.astype(np.float32))
    (tmp_path / "scan.json").write_text(json.dumps({"spacing_mm": [0.3125, 0.3125]}))
    asked: list[str] = []
    _file_open(viewer, monkeypatch, tmp_path / "scan.npz", asked)
    assert asked == ["scan.npz"] and viewer.layers[-1].data.shape == (64, 64)
    np.testing.assert_allclose(viewer.layers[-1].scale, [0.3125, 0.3125])


@real
@pytest.mark.gui
def test_two_d_mpi_with_a_three_d_anatomy_in_the_window(
    make_napari_viewer, qtbot, monkeypatch, files, notes
):
    """File > Open the real mouse T1 (NIfTI-2) and a 2-D MDF reconstruction: the Fiducial
    registration dock's start and the Mold registration dock's Detect each say, in one
    notification, that a 2-D MPI does not register to a 3-D anatomy; nothing moves, the
    viewer goes on."""
    import mpi_viewer.plugins._mold_panel as mp
    import mpi_viewer.plugins._registration_dock as rd
    from mpi_viewer.plugins._controller import get_controller
    from mpi_viewer.plugins._launch import prepare
    from qtpy.QtCore import Qt
    from test_launch_orders import _by_class

    for module in (mp, rd):  # the docks' own names for napari's notification
        monkeypatch.setattr(module, "show_error", notes["error"].append)
    viewer = make_napari_viewer(show=True)
    docks = prepare(viewer)
    _file_open(viewer, monkeypatch, files["nifti2"], [])
    _file_open(viewer, monkeypatch, files["mdf2d"], [])
    ctl = get_controller(viewer)
    assert ctl.anatomy is not None and ctl.anatomy.ndim == 3
    assert ctl.mpi is not None and ctl.mpi.ndim == 2
    mpi_affine = np.array(ctl.mpi.affine.affine_matrix)
    reg, mold = _by_class(docks, "RegistrationDock"), _by_class(docks, "MoldPanel")
    qtbot.mouseClick(reg.start_btn, Qt.MouseButton.LeftButton)
    assert len(notes["error"]) == 1 and "differ in dimension" in notes["error"][0]
    qtbot.mouseClick(mold.detect_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not mold.busy, timeout=30000)
    assert len(notes["error"]) == 2, notes["error"]
    assert "\n" not in notes["error"][1] and "2-D" in notes["error"][1], notes["error"][1]
    assert ctl.registration is None
    np.testing.assert_allclose(ctl.mpi.affine.affine_matrix, mpi_affine)


@real
def test_cli_nifti2_anatomy_is_recorded_and_replayed(files, tmp_path):
    """`quantify MPI.mdf --anatomy T1_NIfTI-2 --save-session`: the NIfTI-2 anatomy is an input
    of the session (hashed) and `mpi-viewer replay` finds every number again."""
    import json

    out, session = tmp_path / "r.csv", tmp_path / "s.json"
    r = _cli(
        "quantify", files["mdf"], "--seed=0,0,0", "--anatomy", files["nifti2"], "-o", out,
        "--save-session", session,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    roles = {i["role"]: i for i in json.loads(session.read_text(encoding="utf-8"))["inputs"]}
    assert roles["mri"]["path"].endswith("mouse_t1_n2.nii") and len(roles["mri"]["sha256"]) == 64
    r = _cli("replay", session)
    assert r.returncode == 0 and "every number matches" in r.stdout, (r.stdout, r.stderr)
