"""Layers made before the step that needs them: a step updates one in place instead of
adding it.

napari's own cost of adding one layer to this window (the layer list row and its
controls, the vispy node, the dims and extent update, the first draw of a new shader
program) is 230–350 ms of the GUI thread under software OpenGL
(``benchmarks/bench_gui_stalls.py``), three times the 100 ms a step may stall. Three
steps of a study add layers: the mold registration (the wells of each image), the first
ROI (the "MPI ROIs" Labels) and the cells (density, outlines, labels with their
backdrops and leaders). Updating a layer that exists costs a fraction of that (its data,
placement, name and visibility set: a re-slice, a texture upload, a redraw).

When ``mpi-viewer`` starts without data, the pool is made during start-up, before there
is an image to sit on (:func:`fill_at_start`; the first 3-D image opened becomes its home).
Otherwise, when the study's first image is opened (the anatomy, else the MPI: :func:`install`,
called by :func:`._launch.open_docks` for ``mpi-viewer`` and ``mpi-viewer demo``, watches
the layer list), one empty layer of each kind these steps add (and the ROIs' 2-D view
twin, :mod:`._display2d`) is made, one per turn of the event loop, styled as the step
styles it (colour map, blending, text, contour, the density's colour bar), and drawn
(its shader programs linked with a see-through point, its overlays made). The pooled layers stay visible, with nothing to draw (no points, one transparent
voxel): in napari 0.9 each change of a layer's ``visible`` rebuilds the canvas's scene
graph and draws it synchronously (~50 ms here, more with every layer). Each sits on the
opened image's centre voxel so it does not change the world extent or the dims. A step
:func:`take` s its layer: the layer gets its name and metadata (moved above the study's
layers only if one is above it), and the step sets its data as it would on a layer of
its own.
When the pooled layer is gone (the user deleted it, a second study in the same
window) :func:`take` returns None and the step adds its layer as before: correct, only
slower.

A pooled layer carries ``metadata["mpi_viewer"]["pooled"]`` (its kind): it has no row in
the layer list (:mod:`._layer_rows`), :func:`._layers.find_layers`, the controller, the
docks' layer choosers and the session skip it (:func:`is_pooled`), it is never saved,
quantified or exported. When the image it sits on is removed, the pooled layers go too
(refilled on the next image opened).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable

import numpy as np
from mpi_viewer.plugins import _napari_compat as compat
from mpi_viewer.plugins._layers import POOL_KEY, is_pooled  # noqa: F401 - public here too

#: Milliseconds between two pooled layers made (the window repaints between them). The
#: overlays a step shows for the first time (the density's colour bar, the viewer's text
#: overlay) are made visible with the pool, drawn, and hidden again.
FILL_INTERVAL_MS = 30

#: The size of the voxel the pool made at start-up sits on until the first image arrives
#: (:func:`fill_at_start`), mm.
START_VOXEL_MM = 100.0

_STATE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: A drafted layer's feature defaults (:func:`draft` changes them, :func:`undraft` restores).
_DEFAULTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _real(obj):
    return getattr(obj, "__wrapped__", obj)


# --------------------------------------------------------------------------- the kinds
def _kinds() -> dict[str, Callable]:
    """kind → ``make(viewer, place)`` adding the empty, styled layer (``place``: scale and
    translate keyword arguments putting one voxel at the reference image's centre).
    In the order the study's steps add them (the layers' order once all are taken)."""
    from mpi_viewer.plugins import _calibration_phantoms as phantoms
    from mpi_viewer.plugins import _cells_overlays as cells
    from mpi_viewer.plugins import _mold_points as mold
    from mpi_viewer.plugins import _roi_results as rois
    from mpi_viewer.plugins import _roi_seeds as seeds

    one_voxel = np.zeros((1, 1, 1), np.uint16)
    return {
        "mold fixed": lambda v, name, place: mold.add_wells_layer(
            v, mold.FIXED_POINTS, np.zeros((0, 3)), {"name": np.array([], dtype=object)},
            np.eye(4), {}, layer_name=name,
        ),
        "mold moving": lambda v, name, place: mold.add_wells_layer(
            v, mold.MOVING_POINTS, np.zeros((0, 3)), {"name": np.array([], dtype=object)},
            np.eye(4), {}, layer_name=name,
        ),
        # the 2-D view twin of the MPI once it is registered (:mod:`._display2d`), styled
        # as an MPI is shown (the twin takes its native's display when taken)
        # (see-through until taken: ``hot`` is dark red at 0, not black)
        "image twin": lambda v, name, place: v.add_image(
            one_voxel.astype(np.float32), name=name, colormap="hot", blending="additive",
            opacity=0.0, units=compat.mm_units(3), **place,
        ),
        # the ROI dock's clicking mode (its seeds), then the first ROI
        "roi seeds": lambda v, name, place: seeds.add_seed_layer(v, 3, name),
        "roi labels": lambda v, name, place: rois.add_roi_labels_layer(v, one_voxel, place, name),
        # the 2-D view twin of the ROIs once the MPI is registered (:mod:`._display2d`):
        # styled as the ROIs (it takes their style: nothing left to set when taken)
        "labels twin": lambda v, name, place: rois.add_roi_labels_layer(v, one_voxel, place, name),
        # the calibration's phantoms (a session opened, a phantoms CSV loaded)
        "phantoms": lambda v, name, place: phantoms.add_phantom_layer(v, 3, name),
        "density": lambda v, name, place: cells.add_density_layer(
            v, one_voxel.astype(np.float32), 1.0, place, name
        ),
        "outlines": lambda v, name, place: cells.add_outline_layer(v, one_voxel, place, name),
        "backdrops": lambda v, name, place: cells.add_backdrop_layer(v, name),
        "cell labels": lambda v, name, place: cells.add_label_layer(v, np.zeros((0, 3)), name),
        "leaders": lambda v, name, place: cells.add_leader_layer(v, name),
    }  # fmt: skip


def _reference(viewer):
    """The image the pooled layers sit on: the study's anatomy, else its MPI (3-D only)."""
    from mpi_viewer.plugins._controller import get_controller

    ctl = get_controller(viewer)
    for layer in (ctl.anatomy, ctl.mpi):
        layer = _real(layer) if layer is not None else None
        if layer is not None and layer in viewer.layers and layer.ndim == 3:
            return layer
    return None


def _centre_placement(ref) -> dict:
    """scale/translate putting voxel 0 of a one-voxel layer at ``ref``'s central voxel
    (world mm): inside ``ref``'s extent, on its step."""
    shape = np.asarray(np.shape(ref.data)[-3:], dtype=float)
    centre = np.asarray(ref.data_to_world((shape - 1) / 2.0), dtype=float)[-3:]
    scale = np.abs(np.asarray(ref.scale, dtype=float)[-3:])
    return {"scale": scale, "translate": centre}


# --------------------------------------------------------------------------- state
class _Pool:
    def __init__(self, viewer):
        self.viewer_ref = weakref.ref(viewer)
        self.ref = None  # weak reference to the image the pooled layers sit on
        self.pending: list[str] = []
        self.made: list = []  # made, not yet drawn
        self.primed: list = []  # overlays shown to be made: hidden once drawn
        self.drafts: list = []  # (layer, opacity): a see-through point drawn, then emptied
        self.filled_for = None  # id of the image the pool was last filled on
        self.timer = None
        self.enabled = True
        self.deferred = False  # installed with ``fill_now=False``: nothing until an image arrives
        self.paused = 0  # sessions being opened: they make the pooled layers in their turns
        self.ticking = False  # a timer for the next pooled layer is on
        self.undressed: list = []  # (layer, kind, place) made by a session open, not dressed
        #: made at start-up without data (:func:`fill_at_start`): at the origin, waiting for
        #: the study's first 3-D image to sit on (:func:`_home`)
        self.homeless = False


def _state(viewer) -> _Pool:
    viewer = _real(viewer)
    st = _STATE.get(viewer)
    if st is None:
        st = _STATE[viewer] = _Pool(viewer)
    return st


def install(viewer, fill_now: bool = True) -> None:
    """Fill the pool whenever a study image arrives and none is there; drop the pooled
    layers of an image that is removed. Idempotent. ``fill_now=False``: not on the images
    already open, only from the next one (a dock opened from napari's Plugins menu into a
    window with data: filling then would pause the window the user just opened a dock in)."""
    viewer = _real(viewer)
    st = _state(viewer)
    if getattr(st, "installed", False):
        return
    st.installed = True
    ref = weakref.ref(viewer)

    def inserted(event=None) -> None:
        v = ref()
        if v is not None and not is_pooled(event.value):
            st = _state(v)
            st.deferred = False
            if st.homeless:
                _home_on(v, event.value)
            elif _under_pool(v, event.value):
                _settle_after_image(v)
            schedule_fill(v)

    def removed(event=None) -> None:
        v = ref()
        if v is None:
            return
        st = _state(v)
        if st.ref is None:
            return  # no pool
        img = st.ref()
        if img is None or img not in v.layers:
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, lambda: ref() is not None and drop(ref()))

    viewer.layers.events.inserted.connect(inserted)
    viewer.layers.events.removed.connect(removed)
    if fill_now:
        schedule_fill(viewer)
    else:
        st.deferred = True


def _missing(viewer) -> list[str]:
    have = {lyr.metadata["mpi_viewer"][POOL_KEY] for lyr in viewer.layers if is_pooled(lyr)}
    return [k for k in _kinds() if k not in have]


def schedule_fill(viewer) -> None:
    """Make the missing pooled layers, one per turn of the event loop (nothing happens
    without a study image, while it is running, or after :func:`disable`)."""
    st = _state(viewer)
    if not st.enabled or st.paused or st.pending or getattr(viewer, "window", None) is None:
        return
    from qtpy.QtCore import QTimer

    QTimer.singleShot(0, lambda: _start(viewer))


def _plan(viewer) -> bool:
    """Set the kinds to make (:attr:`_Pool.pending`) when the pool has an image to sit on
    and was not filled on it yet; whether there are any."""
    st = _state(viewer)
    if st.pending or not st.enabled:
        return bool(st.pending)
    img = _reference(viewer)
    if img is None:
        return False
    old = st.ref() if st.ref is not None else None
    if old is not None and old is not img and old in viewer.layers:
        img = old  # the pool sits on the first image still there
    st.ref = weakref.ref(img)
    if st.filled_for == id(img):
        return False  # filled on this image once: what a step took is not made again
    st.filled_for = id(img)
    st.pending = _missing(viewer)
    return bool(st.pending)


def _start(viewer) -> None:
    st = _state(viewer)
    if st.pending or not st.enabled or st.paused:
        return
    if _plan(viewer):
        _next(viewer)


def _next(viewer) -> None:
    from qtpy.QtCore import QTimer

    st = _state(viewer)
    if st.paused:
        return  # a session being opened goes on with them (:func:`fill_one`)
    img = st.ref() if st.ref is not None else None
    if not st.pending or img is None or img not in viewer.layers or not st.enabled:
        st.pending = []
        _hide_made(viewer)
        return
    kind = st.pending.pop(0)
    _make(viewer, kind, _centre_placement(img))
    if st.pending:
        _tick(viewer)
    else:  # the last one drawn, then all hidden
        QTimer.singleShot(FILL_INTERVAL_MS, lambda: _hide_made(viewer))


def _tick(viewer) -> None:
    """:func:`_next` after :data:`FILL_INTERVAL_MS` (one timer at a time)."""
    from qtpy.QtCore import QTimer

    st = _state(viewer)
    if st.ticking:
        return
    st.ticking = True

    def tick() -> None:
        st.ticking = False
        _next(viewer)

    QTimer.singleShot(FILL_INTERVAL_MS, tick)


def pause(viewer) -> None:
    """A session is being opened: the pool makes no layer on its own timer (its layers
    would share the open's turns, and stalls, with the session's own layers) until
    :func:`resume`; the opening makes them in turns of its own (:func:`fill_one`).
    Counted: each pause needs its resume."""
    _state(viewer).paused += 1


def resume(viewer) -> None:
    """The end of a :func:`pause`: what is still missing is made on the pool's timer."""
    st = _state(viewer)
    st.paused = max(0, st.paused - 1)
    if not st.paused:
        if st.undressed:
            _dress_next(viewer)
        elif st.pending:
            _tick(viewer)
        elif st.made:
            _hide_made(viewer)
        elif not st.deferred:  # a refused open in a window whose pool waits for an image
            schedule_fill(viewer)


def _dress_next(viewer) -> None:
    """Dress the pooled layers a session open made and left untaken (:func:`_dress`),
    one per turn of the event loop, then go on filling (or hide what was shown)."""
    from qtpy.QtCore import QTimer

    st = _state(viewer)
    if st.paused:
        return
    while st.undressed:
        layer, kind, place = st.undressed.pop(0)
        if is_pooled(layer) and layer in viewer.layers:
            _dress(viewer, layer, kind, place)
            QTimer.singleShot(FILL_INTERVAL_MS, lambda: _dress_next(viewer))
            return
    if st.pending:
        _tick(viewer)
    else:
        QTimer.singleShot(FILL_INTERVAL_MS, lambda: _hide_made(viewer))


def fill_at_start(viewer, words=None) -> bool:
    """``mpi-viewer`` started without data: make every pooled layer now, in start-up,
    where napari's cost of adding them (230–350 ms each under software OpenGL) is not
    felt, instead of when the study's first image opens (File > Open, a session opened:
    a second of stutter then). Made dressed and drawn once (every shader program linked,
    the texts of ``words`` laid out in the font atlas), then the drafts emptied. Until
    an image arrives they sit on one :data:`START_VOXEL_MM` voxel about the origin (the
    Points and Vectors empty, without extent: the empty window's view spans a mouse, no
    slider shows). The first 3-D image that arrives is their home (:func:`_home`): the
    layers with a voxel move onto its centre and the view is reset on it, as napari
    resets it for a window's first layer. Returns False (nothing made) when the viewer
    has no window, holds layers already or the pool is off or not installed."""
    import warnings

    from qtpy.QtWidgets import QApplication

    viewer = _real(viewer)
    st = _state(viewer)
    if (
        not st.enabled
        or not getattr(st, "installed", False)  # (nothing would move them onto the data)
        or getattr(viewer, "window", None) is None
        or len(viewer.layers)
        or viewer.dims.ndisplay != 2
    ):
        return False
    # one 100 mm voxel about the origin: the empty window's view (its home button) spans
    # a mouse, not a voxel, until the first image arrives
    place = {"scale": np.full(3, START_VOXEL_MM), "translate": np.zeros(3)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nothing of the pool concerns the user
        for kind in _kinds():
            _make(viewer, kind, place, words=words)
        QApplication.processEvents()
        # a synchronous draw of the canvas: every program compiled, every texture made
        viewer.screenshot(canvas_only=True)
        _hide_made(viewer)
        QApplication.processEvents()
    st.homeless = True  # (not before: a pooled layer is marked only once it is added)
    compat.show_welcome_screen(viewer)  # the window still looks empty: it is
    return True


def _homed_kinds(layer) -> bool:
    """Whether a pooled layer has an extent (a voxel) that must sit inside the study's."""
    return type(layer).__name__ in ("Image", "Labels")


def _home_on(viewer, layer) -> None:
    """A layer arrived in a window whose pool was made at start-up (:func:`fill_at_start`):
    a 3-D scalar image or labels becomes the pool's home (:func:`_home`); any other layer
    with data (a 2-D image, a time series, an RGB picture, points read from a file) means
    a study the 3-D pool does not fit: the pooled layers go (they would widen its world,
    and napari fits the view on a window's first layer only) and the view is fitted as
    napari fits it. An empty layer (napari's new Points button) changes nothing."""
    from qtpy.QtCore import QTimer

    kind = type(layer).__name__
    if kind in ("Image", "Labels") and layer.ndim == 3 and not getattr(layer, "rgb", False):
        _home(viewer, layer)
        return
    try:
        extent = np.asarray(layer.extent.world, dtype=float)
    except Exception:  # noqa: BLE001 - a layer napari cannot measure: as one with data
        extent = np.zeros((2, 1))
    if not np.all(np.isfinite(extent)):
        return  # nothing in it yet
    _state(viewer).homeless = False
    ref = weakref.ref(viewer)
    QTimer.singleShot(0, lambda: ref() is not None and _drop_and_fit(ref()))


def _under_pool(viewer, layer) -> bool:
    """Whether ``layer`` is an image (not a helper) added above pooled layers."""
    from mpi_viewer.plugins._layer_rows import is_helper

    if type(layer).__name__ != "Image" or is_helper(layer) or layer not in viewer.layers:
        return False
    i = viewer.layers.index(layer)
    return any(is_pooled(lyr) for lyr in list(viewer.layers)[:i])


def _settle_after_image(viewer) -> None:
    """After an image arrived above the pool (File > Open in a window whose pool was made
    at start-up or on an earlier image), in turns of their own: the pooled layers raised
    above it in one move (else each step that takes one would move it, and napari rebuilds
    its scene graph at every move), then the image's objects frozen out of the garbage
    collector (:func:`._warm_up.after_step`), not walked by the next step's collection."""
    from qtpy.QtCore import QTimer

    ref = weakref.ref(viewer)

    def raise_all() -> None:
        v = ref()
        if v is not None and v.layers:
            raise_pooled(v, list(_kinds()))
            QTimer.singleShot(FILL_INTERVAL_MS, freeze)

    def freeze() -> None:
        from mpi_viewer.plugins._warm_up import after_step

        after_step()

    QTimer.singleShot(FILL_INTERVAL_MS, raise_all)  # (after the image's own first paint)


def _drop_and_fit(viewer) -> None:
    """The pooled layers removed (a study they do not fit), the view fitted on what is
    left."""
    drop(viewer)
    if len(viewer.layers):
        _fit_as_first(viewer)


def _fit_as_first(viewer) -> None:
    """The view fitted on the data and each slider at its middle step, as napari shows a
    window's first layer (here the pooled layers came first)."""
    viewer.reset_view()
    viewer.dims.current_step = tuple(max(0, int(n) - 1) // 2 for n in viewer.dims.nsteps)


def _home(viewer, img) -> None:
    """Move the pool made at start-up onto ``img``'s centre voxel (:func:`place_for` may
    have moved it there already), then fit the view on the study (:func:`_fit_as_first`)."""
    st = _state(viewer)
    st.homeless = False
    _move_voxels(viewer, _centre_placement(img))
    st.ref = weakref.ref(img)
    st.filled_for = id(img)
    _fit_as_first(viewer)
    _settle_after_image(viewer)


def _move_voxels(viewer, place: dict) -> None:
    """The pooled layers with a voxel (the empty Points have no extent) moved to
    ``place`` (unless all are there): each redrawn once, the world extent recomputed once."""
    from mpi_viewer.plugins._layers import keeping_active

    moved = [lyr for lyr in viewer.layers if is_pooled(lyr) and _homed_kinds(lyr)]
    if all(
        np.allclose(lyr.translate, place["translate"], atol=1e-6)
        and np.allclose(lyr.scale, place["scale"], rtol=1e-6)
        for lyr in moved
    ):
        return
    with keeping_active(viewer), contextlib.ExitStack() as stack:
        for lyr in moved:
            stack.enter_context(compat.one_refresh(lyr))
        stack.enter_context(compat.one_extent_update(viewer, *moved))
        for lyr in moved:
            lyr.scale = place["scale"]
            lyr.translate = place["translate"]


def place_for(viewer, volume) -> None:
    """A session opening into a window whose pool is still where start-up made it: the
    pooled voxels moved onto the centre of ``volume`` (the session's first image, not
    added yet), in a turn of the event loop of their own, so the image's own add costs
    napari's add alone; that image, once added, is the pool's home (:func:`_home`).
    Nothing when the pool has a home already or ``volume`` is not a 3-D scalar image."""
    viewer = _real(viewer)
    if not _state(viewer).homeless or volume.ndim != 3:
        return
    from mpi_viewer.geometry.axes import xyz_to_zyx

    centre = (np.asarray(volume.shape, dtype=float) - 1) / 2.0  # (z, y, x) index
    world = np.asarray(xyz_to_zyx(volume.index_to_physical(centre[None])[0]), dtype=float)
    scale = np.abs(np.asarray(xyz_to_zyx(volume.spacing_mm), dtype=float))
    _move_voxels(viewer, {"scale": scale, "translate": world})


def fill_one(viewer) -> bool:
    """Make the next missing pooled layer now (a session open runs this in turns of its
    own, after its images arrived, so the layers its docks restore are taken from the
    pool: one layer per turn, the window painted between two). After the last, the
    overlays shown to be made are hidden again. Returns whether there may be more."""
    viewer = _real(viewer)
    st = _state(viewer)
    if not st.enabled or getattr(viewer, "window", None) is None:
        return False
    img = st.ref() if st.ref is not None else None
    if st.pending and img is not None and img in viewer.layers:
        # the session's docks take them in the next turns and fill them: not dressed
        _make(viewer, st.pending.pop(0), _centre_placement(img), dress=False)
        return True
    if not st.pending and _plan(viewer):
        return fill_one(viewer)
    st.pending = []
    if st.made or st.primed or st.drafts:
        _hide_made(viewer)
    return False


def make_styled(viewer, kind: str, name: str, place: dict):
    """Add the empty layer of ``kind`` (:func:`_kinds`: the step's own style function),
    named ``name``, at ``place`` (scale and translate), leaving the active layer as it was;
    napari's warnings about it are not the user's."""
    import warnings

    from mpi_viewer.plugins._layers import keeping_active

    with warnings.catch_warnings(), keeping_active(viewer):
        warnings.simplefilter("ignore")  # nothing of the pool concerns the user
        return _kinds()[kind](viewer, name, place)


def draft(layer, centre, words=("0.5 × 10⁵ [0–9]",)) -> float | None:
    """Give an empty Points or Vectors layer something to draw, unseen: an empty layer
    draws nothing, so its shader programs would be linked (and its text laid out) at the
    step's first draw. One see-through point (or line) at ``centre`` per word of
    ``words``, each text column reading that word. Returns the layer's opacity (for
    :func:`undraft`), None for other layers (left as they are)."""
    kind_of = type(layer).__name__
    if kind_of not in ("Points", "Vectors"):
        return None
    centre = np.asarray(centre, dtype=float)
    opacity = float(layer.opacity)
    layer.opacity = 0.0
    if kind_of == "Vectors":
        layer.data = np.stack([centre, [1.0, 1.0, 1.0]])[None]
        return opacity
    layer.data = np.repeat(centre[None], len(words), axis=0)
    if len(layer.features.columns):  # the words in text columns, numbers kept numbers
        feats = layer.features
        defaults = layer.feature_defaults  # a new point's values: set back by undraft
        _DEFAULTS[layer] = {c: defaults[c].iloc[0] for c in defaults.columns}
        layer.features = {
            c: [np.nan] * len(words) if feats[c].dtype.kind in "fiu" else list(words)
            for c in feats.columns
        }
    return opacity


def undraft(layer, opacity: float) -> None:
    """Empty a layer :func:`draft` filled; its opacity as it was."""
    layer.data = np.zeros((0, 2, 3) if type(layer).__name__ == "Vectors" else (0, 3))
    defaults = _DEFAULTS.pop(layer, None)
    if defaults is not None:
        layer.feature_defaults = defaults
    layer.opacity = opacity


def _make(viewer, kind: str, place: dict, *, dress: bool = True, words=None):
    """Add the pooled layer of ``kind``; ``dress`` (:func:`_dress`) it too (its drafted
    texts ``words``: :func:`_dress`), else it is left for :func:`resume` to dress unless a
    step takes it first."""
    from mpi_viewer.plugins._layer_rows import hide_helper_rows

    st = _state(viewer)
    layer = make_styled(viewer, kind, f"(pool) {kind}", place)
    layer.metadata.setdefault("mpi_viewer", {})[POOL_KEY] = kind
    if dress:
        _dress(viewer, layer, kind, place, words)
    else:
        st.undressed.append((layer, kind, place))
    hide_helper_rows(viewer)
    st.made.append(layer)
    return layer


def _dress(viewer, layer, kind: str, place: dict, words=None) -> None:
    """What makes a pooled layer's first draw the step's costs paid now: the density's
    colour bar and the viewer's text overlay shown (hidden again by :func:`_hide_made`),
    a see-through point with text drawn (:func:`draft`). Not needed when a step takes
    the layer at once (a session being opened fills it in its next turns)."""
    st = _state(viewer)
    if kind == "density":  # its colour bar made now (napari makes an overlay when first shown)
        layer.colorbar.visible = True
        text = _text_overlay(viewer)
        if text is not None and not text.visible and not text.text:
            # its visual made and the glyphs the docks write laid out, unseen
            from mpi_viewer.plugins._warm_up import GLYPHS

            st.primed.append((text, {"text": "", "color": text.color, "visible": False}))
            text.color = (0.0, 0.0, 0.0, 0.0)
            text.text = GLYPHS
            text.visible = True
        st.primed.append((layer.colorbar, {"visible": False}))
    named = "name" in getattr(getattr(layer, "features", None), "columns", ())
    if words is None:
        words = ("0.5 × 10⁵",) if named else ("0.5 × 10⁵ [0–9]",)
    opacity = draft(layer, place["translate"], words)
    if opacity is not None:
        st.drafts.append((layer, opacity))


def _text_overlay(viewer):
    from mpi_viewer.plugins import _napari_compat as compat

    try:
        return compat.text_overlay(viewer)
    except Exception:  # noqa: BLE001 - a napari without it: nothing to prime
        return None


def _hide_made(viewer) -> None:
    """After the pooled layers were drawn: the overlays shown to be made, hidden again."""
    st = _state(viewer)
    for overlay, was in st.primed:
        for key, value in was.items():
            setattr(overlay, key, value)
    for layer, opacity in st.drafts:
        if is_pooled(layer) and layer in viewer.layers:
            undraft(layer, opacity)
    st.made, st.primed, st.drafts = [], [], []


def ready(viewer) -> bool:
    """Whether the pool is filled: made on the image it sits on, nothing left to make or
    draw (a pooled layer a step took since is not made again)."""
    st = _state(viewer)
    img = st.ref() if st.ref is not None else None
    return (
        not st.pending
        and not st.made
        and not st.undressed
        and img is not None
        and img in viewer.layers
        and st.filled_for == id(img)
    )


def disable(viewer) -> None:
    """No pool in this viewer (and the pooled layers removed)."""
    _state(viewer).enabled = False
    drop(viewer)


def drop(viewer) -> None:
    """Remove the pooled layers (their image was removed); refilled on the next image."""
    st = _state(viewer)
    st.pending, st.undressed = [], []
    _hide_made(viewer)
    for layer in [lyr for lyr in viewer.layers if is_pooled(lyr)]:
        viewer.layers.remove(layer)
    st.ref = None
    if st.enabled:
        schedule_fill(viewer)


# --------------------------------------------------------------------------- taking
def take(viewer, kind: str, *, name: str, metadata: dict | None = None, ndim: int = 3, move=True):
    """The pooled layer of ``kind`` for a step, named ``name`` and carrying ``metadata``
    (its ``mpi_viewer`` part replaces the pool's), above the study's layers and shown;
    None when there is none (the step adds its own). The caller sets data and placement.
    ``move=False``: left where it is (the caller places it)."""
    from mpi_viewer.plugins._layers import keeping_active

    viewer = _real(viewer)
    st = _state(viewer)
    layer = next(
        (
            lyr
            for lyr in viewer.layers
            if is_pooled(lyr) and lyr.metadata["mpi_viewer"][POOL_KEY] == kind
        ),
        None,
    )
    if layer is None or layer.ndim != ndim or name in viewer.layers:
        return None
    if layer in st.made:
        st.made.remove(layer)
    st.undressed = [u for u in st.undressed if u[0] is not layer]
    for drafted in [d for d in st.drafts if d[0] is layer]:  # taken before it was drawn
        st.drafts.remove(drafted)
        undraft(layer, drafted[1])
    md = dict(metadata or {})
    md.setdefault("mpi_viewer", {})
    with keeping_active(viewer):
        layer.metadata = md
        layer.name = name
        if move:
            _move_up(viewer, layer)
        if not layer.visible:
            layer.visible = True
    from mpi_viewer.plugins._layer_rows import hide_helper_rows

    hide_helper_rows(viewer)  # its row shown (unless it is a helper)
    return layer


def raise_pooled(viewer, kinds) -> None:
    """Move the pooled layers of ``kinds`` (in their order) above every layer that is not
    pooled, in one move: napari rebuilds its scene graph at each move of a layer, so a
    step that takes several pooled layers raises them together first (its own turn of
    the event loop) and each :func:`take` then finds nothing to move above."""
    from mpi_viewer.plugins._layers import keeping_active

    layers = _real(viewer).layers
    idx = [
        i
        for i, lyr in enumerate(layers)
        if is_pooled(lyr) and lyr.metadata["mpi_viewer"][POOL_KEY] in kinds
    ]
    if idx and any(not is_pooled(lyr) for lyr in list(layers)[min(idx) + 1 :]):
        with keeping_active(viewer):
            layers.move_multiple(idx, len(layers))


def _move_up(viewer, layer) -> None:
    """Move ``layer`` above every layer that is not pooled (as if it had just been added)."""
    layers = viewer.layers
    i = layers.index(layer)
    above = [lyr for lyr in list(layers)[i + 1 :] if not is_pooled(lyr)]
    if above:
        top = max(layers.index(lyr) for lyr in above)
        layers.move(i, top + 1)
