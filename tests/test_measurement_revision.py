"""The measurement revision recorded in a session's ROI parameters: old sessions replay
the numbers they were measured with, new ones the current revision's (issue 15).

Revision 1 is mpi-viewer 0.1's measurement; revision 2 reports the written mask's area and
total (the sub-voxel integration in ``*_subvoxel_*`` columns), delineates a faint lone source
on its fitted point-spread model, and carries the threshold's jitter and the split's
uncertainty into the intervals (:data:`mpi_viewer.roi.regions.MEASUREMENT_REVISION`).
"""

import json
from pathlib import Path

import pytest

from mpi_viewer.cli import main
from mpi_viewer.demo.study import make_demo_study, write_demo_study
from mpi_viewer.errors import InputError
from mpi_viewer.roi import regions as roi
from mpi_viewer.study.session import load_session, parse_session

V1 = Path(__file__).parent / "data" / "sessions_v1"


def test_params_without_a_revision_are_revision_1_and_new_ones_current():
    assert roi.MEASUREMENT_REVISION == 2
    assert roi.ROIParams().revision == 2 and roi.ROIParams().to_dict()["revision"] == 2
    old = roi.ROIParams().to_dict()
    old.pop("revision")
    assert roi.ROIParams.from_dict(old).revision == 1
    # revision 1 is written as before revisions existed (stored calibrations unchanged)
    assert "revision" not in roi.ROIParams(revision=1).to_dict()
    for bad in (0, 3, True, "2"):
        with pytest.raises(InputError, match="revision"):
            roi.ROIParams(revision=bad)


def test_v1_sessions_are_measured_with_revision_1():
    for p in V1.glob("*_session.json"):
        s = load_session(p)
        assert [sec.revision for sec in s.rois] == [1] * len(s.rois), p.name
        assert all(sec.params["revision"] == 1 for sec in s.rois)
        if s.calibration is not None and s.calibration.roi_params is not None:
            assert s.calibration.roi_params["revision"] == 1


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rev")
    write_demo_study(folder)
    return folder, make_demo_study(include_ct=False)


def test_revision_1_and_2_differ_on_the_faint_source(demo):
    """The same image measured at both revisions: the faint lone source (SNR ~6) differs,
    revision 2 nearer the noise-free total; every ROI says its revision."""
    _, study = demo
    faint = study.source("faint")
    seeds = [faint["mpi_mm"], study.source("isolated")["mpi_mm"]]
    r1 = roi.measure(study.mpi, seeds, roi.ROIParams(revision=1), names=["faint", "isolated"])
    r2 = roi.measure(study.mpi, seeds, roi.ROIParams(), names=["faint", "isolated"])
    clean = make_demo_study(include_ct=False, noise_sd_au=0.0)
    ref = roi.measure(clean.mpi, [faint["mpi_mm"]])[0].calibration_signal
    assert [r.revision for r in r1] == [1, 1] and [r.to_row()["roi_revision"] for r in r2] == [2, 2]
    # revision 1's total is sub-voxel integrated; revision 2's sub-voxel total is in a column
    # of its own (and what the calibration uses)
    assert [r.total_signal_subvoxel for r in r1] == [None, None]
    assert [r.calibration_signal for r in r1] == [r.total_signal for r in r1]
    e1, e2 = r1[0].total_signal / ref - 1, r2[0].calibration_signal / ref - 1
    assert abs(r2[0].calibration_signal / r1[0].total_signal - 1) > 0.03, (e1, e2)
    assert abs(e2) < abs(e1), (e1, e2)
    assert r1[0].delineation_sd == 0.0 < r2[0].delineation_sd
    # a bright lone source: the corrections do not apply
    assert r2[1].total_signal_subvoxel == pytest.approx(r1[1].total_signal, rel=2e-3)
    assert r2[1].size_subvoxel == pytest.approx(r1[1].size, rel=2e-3)


def test_revision_2_reports_the_written_mask_and_the_subvoxel_integration_beside_it(demo):
    """Revision 2: volume, total and mean are the written voxel set's exactly (what a user
    re-measures from the mask); the sub-voxel integration of the same threshold surface
    has columns of its own. Revision 1 keeps the sub-voxel numbers in the main columns."""
    import numpy as np

    _, study = demo
    vol = study.mpi
    a = vol.array.astype(np.float64)
    vox = float(np.prod(vol.spacing_mm))
    names = ["isolated", "strong", "weak"]
    seeds = [study.source(n)["mpi_mm"] for n in names]
    r2 = roi.measure(vol, seeds, roi.ROIParams(), names=names)
    r1 = roi.measure(vol, seeds, roi.ROIParams(revision=1), names=names)
    lab = roi.rois_to_label_image(vol, r2)
    for r, old in zip(r2, r1, strict=True):
        m = lab == r.label
        assert r.volume_mm3 == int(m.sum()) * vox == r.n_voxels * vox
        # the image's sum over the mask is the ROI's total plus the neighbours' subtracted
        # signal there (0 for the isolated source), to float32 precision (the subtraction)
        assert r.total_signal + r.neighbour_signal == pytest.approx(a[m].sum() * vox, rel=1e-7)
        assert r.mean_au * r.volume_mm3 == pytest.approx(r.total_signal, rel=1e-9)
        # revision 1: the same region's sub-voxel numbers in the main columns (within 1 %:
        # its PSF template, whose modelled tails are subtracted, is weighted otherwise)
        assert r.size_subvoxel == pytest.approx(old.size, rel=0.01)
        assert r.total_signal_subvoxel == pytest.approx(old.total_signal, rel=0.01)
        assert (
            old.to_row().keys().isdisjoint({"volume_subvoxel_mm3", "total_signal_subvoxel_au_mm3"})
        )
        row = r.to_row()
        assert row["volume_mm3"] == r.volume_mm3
        assert row["volume_subvoxel_mm3"] == r.size_subvoxel
        assert row["total_signal_subvoxel_au_mm3"] == r.calibration_signal
    assert r2[0].neighbour_signal == 0.0
    assert r2[0].total_signal == pytest.approx(a[lab == 1].sum() * vox, rel=1e-9)


def test_a_new_session_replays_revision_2_and_without_the_field_revision_1(demo, capsys):
    """``quantify --save-session`` records revision 2 and replays with exit 0; the same
    session with the field removed (as saved before revisions existed) is measured
    with revision 1: its stored revision-2 numbers then differ (exit 1)."""
    folder, study = demo
    faint = ",".join(f"{v:.2f}" for v in study.source("faint")["mpi_mm"])
    weak = ",".join(f"{v:.2f}" for v in study.source("weak")["mpi_mm"])
    strong = ",".join(f"{v:.2f}" for v in study.source("strong")["mpi_mm"])
    sp = folder / "new_session.json"
    args = [
        "quantify",
        str(folder / "mpi.nii.gz"),
        f"--seed={faint}",
        f"--seed={weak}",
        f"--seed={strong}",
        "--phantoms",
        str(folder / "phantoms.csv"),
        "-o",
        str(folder / "q.csv"),
        "--save-session",
        str(sp),
    ]
    assert main(args) == 0
    d = json.loads(sp.read_text(encoding="utf-8"))
    assert d["rois"][0]["params"]["revision"] == 2
    assert [r["roi_revision"] for r in d["results"]] == [2, 2, 2]
    csv_head = (folder / "q.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert "roi_revision" in csv_head
    capsys.readouterr()
    assert main(["replay", str(sp)]) == 0
    assert "every number matches" in capsys.readouterr().out

    d["rois"][0]["params"].pop("revision")
    for row in d["results"]:
        row.pop("roi_revision")
    d["calibration"]["calibration"]["roi"].pop("revision", None)
    old = folder / "old_session.json"
    old.write_text(json.dumps(d), encoding="utf-8")
    assert parse_session(old.read_text(encoding="utf-8")).rois[0].revision == 1
    assert main(["replay", str(old)]) == 1
    out = capsys.readouterr().out
    assert "row roi_1: total_signal" in out  # the faint source (first seed)
