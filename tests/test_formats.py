"""Every format through read_volume, against geometry and values known independently.

Real files (pydicom's CT/MR, pydicom-data's enhanced CT/MR, nibabel's anatomical.nii,
the 2-D MPI reconstructions in ../shared/data/real) are checked against what another
reader (pydicom, nibabel, h5py) says; synthetic files are written here with a known
geometry by SimpleITK, h5py, scipy, numpy and tifffile.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from mpi_viewer.errors import InputError
from mpi_viewer.geometry.volume import MissingSpacingError
from mpi_viewer.io.images import read_volume

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
FFL = REAL / "mpi_ffl_phantoms"


# -- helpers (also used by test_placement) ------------------------------------------------
def rotation(deg_xyz) -> np.ndarray:
    """Rotation matrix Rz·Ry·Rx from angles in degrees about x, y, z."""
    a, b, c = np.deg2rad(deg_xyz)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def synthetic_image(
    shape_zyx=(6, 7, 8),
    spacing=(0.4, 0.5, 1.25),
    origin=(-10.5, 3.25, 7.0),
    direction_deg=(10, -20, 15),
    dtype=np.int16,
) -> sitk.Image:
    """An image whose value at (z, y, x) is 100·z + 10·y + x - 50 (so every voxel is distinct)."""
    z, y, x = np.indices(shape_zyx)
    arr = (100 * z + 10 * y + x - 50).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(rotation(direction_deg).ravel())
    return img


def write_dicom_series(
    folder: Path,
    img: sitk.Image,
    *,
    uid: str = "1.2.826.0.1.3680043.2.1125.77",
    tags: dict[str, str] | None = None,
    skip: tuple[int, ...] = (),
    prefix: str = "slice",
) -> Path:
    """One DICOM file per slice with position and orientation tags from ``img``'s geometry."""
    folder.mkdir(parents=True, exist_ok=True)
    d = img.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = {
        "0008|0060": "MR",
        "0020|000e": uid,
        "0020|000d": uid + ".1",
        "0020|0037": "\\".join(f"{v:.10f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
        **(tags or {}),
    }
    for i in range(img.GetDepth()):
        if i in skip:
            continue
        sl = img[:, :, i]
        for tag, value in series.items():
            sl.SetMetaData(tag, value)
        sl.SetMetaData(
            "0020|0032",
            "\\".join(f"{v:.10f}" for v in img.TransformIndexToPhysicalPoint((0, 0, i))),
        )
        sl.SetMetaData("0020|0013", str(i + 1))
        sl.SetMetaData("0008|0018", f"{uid}.2.{i + 1}")
        writer.SetFileName(str(folder / f"{prefix}{i:03d}.dcm"))
        writer.Execute(sl)
    return folder


def write_mdf(
    path: Path,
    data_zyx: np.ndarray,
    *,
    fov_m,
    centre_m,
    frames: int = 1,
    channels: int | None = 1,
    acquisition: bool = True,
    order: str | None = None,
) -> Path:
    """A reconstruction-only MDF: /reconstruction/data is frames × voxels (x fastest) × channels."""
    import h5py

    nz, ny, nx = data_zyx.shape
    flat = np.ascontiguousarray(data_zyx).reshape(-1)  # C order of (z, y, x): x fastest
    data = np.stack([flat * (q + 1) for q in range(frames)])
    if channels is not None:
        data = data[:, :, None].repeat(channels, axis=2)
    with h5py.File(path, "w") as f:
        f["version"] = "2.0.0"
        f["reconstruction/data"] = data.astype(np.float32)
        f["reconstruction/size"] = np.array([nx, ny, nz], dtype=np.int64)
        f["reconstruction/fieldOfView"] = np.asarray(fov_m, dtype=float)
        f["reconstruction/fieldOfViewCenter"] = np.asarray(centre_m, dtype=float)
        if order is not None:
            f["reconstruction/order"] = order
        if acquisition:
            f["tracer/name"] = np.array([b"Perimag"])
            f["tracer/batch"] = np.array([b"L-2291"])
            f["scanner/manufacturer"] = "Bruker"
            f["scanner/name"] = "MPI 25/20 FF"
            f["scanner/topology"] = "FFP"
            f["acquisition/gradient"] = np.array([[-1.0, -1.0, 2.0]])  # T/m, J × 3
            f["acquisition/drivefield/strength"] = np.array(
                [[[0.012], [0.014], [0.0]]]
            )  # T, J × D × F
            f["acquisition/drivefield/baseFrequency"] = 2.5e6  # Hz
            f["acquisition/drivefield/divider"] = np.array([[102], [96], [99]])
            f["acquisition/numAverages"] = 10  # MDF v2: /acquisition/numAverages
    return path


def write_mat_v73(path: Path, variables: dict[str, np.ndarray]) -> Path:
    """A MATLAB v7.3 file as MATLAB writes it: 512-byte user block, arrays transposed."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        for name, a in variables.items():
            ds = f.create_dataset(name, data=np.asarray(a).T)
            ds.attrs["MATLAB_class"] = np.bytes_(b"double" if a.dtype == np.float64 else b"single")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116) + b"\x00" * 8 + b"\x00\x02IM")
    return path


def assert_geometry(vol, img: sitk.Image, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(vol.spacing_mm, img.GetSpacing(), atol=atol)
    np.testing.assert_allclose(vol.origin_mm, img.GetOrigin(), atol=atol)
    np.testing.assert_allclose(vol.direction.ravel(), img.GetDirection(), atol=atol)


# -- NIfTI / NRRD / MetaImage ------------------------------------------------------------
@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_sitk_formats_keep_geometry_and_values(tmp_path, ext):
    img = synthetic_image(dtype=np.float32)
    path = tmp_path / f"mri_scan{ext}"
    sitk.WriteImage(img, str(path))
    vol = read_volume(path)
    assert_geometry(vol, img, atol=1e-5)
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(img))
    assert vol.modality == "MRI" and vol.units == "a.u."  # from the file name
    assert vol.name == "mri_scan"


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.float32, np.float64]
)
@pytest.mark.parametrize("shape", [(5, 6, 7), (6, 7)])
def test_plain_nii_read_in_one_buffer_equals_simpleitk(tmp_path, dtype, shape):
    from mpi_viewer.io._formats._nifti import read_nifti_direct

    rng = np.random.default_rng(3)
    img = sitk.GetImageFromArray((rng.random(shape) * 100).astype(dtype))
    d = len(shape)
    img.SetSpacing([0.3, 0.7, 1.1][:d])
    img.SetOrigin([4.0, -5.5, 6.25][:d])
    img.SetDirection(rotation((20, -35, 50))[:d, :d].ravel() if d == 3 else [0, -1, 1, 0])
    sitk.WriteImage(img, str(tmp_path / "v.nii"))
    reference = sitk.ReadImage(str(tmp_path / "v.nii"))
    direct = read_nifti_direct(tmp_path / "v.nii")
    assert direct is not None  # the one-buffer path handles this file
    vol = read_volume(tmp_path / "v.nii")
    assert vol.image.GetPixelID() == reference.GetPixelID()
    assert_geometry(vol, reference, atol=0)
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(reference))


def test_nii_that_needs_itk_still_reads_as_itk_says(tmp_path):
    nib = pytest.importorskip("nibabel")
    from mpi_viewer.io._formats._nifti import read_nifti_direct

    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    scaled = nib.Nifti1Image(data, np.diag([0.5, 0.5, 2.0, 1.0]))
    scaled.header.set_slope_inter(2.0, -10.0)
    nib.save(scaled, str(tmp_path / "scaled.nii"))
    assert read_nifti_direct(tmp_path / "scaled.nii") is None  # intensity scaling: ITK applies it
    reference = sitk.ReadImage(str(tmp_path / "scaled.nii"))
    vol = read_volume(tmp_path / "scaled.nii")
    assert_geometry(vol, reference, atol=0)
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(vol.array, 2.0 * data.T - 10)  # nibabel data is (x, y, z)


def test_nibabel_anatomical_matches_nibabel_affine():
    nib = pytest.importorskip("nibabel")
    path = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
    if not path.exists():
        pytest.skip(f"{path} not shipped with this nibabel")
    ni = nib.load(str(path))
    vol = read_volume(path)
    aff = ni.affine  # RAS; ITK physical space is LPS
    lps = np.diag([-1, -1, 1]) @ aff[:3, :3]
    np.testing.assert_allclose(vol.spacing_mm, ni.header.get_zooms()[:3], rtol=1e-6)
    np.testing.assert_allclose(vol.origin_mm, [-aff[0, 3], -aff[1, 3], aff[2, 3]], atol=1e-4)
    np.testing.assert_allclose(vol.direction @ np.diag(vol.spacing_mm), lps, atol=1e-4)
    assert vol.shape == ni.shape[::-1]
    np.testing.assert_allclose(vol.array, np.asarray(ni.dataobj).T)


def test_ct_name_gives_hu_units(tmp_path):
    sitk.WriteImage(synthetic_image(), str(tmp_path / "ct.nii.gz"))
    vol = read_volume(tmp_path / "ct.nii.gz")
    assert (vol.modality, vol.units) == ("CT", "HU")


def test_read_array_is_a_read_only_view_on_the_image(tmp_path):
    img = synthetic_image(dtype=np.float32)
    sitk.WriteImage(img, str(tmp_path / "a.nii"))
    vol = read_volume(tmp_path / "a.nii")
    assert not vol.array.flags.writeable
    assert np.shares_memory(vol.array, sitk.GetArrayViewFromImage(vol.image))
    arr = vol.array
    del vol
    import gc

    gc.collect()
    np.testing.assert_array_equal(
        arr, sitk.GetArrayFromImage(img)
    )  # the view keeps the image alive


def test_four_d_with_singleton_is_squeezed_and_real_four_d_refused(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    sitk.WriteImage(sitk.GetImageFromArray(a, isVector=False), str(tmp_path / "one.nii"))
    vol = read_volume(tmp_path / "one.nii")
    assert vol.shape == (2, 3, 4)
    np.testing.assert_array_equal(vol.array, a[0])
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((3, 2, 3, 4), np.float32), isVector=False),
        str(tmp_path / "four.nii"),
    )
    with pytest.raises(InputError, match=r"four\.nii: 4-D"):
        read_volume(tmp_path / "four.nii")


# -- DICOM -----------------------------------------------------------------------------------
def _pydicom_file(name):
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not available (pydicom-data not installed)")
    return Path(path)


@pytest.mark.parametrize(
    "name, modality, units", [("CT_small.dcm", "CT", "HU"), ("MR_small.dcm", "MRI", "a.u.")]
)
def test_single_dicom_file_geometry_and_rescaled_values(name, modality, units):
    import pydicom

    path = _pydicom_file(name)
    ds = pydicom.dcmread(path)
    vol = read_volume(path)
    assert (vol.modality, vol.units) == (modality, units)
    assert vol.shape == (1, ds.Rows, ds.Columns)
    np.testing.assert_allclose(
        vol.spacing_mm[:2], [float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0])]
    )
    np.testing.assert_allclose(
        vol.origin_mm, [float(v) for v in ds.ImagePositionPatient], atol=1e-4
    )
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    np.testing.assert_allclose(vol.array[0], ds.pixel_array * slope + intercept)
    assert vol.metadata["Modality"] == ds.Modality
    assert vol.acquisition.tracer is None  # a CT contrast agent is not an MPI tracer


def test_enhanced_ct_geometry_from_functional_groups():
    import pydicom

    path = _pydicom_file("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    vol = read_volume(path)
    per = ds.PerFrameFunctionalGroupsSequence
    shared = ds.SharedFunctionalGroupsSequence[0]
    pos = np.array(
        [[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient] for f in per]
    )
    orient = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    ps = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    step = pos[1] - pos[0]
    assert vol.modality == "CT" and vol.units == "HU"
    assert vol.shape == (int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    np.testing.assert_allclose(vol.origin_mm, pos[0])
    np.testing.assert_allclose(vol.spacing_mm, [ps[1], ps[0], np.linalg.norm(step)])
    np.testing.assert_allclose(vol.direction[:, 0], orient[:3])
    np.testing.assert_allclose(vol.direction[:, 1], orient[3:])
    np.testing.assert_allclose(vol.direction[:, 2], step / np.linalg.norm(step))
    # every voxel's physical position: frame k at the k-th per-frame position
    for k in range(len(per)):
        np.testing.assert_allclose(vol.index_to_physical([[k, 0, 0]])[0], pos[k], atol=1e-6)
    intercept = float(shared.PixelValueTransformationSequence[0].RescaleIntercept)
    np.testing.assert_allclose(vol.array, ds.pixel_array.astype(float) + intercept)


def test_enhanced_mr_without_pixel_spacing_asks_for_it():
    import pydicom

    path = _pydicom_file("emri_small.dcm")
    with pytest.raises(MissingSpacingError) as err:
        read_volume(path)
    msg = str(err.value)
    assert (
        str(path) in msg and "spacing_mm" in msg and "--spacing-mm X,Y,Z" in msg and "\n" not in msg
    )
    vol = read_volume(path, spacing_mm=(0.9, 0.8, 1.2), origin_mm=(1, 2, 3))
    ds = pydicom.dcmread(path)
    assert vol.modality == "MRI"
    assert vol.shape == (10, 64, 64)
    np.testing.assert_allclose(vol.spacing_mm, (0.9, 0.8, 1.2))
    np.testing.assert_allclose(vol.origin_mm, (1, 2, 3))
    np.testing.assert_array_equal(vol.array, ds.pixel_array)


def test_dicom_series_folder_oblique_geometry(tmp_path):
    img = synthetic_image()
    folder = write_dicom_series(tmp_path / "series", img)
    vol = read_volume(folder)
    assert vol.modality == "MRI" and vol.metadata["files"] == img.GetDepth()
    assert_geometry(vol, img, atol=1e-6)
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(img))
    assert vol.name == "series"


def test_dicom_series_mpi_tags_give_modality_and_tracer(tmp_path):
    img = synthetic_image(direction_deg=(0, 0, 0))
    tags = {
        "0008|0060": "OT",
        "0008|0070": "Magnetic Insight",
        "0008|1090": "MOMENTUM",
        "0018|0010": "VivoTrax",
        "0018|0083": "4",
        "0008|103e": "3D MPI high sensitivity",
    }
    vol = read_volume(write_dicom_series(tmp_path / "mpi", img, tags=tags))
    assert vol.modality == "MPI" and vol.units == "a.u."
    assert vol.acquisition.tracer == "VivoTrax"
    assert vol.acquisition.averages == 4
    assert vol.acquisition.scanner == "Magnetic Insight MOMENTUM"
    assert vol.acquisition.mode == "3D"


def test_folder_with_two_series_reads_the_larger(tmp_path):
    big = synthetic_image(shape_zyx=(5, 4, 3))
    small = synthetic_image(shape_zyx=(2, 4, 3), origin=(50, 50, 50))
    write_dicom_series(tmp_path / "mixed", big, uid="1.2.3.4.5.1")
    write_dicom_series(tmp_path / "mixed", small, uid="1.2.3.4.5.2", prefix="localizer")
    vol = read_volume(tmp_path / "mixed")
    assert vol.shape == (5, 4, 3)
    assert_geometry(vol, big)
    assert vol.metadata["other_series"] == {"1.2.3.4.5.2": 2}


def test_series_with_missing_slice_is_refused(tmp_path):
    folder = write_dicom_series(tmp_path / "gap", synthetic_image(shape_zyx=(6, 4, 3)), skip=(2,))
    with pytest.raises(InputError, match="not evenly spaced"):
        read_volume(folder)


def test_folder_without_dicom_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM"):
        read_volume(tmp_path)


# -- MDF ---------------------------------------------------------------------------------------
def test_mdf_reconstruction_geometry_values_and_acquisition(tmp_path):
    z, y, x = np.indices((3, 4, 5))
    data = (100.0 * x + 10 * y + z).astype(np.float32)  # value encodes its own (x, y, z) index
    fov_m, centre_m = (0.02, 0.016, 0.009), (0.001, -0.002, 0.0005)
    path = write_mdf(tmp_path / "scan.mdf", data, fov_m=fov_m, centre_m=centre_m)
    vol = read_volume(path)
    assert vol.modality == "MPI" and vol.units == "a.u."
    assert vol.shape == (3, 4, 5)
    np.testing.assert_array_equal(vol.array, data)
    # voxel i of n along an axis has its centre at c - fov/2 + (i + 1/2)·fov/n (metres → mm)
    np.testing.assert_allclose(vol.spacing_mm, [20 / 5, 16 / 4, 9 / 3])
    np.testing.assert_allclose(vol.origin_mm, [1 - 10 + 2, -2 - 8 + 2, 0.5 - 4.5 + 1.5])
    np.testing.assert_allclose(
        vol.index_to_physical([[2, 3, 4]])[0], [1 + 10 - 2, -2 + 8 - 2, 0.5 + 4.5 - 1.5]
    )
    acq = vol.acquisition
    assert acq.tracer == "Perimag" and acq.tracer_lot == "L-2291"
    assert acq.gradient_T_per_m == pytest.approx(2.0)
    assert acq.drive_amplitude_mT == pytest.approx(14.0)
    assert acq.drive_frequency_kHz == pytest.approx(2.5e6 / 96 / 1e3)  # the strongest channel
    assert acq.averages == 10 and acq.mode == "3D"
    assert acq.scanner == "Bruker MPI 25/20 FF"
    assert vol.metadata["scanner_topology"] == "FFP"


def test_mdf_v1_layout_two_d_and_order(tmp_path):
    import h5py

    data = np.arange(12, dtype=np.float32).reshape(1, 3, 4) + 1  # one slice, 3 × 4 in-plane
    path = write_mdf(
        tmp_path / "proj.h5",
        data,
        fov_m=(0.012, 0.006, 0.0),
        centre_m=(0, 0, 0.002),
        channels=None,
        acquisition=False,
    )
    vol = read_volume(path)
    # a 2-D reconstruction is a 2-D image on its plane: no thickness is invented
    assert vol.ndim == 2 and vol.shape == (3, 4) and vol.acquisition.mode == "2D"
    np.testing.assert_allclose(vol.spacing_mm, [3, 2])
    np.testing.assert_allclose(vol.origin_mm, [-6 + 1.5, -3 + 1])
    assert vol.metadata["plane"] == "xy" and vol.metadata["slice_position_mm"] == 2
    np.testing.assert_array_equal(vol.array, data[0])
    # order "zyx": z varies fastest on disk
    zyx = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    with h5py.File(tmp_path / "zyx.mdf", "w") as f:
        f["reconstruction/data"] = np.ascontiguousarray(zyx.transpose(2, 1, 0)).reshape(1, -1, 1)
        f["reconstruction/size"] = [4, 3, 2]
        f["reconstruction/fieldOfView"] = [0.004, 0.003, 0.002]
        f["reconstruction/order"] = "zyx"
    np.testing.assert_array_equal(read_volume(tmp_path / "zyx.mdf").array, zyx)


def test_mdf_refusals(tmp_path):
    import h5py

    data = np.ones((2, 3, 4), np.float32)
    write_mdf(tmp_path / "dyn.mdf", data, fov_m=(0.01,) * 3, centre_m=(0,) * 3, frames=5)
    with pytest.raises(InputError, match="5 reconstructed frames; choose one with --frame N"):
        read_volume(tmp_path / "dyn.mdf")
    with h5py.File(tmp_path / "raw.mdf", "w") as f:
        f["measurement/data"] = np.zeros((2, 3))
    with pytest.raises(InputError, match="raw MPI measurements .* but no /reconstruction"):
        read_volume(tmp_path / "raw.mdf")


# -- plain arrays --------------------------------------------------------------------------------
def test_npy_with_sidecar_geometry_and_acquisition(tmp_path):
    a = synthetic_image(dtype=np.float32)
    arr = sitk.GetArrayFromImage(a)
    np.save(tmp_path / "recon.npy", arr)
    sidecar = {
        "spacing_mm": list(a.GetSpacing()),
        "origin_mm": list(a.GetOrigin()),
        "direction": list(a.GetDirection()),
        "modality": "MPI",
        "units": "a.u.",
        "acquisition": {
            "tracer": "VivoTrax",
            "mode": "3D",
            "gradient_T_per_m": 5.7,
            "drive_amplitude_mT": 20,
            "drive_frequency_kHz": 45,
            "averages": 1,
        },
    }
    (tmp_path / "recon.json").write_text(json.dumps(sidecar))
    vol = read_volume(tmp_path / "recon.npy")
    assert_geometry(vol, a)
    np.testing.assert_array_equal(vol.array, arr)
    assert vol.modality == "MPI"
    assert vol.acquisition.to_dict() == sidecar["acquisition"]
    assert vol.layer_kwargs()["metadata"]["mpi_viewer"]["acquisition"]["tracer"] == "VivoTrax"


def test_npy_without_spacing_says_how_to_give_it(tmp_path):
    np.save(tmp_path / "recon.npy", np.ones((4, 5, 6), np.float32))
    with pytest.raises(MissingSpacingError) as err:
        read_volume(tmp_path / "recon.npy")
    assert str(err.value) == (
        f"{tmp_path / 'recon.npy'}: .npy array has no spacing: put spacing_mm in a sidecar JSON "
        "recon.json or pass --spacing-mm X,Y,Z (command line)"
    )
    vol = read_volume(tmp_path / "recon.npy", spacing_mm=(0.5, 0.5, 1.0), origin_mm=(1, 2, 3))
    np.testing.assert_allclose(vol.spacing_mm, (0.5, 0.5, 1.0))
    np.testing.assert_allclose(vol.origin_mm, (1, 2, 3))
    assert (
        vol.modality == "MPI" and vol.acquisition.mode == "3D"
    )  # plain arrays are MPI pipelines' output


def test_two_d_npy_and_four_d_singleton(tmp_path):
    np.save(tmp_path / "proj.npy", np.arange(12.0).reshape(3, 4))
    vol = read_volume(tmp_path / "proj.npy", spacing_mm=(0.25, 0.5, 9.0))  # z ignored for 2-D
    assert vol.ndim == 2 and vol.shape == (3, 4)
    np.testing.assert_allclose(vol.spacing_mm, (0.25, 0.5))
    assert vol.acquisition.mode == "2D"
    np.save(tmp_path / "four.npy", np.ones((1, 2, 3, 4)))
    assert read_volume(tmp_path / "four.npy", spacing_mm=(1, 1, 1)).shape == (2, 3, 4)


def test_mat_v5_matlab_axis_order_and_variable_choice(tmp_path):
    import scipy.io

    y, x, z = np.indices((4, 5, 3))
    a = 100.0 * z + 10 * y + x  # MATLAB A(row=y, col=x, page=z)
    scipy.io.savemat(tmp_path / "recon.mat", {"img": a, "note": "scanned today"})
    vol = read_volume(tmp_path / "recon.mat", spacing_mm=(1, 1, 2))
    assert vol.shape == (3, 4, 5)
    zz, yy, xx = np.indices(vol.shape)
    np.testing.assert_array_equal(vol.array, 100.0 * zz + 10 * yy + xx)
    assert vol.metadata["matlab_variable"] == "img"
    scipy.io.savemat(tmp_path / "two.mat", {"recon_a": a, "recon_b": a[:, :, 0]})
    with pytest.raises(
        InputError,
        match=r"several image variables: recon_a \(4 × 5 × 3\), recon_b \(4 × 5\); choose one with --variable NAME",
    ):
        read_volume(tmp_path / "two.mat", spacing_mm=(1, 1, 1))


def test_mat_v73_written_like_matlab(tmp_path):
    a2 = np.arange(20.0).reshape(4, 5)  # MATLAB 4 rows (y) × 5 columns (x)
    write_mat_v73(tmp_path / "proj.mat", {"reconstructed": a2})
    vol = read_volume(tmp_path / "proj.mat", spacing_mm=(0.3125, 0.3125))
    assert vol.shape == (4, 5)
    np.testing.assert_array_equal(vol.array, a2)
    y, x, z = np.indices((4, 5, 3))
    write_mat_v73(tmp_path / "vol.mat", {"v": 100.0 * z + 10 * y + x, "w": np.ones((7, 7))})
    with pytest.raises(InputError, match="several image variables"):
        read_volume(tmp_path / "vol.mat", spacing_mm=(1, 1, 1))
    write_mat_v73(tmp_path / "vol.mat", {"v": 100.0 * z + 10 * y + x, "s": np.ones((1, 1))})
    vol = read_volume(tmp_path / "vol.mat", spacing_mm=(1, 1, 1))
    zz, yy, xx = np.indices(vol.shape)
    np.testing.assert_array_equal(vol.array, 100.0 * zz + 10 * yy + xx)


@pytest.mark.skipif(not FFL.is_dir(), reason="../shared/data/real/mpi_ffl_phantoms is absent")
def test_real_ffl_mpi_reconstruction_v73():
    path = FFL / "ffl_phantom_1.mat"
    with pytest.raises(MissingSpacingError, match=r"--spacing-mm X,Y \(command line\)"):
        read_volume(path)
    vol = read_volume(path, spacing_mm=(20 / 64, 20 / 64))  # README: 20 mm field of view, 64 pixels
    assert vol.modality == "MPI" and vol.shape == (64, 64) and vol.array.dtype == np.float64
    assert vol.acquisition.mode == "2D"
    # The phantom is the letter O, taller than wide, as MATLAB displays the matrix.
    mask = vol.array > 0.5 * vol.array.max()
    rows, cols = np.nonzero(mask)
    assert np.ptp(rows) > 1.15 * np.ptp(cols)
    assert vol.array.min() < 0  # real reconstructions hold negative values; they are kept


@pytest.mark.skipif(not FFL.is_dir(), reason="../shared/data/real/mpi_ffl_phantoms is absent")
def test_all_real_ffl_reconstructions_open_with_a_sidecar(tmp_path):
    import shutil

    for src in sorted(FFL.glob("*.mat")):
        dst = tmp_path / src.name
        shutil.copy(src, dst)  # the sidecar goes beside a copy: the shared data stays untouched
        (tmp_path / (src.stem + ".json")).write_text(
            json.dumps(
                {
                    "spacing_mm": [0.3125, 0.3125],
                    "origin_mm": [-9.84375, -9.84375],
                    "acquisition": {"tracer": "Synomag", "mode": "2D"},
                }
            )
        )
        vol = read_volume(dst)
        assert vol.shape == (64, 64) and vol.modality == "MPI", src.name
        assert vol.acquisition.tracer == "Synomag"
        # the 64 pixels of 0.3125 mm span the README's 20 mm field of view, centred on 0
        np.testing.assert_allclose(
            vol.index_to_physical([[-0.5, -0.5], [63.5, 63.5]]), [[-10, -10], [10, 10]]
        )
        assert np.isfinite(vol.array).all() and vol.array.max() > 0


def test_tiff_stack_and_rgb_refused(tmp_path):
    import tifffile

    arr = sitk.GetArrayFromImage(synthetic_image(dtype=np.uint16))
    tifffile.imwrite(tmp_path / "stack.tif", arr)
    (tmp_path / "stack.json").write_text(
        json.dumps({"spacing_mm": [0.5, 0.5, 2.0], "origin_mm": [0, 0, 0]})
    )
    vol = read_volume(tmp_path / "stack.tif")
    np.testing.assert_array_equal(vol.array, arr)
    np.testing.assert_allclose(vol.spacing_mm, (0.5, 0.5, 2.0))
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 9, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match="RGB"):
        read_volume(tmp_path / "rgb.tif", spacing_mm=(1, 1))


# -- bad input ------------------------------------------------------------------------------------
def _truncate(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name → (path, words the one-line message must contain)."""
    good = tmp / "good"
    good.mkdir()
    sitk.WriteImage(synthetic_image(dtype=np.float32), str(good / "v.nii"))
    np.save(good / "v.npy", np.ones((4, 5, 6), np.float32))
    write_mdf(good / "v.mdf", np.ones((2, 3, 4), np.float32), fov_m=(0.01,) * 3, centre_m=(0,) * 3)
    import scipy.io

    scipy.io.savemat(good / "v.mat", {"a": np.ones((20, 30, 4))})
    cases = {}
    (tmp / "empty.nii").write_bytes(b"")
    cases["empty"] = (tmp / "empty.nii", "empty")
    (tmp / "garbage.nii.gz").write_bytes(b"this is not an image at all" * 20)
    cases["unreadable"] = (tmp / "garbage.nii.gz", "cannot read")
    cases["truncated nifti"] = (_truncate(good / "v.nii", tmp / "half.nii"), "truncated")
    sitk.WriteImage(synthetic_image(dtype=np.float32), str(good / "v.nii.gz"))
    cases["truncated nifti.gz"] = (_truncate(good / "v.nii.gz", tmp / "half.nii.gz"), "truncated")
    sitk.WriteImage(synthetic_image(dtype=np.float32), str(good / "v.nrrd"), useCompression=True)
    cases["truncated nrrd"] = (_truncate(good / "v.nrrd", tmp / "half.nrrd"), "cannot read")
    sitk.WriteImage(synthetic_image(dtype=np.float32), str(good / "v.mha"))
    cases["truncated mha"] = (_truncate(good / "v.mha", tmp / "half.mha"), "cannot read")
    cases["truncated dicom"] = (_truncate(_pydicom_file("CT_small.dcm"), tmp / "half.dcm"), "DICOM")
    cases["truncated mdf"] = (_truncate(good / "v.mdf", tmp / "half.mdf"), "HDF5")
    cases["truncated npy"] = (_truncate(good / "v.npy", tmp / "half.npy"), ".npy")
    cases["truncated mat"] = (_truncate(good / "v.mat", tmp / "half.mat"), "MATLAB")
    np.savez(good / "v.npz", a=np.ones((4, 5, 6), np.float32))
    cases["truncated npz"] = (_truncate(good / "v.npz", tmp / "half.npz"), ".npz")
    import h5py

    with h5py.File(tmp / "plain.h5", "w") as f:
        f["x"] = np.ones((3, 3))
    cases["plain HDF5"] = (tmp / "plain.h5", "HDF5 file that is not MDF")
    import nibabel as nib

    nib.save(nib.Nifti2Image(np.ones((4, 5, 6), np.float32), np.eye(4)), str(good / "v2.nii"))
    cases["truncated nifti-2"] = (_truncate(good / "v2.nii", tmp / "half2.nii"), "NIfTI-2")
    (tmp / "scan.xyz").write_bytes(b"12345")
    cases["unknown"] = (tmp / "scan.xyz", "unknown file type")
    cases["missing"] = (tmp / "nothere.nii", "no such file")
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((3, 2, 3, 4), np.float32), isVector=False),
        str(tmp / "t.nii"),
    )
    cases["4-D"] = (tmp / "t.nii", "4-D")
    np.save(tmp / "nan.npy", np.full((3, 4, 5), np.nan, np.float32))
    cases["all-NaN"] = (tmp / "nan.npy", "no finite values")
    inf = np.ones((3, 4, 5), np.float32)
    inf[1, 2, 3] = np.inf
    np.save(tmp / "inf.npy", inf)
    cases["infinite"] = (tmp / "inf.npy", "infinite")
    np.save(tmp / "nospacing.npy", np.ones((3, 4, 5), np.float32))
    cases["missing spacing"] = (tmp / "nospacing.npy", "has no spacing")
    return cases


def test_bad_input_gives_one_line_input_error_naming_the_file(tmp_path):
    cases = _bad_files(tmp_path)
    spacing = {"all-NaN": (1, 1, 1), "infinite": (1, 1, 1)}
    for case, (path, words) in cases.items():
        with pytest.raises(InputError) as err:
            read_volume(path, spacing_mm=spacing.get(case))
        msg = str(err.value)
        assert msg.startswith(str(path)), (case, msg)
        assert words in msg, (case, msg)
        assert "\n" not in msg, (case, msg)


def test_reading_never_writes_next_to_the_input(tmp_path):
    np.save(tmp_path / "r.npy", np.ones((3, 4, 5), np.float32))
    before = sorted(p.name for p in tmp_path.iterdir())
    read_volume(tmp_path / "r.npy", spacing_mm=(1, 1, 1))
    with pytest.raises(InputError):
        read_volume(tmp_path / "r.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
