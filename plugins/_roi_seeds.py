"""Seeded ROIs of the MPI ROIs dock: the seed layer, the clicking mode, and the edits
(add, rename, delete, undo) of the list of seeds.

A mixin of :class:`~mpi_viewer.plugins._roi_dock.ROIDock` (one idea per module): the
seeds are MPI physical mm (x, y, z); a click in the clicking mode
(:class:`~mpi_viewer.plugins._canvas_clicks.ClickMode`) is measured in a worker thread,
clicks made meanwhile wait in a queue, none is lost.
"""

from __future__ import annotations

import numpy as np
from mpi_viewer.plugins._layers import physical_to_world, world_to_physical
from mpi_viewer.plugins._work import start_work
from napari.utils import notifications

from mpi_viewer.errors import InputError
from mpi_viewer.roi.regions import measure, rois_to_label_image

SEED_LAYER = "ROI seeds"


def add_seed_layer(viewer, ndim: int, name: str):
    """The seeds' Points layer (world mm like the images: no napari unit warning)."""
    return viewer.add_points(
        np.empty((0, ndim)),
        ndim=ndim,
        name=name,
        units=("mm",) * ndim,
        size=1.5,
        face_color="cyan",
        border_color="white",
    )


class SeedEditsMixin:
    """The seed edits of the ROI dock (needs the dock's widgets, ``params`` and results)."""

    def _ensure_seed_layer(self):
        if self._seed_layer is not None and self._seed_layer in self.viewer.layers:
            return self._seed_layer
        from mpi_viewer.plugins._layer_pool import take

        ndim = self.viewer.dims.ndim
        # the pool's (made as the study's image opened: no layer added now), else a new one
        layer = take(self.viewer, "roi seeds", name=SEED_LAYER, ndim=ndim)
        if layer is not None:
            layer.data = np.empty((0, ndim))
        else:
            layer = add_seed_layer(self.viewer, ndim, SEED_LAYER)
        layer.events.data.connect(self._on_points_changed)
        layer.bind_key("Control-z", lambda _layer: self.undo(), overwrite=True)
        self._seed_layer = layer
        return layer

    def start_clicking(self) -> None:
        """Enter the clicking mode: each click on the canvas makes an ROI until :meth:`stop_clicking`."""
        try:
            self._volume()
        except InputError as exc:
            notifications.show_error(str(exc))
            self.click_btn.setChecked(False)
            return
        layer = self._ensure_seed_layer()
        self.viewer.layers.selection.active = layer
        layer.mode = "pan_zoom"  # the clicks are the dock's, whatever layer becomes active
        self.clicks.start()
        self.click_btn.blockSignals(True)
        self.click_btn.setChecked(True)
        self.click_btn.blockSignals(False)
        self.status.setText(
            "Click each hot spot (2-D or 3-D, MPI or registered view); "
            "press 'Click hot spots' again to stop."
        )

    def stop_clicking(self) -> None:
        """Leave the clicking mode."""
        self.clicks.stop()
        self.click_btn.blockSignals(True)
        self.click_btn.setChecked(False)
        self.click_btn.blockSignals(False)
        self.status.setText("Clicking stopped.")

    def _on_click_toggled(self, on: bool) -> None:
        if on:
            self.start_clicking()
        else:
            self.stop_clicking()

    def _on_points_changed(self, event=None) -> None:
        if self._syncing:
            return
        action = str(getattr(event, "action", "") or "")
        if action.endswith("ing"):  # "adding"/"removing": wait for "added"/"removed"
            return
        layer = self._seed_layer
        n_have = len(self._seeds_mm)
        data = np.asarray(layer.data)
        if len(data) > n_have:  # clicks added points (world coordinates)
            for p in data[n_have:]:
                self.add_seed_world(p, _from_layer=True)
        elif len(data) < n_have:  # points deleted in the layer
            world_now = {tuple(np.round(p, 6)) for p in data}
            keep = [
                i for i, s in enumerate(self._seeds_world()) if tuple(np.round(s, 6)) in world_now
            ]
            self._seeds_mm = [self._seeds_mm[i] for i in keep]
            self._names = [self._names[i] for i in keep]
            self.recompute()

    # -- seeds ---------------------------------------------------------------------------------
    def add_seed_world(self, world_zyx, *, _from_layer: bool = False):
        """Add an ROI from a click in world coordinates (z, y, x); returns its result or None."""
        try:
            layer = self.mpi_layer
            if layer is None:
                raise InputError("no MPI image layer: open an MPI image (or the demo) first")
            xyz = tuple(
                float(v) for v in world_to_physical(layer, np.asarray(world_zyx)[-layer.ndim :])[0]
            )
        except InputError as exc:
            notifications.show_error(str(exc))
            self._sync_points()
            return None
        return self.add_seed_mm(xyz, _from_layer=_from_layer)

    def add_seed_mm(
        self, xyz_mm, *, name: str | None = None, block: bool = True, _from_layer: bool = False
    ):
        """Add an ROI from a seed in the MPI's physical mm (x, y, z).

        ``block=True``: measured here, returns its result (None if refused).
        ``block=False``: measured in a worker as a click is; returns the worker.
        """
        if not block:
            self._queue.append((tuple(float(v) for v in xyz_mm), name))
            if self._worker is None:
                self._measure_queued()
            return self._worker
        name = name or self._free_name()
        before = (list(self._seeds_mm), list(self._names))
        seeds = [*self._seeds_mm, tuple(float(v) for v in xyz_mm)]
        names = [*self._names, name]
        try:
            out = measure(self._volume(), seeds, self.params, names=names, on_error="skip")
        except InputError as exc:
            notifications.show_error(str(exc))
            self._sync_points()
            return None
        bad = {i for i, _ in out.errors}
        for _, msg in out.errors:
            notifications.show_error(msg)
        self._seeds_mm = [s for i, s in enumerate(seeds) if i not in bad]
        self._names = [n for i, n in enumerate(names) if i not in bad]
        self._set_results(list(out))
        self._sync_points()
        if (len(seeds) - 1) in bad:
            return None
        self._history.append(before)
        self._counter += 1
        return next(r for r in self.results if r.name == name)

    def _free_name(self, taken=()) -> str:
        k = self._counter + 1
        while f"roi_{k}" in self._names or f"roi_{k}" in taken:
            k += 1
        return f"roi_{k}"

    # -- clicks measured off the GUI thread ----------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether clicked seeds are being measured (or wait to be)."""
        return self._worker is not None or bool(self._queue)

    def _on_canvas_click(self, world_zyx) -> None:
        """A click in the clicking mode. Its seed is measured in a worker thread with the
        others (a neighbour's PSF is subtracted); clicks made meanwhile wait and are
        measured together next, so none is lost and the window never freezes."""
        try:
            layer = self.mpi_layer
            if layer is None:
                raise InputError("no MPI image layer: open an MPI image (or the demo) first")
            xyz = world_to_physical(layer, np.asarray(world_zyx)[-layer.ndim :])[0]
        except InputError as exc:
            notifications.show_error(str(exc))
            return
        self._queue.append((tuple(float(v) for v in xyz), None))
        if self._worker is None:
            self._measure_queued()

    def _measure_queued(self) -> None:
        queued, self._queue = self._queue, []
        new_names: list[str] = []
        for _, name in queued:
            new_names.append(name or self._free_name(new_names))
        before = (list(self._seeds_mm), list(self._names))
        seeds, names = [*before[0], *(q[0] for q in queued)], [*before[1], *new_names]
        try:
            vol, params, mpi = self._volume(), self.params, self.mpi_layer
        except InputError as exc:
            notifications.show_error(str(exc))
            return

        def work():  # the measurement and the label image: nothing left for the GUI thread
            out = measure(vol, seeds, params, names=names, on_error="skip")
            return out, rois_to_label_image(vol, list(out))

        if self._labels_layer is None or self._labels_layer not in self.viewer.layers:
            # the first ROI: the pool's ROI layers raised above the images now, in a turn
            # of their own while the worker measures (a move rebuilds napari's scene graph)
            from mpi_viewer.plugins._layer_pool import raise_pooled
            from qtpy.QtCore import QTimer

            viewer = self.viewer

            def raise_rois():
                try:
                    raise_pooled(viewer, ("roi labels", "labels twin"))
                except Exception as exc:  # noqa: BLE001 - e.g. the window closed meanwhile
                    notifications.show_error(f"ROI layers: {exc}")

            QTimer.singleShot(0, raise_rois)
        self.status.setText(f"Measuring {', '.join(new_names)}…")
        self._worker = start_work(
            work,
            on_done=lambda r: self._measured(*r, seeds, names, before, mpi),
            determinate=False,
            desc="measuring ROIs",
        )
        self._worker.finished.connect(self._measure_finished)

    def _measured(self, out, labels, seeds, names, before, mpi) -> None:
        n_old = len(before[0])
        if (list(self._seeds_mm), list(self._names)) != before or mpi is not self.mpi_layer:
            # the ROIs changed meanwhile (undo, delete, another MPI): measure the clicks again
            if mpi is self.mpi_layer:
                again = list(zip(seeds[n_old:], names[n_old:], strict=True))
                self._queue = again + self._queue
            return
        bad = {i for i, _ in out.errors}
        for _, msg in out.errors:
            notifications.show_error(msg)
        self._seeds_mm = [s for i, s in enumerate(seeds) if i not in bad]
        self._names = [n for i, n in enumerate(names) if i not in bad]
        self._set_results(list(out), labels=labels)
        self._sync_points()
        added = [i for i in range(n_old, len(seeds)) if i not in bad]
        kept = [i for i in range(n_old) if i not in bad]
        for j in range(len(added)):  # one undo step per click
            ids = kept + added[:j]
            self._history.append(([seeds[i] for i in ids], [names[i] for i in ids]))
        self._counter += len(added)

    def _measure_finished(self) -> None:
        self._worker = None
        if self._queue:
            self._measure_queued()

    def undo(self) -> None:
        """Undo the last ROI edit (add, delete, rename)."""
        if not self._history:
            self.status.setText("Nothing to undo.")
            return
        self._seeds_mm, self._names = (list(x) for x in self._history.pop())
        self.recompute()
        self._sync_points()

    def rename(self, old: str, new: str) -> bool:
        """Rename an ROI (names are unique and non-empty); False (a notification) if refused."""
        new = new.strip()
        if old not in self._names or not new or new == old:
            return False
        if new in self._names:
            notifications.show_error(f"an ROI is already named {new!r}")
            return False
        self._history.append((list(self._seeds_mm), list(self._names)))
        self._names = [new if n == old else n for n in self._names]
        for r in self.results:
            if r.name == old:
                r.name = new
        self._set_results(self.results)
        return True

    def _on_item_changed(self, item) -> None:
        if self._filling or item.column() != 0:
            return
        row = item.row()
        if row < len(self._names):
            old = self._names[row]
            if not self.rename(old, item.text()):
                self._filling = True
                item.setText(old)
                self._filling = False

    def remove_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        if any(r >= len(self._seeds_mm) for r in rows):
            notifications.show_warning(
                "manual ROIs: delete the polygon or erase the paint in the manual ROIs "
                "layer, then measure again"
            )
            rows = [r for r in rows if r < len(self._seeds_mm)]
        if rows:
            self._history.append((list(self._seeds_mm), list(self._names)))
        for r in rows:
            del self._seeds_mm[r]
            del self._names[r]
        self.recompute()

    def clear(self) -> None:
        self._seeds_mm, self._names = [], []
        self._manual = []
        self._gone_layer = None
        self._set_results([])
        self._sync_points()

    def _seeds_world(self) -> list:
        layer = self.mpi_layer
        if layer is None or not self._seeds_mm:
            return []
        w = physical_to_world(layer, np.asarray(self._seeds_mm))
        nd = self.viewer.dims.ndim
        if w.shape[1] < nd:
            w = np.hstack([np.zeros((len(w), nd - w.shape[1])), w])
        return list(w)

    def _sync_points(self) -> None:
        """The seed layer shows exactly the accepted seeds."""
        if self._seed_layer is None or self._seed_layer not in self.viewer.layers:
            return
        self._syncing = True
        try:
            w = self._seeds_world()
            self._seed_layer.data = np.asarray(w) if w else np.empty((0, self._seed_layer.ndim))
        finally:
            self._syncing = False
