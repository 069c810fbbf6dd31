"""The study report of the demo: files, geometry, overlays where the sources are, refusals."""

import numpy as np
import pytest

from mpi_viewer import __version__
from mpi_viewer import calibration as cal
from mpi_viewer.calibration.cells import IronPerCell
from mpi_viewer.demo.study import make_demo_study, truth_transform
from mpi_viewer.errors import InputError
from mpi_viewer.report.study_report import _Scene, roi_label_text, write_report
from mpi_viewer.roi import regions as roi


@pytest.fixture(scope="module")
def demo():
    study = make_demo_study(include_ct=False)
    params = roi.ROIParams()
    phantoms = [
        cal.Phantom(v["name"], tuple(v["mpi_mm"]), v["iron_ug"]) for v in study.truth["vials"]
    ]
    c = cal.Calibration.from_points(
        "demo_vials",
        cal.measure_phantoms(study.mpi, phantoms, params),
        tracer=study.mpi.acquisition.tracer,
        roi=params.to_dict(),
        acquisition=study.mpi.acquisition.to_dict(),
    )
    sources = [s for s in study.truth["sources"] if s["name"] in ("isolated", "strong", "weak")]
    res = roi.measure(
        study.mpi, [s["mpi_mm"] for s in sources], params, names=[s["name"] for s in sources]
    )
    q = cal.apply_calibration(
        res,
        c,
        acquisition=study.mpi.acquisition,
        roi_params=params,
        voxel_volume_mm3=study.mpi.voxel_volume_mm,
        iron_per_cell=IronPerCell(15, 1.5),
    )
    rows = []
    for r, qq in zip(res, q, strict=True):
        row = r.to_row()
        row.update(qq.columns())
        rows.append(row)
    labels = roi.rois_to_label_image(study.mpi, res)
    return study, c, rows, labels


def _write(demo, folder, **kw):
    study, c, rows, labels = demo
    args = dict(
        results_rows=rows,
        mpi=study.mpi,
        anatomy=study.mri,
        transform=truth_transform(study),
        roi_labels=labels,
        calibration=c,
        inputs={"mpi": "mpi.nii.gz", "mri": "mri.nii.gz"},
    )
    args.update(kw)
    return write_report(folder, **args)


def test_report_folder(demo, tmp_path):
    import SimpleITK as sitk

    study, c, rows, labels = demo
    out = _write(demo, tmp_path / "rep")
    names = {p.name for p in out.iterdir()}
    assert {
        "results.csv",
        "roi_masks.nii.gz",
        "transform_fixed_to_moving.tfm",
        "calibration.png",
        "calibration.json",
        "view_3d.png",
        "index.html",
        "roi_isolated.png",
        "roi_strong.png",
        "roi_weak.png",
    } <= names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    # the CSV holds every ROI with units in the column names
    from mpi_viewer.io.tables import read_csv

    table = read_csv(out / "results.csv")
    assert [r["name"] for r in table] == ["isolated", "strong", "weak"]
    assert {"iron_ug", "iron_ci_low_ug", "cells", "cells_ci_high", "below_lod", "warnings"} <= set(
        table[0]
    )
    # masks on the MPI grid with its geometry
    m = sitk.ReadImage(str(out / "roi_masks.nii.gz"))
    assert np.allclose(m.GetSpacing(), study.mpi.spacing_mm) and np.allclose(
        m.GetOrigin(), study.mpi.origin_mm
    )
    assert np.array_equal(sitk.GetArrayFromImage(m), labels)
    # the transform file maps MRI points to MPI points as the truth does
    tx = sitk.ReadTransform(str(out / "transform_fixed_to_moving.tfm"))
    for s in study.truth["sources"]:
        assert np.allclose(tx.TransformPoint(s["mri_mm"]), s["mpi_mm"], atol=1e-6)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert f"mpi-viewer {__version__}" in page and "mpi.nii.gz" in page and "mri.nii.gz" in page
    for f in ("calibration.png", "view_3d.png", "roi_weak.png", "results.csv"):
        assert f"'{f}'" in page
    assert cal.load_calibration(out / "calibration.json").to_dict() == c.to_dict()


def test_labels_are_the_numbers_of_the_table(demo):
    _, _, rows, _ = demo
    iso = rows[0]
    text = roi_label_text(iso)
    exp = int(np.floor(np.log10(iso["cells"])))
    assert text.startswith(f"isolated: {iso['cells'] / 10**exp:.1f} × 10")
    assert f"[{iso['cells_ci_low'] / 10**exp:.1f}–{iso['cells_ci_high'] / 10**exp:.1f} × 10" in text
    assert (
        roi_label_text({"name": "x", "below_lod": True, "cells": None})
        == "x: below detection limit"
    )


def test_overlay_sits_on_the_sources_in_the_anatomy(demo):
    """The MPI drawn on an anatomy plane through the transform peaks at the source's
    true MRI position (within a voxel of the display grid and the MPI)."""
    study, _, rows, labels = demo
    scene = _Scene(study.mpi, study.mri, truth_transform(study), labels, rows)
    for s in study.truth["sources"][:2]:  # isolated and strong
        c = np.asarray(s["mri_mm"])
        ref = scene._plane(c, (0, 1), (6.0, 6.0))
        _, mpi, lab = scene._sample(ref, (0, 1))
        iy, ix = np.unravel_index(np.argmax(mpi), mpi.shape)
        origin = np.asarray(ref.GetOrigin())
        found = origin[:2] + 0.25 * np.array([ix, iy])
        assert np.linalg.norm(found - c[:2]) < 0.6, (s["name"], found, c)
        assert lab[iy, ix] > 0  # the ROI outline encloses it


def test_refuses_a_non_empty_folder(demo, tmp_path):
    target = tmp_path / "rep"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        _write(demo, target)
    assert [p.name for p in target.iterdir()] == ["mine.txt"]
    out = _write(demo, target, overwrite=True)
    assert (out / "index.html").is_file() and not (out / "mine.txt").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        _write(demo, empty, calibration=None, anatomy=None, transform=None) / "index.html"
    ).is_file()


def test_bad_labels_write_nothing(demo, tmp_path):
    with pytest.raises(InputError, match="do not match"):
        _write(demo, tmp_path / "rep", roi_labels=np.zeros((3, 3, 3), np.uint16))
    assert list(tmp_path.iterdir()) == []
