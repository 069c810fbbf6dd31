"""ROIs on real 2-D MPI reconstructions (FFL scanner, Synomag, 20 mm FOV, 64 × 64:
negative values, ring artefacts). Truth here is what the image shows: phantom 29 holds
three separate blobs, each found independently below by thresholding at half the
image maximum with scipy."""

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from mpi_viewer.roi.regions import ROIParams, measure, rois_to_label_image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "mpi_ffl_phantoms"
SPACING_MM = (20.0 / 64, 20.0 / 64)

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real MPI data folder {DATA} is absent")


def _read(n):
    from mpi_viewer.io.images import read_volume

    return read_volume(DATA / f"ffl_phantom_{n}.mat", modality="MPI", spacing_mm=SPACING_MM)


@pytest.mark.parametrize("method", ["halfmax", "nsd", "kmeans"])
def test_phantom_29_one_roi_per_blob(method):
    vol = _read(29)
    a = vol.array
    assert a.min() < 0  # real reconstruction: negative background
    blobs, n = ndi.label(a >= 0.5 * a.max())
    assert n == 3
    centres = ndi.center_of_mass(a, blobs, range(1, 4))
    # clicks ~0.5 mm off each blob's centre
    seeds = [vol.index_to_physical([np.asarray(c) + (1.5, -1.0)])[0] for c in centres]
    rois = measure(vol, seeds, ROIParams(method=method))
    assert len(rois) == 3
    lab = rois_to_label_image(vol, rois)
    for k, r in enumerate(rois, start=1):
        assert r.size_unit == "mm2" and r.area_mm2 > 1.0
        # each ROI lies on its own blob, holds that blob's peak and no other blob
        assert set(np.unique(blobs[lab == k])) - {0} == {k}
        peak_idx = np.rint(vol.physical_to_index([r.peak_mm])[0]).astype(int)
        assert blobs[tuple(peak_idx)] == k
        assert r.peak_au == pytest.approx(a[blobs == k].max(), rel=0.1)
        assert "shared_signal" not in r.flags and "touching" not in r.flags
        assert r.snr > 10 and all(0.3 < f < 6 for f in r.fwhm_mm)
    if method == "halfmax":
        for k, r in enumerate(rois, start=1):
            # the half-maximum region of the blob's own peak, found here with scipy
            own = a >= 0.5 * r.peak_au
            cl, _ = ndi.label(own, structure=np.ones((3, 3)))
            ref = cl == cl[tuple(np.rint(vol.physical_to_index([r.peak_mm])[0]).astype(int))]
            inter = (ref & (lab == k)).sum()
            assert inter / (ref | (lab == k)).sum() > 0.9
            # the total is integrated at sub-voxel resolution: close to the voxel set's sum
            # (the blobs span many voxels), not equal to it
            assert r.total_signal == pytest.approx(
                a[lab == k].sum() * np.prod(SPACING_MM), rel=0.05
            )


def test_ring_phantom_without_splitting_is_one_region():
    vol = _read(1)  # an "O": one extended structure
    a = vol.array
    pk = np.unravel_index(int(np.argmax(a)), a.shape)
    r = measure(vol, [vol.index_to_physical([pk])[0]], ROIParams(split_sources=False))[0]
    ref, _ = ndi.label(a >= 0.5 * r.peak_au, structure=np.ones((3, 3)))
    assert r.n_voxels == int((ref == ref[pk]).sum())
