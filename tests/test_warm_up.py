"""Start-up warm-up (plugins/_warm_up.py): napari's first-of-a-kind costs paid before
the data, and nothing of it left for the user to see.

Behaviour only (no timing: the speed is measured by benchmarks/bench_gui_stalls.py).
"""

import gc

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_warm_up_leaves_the_viewer_as_it_was(make_napari_viewer):
    from mpi_viewer.plugins._layer_pool import _kinds
    from mpi_viewer.plugins._warm_up import GLYPHS, WARM_KINDS, warm_up

    viewer = make_napari_viewer(show=True)
    events: list = []
    drawn: list = []
    viewer.layers.events.inserted.connect(lambda e: events.append(e.value.name))
    viewer.layers.events.inserted.connect(lambda e: drawn.append(e.value))
    assert warm_up(viewer) is True
    # it drew one layer of each costly kind, made by the steps' own style functions (the
    # layer pool's makers: no style of its own), every layer type the pool makes among them…
    assert events == [f"(warm-up) {k}" for k in WARM_KINDS] and set(WARM_KINDS) <= set(_kinds())
    assert {type(lyr).__name__ for lyr in drawn} == {"Points", "Labels", "Image", "Vectors"}
    by_kind = dict(zip(WARM_KINDS, drawn, strict=True))
    assert np.allclose(by_kind["outlines"].colormap.color_dict[None], [1, 1, 0, 1])  # yellow
    assert str(by_kind["cell labels"].blending) == "translucent_no_depth"
    # …with every glyph the docks write in a text, drawn (the font atlas filled)
    assert "".join(by_kind["cell labels"].text.values) == GLYPHS
    assert "".join(by_kind["mold fixed"].text.values) == GLYPHS
    assert len(viewer.layers) == 0  # …and removed them all
    assert len(viewer.layers.selection) == 0 and viewer.layers.selection.active is None
    assert viewer.dims.ndisplay == 2
    # the study's layers then arrive as usual, with their own names
    img = viewer.add_image(np.zeros((4, 5, 6), np.float32), name="MRI")
    assert [lyr.name for lyr in viewer.layers] == ["MRI"]
    # a viewer that already shows data is left alone (its view is the user's)
    events.clear()
    assert warm_up(viewer) is False
    assert events == [] and list(viewer.layers) == [img]


def test_settle_freezes_start_up_objects_for_the_collector(make_napari_viewer):
    from mpi_viewer.plugins._warm_up import settle

    viewer = make_napari_viewer(show=True)
    try:
        settle(viewer)
        assert gc.get_freeze_count() > 100_000  # napari, Qt, numpy… no longer walked
        assert len(viewer.layers) == 0
    finally:
        from mpi_viewer.plugins._warm_up import stop_freezing

        stop_freezing()  # the rest of the test session collects as usual


def test_mpi_viewer_demo_starts_settled(make_napari_viewer, study, monkeypatch):
    """`mpi-viewer` (``run``) settles before the data, warming up only when no data follows;
    tests' ``prepare`` does not settle."""
    from mpi_viewer.plugins import _launch, _warm_up

    calls: list = []
    monkeypatch.setattr(
        _warm_up, "settle", lambda viewer, warm=True: calls.append((len(viewer.layers), warm))
    )
    viewer = make_napari_viewer(show=True)
    _launch.prepare(viewer, demo=True, study=study, settle=True)
    # before any data layer; no warm-up (the pool filled on the demo's images pays it)
    assert calls == [(0, False)]
    assert len(viewer.layers) >= 3  # then the demo's MRI, CT, MPI
    _launch.prepare(make_napari_viewer(show=True))
    assert calls == [(0, False)]
    _launch.prepare(make_napari_viewer(show=True), settle=True)  # `mpi-viewer`, no data yet
    assert calls == [(0, False), (0, True)]


def test_each_finished_step_frees_its_garbage_and_freezes_what_lives(monkeypatch):
    """The collector policy after each step (``after_step``): the step's cyclic garbage is
    freed, its survivors frozen; a frozen cycle that dies later is held only until the
    frozen objects pass the cap, then freed once (memory stays bounded)."""
    import weakref

    from mpi_viewer.plugins import _warm_up

    class Node:
        pass

    gc.collect()
    gc.freeze()  # start-up, as settle leaves it
    monkeypatch.setitem(_warm_up._POLICY, "on", True)
    monkeypatch.setitem(_warm_up._POLICY, "added", 0)
    try:
        results = [Node() for _ in range(1000)]  # what the step made and keeps
        scrap = Node()
        scrap.self = scrap  # what it made and dropped, in a cycle: only the collector frees it
        scrap_ref = weakref.ref(scrap)
        del scrap
        frozen = gc.get_freeze_count()
        _warm_up.after_step()
        assert scrap_ref() is None  # freed, not frozen
        assert gc.get_freeze_count() >= frozen + 1000  # the survivors no longer walked

        old = results.pop()  # a result replaced later, dying in a cycle while frozen
        old.self = old
        old_ref = weakref.ref(old)
        del old
        _warm_up.after_step()
        assert old_ref() is not None  # held while under the cap…
        monkeypatch.setattr(_warm_up, "FREEZE_CAP", 0)
        _warm_up.after_step()
        assert old_ref() is None  # …freed once the cap is passed
        assert gc.get_freeze_count() >= 999  # and the living frozen again
    finally:
        _warm_up.stop_freezing()
