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
        rows = []
        _, own = split_warnings([r.warnings for r in self.results])
        for r, warns in zip(self.results, own, strict=True):
            rows.append(
                [
                    "",
                    r.name,
                    _count(r.cells),
                    _count(r.cells_ci_low),
                    _count(r.cells_ci_high),
                    fmt(r.iron_ug, 3),
                    "yes" if r.below_lod else "no",
                    list(warns),
                ]
            )
        fill_table(
            self.table,
            [
                "show",
                "ROI",
                "cells",
                "95 % CI low\n(cells)",
                "95 % CI high\n(cells)",
                "iron\n(µg Fe)",
                "below\nLOD",
                "warnings",
            ],
            rows,
            warn_col=7,
            warn_beside=2,
            name_col=1,
        )
        self.table.blockSignals(True)
        for i, r in enumerate(self.results):
            item = QTableWidgetItem()
            item.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled)
            item.setCheckState(Qt.Checked if self.visible.get(r.name, True) else Qt.Unchecked)
            self.table.setItem(i, 0, item)
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


def _count(v) -> str:
    """A cell count for a table: ``393 005`` (empty when not reported)."""
    if v is None or not np.isfinite(v):
        return fmt(v)
    return f"{v:,.0f}".replace(",", "\u2009")
