"""``mpi-viewer register``: the written transform against the demo truth; bad input → exit 2, one line, no file."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from mpi_viewer.cli import main
from mpi_viewer.demo.study import make_demo_study
from mpi_viewer.geometry.transform import transform_to_matrix
from mpi_viewer.io.transform_files import read_transform


@pytest.fixture(scope="module")
def demo(tmp_path_factory, copy_demo):
    folder = tmp_path_factory.mktemp("demo")
    paths = copy_demo(folder, include_ct=False)
    return folder, paths, make_demo_study(include_ct=False).truth


def _run(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _write(path, rows, header="name,x,y,z"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _rows(truth, frame, names=None):
    return [
        f"{f['name']},{','.join(str(v) for v in f[f'{frame}_mm'])}"
        for f in truth["fiducials"]
        if names is None or f["name"] in names
    ]


def test_register_from_points_writes_true_transform(demo, capsys, tmp_path):
    folder, paths, truth = demo
    out = tmp_path / "mri_to_mpi.tfm"
    code, stdout, err = _run(
        capsys,
        [
            "register",
            paths["mri"],
            paths["mpi"],
            "--fixed-points",
            paths["fiducials_mri"],
            "--moving-points",
            paths["fiducials_mpi"],
            "--model",
            "affine",
            "--exclude",
            "M3",
            "-o",
            out,
        ],
    )
    assert code == 0, err
    assert "RMS FRE:" in stdout and "residual_mm" in stdout and " mm" in stdout
    for f in truth["fiducials"]:
        assert f["name"] in stdout
    assert "no (excluded)" in stdout and "6 of 7" in stdout
    m, t = transform_to_matrix(read_transform(out))
    tt = truth["transform_fixed_to_moving"]
    src = np.array([s["mri_mm"] for s in truth["sources"]])
    # the point files hold 4 decimals: the map agrees with the truth to well below 0.01 mm
    assert_allclose(src @ m.T + t, src @ np.asarray(tt["matrix"]).T + tt["translation"], atol=0.01)


def test_register_with_template(demo, capsys, tmp_path):
    folder, paths, truth = demo
    out = tmp_path / "t.tfm"
    code, stdout, err = _run(
        capsys, ["register", paths["mri"], paths["mpi"], "--template", "mouse_mold_v1", "-o", out]
    )
    assert code == 0, err
    assert "RMS FRE:" in stdout
    m, t = transform_to_matrix(read_transform(out))
    tt = truth["transform_fixed_to_moving"]
    src = np.array([s["mri_mm"] for s in truth["sources"]])
    tre = np.linalg.norm(
        src @ m.T + t - (src @ np.asarray(tt["matrix"]).T + tt["translation"]), axis=1
    )
    assert tre.max() <= 0.3


def _bad_cases(folder, paths, truth, tmp):
    fixed, moving = paths["fiducials_mri"], paths["fiducials_mpi"]
    three = ["M1", "M2", "M3"]
    mri_rows = _rows(truth, "mri")
    nan_rows = [mri_rows[0].rsplit(",", 1)[0] + ",nan", *mri_rows[1:]]
    far = ["M1,500,500,500", *_rows(truth, "mpi")[1:]]
    return {
        "too few pairs": (
            [
                "--fixed-points",
                _write(tmp / "f3.csv", _rows(truth, "mri", three)),
                "--moving-points",
                _write(tmp / "m3.csv", _rows(truth, "mpi", three)),
                "--model",
                "affine",
            ],
            "needs at least 4",
        ),
        "NaN": (
            ["--fixed-points", _write(tmp / "nan.csv", nan_rows), "--moving-points", moving],
            "NaN",
        ),
        "duplicate names": (
            [
                "--fixed-points",
                _write(tmp / "dup.csv", [*mri_rows, mri_rows[0]]),
                "--moving-points",
                moving,
            ],
            "duplicate",
        ),
        "unpaired": (
            [
                "--fixed-points",
                fixed,
                "--moving-points",
                _write(tmp / "m6.csv", _rows(truth, "mpi")[:-1]),
            ],
            "M7",
        ),
        "outside image": (
            ["--fixed-points", fixed, "--moving-points", _write(tmp / "far.csv", far)],
            "outside the image",
        ),
        "no points file": (
            ["--fixed-points", tmp / "none.csv", "--moving-points", moving],
            "no such file",
        ),
        "one points file": (["--fixed-points", fixed], "--moving-points is missing"),
        "nothing to register from": ([], "--template"),
        "unknown exclude": (
            ["--fixed-points", fixed, "--moving-points", moving, "--exclude", "M99"],
            "M99",
        ),
        "collinear": (
            [
                "--fixed-points",
                _write(tmp / "fl.csv", ["a,0,0,0", "b,1,1,1", "c,2,2,2"]),
                "--moving-points",
                _write(tmp / "ml.csv", ["a,0,0,0", "b,1,1,1", "c,2,2,2"]),
            ],
            "collinear",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "too few pairs",
        "NaN",
        "duplicate names",
        "unpaired",
        "outside image",
        "no points file",
        "one points file",
        "nothing to register from",
        "unknown exclude",
        "collinear",
    ],
)
def test_bad_input_exit_2_one_line_nothing_written(demo, capsys, tmp_path, case):
    folder, paths, truth = demo
    extra, message = _bad_cases(folder, paths, truth, tmp_path)[case]
    if case == "collinear":  # points inside a small synthetic image pair
        from mpi_viewer.geometry.volume import Volume, image_from_array
        from mpi_viewer.io.images import write_volume

        vol = Volume(image=image_from_array(np.zeros((8, 8, 8), np.float32)), modality="MRI")
        images = [
            write_volume(vol, tmp_path / "a.nii.gz"),
            write_volume(vol, tmp_path / "b.nii.gz"),
        ]
    else:
        images = [paths["mri"], paths["mpi"]]
    out = tmp_path / "out.tfm"
    code, stdout, err = _run(capsys, ["register", *images, *extra, "-o", out])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]
    assert not out.exists()


def test_unreadable_image_exit_2(demo, capsys, tmp_path):
    folder, paths, truth = demo
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out.tfm"
    code, _, err = _run(
        capsys,
        [
            "register",
            bad,
            paths["mpi"],
            "--fixed-points",
            paths["fiducials_mri"],
            "--moving-points",
            paths["fiducials_mpi"],
            "-o",
            out,
        ],
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "broken.nii.gz" in err
    assert not out.exists()
