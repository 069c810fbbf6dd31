"""The ROI dock's results: the table (headers with 2-D/3-D units, one row per ROI with
its warnings) and the ROI Labels layer on the MPI grid.

A mixin of :class:`~mpi_viewer.plugins._roi_dock.ROIDock`.
"""

from __future__ import annotations

from mpi_viewer.plugins._controller import ROIDefinition
from mpi_viewer.plugins._layers import (
    copy_placement,
    keeping_active,
    placement_of,
    volume_from_layer,
)
from mpi_viewer.plugins._overlay_style import follow_ndisplay
from mpi_viewer.plugins._roi_manual import MANUAL
from mpi_viewer.plugins._tables import show_row_details
from mpi_viewer.plugins._warnings_view import (
    WARN_COLOUR,
    marker,
    notes_html,
    notes_label,
    numbered,
    tooltip_html,
)
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QTableWidgetItem

from mpi_viewer.io import tables as res
from mpi_viewer.roi.regions import flag_sentences, rois_to_label_image

LABELS_LAYER = "MPI ROIs"

#: Table columns: (row key, header with unit). Volume/area and total depend on 2-D/3-D.
#: The numbers a user compares between ROIs; each ROI's peak position and FWHM are its
#: row's tooltip and, for the selected row, the line under the table (as columns they
#: made the table scroll sideways in a 420 px dock). The flags are said in words under
#: the table.
_COLUMNS = (
    ("name", "ROI"),
    ("TOTAL", ""),
    ("SIZE", ""),
    ("peak_au", "peak (a.u.)"),
    ("mean_au", "mean (a.u.)"),
    ("snr", "SNR"),
)


def _details(r, row: dict) -> str:
    """An ROI's numbers not shown as columns, in one line: peak position and FWHM."""
    axes = ("x", "y", "z")[: max(min(r.ndim, 3), 2)]
    at = ", ".join(f"{row.get(f'peak_{a}_mm', float('nan')):.4g}" for a in axes)
    fwhm = " × ".join(f"{row.get(f'fwhm_{a}_mm', float('nan')):.2g}" for a in axes)
    return (
        f"{r.name}: peak at {', '.join(axes)} = {at} mm (MPI); FWHM {fwhm} mm "
        f"along {', '.join(axes)}"
    )


class ROIResultsMixin:
    """The results table and Labels layer of the ROI dock (needs ``table``, ``results``,
    ``params``, ``ctl``, ``viewer``)."""

    def _set_headers(self, ndim: int) -> None:
        u = "mm³" if ndim == 3 else "mm²"
        heads = []
        for key, head in _COLUMNS:
            if key == "SIZE":
                head = f"{'volume' if ndim == 3 else 'area'} ({u})"
            elif key == "TOTAL":
                head = f"total signal (a.u.·{u})"
            heads.append(head.replace(" (", "\n(", 1))  # units on a second line: narrower
        self.table.setColumnCount(len(heads))
        self.table.setHorizontalHeaderLabels(heads)

    def _set_results(self, results: list, *, labels=None) -> None:
        """Show ``results`` (seeded; the manual ROIs follow). ``labels``: their label
        image on the MPI grid when already made (off the GUI thread)."""
        seeded = [r for r in results if r.method != MANUAL]
        for k, r in enumerate(
            self._manual
        ):  # manual ROIs follow the seeded ones in the table and labels
            r.label = len(seeded) + k + 1
        results = seeded + list(self._manual)
        self.results = results
        self.ctl.set_rois(
            [ROIDefinition(n, tuple(s)) for n, s in zip(self._names, self._seeds_mm, strict=False)],
            results,
            self.params,
        )
        self._filling = True
        ndim = results[0].ndim if results else 3
        self._set_headers(ndim)
        keys = [k for k, _ in _COLUMNS]
        self.table.setRowCount(len(results))
        # each warning once, in full, under the table; ⚠n beside the total signal
        said = [[*flag_sentences(r.flags, r.warnings), *r.warnings] for r in results]
        per_row, notes = numbered([r.name for r in results], said)
        details = []
        for i, r in enumerate(results):
            row = r.to_row()
            details.append(_details(r, row))
            for j, k in enumerate(keys):
                if k == "SIZE":
                    v = r.size
                elif k == "TOTAL":
                    v = r.total_signal
                else:
                    v = row.get(k, "")
                text = res.format_value(v) if not isinstance(v, float) else f"{v:.4g}"
                if k == "TOTAL" and per_row[i]:
                    text = f"{text} {marker(per_row[i])}"
                item = QTableWidgetItem(text)
                if said[i]:
                    item.setToolTip(tooltip_html("; ".join(said[i])))
                    if k in ("TOTAL", _COLUMNS[0][0]):
                        item.setForeground(QColor(WARN_COLOUR))
                if j != 0 or r.method == MANUAL:
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(i, j, item)
        show_row_details(
            self.table,
            details,
            "Select an ROI for its peak position and FWHM; double-click its name to rename it.",
        )
        notes_lbl = notes_label(self.table)
        notes_lbl.setText(notes_html(notes))
        notes_lbl.setVisible(bool(notes))
        self._filling = False
        self._update_labels(labels if not self._manual else None)
        if results:
            self.status.setText(
                f"{len(results)} ROI(s), method {self.params.method}, noise SD "
                f"{results[0].noise_sd:.3g} a.u."
            )

    def _update_labels(self, lab=None) -> None:
        layer = self.mpi_layer
        if layer is None:
            return
        if lab is None:
            lab = rois_to_label_image(volume_from_layer(layer), self.results)
        if self._labels_layer is None or self._labels_layer not in self.viewer.layers:
            if not self.results:
                return
            from mpi_viewer.plugins._layer_pool import take

            meta = {"mpi_viewer": {"modality": "MPI ROIs", "grid_of": layer.name}}
            pooled = take(
                self.viewer, "roi labels", name=LABELS_LAYER, metadata=meta, ndim=lab.ndim
            )
            if pooled is not None:  # made when the image was opened: placed, then filled
                from mpi_viewer.plugins._napari_compat import one_extent_update, one_refresh

                # drawn once, the world extent recomputed once (not at each of 4 sets)
                with one_refresh(pooled), one_extent_update(self.viewer, pooled):
                    copy_placement(layer, pooled)
                    pooled.data = lab
                self._labels_layer = pooled
            else:
                with keeping_active(self.viewer):  # the user's clicks stay where they were
                    self._labels_layer = add_roi_labels_layer(
                        self.viewer,
                        lab,
                        placement_of(layer, lab.ndim),  # placed: one redraw
                    )
                self._labels_layer.metadata.update(meta)
            self._labels_layer.bind_key("Control-z", lambda _layer: self.undo(), overwrite=True)
            follow_ndisplay(self.viewer, self._labels_layer)  # outlines (2-D), surfaces (3-D)
        elif lab is not self._labels_layer.data:  # the very array shown: nothing to redraw
            self._labels_layer.data = lab
        copy_placement(layer, self._labels_layer)


def add_roi_labels_layer(viewer, lab, placement: dict, name: str = LABELS_LAYER):
    """Add the ROIs' Labels layer (``placement``: scale, translate, affine), styled for
    the current view (:func:`~mpi_viewer.plugins._overlay_style.style_roi_labels`)."""
    from mpi_viewer.plugins._overlay_style import style_roi_labels

    layer = viewer.add_labels(lab, name=name, opacity=0.5, units=("mm",) * lab.ndim, **placement)
    style_roi_labels(layer, viewer.dims.ndisplay)
    return layer
