"""The README's worked example, run verbatim as a new user types it.

Every ``bash`` block of the "A worked example" section is split into commands (comments
dropped, ``\\`` continuations joined) and each command runs in ``bash`` in a temporary
folder; each must exit 0 without a Python warning on stderr. The files the example
promises must exist afterwards, its numbers must match the demo's truth, and the output
the README shows (the demo's seeds, quantify's table and warnings) must be what the
commands print: the README cannot drift from the program.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

#: One worker runs the worked example once for every test here (scripts/test.sh: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("readme")

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    nxt = text.find("\n## ", start + 3)
    return text[start : nxt if nxt >= 0 else len(text)]


def _blocks(section: str, lang: str) -> list[str]:
    """The fenced code blocks of one language (``""``: blocks without a language)."""
    out, cur, cur_lang = [], None, None
    for line in section.splitlines():
        if line.startswith("```"):
            if cur is None:
                cur, cur_lang = [], line[3:].strip()
            else:
                if cur_lang == lang:
                    out.append("\n".join(cur) + "\n")
                cur = None
        elif cur is not None:
            cur.append(line)
    return out


def _commands(block: str) -> list[str]:
    out, cur = [], ""
    for raw in block.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line and not cur:
            continue
        if line.endswith("\\"):
            cur += line[:-1].strip() + " "
            continue
        cur += line.strip()
        if cur:
            out.append(cur)
        cur = ""
    return out


def _norm(line: str) -> str:
    return " ".join(line.split())


@pytest.fixture(scope="module")
def worked_example(tmp_path_factory):
    """Run the worked example once; returns (folder, [(command, CompletedProcess)], section)."""
    section = _section(README.read_text(encoding="utf-8"), "A worked example")
    commands = [c for b in _blocks(section, "bash") for c in _commands(b)]
    assert commands and all(c.startswith("mpi-viewer ") for c in commands), commands
    folder = tmp_path_factory.mktemp("readme")
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    env["PYTHONWARNINGS"] = "default"  # a warning from our code must show, and fail below
    runs = []
    for cmd in commands:
        p = subprocess.run(
            ["bash", "-c", cmd],
            cwd=folder,
            env=env,
            capture_output=True,
            encoding="utf-8",  # what the program prints (µg, en dashes), whatever the locale
            timeout=300,
        )
        runs.append((cmd, p))
        assert p.returncode == 0, f"README command failed ({p.returncode}): {cmd}\n{p.stderr}"
    return folder, runs, section


def test_readme_worked_example_runs_and_keeps_its_promises(worked_example):
    folder, runs, section = worked_example
    for cmd, p in runs:  # no Python warning (FutureWarning, DeprecationWarning…) reaches the user
        assert not re.search(r"\w+Warning\b", p.stderr), f"{cmd}\n{p.stderr}"
    # every file the example names exists: outputs of the commands and the demo's listing
    named = set()
    for cmd, _ in runs:
        named |= set(re.findall(r"study/[\w./-]*[\w]", cmd))
    listing = re.search(r"mpi-viewer demo --write study/\s+#([^\n]*)", section).group(1)
    named |= {f"study/{n}" for n in re.findall(r"[\w.]+\.\w+", listing)}
    named |= set(re.findall(r"study/report/[\w.]+", section))
    assert {"study/session.json", "study/results.csv", "study/report/index.html"} <= named
    for rel in sorted(named):
        assert (folder / rel).exists(), f"the README promises {rel}"
    report = folder / "study" / "report"
    assert (report / "transform_fixed_to_moving.tfm").is_file()  # the registration reached it
    html = (report / "index.html").read_text(encoding="utf-8")
    assert "Registration:" in html and "No registration" not in html
    session = json.loads((folder / "study" / "session.json").read_text(encoding="utf-8"))
    assert session["registration"]["method"] == "transform"
    assert session["registration"]["transform_file"] == "mri_to_mpi.tfm"
    assert len(session["registration"]["transform_sha256"]) == 64
    assert {i["role"] for i in session["inputs"]} >= {"mpi", "mri", "phantoms"}


def test_readme_numbers_match_the_demo_truth(worked_example):
    folder, runs, section = worked_example
    truth = json.loads((folder / "study" / "truth.json").read_text(encoding="utf-8"))
    with open(folder / "study" / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    seeds = re.findall(r"--seed=([-\d.]+),([-\d.]+),([-\d.]+)", runs[2][0])
    assert len(rows) == len(seeds) == 3
    for row, seed in zip(rows, seeds, strict=True):
        # the README's seed lies on a demo source (within 0.2 mm) and measures its iron
        src = min(
            truth["sources"],
            key=lambda s: sum((float(a) - b) ** 2 for a, b in zip(seed, s["mpi_mm"], strict=True)),
        )
        d = sum((float(a) - b) ** 2 for a, b in zip(seed, src["mpi_mm"], strict=True)) ** 0.5
        assert d < 0.2, (seed, src["name"])
        iron = float(row["iron_ug"])
        assert abs(iron - src["iron_ug"]) < 0.02 * src["iron_ug"], (src["name"], iron)
        assert float(row["iron_ci_low_ug"]) <= src["iron_ug"] * 1.01
        assert abs(float(row["cells"]) - src["cells"]) < 0.02 * src["cells"]
        # one positional number format in the CSV (no 1.20316e+06)
        assert not any("e+" in v or "e-" in v for v in row.values() if v), row


def test_readme_shows_what_the_commands_print(worked_example):
    folder, runs, section = worked_example
    shown = [b for b in _blocks(section, "") if b.strip()]
    demo_out = runs[0][1].stdout
    quantify = runs[2][1]
    seeds_block = next(b for b in shown if "labelled-cell sources" in b)
    for line in seeds_block.strip().splitlines():
        assert _norm(line) in {_norm(x) for x in demo_out.splitlines()}, line
    table_block = next(b for b in shown if b.lstrip().startswith("ROI "))
    printed = {_norm(x) for x in (quantify.stdout + quantify.stderr).splitlines()}
    for line in table_block.strip().splitlines():
        assert _norm(line) in printed, (
            f"README shows {line!r}; quantify printed:\n{quantify.stdout}{quantify.stderr}"
        )
    # the unseeded-source example is what quantify says when only the strong source is seeded
    unseeded = next(b for b in shown if "unseeded source" in b).strip()
    strong = re.findall(r"--seed=\S+", runs[2][0])[1]
    p = _run(folder, "quantify", "study/mpi.nii.gz", strong, "--method", "nsd", "-o", "nsd.csv")
    assert p.returncode == 0, p.stderr
    assert _norm(unseeded) in {_norm(x) for x in p.stderr.splitlines()}, p.stderr
    # ... and the seed it suggests gives the weak source its own ROI
    suggested = re.search(r"\((--seed=[^)]+)\)", unseeded).group(1)
    p = _run(folder, "quantify", "study/mpi.nii.gz", strong, suggested, "--method", "nsd", "-o", "nsd2.csv")  # fmt: skip
    assert "unseeded" not in p.stderr
    # the seed error the README quotes
    err = next(
        m.group(1) for m in [re.search(r"`(no hot spot[^`]*)`", section.replace("\n", " "))] if m
    )
    p = _run(folder, "quantify", "study/mpi.nii.gz", "--seed=0,0,0", "-o", "x.csv")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert _norm(err) in _norm(p.stderr), p.stderr
    assert not (folder / "x.csv").exists()


# -- the command line around the worked example (same folder: one demo for all) ---------------
def _run(folder, *args, env=None):
    """``mpi-viewer ARGS`` in ``folder``: in this process (fast) unless an environment is given."""
    if env is not None:
        return subprocess.run(
            [sys.executable, "-m", "mpi_viewer.cli", *args],
            cwd=folder,
            capture_output=True,
            encoding="utf-8",
            env=env,
        )
    import contextlib
    import io

    from mpi_viewer.cli import main

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(folder)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(args))
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def _one_line(p) -> str:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, (p.returncode, p.stderr)
    return lines[0]


def test_mistyped_command_is_suggested_with_or_without_a_display(worked_example):
    folder, runs, _ = worked_example
    from mpi_viewer.cli import main

    assert main(["quantfy", "study/mpi.nii.gz", "--seed=1,2,3"]) == 2
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    for e in (dict(os.environ), env):  # under this suite's display, and without one
        line = _one_line(_run(folder, "quantfy", "study/mpi.nii.gz", "-o", "q.csv", env=e))
        assert "unknown command 'quantfy' (did you mean quantify?)" in line
    assert "no such file" in _one_line(_run(folder, "nothere.nii.gz", env=env))


def test_strict_mismatch_and_register_output_rules(worked_example):
    folder, runs, _ = worked_example
    register_out = runs[1][1].stdout
    assert "rigid-body formula of Fitzpatrick, West & Maurer 1998" in register_out
    quantify_cmd = runs[2][0].split()[1:]
    strict = [a if a != "study/results.csv" else "strict.csv" for a in quantify_cmd]
    strict = [a for a in strict if a not in ("--save-session", "study/session.json")]
    p = _run(folder, *strict, "--strict")
    n_warn = sum(ln.startswith("mpi-viewer: warning:") for ln in p.stderr.splitlines())
    assert n_warn >= 1
    assert p.returncode == 2 and f"--strict: {n_warn} warning(s) above; nothing written" in p.stderr
    assert "roi_1" in p.stdout  # the table and the warning are still shown
    assert not (folder / "strict.csv").exists()
    # every command creates a missing output folder (register as quantify)
    p = _run(
        folder, "register", "study/mri.nii.gz", "study/mpi.nii.gz",
        "--fixed-points", "study/fiducials_mri.csv", "--moving-points", "study/fiducials_mpi.csv",
        "--model", "affine", "-o", "new/sub/affine.tfm",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert (folder / "new" / "sub" / "affine.tfm").is_file()
    assert "affine least-squares prediction error" in p.stdout
    # an output that is an input is refused before any work
    line = _one_line(_run(folder, "quantify", "study/mpi.nii.gz", "--seed=1,1,1", "-o", "study/phantoms.csv", "--phantoms", "study/phantoms.csv"))  # fmt: skip
    assert "would overwrite an input" in line


def test_report_refuses_a_full_folder_before_any_work_and_overwrites_when_told(worked_example):
    import shutil

    folder, runs, _ = worked_example
    # a session whose inputs are gone: the folder check comes first, so that is what is said
    lone = folder / "lone"
    lone.mkdir()
    shutil.copy(folder / "study" / "session.json", lone / "session.json")
    line = _one_line(_run(folder, "report", "lone/session.json", "-o", "study/report"))
    assert "not empty" in line and "--overwrite" in line
    before = (folder / "study" / "report" / "index.html").stat().st_mtime_ns
    p = _run(folder, "report", "study/session.json", "-o", "study/report", "--overwrite")
    assert p.returncode == 0, p.stderr
    assert (folder / "study" / "report" / "index.html").stat().st_mtime_ns != before


def test_without_a_registration_the_report_says_so(worked_example):
    folder, runs, _ = worked_example
    seeds = re.findall(r"--seed=\S+", runs[2][0])
    p = _run(folder, "quantify", "study/mpi.nii.gz", *seeds, "-o", "plain/r.csv", "--save-session", "plain/s.json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    p = _run(folder, "report", "plain/s.json", "-o", "plain/report")
    assert p.returncode == 0, p.stderr
    assert "no registration" in p.stderr
    html = (folder / "plain" / "report" / "index.html").read_text(encoding="utf-8")
    assert "No registration and no anatomy" in html
    assert not (folder / "plain" / "report" / "transform_fixed_to_moving.tfm").exists()
    from mpi_viewer.report.study_report import _frame_note, _view_title

    assert _frame_note(None).startswith("MPI only") and "MPI only" in _view_title(None, False)


def test_replay_checks_the_registration_files(worked_example):
    folder, runs, _ = worked_example
    import shutil

    copy = folder / "copy"
    copy.mkdir()
    for name in ("session.json", "mpi.nii.gz", "mpi.json", "mri.nii.gz", "mri.json", "phantoms.csv", "mri_to_mpi.tfm"):  # fmt: skip
        if (folder / "study" / name).exists():
            shutil.copy(folder / "study" / name, copy / name)
    assert _run(copy, "replay", "session.json").returncode == 0
    with open(copy / "mri_to_mpi.tfm", "a", encoding="utf-8") as f:
        f.write("\n")
    line = _one_line(_run(copy, "replay", "session.json"))
    assert "mri_to_mpi.tfm" in line and "transform has changed" in line
    (copy / "mri.nii.gz").unlink()
    assert "mri.nii.gz" in _one_line(_run(copy, "replay", "session.json", "--allow-changed-inputs"))


def test_a_session_saved_before_a_new_check_still_replays(worked_example):
    """A flag a newer version adds (here the unseeded source) is a note of the replay, not a
    difference: replay compares numbers."""
    folder, runs, _ = worked_example
    strong = re.findall(r"--seed=\S+", runs[2][0])[1]
    p = _run(folder, "quantify", "study/mpi.nii.gz", strong, "--method", "nsd", "-o", "old/r.csv", "--save-session", "study/old_session.json")  # fmt: skip
    assert p.returncode == 0 and "unseeded_peak" in p.stdout
    path = folder / "study" / "old_session.json"
    d = json.loads(path.read_text(encoding="utf-8"))
    for row in d["results"]:  # as an older version saved it, without the new flag
        row["flags"], row["warnings"] = "", ""
    path.write_text(json.dumps(d), encoding="utf-8")
    p = _run(folder, "replay", "study/old_session.json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "every number matches" in p.stdout
    assert "flags changed (text, not a number)" in p.stderr


def test_a_bad_phantom_row_is_named_as_a_phantom_row(worked_example):
    folder, runs, _ = worked_example
    rows = (folder / "study" / "phantoms.csv").read_text(encoding="utf-8").splitlines()
    (folder / "bad_phantoms.csv").write_text(
        "\n".join([*rows[:3], "empty_well,0,0,0,3"]) + "\n", encoding="utf-8"
    )
    seeds = re.findall(r"--seed=\S+", runs[2][0])
    line = _one_line(_run(folder, "quantify", "study/mpi.nii.gz", *seeds, "--phantoms", "bad_phantoms.csv", "-o", "bad.csv"))  # fmt: skip
    assert "bad_phantoms.csv: phantom row 3 (empty_well): no hot spot above the noise" in line
    assert "seed (0, 0, 0)" not in line and not (folder / "bad.csv").exists()
