"""Issue 14, structured inputs fuzzed with hypothesis: sidecars, calibration JSON, .npy
headers, MDF fields, MetaImage headers, phantom and point CSVs.

The promise for every generated file: it is read, or refused with an
:class:`~mpi_viewer.errors.InputError` of one line (the command line's exit 2); no other
exception; the napari reader returns layers or one notification and never raises; the
file is byte-identical afterwards. Examples are derandomized (the same on every run).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpi_viewer.errors import InputError

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _keeps_promise(path, read, *, napari=True):
    """``read(path)`` is a result or one-line InputError; the napari reader never raises."""
    before = path.read_bytes()
    try:
        read(path)
    except InputError as exc:
        assert "\n" not in str(exc).strip(), str(exc)
        assert str(exc).strip()
    if napari:
        from mpi_viewer.plugins import _reader

        shown = []
        old = _reader._notify_error
        _reader._notify_error = shown.append
        try:
            layers = _reader.read_layers(str(path))
        finally:
            _reader._notify_error = old
        refused = len(layers) == 1 and layers[0][0] is None
        assert len(shown) == (1 if refused else 0), shown
        assert all("\n" not in m for m in shown)
    assert path.read_bytes() == before


def _read_volume(path):
    from mpi_viewer.io.images import read_volume

    return read_volume(path, spacing_mm=(1.0, 1.0, 1.0))


@pytest.fixture(scope="module")
def small_nifti(tmp_path_factory):
    import SimpleITK as sitk

    d = tmp_path_factory.mktemp("fuzz")
    arr = np.zeros((6, 7, 8), np.float32)
    arr[3, 3, 4] = 10
    img = sitk.GetImageFromArray(arr)
    p = d / "mpi.nii"
    sitk.WriteImage(img, str(p))
    sitk.WriteImage(img, str(d / "m.mhd"))
    return p


# -- sidecars -------------------------------------------------------------------------------------
@FUZZ
@given(
    sidecar=st.fixed_dictionaries(
        {},
        optional={
            "modality": JSON | st.sampled_from(["MPI", "MRI", "MR", "CT", "PET"]),
            "units": JSON,
            "acquisition": JSON
            | st.dictionaries(
                st.sampled_from(
                    [
                        "tracer",
                        "gradient_T_per_m",
                        "drive_frequency_kHz",
                        "drive_amplitude_mT",
                        "averages",
                        "mode",
                        "scanner",
                    ]
                ),
                JSON,
                max_size=4,
            ),
        },
    )
)
def test_sidecars(small_nifti, sidecar):
    sc = small_nifti.with_suffix(".json")
    try:
        sc.write_text(json.dumps(sidecar, allow_nan=True), encoding="utf-8")
        _keeps_promise(small_nifti, _read_volume)
        _keeps_promise(sc, lambda p: _read_volume(small_nifti), napari=False)
    finally:
        sc.unlink(missing_ok=True)


# -- calibration JSON -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calibration_dict():
    from mpi_viewer.calibration.phantoms import CalibrationPoint
    from mpi_viewer.calibration.record import Calibration

    pts = [
        CalibrationPoint(name=f"p{i}", iron_ug=float(i), signal=10.0 * i + 0.1 * (-1) ** i)
        for i in range(1, 6)
    ]
    return Calibration.from_points("c", pts).to_dict()


def _set_path(d, path, value):
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def _paths(d, prefix=()):
    out = []
    if isinstance(d, dict):
        for k, v in d.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


@FUZZ
@given(data=st.data())
def test_calibration_json(tmp_path, calibration_dict, data):
    from mpi_viewer.calibration.record import load_calibration

    d = json.loads(json.dumps(calibration_dict))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(d)
        if not paths:
            break
        _set_path(d, data.draw(st.sampled_from(paths)), data.draw(JSON))
    p = tmp_path / "c.json"
    p.write_text(json.dumps(d, allow_nan=True), encoding="utf-8")

    def read(path):
        c = load_calibration(path)
        assert math.isfinite(c.fit.slope) and c.fit.slope > 0

    _keeps_promise(p, read, napari=False)


# -- .npy ---------------------------------------------------------------------------------------
DTYPES = [
    "<f4",
    ">f4",
    "<f8",
    ">f8",
    "<i2",
    ">u2",
    "u1",
    "|b1",
    "<f2",
    "<c8",
    "<m8[s]",
    "<M8[D]",
    "|O",
    "<U3",
    "<g",
    "V4",
]


@FUZZ
@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.lists(st.integers(0, 10**6), min_size=0, max_size=5),
    body=st.integers(0, 4096),
    fortran=st.booleans(),
)
def test_npy_headers(tmp_path, dtype, shape, body, fortran):
    header = {"descr": dtype, "fortran_order": fortran, "shape": tuple(shape)}
    text = repr(header).encode("latin-1")
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    p = tmp_path / "a.npy"
    p.write_bytes(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + b"\x01" * body)
    _keeps_promise(p, _read_volume)


# -- MDF --------------------------------------------------------------------------------------------
FIELD = (
    st.lists(st.integers(-5, 10**9), min_size=0, max_size=4)
    | st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=4)
    | st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=8)
    | st.integers(-5, 5)
)


@FUZZ
@given(
    size=FIELD,
    fov=FIELD,
    centre=FIELD,
    data_shape=st.lists(st.integers(0, 40), min_size=1, max_size=3),
)
def test_mdf_fields(tmp_path, size, fov, centre, data_shape):
    import h5py

    p = tmp_path / "scan.mdf"
    with h5py.File(p, "w") as f:
        f["reconstruction/data"] = np.ones(data_shape, np.float32)
        for key, value in (("size", size), ("fieldOfView", fov), ("fieldOfViewCenter", centre)):
            if isinstance(value, list) and not value:
                continue
            f[f"reconstruction/{key}"] = value
    _keeps_promise(p, _read_volume)


# -- MetaImage headers --------------------------------------------------------------------------------
NUMS = st.lists(
    st.sampled_from(["0", "1", "-1", "2.5", "inf", "-inf", "nan", "1e300", "abc", "99999999999"]),
    min_size=0,
    max_size=4,
).map(" ".join)


@FUZZ
@given(
    dims=NUMS,
    spacing=NUMS,
    offset=NUMS,
    matrix=st.lists(st.sampled_from(["0", "1", "-1", "0.5", "nan"]), min_size=9, max_size=9).map(
        " ".join
    ),
    etype=st.sampled_from(["MET_FLOAT", "MET_UCHAR", "MET_DOUBLE", "MET_NOPE", "MET_LONG_LONG"]),
    datafile=st.sampled_from(
        ["m.raw", "../m.raw", "/etc/passwd", "LOCAL", "missing.raw", "m.raw.gz"]
    ),
)
def test_metaimage_headers(small_nifti, dims, spacing, offset, matrix, etype, datafile):
    h = small_nifti.parent / "fz.mhd"
    h.write_text(
        f"ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        f"TransformMatrix = {matrix}\nOffset = {offset}\nElementSpacing = {spacing}\nDimSize = {dims}\n"
        f"ElementType = {etype}\nElementDataFile = {datafile}\n",
        encoding="utf-8",
    )
    try:
        _keeps_promise(h, _read_volume)
    finally:
        h.unlink()


# -- CSV inputs ---------------------------------------------------------------------------------------
CSV_TEXT = st.lists(
    st.lists(
        st.sampled_from(
            [
                "name",
                "x",
                "y",
                "z",
                "iron_ug",
                "a",
                "1",
                "-2.5",
                "nan",
                "inf",
                "",
                '"q,"',
                "1e999",
                "x" * 200_000,
                "é",
                "\x00",
            ]
        ),
        min_size=0,
        max_size=6,
    ).map(",".join),
    min_size=0,
    max_size=6,
).map("\n".join)


@FUZZ
@given(text=CSV_TEXT, header=st.booleans())
def test_phantom_and_point_csvs(tmp_path, text, header):
    from mpi_viewer.calibration.phantoms import read_phantoms_csv
    from mpi_viewer.io.points import read_points_csv

    p = tmp_path / "in.csv"
    p.write_text(("name,x,y,z,iron_ug\n" if header else "") + text, encoding="utf-8")
    _keeps_promise(p, read_phantoms_csv, napari=False)
    _keeps_promise(p, read_points_csv, napari=False)
