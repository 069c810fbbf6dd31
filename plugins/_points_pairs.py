"""Two paired Points layers of named fiducials, each attached to its image.

Each Points layer holds its points in the *own physical frame* of its image, in mm,
(z, y, x) order, and carries an ``affine`` that maps that frame to world: the same
data → world map as the image layer, composed with physical → index. So when the
moving image is drawn through a new registration, the moving markers move with it
and stay on the hot spots they were clicked on; and the numbers the dock fits and
exports are always each image's own physical mm, whatever the display transform.

Points are paired by name. Pair ``k`` (in the order of the fixed layer) is labelled
``"k:name"`` and drawn in colour ``k`` of a categorical palette in both layers;
unpaired points are grey.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from mpi_viewer.plugins._layers import volume_from_layer

from mpi_viewer.geometry.axes import xyz_to_zyx, zyx_to_xyz

FIXED_NAME = "fiducials (fixed)"
MOVING_NAME = "fiducials (moving)"
POINT_SIZE_MM = 1.5
#: tab10: distinct colours for pair numbers (categorical colormap by pair index).
PALETTE = (
    np.array(
        [
            (31, 119, 180),
            (255, 127, 14),
            (44, 160, 44),
            (214, 39, 40),
            (148, 103, 189),
            (140, 86, 75),
            (227, 119, 194),
            (188, 189, 34),
            (23, 190, 207),
            (127, 127, 127),
        ],
        dtype=float,
    )
    / 255.0
)
UNPAIRED_RGBA = (0.6, 0.6, 0.6, 0.6)


def pair_color(k: int) -> np.ndarray:
    """RGBA of pair ``k`` (0-based) from a 10-colour categorical palette."""
    return np.append(PALETTE[k % len(PALETTE)], 1.0)


def world_from_physical_affine(image_layer) -> np.ndarray:
    """(d+1)×(d+1) map from the image's own physical mm (z, y, x) to world (z, y, x).

    The layer's full data → world map (scale, translate, affine) is read back through
    ``data_to_world`` (exact for an affine map) and composed with physical → index.
    """
    vol = volume_from_layer(image_layer)
    d = vol.ndim
    probes = np.vstack([np.zeros(d), np.eye(d)])
    world = np.array([np.asarray(image_layer.data_to_world(p), dtype=float)[-d:] for p in probes])
    w = np.eye(d + 1)
    w[:d, d] = world[0]
    w[:d, :d] = (world[1:] - world[0]).T
    return w @ np.linalg.inv(vol.index_to_world_affine())


@dataclass
class PairState:
    """A snapshot of both layers (for undo): names and physical mm (x, y, z)."""

    fixed_names: list[str] = field(default_factory=list)
    fixed_xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    moving_names: list[str] = field(default_factory=list)
    moving_xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    excluded: frozenset = frozenset()

    def same_as(self, other: PairState) -> bool:
        return (
            self.fixed_names == other.fixed_names
            and self.moving_names == other.moving_names
            and self.excluded == other.excluded
            and self.fixed_xyz.shape == other.fixed_xyz.shape
            and self.moving_xyz.shape == other.moving_xyz.shape
            and np.array_equal(self.fixed_xyz, other.fixed_xyz)
            and np.array_equal(self.moving_xyz, other.moving_xyz)
        )


class PairedPoints:
    """The fixed and moving fiducial Points layers of one registration.

    Parameters
    ----------
    viewer : napari.Viewer
    fixed_image, moving_image : napari.layers.Image
        The anatomy (MRI/CT) and the MPI.
    """

    def __init__(self, viewer, fixed_image, moving_image):
        self.viewer = viewer
        self.fixed_image = fixed_image
        self.moving_image = moving_image
        self.fixed = self._make_layer(FIXED_NAME, fixed_image, symbol="disc", anchor="upper_left")
        self.moving = self._make_layer(
            MOVING_NAME, moving_image, symbol="ring", anchor="lower_right"
        )

    # -- layers -------------------------------------------------------------------
    def _make_layer(self, name, image, *, symbol, anchor):
        import pandas as pd

        d = volume_from_layer(image).ndim
        for lyr in list(self.viewer.layers):
            if lyr.name == name and type(lyr).__name__ == "Points":
                self.viewer.layers.remove(lyr)
        layer = self.viewer.add_points(
            np.zeros((0, d)),
            ndim=d,
            name=name,
            units=("mm",) * d,  # world mm like the images: no napari unit warning
            affine=world_from_physical_affine(image),
            features=pd.DataFrame(
                {"name": pd.Series([], dtype=object), "label": pd.Series([], dtype=object)}
            ),
            feature_defaults={"name": "", "label": ""},
            text={"string": "{label}", "size": 10, "color": "white", "anchor": anchor},
            size=POINT_SIZE_MM,
            symbol=symbol,
            face_color=list(UNPAIRED_RGBA),
            border_color="white",
            border_width=0.1,
        )
        layer.metadata["mpi_viewer"] = {
            "fiducials_of": image.name,
            "frame": "physical zyx mm of the image",
        }
        return layer

    def layers(self):
        return (self.fixed, self.moving)

    def alive(self) -> bool:
        def real(
            obj,
        ):  # a dock opened through the plugin manager sees napari's PublicOnlyProxy objects
            return getattr(obj, "__wrapped__", obj)

        present = [real(lyr) for lyr in self.viewer.layers]
        return all(
            any(lyr is real(x) for lyr in present)
            for x in (self.fixed, self.moving, self.fixed_image, self.moving_image)
        )

    def follow_images(self) -> None:
        """Re-attach both Points layers to their images' current data → world maps."""
        for pts, img in ((self.fixed, self.fixed_image), (self.moving, self.moving_image)):
            a = world_from_physical_affine(img)
            if not np.allclose(np.asarray(pts.affine.affine_matrix), a, rtol=0, atol=1e-12):
                pts.affine = a

    # -- reading ------------------------------------------------------------------
    @staticmethod
    def names_of(layer) -> list[str]:
        if len(layer.data) == 0:
            return []
        return [str(n) if n is not None else "" for n in layer.features["name"].tolist()]

    @staticmethod
    def xyz_of(layer) -> np.ndarray:
        data = np.asarray(layer.data, dtype=float)
        return (
            zyx_to_xyz(data) if len(data) else np.zeros((0, data.shape[1] if data.ndim == 2 else 3))
        )

    def state(self, excluded=frozenset()) -> PairState:
        return PairState(
            self.names_of(self.fixed),
            self.xyz_of(self.fixed),
            self.names_of(self.moving),
            self.xyz_of(self.moving),
            frozenset(excluded),
        )

    def pairs(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Paired names (fixed-layer order) and their physical mm (x, y, z) in each image."""
        fn, mn = self.names_of(self.fixed), self.names_of(self.moving)
        fx, mx = self.xyz_of(self.fixed), self.xyz_of(self.moving)
        mindex = {n: i for i, n in enumerate(mn)}
        names = [n for n in fn if n and n in mindex]
        fi = [fn.index(n) for n in names]
        mi = [mindex[n] for n in names]
        d = fx.shape[1] if fx.ndim == 2 else 3
        return names, fx[fi].reshape(-1, d), mx[mi].reshape(-1, d)

    def unpaired(self) -> tuple[list[str], list[str]]:
        fn, mn = self.names_of(self.fixed), self.names_of(self.moving)
        return [n for n in fn if n not in mn], [n for n in mn if n not in fn]

    # -- writing ------------------------------------------------------------------
    def set_state(self, st: PairState) -> None:
        """Replace both layers' points (their data events fire; callers guard re-entry)."""
        for layer, names, xyz in (
            (self.fixed, st.fixed_names, st.fixed_xyz),
            (self.moving, st.moving_names, st.moving_xyz),
        ):
            self._set_layer(layer, list(names), np.asarray(xyz, dtype=float))
        self.restyle()

    def _set_layer(self, layer, names, xyz) -> None:
        import pandas as pd

        d = layer.ndim
        data = xyz_to_zyx(xyz).reshape(-1, d) if len(names) else np.zeros((0, d))
        layer.selected_data = set()
        layer.data = data
        layer.features = pd.DataFrame(
            {"name": pd.Series(names, dtype=object), "label": pd.Series(names, dtype=object)}
        )

    def name_new_points(self, layer, indices=None) -> list[int]:
        """Name the points just added to ``layer`` (``indices``; by default the unnamed
        ones): each takes the first name of the other layer still waiting for a partner,
        else the next free ``F<k>``. Returns the indices named."""
        other = self.moving if layer is self.fixed else self.fixed
        names = self.names_of(layer)
        n = len(names)
        if indices is None:
            todo = [i for i, v in enumerate(names) if not v]
        else:
            todo = sorted({int(i) % n for i in indices}) if n else []
        if not todo:
            return []
        other_names = self.names_of(other)
        for i in todo:
            names[i] = ""
        for i in todo:
            waiting = [v for v in other_names if v not in names]
            names[i] = waiting[0] if waiting else self.next_free_name(set(names) | set(other_names))
        feats = layer.features.copy()
        feats["name"] = names
        layer.features = feats
        return todo

    @staticmethod
    def next_free_name(used) -> str:
        k = 1
        while f"F{k}" in used:
            k += 1
        return f"F{k}"

    def restyle(self) -> None:
        """Labels ``k:name`` and pair colours from the current pairing."""
        paired, _, _ = self.pairs()
        order = {n: k for k, n in enumerate(paired)}
        for layer in self.layers():
            names = self.names_of(layer)
            if not names:
                continue
            labels = [f"{order[n] + 1}:{n}" if n in order else f"?:{n}" for n in names]
            colors = np.array(
                [pair_color(order[n]) if n in order else UNPAIRED_RGBA for n in names]
            )
            feats = layer.features
            if list(feats["label"]) != labels:
                feats = feats.copy()
                feats["label"] = labels
                layer.features = feats
            current = np.asarray(layer.face_color)
            if current.shape != colors.shape or not np.allclose(current, colors, atol=1e-3):
                layer.face_color = colors
