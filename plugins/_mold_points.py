"""Fiducial wells of the mold panel as named Points layers that follow their image.

A mixin of :class:`~mpi_viewer.plugins._mold_panel.MoldPanel` (one idea per module):
the wells found in an image are kept in that image's own physical frame (mm, z, y, x)
with the image's physical → world map as the layer's ``affine``, re-set whenever the
image's placement changes.
"""

from __future__ import annotations

import numpy as np
from mpi_viewer.plugins._points_pairs import world_from_physical_affine

from mpi_viewer.geometry.axes import xyz_to_zyx

FIXED_POINTS = "mold fiducials (fixed)"
MOVING_POINTS = "mold fiducials (moving)"


class MoldPointsMixin:
    """The wells' Points layers of the mold panel (needs ``viewer`` and ``_followers``)."""

    def _put_points(self, name: str, xyz_mm: np.ndarray, names: list[str], image_layer) -> None:
        """Create or update a Points layer of named wells attached to ``image_layer``.

        The points are kept in the image's own physical frame (mm, z, y, x) with the
        image's physical → world map as the layer's ``affine``, so they are drawn where
        the image is drawn, now and after a registration moves it.
        """
        data = xyz_to_zyx(np.asarray(xyz_mm, dtype=float))
        features = {"name": np.asarray(names, dtype=object)}
        affine = world_from_physical_affine(image_layer)
        meta = {
            "mpi_viewer": {
                "role": "mold fiducials",
                "fiducials_of": image_layer.name,
                "frame": "physical zyx mm of the image",
            }
        }
        lyr = self.viewer.layers[name] if name in self.viewer.layers else None
        if lyr is None:  # the pool's (made when the image was opened), else a new one
            from mpi_viewer.plugins._layer_pool import take

            kind = "mold fixed" if name == FIXED_POINTS else "mold moving"
            lyr = take(self.viewer, kind, name=name, metadata=meta, ndim=data.shape[1])
        if lyr is not None:
            # each property set costs napari a refresh: set only what changes (a pose
            # switched in the table keeps the wells' count, so data and names suffice)
            if not np.allclose(lyr.affine.affine_matrix, affine):
                lyr.affine = affine
            if len(lyr.data) != len(data):  # new points (default names), then their names
                lyr.data = data
                lyr.features = features
            else:
                lyr.features = features
                lyr.data = data
            lyr.metadata.update(meta)
        else:
            lyr = add_wells_layer(self.viewer, name, data, features, affine, meta)
        lyr.mode = "pan_zoom"  # found, not to be clicked: the next click adds no well
        self._follow(lyr, image_layer)

    def _follow(self, points_layer, image_layer) -> None:
        """Keep ``points_layer`` on ``image_layer`` when its placement changes."""
        old = self._followers.pop(points_layer.name, None)
        if old is not None:
            old_image, callback = old
            for ev in (old_image.events.affine, old_image.events.scale, old_image.events.translate):
                ev.disconnect(callback)

        def callback(event=None, pts=points_layer, img=image_layer):
            if pts in self.viewer.layers and img in self.viewer.layers:
                pts.affine = world_from_physical_affine(img)

        for ev in (
            image_layer.events.affine,
            image_layer.events.scale,
            image_layer.events.translate,
        ):
            ev.connect(callback)
        self._followers[points_layer.name] = (image_layer, callback)


def add_wells_layer(viewer, name, data, features, affine, meta, *, layer_name=None):
    """Add the Points layer of a mold's wells (``name``: :data:`FIXED_POINTS` or
    :data:`MOVING_POINTS`, its colour), named ``layer_name`` (default ``name``)."""
    colour = "cyan" if name == FIXED_POINTS else "lime"
    # label beside the 3 mm marker (offset in mm, z, y, x), not on top of it
    text = {
        "string": "{name}",
        "color": colour,
        "size": 12,
        "anchor": "lower_left",
        "translation": [0.0, -1.6, 1.6],
    }
    return viewer.add_points(
        data,
        ndim=data.shape[1],
        name=layer_name or name,
        features=features,
        text=text,
        size=3.0,
        units=("mm",) * data.shape[1],
        affine=affine,
        face_color="transparent",
        border_color=colour,
        border_width=0.15,
        projection_mode="rescale_spherical",
        metadata=meta,
    )
