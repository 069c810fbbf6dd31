import pytest

from mpi_viewer.cli import main, parse_vector
from mpi_viewer.errors import InputError


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert "mpi-viewer" in capsys.readouterr().out


def test_usage_error_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["register", "a.nii"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0]


def test_parse_vector_allows_negative_and_rejects_junk():
    assert parse_vector("-1.5,2,3e1") == (-1.5, 2.0, 30.0)
    with pytest.raises(InputError, match="expected 3"):
        parse_vector("1,2", what="--seed")
    with pytest.raises(InputError, match="numbers"):
        parse_vector("a,b,c")
    with pytest.raises(InputError, match="finite"):
        parse_vector("nan,1,2")


def test_demo_write(tmp_path, capsys):
    assert main(["demo", "--write", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "truth.json").is_file()
    assert "mpi:" in capsys.readouterr().out
