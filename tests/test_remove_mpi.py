"""Removing the MPI layer while phantoms and an ROI exist (issue 12 reported segfaults in
glDrawArrays under Xvfb): the window keeps drawing in 3-D and 2-D, and what the user made
(the phantoms, the ROIs) stays."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui


def test_removing_the_mpi_keeps_the_window_and_the_users_layers():
    """Removed in 3-D (as reported), then drawn in 2-D too."""
    script = Path(__file__).parent / "scripts" / "remove_mpi.py"
    env = dict(os.environ, QT_API=os.environ.get("QT_API", "pyqt6"))
    p = subprocess.run(
        [sys.executable, str(script), "3"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert p.returncode == 0, p.stderr[-2000:]  # a segfault is -11
    [line] = [ln for ln in p.stdout.splitlines() if ln.startswith("layers:")]
    names = line.split(":", 1)[1].split("|")
    assert "phantoms" in names and "MPI ROIs" in names
    assert not any("MPI (synthetic demo)" == n for n in names)
