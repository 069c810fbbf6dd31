"""The Cells dock's table: cells per ROI with their interval, the detection-limit flag and
warnings, and a show/hide box per ROI (outline, label and density follow it).

A mixin of :class:`~mpi_viewer.plugins._cells_dock.CellsDock`.
"""

from __future__ import annotations

import numpy as np
from mpi_viewer.plugins._calibration_dock import fill_table, fmt, split_warnings
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QTableWidgetItem


class CellsTableMixin:
    """The results table of the Cells dock (needs ``table``, ``results``, ``visible``)."""

    def _fill_table(self) -> None:
        """One row per ROI in four columns that fit the dock (no sideways scrolling):
        cells with their 95 % interval in one cell (3 significant figures; the exact
        numbers in its tooltip), iron, the units in the headers."""
        rows = []
        _, own = split_warnings([r.warnings for r in self.results])
        for r, warns in zip(self.results, own, strict=True):
            rows.append(["", r.name, cells_text(r), fmt(r.iron_ug, 3), list(warns)])
        fill_table(
            self.table,
            ["show", "ROI", "cells (95 % CI)", "iron\n(µg Fe)", "warnings"],
            rows,
            warn_col=4,
            warn_beside=2,
            name_col=1,
        )
        self.table.blockSignals(True)
        for i, r in enumerate(self.results):
            item = QTableWidgetItem()
            item.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled)
            item.setCheckState(Qt.Checked if self.visible.get(r.name, True) else Qt.Unchecked)
            item.setToolTip("show this ROI's outline, label and density")
            self.table.setItem(i, 0, item)
            cell = self.table.item(i, 2)
            exact = (
                f"{_count(r.cells)} cells, 95 % interval {_count(r.cells_ci_low)} – "
                f"{_count(r.cells_ci_high)}"
            )
            if r.below_lod:
                exact = "below the detection limit: no cell number"
            tip = cell.toolTip()
            cell.setToolTip(f"<p>{exact}</p>{tip}" if tip else exact)
        self.table.blockSignals(False)

    def _on_item_changed(self, item) -> None:
        if item.column() != 0 or item.row() >= len(self.results):
            return
        self.set_visible(self.results[item.row()].name, item.checkState() == Qt.Checked)

    def set_visible(self, name: str, visible: bool) -> None:
        """Show or hide one ROI's outline, label and density."""
        self.visible[name] = bool(visible)
        row = next((i for i, r in enumerate(self.results) if r.name == name), None)
        if row is not None and self.table.item(row, 0) is not None:
            self.table.blockSignals(True)
            self.table.item(row, 0).setCheckState(Qt.Checked if visible else Qt.Unchecked)
            self.table.blockSignals(False)
        self.update_overlays()


def _sig3(v: float) -> str:
    """A count to 3 significant figures, digits grouped by thin spaces: ``12 300``."""
    if v == 0:
        return "0"
    digits = max(3 - int(np.floor(np.log10(abs(v)))) - 1, 0)
    return f"{round(v, -int(np.floor(np.log10(abs(v)))) + 2):,.{min(digits, 2)}f}".replace(
        ",", "\u2009"
    )


def cells_text(r) -> str:
    """``12 300 (10 100–14 600)``; from a million on, ``1.20 (1.01–1.50) × 10⁶``;
    ``below LOD`` when the ROI is below the detection limit."""
    if r.below_lod:
        return "below LOD"
    n, lo, hi = r.cells, r.cells_ci_low, r.cells_ci_high
    if n is None or not np.isfinite(n):
        return fmt(n)
    have_ci = all(v is not None and np.isfinite(v) for v in (lo, hi))
    if abs(n) >= 1e6:
        e = int(np.floor(np.log10(abs(n))))
        sup = str(e).translate(str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻"))
        m = lambda v: f"{v / 10**e:.2f}"  # noqa: E731
        ci = f" ({m(lo)}–{m(hi)})" if have_ci else ""
        return f"{m(n)}{ci} × 10{sup}"
    ci = f" ({_sig3(lo)}–{_sig3(hi)})" if have_ci else ""
    return f"{_sig3(n)}{ci}"


def _count(v) -> str:
    """A cell count for a table: ``393 005`` (empty when not reported)."""
    if v is None or not np.isfinite(v):
        return fmt(v)
    return f"{v:,.0f}".replace(",", "\u2009")
