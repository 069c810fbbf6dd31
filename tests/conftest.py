"""Fixtures shared by the tests, and the order the tests run in."""

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def notes(monkeypatch):
    """Messages of the napari notifications the docks show during a test, by severity."""
    import napari.utils.notifications as notifications

    shown = {"error": [], "warning": []}
    monkeypatch.setattr(notifications, "show_error", lambda m: shown["error"].append(str(m)))
    monkeypatch.setattr(notifications, "show_warning", lambda m: shown["warning"].append(str(m)))
    monkeypatch.setattr(notifications, "show_info", lambda m: None)
    return shown


@pytest.fixture
def errors(notes):
    """Only the error notifications' messages."""
    return notes["error"]


@pytest.fixture(scope="session")
def study():
    """The default demo study (synthetic ground truth), generated once."""
    from mpi_viewer.demo.study import make_demo_study

    return make_demo_study()


@pytest.fixture(scope="session")
def copy_demo(tmp_path_factory):
    """``copy_demo(folder, **overrides)``: the demo study's files in ``folder`` as
    :func:`~mpi_viewer.demo.study.write_demo_study` (``mpi-viewer demo --write``) writes
    them, byte for byte; returns the same paths it returns.

    Each variant is written once per test session (per xdist worker) and copied from
    there (0.1 s instead of 2–3 s of generating and compressing 40 MB): a test may write
    beside its copy, never into the written original.
    """
    from mpi_viewer.demo.study import write_demo_study

    written: dict[tuple, dict[str, Path]] = {}

    def copy(folder, **overrides) -> dict[str, Path]:
        key = tuple(sorted(overrides.items()))
        if key not in written:
            written[key] = write_demo_study(
                tmp_path_factory.mktemp("written_demo") / "study", **overrides
            )
        paths = written[key]
        (origin,) = {p.parent for p in paths.values()}
        shutil.copytree(origin, folder, dirs_exist_ok=True)
        return {k: Path(folder) / p.name for k, p in paths.items()}

    return copy


# -- the small study of the safety tests (a fresh copy per test) --------------------------------


@pytest.fixture(scope="module")
def template_study(tmp_path_factory):
    from _safety_study import make_study

    return make_study(tmp_path_factory.mktemp("template") / "study")


@pytest.fixture
def st(template_study, tmp_path):
    folder = tmp_path / "study"
    shutil.copytree(template_study["mpi"].parent, folder)
    return {k: folder / v.name for k, v in template_study.items()}


# -- the order the tests run in ------------------------------------------------------------------
#: The slowest tests, slowest first (their --durations, s, on an idle 2-core machine; measured
#: 2026-11-30). They run before the rest, so that under pytest-xdist (scripts/test.sh:
#: ``-n 2 --dist loadgroup``: each test, or xdist_group, goes to whichever worker is free)
#: none starts late and keeps one worker busy after the other has run out of work.
SLOWEST_FIRST = (
    "tests/test_launch_orders.py::test_napari_plugins_menu_then_data",  # 84
    "tests/test_launch_orders.py::test_mpi_viewer_demo",  # 30
    "tests/test_launch_orders.py::test_mpi_viewer_then_file_open",  # 30
    "tests/test_readme.py::",  # 25 (xdist_group "readme": the worked example runs once)
    "tests/test_roi_unseeded.py::test_lone_sources_are_not_flagged_over_noise_realisations[langevin",
    "tests/test_coverage.py::",  # 45 (xdist_group "coverage": realisations shared)
    "tests/test_mold_variants.py::test_twenty_random_variants",  # 23
    "tests/test_dock_controller.py::test_calibration_follows_the_study",
    "tests/test_session_docks.py::test_gui_analysis_saved_reopened_and_replayed",
    "tests/test_session_v1.py::test_every_v1_session_replays_with_exit_0",
    "tests/test_replay.py::test_batch_replays_in_parallel_with_progress",
    "tests/test_legible.py::test_the_demo_study_reads_on_screen",
    "tests/test_remove_mpi.py::test_removing_the_mpi_keeps_the_window",
    "tests/test_session_gui.py::test_recovery_after_a_killed_process",
    "tests/test_session_fuzz.py::test_mutated_sessions_replay_without_crashing",
    "tests/test_session_gui.py::test_save_and_reopen_in_a_fresh_viewer",
    "tests/test_warm_up.py::test_settle_freezes_start_up_objects_for_the_collector",
    "tests/test_roi_dock.py::test_click_makes_roi_bad_click_keeps_table",
    "tests/test_gui_workers.py::test_session_save_and_open_return_at_once_and_open_cancels",
    "tests/test_session_manual.py::test_painted_roi_saved_replayed_and_reopened",
    "tests/test_replay.py::test_tampered_result_exits_1_listing_the_difference",
    "tests/test_mold_poses_gui.py::test_fiducial_dock_mold_mode_saves_the_users_pose",
    "tests/test_roi_unseeded.py::test_lone_sources_are_not_flagged_over_noise_realisations[gaussian",
    "tests/test_launch_orders.py::test_replacing_the_mpi_asks_before_discarding_rois",
)


def pytest_collection_modifyitems(config, items):
    """The tests of :data:`SLOWEST_FIRST` first, in its order; the others as collected."""

    def rank(item):
        nodeid = item.nodeid.split("@")[0]  # loadgroup appends "@group"
        return next((i for i, p in enumerate(SLOWEST_FIRST) if nodeid.startswith(p)), None)

    order = {id(item): k for k, item in enumerate(items)}
    items.sort(
        key=lambda it: (
            (r, order[id(it)])
            if (r := rank(it)) is not None
            else (len(SLOWEST_FIRST), order[id(it)])
        )
    )


@pytest.fixture(autouse=True)
def _collector_policy_ends_with_its_test():
    """A test that starts the window as ``mpi-viewer`` does (``prepare(settle=True)``)
    turns on the freezing collector policy of ``plugins/_warm_up.py``; it ends with the
    test, so later tests' windows are collected as usual (not frozen and kept)."""
    yield
    import sys

    warm_up = sys.modules.get("mpi_viewer.plugins._warm_up")
    if warm_up is not None and warm_up._POLICY["on"]:
        warm_up.stop_freezing()
