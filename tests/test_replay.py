"""Replay: a demo session built through the real pipeline recomputes to the same numbers,
detects changed inputs and tampered results, runs in batch and on a Dask cluster."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from mpi_viewer.cli import main
from mpi_viewer.demo.study import make_demo_session
from mpi_viewer.study import pipeline as P
from mpi_viewer.study import session as S
from mpi_viewer.study.batch import replay_many


def shared_demo_session(tmp_path_factory) -> Path:
    """The demo session, built once per test run (shared by the session test files)."""
    folder = tmp_path_factory.getbasetemp() / "shared_demo_session"
    path = folder / "demo_session.json"
    if not path.exists():
        make_demo_session(folder)
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = shared_demo_session(tmp_path_factory)
    truth = json.loads((path.parent / "truth.json").read_text(encoding="utf-8"))
    return path, truth


def _copy_study(path: Path, dest: Path) -> Path:
    shutil.copytree(path.parent, dest)
    return dest / path.name


def _snapshot(folder: Path) -> dict:
    return {
        p.name: (p.stat().st_mtime_ns, S.sha256_file(p)) for p in folder.iterdir() if p.is_file()
    }


def test_demo_session_holds_the_whole_analysis_and_true_numbers(demo):
    path, truth = demo
    s = S.load_session(path)
    assert s.warnings == []
    assert {i.role for i in s.inputs} == {"mpi", "mri", "phantoms"}
    assert (
        s.registration.method == "template" and s.registration.transform_file == "demo_session.tfm"
    )
    assert [r["name"] for r in s.results] == ["isolated", "strong", "weak", "faint"]
    # the stored transform is the demo's true MRI → MPI transform (within registration accuracy)
    import numpy as np

    t = truth["transform_fixed_to_moving"]
    pts = np.array([src["mri_mm"] for src in truth["sources"]])
    est = pts @ np.array(s.registration.matrix).T + s.registration.translation
    true = pts @ np.array(t["matrix"]).T + t["translation"]
    assert np.linalg.norm(est - true, axis=1).max() < 0.5
    # cells of the isolated source within 5 % of the truth (the cells issue's bound)
    row = s.results[0]
    iso = next(src for src in truth["sources"] if src["name"] == "isolated")
    assert row["cells"] == pytest.approx(iso["cells"], rel=0.05)
    assert row["iron_ug"] == pytest.approx(iso["iron_ug"], rel=0.05)


def test_replay_matches_and_is_deterministic(demo, tmp_path, capsys):
    path, _ = demo
    before = _snapshot(path.parent)
    out = tmp_path / "replayed.csv"
    assert main(["replay", str(path), "-o", str(out)]) == 0
    assert "every number matches" in capsys.readouterr().out
    again = P.replay_path(path)  # the third computation (save, CLI, this)
    assert again.status == 0
    stored = S.load_session(path).results
    assert len(again.rows) == len(stored)
    for old, new in zip(stored, again.rows, strict=True):  # bit-identical, not merely within 1e-9
        assert old.keys() == new.keys()
        assert all(P.same_value(old[k], new[k], rtol=0.0) for k in old), (old, new)
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["isolated", "strong", "weak", "faint"]
    assert _snapshot(path.parent) == before  # replay writes no input (nor anything else there)


def test_changed_input_exits_2_naming_the_file(demo, tmp_path, capsys):
    path = _copy_study(demo[0], tmp_path / "study")
    with open(path.parent / "phantoms.csv", "a", encoding="utf-8") as f:
        f.write("\n")  # same phantoms, different bytes
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "phantoms.csv" in err[0] and "changed" in err[0]
    assert main(["replay", "--allow-changed-inputs", str(path)]) == 0
    assert "phantoms.csv" in capsys.readouterr().err  # still said, as a note


def test_tampered_result_exits_1_listing_the_difference(demo, tmp_path, capsys):
    path = _copy_study(demo[0], tmp_path / "study")
    d = json.loads(path.read_text(encoding="utf-8"))
    d["results"][1]["total_signal_au_mm3"] *= 1 + 1e-6
    d["registration"]["transform"]["translation"][0] += 0.01  # schema 2: one transform
    path.write_text(json.dumps(d), encoding="utf-8")
    assert main(["replay", str(path)]) == 1
    out = capsys.readouterr().out
    assert "row strong: total_signal_au_mm3" in out and "transform.translation[0]" in out
    # a difference at the tolerance is still a match
    d["results"][1]["total_signal_au_mm3"] /= 1 + 1e-6
    d["results"][1]["total_signal_au_mm3"] *= 1 + 5e-10
    d["registration"]["transform"]["translation"][0] -= 0.01
    path.write_text(json.dumps(d), encoding="utf-8")
    assert main(["replay", str(path)]) == 0


def test_batch_replays_in_parallel_with_progress(demo, tmp_path, capsys):
    path = _copy_study(demo[0], tmp_path / "study")
    copies = [path]
    c = path.with_name("copy.json")
    shutil.copy(path, c)
    copies.append(c)
    bad = path.with_name("bad.json")
    bad.write_text("{}", encoding="utf-8")
    seen = []
    outcomes = replay_many(
        copies + [bad], jobs=2, progress=lambda done, total, o: seen.append((done, total))
    )
    assert [o.status for o in outcomes] == [0, 0, 2], [
        (o.status, o.message, o.differences[:3]) for o in outcomes
    ]
    assert sorted(seen) == [(1, 3), (2, 3), (3, 3)]
    assert outcomes[1].rows == outcomes[0].rows
    # the CLI: a progress bar on stderr, worst status as exit code
    assert main(["replay", "--jobs", "1", *map(str, copies)]) == 0
    captured = capsys.readouterr()
    assert "2/2" in captured.err and "2 sessions: 2 match" in captured.out


def test_replay_on_a_dask_cluster(demo):
    distributed = pytest.importorskip(
        "dask.distributed", reason="dask.distributed is not installed"
    )
    path, _ = demo
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        outcomes = replay_many([path, path], scheduler=cluster.scheduler_address)
    assert [o.status for o in outcomes] == [0, 0]
    assert outcomes[0].rows == P.replay_path(path).rows


def test_unreachable_scheduler_is_bad_input(demo, capsys):
    pytest.importorskip("dask.distributed", reason="dask.distributed is not installed")
    assert main(["replay", "--scheduler", "tcp://127.0.0.1:9", str(demo[0])]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_report_from_a_session(demo, tmp_path, capsys):
    path, truth = demo
    out = tmp_path / "report"
    assert main(["report", str(path), "-o", str(out)]) == 0
    files = {p.name for p in out.rglob("*")}
    assert (
        "index.html" in files
        and any(f.endswith(".csv") for f in files)
        and any(f.endswith(".tfm") for f in files)
    )
    csv_path = next(p for p in out.rglob("*.csv"))
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    stored = S.load_session(path).results
    assert [r["name"] for r in rows] == [r["name"] for r in stored]
    iso = next(src for src in truth["sources"] if src["name"] == "isolated")
    assert float(rows[0]["cells"]) == pytest.approx(iso["cells"], rel=0.05)
    capsys.readouterr()
    # a folder that is not empty is refused, nothing overwritten
    before = _snapshot(out)
    assert main(["report", str(path), "-o", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert _snapshot(out) == before


def test_quantify_save_session_replays_to_the_same_numbers(demo, tmp_path, capsys):
    path, truth = demo
    folder = _copy_study(path, tmp_path / "study").parent
    iso = next(src for src in truth["sources"] if src["name"] == "isolated")
    seed = ",".join(f"{v:.1f}" for v in iso["mpi_mm"])
    out_csv, session = tmp_path / "q.csv", folder / "q_session.json"
    assert (
        main(
            [
                "quantify",
                str(folder / "mpi.nii.gz"),
                f"--seed={seed}",
                "--phantoms",
                str(folder / "phantoms.csv"),
                "--iron-per-cell",
                "15",
                "--iron-per-cell-sd",
                "1.5",
                "--confidence",
                "0.9",
                "-o",
                str(out_csv),
                "--save-session",
                str(session),
            ]
        )
        == 0
    )
    assert "differs" not in capsys.readouterr().err
    s = S.load_session(session)
    assert s.calibration.confidence == 0.9 and s.cells.mean_pg == 15.0
    with open(out_csv, newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    # the CSV holds 6 significant digits: equal to within half a unit of the 6th
    assert float(row["cells"]) == pytest.approx(s.results[0]["cells"], rel=5e-6)
    assert float(row["cells"]) == pytest.approx(iso["cells"], rel=0.05)
    assert main(["replay", str(session)]) == 0
    # a geometry given on the command line cannot be replayed from files: refused up front
    assert (
        main(
            [
                "quantify",
                str(folder / "mpi.nii.gz"),
                f"--seed={seed}",
                "--spacing-mm",
                "0.5,0.5,0.5",
                "-o",
                str(tmp_path / "x.csv"),
                "--save-session",
                str(tmp_path / "x.json"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "x.csv").exists()
