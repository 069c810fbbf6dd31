"""Manual ROIs of the MPI ROIs dock: polygons drawn on a 2-D MPI, labels painted on a
3-D one (always on the MPI grid), measured with :func:`mpi_viewer.roi.measure_mask` /
:func:`mpi_viewer.roi.measure_label_image`.

A mixin of :class:`~mpi_viewer.plugins._roi_dock.ROIDock` (one idea per module).
"""

from __future__ import annotations

import numpy as np
from mpi_viewer.plugins._layers import copy_placement, volume_from_layer
from napari.utils import notifications

from mpi_viewer.errors import InputError
from mpi_viewer.roi.regions import measure_label_image, measure_mask, polygon_to_mask

#: Manual ROIs: polygons drawn on a 2-D MPI image, labels painted on a 3-D one (MPI grid).
SHAPES_LAYER = "manual ROIs (draw polygons)"
PAINT_LAYER = "manual ROIs (paint)"
MANUAL = "manual"


class ManualROIsMixin:
    """The manual ROIs of the ROI dock (needs the dock's ``params``, results and MPI)."""

    def _ensure_manual_layer(self, *, paint: bool = False):
        """The layer the user draws (2-D: Shapes) or paints (3-D, or ``paint``: Labels)
        manual ROIs in, placed like the MPI layer (its data coordinates are the MPI's
        voxel indices)."""
        layer = self._manual_layer
        if (
            layer is not None
            and layer in self.viewer.layers
            and (not paint or type(layer).__name__ == "Labels")
        ):
            return layer
        mpi = self.mpi_layer
        if mpi is None:
            raise InputError("no MPI image layer: open an MPI image (or the demo) first")
        vol = volume_from_layer(mpi)
        if vol.ndim == 2 and not paint:
            layer = self.viewer.add_shapes(
                ndim=2,
                name=SHAPES_LAYER,
                shape_type="polygon",
                units=("mm", "mm"),
                edge_color="yellow",
                face_color="transparent",
                edge_width=0.5,
            )
            layer.events.data.connect(self._on_shapes_changed)
        else:
            layer = self.viewer.add_labels(
                np.zeros(vol.shape, dtype=np.uint16),
                name=PAINT_LAYER,
                opacity=0.5,
                units=("mm",) * vol.ndim,
            )
            layer.metadata["mpi_viewer"] = {"modality": "manual ROIs", "grid_of": mpi.name}
        copy_placement(mpi, layer)
        self._manual_layer = layer
        self.manual_btn.setEnabled(True)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_polygon" if type(layer).__name__ == "Shapes" else "paint"
        return layer

    def _on_shapes_changed(self, event=None) -> None:
        if str(getattr(event, "action", "") or "").endswith("ing"):
            return
        self._guarded(self.measure_manual)

    def measure_manual(self) -> list:
        """Measure the manual ROIs: each polygon of the Shapes layer (2-D image) or each
        label painted in the paint layer (3-D image) with :func:`mpi_viewer.roi.measure_mask`
        / :func:`mpi_viewer.roi.measure_label_image`; rows follow the seeded ROIs."""
        layer = self._manual_layer
        if layer is None or layer not in self.viewer.layers:
            raise InputError(
                "no manual ROIs: choose the method 'manual', then draw (2-D) or paint (3-D)"
            )
        vol = self._volume()
        if type(layer).__name__ == "Shapes":
            out = []
            for i, (poly, kind) in enumerate(zip(layer.data, layer.shape_type, strict=True)):
                if kind not in ("polygon", "rectangle") or len(poly) < 3:  # closed outlines only
                    continue
                xyz = vol.index_to_physical(np.asarray(poly)[:, -vol.ndim :])
                try:
                    out.append(
                        measure_mask(
                            vol, polygon_to_mask(vol, xyz), self.params, name=f"manual_{i + 1}"
                        )
                    )
                except InputError as exc:  # one bad polygon: a message, the others kept
                    notifications.show_error(f"polygon {i + 1}: {exc}")
        else:
            data = np.asarray(layer.data)
            out = (
                measure_label_image(vol, data, self.params, names=self._manual_names)
                if data.any()
                else []
            )
        self._manual = list(out)
        self._set_results([r for r in self.results if r.method != MANUAL])
        return self._manual

    def _manual_state(self) -> dict | None:
        if not self._manual:
            return None
        names = [r.name for r in self._manual]
        layer = self._manual_layer
        if layer is not None and layer in self.viewer.layers and type(layer).__name__ == "Labels":
            data = np.asarray(layer.data)
            if np.unique(data[data > 0]).size == len(
                self._manual
            ):  # as measured: keep the painted values
                return {"labels": data.copy(), "names": names}
        if (
            self.mpi_layer is None or self._gone_layer
        ):  # the MPI layer is gone: no grid to draw them on
            return None
        lab = np.zeros(tuple(self._volume().shape), dtype=np.uint16)
        for k, r in enumerate(self._manual):  # polygons (or a removed paint layer): labels 1…n
            sub = lab[r.mask.slices]
            sub[r.mask.array & (sub == 0)] = k + 1
        return {"labels": lab, "names": names}

    def _restore_manual(self, manual: dict) -> None:
        """The manual ROIs of a session: its label image in the paint layer (a Labels
        layer on the MPI grid, 2-D images too), measured with their names."""
        labels = np.asarray(manual["labels"])
        shape = tuple(self._volume().shape)
        if labels.shape != shape:
            raise InputError(f"manual ROIs of shape {labels.shape} are not on the MPI grid {shape}")
        values = [int(v) for v in np.unique(labels[labels > 0])]
        names = [str(n) for n in manual.get("names") or []]
        self._manual_names = (
            dict(zip(values, names, strict=True)) if len(names) == len(values) else {}
        )
        layer = self._ensure_manual_layer(paint=True)
        layer.data = labels
        self.measure_manual()
