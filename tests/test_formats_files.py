"""Real files read right: NIfTI-2, DICOM frames placed by Grid Frame Offset Vector, .npz,
and MATLAB files holding several arrays (issue 15).

References are independent of mpi-viewer's reader: SimpleITK on the NIfTI-1 twin of
a NIfTI-2 file, pydicom's tags for DICOM, the arrays written by the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from test_formats import FFL, write_mat_v73

from mpi_viewer.errors import InputError
from mpi_viewer.io.images import read_volume

MOUSE = FFL.parent / "mouse_mri" / "sherm_mouse_t1_1.nii"


# -- NIfTI-2 ------------------------------------------------------------------------------------
def _nifti2_twin(src: Path, dst: Path) -> Path:
    import nibabel as nib

    n1 = nib.load(str(src))
    n2 = nib.Nifti2Image(np.asanyarray(n1.dataobj), n1.affine, header=n1.header)
    n2.set_qform(n1.get_qform(), code=int(n1.header["qform_code"]))
    n2.set_sform(n1.get_sform(), code=int(n1.header["sform_code"]))
    nib.save(n2, str(dst))
    return dst


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_nifti2_reads_as_its_nifti1_twin(tmp_path, ext):
    import nibabel as nib

    sources = [Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"]
    if MOUSE.is_file():
        sources.append(MOUSE)  # a real mouse T1, direction diag(-1, -1, 1)
    for src in sources:
        dst = _nifti2_twin(src, tmp_path / (src.stem + "_n2" + ext))
        with open(dst, "rb") if ext == ".nii" else __import__("gzip").open(dst, "rb") as f:
            assert int.from_bytes(f.read(4), "little") == 540  # really NIfTI-2
        with pytest.raises(RuntimeError, match="Unable to determine ImageIO reader"):
            sitk.ReadImage(str(dst))  # what SimpleITK alone says
        ref = sitk.ReadImage(str(src))
        vol = read_volume(dst)
        np.testing.assert_allclose(vol.spacing_mm, ref.GetSpacing(), atol=1e-5)
        np.testing.assert_allclose(vol.origin_mm, ref.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(vol.direction.ravel(), ref.GetDirection(), atol=1e-5)
        np.testing.assert_allclose(vol.array, sitk.GetArrayFromImage(ref), rtol=1e-6)
        assert vol.metadata["format"] == "NIfTI-2"


def test_truncated_nifti2_is_refused(tmp_path):
    import nibabel as nib

    src = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
    whole = _nifti2_twin(src, tmp_path / "a.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"cut.nii: truncated file"):
        read_volume(tmp_path / "cut.nii")


# -- DICOM: frames placed by Grid Frame Offset Vector ------------------------------------------------
def test_dicom_frames_placed_by_grid_frame_offset_vector(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
    offsets = np.asarray([float(v) for v in ds.GridFrameOffsetVector])
    vol = read_volume(path)
    assert vol.shape == (15, 10, 10) and vol.metadata["geometry_from"] == "Grid Frame Offset Vector"
    np.testing.assert_allclose(vol.origin_mm, ipp)
    np.testing.assert_allclose(vol.spacing_mm, [10, 10, 5])
    for k in (0, 7, 14):  # frame k lies at the first position + offset k along the slice normal
        np.testing.assert_allclose(vol.index_to_physical([[k, 0, 0]])[0], ipp + [0, 0, offsets[k]])
    np.testing.assert_array_equal(vol.array, ds.pixel_array)
    # the other form of the vector (axial only): the frames' z positions
    ds.GridFrameOffsetVector = [float(ipp[2] + o) for o in offsets]
    ds.save_as(tmp_path / "abs.dcm")
    np.testing.assert_allclose(read_volume(tmp_path / "abs.dcm").origin_mm, ipp)
    np.testing.assert_allclose(read_volume(tmp_path / "abs.dcm").spacing_mm, [10, 10, 5])
    # uneven offsets cannot be one grid
    ds.GridFrameOffsetVector = [float(o) for o in offsets[:-1]] + [offsets[-1] + 3]
    ds.save_as(tmp_path / "uneven.dcm")
    with pytest.raises(InputError, match="not evenly spaced"):
        read_volume(tmp_path / "uneven.dcm")


# -- .npz ---------------------------------------------------------------------------------------------
def test_npz_one_image_several_and_variable(tmp_path):
    z, y, x = np.indices((3, 4, 5))
    img = 100.0 * z + 10 * y + x
    np.savez(tmp_path / "one.npz", recon=img, spacing=np.array([0.5, 0.5, 1.0]))
    vol = read_volume(tmp_path / "one.npz", spacing_mm=(0.5, 0.5, 1.0))
    np.testing.assert_array_equal(vol.array, img)  # (z, y, x) as .npy
    assert vol.modality == "MPI" and vol.metadata["npz_variable"] == "recon"
    np.savez(tmp_path / "two.npz", a=img, b=img[0])
    with pytest.raises(
        InputError,
        match=r"several image variables: a \(3 × 4 × 5\), b \(4 × 5\); choose one with --variable NAME",
    ):
        read_volume(tmp_path / "two.npz", spacing_mm=(1, 1, 1))
    np.testing.assert_array_equal(
        read_volume(tmp_path / "two.npz", spacing_mm=(1, 1), variable="b").array, img[0]
    )
    with pytest.raises(
        InputError, match=r"--variable c: .* has no such variable \(it holds a, b\)"
    ):
        read_volume(tmp_path / "two.npz", spacing_mm=(1, 1), variable="c")


# -- MATLAB files with several arrays ------------------------------------------------------------------
@pytest.fixture
def ffl_with_matrices(tmp_path):
    """Phantom 68's real reconstruction beside the arrays that travel with it in the source
    repository's files: a 338 × 1352 interpolation matrix and 11 flattened reconstructions."""
    import h5py

    if not FFL.is_dir():
        pytest.skip("../shared/data/real/mpi_ffl_phantoms is absent")
    with h5py.File(FFL / "ffl_phantom_68.mat", "r") as f:
        recon = f["reconstructed_full"][()].T  # MATLAB's 64 × 64 matrix
    rng = np.random.default_rng(0)
    path = write_mat_v73(
        tmp_path / "ffl_68_all.mat",
        {
            "reconstructed_full": recon,
            "interp": rng.random((338, 1352)),
            "recons": rng.random((338, 11)),
        },
    )
    return path, recon


def test_mat_several_arrays_refused_listing_them(ffl_with_matrices):
    path, _ = ffl_with_matrices
    path.with_suffix(".json").write_text(json.dumps({"spacing_mm": [0.3125, 0.3125]}))
    with pytest.raises(InputError) as exc:
        read_volume(path)
    msg = str(exc.value)
    assert (
        "several image variables: interp (338 × 1352), recons (338 × 11), reconstructed_full (64 × 64)"
        in msg
    )
    assert "--variable NAME" in msg and "\n" not in msg


def test_mat_sidecar_geometry_picks_the_image_and_refuses_the_matrix(ffl_with_matrices):
    path, recon = ffl_with_matrices
    path.with_suffix(".json").write_text(
        json.dumps({"spacing_mm": [0.3125, 0.3125], "fov_mm": [20, 20]})  # README: 20 mm, 64 px
    )
    vol = read_volume(path)
    assert vol.metadata["matlab_variable"] == "reconstructed_full" and vol.shape == (64, 64)
    np.testing.assert_array_equal(vol.array, recon)
    with pytest.raises(
        InputError, match=r"--variable interp: .*338 × 1352 does not fit the 64 × 64 voxels"
    ):
        read_volume(path, variable="interp")
    np.testing.assert_array_equal(read_volume(path, variable="reconstructed_full").array, recon)


def test_mat_with_only_a_matrix_that_does_not_fit_is_refused(tmp_path):
    write_mat_v73(tmp_path / "interp.mat", {"interp": np.ones((338, 1352))})
    (tmp_path / "interp.json").write_text(
        json.dumps({"spacing_mm": [0.3125, 0.3125], "size": [64, 64]})
    )
    with pytest.raises(
        InputError, match=r"no variable fits the image geometry \(interp 338 × 1352 does not fit"
    ):
        read_volume(tmp_path / "interp.mat")


def test_cli_variable_flag(ffl_with_matrices, tmp_path):
    path, recon = ffl_with_matrices
    path.with_suffix(".json").write_text(
        json.dumps({"spacing_mm": [0.3125, 0.3125], "origin_mm": [-9.84375, -9.84375]})
    )
    # the brightest pixel of the real reconstruction, in mm
    r, c = np.unravel_index(np.argmax(recon), recon.shape)
    seed = f"--seed={-9.84375 + 0.3125 * c},{-9.84375 + 0.3125 * r}"
    out = tmp_path / "r.csv"

    def run(*args):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "mpi_viewer.cli",
                "quantify",
                str(path),
                seed,
                "-o",
                str(out),
                *args,
            ],
            capture_output=True,
            encoding="utf-8",
        )

    bad = run()
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "several image variables" in bad.stderr and "Traceback" not in bad.stderr
    assert not out.exists()
    from mpi_viewer.cli import main

    args = ["quantify", str(path), seed, "-o", str(out), "--variable", "reconstructed_full"]
    assert main([*args, "--no-split"]) == 0
    import csv

    [row] = list(csv.DictReader(out.open(encoding="utf-8")))
    # the ROI sits on the real reconstruction's brightest pixel (within one 0.3125 mm pixel)
    assert abs(float(row["peak_x_mm"]) - (-9.84375 + 0.3125 * c)) <= 0.3125
    assert abs(float(row["peak_y_mm"]) - (-9.84375 + 0.3125 * r)) <= 0.3125


def test_reading_several_variable_files_never_writes(ffl_with_matrices):
    path, _ = ffl_with_matrices
    before = sorted(p.name for p in path.parent.iterdir())
    shutil.copy(path, path.with_name("copy.mat"))
    with pytest.raises(InputError):
        read_volume(path.with_name("copy.mat"), spacing_mm=(1, 1))
    after = sorted(p.name for p in path.parent.iterdir())
    assert after == sorted([*before, "copy.mat"])
