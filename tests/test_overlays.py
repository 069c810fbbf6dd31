"""Label placement and overlay arrays of the cells overlays (core, no display)."""

import numpy as np
import pytest

from mpi_viewer.report.overlays import (
    _box_disc_distance,
    cell_density,
    content_box,
    place_labels,
    text_size_px,
)


def _check(anchors, sizes, radii, bounds, out, gap=4.0):
    n = len(anchors)
    for i, p in enumerate(out):
        c, s = np.asarray(p.centre), np.asarray(p.size)
        assert p.clear
        # inside the view
        assert c[0] - s[0] / 2 >= bounds[0] - 1e-6 and c[0] + s[0] / 2 <= bounds[2] + 1e-6
        assert c[1] - s[1] / 2 >= bounds[1] - 1e-6 and c[1] + s[1] / 2 <= bounds[3] + 1e-6
        # hides no ROI (its own included)
        for k in range(n):
            assert _box_disc_distance(c, s, anchors[k]) >= radii[k], (i, k)
        # overlaps no other label
        for j, q in enumerate(out):
            if j != i:
                cj, sj = np.asarray(q.centre), np.asarray(q.size)
                assert (
                    abs(c[0] - cj[0]) >= (s[0] + sj[0]) / 2
                    or abs(c[1] - cj[1]) >= (s[1] + sj[1]) / 2
                ), (i, j)
        # a leader joins a label set away from its ROI to the ROI's edge
        if p.leader is not None:
            start = np.asarray(p.leader[0])
            assert np.linalg.norm(start - anchors[i]) == pytest.approx(radii[i])


def test_crowded_labels_never_overlap_and_never_hide_an_roi():
    rng = np.random.default_rng(3)
    for _trial in range(20):
        n = 6
        anchors = rng.uniform([250, 200], [550, 400], size=(n, 2))
        texts = [f"roi_{k}: 3.{k} × 10⁵ cells [2.9–3.6 × 10⁵]" for k in range(n)]
        sizes = np.array([text_size_px(t, 13) for t in texts])
        radii = rng.uniform(5, 15, n)
        bounds = (0, 0, 800, 600)
        out = place_labels(anchors, sizes, radii, bounds)
        _check(anchors, sizes, radii, bounds, out)


def test_a_label_stays_beside_its_roi_when_it_can_and_inside_the_view():
    anchors = np.array([[790.0, 300.0]])  # at the right edge: the label goes left
    out = place_labels(anchors, [[200.0, 20.0]], [10.0], (0, 0, 800, 600))
    _check(anchors, np.array([[200.0, 20.0]]), [10.0], (0, 0, 800, 600), out)
    assert out[0].centre[0] < 790 and out[0].leader is None
    # two sources 4 mm apart at the default zoom (the demo's strong and weak)
    anchors = np.array([[400.0, 300.0], [400.0, 318.0]])
    sizes = np.array([text_size_px("strong: 4.0 × 10⁵ cells [3.6–4.4 × 10⁵]", 13)] * 2)
    out = place_labels(anchors, sizes, [8.0, 8.0], (0, 0, 800, 600))
    _check(anchors, sizes, [8.0, 8.0], (0, 0, 800, 600), out)


def test_density_integrates_to_the_roi_cells():
    sig = np.zeros((5, 5, 5), np.float32)
    sig[2, 2, 2] = 100.0
    d = cell_density(sig, slope=1250.0, kind="iron", pg_per_cell=20.0, threshold_au=1.0)
    # 100 a.u. over 1 mm³ → 0.08 µg → 4000 cells at 20 pg/cell
    assert d[2, 2, 2] == pytest.approx(100 / 1250 / 20e-6) and d.sum() == pytest.approx(4000)


def test_content_box_holds_every_voxel_with_a_margin():
    m = np.zeros((20, 30, 40), bool)
    m[5, 7, 9] = m[8, 20, 30] = True
    box = content_box(m, margin=2)
    assert box == (slice(3, 11), slice(5, 23), slice(7, 33))
    assert m[box].sum() == m.sum()
    assert content_box(np.zeros((3, 3), bool)) == (slice(0, 1), slice(0, 1))
