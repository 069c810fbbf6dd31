"""Warnings in a results table: a marker beside the number they concern, the text in full
once under the table.

A warnings column is cut off by any dock of a usable width (a sentence per row), and
the same sentence repeated on every row hides the one that matters. Instead each
distinct warning gets a number: the cell of the number it concerns reads
``18.05 ⚠1`` (amber, the warning in full as its tooltip), and a word-wrapped line under
the table says ``⚠1 strong: …`` in full, once, however many rows share it.
"""

from __future__ import annotations

import html

#: Amber, as the docks' other warnings.
WARN_COLOUR = "#ffb000"

_NOTES = "mpi_viewer_warning_notes"


def numbered(row_names, row_warnings) -> tuple[list[list[int]], list[tuple[int, str, str]]]:
    """Number each distinct warning once.

    Returns, per row, the numbers of its warnings, and the notes ``(number, rows,
    text)``: rows is the names of the rows having it, comma separated.
    """
    order: dict[str, int] = {}
    owners: dict[str, list[str]] = {}
    per_row = []
    for name, warns in zip(row_names, row_warnings, strict=True):
        nums = []
        for w in warns or []:
            w = " ".join(str(w).split())
            if not w:
                continue
            k = order.setdefault(w, len(order) + 1)
            owners.setdefault(w, [])
            if name not in owners[w]:
                owners[w].append(str(name))
            if k not in nums:
                nums.append(k)
        per_row.append(nums)
    notes = [(k, ", ".join(owners[w]), w) for w, k in order.items()]
    return per_row, notes


def marker(nums) -> str:
    """``"⚠1"``, ``"⚠1,2"`` or ``""``."""
    return f"⚠{','.join(str(n) for n in nums)}" if nums else ""


def notes_html(notes) -> str:
    """The notes in full, one per line, amber."""
    return "<br>".join(
        f"<span style='color:{WARN_COLOUR}'>⚠{k} <b>{html.escape(rows)}</b>: "
        f"{html.escape(text)}</span>"
        for k, rows, text in notes
    )


def tooltip_html(text: str) -> str:
    """A tooltip that wraps (Qt wraps rich-text tooltips only)."""
    return f"<p style='white-space:pre-wrap'>{html.escape(text)}</p>"


def notes_label(table):
    """The word-wrapped label under ``table`` holding its warning notes (made on first use,
    placed right after the table in its parent's layout)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QBoxLayout, QLabel

    label = getattr(table, _NOTES, None)
    if label is not None:
        return label
    label = QLabel()
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setObjectName("warningNotes")
    parent = table.parentWidget()
    layout = parent.layout() if parent is not None else None
    # under the table, after its row-details line if it has one (:mod:`._tables`)
    under = getattr(table, "mpi_viewer_row_details", None) or table
    index = layout.indexOf(under) if layout is not None else -1
    if isinstance(layout, QBoxLayout) and index >= 0:
        layout.insertWidget(index + 1, label)
        from mpi_viewer.plugins._dock_layout import take_width_given

        take_width_given(label)
    setattr(table, _NOTES, label)
    return label


def show_warnings(table, headers, rows, warn_col: int, beside: int, name_col: int):
    """Move the warnings of ``rows[i][warn_col]`` (a list, or one text) beside the number
    in column ``beside``; returns ``(headers, rows, per_row_numbers, notes)`` without the
    warnings column, for the table to be filled with, and sets the notes label."""
    names = [r[name_col] for r in rows]
    texts = [
        list(r[warn_col]) if isinstance(r[warn_col], list | tuple) else [str(r[warn_col])]
        for r in rows
    ]
    per_row, notes = numbered(names, texts)
    keep = [j for j in range(len(headers)) if j != warn_col]
    new_rows = []
    for r, nums in zip(rows, per_row, strict=True):
        cells = list(r)
        if nums:
            cells[beside] = f"{cells[beside]} {marker(nums)}"
        new_rows.append([cells[j] for j in keep])
    label = notes_label(table)
    label.setText(notes_html(notes))
    label.setVisible(bool(notes))
    label.setToolTip("")
    return [headers[j] for j in keep], new_rows, per_row, notes, keep.index(beside)
