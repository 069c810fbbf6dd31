"""Session files: schema, validation, migration, atomic save, hashes, safety."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import pytest

from mpi_viewer.cli import main
from mpi_viewer.errors import InputError
from mpi_viewer.study import session as S


def _file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def full_session(folder: Path) -> tuple[S.Session, Path]:
    """A session using every section, its inputs small text files in ``folder``."""
    spath = folder / "study.json"
    mpi = _file(folder / "mpi.nii.gz", "not really an image, only hashed here")
    mri = _file(folder / "mri.nii.gz", "anatomy bytes")
    ph = _file(folder / "phantoms.csv", "name,x,y,z,iron_ug\nv1,0,0,0,1\n")
    s = S.Session(
        inputs=[
            S.input_file(
                mpi,
                spath,
                role="mpi",
                modality="MPI",
                name="MPI",
                acquisition={"tracer": "VivoTrax", "gradient_T_per_m": 5.7},
            ),
            S.input_file(mri, spath, role="mri", modality="MRI"),
            S.input_file(ph, spath, role="phantoms"),
        ],
        layers=[
            S.LayerDisplay(
                "MPI",
                colormap="hot",
                contrast_limits=[-3.0, 120.5],
                opacity=0.8,
                blending="additive",
            ),
            S.LayerDisplay("MRI", colormap="gray", visible=False),
        ],
        registration=S.RegistrationSection(
            method="landmarks",
            model="affine",
            landmarks=S.Landmarks(
                names=["a", "b", "c", "d"],
                fixed_xyz_mm=[[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]],
                moving_xyz_mm=[[1, 2, 3], [11, 2, 3], [1, 12, 3], [1, 2, 13]],
                excluded=["d"],
            ),
            fle_mm=0.2,
            matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 1]],
            translation=[1, 2, 3],
            rms_fre_mm=0.0,
        ),
        rois=[
            S.ROISection(
                method="halfmax",
                params={"method": "halfmax", "fraction": 0.5},
                seeds_xyz_mm=[[1.5, -2.0, 3.0]],
                names=["isolated"],
            )
        ],
        calibration=S.CalibrationSection(source="phantoms", options={"through_origin": False}),
        cells=S.CellsSection(mean_pg=15.0, sd_pg=1.5),
        results=[
            {
                "name": "isolated",
                "total_signal_au_mm3": 1234.5,
                "iron_ug": math.nan,
                "cells_ci_high": math.inf,
                "below_lod": False,
                "n_voxels": 42,
                "warnings": "",
            }
        ],
        notes="synthetic",
    )
    return s, spath


def test_round_trip_keeps_every_section(tmp_path):
    s, spath = full_session(tmp_path)
    S.save_session(s, spath)
    back = S.load_session(spath)
    assert back.warnings == []
    assert back == s  # dataclass equality over every saved field (NaN compared below)
    row = back.results[0]
    assert math.isnan(row["iron_ug"]) and row["cells_ci_high"] == math.inf
    assert (
        row["total_signal_au_mm3"] == 1234.5 and row["n_voxels"] == 42 and row["below_lod"] is False
    )
    # strict JSON on disk: no NaN/Infinity literals
    text = spath.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    d = json.loads(text)
    assert d["schema_version"] == S.SCHEMA_VERSION
    assert set(d["software"]) >= {
        "mpi_viewer",
        "numpy",
        "SimpleITK",
        "scipy",
        "scikit-image",
        "python",
    }
    assert d["inputs"][0]["path"] == "mpi.nii.gz"  # relative to the session
    assert back.resolve(back.input("mpi").path) == (tmp_path / "mpi.nii.gz").resolve()


def test_sections_round_trip_through_json_alone():
    lm = S.Landmarks(["p"], [[1, 2, 3]], [[4, 5, 6]], [])
    for obj in (
        lm,
        S.CellsSection(10.0, 1.0),
        S.LayerDisplay("x", opacity=0.5),
        S.MaskFile("m", "masks/m.nii.gz", "0" * 64),
        S.CalibrationSection(source="stored", calibration={"a": 1}),
    ):
        assert type(obj).from_dict(json.loads(json.dumps(obj.to_dict()))) == obj


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    s, spath = full_session(tmp_path)
    S.save_session(s, spath)
    before = spath.read_bytes()

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    s.notes = "changed"
    with pytest.raises(OSError):
        S.save_session(s, spath)
    assert spath.read_bytes() == before  # the old session is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mpi.nii.gz",
        "mri.nii.gz",
        "phantoms.csv",
        "study.json",
    ]


def test_saving_never_writes_an_input(tmp_path):
    s, spath = full_session(tmp_path)
    stats = {p: (p.stat().st_mtime_ns, S.sha256_file(p)) for p in tmp_path.iterdir()}
    S.save_session(s, spath)
    S.load_session(spath).verify_inputs()
    assert {p: (p.stat().st_mtime_ns, S.sha256_file(p)) for p in stats} == stats


def test_sha256_is_the_standard_digest(tmp_path):
    p = _file(tmp_path / "a.txt", "abc")
    assert S.sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_changed_input_is_detected_and_named(tmp_path):
    s, spath = full_session(tmp_path)
    S.save_session(s, spath)
    (tmp_path / "mri.nii.gz").write_text("someone edited this", encoding="utf-8")
    loaded = S.load_session(spath)
    with pytest.raises(InputError, match=r"mri\.nii\.gz.*changed"):
        loaded.verify_inputs()
    notes = loaded.verify_inputs(allow_changed=True)
    assert len(notes) == 1 and "mri.nii.gz" in notes[0]
    (tmp_path / "mri.nii.gz").unlink()
    with pytest.raises(InputError, match=r"mri\.nii\.gz.*does not exist"):
        loaded.verify_inputs(allow_changed=True)


def test_newer_schema_version_is_refused_in_one_line(tmp_path):
    s, spath = full_session(tmp_path)
    d = s.to_dict()
    d["schema_version"] = S.SCHEMA_VERSION + 1
    _file(spath, json.dumps(d))
    with pytest.raises(InputError, match="newer") as e:
        S.load_session(spath)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "content",
    [
        b'{"schema_version": 1, "inputs": [',  # truncated
        b"",  # empty
        b"\xff\xfe\x00garbage",  # not UTF-8
        pickle.dumps({"schema_version": 1}),  # a pickle is not read
        b"[1, 2, 3]",  # JSON, not an object
        b'{"hello": 1}',  # no schema version
        b"[" * 100_000 + b"]" * 100_000,  # nested too deeply
        b'{"schema_version": 1, "inputs": [{"role": "mpi", "path": "x", "sha256": "zz"}]}',
    ],
)
def test_corrupt_sessions_give_one_clear_line(tmp_path, content):
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(InputError) as e:
        S.load_session(p)
    msg = str(e.value)
    assert "\n" not in msg and "bad.json" in msg


def test_cli_replay_of_a_corrupt_session_exits_2_with_one_line(tmp_path, capsys):
    p = tmp_path / "bad.json"
    p.write_text("{not json", encoding="utf-8")
    assert main(["replay", str(p)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "bad.json" in err


def test_cli_replay_of_a_missing_session_exits_2(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_unknown_keys_are_ignored_with_a_warning(tmp_path):
    s, spath = full_session(tmp_path)
    d = s.to_dict()
    d["comment"] = "hand-written note"
    d["cells"]["lab"] = "ICP-MS lab 3"
    _file(spath, json.dumps(d))
    back = S.load_session(spath)
    assert back.cells == s.cells
    assert any("'comment'" in w for w in back.warnings)
    assert any("cells" in w and "'lab'" in w for w in back.warnings)


def test_inconsistent_values_are_refused(tmp_path):
    s, spath = full_session(tmp_path)
    bad = [
        ("registration", lambda d: d["registration"]["landmarks"]["fixed_xyz_mm"].pop()),
        ("excluded", lambda d: d["registration"]["landmarks"]["excluded"].append("zz")),
        ("opacity", lambda d: d["layers"][0].__setitem__("opacity", 3)),
        ("iron per cell", lambda d: d["cells"].__setitem__("mean_pg", -1)),
        ("role", lambda d: d["inputs"][0].__setitem__("role", "python")),
        ("phantoms", lambda d: d["inputs"].pop(2)),
        ("seeds", lambda d: d["rois"][0]["seeds_xyz_mm"][0].append(4.0)),
        ("number", lambda d: d["rois"][0]["seeds_xyz_mm"][0].__setitem__(0, True)),
    ]
    for what, mutate in bad:
        d = s.to_dict()
        mutate(d)
        with pytest.raises(InputError):
            S.parse_session(json.dumps(d), source=what)


def test_version_0_sessions_are_migrated(tmp_path):
    mpi = _file(tmp_path / "mpi.nii.gz", "x")
    v0 = {
        "schema_version": 0,
        "inputs": {"mpi": "mpi.nii.gz"},
        "hashes": {"mpi": S.sha256_file(mpi)},
        "roi": {"method": "halfmax", "params": {"fraction": 0.5}, "seeds_xyz_mm": [[0, 0, 0]]},
        "iron_per_cell_pg": None,
        "results": [],
    }
    p = _file(tmp_path / "old.json", json.dumps(v0))
    s = S.load_session(p)
    assert s.input("mpi").modality == "MPI" and s.input("mpi").sha256 == S.sha256_file(mpi)
    assert s.rois[0].seeds_xyz_mm == [[0.0, 0.0, 0.0]] and s.cells is None
    assert any("migrated from schema_version 0" in w for w in s.warnings)
    s.verify_inputs()
    # saving writes the current version
    S.save_session(s, p)
    assert json.loads(p.read_text())["schema_version"] == S.SCHEMA_VERSION


def test_files_outside_the_session_folder_are_announced(tmp_path):
    shared = _file(tmp_path / "raw" / "mpi.nii.gz", "raw data elsewhere")
    spath = tmp_path / "analysis" / "s.json"
    s = S.Session(
        inputs=[S.input_file(shared, spath, role="mpi", modality="MPI")],
        rois=[S.ROISection("halfmax", {}, [[0, 0, 0]])],
    )
    S.save_session(s, spath)
    assert s.inputs[0].path == "../raw/mpi.nii.gz"
    back = S.load_session(spath)
    assert any("outside its folder" in w and "../raw/mpi.nii.gz" in w for w in back.warnings)
    back.verify_inputs()  # allowed, only announced
    # an absolute path too
    d = back.to_dict()
    d["inputs"][0]["path"] = str(shared)
    _file(spath, json.dumps(d))
    assert any(str(shared) in w for w in S.load_session(spath).warnings)


def test_a_session_inside_its_folder_has_no_warning(tmp_path):
    s, spath = full_session(tmp_path)
    S.save_session(s, spath)
    assert S.load_session(spath).files_outside_folder() == []


def test_cli_replay_announces_outside_files_before_opening_them(tmp_path, capsys):
    shared = _file(tmp_path / "raw" / "mpi.nii.gz", "raw data elsewhere")
    spath = tmp_path / "analysis" / "s.json"
    s = S.Session(
        inputs=[S.input_file(shared, spath, role="mpi", modality="MPI")],
        rois=[S.ROISection("halfmax", {}, [[0, 0, 0]])],
    )
    S.save_session(s, spath)
    assert main(["replay", str(spath)]) == 2  # not an image: bad input, after the note
    err = capsys.readouterr().err.strip().splitlines()
    assert "outside its folder" in err[0] and "../raw/mpi.nii.gz" in err[0]
    assert err[-1].startswith("mpi-viewer: error:")
