"""Issue 14, data loss: no command writes over one of its inputs, or over an existing file
without ``--overwrite``; unwritable outputs are one line; nothing is written on refusal."""

from __future__ import annotations

import pytest
from _safety_study import (
    SEED,
    one_line_error,
    refused,
    run_main,
    saved_session,
    snapshot,
)


def _q(st, *extra):
    return ["quantify", st["mpi"], SEED, "--phantoms", st["phantoms"], *extra]


def _reg(st, *extra):
    return [
        "register",
        st["mri"],
        st["mpi"],
        "--fixed-points",
        st["points"],
        "--moving-points",
        st["points"],
        *extra,
    ]


def _cal(st, *extra):
    return ["calibrate", st["mpi"], "--phantoms", st["phantoms"], *extra]


# Every command × every input it reads (or a file read with it): refused, even with --overwrite.
INPUT_TARGETS = [
    ("quantify -o phantoms", lambda st: _q(st, "-o", st["phantoms"])),
    ("quantify -o sidecar", lambda st: _q(st, "-o", st["sidecar"])),
    ("quantify -o image", lambda st: _q(st, "-o", st["mpi"])),
    (
        "quantify --masks image",
        lambda st: _q(st, "-o", st["mpi"].parent / "r.csv", "--masks", st["mpi"]),
    ),
    (
        "quantify --masks sidecar",
        lambda st: _q(st, "-o", st["mpi"].parent / "r.csv", "--masks", st["sidecar"]),
    ),
    (
        "quantify --save-session phantoms",
        lambda st: _q(st, "-o", st["mpi"].parent / "r.csv", "--save-session", st["phantoms"]),
    ),
    (
        "quantify --save-session image",
        lambda st: _q(st, "-o", st["mpi"].parent / "r.csv", "--save-session", st["mpi"]),
    ),
    ("quantify mhd -o raw", lambda st: ["quantify", st["mhd"], SEED, "-o", st["raw"]]),
    ("quantify mhd -o sidecar", lambda st: ["quantify", st["mhd"], SEED, "-o", st["sidecar"]]),
    (
        "quantify -o same as --masks",
        lambda st: _q(
            st, "-o", st["mpi"].parent / "x.nii.gz", "--masks", st["mpi"].parent / "x.nii.gz"
        ),
    ),
    ("calibrate -o image", lambda st: _cal(st, "-o", st["mpi"])),
    ("calibrate -o phantoms", lambda st: _cal(st, "-o", st["phantoms"])),
    ("calibrate -o sidecar", lambda st: _cal(st, "-o", st["sidecar"])),
    ("register -o moving", lambda st: _reg(st, "-o", st["mpi"])),
    ("register -o fixed", lambda st: _reg(st, "-o", st["mri"])),
    ("register -o points", lambda st: _reg(st, "-o", st["points"])),
    ("register -o moving sidecar", lambda st: _reg(st, "-o", st["sidecar"])),
]


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "--overwrite"])
@pytest.mark.parametrize("case", INPUT_TARGETS, ids=[c[0] for c in INPUT_TARGETS])
def test_no_command_writes_over_an_input(st, capfd, case, overwrite):
    argv = case[1](st) + (["--overwrite"] if overwrite else [])
    refused(
        argv,
        st["mpi"].parent,
        capfd,
        words=("overwrite" if "same" not in case[0] else "two outputs"),
    )


def test_replay_and_report_never_write_over_the_session_or_its_inputs(st, capfd):
    s = saved_session(st, capfd, image="mhd")
    folder = st["mpi"].parent
    for target in (s, st["mhd"], st["raw"], st["sidecar"], st["phantoms"]):
        for extra in ([], ["--overwrite"]):
            refused(["replay", s, "-o", target, *extra], folder, capfd, words="overwrite")
    # the report folder is replaced whole: it may hold none of the session's files
    refused(["report", s, "-o", folder, "--overwrite"], folder, capfd, words="holds an input")


EXISTING = [
    ("quantify", ".csv", lambda st, out: _q(st, "-o", out)),
    (
        "quantify --masks",
        ".nii.gz",
        lambda st, out: _q(st, "-o", out.with_name("fresh.csv"), "--masks", out),
    ),
    (
        "quantify --save-session",
        ".json",
        lambda st, out: _q(st, "-o", out.with_name("fresh.csv"), "--save-session", out),
    ),
    ("calibrate", ".json", lambda st, out: _cal(st, "-o", out)),
    ("register", ".tfm", lambda st, out: _reg(st, "-o", out)),
]


@pytest.mark.parametrize("case", EXISTING, ids=[c[0] for c in EXISTING])
def test_an_existing_file_is_replaced_only_with_overwrite(st, capfd, case):
    out = st["mpi"].parent / f"someone_elses{case[1]}"
    out.write_text("precious\n", encoding="utf-8")
    refused(case[2](st, out), st["mpi"].parent, capfd, words=("exists", "--overwrite"))
    rc, _, err = run_main(case[2](st, out) + ["--overwrite"], capfd)
    assert rc == 0, err
    assert out.read_bytes() != b"precious\n"


def test_replay_report_and_demo_refuse_existing_outputs(st, capfd, tmp_path):
    s = saved_session(st, capfd)
    folder = st["mpi"].parent
    (folder / "old.csv").write_text("keep\n", encoding="utf-8")
    refused(["replay", s, "-o", folder / "old.csv"], folder, capfd, words="exists")
    rc, _, err = run_main(["replay", s, "-o", folder / "old.csv", "--overwrite"], capfd)
    assert rc == 0, err
    report = tmp_path / "report"
    report.mkdir()
    (report / "mine.txt").write_text("keep", encoding="utf-8")
    refused(["report", s, "-o", report], tmp_path, capfd, words="not empty")
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "phantoms.csv").write_text("mine\n", encoding="utf-8")
    refused(["demo", "--write", demo], tmp_path, capfd, words=("phantoms.csv", "exists"))


BAD_TARGETS = [
    ("a folder", lambda d: d, "is a folder"),
    ("under a file", lambda d: d / "phantoms.csv" / "out.csv", "is a file"),
    ("300-character name", lambda d: d / ("x" * 300 + ".csv"), "too long"),
    ("missing folder under a file", lambda d: d / "mpi.json" / "a" / "b.csv", "is a file"),
]


@pytest.mark.parametrize("case", BAD_TARGETS, ids=[c[0] for c in BAD_TARGETS])
@pytest.mark.parametrize("cmd", ["quantify", "calibrate", "register", "replay", "report"])
def test_outputs_that_cannot_be_files_are_one_line(st, capfd, case, cmd):
    folder = st["mpi"].parent
    target = case[1](folder)
    if cmd in ("replay", "report"):
        s = saved_session(st, capfd)
        if cmd == "report" and case[0] == "a folder":
            target = folder / "phantoms.csv"  # a report folder that is a file
        argv = [cmd, s, "-o", target]
    else:
        argv = {
            "quantify": _q(st, "-o", target),
            "calibrate": _cal(st, "-o", target),
            "register": _reg(st, "-o", target),
        }[cmd]
    before = snapshot(folder)
    rc, out, err = run_main(argv, capfd)
    assert rc == 2, (out, err)
    one_line_error(err)
    assert snapshot(folder) == before


def test_output_into_a_new_folder_is_still_made(st, capfd):
    out = st["mpi"].parent / "new" / "deeper" / "r.csv"
    rc, _, err = run_main(_q(st, "-o", out), capfd)
    assert rc == 0, err
    assert out.read_text(encoding="utf-8").startswith("name,")


def test_files_beside_a_session_never_replace_someone_elses(st, capfd):
    """A session X.json with a registration writes its transform beside it: an existing
    X.tfm it did not write is kept, the transform goes to X_2.tfm."""
    from mpi_viewer.io.transform_files import read_transform
    from mpi_viewer.study import pipeline as P
    from mpi_viewer.study import session as S

    folder = st["mpi"].parent
    theirs = folder / "X.tfm"
    theirs.write_text("#Insight Transform File V1.0\n# mine\n", encoding="utf-8")
    before = theirs.read_bytes()
    s = P.new_session(folder / "X.json", mpi=st["mpi"], phantoms=None, calibration_file=None)
    s.inputs.append(S.input_file(st["mri"], folder / "X.json", role="mri", modality="MRI"))
    s.registration = S.RegistrationSection(
        fixed="mri",
        moving="mpi",
        method="transform",
        model="rigid",
        matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        translation=[0.0, 0.0, 0.0],
    )
    P.compute_and_save(s, folder / "X.json")
    assert theirs.read_bytes() == before
    assert s.registration.transform_file == "X_2.tfm"
    read_transform(folder / "X_2.tfm")
    # saving again reuses its own file, not X_3.tfm
    s2 = S.load_session(folder / "X.json")
    P.compute_and_save(s2, folder / "X.json")
    assert s2.registration.transform_file == "X_2.tfm" and not (folder / "X_3.tfm").exists()
