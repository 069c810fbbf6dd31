"""What the Session dock shows of an opened session, one GUI-thread step at a time.

A mixin of :class:`~mpi_viewer.plugins._session_dock.SessionDock`. Everything that
takes time (reading and hashing the inputs, recomputing every number, the ROI label
images, the cells and their overlay arrays) is done in the opening's worker; the GUI
thread only adds each finished layer and restores each dock, in its own turn of the
event loop (:class:`~mpi_viewer.plugins._work.GuiStep`), so the window keeps
repainting. The docks are reached through the controller
(:meth:`~mpi_viewer.plugins._controller.StudyController.section`).
"""

from __future__ import annotations

import numpy as np
from mpi_viewer.plugins import _layers
from mpi_viewer.plugins import _napari_compat as compat
from mpi_viewer.plugins._mold_panel import pose_record
from mpi_viewer.plugins._mold_points import FIXED_POINTS
from mpi_viewer.plugins._work import GuiStep

from mpi_viewer.study import session as S

ROI_LAYER = "ROIs (session)"


def _notify(kind: str, msg: str) -> None:
    from napari.utils import notifications

    {
        "error": notifications.show_error,
        "warning": notifications.show_warning,
        "info": notifications.show_info,
    }[kind](" ".join(str(msg).split()))


class SessionRestoreMixin:
    """The open side of the Session dock (needs ``viewer`` and ``ctl``)."""

    def open_steps(self, s: S.Session, rec, *, block: bool = False):
        """Show ``s`` (recomputed as ``rec``): a generator run in the opening's worker."""
        from mpi_viewer.roi.regions import rois_to_label_image

        layers: dict = {}
        name: dict = {}
        fit = rec.transform()
        moving = (s.registration.moving if s.registration else "mpi") if fit is not None else None
        order = {"mri": 0, "ct": 1, "mpi": 2}  # anatomy below, MPI (additive) above
        inputs = sorted(s.inputs, key=lambda i: order.get(i.role, 3))
        first = next((rec.volumes.get(i.role) for i in inputs if i.role in rec.volumes), None)
        if first is not None and not block:  # a window started empty: its layer pool moved
            from mpi_viewer.plugins._layer_pool import place_for  # onto the first image

            yield GuiStep(lambda: place_for(self.viewer, first))
        for inp in inputs:
            vol = rec.volumes.get(inp.role)
            if vol is not None:
                name[inp.role] = inp.name or vol.name
                same = self._same_layer(name[inp.role], vol)
                yield GuiStep(
                    lambda inp=inp, vol=vol, same=same: self._add_input(
                        layers, inp.role, vol, name, same, placed=inp.role == moving
                    )
                )
        for inp, vol in getattr(rec, "others", ()):  # display only (another MPI channel…)
            yield GuiStep(lambda inp=inp, vol=vol: self._add_other(inp.name or vol.name, vol))
        yield GuiStep(lambda: self._register(s, fit, layers))
        if not block:  # (blocking: tests, scripts; the pool fills on its timer afterwards)
            yield from self._fill_pool()
        results = [r for _, rs in rec.rois for r in rs]
        if results and "mpi" in rec.volumes:
            lab = rois_to_label_image(rec.volumes["mpi"], results)
            yield GuiStep(lambda: self._add_roi_layer(results, lab, layers))
        plan = self._restore_plan(s, rec, name)
        for section, state in plan:
            if section == "cells":
                yield from self._restore_cells(state, block=block)
            else:
                yield from self._restore_in_steps(section, state)
        if s.registration is not None and s.registration.method in (
            "transform",
            "intensity",
            "file",
        ):
            # a refined or loaded transform wins over the landmarks' refit
            yield GuiStep(lambda: self._register(s, fit, layers))
        yield GuiStep(lambda: self._apply_displays(s))

    def _fill_pool(self):
        """The layer pool's layers (:mod:`._layer_pool`: those the docks restore next take
        one), made now, one per turn of the event loop, when this window has none yet (a
        fresh window): the pool is paused while a session opens (:meth:`_opening`), else
        it would make them on its own timer in the same turns as the session's layers."""
        from mpi_viewer.plugins._layer_pool import fill_one

        while True:
            step = GuiStep(lambda: fill_one(self.viewer))
            yield step
            if not step.wait():
                return

    def _same_layer(self, name: str, vol):
        """``(layer, equal)``: the window's image layer ``name`` of the same dimensionality
        as ``vol``, to be reused in place instead of removed and added again (seconds of
        napari's time, and the layer objects others hold stay valid); ``equal``: it shows
        ``vol`` already (same voxels, same grid). None when there is no such layer. Read
        in the worker: nothing is changed here."""
        layer = next((lyr for lyr in list(self.viewer.layers) if lyr.name == name), None)
        if layer is None or type(layer).__name__ != "Image":
            return None
        want = _layers.image_layer_kwargs(vol).get("metadata", {}).get("mpi_viewer", {})
        have = _layers.meta(layer)
        keys = ("modality", "spacing_mm", "origin_mm", "direction")
        try:
            data = layer.data
            if not isinstance(data, np.ndarray) or data.ndim != vol.array.ndim:
                return None
            if getattr(layer, "rgb", False) or getattr(layer, "multiscale", False):
                return None
            same_grid = all(np.allclose(have[k], want[k]) for k in keys[1:] if k in want) and (
                have.get("modality") == want.get("modality")
            )
            equal = same_grid and data.shape == vol.array.shape and np.array_equal(data, vol.array)
        except (KeyError, TypeError, ValueError):
            equal = False
        return layer, bool(equal)

    def _add_input(
        self, layers: dict, role: str, vol, name: dict, same=None, *, placed: bool = False
    ) -> None:
        """Show ``vol`` in the layer ``same`` (:meth:`_same_layer`; its data, placement and
        display set in place unless it shows ``vol`` already), or add it as a new layer;
        ``placed``: the registration places it next (its placement is not reset first)."""
        layer, equal = same if same is not None else (None, False)
        if layer is not None and layer in self.viewer.layers:
            kwargs = _layers.image_layer_kwargs(vol)
            if not equal:  # another image under the same name: its voxels and display
                layer.data = vol.array
                for key in ("colormap", "blending", "contrast_limits"):
                    if key in kwargs:
                        setattr(layer, key, kwargs[key])
                _layers.meta(layer).clear()
            _layers.meta(layer).update(kwargs.get("metadata", {}).get("mpi_viewer", {}))
            if not placed:
                _layers.meta(layer).pop("transform_fixed_to_moving", None)
            for key in ("scale", "translate") if not (placed and equal) else ():
                want = kwargs.get(key, np.full(vol.ndim, 1.0 if key == "scale" else 0.0))
                if not np.allclose(getattr(layer, key), want):
                    setattr(layer, key, want)
            aff = kwargs.get("affine", np.eye(vol.ndim + 1))
            if not placed and not np.allclose(layer.affine.affine_matrix, aff):
                layer.affine = aff
            if equal:
                vol._array = layer.data  # equal voxels: the layer's own array, cached as its volume
            _layers._VOLUMES[layer] = vol
            layers[role] = layer
            return
        if name[role] in self.viewer.layers:
            self.viewer.layers.remove(name[role])
        layers[role] = _layers.add_volume(self.viewer, vol, name=name[role])

    def _add_other(self, name: str, vol) -> None:
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        _layers.add_volume(self.viewer, vol, name=name)

    def _register(self, s: S.Session, fit, layers: dict) -> None:
        mpi_layer = layers.get(s.registration.moving if s.registration else "mpi")
        if fit is not None and mpi_layer is not None:
            fixed = layers.get(s.registration.fixed) if s.registration else None
            _layers.apply_registration(
                mpi_layer, fit.matrix, fit.translation, fixed_name=getattr(fixed, "name", None)
            )

    def _add_roi_layer(self, results: list, lab, layers: dict) -> None:
        """Without an ROI dock, the session's ROIs as a Labels layer on the MPI grid."""
        if self.ctl.section("rois") is not None:
            return
        labels = self.viewer.layers[ROI_LAYER] if ROI_LAYER in self.viewer.layers else None
        if labels is not None and (type(labels).__name__ != "Labels" or labels.ndim != lab.ndim):
            self.viewer.layers.remove(ROI_LAYER)
            labels = None
        if labels is None:
            labels = self.viewer.add_labels(lab, name=ROI_LAYER, units=compat.mm_units(lab.ndim))
        else:  # the window's own layer, its labels set in place (not removed and added again)
            labels.data = lab
        labels.metadata["mpi_viewer"] = dict(_layers.meta(layers["mpi"])) if "mpi" in layers else {}
        labels.metadata["mpi_viewer"]["roi_names"] = [r.name for r in results]
        if "mpi" in layers:
            _layers.copy_placement(layers["mpi"], labels)

    def _dock_for(self, section: str, state: dict):
        """``(section, dock)`` that restores ``state`` (dock None: none is open)."""
        if state.get("wells_in_mold_dock") and self.ctl.section("mold") is not None:
            section = "mold"  # the wells where the user saw them: the Mold dock's layers
        return section, self.ctl.section(section)

    def _restore(self, section: str, state: dict):
        """One dock's ``restore`` (a dock's own problem must not stop the opening)."""
        section, dock = self._dock_for(section, state)
        if dock is None:
            return None
        try:
            return dock.restore(state)
        except Exception as exc:  # noqa: BLE001
            _notify("warning", f"{section}: values not restored ({exc})")
            return None

    def _restore_in_steps(self, section: str, state: dict):
        """One dock's restore as GuiSteps: a dock with ``restore_steps(state)`` (its
        restore as a list of callables, each changing one layer or table) has each run in
        its own turn of the event loop, so their refreshes and redraws do not add up in
        one stall; other docks' ``restore`` runs whole."""

        def pieces():
            name, dock = self._dock_for(section, state)
            if dock is None:
                return []
            if not hasattr(dock, "restore_steps"):
                return [lambda: self._restore(section, state)]
            try:
                return [(name, fn) for fn in dock.restore_steps(state)]
            except Exception as exc:  # noqa: BLE001
                _notify("warning", f"{name}: values not restored ({exc})")
                return []

        step = GuiStep(pieces)
        yield step
        for piece in step.wait() or ():
            if callable(piece):
                yield GuiStep(piece)
            else:
                yield GuiStep(lambda piece=piece: self._run_piece(*piece))

    @staticmethod
    def _run_piece(section: str, fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a dock's own problem must not stop the opening
            _notify("warning", f"{section}: values not restored ({exc})")

    def _restore_cells(self, state: dict, *, block: bool):
        """The Cells dock's iron per cell, then its cells and overlays computed here (in
        the opening's worker), drawn one layer per step."""
        from mpi_viewer.errors import InputError

        def prepare():
            dock = self.ctl.section("cells")
            if dock is None or not dock.set_state(state) or self.ctl.calibration is None:
                return None
            try:
                return dock, dock.inputs()
            except InputError as exc:
                _notify("error", str(exc))
                return None

        step = GuiStep(prepare)
        yield step
        got = step.wait()
        if got is None:
            return
        dock, inp = got
        out = yield from dock.compute_steps(inp)
        yield GuiStep(lambda: dock._computed(out))

    def _apply_displays(self, s: S.Session) -> None:
        for d in s.layers:
            if d.name in self.viewer.layers:
                self._apply_display(self.viewer.layers[d.name], d)

    @staticmethod
    def _apply_display(layer, d: S.LayerDisplay) -> None:
        # only what differs: each change makes napari redraw the layer (and its 2-D twin)
        try:
            image = type(layer).__name__ == "Image"
            if d.colormap and image and getattr(layer.colormap, "name", None) != d.colormap:
                layer.colormap = d.colormap
            if (
                d.contrast_limits
                and image
                and not np.allclose(layer.contrast_limits, d.contrast_limits)
            ):
                layer.contrast_limits = d.contrast_limits
            if d.blending and str(layer.blending) != d.blending:
                layer.blending = d.blending
            if float(layer.opacity) != float(d.opacity):
                layer.opacity = d.opacity
            if bool(layer.visible) != bool(d.visible):
                layer.visible = d.visible
        except (ValueError, KeyError, TypeError) as exc:
            _notify("warning", f"layer {d.name!r}: display setting not restored ({exc})")

    def _restore_plan(self, s: S.Session, rec, name: dict) -> list:
        """(section, state) for each dock's ``restore``, in the order of the workflow:
        landmarks, ROIs (with their recomputed results and label image: not measured
        again), calibration, cells. Made in the worker: no dock is touched here."""
        from mpi_viewer.roi.regions import rois_to_label_image

        steps = []
        reg = s.registration
        if reg is not None:
            lm = reg.landmarks
            names, fx, mv = lm.names, lm.fixed_xyz_mm, lm.moving_xyz_mm
            excluded, mold, in_mold_dock = list(lm.excluded), None, False
            found = rec.registration
            if not names and found is not None:  # template: the matched wells, its pose
                names = list(found.matched_names)
                fx, mv = found.fixed_xyz_mm, found.moving_xyz_mm
                in_mold_dock = FIXED_POINTS in {d.name for d in s.layers}
                if found.candidates:
                    excluded = list(found.candidates[found.chosen].cut_excluded)
                mold = pose_record(found, reg.template, reg.mold.tolerance_mm if reg.mold else None)
            params = {
                "model": reg.model,
                **({"fle_mm": reg.fle_mm} if reg.fle_mm is not None else {}),
            }
            if names:
                steps.append(
                    (
                        "registration",
                        {
                            "names": list(names),
                            "fixed_xyz_mm": np.asarray(fx, float).tolist(),
                            "moving_xyz_mm": np.asarray(mv, float).tolist(),
                            "excluded": excluded,
                            "model": reg.model,
                            "fixed": name.get(reg.fixed),
                            "moving": name.get(reg.moving),
                            "params": params,
                            "wells_in_mold_dock": in_mold_dock,
                            **({"mold": mold} if mold else {}),
                        },
                    )
                )
        if s.rois:
            sec = s.rois[0]
            seeded = [r for r in rec.rois[0][1] if r.method != "manual"] if rec.rois else []
            steps.append(
                (
                    "rois",
                    {
                        "layer": name.get(sec.image),
                        "params": sec.params,
                        "seeds_xyz_mm": sec.seeds_xyz_mm,
                        "names": sec.names,
                        "manual": self._manual_state(rec, 0),
                        "results": seeded,
                        "labels": self._shown_or(
                            rois_to_label_image(rec.volumes[sec.image], seeded)
                            if seeded and sec.image in rec.volumes
                            else None
                        ),
                    },
                )
            )
        if rec.calibration is not None:
            steps.append(("calibration", self._calibration_state(s, rec, name)))
            if s.cells is not None or rec.calibration.kind == "cells":
                cells = s.cells or S.CellsSection()  # the default iron per cell
                steps.append(
                    (
                        "cells",
                        {
                            "mean_pg": cells.mean_pg,
                            "sd_pg": cells.sd_pg,
                            "from_cells": s.cells is None,
                        },
                    )
                )
        return steps

    def _shown_or(self, lab):
        """``lab`` (the ROIs' label image), or the array the ROI dock's own labels layer
        shows already when it holds the same labels (read in the worker): the dock then
        leaves the layer as it is instead of uploading and redrawing the same voxels."""
        from mpi_viewer.plugins._display2d_twins import same_array

        if lab is None:
            return None
        dock = self.ctl.section("rois")
        shown = getattr(getattr(dock, "_labels_layer", None), "data", None)
        return shown if same_array(shown, lab) else lab

    @staticmethod
    def _manual_state(rec, index: int) -> dict | None:
        """The ROI dock's manual ROIs of ROI section ``index``, as recomputed from its masks:
        a label image on the MPI grid (labels 1…n in the table's order) and their names."""
        sec, results = rec.rois[index]
        manual = [r for r in results if r.method == "manual"]
        if not manual:
            return None
        lab = np.zeros(tuple(rec.volumes[sec.image].shape), dtype=np.uint16)
        for k, r in enumerate(manual):
            sub = lab[r.mask.slices]
            sub[r.mask.array & (sub == 0)] = k + 1
        return {"labels": lab, "names": [r.name for r in manual]}

    @staticmethod
    def _calibration_state(s: S.Session, rec, name: dict) -> dict:
        """The calibration dock's state of a session: its phantoms, options and the
        recomputed calibration (with its raw points)."""
        c, sec = rec.calibration, s.calibration
        phantoms = []
        if sec.source == "phantoms":
            from mpi_viewer.calibration.phantoms import read_phantoms_csv

            phantoms = [
                [p.name, list(p.xyz_mm), p.iron_ug]
                for p in read_phantoms_csv(s.resolve(s.input("phantoms").path), min_count=1)
            ]
        options = {
            "name": c.name,
            "kind": c.kind,
            "through_origin": c.through_origin,
            "weighting": c.weighting,
            "mode": c.mode,
            "reference": sec.options.get("reference"),
            "tracer": c.tracer,
            "tracer_lot": c.tracer_lot,
            "environment": c.environment,
            "preparation": c.preparation,
        }
        roi = (
            sec.roi_params if sec.roi_params is not None else (s.rois[0].params if s.rois else None)
        )
        return {
            "layer": name.get("mpi"),
            "options": options,
            "phantoms": phantoms,
            "roi_params": roi if sec.source == "phantoms" else None,
            "calibration": c.to_dict(),
        }
