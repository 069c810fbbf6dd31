"""Mold registration with few visible wells (issue 15): the 180° ambiguity of wells M3–M6.

The MRI's field of view is cut to the four wells M3–M6 of ``mouse_mold_v1`` (which a
180° turn of the mold maps onto each other within 0.25 mm), one of them cut by the
edge; the MPI shows the whole mold. Truth: the demo's MRI → MPI transform, checked at
the labelled-cell sources.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpi_viewer import cli
from mpi_viewer.demo.study import make_demo_study, truth_transform
from mpi_viewer.errors import InputError
from mpi_viewer.geometry.volume import Volume
from mpi_viewer.registration.molds import (
    AmbiguousPoseError,
    load_template,
    match_fiducials,
    register_with_template,
)

FOUR = ("M3", "M4", "M5", "M6")
#: well → (axis x/y/z = 0/1/2, side) of the field-of-view face that cuts it
CUTS = {"M3": (2, "lo"), "M4": (1, "hi"), "M5": (1, "lo"), "M6": (2, "hi")}
SMALL = dict(include_ct=False, mri_spacing_mm=(0.5, 0.5, 0.5), extra_hot_spots=2)


def crop_to_wells(study, cut=("M6", 0.0), wells=FOUR, margin_mm=3.0) -> Volume:
    """The study's MRI cut to a box around ``wells``; ``cut = (well, offset mm)`` puts one
    face at that well's centre + offset (about half the well in view)."""
    pos = {f["name"]: np.asarray(f["mri_mm"]) for f in study.truth["fiducials"]}
    pts = np.array([pos[n] for n in wells])
    lo, hi = pts.min(axis=0) - margin_mm, pts.max(axis=0) + margin_mm
    if cut is not None:
        axis, side = CUTS[cut[0]]
        (lo if side == "lo" else hi)[axis] = pos[cut[0]][axis] + cut[1]
    img = study.mri.image
    corners = np.array(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij")).reshape(3, -1).T
    idx = np.array([img.TransformPhysicalPointToContinuousIndex(c.tolist()) for c in corners])
    size = np.array(img.GetSize())
    a = np.clip(np.ceil(idx.min(axis=0) - 1e-6).astype(int), 0, size - 1)
    b = np.clip(np.floor(idx.max(axis=0) + 1e-6).astype(int) + 1, 1, size)
    sub = img[int(a[0]) : int(b[0]), int(a[1]) : int(b[1]), int(a[2]) : int(b[2])]
    return Volume(image=sub, modality="MRI", units="a.u.", name="MRI (four wells)")


def tre_mm(fit, study) -> float:
    """Largest error (mm) of the fit at the labelled-cell sources against the truth."""
    src = np.array([s["mri_mm"] for s in study.truth["sources"]])
    tx = truth_transform(study)
    expected = np.array([tx.TransformPoint([float(v) for v in p]) for p in src])
    return float(np.linalg.norm(fit.transform_points(src) - expected, axis=1).max())


@pytest.fixture(scope="module")
def four_wells():
    study = make_demo_study(**SMALL)
    mri = crop_to_wells(study)
    # the cut is real: the image ends inside M6, and M1, M2, M7 are outside it
    inside = {
        f["name"]: bool(mri.contains_physical(np.atleast_2d(f["mri_mm"]), margin_voxels=-3)[0])
        for f in study.truth["fiducials"]
    }
    assert inside == {"M1": False, "M2": False, "M3": True, "M4": True, "M5": True} | {
        "M6": False,
        "M7": False,
    }
    m6 = np.atleast_2d(next(f["mri_mm"] for f in study.truth["fiducials"] if f["name"] == "M6"))
    assert mri.contains_physical(m6, margin_voxels=0.5)[0]
    return study, mri


def test_four_wells_one_cut_register_by_the_orientation_prior(four_wells):
    study, mri = four_wells
    # the MRI alone is ambiguous: two poses, the second a 180° turn of the mold
    with pytest.raises(InputError, match="ambiguous"):
        register_with_template(mri, study.mpi, "mouse_mold_v1", max_rotation_deg=None)

    reg = register_with_template(mri, study.mpi, "mouse_mold_v1")
    assert reg.decided_by == "prior" and not reg.ambiguous and reg.pose == 1
    assert set(reg.matched_names) <= set(FOUR) and len(reg.matched_names) >= 3
    assert tre_mm(reg.fit, study) < 0.5
    # the cut well is seen, flagged and left out of the fit; its residual is still shown
    assert reg.fixed_match.cut_by_edge == ["M6"] and reg.candidates[0].cut_excluded == ["M6"]
    assert "M6" in reg.fit.names and tre_mm(reg.fit, study) < 0.1  # 0.16 mm with it in
    with_cut = register_with_template(mri, study.mpi, "mouse_mold_v1", model="affine")
    assert with_cut.candidates[0].cut_excluded == []  # affine needs all four
    # both candidates are shown, ranked; the rejected one is the turned mold, far off
    one, two = reg.candidates
    assert one.within_prior and not two.within_prior
    assert one.unseen == [] and two.unseen == ["M7"]  # the turned mold puts M7 in view
    assert one.rotation_deg < 20 and two.rotation_deg > 135
    assert tre_mm(two.fit, study) > 20
    lines = reg.report_lines()
    assert any("orientation prior" in ln for ln in lines)
    assert any(ln.strip().startswith("pose 2:") for ln in lines)
    record = json.loads(json.dumps(reg.to_dict()))  # session-ready
    assert record["pose"] == 1 and record["decided_by"] == "prior"
    assert [c["rank"] for c in record["candidates"]] == [1, 2]
    # the user may still take the other pose: it is then theirs, not a success of ours
    other = reg.with_pose(2)
    assert other.decided_by == "user" and other.pose == 2 and tre_mm(other.fit, study) > 20
    assert tre_mm(other.with_pose(1).fit, study) < 0.5
    with pytest.raises(InputError, match="pose 3"):
        reg.with_pose(3)


def test_without_a_prior_the_candidates_hold_the_right_pose(four_wells):
    study, mri = four_wells
    with pytest.raises(AmbiguousPoseError) as err:
        register_with_template(mri, study.mpi, "mouse_mold_v1", max_rotation_deg=None)
    msg = str(err.value)
    assert "\n" not in msg and "pose 1" in msg and "pose 2" in msg
    cands = err.value.candidates
    assert len(cands) == 2
    right = [c.rank for c in cands if tre_mm(c.fit, study) < 0.5]
    assert len(right) == 1  # exactly one candidate is right
    # the GUI's path: the undecided registration, then the user's click on a candidate
    undecided = register_with_template(
        mri, study.mpi, "mouse_mold_v1", max_rotation_deg=None, strict=False
    )
    assert undecided.ambiguous and len(undecided.candidates) == 2
    picked = undecided.with_pose(right[0])
    assert not picked.ambiguous and tre_mm(picked.fit, study) < 0.5
    # and by argument, as --pose N does
    by_arg = register_with_template(
        mri, study.mpi, "mouse_mold_v1", max_rotation_deg=None, pose=right[0]
    )
    assert by_arg.decided_by == "user" and tre_mm(by_arg.fit, study) < 0.5
    with pytest.raises(InputError, match="pose 3"):
        register_with_template(mri, study.mpi, "mouse_mold_v1", pose=3)
    for bad in (0, 3, True, "1"):
        with pytest.raises(InputError, match="pose"):
            undecided.with_pose(bad)
    with pytest.raises(InputError, match="rotation"):
        register_with_template(mri, study.mpi, "mouse_mold_v1", max_rotation_deg=0)


def test_scans_the_opposite_way_round_are_never_registered_wrongly():
    # head-first in the MRI, feet-first in the MPI: the true turn is ~180°, outside the
    # prior; the prior must not pick the wrong pose: refused, the right pose offered
    study = make_demo_study(
        **SMALL, mpi_rotation_deg=(3.0, 178.0, -4.0), mpi_translation_mm=(2.0, 1.0, -3.0)
    )
    mri = crop_to_wells(study, cut=("M3", 0.3))
    with pytest.raises(AmbiguousPoseError, match="none turns the mold by at most 45°") as err:
        register_with_template(mri, study.mpi, "mouse_mold_v1")
    one, two = err.value.candidates
    assert one.rotation_deg > 170 and tre_mm(one.fit, study) < 0.5  # the right one, offered
    assert 45 < two.rotation_deg < 135 and tre_mm(two.fit, study) > 20
    # a wrong prior that would let the wrong pose in (60°) is caught when that pose puts
    # a well inside the MRI's field of view where the MRI shows none
    mri = crop_to_wells(study, cut=("M6", 0.0))
    with pytest.raises(AmbiguousPoseError, match="puts M7 inside the field of view") as err:
        register_with_template(mri, study.mpi, "mouse_mold_v1", max_rotation_deg=60)
    wrong = [c for c in err.value.candidates if c.within_prior]
    assert len(wrong) == 1 and wrong[0].unseen == ["M7"] and tre_mm(wrong[0].fit, study) > 20


def test_a_well_matched_study_is_decided_by_the_wells(study):
    reg = register_with_template(study.mri, study.mpi, "mouse_mold_v1")
    assert reg.decided_by == "wells" and len(reg.candidates) == 1 and reg.pose == 1
    assert reg.candidates[0].within_prior and reg.candidates[0].rotation_deg < 15
    # an unambiguous match stands even when the mold turned more than the prior allows
    assert register_with_template(
        study.mri, study.mpi, "mouse_mold_v1", max_rotation_deg=1.0
    ).decided_by == ("wells")


def test_match_keeps_the_turned_pose_as_an_alternative():
    t = load_template("mouse_mold_v1")
    pts = np.array([f.position_mm for f in t.fiducials if f.name in FOUR])
    m = match_fiducials(pts, t, strict=False)
    assert m.ambiguous and len(m.alternatives) == 1
    alt = m.alternatives[0]
    # the alternative reads M3..M6 as M6..M3: the 180° turn
    assert {n: int(i) for n, i in alt.pairs.items()} == {"M3": 3, "M4": 2, "M5": 1, "M6": 0}
    assert max(alt.residuals_mm.values()) < 0.3


def test_cli_prints_the_poses_and_takes_pose_n(four_wells, tmp_path, capsys):
    from mpi_viewer.io.images import write_volume

    study, mri = four_wells
    fixed = write_volume(mri, tmp_path / "mri_four_wells.nii.gz")
    moving = write_volume(study.mpi, tmp_path / "mpi.nii.gz")
    base = ["register", str(fixed), str(moving), "--template", "mouse_mold_v1"]
    import SimpleITK as sitk

    def tre_file(path):
        tx = sitk.ReadTransform(str(path))
        truth = truth_transform(study)
        return max(
            np.linalg.norm(
                np.subtract(
                    tx.TransformPoint([float(v) for v in s["mri_mm"]]),
                    truth.TransformPoint([float(v) for v in s["mri_mm"]]),
                )
            )
            for s in study.truth["sources"]
        )

    # default: decided by the prior, both poses printed
    out = tmp_path / "t.tfm"
    assert cli.main([*base, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "orientation prior" in text and "pose 2:" in text
    assert tre_file(out) < 0.5
    # no prior (180°): refused with one line naming --pose, the candidates on stdout
    out2 = tmp_path / "t2.tfm"
    rc = cli.main([*base, "--max-rotation-deg", "180", "-o", str(out2)])
    cap = capsys.readouterr()
    assert rc == 2 and not out2.exists()
    assert len(cap.err.strip().splitlines()) == 1 and "--pose" in cap.err
    assert "pose 1:" in cap.out and "pose 2:" in cap.out
    # the user chooses: one of the two offered poses is right, the other 180° off
    tres = []
    for n in (1, 2):
        rc = cli.main([*base, "--max-rotation-deg", "180", "--pose", str(n), "-o", str(out2)])
        assert (
            rc == 0
            and out2.is_file()
            and f"pose chosen by the user (candidate {n} of 2" in (capsys.readouterr().out)
        )
        tres.append(tre_file(out2))
        out2.unlink()
    assert min(tres) < 0.5 < 20 < max(tres)
    # a pose that is not offered
    rc = cli.main([*base, "--pose", "5", "-o", str(tmp_path / "t3.tfm")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "pose 5" in err


def test_session_records_the_pose_choice_and_refuses_a_bad_one():
    from mpi_viewer.study import session as S
    from mpi_viewer.study.pipeline import mold_kwargs

    base = {"method": "template", "template": "mouse_mold_v1"}
    mold = {"tolerance_mm": 1.5, "max_rotation_deg": 180.0, "pose": 2, "decided_by": "user"}
    sec = S.RegistrationSection.from_dict({**base, "mold": mold})
    assert sec.mold.pose == 2 and sec.to_dict()["mold"] == mold
    # replay asks the registration for the same pose, with the same prior and tolerance
    assert mold_kwargs(sec.mold) == {"tolerance_mm": 1.5, "max_rotation_deg": 180.0, "pose": 2}
    # a pose decided by the prior or the wells is decided again, not forced
    assert "pose" not in mold_kwargs({**mold, "decided_by": "prior"})
    for bad in ({"pose": 0}, {"pose": "2"}, {"decided_by": "luck"}, {"max_rotation_deg": 200.0}):
        with pytest.raises(InputError, match="mold"):
            S.RegistrationSection.from_dict({**base, "mold": bad})
    warnings = []
    S.RegistrationSection.from_dict({**base, "mold": {"posture": 1}}, warnings=warnings)
    assert warnings and "posture" in warnings[0]
