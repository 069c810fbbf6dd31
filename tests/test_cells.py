"""Cell number from iron: iron-per-cell validation, intervals, labels."""

import numpy as np
import pytest
from scipy import stats

from mpi_viewer.calibration.cells import IronPerCell, cells_from_iron, format_cells, format_iron
from mpi_viewer.errors import InputError


@pytest.mark.parametrize(
    "mean, sd, msg",
    [
        (0, 0, "> 0"),
        (-3, 0, "> 0"),
        (None, 0, "missing"),
        (15, 20, "larger than the mean"),
        (15, -1, "≥ 0"),
        ("abc", 0, "not a number"),
        (float("nan"), 0, "> 0"),
    ],
)
def test_bad_iron_per_cell(mean, sd, msg):
    with pytest.raises(InputError, match=msg):
        IronPerCell(mean, sd)


def test_iron_per_cell_round_trip():
    ipc = IronPerCell(15, 1.5)
    assert IronPerCell.from_dict(ipc.to_dict()) == ipc


def test_cells_exact_without_iron_per_cell_sd():
    # 6 µg at 15 pg/cell = 400 000 cells; the interval scales exactly
    n, lo, hi = cells_from_iron(6.0, 5.0, 7.5, IronPerCell(15.0))
    assert n == pytest.approx(4e5) and lo == pytest.approx(5e6 / 15) and hi == pytest.approx(5e5)


def test_cells_interval_from_iron_per_cell_alone_is_analytic():
    """Iron known exactly: cells = I/q is monotone in q ~ N(15, 1.5), so its bounds are I/q's quantiles."""
    n, lo, hi = cells_from_iron(6.0, 6.0, 6.0, IronPerCell(15.0, 1.5))
    z = stats.norm.ppf(0.975)
    assert n == pytest.approx(4e5)
    assert lo == pytest.approx(6e6 / (15 + z * 1.5), rel=5e-3)
    assert hi == pytest.approx(6e6 / (15 - z * 1.5), rel=5e-3)


def test_cells_interval_reproduces_iron_interval_when_sd_is_tiny():
    n, lo, hi = cells_from_iron(6.0, 5.0, 7.5, IronPerCell(15.0, 1e-6), dof=4)
    assert lo == pytest.approx(5e6 / 15, rel=5e-3) and hi == pytest.approx(7.5e6 / 15, rel=5e-3)


def test_cells_interval_is_reproducible_and_wider_than_each_part():
    a = cells_from_iron(6.0, 5.0, 7.5, IronPerCell(15.0, 1.5), dof=4)
    b = cells_from_iron(6.0, 5.0, 7.5, IronPerCell(15.0, 1.5), dof=4)
    assert a == b
    assert a[1] < 5e6 / 15 and a[2] > 7.5e6 / 15


def test_cells_coverage_with_both_uncertainties():
    """Iron from a noisy calibration (known SE) and iron per cell from noisy replicates:
    the 95 % cell interval covers the true cell number in 93–98 % of 600 realisations."""
    rng = np.random.default_rng(7)
    true_cells, true_ipc = 2.0e5, 15.0
    true_iron = true_cells * true_ipc * 1e-6
    se_iron, se_ipc = 0.2, 1.0
    z = stats.norm.ppf(0.975)
    hits = 0
    for _ in range(600):
        iron = rng.normal(true_iron, se_iron)
        ipc = IronPerCell(rng.normal(true_ipc, se_ipc), se_ipc)
        _, lo, hi = cells_from_iron(iron, iron - z * se_iron, iron + z * se_iron, ipc, draws=20_000)
        hits += lo <= true_cells <= hi
    assert 0.93 <= hits / 600 <= 0.985


def test_format_cells():
    assert format_cells(2.4e5, 1.9e5, 2.9e5) == "2.4 × 10⁵ cells [1.9–2.9 × 10⁵]"
    assert format_cells(1.23e6) == "1.2 × 10⁶ cells"
    assert format_cells(850, 600, 1100) == "850 cells [600–1100]"
    assert format_cells(None) == "—"
    assert format_iron(2.345, 1.91, 2.8) == "2.35 µg Fe [1.91–2.8]"
