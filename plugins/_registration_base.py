"""Constants and small helpers shared by the registration dock's modules."""

from __future__ import annotations

import re

from qtpy.QtGui import QColor

MODELS = ("rigid", "similarity", "affine")
#: The pairs table's headers (the points' units on a second line: narrower columns)
#: Columns of the pairs table; each pair's positions (fixed and moving x, y, z) are its row's
#: details (tooltip, and the line under the table for the selected pair): two positions as
#: columns made the table scroll sideways at the dock's 420 px.
COLUMNS = ("use", "name", "FRE (mm)")
USE, NAME, FRE = 0, 1, 2  # column indices; rows are numbered by pair in the vertical header
GREEN, AMBER, RED = QColor(60, 160, 60), QColor(210, 150, 20), QColor(200, 50, 50)
#: CHANGED events closer than this (s) on the same points are one drag → one undo step.
DRAG_GAP_S = 0.5


def _reg():
    from mpi_viewer import registration

    return registration


def _warning_key(text: str) -> str:
    return re.sub(r"[-+]?\d+(\.\d+)?", "#", text)


def _fmt_xyz(p) -> str:
    return ", ".join(f"{v:.2f}" for v in p)
