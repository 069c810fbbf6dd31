"""Point CSV files: round trip against known coordinates, and every bad file refused in one line."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from mpi_viewer.errors import InputError
from mpi_viewer.io.points import PointSet, read_points_csv, write_points_csv


def test_round_trip_keeps_names_order_and_mm(tmp_path):
    pts = PointSet(
        ["M1", "tip of nose", "M3"], np.array([[1.25, -2.5, 30.0], [0.0, 1e-6, -7.125], [3, 4, 5]])
    )
    path = write_points_csv(tmp_path / "p.csv", pts)
    assert path.read_text().splitlines()[0] == "name,x,y,z"
    back = read_points_csv(path)
    assert back.names == pts.names
    assert_allclose(back.xyz_mm, pts.xyz_mm, atol=1e-6)  # written with 6 decimals (1 nm)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write leaves no temporary file


def test_reads_demo_fiducials_and_2d_files(tmp_path, copy_demo):
    from mpi_viewer.demo.study import make_demo_study

    paths = copy_demo(tmp_path / "d", include_ct=False)
    truth = make_demo_study(include_ct=False).truth
    got = read_points_csv(paths["fiducials_mri"])
    assert got.names == [f["name"] for f in truth["fiducials"]]
    assert_allclose(
        got.xyz_mm, [f["mri_mm"] for f in truth["fiducials"]], atol=1e-4
    )  # file has 4 decimals
    # a phantom file (extra iron_ug column) reads as points
    assert len(read_points_csv(paths["phantoms"])) == len(truth["vials"])
    (tmp_path / "p2.csv").write_text("# 2-D projection\nName, X, Y\na,1,2\nb,3,4\n")
    p2 = read_points_csv(tmp_path / "p2.csv")
    assert p2.ndim == 2 and p2.names == ["a", "b"]
    assert_allclose(p2.xyz_mm, [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    "text, message",
    [
        ("name,x,y\n", "no points"),
        ("", "empty point file"),
        ("label,x,y,z\na,1,2,3\n", "missing column"),
        ("name,x,z\na,1,2\n", "missing column"),
        ("name,x,y,z\na,1,two,3\n", "not a number"),
        ("name,x,y,z\na,1,nan,3\n", "NaN"),
        ("name,x,y,z\na,1,2,inf\n", "NaN or infinite"),
        ("name,x,y,z\na,1,2,3\na,4,5,6\n", "duplicate point name 'a'"),
        ("name,x,y,z\n,1,2,3\n", "empty name"),
        ("name,x,y,z\na,1,2\n", "fields"),
    ],
)
def test_bad_files_are_one_line_input_errors(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as e:
        read_points_csv(path)
    assert "\n" not in str(e.value) and "bad.csv" in str(e.value)


def test_missing_file_and_invalid_writes(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_points_csv(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="duplicate"):
        write_points_csv(tmp_path / "w.csv", PointSet(["a", "a"], [[0, 0, 0], [1, 1, 1]]))
    with pytest.raises(InputError, match="NaN"):
        write_points_csv(tmp_path / "w.csv", PointSet(["a"], [[0, np.nan, 0]]))
    with pytest.raises(InputError, match="no points"):
        write_points_csv(tmp_path / "w.csv", PointSet())
    assert not (tmp_path / "w.csv").exists()


def test_existing_file_is_replaced_whole(tmp_path):
    path = tmp_path / "p.csv"
    write_points_csv(path, PointSet(["a", "b", "c"], np.arange(9.0).reshape(3, 3)))
    write_points_csv(path, PointSet(["z"], [[1.0, 2.0, 3.0]]))
    assert path.read_text() == "name,x,y,z\nz,1.000000,2.000000,3.000000\n"


def test_pointset_dict_round_trip_through_json():
    import json

    pts = PointSet(["a", "b"], [[1.5, 2, 3], [4, 5, 6.25]])
    back = PointSet.from_dict(json.loads(json.dumps(pts.to_dict())))
    assert back.names == pts.names
    assert_allclose(back.xyz_mm, pts.xyz_mm)
