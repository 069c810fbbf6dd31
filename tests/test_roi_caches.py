"""What the ROI measurement keeps between calls changes no number.

A measured PSF keeps the template fits made with it (keyed by their exact inputs), the
sub-voxel integration keeps its spline matrices per size, and a seed whose neighbours'
tails are subtracted is grown and fitted once. Every click in the ROI dock measures every
seed again: the numbers must be those of a first measurement, bit for bit (a replayed
session is compared at 1e-9). The figures against the code before these caches:
``benchmarks/bench_roi.py`` (speed) and the sources' truth in ``test_coverage.py``.
"""

import numpy as np
from scipy import ndimage as ndi

from mpi_viewer.roi import regions as roi


def _rows(results):
    """Every number, flag, warning and mask of the results, NaN-safe, for ``==``."""
    return [
        repr(
            sorted(r.to_row().items())
            + [
                ("sd", (r.neighbour_signal_sd, r.delineation_sd)),
                ("mask", (r.mask.start, r.mask.array.shape, r.mask.array.tobytes())),
            ]
        )
        for r in results
    ]


def test_measuring_again_gives_the_first_numbers_bit_for_bit(study):
    from mpi_viewer.roi import _psf, _subvoxel

    seeds = [s["mpi_mm"] for s in study.truth["sources"]]  # a split pair, a faint one
    _psf._CACHE.clear()  # a new PSF: no fit kept
    _subvoxel._interp_matrix.cache_clear()
    first = roi.measure(study.mpi, seeds)
    assert "shared_signal" in first[1].flags or "shared_signal" in first[2].flags
    assert any(r.delineation_sd > 0 for r in first)
    again = roi.measure(study.mpi, seeds)  # every fit from the caches
    assert _rows(again) == _rows(first)


def test_the_subvoxel_rim_is_scipys_dilation():
    from mpi_viewer.roi._subvoxel import _dilate_cube

    rng = np.random.default_rng(0)
    for d in (1, 2, 3):
        for _ in range(50):
            m = rng.random(tuple(rng.integers(1, 9, d))) < rng.random() * 0.3
            ref = ndi.binary_dilation(m, structure=ndi.generate_binary_structure(d, d))
            assert np.array_equal(_dilate_cube(m), ref)


def test_a_psf_let_go_is_freed_without_the_cycle_collector(study):
    """The GUI freezes what survives each step out of the cycle collector: a measured PSF
    and the fits it keeps must be freed by reference counting alone once its image is
    gone from the module caches (no PSF → fits → point → PSF loop)."""
    import gc
    import weakref

    from mpi_viewer.roi import _psf, _unseeded

    seeds = [s["mpi_mm"] for s in study.truth["sources"]]
    _psf._CACHE.clear()
    roi.measure(study.mpi, seeds)
    (psf,) = [p for p in _psf._CACHE.values() if p is not None]
    assert psf.__dict__.get("_source_fits"), "the split pair's fit is kept with its PSF"
    gone = weakref.ref(psf)
    del psf
    gc.disable()
    try:
        _psf._CACHE.clear()  # the module caches of the last few PSFs let it go
        _unseeded._SIGNIFICANT.clear()
        assert gone() is None
    finally:
        gc.enable()
