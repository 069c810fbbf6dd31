"""What the Session dock saves: the viewer's study as a session
(:class:`mpi_viewer.study.session.Session`) and the files written beside it.

A mixin of :class:`~mpi_viewer.plugins._session_dock.SessionDock`. Inputs are the image
layers (files hashed; images made in memory written once beside the session as NRRD);
the registration, ROIs, calibration and iron per cell come from the docks that provide
them through the controller (:meth:`~mpi_viewer.plugins._controller.StudyController.section`).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from mpi_viewer.plugins import _layers

from mpi_viewer.errors import InputError
from mpi_viewer.study import session as S

_ROLE_OF = {"MPI": "mpi", "MRI": "mri", "CT": "ct"}


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


class SessionCollectMixin:
    """The save side of the Session dock (needs ``viewer``, ``ctl``, ``session``)."""

    def _hash(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        if key not in self._hashes:
            self._hashes[key] = S.sha256_file(path)
        return self._hashes[key]

    def _image_inputs(self, session_path: Path, writes: list) -> list[S.InputFile]:
        """Inputs of the image layers: read from a file (hashed), or made in memory (an MPI,
        MRI or CT such as the demo, or a file whose geometry was set in the Image geometry
        dock: written once beside the session as NRRD, see :meth:`_write_files`). Derived images (cell density…) are not inputs."""
        out, roles = [], set()
        layers = list(_layers.find_layers(self.viewer))
        study_mpi = self.ctl.mpi
        if study_mpi in layers:  # the study's MPI is "the" mpi; other MPI layers are "other"
            layers.remove(study_mpi)
            layers.insert(0, study_mpi)
        for layer in layers:
            m = layer.metadata.get("mpi_viewer", {})
            src = m.get("source")
            # a geometry set in the Image geometry dock is not the file's: written beside
            # the session as an image made in memory is, so that replay reads it
            has_file = bool(src) and Path(src).is_file() and not m.get("geometry_edited")
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
            if _layers.is_display_twin(layer) or _layers.is_pooled(layer):  # remade when reopened
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
                inp = _moved(inp, old_folder, session_path)
            others.append(inp)
        # image inputs not shown as layers (closed by the user) stay part of the analysis
        shown = {i.role for i in images}
        for inp in base.inputs:
            if (
                inp.role in ("mri", "ct", "mpi")
                and inp.role not in shown
                and old_folder is not None
            ):
                images.append(_moved(inp, old_folder, session_path))
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
        roles = self._roles(s)
        reg = self.ctl.section("registration")
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
        self._template_section(s, roles)  # the mold dock's, when it made the registration
        roi = self.ctl.section("rois")
        if roi is not None:
            self._roi_sections(roi, s, session_path, writes, roles, autosave=autosave)
        cal = self.ctl.section("calibration")
        if cal is not None:
            s.inputs = [i for i in s.inputs if i.role not in ("phantoms", "calibration")]
            s.calibration = self._calibration_section(cal, s, session_path, writes)
        cells = self.ctl.section("cells")
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
                _layers.meta(layer).pop("geometry_edited", None)  # the written file has it
        return [Path(w[1]).name for w in writes]

    def _template_section(self, s: S.Session, roles: dict[str, str]) -> None:
        """The mold dock's registration (template, pose choice), so replay takes the same pose."""
        reg = self.ctl.registration
        if reg is None or reg.source != "template" or not reg.pose:
            return
        if not {reg.fixed, reg.moving} <= set(roles):
            return
        p = reg.pose
        s.registration = S.RegistrationSection(
            fixed=roles[reg.fixed],
            moving=roles[reg.moving],
            method="template",
            template=p["template"],
            model=reg.transform.model,
            mold={k: p[k] for k in ("tolerance_mm", "max_rotation_deg", "pose", "decided_by")},
            matrix=np.asarray(reg.matrix, float).tolist(),
            translation=np.asarray(reg.translation, float).tolist(),
        )

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


def _moved(inp, old_folder, session_path):
    """An input of a session saved under a new name: its path (and its companions') made
    relative to the new session; hash, selection and the rest kept."""

    def rel(path: str) -> str:
        return S.relative_path((old_folder / path).resolve(), session_path)

    return inp.model_copy(
        update={
            "path": rel(inp.path),
            "companions": [c.model_copy(update={"path": rel(c.path)}) for c in inp.companions],
        }
    )
