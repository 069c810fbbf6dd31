"""The fiducials of the registration dock in and out: pairs given by a session, a
template match or a script (:meth:`load_pairs`), and the dock's state as the session
stores it (:meth:`landmarks`, :meth:`state`, :meth:`restore`).

A mixin of :class:`~mpi_viewer.plugins._registration_dock.RegistrationDock`.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from mpi_viewer.plugins._controller import ANATOMY, MPI
from mpi_viewer.plugins._points_pairs import PairState
from mpi_viewer.plugins._registration_base import MODELS, _reg
from napari.utils.notifications import show_error

from mpi_viewer.errors import MPIViewerError


class PairsIOMixin:
    """Part of the registration dock (needs its widgets and pair state)."""

    def load_pairs(
        self,
        names,
        fixed_xyz_mm,
        moving_xyz_mm,
        *,
        fixed_layer=None,
        moving_layer=None,
        excluded=(),
        model: str | None = None,
    ) -> None:
        """Replace the fiducials by given pairs and fit.

        Parameters
        ----------
        names : sequence of str
            One name per pair.
        fixed_xyz_mm, moving_xyz_mm : array_like, shape (n, d)
            Positions in mm, ITK (x, y, z) order, each in its own image's physical
            frame (moving: the MPI as acquired, whatever its display transform).
        fixed_layer, moving_layer : napari layer or str, optional
            The images the points belong to (default: the dock's choice).
        excluded : sequence of str
            Pairs left out of the fit (still shown, with their residuals).
        model : {"rigid", "similarity", "affine"}, optional
            Sets the dock's model first.
        """
        if model is not None and model in MODELS:
            with self.model_combo.changed.blocked():
                self.model_combo.value = model
        for chosen, role, choose in (
            (fixed_layer, ANATOMY, self.ctl.set_anatomy),
            (moving_layer, MPI, self.ctl.set_mpi),
        ):  # a named image of the right role becomes the study's; others are ignored
            layer = self._layer(getattr(chosen, "name", chosen)) if chosen is not None else None
            if layer is not None and self.ctl.role_of(layer) == role:
                choose(layer)
        chosen = (self.fixed_combo.currentText(), self.moving_combo.currentText())
        if (
            self.pairs is not None
            and self.pairs.alive()
            and chosen != (self.pairs.fixed_image.name, self.pairs.moving_image.name)
        ):
            self.pairs = None  # other images chosen: new fiducial layers
        if not self._ensure_started():
            return
        names = [str(n) for n in names]
        d = self.pairs.fixed.ndim
        f = np.asarray(fixed_xyz_mm, dtype=float).reshape(len(names), d)
        m = np.asarray(moving_xyz_mm, dtype=float).reshape(len(names), d)
        self._replace(
            PairState(
                names, f, list(names), m, frozenset(str(n) for n in excluded if str(n) in names)
            )
        )

    def landmarks(self) -> dict:
        """The fiducials as the session stores them: names, each image's own physical mm
        (x, y, z) of the pairs, excluded names, the model and the current fit's RMS FRE (mm)."""
        if self.pairs is None or not self.pairs.alive():
            return {
                "names": [],
                "fixed_xyz_mm": [],
                "moving_xyz_mm": [],
                "excluded": [],
                "model": self.model_combo.value,
                "rms_fre_mm": None,
            }
        names, f, m = self.pairs.pairs()
        return {
            "names": names,
            "fixed_xyz_mm": f.tolist(),
            "moving_xyz_mm": m.tolist(),
            "excluded": [n for n in names if n in self.excluded],
            "model": self.model_combo.value,
            "rms_fre_mm": None if self.fit is None else float(self.fit.rms_fre_mm),
            "fixed": self.pairs.fixed_image.name,
            "moving": self.pairs.moving_image.name,
        }

    def state(self) -> dict:
        """:meth:`landmarks` plus :attr:`params` (``RegistrationParams.to_dict()``), for sessions."""
        return {**self.landmarks(), "params": self.params.to_dict()}

    def restore(self, state: dict) -> None:
        """Set the parameters and the fiducial pairs of :meth:`state`, then fit (errors:
        notifications). With a ``"mold"`` pose record (a template registration) the pairs
        are the mold panel's wells: the registration stays the template's."""
        try:
            p = _reg().RegistrationParams.from_dict(
                state.get("params") or {"model": state.get("model", "rigid")}
            )
            self.fle_spin.value = p.fle_mm
            self.tol_spin.value = p.fre_tolerance_mm
            if state.get("names"):
                load = self.load_pairs
                if state.get("mold"):  # a template registration: its wells and pose choice
                    self.model_combo.value = state.get("model", p.model)
                    load = partial(self._pairs_from_mold, pose=state["mold"])
                load(
                    state["names"],
                    state["fixed_xyz_mm"],
                    state["moving_xyz_mm"],
                    fixed_layer=state.get("fixed"),
                    moving_layer=state.get("moving"),
                    excluded=state.get("excluded", ()),
                    model=state.get("model", p.model),
                )
            else:
                self.model_combo.value = state.get("model", p.model)
        except (MPIViewerError, KeyError, TypeError, ValueError) as exc:
            show_error(f"Fiducial registration: landmarks not restored ({exc})")
