"""Candidate poses of the mold panel: the table of the ways of reading the wells.

A mixin of :class:`~mpi_viewer.plugins._mold_panel.MoldPanel` (one idea per module):
one row per candidate pose with a hint line above and a detail line below; hovering
a row previews the MPI through that pose (only the MPI layer's placement changes,
put back when the pointer leaves the table), clicking a row uses it.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QEvent, Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
)

from mpi_viewer.errors import MPIViewerError

#: Columns of the candidate-pose table (one row per way of reading the wells).
POSE_COLUMNS = ("Pose", "Wells", "Turn (°)", "FRE (mm)", "Score")


class PoseTableMixin:
    """The candidate-pose table of the mold panel (needs its ``result``, ``_layers``, ``_apply``)."""

    def _build_pose_table(self, lay) -> None:
        """The candidate poses: hover a row to preview the MPI through it, click to use it."""
        self.pose_hint = QLabel(wordWrap=True)
        self.pose_table = QTableWidget(0, len(POSE_COLUMNS))
        self.pose_table.setHorizontalHeaderLabels(POSE_COLUMNS)
        tips = (
            "Candidate pose (✓: the one in use)",
            "Wells found in both images under this reading",
            "Rotation of the mold between the two scans under this reading (degrees)",
            "RMS fiducial registration error (mm)",
            "Match score: a precisely matched well counts 1 per image",
        )
        for col, tip in enumerate(tips):
            self.pose_table.horizontalHeaderItem(col).setToolTip(tip)
        self.pose_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.pose_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.pose_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.pose_table.verticalHeader().setVisible(False)
        self.pose_table.verticalHeader().setDefaultSectionSize(22)
        hdr = self.pose_table.horizontalHeader()
        hdr.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.pose_table.setMouseTracking(True)  # cellEntered: the hover preview
        self.pose_table.cellEntered.connect(lambda row, _col: self.preview_pose(row + 1))
        self.pose_table.cellClicked.connect(lambda row, _col: self.choose_pose(row + 1))
        self.pose_table.viewport().installEventFilter(self)
        self.pose_detail = QLabel(wordWrap=True)
        self.pose_detail.setMinimumWidth(260)
        for w in (self.pose_hint, self.pose_table, self.pose_detail):
            w.setVisible(False)
            lay.addWidget(w)
        lay.addStretch(1)  # the rows stay together at the top of a tall dock
        self._placement = None  # the MPI layer's placement saved while a preview is drawn
        self._previewed: int | None = None

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if obj is self.pose_table.viewport() and event.type() == QEvent.Type.Leave:
            self.end_preview()
        return False

    def _fill_pose_table(self) -> None:
        """One row per candidate pose; shown when the wells fit more than one."""
        result = self.result
        cands = list(result.candidates) if result is not None else []
        several = len(cands) > 1
        for w in (self.pose_hint, self.pose_table, self.pose_detail):
            w.setVisible(several)
        self.pose_table.setRowCount(0)
        self.pose_detail.clear()
        if not several:
            return
        prior = result.max_rotation_deg
        if result.ambiguous:
            hint = (
                f"The wells fit {len(cands)} poses of the mold and the orientation prior cannot "
                "decide. Hover a pose to preview the MPI through it; click it to use it."
            )
        else:
            hint = (
                f"The wells fit {len(cands)} poses; pose {result.pose} is used. Hover a pose "
                "to preview it; click another to use it instead."
            )
        self.pose_hint.setText(hint)
        self.pose_table.setRowCount(len(cands))
        for row, c in enumerate(cands):
            used = not result.ambiguous and row == result.chosen
            beyond = not c.within_prior
            cells = (
                f"{'✓ ' if used else ''}{c.rank}",
                f"{len(c.matched_names)}" + (" ⚠" if c.unseen else ""),
                f"{c.rotation_deg:.0f}" + (f" > {prior:g}" if beyond and prior else ""),
                f"{float(c.fit.rms_fre_mm):.2f}",
                f"{c.score:.1f}",
            )
            tip = c.summary()
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if (col == 2 and beyond) or (col == 1 and c.unseen):
                    item.setForeground(QColor("orange"))
                if used:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.pose_table.setItem(row, col, item)
        if not result.ambiguous:
            self.pose_table.selectRow(result.chosen)
        height = self.pose_table.horizontalHeader().height() + 22 * len(cands) + 4
        self.pose_table.setFixedHeight(height)
        self._show_detail(result.chosen + 1 if not result.ambiguous else None)

    def _show_detail(self, n: int | None) -> None:
        """Below the table: what pose ``n`` reads (wells, turn, residuals, contradictions)."""
        if self.result is None or n is None:
            self.pose_detail.setText("")
            return
        c = self.result.candidates[n - 1]
        lines = [
            f"Pose {c.rank}: wells {', '.join(c.matched_names)}; mold turned "
            f"{c.rotation_deg:.0f}° between the scans"
            + ("" if c.within_prior else f" (beyond the {self.result.max_rotation_deg:g}° prior)")
        ]
        if c.cut_excluded:
            lines.append(
                f"left out of the fit (cut by the image edge): {', '.join(c.cut_excluded)}"
            )
        if c.unseen:
            lines.append(
                f"puts {', '.join(c.unseen)} in the anatomy's view where no well was found"
            )
        self.pose_detail.setText("\n".join(lines))

    def preview_pose(self, n: int) -> None:
        """Draw the MPI through candidate pose ``n`` (1-based) until the pointer leaves the table.

        Only the MPI layer's placement changes (the study's registration does not); it is
        put back by :meth:`end_preview`.
        """
        if self.result is None or not (1 <= n <= len(self.result.candidates)) or self.busy:
            return
        if n == self._previewed:
            return
        _fixed_layer, moving_layer = self._layers
        if moving_layer not in self.viewer.layers:
            return
        from mpi_viewer.plugins._layers import apply_registration, meta

        if self._placement is None:
            self._placement = (
                np.array(moving_layer.scale),
                np.array(moving_layer.translate),
                np.array(moving_layer.affine.affine_matrix),
                meta(moving_layer).get("transform_fixed_to_moving"),
            )
        c = self.result.candidates[n - 1]
        fixed = self.ctl.anatomy
        if fixed is None:
            return
        m, t = self.ctl._through_anatomy_world(fixed, np.asarray(c.fit.matrix), c.fit.translation)
        apply_registration(moving_layer, m, t, fixed_name=fixed.name)
        self._previewed = n
        self._show_detail(n)

    def end_preview(self) -> None:
        """Put the MPI back where it was before the preview (the study's registration)."""
        saved, self._placement = self._placement, None
        self._previewed = None
        if saved is None:
            return
        _fixed_layer, moving_layer = self._layers
        if moving_layer not in self.viewer.layers:
            return
        from mpi_viewer.plugins._layers import _install_2d_display_for, meta, set_placement

        scale, translate, affine, record = saved
        set_placement(moving_layer, scale, translate, affine)
        if record is None:
            meta(moving_layer).pop("transform_fixed_to_moving", None)
        else:
            meta(moving_layer)["transform_fixed_to_moving"] = record
        _install_2d_display_for(moving_layer)
        r = self.result
        self._show_detail(None if r is None or r.ambiguous else r.pose)

    def choose_pose(self, n: int) -> None:
        """Use candidate pose ``n`` (1-based): the user's choice, applied and recorded."""
        if self.result is None or self.busy:
            return
        try:
            result = self.result.with_pose(int(n))
        except MPIViewerError as exc:
            self._fail(str(exc))
            return
        self.end_preview()
        self.result, self.error = result, None
        self._fill_pose_table()
        self._apply(result)
