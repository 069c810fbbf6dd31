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


def test_demo_write_and_its_gaussian_variant(tmp_path, capsys, monkeypatch):
    """`mpi-viewer demo --write DIR` writes the study (the default Langevin demo is written
    by several other tests); `--psf gaussian`: the earlier demo's Gaussian PSF, written or
    opened in napari; a PSF it does not know exits 2 with one line."""
    import json

    import numpy as np

    from mpi_viewer.io.images import read_volume

    d = tmp_path / "d"
    assert main(["demo", "--write", str(d), "--psf", "gaussian"]) == 0
    truth = json.loads((d / "truth.json").read_text(encoding="utf-8"))
    assert truth["psf"] == "gaussian"
    np.testing.assert_allclose(truth["psf_fwhm_mm"], (2.4, 2.4, 3.6))
    out = capsys.readouterr().out
    assert "mpi:" in out and "--seed=" in out
    # the image is the Gaussian's: the isolated source's brightest voxel is its known peak
    mpi = read_volume(d / "mpi.nii.gz")
    src = next(s for s in truth["sources"] if s["name"] == "isolated")
    idx = np.rint(mpi.physical_to_index([src["mpi_mm"]])[0]).astype(int)
    box = mpi.array[tuple(slice(max(i - 2, 0), i + 3) for i in idx)]
    peak = (
        src["iron_ug"]
        * truth["sensitivity_au_mm3_per_ug"]
        / ((2 * np.pi) ** 1.5 * np.prod(np.asarray(truth["psf_fwhm_mm"]) / 2.3548200450309493))
    )
    assert float(box.max()) == pytest.approx(peak, rel=0.1)

    import mpi_viewer.plugins._launch as launch

    seen = {}
    monkeypatch.setattr(launch, "run", lambda **kw: seen.update(kw) or 0)
    assert main(["demo", "--psf", "gaussian"]) == 0
    assert seen["demo"] is True and seen["psf"] == "gaussian"

    with pytest.raises(SystemExit) as e:
        main(["demo", "--psf", "lorentzian"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lorentzian" in err[0]
