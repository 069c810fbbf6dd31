"""Qt tables and warning labels shared by the calibration and cells docks."""

from __future__ import annotations

import html

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from mpi_viewer.calibration.describe import fmt

WARN_COLOUR = "#ffb000"


def fill_table(
    table: QTableWidget,
    headers,
    rows,
    *,
    editable=(),
    warn_col: int | None = None,
    warn_beside: int | None = None,
    name_col: int = 0,
) -> None:
    """Replace a table's contents; only columns in ``editable`` can be edited.

    ``warn_col``: the column of each row's warnings (a list, or one text). It is not
    shown as a column: the number in ``warn_beside`` (default: the name) gets a marker
    (⚠1) and the warnings in full as its tooltip, and each distinct warning is said
    once, in full, under the table (:mod:`mpi_viewer.plugins._warnings_view`).
    """
    from mpi_viewer.plugins._warnings_view import show_warnings, tooltip_html
    from qtpy.QtGui import QColor

    per_row, texts, beside = None, None, None
    if warn_col is not None:
        texts = [
            "; ".join(r[warn_col]) if isinstance(r[warn_col], list | tuple) else str(r[warn_col])
            for r in rows
        ]
        headers, rows, per_row, _, beside = show_warnings(
            table, list(headers), rows, warn_col,
            warn_beside if warn_beside is not None else name_col, name_col,
        )  # fmt: skip
    table.blockSignals(True)
    table.clear()
    table.setColumnCount(len(headers))
    table.setHorizontalHeaderLabels(list(headers))
    table.setRowCount(len(rows))
    for i, row in enumerate(rows):
        warn = per_row is not None and bool(per_row[i])
        for j, val in enumerate(row):
            item = QTableWidgetItem(val if isinstance(val, str) else fmt(val))
            if j not in editable:
                item.setFlags(item.flags() & ~Qt.ItemIsEditable)
            if warn and j in (beside, name_col):
                item.setForeground(QColor(WARN_COLOUR))
                item.setToolTip(tooltip_html(texts[i]))
            table.setItem(i, j, item)
    table.resizeColumnsToContents()
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
