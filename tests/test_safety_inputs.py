"""Issue 14, reading: files read from outside are refused or named first, inputs that
changed are "changed" (exit 2), reading never blocks or grows without bound, odd names
and physically impossible geometry are one line; in napari, a notification."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from _safety_study import (
    SEED,
    cli,
    one_line_error,
    refused,
    run_main,
    saved_session,
    snapshot,
)


def _within(seconds, fn, *args):
    """Run ``fn(*args)`` in a thread; fail if it has not returned in ``seconds`` (a hang)."""
    box = {}

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn.__name__} still running after {seconds} s (blocked)"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _read_in_napari(path):
    """The napari reader on ``path``: (layers, error notifications); never raises."""
    from mpi_viewer.plugins import _reader

    shown = []
    old = _reader._notify_error
    _reader._notify_error = shown.append
    try:
        reader = _within(10, _reader.get_reader, str(path))
        layers = _within(10, reader, str(path)) if reader else None
    finally:
        _reader._notify_error = old
    return reader, layers, shown


def _refused_in_napari(path, words=()):
    reader, layers, shown = _read_in_napari(path)
    assert reader is not None, "the file is claimed, so the user hears why it is refused"
    assert layers == _reader_no_layers() and len(shown) == 1, (layers, shown)
    assert "\n" not in shown[0]
    for w in (words,) if isinstance(words, str) else words:
        assert w.lower() in shown[0].lower(), shown[0]
    return shown[0]


def _reader_no_layers():
    from mpi_viewer.plugins._reader import NO_LAYERS

    return NO_LAYERS


# -- detached data files ------------------------------------------------------------------------
DETACHED = [
    ("mhd ../outside.raw", "mpi.mhd", "ElementDataFile", "../outside.raw"),
    ("mhd /etc/passwd", "mpi.mhd", "ElementDataFile", "/etc/passwd"),
    ("mhd ../../../../etc/shadow", "mpi.mhd", "ElementDataFile", "../../../../etc/shadow"),
    ("nhdr /etc/passwd", "n.nhdr", "data file", "/etc/passwd"),
    ("nhdr ../outside.raw", "n.nhdr", "data file", "../outside.raw"),
    ("mhd LIST with one outside", "mpi.mhd", "ElementDataFile", "LIST\nmpi.raw\n../outside.raw"),
]


def _detached_header(st, header, key, value):
    import SimpleITK as sitk

    folder = st["mpi"].parent
    (folder.parent / "outside.raw").write_bytes(st["raw"].read_bytes())
    if header == "n.nhdr":
        sitk.WriteImage(sitk.ReadImage(str(st["mpi"])), str(folder / "n.nhdr"))
    h = folder / header
    sep = " = " if header.endswith(".mhd") else ": "
    text = re.sub(
        rf"^{key}\s*[:=].*$", f"{key}{sep}{value}", h.read_text(encoding="utf-8"), flags=re.M
    )
    h.write_text(text, encoding="utf-8")
    return h


@pytest.mark.parametrize("case", DETACHED, ids=[c[0] for c in DETACHED])
def test_detached_data_outside_the_header_folder_is_refused(st, capfd, case):
    h = _detached_header(st, *case[1:])
    line = refused(
        ["quantify", h, SEED, "-o", st["mpi"].parent / "r.csv"],
        st["mpi"].parent,
        capfd,
        words="outside",
    )
    assert h.name in line
    _refused_in_napari(h, "outside")


def test_a_symlinked_data_file_pointing_outside_is_refused(st, capfd, tmp_path):
    outside = tmp_path / "elsewhere.raw"
    outside.write_bytes(st["raw"].read_bytes())
    st["raw"].unlink()
    st["raw"].symlink_to(outside)
    refused(
        ["quantify", st["mhd"], SEED, "-o", st["mpi"].parent / "r.csv"],
        st["mpi"].parent,
        capfd,
        words="outside",
    )


def test_detached_data_and_sidecars_are_hashed_inputs(st, capfd):
    """A session on mpi.mhd names mpi.raw and mpi.json with their hashes; changing either
    is a changed input (exit 2), not a difference in numbers (exit 1)."""
    s = saved_session(st, capfd, image="mhd")
    d = json.loads(s.read_text(encoding="utf-8"))
    mpi = next(i for i in d["inputs"] if i["role"] == "mpi")
    assert {c["path"] for c in mpi["companions"]} == {"mpi.raw", "mpi.json"}
    rc, out, err = run_main(["replay", s], capfd)
    assert rc == 0, out + err
    raw = bytearray(st["raw"].read_bytes())
    raw[100] ^= 0x40
    st["raw"].write_bytes(bytes(raw))
    line = refused(["replay", s], st["mpi"].parent, capfd, words="changed")
    assert "mpi.raw" in line
    st["raw"].write_bytes(bytes(raw[:100]) + bytes([raw[100] ^ 0x40]) + bytes(raw[101:]))
    for key, value in (
        ("tracer", "Perimag"),
        ("gradient_T_per_m", 3.0),
        ("drive_frequency_kHz", 25.0),
    ):
        sc = json.loads(st["sidecar"].read_text(encoding="utf-8"))
        saved = st["sidecar"].read_text(encoding="utf-8")
        sc["acquisition"][key] = value
        st["sidecar"].write_text(json.dumps(sc), encoding="utf-8")
        line = refused(["replay", s], st["mpi"].parent, capfd, words="changed")
        assert "mpi.json" in line
        st["sidecar"].write_text(saved, encoding="utf-8")
    rc, _, err = run_main(["replay", s], capfd)
    assert rc == 0, err


def test_templates_resolve_against_the_session_folder_and_outside_ones_are_named_first(
    st, capfd, tmp_path
):
    s = saved_session(st, capfd, image="mpi")
    d = json.loads(s.read_text(encoding="utf-8"))
    from mpi_viewer.study.session import input_file

    d["inputs"].append(input_file(st["mri"], s, role="mri", modality="MRI").to_dict())
    d["registration"] = {
        "fixed": "mri",
        "moving": "mpi",
        "method": "template",
        "model": "rigid",
        "template": "tpl/mold.json",
    }
    (st["mpi"].parent / "tpl").mkdir()
    (st["mpi"].parent / "tpl" / "mold.json").write_text("{not json", encoding="utf-8")
    s.write_text(json.dumps(d), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = cli(["replay", str(s)], cwd=elsewhere)
    line = one_line_error(r.stderr.decode())
    assert r.returncode == 2 and str(st["mpi"].parent / "tpl" / "mold.json") in line, line
    # outside the session's folder: named on stderr before it is opened
    d["registration"]["template"] = "/etc/passwd"
    s.write_text(json.dumps(d), encoding="utf-8")
    r = cli(["replay", str(s)], cwd=elsewhere)
    lines = r.stderr.decode().splitlines()
    assert r.returncode == 2
    assert lines[0].startswith("mpi-viewer: note:") and "/etc/passwd" in lines[0], lines
    assert "outside its folder" in lines[0]


# -- reading never blocks and never grows without bound --------------------------------------------
def _fifo(path: Path) -> Path:
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return path


SPECIAL = [
    (
        "FIFO image",
        lambda st: ["quantify", _fifo(st["mpi"].parent / "f.nii"), SEED, "-o", "{d}/r.csv"],
        "pipe",
    ),
    (
        "FIFO phantoms",
        lambda st: [
            "quantify",
            st["mpi"],
            SEED,
            "--phantoms",
            _fifo(st["mpi"].parent / "f.csv"),
            "-o",
            "{d}/r.csv",
        ],
        "pipe",
    ),
    (
        "FIFO points",
        lambda st: [
            "register",
            st["mri"],
            st["mpi"],
            "--fixed-points",
            _fifo(st["mpi"].parent / "f.csv"),
            "--moving-points",
            st["points"],
            "-o",
            "{d}/t.tfm",
        ],
        "pipe",
    ),
    (
        "FIFO calibration",
        lambda st: [
            "quantify",
            st["mpi"],
            SEED,
            "--calibration",
            _fifo(st["mpi"].parent / "f.json"),
            "-o",
            "{d}/r.csv",
        ],
        "pipe",
    ),
    ("FIFO session", lambda st: ["replay", _fifo(st["mpi"].parent / "f.json")], "file"),
    (
        "FIFO sidecar",
        lambda st: ["quantify", st["mpi"], SEED, "-o", "{d}/r.csv"] if _fifo(st["sidecar"]) else [],
        "pipe",
    ),
    (
        "FIFO saturation curve",
        lambda st: [
            "quantify",
            st["mpi"],
            SEED,
            "--saturation-curve",
            _fifo(st["mpi"].parent / "f.csv"),
            "-o",
            "{d}/r.csv",
        ],
        "pipe",
    ),
    (
        "FIFO mask",
        lambda st: [
            "quantify",
            st["mpi"],
            "--mask",
            _fifo(st["mpi"].parent / "m.nii.gz"),
            "-o",
            "{d}/r.csv",
        ],
        "pipe",
    ),
    (
        "FIFO transform data (mhd raw)",
        lambda st: ["quantify", st["mhd"], SEED, "-o", "{d}/r.csv"] if _fifo(st["raw"]) else [],
        "pipe",
    ),
    (
        "/dev/zero image",
        lambda st: ["quantify", "/dev/zero", SEED, "--spacing-mm", "1,1,1", "-o", "{d}/r.csv"],
        "device",
    ),
    (
        "/dev/zero phantoms",
        lambda st: ["quantify", st["mpi"], SEED, "--phantoms", "/dev/zero", "-o", "{d}/r.csv"],
        "device",
    ),
    (
        "/dev/zero points",
        lambda st: [
            "register",
            st["mri"],
            st["mpi"],
            "--fixed-points",
            "/dev/zero",
            "--moving-points",
            st["points"],
            "-o",
            "{d}/t.tfm",
        ],
        "device",
    ),
    ("/dev/zero session", lambda st: ["replay", "/dev/zero"], "file"),
    (
        "/dev/zero calibration",
        lambda st: ["quantify", st["mpi"], SEED, "--calibration", "/dev/zero", "-o", "{d}/r.csv"],
        "device",
    ),
]


@pytest.mark.parametrize("case", SPECIAL, ids=[c[0] for c in SPECIAL])
def test_fifos_and_devices_are_refused_without_blocking(st, capfd, case):
    d = st["mpi"].parent
    argv = [str(a).replace("{d}", str(d)) for a in case[1](st)]
    _within(20, lambda: refused(argv, d, capfd, words=case[2]))


def test_an_input_replaced_by_a_fifo_and_batch_errors_name_their_session(st, capfd):
    good = saved_session(st, capfd, image="mpi", name="good.json")
    bad = saved_session(st, capfd, image="mhd", name="bad.json")
    _fifo(st["raw"])
    rc, out, err = _within(30, run_main, ["replay", good, bad, "--jobs", "1"], capfd)
    assert rc == 2, out + err
    errors = [ln for ln in err.splitlines() if ln.startswith("mpi-viewer: error:")]
    assert len(errors) == 1 and "bad.json" in errors[0] and "pipe" in errors[0], err
    assert "good.json: every number matches" in out


def test_napari_reader_never_blocks_on_a_fifo(st):
    for name in ("f.nii", "f.h5", "f.dcm", "noextension"):
        p = _fifo(st["mpi"].parent / name)
        reader, layers, shown = _read_in_napari(p)
        if reader is not None:  # claimed by its name: read, refused, said
            assert layers == _reader_no_layers() and len(shown) == 1 and "pipe" in shown[0], shown


def test_session_and_sizes_are_bounded(st, capfd):
    s = saved_session(st, capfd, image="mpi")
    d = json.loads(s.read_text(encoding="utf-8"))
    d["rois"][0]["method"] = "kmeans"
    d["rois"][0]["params"]["method"] = "kmeans"
    d["rois"][0]["params"]["kmeans_clusters"] = 100000
    s.write_text(json.dumps(d), encoding="utf-8")
    refused(["replay", s], st["mpi"].parent, capfd, words=("clusters", "at most"))
    # a label image with 13 824 labels: refused before measuring
    import SimpleITK as sitk

    lab = np.zeros((32, 32, 32), np.uint16)
    lab[4:28, 4:28, 4:28] = np.arange(1, 24**3 + 1).reshape(24, 24, 24)
    img = sitk.GetImageFromArray(lab)
    sitk.WriteImage(img, str(st["mpi"].parent / "labels.nii.gz"))
    refused(
        [
            "quantify",
            st["mpi"],
            "--mask",
            st["mpi"].parent / "labels.nii.gz",
            "-o",
            st["mpi"].parent / "r.csv",
        ],
        st["mpi"].parent,
        capfd,
        words=("13824", "limit"),
    )
    # a CSV field over the limit, a JSON nested 10^5 deep
    (st["mpi"].parent / "big.csv").write_text(
        "name,x,y,z,iron_ug\n" + "a" * 2_000_000 + ",1,2,3,4\nb,1,2,3,4\n", encoding="utf-8"
    )
    refused(
        [
            "quantify",
            st["mpi"],
            SEED,
            "--phantoms",
            st["mpi"].parent / "big.csv",
            "-o",
            st["mpi"].parent / "r.csv",
        ],
        st["mpi"].parent,
        capfd,
        words="longer",
    )
    st["sidecar"].write_text(
        '{"acquisition": ' + "[" * 100000 + "]" * 100000 + "}", encoding="utf-8"
    )
    refused(
        ["quantify", st["mpi"], SEED, "-o", st["mpi"].parent / "r.csv"],
        st["mpi"].parent,
        capfd,
        words="deeper",
    )


# -- names -----------------------------------------------------------------------------------------
def test_a_file_name_that_is_not_utf8_is_one_line_never_an_abort(st, tmp_path):
    bad = os.fsencode(str(st["mpi"].parent)) + b"/bad\xff.nii"
    import SimpleITK as sitk

    sitk.WriteImage(sitk.ReadImage(str(st["mpi"])), str(st["mpi"].parent / "good.nii"))
    os.rename(st["mpi"].parent / "good.nii", bad)
    before = snapshot(st["mpi"].parent)
    r = cli(
        [
            os.fsdecode(x)
            for x in (b"quantify", bad, SEED.encode(), b"-o", os.fsencode(str(tmp_path / "r.csv")))
        ]
    )
    assert r.returncode == 2, r
    line = one_line_error(r.stderr.decode("utf-8", "replace"))
    assert "UTF-8" in line
    assert snapshot(st["mpi"].parent) == before
    _refused_in_napari(os.fsdecode(bad), "UTF-8")


# -- physical validity -----------------------------------------------------------------------------
def _nifti_pixdim(st, values):
    import struct

    import SimpleITK as sitk

    p = st["mpi"].parent / "pix.nii"
    sitk.WriteImage(sitk.ReadImage(str(st["mpi"])), str(p))
    b = bytearray(p.read_bytes())
    struct.pack_into("<3f", b, 80, *values)
    p.write_bytes(bytes(b))
    return p


def _mhd_field(st, field, value):
    p = st["mhd"]
    p.write_text(
        re.sub(rf"^{field} = .*$", f"{field} = {value}", p.read_text(encoding="utf-8"), flags=re.M)
    )
    return p


def _dicom_spacing(st, value):
    import pydicom
    import SimpleITK as sitk

    img = sitk.ReadImage(str(st["mpi"]))
    p = st["mpi"].parent / "one.dcm"
    sl = sitk.Cast(sitk.RescaleIntensity(img[:, :, 22], 0, 1000), sitk.sitkUInt16)
    sitk.WriteImage(sl, str(p))
    ds = pydicom.dcmread(str(p))
    ds.PixelSpacing = value
    ds.save_as(str(p))
    return p


GEOMETRY = [
    ("NIfTI pixdim 0", lambda st: _nifti_pixdim(st, (0.0, 0.0, 0.0)), "pixdim"),
    ("NIfTI pixdim -1", lambda st: _nifti_pixdim(st, (-1.0, 1.0, 1.0)), "pixdim"),
    ("NIfTI pixdim nan", lambda st: _nifti_pixdim(st, (float("nan"), 1.0, 1.0)), "pixdim"),
    ("MetaImage Offset inf", lambda st: _mhd_field(st, "Offset", "inf 0 0"), "Offset"),
    ("MetaImage Offset nan", lambda st: _mhd_field(st, "Offset", "0 nan 0"), "Offset"),
    ("MetaImage spacing 0", lambda st: _mhd_field(st, "ElementSpacing", "0 1 1"), "ElementSpacing"),
    (
        "MetaImage matrix skew",
        lambda st: _mhd_field(st, "TransformMatrix", "1 0 0 1 1 0 0 0 1"),
        "orthonormal",
    ),
    ("DICOM PixelSpacing 0\\0", lambda st: _dicom_spacing(st, ["0", "0"]), "PixelSpacing"),
]


@pytest.mark.parametrize("case", GEOMETRY, ids=[c[0] for c in GEOMETRY])
def test_impossible_geometry_is_refused_where_it_enters(st, capfd, case):
    p = case[1](st)
    refused(
        ["quantify", p, SEED, "-o", st["mpi"].parent / "r.csv"],
        st["mpi"].parent,
        capfd,
        words=case[2],
    )
    _refused_in_napari(p, case[2])


@pytest.mark.parametrize("spacing", ["0,0,0", "1,-1,1", "1,1,inf", "nan,1,1"])
def test_spacing_flag_must_be_positive_and_finite(st, capfd, spacing):
    np.save(st["mpi"].parent / "plain.npy", np.zeros((8, 8, 8), np.float32) + 1)
    refused(
        [
            "quantify",
            st["mpi"].parent / "plain.npy",
            SEED,
            "--spacing-mm",
            spacing,
            "-o",
            st["mpi"].parent / "r.csv",
        ],
        st["mpi"].parent,
        capfd,
        words="spacing",
    )


@pytest.mark.parametrize("slope", [-437.0, 0.0, float("inf"), float("nan")])
def test_a_calibration_slope_must_be_positive_and_finite(st, capfd, slope):
    rc, _, err = run_main(
        ["calibrate", st["mpi"], "--phantoms", st["phantoms"], "-o", st["mpi"].parent / "c.json"],
        capfd,
    )
    assert rc == 0, err
    c = st["mpi"].parent / "c.json"
    d = json.loads(c.read_text(encoding="utf-8"))
    d["fit"]["slope"] = slope
    c.write_text(json.dumps(d), encoding="utf-8")
    refused(
        ["quantify", st["mpi"], SEED, "--calibration", c, "-o", st["mpi"].parent / "r.csv"],
        st["mpi"].parent,
        capfd,
        words="slope",
    )


def test_library_chatter_stays_off_the_terminal(st, capfd):
    """A MetaImage with notes ITK warns about, read by quantify: only our own lines."""
    rc, out, err = run_main(["quantify", st["mhd"], SEED, "-o", st["mpi"].parent / "r.csv"], capfd)
    assert rc == 0 and err == "", err
    assert "WARNING" not in out
