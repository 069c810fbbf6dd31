"""The typed Study (schema 2): migration of real version-1 sessions, validation in one line,
images held in memory, defaults defined once, and the one Transform type against the demo's
known transform."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mpi_viewer.cli import main
from mpi_viewer.errors import InputError
from mpi_viewer.study import session as S
from mpi_viewer.study.model import Study

V1 = Path(__file__).parent / "data" / "sessions_v1"


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory, copy_demo) -> Path:

    folder = tmp_path_factory.mktemp("demo")
    copy_demo(folder)
    return folder


# -- migration ----------------------------------------------------------------------------------
def test_v1_sessions_migrate_to_one_transform_and_confidence():
    for name in ("demo_session.json", "transform_session.json", "quantify_nsd_session.json"):
        raw = json.loads((V1 / name).read_text(encoding="utf-8"))
        s = S.parse_session(json.dumps(raw), source=name)
        assert isinstance(s, Study) and any(
            "migrated from schema_version 1" in w for w in s.warnings
        )
        reg = raw.get("registration")
        if reg is not None:  # the v1 flat matrix/translation is now the one transform
            assert s.registration.transform.matrix == reg["matrix"]
            assert s.registration.transform.translation == reg["translation"]
            assert s.registration.transform.model == reg["model"]
            assert "matrix" not in s.to_dict()["registration"]
        if raw.get("calibration") and "confidence" in raw["calibration"]["options"]:
            assert s.calibration.confidence == raw["calibration"]["options"]["confidence"]
            assert "confidence" not in s.calibration.options
        assert s.results[0]["name"] == raw["results"][0]["name"]
        assert s.to_dict()["schema_version"] == 2


def test_a_resaved_v1_session_is_v2_and_replays_with_the_same_numbers(
    demo_folder, tmp_path, capsys
):
    folder = tmp_path / "study"
    shutil.copytree(demo_folder, folder)
    for p in V1.glob("*"):
        shutil.copy(p, folder / p.name)
    v1 = S.load_session(folder / "landmarks_session.json")
    v2_path = S.save_session(v1, folder / "landmarks_v2.json")
    d = json.loads(v2_path.read_text(encoding="utf-8"))
    assert d["schema_version"] == 2 and set(d["registration"]["transform"]) == {
        "matrix",
        "translation",
        "model",
    }
    assert main(["replay", str(v2_path), str(folder / "landmarks_session.json")]) == 0
    assert capsys.readouterr().out.count("every number matches") == 2
    from mpi_viewer.study.replay import same_value

    v2 = S.load_session(v2_path)
    assert v2.warnings == [] and len(v2.results) == len(v1.results) == 2
    for ra, rb in zip(v1.results, v2.results, strict=True):
        assert ra.keys() == rb.keys() and all(same_value(ra[k], rb[k], rtol=0) for k in ra)


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d["registration"]["transform"]["matrix"].pop(), "registration.transform.matrix"),
        (lambda d: d["cells"].update(mean_pg="15"), "cells.mean_pg"),
        (lambda d: d["cells"].update(mean_pg=-1.0), "cells"),
        (lambda d: d["rois"][0]["seeds_xyz_mm"][0].append(1.0), "rois[0].seeds_xyz_mm[0]"),
        (lambda d: d["inputs"][0].update(role="brain"), "inputs[0].role"),
        (lambda d: d["calibration"].update(confidence=1.5), "calibration.confidence"),
        (lambda d: d["registration"].update(method="intensity", transform=None), "registration"),
    ],
)
def test_invalid_values_are_one_line_naming_the_field(mutate, where):
    raw = json.loads((V1 / "demo_session.json").read_text(encoding="utf-8"))
    d = S.parse_session(json.dumps(raw)).to_dict()
    mutate(d)
    with pytest.raises(InputError) as e:
        S.parse_session(json.dumps(d), source="bad.json")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"bad.json: session.{where}"), msg


def test_an_image_held_in_memory_is_kept_but_not_replayed(tmp_path):
    s = Study(inputs=[S.InputFile(role="mpi", name="painted in napari", modality="MPI")])
    s.path = tmp_path / "s.json"
    assert s.inputs[0].in_memory and s.to_dict()["inputs"] == [
        {"role": "mpi", "modality": "MPI", "name": "painted in napari"}
    ]
    with pytest.raises(InputError, match="held only in memory"):
        s.verify_inputs()


def test_defaults_are_defined_once():
    from mpi_viewer import defaults
    from mpi_viewer.calibration.cells import IronPerCell
    from mpi_viewer.cli import build_parser
    from mpi_viewer.demo import study as demo
    from mpi_viewer.roi.regions import ROIParams

    assert S.CellsSection().mean_pg == demo.IRON_PER_CELL_PG == defaults.IRON_PER_CELL_PG == 15.0
    assert S.CellsSection().sd_pg == defaults.IRON_PER_CELL_SD_PG
    assert ROIParams().n_sd == defaults.N_SD == 5.0 and ROIParams().fraction == 0.5
    args = build_parser(with_files=False).parse_args(
        ["quantify", "m.nii", "--seed=1,2,3", "-o", "x.csv"]
    )
    assert (args.n_sd, args.fraction, args.confidence) == (5.0, 0.5, 0.95)
    assert S.CalibrationSection(source="phantoms").confidence == defaults.CONFIDENCE
    assert IronPerCell(defaults.IRON_PER_CELL_PG).mean_pg == 15.0


# -- the one transform type -------------------------------------------------------------------
def test_transform_round_trips_against_the_known_demo_transform(demo_folder, tmp_path):
    from mpi_viewer.geometry.transform import Transform, napari_affine_for_moving
    from mpi_viewer.io.images import read_volume
    from mpi_viewer.io.transform_files import load_transform, write_transform
    from mpi_viewer.registration.landmarks import fit_landmarks
    from mpi_viewer.study.model import TransformModel

    truth = json.loads((demo_folder / "truth.json").read_text(encoding="utf-8"))
    mri = np.array([s["mri_mm"] for s in truth["sources"]])
    mpi = np.array([s["mpi_mm"] for s in truth["sources"]])
    t = load_transform(demo_folder / "truth_mri_to_mpi.tfm")  # .tfm → Transform
    np.testing.assert_allclose(t.transform_points(mri), mpi, atol=1e-9)
    np.testing.assert_allclose(t.inverse_points(mpi), mri, atol=1e-9)
    # SimpleITK both ways, typed by the model
    rigid = t.with_model("rigid")
    assert rigid.to_sitk().GetName() == "Euler3DTransform"
    back = Transform.from_sitk(rigid.to_sitk(), "rigid")
    np.testing.assert_allclose(back.matrix, t.matrix, atol=1e-12)
    np.testing.assert_allclose(back.translation, t.translation, atol=1e-12)
    # .tfm and the session's form
    write_transform(tmp_path / "t.tfm", rigid)
    np.testing.assert_allclose(load_transform(tmp_path / "t.tfm").matrix, t.matrix, atol=1e-12)
    assert TransformModel.of(rigid).to_transform() == rigid
    # napari: the MPI's voxels land on their true MRI positions
    vol = read_volume(demo_folder / "mpi.nii.gz")
    aff = t.napari_affine(vol)
    np.testing.assert_array_equal(aff, napari_affine_for_moving(vol, (t.matrix, t.translation)))
    idx_zyx = vol.physical_to_index(mpi)  # the sources' voxels in the MPI
    scaled = idx_zyx * np.asarray(vol.spacing_mm[::-1])  # layer scale = spacing (z, y, x)
    world_zyx = scaled @ aff[:3, :3].T + aff[:3, 3]
    np.testing.assert_allclose(world_zyx[:, ::-1], mri, atol=1e-6)  # on their MRI positions
    # a landmark fit is this type too, and it is immutable
    fid = [
        {r.split(",")[0]: [float(v) for v in r.split(",")[1:]] for r in f.read_text().split()[1:]}
        for f in (demo_folder / "fiducials_mri.csv", demo_folder / "fiducials_mpi.csv")
    ]
    names = [n for n in fid[1] if n in fid[0]]
    fit = fit_landmarks(
        np.array([fid[0][n] for n in names]), np.array([fid[1][n] for n in names]), model="rigid"
    )
    np.testing.assert_allclose(fit.transform.transform_points(mri), mpi, atol=0.05)
    assert isinstance(fit.transform, Transform) and fit.transform.model == "rigid"
    with pytest.raises((AttributeError, TypeError)):
        fit.transform.model = "affine"
    m, tr = fit.transform  # unpacks as (matrix, translation)
    assert m.shape == (3, 3) and tr.shape == (3,)


# -- one pipeline -------------------------------------------------------------------------------
def test_quantify_with_and_without_a_session_is_one_computation(demo_folder, tmp_path, capsys):
    """The CSV of a plain run, the CSV of a --save-session run and the session's stored
    results are the same numbers (the pipeline runs once; nothing is recomputed to compare)."""
    truth = json.loads((demo_folder / "truth.json").read_text(encoding="utf-8"))
    seeds = [f"--seed={','.join(f'{v:.1f}' for v in s['mpi_mm'])}" for s in truth["sources"]]
    common = ["quantify", str(demo_folder / "mpi.nii.gz"), *seeds, "--phantoms"]
    common += [str(demo_folder / "phantoms.csv"), "--iron-per-cell", "15"]
    session = tmp_path / "q.json"
    assert main([*common, "-o", str(tmp_path / "a.csv")]) == 0
    assert main([*common, "-o", str(tmp_path / "b.csv"), "--save-session", str(session)]) == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    s = S.load_session(session)
    assert s.to_dict()["schema_version"] == 2 and s.calibration.confidence == 0.95
    cells = [r["cells"] for r in s.results]
    true = [src["cells"] for src in truth["sources"]]
    assert cells[:3] == pytest.approx(true[:3], rel=0.06)  # faint: near the detection limit
    assert main(["replay", str(session)]) == 0
    assert "every number matches" in capsys.readouterr().out


def test_the_v1_demo_session_registers_the_mpi_onto_the_anatomy(demo_folder, tmp_path):
    """The pipeline's Transform of the (migrated) mold-template demo session puts every
    demo source within 0.5 mm of its true MRI position; fixed is the MRI, moving the MPI."""
    from mpi_viewer.study.pipeline import recompute

    shutil.copytree(demo_folder, tmp_path / "s")
    for name in ("demo_session.json", "demo_session.tfm"):
        shutil.copy(V1 / name, tmp_path / "s" / name)
    s = S.load_session(tmp_path / "s" / "demo_session.json")
    assert (s.registration.fixed, s.registration.moving, s.anatomy.role) == ("mri", "mpi", "mri")
    t = recompute(s).transform()
    truth = json.loads((demo_folder / "truth.json").read_text(encoding="utf-8"))
    mri = np.array([src["mri_mm"] for src in truth["sources"]])
    mpi = np.array([src["mpi_mm"] for src in truth["sources"]])
    assert np.linalg.norm(t.inverse_points(mpi) - mri, axis=1).max() < 0.5
