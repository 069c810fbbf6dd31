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


#: The attribute of a table holding its row-details label (:func:`show_row_details`).
_DETAILS = "mpi_viewer_row_details"


def show_row_details(table: QTableWidget, details, hint: str = "") -> None:
    """Numbers of each row a user reads less often than its columns (a position, a peak,
    a width), kept out of the columns so the table fits its dock without sideways
    scrolling: ``details[i]`` in full as the tooltip of every cell of row ``i`` (before
    its warnings, if any) and, for the selected row, on a wrapped line under the table
    (``hint`` there while no row is selected).
    """
    from mpi_viewer.plugins._warnings_view import tooltip_html

    details = [str(d) for d in details]
    was = table.blockSignals(True)  # a tooltip set is no edit of the table
    try:
        for i, text in enumerate(details):
            for j in range(table.columnCount()):
                item = table.item(i, j)
                if item is not None and text:
                    old = item.toolTip()  # plain text would be read as HTML once joined
                    if old and not old.startswith("<"):
                        old = tooltip_html(old)
                    item.setToolTip(tooltip_html(text) + old)
    finally:
        table.blockSignals(was)
    setattr(table, _DETAILS + "_texts", (details, hint))
    _details_label(table)
    _show_current_details(table)


def details_label(table: QTableWidget):
    """The label under ``table`` saying its selected row's details (None before
    :func:`show_row_details`)."""
    return getattr(table, _DETAILS, None)


def _details_label(table: QTableWidget):
    from qtpy.QtWidgets import QBoxLayout, QLabel

    label = getattr(table, _DETAILS, None)
    if label is not None:
        return label
    label = QLabel()
    label.setWordWrap(True)
    label.setObjectName("rowDetails")
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    parent = table.parentWidget()
    layout = parent.layout() if parent is not None else None
    index = layout.indexOf(table) if layout is not None else -1
    if isinstance(layout, QBoxLayout) and index >= 0:
        layout.insertWidget(index + 1, label)  # right under the table, above its notes
        from mpi_viewer.plugins._dock_layout import take_width_given

        take_width_given(label)
    setattr(table, _DETAILS, label)
    table.itemSelectionChanged.connect(lambda: _show_current_details(table))
    return label


def _show_current_details(table: QTableWidget) -> None:
    label = getattr(table, _DETAILS, None)
    details, hint = getattr(table, _DETAILS + "_texts", ([], ""))
    if label is None:
        return
    rows = sorted({ix.row() for ix in table.selectionModel().selectedRows()})
    text = details[rows[0]] if len(rows) == 1 and rows[0] < len(details) else ""
    text = text or (hint if details else "")
    label.setText(text)
    label.setVisible(bool(text))


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
