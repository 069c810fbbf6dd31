"""Pay napari's first-of-a-kind costs at start-up instead of in the middle of a step.

The first Points layer with text, the first Labels layer, the first Vectors layer a
viewer draws cost napari and vispy far more than the next ones (measured under
software OpenGL, llvmpipe under Xvfb, CPU ms of the GUI thread, first → second):
a Points layer with text 413 → 25 ms to build (the points and text modules imported,
the glyphs rendered into vispy's shared font atlas) and its first paint 312 → 171 ms;
a Labels layer ~165 ms of vispy's line dash atlas (computed once per process, then
cached); and every new shader program is compiled and linked on its first draw
(Mesa keeps the result in its shader cache for the next program of the same source).
A study meets each of these in a step (the mold's wells, the first ROI, the cells'
labels), where it freezes the window for a second.

When the viewer starts without data (``mpi-viewer``), :func:`settle` has the layer pool
of :mod:`._layer_pool` made then (:func:`~._layer_pool.fill_at_start`): the layers the
steps will take, made by the steps' own style functions and drawn once, pay these costs
where a few seconds more are not felt. Where there is no pool to make (it is not
installed in that viewer), :func:`warm_up` makes one layer of each kind the study will
use (:data:`WARM_KINDS`) by the same functions, draws them once, and removes them, leaving
the viewer's layers, selection and view as they were. With data (``mpi-viewer demo``,
``mpi-viewer FILES``) the layer pool filled on the first image pays the same costs during
start-up anyway, and neither runs (:func:`settle`).

Python's own garbage collector is the other stall: a full (generation 2) collection
walks every object the process holds, and after napari, Qt, SciPy, SimpleITK and
pydantic are imported that is over a million objects, 150–650 ms on the GUI thread at
random moments (measured in ``benchmarks/bench_gui_stalls.py``: the mold step, the
calibration, the report). :func:`settle` freezes what start-up made (``gc.freeze``:
modules, classes, the window, the docks; never scanned again, they live as long as the
program anyway) before any data is loaded, so later collections walk only what the
study itself makes. Then, at the end of each step (:func:`after_step`, called by
:func:`~mpi_viewer.plugins._work.start_work` when a worker has finished and its results
are shown), what the step left is collected once (a full collection that walks only the
objects made since the last freeze: the step's own, 5–60 ms) and the survivors are
frozen in turn: the layers, results and tables of a finished step live on, so no later
collection walks them again, and the collections that run during the next step (in its
worker, but holding the GIL the window needs) walk only that step's objects.

The price of freezing: a frozen object that later dies in a reference cycle (a layer or
a result replaced afterwards) is not freed while it stays frozen. That is bounded: when
the objects the steps have frozen exceed :data:`FREEZE_CAP` (dozens of studies' worth),
the next step's end unfreezes everything and collects it once (one full pause, as
before the policy, every few studies), then freezes again. Measured in
``benchmarks/bench_gui_stalls.py --memory`` (RSS across repeated session reopenings).
"""

from __future__ import annotations

import numpy as np

#: Characters the docks' labels use (well and phantom names, cell counts with
#: intervals and powers of ten): rendered into vispy's font atlas once, at start-up.
GLYPHS = (
    "0123456789 abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ×⁰¹²³⁴⁵⁶⁷⁸⁹⁻–-+.,:;[]()/%±µ³⚠"
)
#: :data:`GLYPHS` as the texts of two drafted points (:func:`._layer_pool.draft`).
GLYPH_WORDS = (GLYPHS[: len(GLYPHS) // 2], GLYPHS[len(GLYPHS) // 2 :])


#: The layers the study adds whose first of a kind costs napari far more than the next
#: (module docstring): one of each, made by the steps' own style functions through the
#: layer pool (:func:`~mpi_viewer.plugins._layer_pool.make_styled`). The pool's other kinds
#: (the other mold's wells, the seeds, the 2-D twin, the backdrops) cost what a second
#: layer costs once these were drawn.
WARM_KINDS = ("mold fixed", "roi labels", "outlines", "density", "cell labels", "leaders")


def _layers_to_warm(viewer) -> list:
    """Add the warm-up layers (one voxel or one see-through point at the origin, in mm;
    the texts of :data:`GLYPHS`); returns them."""
    from mpi_viewer.plugins._layer_pool import draft, make_styled

    place = {"scale": np.ones(3), "translate": np.zeros(3)}
    made = []
    for kind in WARM_KINDS:
        layer = make_styled(viewer, kind, f"(warm-up) {kind}", place)
        draft(layer, place["translate"], GLYPH_WORDS)
        made.append(layer)
    return made


def warm_up(viewer) -> bool:
    """Build, draw once and remove one small layer of each kind the study adds later.

    The viewer's layers, selection, dims and camera are as before. Returns False (and
    does nothing) when the viewer has no window to draw in or already holds layers
    (their first costs are paid: nothing to gain, a view to keep).
    """
    from qtpy.QtWidgets import QApplication

    if getattr(viewer, "window", None) is None or len(viewer.layers) or viewer.dims.ndisplay != 2:
        return False
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nothing of the warm-up concerns the user
        made = _layers_to_warm(viewer)
        try:
            QApplication.processEvents()
            # a synchronous draw of the canvas: every program compiled, every texture made
            viewer.screenshot(canvas_only=True)
        finally:
            for layer in made:
                if layer in viewer.layers:
                    viewer.layers.remove(layer)
            QApplication.processEvents()
    return True


#: Objects frozen by :func:`after_step` beyond which a step's end collects everything once.
FREEZE_CAP = 1_000_000
#: ``added``: objects frozen by :func:`after_step` since start-up or the last compaction
#: (counted when frozen; some have died since: an upper bound). ``gc.get_freeze_count``
#: is not used during steps: it walks every frozen object (tens of ms for half a million).
_POLICY = {"on": False, "added": 0, "compactions": 0}


def settle(viewer, *, warm: bool = True) -> None:
    """End of start-up, before any data: the layer pool made now, else :func:`warm_up`
    (``warm``; module docstring), then freeze the objects
    made so far out of the garbage collector's full collections, and from now on the
    survivors of each finished step (:func:`after_step`; module docstring).

    ``warm=False`` when the data follows at once (``mpi-viewer demo``, ``mpi-viewer
    FILES``): the layer pool, filled as the first image opens, pays the same first-of-a-kind
    costs moments later, still in start-up, so the warm-up would only add its own time
    (``benchmarks/bench_startup.py --program``). Without data (``mpi-viewer``, then File >
    Open) the pool made now leaves the first image's open only napari's own add (and the
    pooled layers' move onto it) instead of a second of the pool's fill after it."""
    import gc

    if warm:
        from mpi_viewer.plugins._layer_pool import fill_at_start

        if not fill_at_start(viewer, GLYPH_WORDS):  # the pool made now pays the warm-up's costs
            warm_up(viewer)
    gc.collect()  # garbage of start-up freed first, not frozen with the rest
    gc.freeze()
    _POLICY.update(on=True, added=0)


#: The collector's thresholds stay Python's defaults while a step's worker runs. Frequent
#: full collections during steps (700, 5, 1) freed the report's garbage in small pieces, but
#: each walks all the step's objects: every step's wall time doubled (session save 6.8 →
#: 16.6 s, the faint ROI 2.1 → 6.3 s; ``benchmarks/bench_gui_stalls.py``) for pauses the
#: freeze after each step already keeps at 1–25 ms.
_DEFAULT_THRESHOLDS = (700, 10, 10)


def after_step() -> None:
    """A step has finished (its worker done, its results shown): free the garbage it left
    (a full collection of the objects made since the last freeze), freeze what survives.
    Does nothing unless :func:`settle` started the policy."""
    import gc

    if not _POLICY["on"]:
        return
    gc.set_threshold(*_DEFAULT_THRESHOLDS)
    if _POLICY["added"] > FREEZE_CAP:
        gc.unfreeze()  # the bound: what died in a frozen cycle is freed now, once
        _POLICY.update(added=0, compactions=_POLICY["compactions"] + 1)
        gc.collect()
        gc.freeze()
        return
    gc.collect()  # walks only what is not frozen: this step's objects
    _POLICY["added"] += len(gc.get_objects(generation=2))  # the survivors, all in gen 2 now
    gc.freeze()


def freezing() -> bool:
    """Whether :func:`settle` started the freezing policy (and it was not stopped)."""
    return bool(_POLICY["on"])


def stop_freezing() -> None:
    """End the policy and give every frozen object back to the collector (tests)."""
    import gc

    _POLICY["on"] = False
    gc.unfreeze()
