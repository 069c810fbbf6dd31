"""How ROI label layers are drawn: clean outlines in 2-D, clean surfaces in 3-D.

2-D: a contour (``contour`` voxels thick) instead of a filled patch, so the MPI and
the anatomy under the ROI stay visible. 3-D: napari renders a Labels volume as an
iso-surface (``iso_categorical``); drawn *with* the depth test it is cut, voxel by voxel,
by the anatomy's volume rendering around it (the "yellow speckle"), so ROI layers are
drawn without it (``translucent_no_depth``): a whole, shaded surface over the
rendering, like the labels that name them.

Used by the ROI dock ("MPI ROIs") and the Cells dock ("ROI outlines"); the style
follows the viewer between 2-D and 3-D (:func:`follow_ndisplay`).
"""

from __future__ import annotations

import warnings
import weakref

#: Outline thickness in 2-D (voxels of the layer's grid).
CONTOUR_VOXELS = 1

#: ROI surfaces in 3-D are see-through so the MPI inside shows.
OPACITY_3D = 0.6

# our ROI layers leave contours off in 3-D themselves; napari's slicer may still see
# the 2-D value for one redraw while the view switches, and says so as a warning
warnings.filterwarnings("ignore", message="Contours are not displayed during 3D rendering")


def style_roi_labels(
    layer, ndisplay: int, *, contour: int = CONTOUR_VOXELS, opacity_2d: float = 1.0
) -> None:
    """Draw ``layer`` (Labels) as outlines in 2-D and as a surface over the view in 3-D."""
    if ndisplay == 3:
        want = {"contour": 0, "rendering": "iso_categorical", "blending": "translucent_no_depth",
                "opacity": OPACITY_3D}  # fmt: skip
    else:
        want = {"contour": int(contour), "blending": "translucent", "opacity": float(opacity_2d)}
    for name, value in want.items():
        current = getattr(layer, name, None)
        if str(current) != str(value):
            setattr(layer, name, value)


_FOLLOWED: weakref.WeakSet = weakref.WeakSet()


def follow_ndisplay(viewer, layer, **style) -> None:
    """Style ``layer`` now and whenever the viewer switches between 2-D and 3-D."""
    style_roi_labels(layer, viewer.dims.ndisplay, **style)
    if layer in _FOLLOWED:
        return
    _FOLLOWED.add(layer)
    ref = weakref.ref(layer)

    def restyle(event=None) -> None:
        lyr = ref()
        if lyr is None or lyr not in viewer.layers:
            return
        style_roi_labels(lyr, viewer.dims.ndisplay, **style)

    viewer.dims.events.ndisplay.connect(restyle)
