"""The "Session" dock: save, save as and open whole analyses; autosave and crash recovery.

Thin: the session file is :mod:`mpi_viewer.study.session`, the numbers come from
:mod:`mpi_viewer.study.pipeline` (the same code as ``mpi-viewer replay``). Opening a session
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
from mpi_viewer.plugins import _layers
from mpi_viewer.plugins import _napari_compat as compat
from mpi_viewer.plugins._layers import install_mm_units
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

from mpi_viewer.errors import InputError, MPIViewerError
from mpi_viewer.study import session as S

#: Autosave interval (ms): every three minutes.
AUTOSAVE_MS = 3 * 60 * 1000
_ROLE_OF = {"MPI": "mpi", "MRI": "mri", "CT": "ct"}
ROI_LAYER = "ROIs (session)"
#: The dock's display name in napari.yaml.
SESSION_DOCK_NAME = "Session"


def _notify(kind: str, msg: str) -> None:
    from napari.utils import notifications

    {
        "error": notifications.show_error,
        "warning": notifications.show_warning,
        "info": notifications.show_info,
    }[kind](" ".join(str(msg).split()))


def _volume_writer(volume):
    """A writer of an in-memory image (+ sidecar JSON with modality and acquisition)."""
    from mpi_viewer.io.images import write_volume

    return lambda path: write_volume(volume, path)


def _labels_writer(labels, volume):
    """A writer of a label image on ``volume``'s grid (NRRD: double-precision geometry)."""

    def write(path):
        import SimpleITK as sitk

        lab = np.asarray(labels)
        if lab.dtype.kind not in "ui" or (lab.size and lab.min() < 0):
            raise InputError(
                f"manual ROIs: labels of type {lab.dtype} are not non-negative integers"
            )
        img = sitk.GetImageFromArray(
            lab.astype(np.uint16 if lab.max(initial=0) <= 65535 else np.uint32)
        )
        img.CopyInformation(volume.image)
        from mpi_viewer.io.atomic import atomic_write_image

        atomic_write_image(path, img, compress=True)

    return write


def _phantoms_csv(phantoms) -> str:
    """Phantoms (name, (x, y, z) MPI mm, amount) as ``name,x,y,z,iron_ug`` text (exact floats)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "x", "y", "z", "iron_ug"])
    for n, xyz, a in phantoms:
        w.writerow([n, *(repr(float(v)) for v in xyz), repr(float(a))])
    return buf.getvalue()


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
        install_mm_units(self.viewer)  # world = physical mm, for every layer
        self.session: S.Session | None = None  # the analysis last opened or saved
        self.path: Path | None = None
        self.differences: list[str] = []
        self.rows: list[dict] = []
        self.recovered_from: Path | None = None
        self._ask = ask or self._ask_box
        self._hashes: dict[tuple, str] = {}

        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        for text, slot in (
            ("Open…", self._open_clicked),
            ("Save", self._save_clicked),
            ("Save as…", self._save_as_clicked),
        ):
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
        compat.install_close_filter(self.viewer, self._watcher)
        self._offer_recovery()

    # ------------------------------------------------------------------ buttons
    def _open_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open session", "", "mpi-viewer session (*.json)"
        )
        if path:
            self.open(path, block=False)

    def _save_clicked(self) -> None:
        if self.path is None:
            self._save_as_clicked()
        else:
            self.save(self.path, block=False)

    def _save_as_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save session as", "", "mpi-viewer session (*.json)"
        )
        if path:
            if not path.endswith(".json"):
                path += ".json"
            self.save(path, block=False)

    def _ask_box(self, question: str) -> bool:
        r = QMessageBox.question(
            self, "mpi-viewer session", question, QMessageBox.Yes | QMessageBox.No
        )
        return r == QMessageBox.Yes

    # ------------------------------------------------------------------ collect
    def _hash(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        if key not in self._hashes:
            self._hashes[key] = S.sha256_file(path)
        return self._hashes[key]

    def _image_inputs(self, session_path: Path, writes: list) -> list[S.InputFile]:
        """Inputs of the image layers: read from a file (hashed), or made in memory (an MPI,
        MRI or CT such as the demo: written once beside the session as NIfTI, see
        :meth:`_write_files`). Derived images (cell density…) are not inputs."""
        from mpi_viewer.plugins._controller import get_controller

        out, roles = [], set()
        layers = list(_layers.find_layers(self.viewer))
        study_mpi = get_controller(self.viewer).mpi
        if study_mpi in layers:  # the study's MPI is "the" mpi; other MPI layers are "other"
            layers.remove(study_mpi)
            layers.insert(0, study_mpi)
        for layer in layers:
            m = layer.metadata.get("mpi_viewer", {})
            src = m.get("source")
            has_file = bool(src) and Path(src).is_file()
            if not has_file and m.get("modality") not in _ROLE_OF:
                continue
            role = _ROLE_OF.get(m.get("modality"), "other")
            if role in roles and role != "other":
                role = "other"
            roles.add(role)
            acq = dict(m.get("acquisition") or {})
            if has_file:
                p = Path(src).resolve()
                out.append(
                    S.InputFile(
                        role=role,
                        path=S.relative_path(p, session_path),
                        sha256=self._hash(p),
                        modality=m.get("modality"),
                        name=layer.name,
                        acquisition=acq,
                        selection=_layers.image_selection(layer),
                    )
                )
                continue
            # NRRD, not NIfTI: NIfTI keeps the origin and direction in float32, which moves
            # every physical position (peaks, seeds) by ~1e-7 relative; NRRD keeps doubles
            p = S.file_beside(session_path, f"{session_path.stem}_{role}_{len(out)}.nrrd")
            inp = S.InputFile(
                role=role,
                path=S.relative_path(p, session_path),
                sha256="0" * 64,
                modality=m.get("modality"),
                name=layer.name,
                acquisition=acq,
            )
            writes.append((inp, p, _volume_writer(_layers.volume_from_layer(layer)), layer))
            out.append(inp)
        return out

    def _layer_displays(self) -> list[S.LayerDisplay]:
        out = []
        for layer in self.viewer.layers:
            if _layers.is_display_twin(layer):  # a 2-D display copy, remade when reopened
                continue
            cmap = getattr(layer, "colormap", None)
            name = getattr(cmap, "name", None) if type(layer).__name__ == "Image" else None
            cl = (
                getattr(layer, "contrast_limits", None) if type(layer).__name__ == "Image" else None
            )
            out.append(
                S.LayerDisplay(
                    name=layer.name,
                    colormap=name,
                    contrast_limits=None if cl is None else [float(cl[0]), float(cl[1])],
                    visible=bool(layer.visible),
                    opacity=float(layer.opacity),
                    blending=str(getattr(layer, "blending", None) or "") or None,
                )
            )
        return out

    def collect(self, session_path: str | Path, *, deferred: list | None = None) -> S.Session:
        """The viewer's state as a session whose paths are relative to ``session_path``.

        Inputs are the image layers; registration, ROIs, calibration and iron per cell
        come from the open docks (:meth:`state` of each), else from the session last
        opened or saved; the MPI layer's current transform wins over a stored one.
        Files to write beside the session (images made in memory, the phantoms) are
        written now, or appended to ``deferred`` as (InputFile, path, writer) for
        :meth:`_write_files`.
        """
        session_path = Path(session_path).resolve()
        writes: list = []
        base = copy.deepcopy(self.session) if self.session is not None else S.Session()
        old_folder = (
            self.session.folder if (self.session is not None and self.session.path) else None
        )
        images = self._image_inputs(session_path, writes)
        others = []
        for inp in base.inputs:
            if inp.role in ("mri", "ct", "mpi", "other"):
                continue
            if old_folder is not None:  # phantoms, calibration files: re-anchor to the new folder
                p = (old_folder / inp.path).resolve()
                inp = S.InputFile(
                    inp.role,
                    S.relative_path(p, session_path),
                    inp.sha256,
                    inp.modality,
                    inp.name,
                    inp.acquisition,
                )
            others.append(inp)
        # image inputs not shown as layers (closed by the user) stay part of the analysis
        shown = {i.role for i in images}
        for inp in base.inputs:
            if (
                inp.role in ("mri", "ct", "mpi")
                and inp.role not in shown
                and old_folder is not None
            ):
                p = (old_folder / inp.path).resolve()
                images.append(
                    S.InputFile(
                        inp.role,
                        S.relative_path(p, session_path),
                        inp.sha256,
                        inp.modality,
                        inp.name,
                        inp.acquisition,
                    )
                )
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
        self._sections_from_docks(base, session_path, writes, autosave=deferred is None)
        self._transform_from_layers(base)
        base.path = session_path
        if deferred is None:  # autosave: the recovery file's own copies, not remembered
            self._write_files(writes, remember=False)
        else:
            deferred.extend(writes)
        return base

    def _roles(self, s: S.Session) -> dict[str, str]:
        return {inp.name: inp.role for inp in s.inputs if inp.name}

    def _sections_from_docks(
        self, s: S.Session, session_path: Path, writes: list, *, autosave: bool = False
    ) -> None:
        """Registration, ROIs, calibration and iron per cell from the docks that are open.

        The ROI dock's manual ROIs (a label image on the MPI grid) are written beside the
        session as NRRD and named by a :class:`~mpi_viewer.study.session.MaskFile`. An ROI dock
        whose MPI layer is gone (the viewer closing) is skipped by the autosave, quietly.
        """
        docks, roles = self._dock_by_class(), self._roles(s)
        reg = docks.get("RegistrationDock")
        st = reg.state() if reg is not None else None
        if (
            st
            and st["names"]
            and reg.fit is not None
            and {st.get("fixed"), st.get("moving")} <= set(roles)
        ):
            s.registration = S.RegistrationSection(
                fixed=roles[st["fixed"]],
                moving=roles[st["moving"]],
                method="landmarks",
                model=st["model"],
                fle_mm=st["params"].get("fle_mm"),
                landmarks=S.Landmarks(
                    list(st["names"]), st["fixed_xyz_mm"], st["moving_xyz_mm"], list(st["excluded"])
                ),
                matrix=np.asarray(reg.fit.matrix, float).tolist(),
                translation=np.asarray(reg.fit.translation, float).tolist(),
            )
        roi = docks.get("ROIDock")
        if roi is not None:
            self._roi_sections(roi, s, session_path, writes, roles, autosave=autosave)
        cal = docks.get("CalibrationDock")
        if cal is not None:
            s.inputs = [i for i in s.inputs if i.role not in ("phantoms", "calibration")]
            s.calibration = self._calibration_section(cal, s, session_path, writes)
        cells = docks.get("CellsDock")
        if cells is not None:
            st = cells.state()
            s.cells = None
            if cells.results and not st["from_cells"] and s.calibration is not None:
                s.cells = S.CellsSection(mean_pg=float(st["mean_pg"]), sd_pg=float(st["sd_pg"]))

    def _roi_sections(
        self, dock, s: S.Session, session_path: Path, writes: list, roles: dict, *, autosave: bool
    ) -> None:
        st = dock.state()
        manual = st.get("manual")
        if not st["seeds_xyz_mm"] and manual is None:
            s.rois = []
            return
        layer = self.viewer.layers[st["layer"]] if st["layer"] in self.viewer.layers else None
        if st["layer"] not in roles or (manual is not None and layer is None):
            if autosave:  # its MPI layer is gone (the viewer is closing): keep what was saved
                return
            raise InputError(f"ROI layer {st['layer']!r} is not an image the session can name")
        masks = []
        if manual is not None:
            p = S.file_beside(session_path, f"{session_path.stem}_manual_rois.nrrd")
            m = S.MaskFile(
                name="manual",
                path=S.relative_path(p, session_path),
                sha256="0" * 64,
                names=[str(n) for n in manual["names"]],
            )
            writes.append(
                (m, p, _labels_writer(manual["labels"], _layers.volume_from_layer(layer)), None)
            )
            masks.append(m)
        method = st["params"]["method"] if st["seeds_xyz_mm"] else "manual"
        s.rois = [
            S.ROISection(
                method=method,
                params=st["params"],
                seeds_xyz_mm=st["seeds_xyz_mm"],
                names=st["names"],
                image=roles[st["layer"]],
                masks=masks,
            )
        ]

    def _calibration_section(self, dock, s: S.Session, session_path: Path, writes: list):
        """The calibration dock's fit as replayable phantoms (CSV written beside the session,
        measured and fitted again by replay) or, for a calibration not fitted here (library,
        import), as stored with its raw points."""
        st = dock.state()
        if st["calibration"] is None:
            return None
        phantoms = st["phantoms"]
        cal_names = {getattr(p, "name", None) for p in dock.calibration.points}
        used = dock.roi_params_used
        replayable = (
            phantoms
            and used is not None
            and used.background_mask is None
            and all(a is not None and np.isfinite(a) for _, _, a in phantoms)
            and cal_names == {n for n, _, _ in phantoms}
            and "mpi" in {i.role for i in s.inputs}
        )
        if not replayable:
            return S.CalibrationSection(source="stored", calibration=st["calibration"])
        p = S.file_beside(session_path, f"{session_path.stem}_phantoms.csv")
        inp = S.InputFile(role="phantoms", path=S.relative_path(p, session_path), sha256="0" * 64)
        writes.append(
            (
                inp,
                p,
                lambda path, rows=phantoms: S.atomic_write_text(path, _phantoms_csv(rows)),
                None,
            )
        )
        s.inputs.append(inp)
        options = {k: v for k, v in st["options"].items() if v is not None}
        return S.CalibrationSection(source="phantoms", options=options, roi_params=st["roi_params"])

    @staticmethod
    def _write_files(writes: list, *, remember: bool = True) -> list[str]:
        """Write the files the session names beside it and hash them; with ``remember``
        an image layer then names its file (so it is written once). Returns the names."""
        for inp, path, writer, layer in writes:
            writer(path)
            inp.sha256 = S.sha256_file(path)
            if remember and layer is not None:
                _layers.meta(layer)["source"] = str(Path(path).resolve())
        return [Path(w[1]).name for w in writes]

    def _transform_from_layers(self, s: S.Session) -> None:
        roles = self._roles(s)
        for layer in _layers.find_layers(self.viewer, "MPI"):
            t = layer.metadata.get("mpi_viewer", {}).get("transform_fixed_to_moving")
            if not t:
                continue
            m, tr = np.asarray(t["matrix"], float), np.asarray(t["translation"], float)
            reg = s.registration
            if reg is None:
                s.registration = S.RegistrationSection(
                    fixed=roles.get(t.get("fixed"), "mri"),
                    moving=roles.get(layer.name, "mpi"),
                    method="transform",
                    model="affine",
                    matrix=m.tolist(),
                    translation=tr.tolist(),
                )
            elif reg.matrix is None or not (
                np.allclose(reg.matrix, m, atol=1e-12)
                and np.allclose(reg.translation, tr, atol=1e-12)
            ):
                # the user changed the registration in the viewer: keep it as given
                s.registration = S.RegistrationSection(
                    fixed=reg.fixed,
                    moving=reg.moving,
                    method="transform",
                    model=reg.model,
                    landmarks=reg.landmarks,
                    matrix=m.tolist(),
                    translation=tr.tolist(),
                )
            return

    # ------------------------------------------------------------------ save
    def save(self, path: str | Path, *, block: bool = True) -> Path | None:
        """Save the viewer's analysis to ``path``: recomputed through the pipeline, so the
        stored numbers are exactly what ``mpi-viewer replay`` will find.

        Images made in memory and the calibration phantoms are written beside the
        session first. ``block=False`` runs the writing and the recomputation off the
        GUI thread with a progress bar (returns None; :attr:`path` is set when done).
        """
        from mpi_viewer.study import pipeline as P

        if self.session is None and not any(_layers.find_layers(self.viewer)):
            _notify("warning", "nothing to save: open images (or the demo) first")
            self.status.setText("nothing to save: the viewer has no images")
            return None
        writes: list = []
        try:
            s = self.collect(path, deferred=writes)
        except (MPIViewerError, OSError) as exc:
            _notify("error", f"session not saved: {exc}")
            return None

        def work():
            try:
                written = self._write_files(writes)
                if s.registration or s.rois:
                    out, rec = P.compute_and_save(s, path)
                    return out, rec.rows, written
                return S.save_session(s, path), [], written
            except (MPIViewerError, OSError) as exc:
                raise InputError(f"session not saved: {' '.join(str(exc).split())}") from None

        saved: list = []

        def done(result):
            out, rows, written = result
            self.rows = rows
            self.session, self.path = s, Path(out)
            text = f"saved {out}"
            if written:
                text += f"; wrote {', '.join(written)} beside it (data that had no file)"
            self.status.setText(text)
            saved.append(Path(out))

        from mpi_viewer.plugins._calibration_dock import run_task

        self._worker = run_task(work, on_done=done, block=block, desc="saving session")
        return saved[0] if saved else None

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
    def open(
        self, path: str | Path, *, allow_changed_inputs: bool | None = None, block: bool = True
    ) -> bool:
        """Open a session: layers, transform, display settings, then each open dock's
        ``restore`` (landmarks, ROIs and their table, calibration, cells), and say whether
        the recomputed numbers match the stored ones.

        Inputs are hashed and the numbers recomputed off the GUI thread when
        ``block=False``. Returns False (after a notification naming the file) when the
        session cannot be opened; nothing is loaded then.
        """
        from mpi_viewer.study import pipeline as P

        try:
            s = S.load_session(path)
            outside = [w for w in s.warnings if "outside its folder" in w]
            for w in s.warnings:
                if w not in outside:
                    _notify("warning", w)
            if (
                outside
                and self.recovered_from is None
                and not self._ask(outside[0] + ". Open them?")
            ):
                return False
        except MPIViewerError as exc:
            _notify("error", f"session not opened: {exc}")
            return False

        def work():
            try:
                notes = s.verify_inputs(allow_changed=True)
                if (
                    notes
                    and not allow_changed_inputs
                    and (allow_changed_inputs is False or block is False)
                ):
                    return notes, None  # ask (or refuse) before recomputing on changed files
                rec = P.recompute(s)
                rec.others = P.read_other_images(s)
                return notes, rec
            except MPIViewerError as exc:
                raise InputError(f"session not opened: {' '.join(str(exc).split())}") from None

        opened: list = []

        def done(result):
            opened.append(
                self._opened(
                    path, s, *result, allow_changed_inputs=allow_changed_inputs, block=block
                )
            )

        from mpi_viewer.plugins._calibration_dock import run_task

        self._worker = run_task(work, on_done=done, block=block, desc="opening session")
        return bool(opened and opened[0]) if block else True

    def _opened(
        self, path, s: S.Session, notes: list[str], rec, *, allow_changed_inputs, block=True
    ) -> bool:
        from mpi_viewer.study import pipeline as P

        if notes and not allow_changed_inputs:
            if allow_changed_inputs is False or not self._ask(f"{notes[0]}. Open anyway?"):
                _notify("error", f"session not opened: {notes[0]}")
                return False
            if rec is None:  # the user said yes: open it anyway
                try:
                    rec = P.recompute(s)
                    rec.others = P.read_other_images(s)
                except MPIViewerError as exc:
                    _notify("error", f"session not opened: {exc}")
                    return False
        for n in notes:
            _notify("warning", n)
        self._show(s, rec, block=block)
        self.differences = P.compare(s, rec) if s.results else []
        self.rows = rec.rows
        self.session, self.path = s, (None if self.recovered_from else Path(path))
        if self.differences:
            _notify(
                "warning",
                f"{len(self.differences)} recomputed number(s) differ from the session: "
                f"{self.differences[0]}",
            )
        self.status.setText(
            f"opened {path}" + (" — numbers match" if s.results and not self.differences else "")
        )
        return True

    def _show(self, s: S.Session, rec, *, block: bool = True) -> None:
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
        for inp, vol in rec.others:  # display only (another channel of the MPI file…)
            name = inp.name or vol.name
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            _layers.add_volume(self.viewer, vol, name=name)
        fit = rec.transform()
        mpi_layer = layers.get(s.registration.moving if s.registration else "mpi")
        if fit is not None and mpi_layer is not None:
            fixed = layers.get(s.registration.fixed)
            _layers.apply_registration(
                mpi_layer, fit.matrix, fit.translation, fixed_name=getattr(fixed, "name", None)
            )
        results = [r for _, rs in rec.rois for r in rs]
        if results and "mpi" in rec.volumes and "ROIDock" not in self._dock_by_class():
            from mpi_viewer.roi.regions import rois_to_label_image

            if ROI_LAYER in self.viewer.layers:
                self.viewer.layers.remove(ROI_LAYER)
            labels = self.viewer.add_labels(
                rois_to_label_image(rec.volumes["mpi"], results),
                name=ROI_LAYER,
                units=compat.mm_units(rec.volumes["mpi"].ndim),
            )
            labels.metadata["mpi_viewer"] = (
                dict(_layers.meta(layers["mpi"])) if "mpi" in layers else {}
            )
            labels.metadata["mpi_viewer"]["roi_names"] = [r.name for r in results]
            if "mpi" in layers:
                _layers.copy_placement(layers["mpi"], labels)
        self._restore_docks(s, rec, layers, block=block)
        if (
            s.registration is not None
            and s.registration.method in ("transform", "intensity", "file")
            and fit is not None
            and mpi_layer is not None
        ):  # a refined or loaded transform wins over the landmarks' refit
            _layers.apply_registration(
                mpi_layer,
                fit.matrix,
                fit.translation,
                fixed_name=getattr(layers.get(s.registration.fixed), "name", None),
            )
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

    def _docks(self) -> list:
        docks = compat.dock_widgets(self.viewer)
        out = []
        for d in list(docks.values()):
            w = getattr(d, "native", d)
            w = w.widget() if hasattr(w, "widget") else w
            if w is not None and w is not self:
                out.append(w)
        return out

    def _dock_by_class(self) -> dict:
        """The open docks by class name (``ROIDock``, ``CalibrationDock``…) having ``state``."""
        return {
            type(w).__name__: w
            for w in self._docks()
            if hasattr(w, "state") and hasattr(w, "restore")
        }

    def _restore_docks(self, s: S.Session, rec, layers: dict, *, block: bool = True) -> None:
        """Hand the session to each open dock's ``restore`` (each step guarded), in the
        order of the workflow: landmarks, ROIs, calibration, cells."""
        docks = self._dock_by_class()
        name = {role: lyr.name for role, lyr in layers.items()}
        steps = []
        reg = s.registration
        if reg is not None and "RegistrationDock" in docks:
            lm = reg.landmarks
            names, fx, mv = lm.names, lm.fixed_xyz_mm, lm.moving_xyz_mm
            if not names and rec.registration is not None:  # template: the matched wells
                names = list(rec.registration.matched_names)
                fx, mv = rec.registration.fixed_xyz_mm, rec.registration.moving_xyz_mm
            params = {
                "model": reg.model,
                **({"fle_mm": reg.fle_mm} if reg.fle_mm is not None else {}),
            }
            if names:
                steps.append(
                    (
                        "RegistrationDock",
                        {
                            "names": list(names),
                            "fixed_xyz_mm": np.asarray(fx, float).tolist(),
                            "moving_xyz_mm": np.asarray(mv, float).tolist(),
                            "excluded": list(lm.excluded),
                            "model": reg.model,
                            "fixed": name.get(reg.fixed),
                            "moving": name.get(reg.moving),
                            "params": params,
                        },
                    )
                )
        if s.rois:
            sec = s.rois[0]
            steps.append(
                (
                    "ROIDock",
                    {
                        "layer": name.get(sec.image),
                        "params": sec.params,
                        "seeds_xyz_mm": sec.seeds_xyz_mm,
                        "names": sec.names,
                        "manual": self._manual_state(rec, 0),
                    },
                )
            )
        if rec.calibration is not None:
            steps.append(("CalibrationDock", self._calibration_state(s, rec, name)))
            if s.cells is not None or rec.calibration.kind == "cells":
                cells = s.cells or S.CellsSection()  # the default iron per cell
                steps.append(
                    (
                        "CellsDock",
                        {
                            "mean_pg": cells.mean_pg,
                            "sd_pg": cells.sd_pg,
                            "from_cells": s.cells is None,
                        },
                    )
                )
        for cls, state in steps:
            w = docks.get(cls)
            if w is None:
                continue
            try:
                w.restore(state, block=block) if cls == "CellsDock" else w.restore(state)
            except Exception as exc:  # noqa: BLE001 - a dock's own problem must not stop the opening
                _notify("warning", f"{cls}: values not restored ({exc})")

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

    # ------------------------------------------------------------------ recovery
    def pending_recoveries(self) -> list[Path]:
        return S.pending_recoveries()

    def _offer_recovery(self) -> None:
        pending = self.pending_recoveries()
        if not pending:
            return
        self._recovery_box = box = QMessageBox(self)
        box.setWindowTitle("mpi-viewer: recover session")
        box.setText(
            f"mpi-viewer did not close properly. Recover the autosaved session {pending[0].name}?"
        )
        box.setStandardButtons(QMessageBox.Yes | QMessageBox.No)
        box.buttonClicked.connect(
            lambda b: self.recover(pending[0]) if box.standardButton(b) == QMessageBox.Yes else None
        )
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
    for w in viewer.window.dock_widgets.values() if hasattr(viewer.window, "dock_widgets") else []:
        if isinstance(w, SessionDock):
            return w
    _, widget = viewer.window.add_plugin_dock_widget("mpi-viewer", SESSION_DOCK_NAME)
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
