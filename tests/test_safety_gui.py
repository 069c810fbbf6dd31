"""Issue 14 in napari: the Session dock never replaces a file beside the session that it
did not write, and a file that cannot be read becomes a notification."""

from __future__ import annotations

import pytest
from _safety_study import SEED, make_study, run_main

from mpi_viewer.study import session as S

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def _recovery_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(S.RECOVERY_ENV, str(tmp_path / "recovery"))


def test_saving_x_json_keeps_someone_elses_x_tfm(make_napari_viewer, tmp_path, capfd):
    from mpi_viewer.plugins._session_dock import SessionDock

    from mpi_viewer.study import pipeline as P

    st = make_study(tmp_path / "study")
    folder = st["mpi"].parent
    rc, _, err = run_main(
        ["quantify", st["mpi"], SEED, "-o", folder / "r.csv", "--save-session", folder / "s.json"],
        capfd,
    )
    assert rc == 0, err
    s = S.load_session(folder / "s.json")
    s.inputs.append(S.input_file(st["mri"], folder / "s.json", role="mri", modality="MRI"))
    s.registration = S.RegistrationSection(
        fixed="mri",
        moving="mpi",
        method="transform",
        model="rigid",
        matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        translation=[0.5, 0.0, 0.0],
    )
    P.compute_and_save(s, folder / "s.json")

    theirs = folder / "X.tfm"
    theirs.write_bytes(b"#Insight Transform File V1.0\n# a mold transform the user keeps here\n")
    viewer = make_napari_viewer()
    dock = SessionDock(viewer, autosave_ms=0, ask=lambda q: True)
    assert dock.open(folder / "s.json")
    out = dock.save(folder / "X.json")
    assert out is not None
    assert theirs.read_bytes().endswith(b"keeps here\n")
    saved = S.load_session(out)
    # the saved session names a transform file that is not the user's X.tfm (a new X_2.tfm,
    # or the opened session's own s.tfm, which holds this very transform)
    assert saved.registration.transform_file in ("X_2.tfm", "s.tfm")
    from mpi_viewer.geometry.transform import transform_to_matrix
    from mpi_viewer.io.transform_files import read_transform

    _, t = transform_to_matrix(read_transform(folder / saved.registration.transform_file))
    assert t == pytest.approx([0.5, 0.0, 0.0])
    assert saved.registration.translation == pytest.approx([0.5, 0.0, 0.0])
    assert run_main(["replay", out], capfd)[0] == 0


def test_napari_open_of_bad_files_notifies_and_keeps_running(make_napari_viewer, tmp_path, errors):
    import os

    st = make_study(tmp_path / "study")
    folder = st["mpi"].parent
    os.mkfifo(folder / "fifo.nii")
    (folder / "mpi.json").write_text('{"acquisition": [1, 2]}', encoding="utf-8")
    viewer = make_napari_viewer()
    for p in (folder / "fifo.nii", st["mpi"]):
        viewer.open(str(p), plugin="mpi-viewer")
    assert len(errors) == 2 and all("\n" not in e for e in errors), errors
    assert "pipe" in errors[0] and "acquisition" in errors[1]
    assert len(viewer.layers) == 0
