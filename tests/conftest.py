"""Fixtures shared by the widget tests."""

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
