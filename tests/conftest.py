"""Fixtures shared by the widget tests."""

import shutil

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
