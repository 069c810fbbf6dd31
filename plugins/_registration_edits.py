"""Fiducial pair edits of the registration dock: the paired Points layers' changes,
undo (Ctrl+Z), rename, delete, reorder, exclude, and the residuals table.

A mixin of :class:`~mpi_viewer.plugins._registration_dock.RegistrationDock`.
"""

from __future__ import annotations

import time

import numpy as np
from mpi_viewer.plugins._points_pairs import PairState
from mpi_viewer.plugins._registration_base import (
    AMBER,
    DRAG_GAP_S,
    FRE,
    GREEN,
    NAME,
    RED,
    USE,
    _fmt_xyz,
)
from mpi_viewer.plugins._tables import show_row_details
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QTableWidgetItem,
)


class PairEditsMixin:
    """Part of the registration dock (needs its widgets and pair state)."""

    # ------------------------------------------------------------ point edits
    def _on_points_data(self, event) -> None:
        if self._busy or self.pairs is None:
            return
        action = str(getattr(event, "action", "changed"))
        if action in ("adding", "removing", "changing"):
            return
        layer = event.source
        self._busy = True
        try:
            if action == "added":
                self.pairs.name_new_points(layer, getattr(event, "data_indices", None) or None)
                other = self.pairs.moving if layer is self.pairs.fixed else self.pairs.fixed
                QTimer.singleShot(0, lambda: self._activate(other))
            key = (id(layer), tuple(getattr(event, "data_indices", ()) or ()))
            self._record(drag_key=key if action == "changed" else None)
            self.pairs.restyle()
        except Exception as exc:  # noqa: BLE001 - never let an error escape into Qt
            show_error(f"Fiducial registration: {exc}")
        finally:
            self._busy = False
        if action == "changed" and layer is self.pairs.moving:
            self._preview_timer.start()  # a drag in the layer that the preview moves
        else:
            self.update_preview()

    def _activate(self, layer) -> None:
        if self.pairs is not None and layer in self.viewer.layers:
            self.viewer.layers.selection.active = layer
            layer.mode = "add"

    def _record(self, drag_key=None) -> None:
        """Push the previous state on the undo stack if the points changed."""
        cur = self.pairs.state(self.excluded)
        now = time.monotonic()
        if self._last is not None and not cur.same_as(self._last):
            same_drag = (
                drag_key is not None
                and drag_key == self._last_key
                and now - self._last_time < DRAG_GAP_S
            )
            if not same_drag:
                self._undo.append(self._last)
                del self._undo[:-200]
        self._last, self._last_key, self._last_time = cur, drag_key, now

    def undo(self) -> None:
        """Restore the fiducials as they were before the last edit."""
        if self.pairs is None or not self._undo:
            show_info("Fiducial registration: nothing to undo")
            return
        st = self._undo.pop()
        self._set_state(st)
        self.excluded = set(st.excluded)
        self._last, self._last_key = st, None
        self.update_preview()

    def _edit(self, fn) -> None:
        """Apply ``fn(state) -> state`` to the fiducials as one undoable edit."""
        if self.pairs is None:
            return
        try:
            st = fn(self.pairs.state(self.excluded))
        except (KeyError, ValueError) as exc:
            show_warning(f"Fiducial registration: {exc}")
            self._refresh_table()
            return
        self._replace(st)

    def rename_pair(self, old: str, new: str) -> None:
        """Rename a fiducial in both layers."""
        new = new.strip()

        def fn(st):
            if not new:
                raise ValueError("a fiducial name cannot be empty")
            if new != old and (new in st.fixed_names or new in st.moving_names):
                raise ValueError(f"the name {new!r} is already used")
            st.fixed_names = [new if n == old else n for n in st.fixed_names]
            st.moving_names = [new if n == old else n for n in st.moving_names]
            st.excluded = frozenset(new if n == old else n for n in st.excluded)
            return st

        self._edit(fn)

    def delete_pair(self, name: str | None) -> None:
        """Delete the fiducial called ``name`` from both layers."""
        if name is None:
            return

        def fn(st):
            fk = [i for i, n in enumerate(st.fixed_names) if n != name]
            mk = [i for i, n in enumerate(st.moving_names) if n != name]
            return PairState(
                [st.fixed_names[i] for i in fk],
                st.fixed_xyz[fk],
                [st.moving_names[i] for i in mk],
                st.moving_xyz[mk],
                st.excluded - {name},
            )

        self._edit(fn)

    def move_pair(self, name: str | None, step: int) -> None:
        """Move a fiducial up (``step=-1``) or down (``+1``) in the pair order."""
        if name is None:
            return

        def fn(st):
            order = list(range(len(st.fixed_names)))
            i = st.fixed_names.index(name)
            j = min(max(i + step, 0), len(order) - 1)
            order.insert(j, order.pop(i))
            st.fixed_names = [st.fixed_names[k] for k in order]
            st.fixed_xyz = st.fixed_xyz[order]
            return st

        self._edit(fn)
        self._select_row_of(name)

    def set_included(self, name: str, included: bool) -> None:
        """Use (``True``) or exclude a fiducial from the fit."""
        self._edit(
            lambda st: PairState(
                st.fixed_names,
                st.fixed_xyz,
                st.moving_names,
                st.moving_xyz,
                (st.excluded - {name}) if included else (st.excluded | {name}),
            )
        )

    # ------------------------------------------------------------------ table
    def _refresh_table(self, names=None, f=None, m=None) -> None:
        if self.pairs is None:
            self.table.setRowCount(0)
            return
        if names is None:
            names, f, m = self.pairs.pairs()
        res = (
            np.asarray(self.fit.residuals_mm, float)
            if self.fit is not None
            else np.full(len(names), np.nan)
        )
        tol = self.tol_spin.value
        self.table.blockSignals(True)
        self.table.setRowCount(len(names))
        for r, name in enumerate(names):
            cells = ["", name, "—" if not np.isfinite(res[r]) else f"{res[r]:.3f}"]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                flags = Qt.ItemIsSelectable | Qt.ItemIsEnabled
                if c == NAME:
                    flags |= Qt.ItemIsEditable
                if c == USE:
                    flags |= Qt.ItemIsUserCheckable
                    item.setCheckState(Qt.Unchecked if name in self.excluded else Qt.Checked)
                if c == FRE and np.isfinite(res[r]):
                    item.setBackground(
                        GREEN if res[r] < tol / 2 else AMBER if res[r] < tol else RED
                    )
                    item.setForeground(QColor("white"))
                    item.setToolTip("green < tolerance/2, amber < tolerance, red above")
                if c == FRE:
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                item.setFlags(flags)
                item.setData(Qt.UserRole, name)
                self.table.setItem(r, c, item)
        self.table.blockSignals(False)
        show_row_details(
            self.table,
            [
                f"{name}: fixed x, y, z = {_fmt_xyz(f[r])} mm; moving x, y, z = {_fmt_xyz(m[r])} mm"
                for r, name in enumerate(names)
            ],
            "Select a pair to see where it is in each image (own physical frame, mm).",
        )

    def _on_item_changed(self, item) -> None:
        name = item.data(Qt.UserRole)
        if item.column() == NAME and item.text() != name:
            QTimer.singleShot(0, lambda: self.rename_pair(name, item.text()))
        elif item.column() == USE:
            included = item.checkState() == Qt.Checked
            if included == (name in self.excluded):
                QTimer.singleShot(0, lambda: self.set_included(name, included))

    def _selected_name(self):
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            show_info("Fiducial registration: select a pair in the table first")
            return None
        return self.table.item(rows[0].row(), NAME).data(Qt.UserRole)

    def _select_row_of(self, name: str) -> None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, NAME).data(Qt.UserRole) == name:
                self.table.selectRow(r)
