"""The "Session" dock: save, save as and open whole analyses; autosave and crash recovery.

Thin: the session file is :mod:`mpi_viewer.session`, the numbers come from
:mod:`mpi_viewer._pipeline` (the same code as ``mpi-viewer replay``). Opening a session
reads its inputs, adds them as layers placed in physical space, draws the MPI through
the stored transform, adds the ROIs as a Labels layer on the MPI grid, restores each
layer's display settings, hands landmarks / ROI parameters / results to the other
docks when they are open, and says whether the recomputed numbers match the stored
ones.

Every few minutes, and when the window closes, the current state is written to a
recovery file (``~/.cache/mpi-viewer/recovery``, or ``$MPI_VIEWER_RECOVERY_DIR``);
after a crash the next dock offers it back (:meth:`SessionDock.recover`).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from napari.viewer import Viewer
from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from mpi_viewer import session as S
from mpi_viewer.errors import InputError, MPIViewerError

from . import _layers

#: Autosave interval (ms): every three minutes.
AUTOSAVE_MS = 3 * 60 * 1000
_ROLE_OF = {"MPI": "mpi", "MRI": "mri", "CT": "ct"}
ROI_LAYER = "ROIs (session)"


def _notify(kind: str, msg: str) -> None:
    from napari.utils import notifications

    {"error": notifications.show_error, "warning": notifications.show_warning,
     "info": notifications.show_info}[kind](" ".join(str(msg).split()))


class _CloseWatcher(QObject):
    def __init__(self, callback):
        super().__init__()
        self._callback = callback

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        if event.type() == QEvent.Close:
            self._callback()
        return False


class SessionDock(QWidget):
    """Save, save as, open; autosave and recovery.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    autosave_ms : int, optional
        Autosave interval (default :data:`AUTOSAVE_MS`); 0 disables the timer.
    ask : callable(question: str) -> bool, optional
        Asks the user a yes/no question (a QMessageBox by default); tests pass a stub.
    """

    def __init__(self, napari_viewer, *, autosave_ms: int | None = None, ask=None):
        super().__init__()
        self.viewer = napari_viewer
        self.session: S.Session | None = None  # the analysis last opened or saved
        self.path: Path | None = None
        self.differences: list[str] = []
        self.rows: list[dict] = []
        self.recovered_from: Path | None = None
        self._ask = ask or self._ask_box
        self._hashes: dict[tuple, str] = {}

        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        for text, slot in (("Open…", self._open_clicked), ("Save", self._save_clicked),
                           ("Save as…", self._save_as_clicked)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            row.addWidget(b)
        lay.addLayout(row)
        self.status = QLabel("no session")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        lay.addStretch(1)

        interval = AUTOSAVE_MS if autosave_ms is None else int(autosave_ms)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.autosave_now)
        if interval > 0:
            self._timer.start(interval)
        self._watcher = _CloseWatcher(self._on_close)
        try:
            self.viewer.window._qt_window.installEventFilter(self._watcher)
        except AttributeError:  # pragma: no cover - headless viewer
            pass
        self._offer_recovery()

    # ------------------------------------------------------------------ buttons
    def _open_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", "", "mpi-viewer session (*.json)")
        if path:
            self.open(path)

    def _save_clicked(self) -> None:
        if self.path is None:
            self._save_as_clicked()
        else:
            self.save(self.path)

    def _save_as_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save session as", "", "mpi-viewer session (*.json)")
        if path:
            if not path.endswith(".json"):
                path += ".json"
            self.save(path)

    def _ask_box(self, question: str) -> bool:
        r = QMessageBox.question(self, "mpi-viewer session", question, QMessageBox.Yes | QMessageBox.No)
        return r == QMessageBox.Yes

    # ------------------------------------------------------------------ collect
    def _hash(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        if key not in self._hashes:
            self._hashes[key] = S.sha256_file(path)
        return self._hashes[key]

    def _image_inputs(self, session_path: Path) -> list[S.InputFile]:
        out, roles = [], set()
        for layer in self.viewer.layers:
            if layer._type_string != "image":
                continue
            m = layer.metadata.get("mpi_viewer", {})
            src = m.get("source")
            if not src or not Path(src).exists():
                continue
            role = _ROLE_OF.get(m.get("modality"), "other")
            if role in roles and role != "other":
                role = "other"
            roles.add(role)
            p = Path(src).resolve()
            out.append(S.InputFile(role=role, path=S.relative_path(p, session_path), sha256=self._hash(p),
                                   modality=m.get("modality"), name=layer.name,
                                   acquisition=dict(m.get("acquisition") or {})))
        return out

    def _layer_displays(self) -> list[S.LayerDisplay]:
        out = []
        for layer in self.viewer.layers:
            cmap = getattr(layer, "colormap", None)
            name = getattr(cmap, "name", None) if layer._type_string == "image" else None
            cl = getattr(layer, "contrast_limits", None) if layer._type_string == "image" else None
            out.append(S.LayerDisplay(name=layer.name, colormap=name,
                                      contrast_limits=None if cl is None else [float(cl[0]), float(cl[1])],
                                      visible=bool(layer.visible), opacity=float(layer.opacity),
                                      blending=str(getattr(layer, "blending", None) or "") or None))
        return out

    def collect(self, session_path: str | Path) -> S.Session:
        """The viewer's state as a session whose paths are relative to ``session_path``.

        Inputs are the layers read from files; the analysis (registration, ROIs,
        calibration, cells, results) is the one last opened or saved, updated from
        the viewer (the MPI layer's current transform).
        """
        session_path = Path(session_path).resolve()
        base = copy.deepcopy(self.session) if self.session is not None else S.Session()
        old_folder = self.session.folder if (self.session is not None and self.session.path) else None
        images = self._image_inputs(session_path)
        others = []
        for inp in base.inputs:
            if inp.role in ("mri", "ct", "mpi", "other"):
                continue
            if old_folder is not None:  # phantoms, calibration files: re-anchor to the new folder
                p = (old_folder / inp.path).resolve()
                inp = S.InputFile(inp.role, S.relative_path(p, session_path), inp.sha256, inp.modality,
                                  inp.name, inp.acquisition)
            others.append(inp)
        # image inputs not shown as layers (closed by the user) stay part of the analysis
        shown = {i.role for i in images}
        for inp in base.inputs:
            if inp.role in ("mri", "ct", "mpi") and inp.role not in shown and old_folder is not None:
                p = (old_folder / inp.path).resolve()
                images.append(S.InputFile(inp.role, S.relative_path(p, session_path), inp.sha256,
                                          inp.modality, inp.name, inp.acquisition))
        base.inputs = images + others
        if old_folder is not None:  # files written beside the old session: re-anchor them too
            def anchor(rel):
                return S.relative_path((old_folder / rel).resolve(), session_path)

            if base.registration is not None and base.registration.transform_file:
                base.registration.transform_file = anchor(base.registration.transform_file)
            for sec in base.rois:
                for m in sec.masks:
                    m.path = anchor(m.path)
        base.layers = self._layer_displays()
        self._transform_from_layers(base)
        base.path = session_path
        return base

    def _transform_from_layers(self, s: S.Session) -> None:
        for layer in _layers.find_layers(self.viewer, "MPI"):
            t = layer.metadata.get("mpi_viewer", {}).get("transform_fixed_to_moving")
            if not t:
                continue
            m, tr = np.asarray(t["matrix"], float), np.asarray(t["translation"], float)
            reg = s.registration
            if reg is None:
                s.registration = S.RegistrationSection(method="transform", model="affine",
                                                       matrix=m.tolist(), translation=tr.tolist())
            elif reg.matrix is None or not (np.allclose(reg.matrix, m, atol=1e-12)
                                            and np.allclose(reg.translation, tr, atol=1e-12)):
                # the user changed the registration in the viewer: keep it as given
                s.registration = S.RegistrationSection(fixed=reg.fixed, moving=reg.moving, method="transform",
                                                       model=reg.model, landmarks=reg.landmarks,
                                                       matrix=m.tolist(), translation=tr.tolist())
            return

    # ------------------------------------------------------------------ save
    def save(self, path: str | Path) -> Path | None:
        """Save the viewer's analysis to ``path``: recomputed through the pipeline, so the
        stored numbers are exactly what ``mpi-viewer replay`` will find."""
        from mpi_viewer import _pipeline as P

        try:
            s = self.collect(path)
            if s.registration or s.rois:
                out, rec = P.compute_and_save(s, path)
                self.rows = rec.rows
            else:
                out = S.save_session(s, path)
        except (MPIViewerError, OSError) as exc:
            _notify("error", f"session not saved: {exc}")
            return None
        self.session, self.path = s, Path(out)
        self.status.setText(f"saved {out}")
        return Path(out)

    def autosave_now(self) -> Path | None:
        """Write the current state to this process's recovery file (no recomputation)."""
        if self.session is None and not any(_layers.find_layers(self.viewer)):
            return None
        rp = S.recovery_path()
        try:
            s = self.collect(rp)
            if self.path is not None:
                s.notes = f"recovery of {self.path}"
            S.atomic_write_text(rp, S.dumps_session(s))
        except (MPIViewerError, OSError, ValueError) as exc:
            _notify("warning", f"autosave failed: {exc}")
            return None
        return rp

    def _on_close(self) -> None:
        self.autosave_now()
        self._timer.stop()

    # ------------------------------------------------------------------ open
    def open(self, path: str | Path, *, allow_changed_inputs: bool | None = None) -> bool:
        """Open a session: layers, transform, ROIs, display settings, docks, results.

        Returns False (after a notification) when the session cannot be opened.
        """
        from mpi_viewer import _pipeline as P

        try:
            s = S.load_session(path)
            outside = [w for w in s.warnings if "outside its folder" in w]
            for w in s.warnings:
                if w not in outside:
                    _notify("warning", w)
            if outside and self.recovered_from is None and not self._ask(outside[0] + ". Open them?"):
                return False
            try:
                notes = s.verify_inputs(allow_changed=bool(allow_changed_inputs))
            except InputError as exc:
                if allow_changed_inputs is not None or not self._ask(f"{exc}. Open anyway?"):
                    raise
                notes = s.verify_inputs(allow_changed=True)
            for n in notes:
                _notify("warning", n)
            rec = P.recompute(s)
        except MPIViewerError as exc:
            _notify("error", f"session not opened: {exc}")
            return False
        self._show(s, rec)
        self.differences = P.compare(s, rec) if s.results else []
        self.rows = rec.rows
        self.session, self.path = s, (None if self.recovered_from else Path(path))
        if self.differences:
            _notify("warning", f"{len(self.differences)} recomputed number(s) differ from the session: "
                    f"{self.differences[0]}")
        self.status.setText(f"opened {path}" + (" — numbers match" if s.results and not self.differences else ""))
        return True

    def _show(self, s: S.Session, rec) -> None:
        layers = {}
        order = {"mri": 0, "ct": 1, "mpi": 2}  # anatomy below, MPI (additive) above
        for inp in sorted(s.inputs, key=lambda i: order.get(i.role, 3)):
            vol = rec.volumes.get(inp.role)
            if vol is None:
                continue
            name = inp.name or vol.name
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            layers[inp.role] = _layers.add_volume(self.viewer, vol, name=name)
        fit = rec.transform()
        mpi_layer = layers.get(s.registration.moving if s.registration else "mpi")
        if fit is not None and mpi_layer is not None:
            fixed = layers.get(s.registration.fixed)
            _layers.apply_registration(mpi_layer, fit[0], fit[1], fixed_name=getattr(fixed, "name", None))
        results = [r for _, rs in rec.rois for r in rs]
        if results and "mpi" in rec.volumes:
            from mpi_viewer.roi import rois_to_label_image

            if ROI_LAYER in self.viewer.layers:
                self.viewer.layers.remove(ROI_LAYER)
            labels = self.viewer.add_labels(rois_to_label_image(rec.volumes["mpi"], results), name=ROI_LAYER)
            labels.metadata["mpi_viewer"] = dict(_layers.meta(layers["mpi"])) if "mpi" in layers else {}
            labels.metadata["mpi_viewer"]["roi_names"] = [r.name for r in results]
            if "mpi" in layers:
                _layers.copy_placement(layers["mpi"], labels)
        for d in s.layers:
            if d.name in self.viewer.layers:
                self._apply_display(self.viewer.layers[d.name], d)
        self._fill_docks(s, rec, layers)

    @staticmethod
    def _apply_display(layer, d: S.LayerDisplay) -> None:
        try:
            if d.colormap and layer._type_string == "image":
                layer.colormap = d.colormap
            if d.contrast_limits and layer._type_string == "image":
                layer.contrast_limits = d.contrast_limits
            if d.blending:
                layer.blending = d.blending
            layer.opacity = d.opacity
            layer.visible = d.visible
        except (ValueError, KeyError, TypeError) as exc:
            _notify("warning", f"layer {d.name!r}: display setting not restored ({exc})")

    def _docks(self) -> list:
        win = self.viewer.window
        docks = win.dock_widgets if hasattr(win, "dock_widgets") else getattr(win, "_dock_widgets", {})
        out = []
        for d in list(docks.values()):
            w = d.widget() if hasattr(d, "widget") else d
            if w is not None and w is not self:
                out.append(w)
        return out

    def _fill_docks(self, s: S.Session, rec, layers: dict) -> None:
        """Hand the session's values to the docks that are open (each step guarded)."""
        reg = s.registration
        for w in self._docks():
            try:
                if reg is not None:  # point the dock at the session's fixed and moving layers
                    for attr, role in (("fixed_combo", reg.fixed), ("moving_combo", reg.moving)):
                        combo, layer = getattr(w, attr, None), layers.get(role)
                        if combo is not None and layer is not None and hasattr(combo, "setCurrentText"):
                            combo.setCurrentText(layer.name)
                if hasattr(w, "load_pairs") and reg is not None:
                    names = reg.landmarks.names
                    fx, mv = reg.landmarks.fixed_xyz_mm, reg.landmarks.moving_xyz_mm
                    if not names and rec.registration is not None:
                        names = rec.registration.matched_names
                        fx, mv = rec.registration.fixed_xyz_mm, rec.registration.moving_xyz_mm
                    if names:
                        w.load_pairs(names, fx, mv)
                if hasattr(w, "set_params") and s.rois:
                    from mpi_viewer.roi import ROIParams

                    w.set_params(ROIParams.from_dict(s.rois[0].params))
                if hasattr(w, "set_results") and rec.rois:
                    w.set_results([r for _, rs in rec.rois for r in rs])
                if hasattr(w, "set_iron_per_cell") and s.cells is not None:
                    w.set_iron_per_cell(s.cells.mean_pg, s.cells.sd_pg)
            except Exception as exc:  # noqa: BLE001 - a dock's own problem must not stop the opening
                _notify("warning", f"{type(w).__name__}: values not restored ({exc})")

    # ------------------------------------------------------------------ recovery
    def pending_recoveries(self) -> list[Path]:
        return S.pending_recoveries()

    def _offer_recovery(self) -> None:
        pending = self.pending_recoveries()
        if not pending:
            return
        self._recovery_box = box = QMessageBox(self)
        box.setWindowTitle("mpi-viewer: recover session")
        box.setText(f"mpi-viewer did not close properly. Recover the autosaved session {pending[0].name}?")
        box.setStandardButtons(QMessageBox.Yes | QMessageBox.No)
        box.buttonClicked.connect(lambda b: self.recover(pending[0]) if box.standardButton(b) == QMessageBox.Yes
                                  else None)
        QTimer.singleShot(0, box.open)  # non-blocking, after the window is up

    def recover(self, path: str | Path) -> bool:
        """Open a recovery file, then remove it (the state is autosaved anew)."""
        path = Path(path)
        self.recovered_from = path
        ok = False
        try:
            ok = self.open(path, allow_changed_inputs=False)
        finally:
            if not ok:
                self.recovered_from = None
        if ok:
            try:
                path.unlink()
            except OSError:
                pass
            self.autosave_now()
        return ok


# -- File menu actions ------------------------------------------------------------------------------
def _session_dock_of(viewer) -> SessionDock:
    """The viewer's Session dock, opened if it is not."""
    for w in (viewer.window.dock_widgets.values() if hasattr(viewer.window, "dock_widgets") else []):
        if isinstance(w, SessionDock):
            return w
    _, widget = viewer.window.add_plugin_dock_widget("mpi-viewer", "Session")
    return widget


def open_session_action(viewer: Viewer) -> None:
    """File ▸ Open mpi-viewer session…"""
    _session_dock_of(viewer)._open_clicked()


def save_session_action(viewer: Viewer) -> None:
    """File ▸ Save mpi-viewer session"""
    _session_dock_of(viewer)._save_clicked()


def save_session_as_action(viewer: Viewer) -> None:
    """File ▸ Save mpi-viewer session as…"""
    _session_dock_of(viewer)._save_as_clicked()
