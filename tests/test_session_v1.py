"""Sessions saved by the release before schema 2 (schema_version 1) open, migrate and
replay with exit 0 against the regenerated demo study (tests/data/sessions_v1/README.md)."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from mpi_viewer.cli import main

DATA = Path(__file__).parent / "data" / "sessions_v1"
SESSIONS = sorted(p.name for p in DATA.glob("*_session.json"))


@pytest.fixture(scope="module")
def v1_folder(tmp_path_factory, copy_demo) -> Path:

    folder = tmp_path_factory.mktemp("v1")
    copy_demo(folder)
    for line in (DATA / "demo_inputs.sha256").read_text(encoding="utf-8").splitlines():
        digest, name = line.split()
        actual = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert actual == digest, f"demo input {name} is no longer byte-identical"
    for p in DATA.iterdir():
        if p.name not in ("README.md", "demo_inputs.sha256"):
            shutil.copy(p, folder / p.name)
    return folder


def test_fixtures_are_version_1():
    assert len(SESSIONS) == 6
    for name in SESSIONS:
        assert json.loads((DATA / name).read_text(encoding="utf-8"))["schema_version"] == 1


def test_every_v1_session_replays_with_exit_0(v1_folder, capsys):
    before = {n: (v1_folder / n).read_bytes() for n in SESSIONS}
    assert main(["replay", *(str(v1_folder / n) for n in SESSIONS)]) == 0
    out = capsys.readouterr().out
    assert out.count("every number matches") == len(SESSIONS)
    assert {n: (v1_folder / n).read_bytes() for n in SESSIONS} == before  # inputs never written
