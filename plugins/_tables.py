"""Qt tables and warning labels shared by the calibration and cells docks."""

from __future__ import annotations

import html

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from mpi_viewer.calibration.describe import fmt

WARN_COLOUR = "#ffb000"


def fill_table(
    table: QTableWidget, headers, rows, *, editable=(), warn_col: int | None = None
) -> None:
    """Replace a table's contents; only columns in ``editable`` can be edited.

    Rows with text in ``warn_col`` are tinted so warnings are seen in the table.
    """
    from qtpy.QtGui import QColor

    table.blockSignals(True)
    table.clear()
    table.setColumnCount(len(headers))
    table.setHorizontalHeaderLabels(list(headers))
    table.setRowCount(len(rows))
    for i, row in enumerate(rows):
        warn = warn_col is not None and str(row[warn_col]).strip()
        for j, val in enumerate(row):
            item = QTableWidgetItem(val if isinstance(val, str) else fmt(val))
            if j not in editable:
                item.setFlags(item.flags() & ~Qt.ItemIsEditable)
            if j == warn_col and warn:
                item.setToolTip(str(val))
            if warn:
                item.setForeground(QColor(WARN_COLOUR))
            table.setItem(i, j, item)
    table.resizeColumnsToContents()
    if warn_col is not None:  # the warnings wrap in full instead of running off the dock
        table.setWordWrap(True)
        table.setColumnWidth(warn_col, max(240, min(table.columnWidth(warn_col), 360)))
        table.resizeRowsToContents()
    table.blockSignals(False)


def warning_html(warnings) -> str:
    """Warnings in full, one per line, amber (for a QLabel beside a table)."""
    if not warnings:
        return ""
    return (
        f"<span style='color:{WARN_COLOUR}'>"
        + "<br>".join(f"⚠ {html.escape(w)}" for w in warnings)
        + "</span>"
    )


def make_table(min_height: int = 120) -> QTableWidget:
    t = QTableWidget(0, 0)
    t.setMinimumHeight(min_height)
    t.verticalHeader().setVisible(False)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
    t.horizontalHeader().setStretchLastSection(True)
    t.setSelectionBehavior(QAbstractItemView.SelectRows)
    return t
