"""Quantification ROIs on the native MPI grid: half-maximum, n·SD and k-means.

One click (a *seed*, physical mm in the MPI's own frame) becomes one region of
interest (ROI) and its signal statistics:

1. climb from the seed to the local maximum it belongs to (steepest ascent on the
   lightly smoothed signal: the click's own peak, not the brightest voxel in a window);
2. keep the connected voxels at or above a threshold:

   - ``"halfmax"`` (default): ``fraction`` (0.5) × that peak, the field's convention
     (Sehl et al., Tomography 6:315, 2020, doi:10.18383/j.tom.2020.00043). Independent
     of any noise estimate, and comparable between sources of any strength;
   - ``"nsd"``: ``n_sd`` (5) × the noise SD (Ureña Horno et al., Nanoscale 17:24060,
     2025, doi:10.1039/d5nr02393a). Takes in more of a faint source's signal;
   - ``"kmeans"``: the voxels not in the lowest of ``kmeans_clusters`` intensity
     classes of the source's neighbourhood (its half-maximum box widened by its own
     size on each side), never below ``n_sd`` × noise SD (k-means segmentation of
     MPI signal, H. Hayat et al., "Magnetic particle imaging…", 2021);

3. when that region holds other peaks (a weak source beside a strong one, Sehl et al.
   2020 fig. 5: the weak one is often only a shoulder, found as a maximum of the
   curvature, the negative Laplacian of Gaussian), fit a Gaussian point-spread model
   to every peak, subtract the neighbours' models and threshold what is left from the
   source's own peak; the ROI is flagged ``shared_signal`` and the subtracted signal
   reported (``neighbour_signal``). A measured neighbour whose peak lies *outside* the
   region (the weak source beside the strong one, seen from the strong: +0.2 % of its
   total on the demo) is subtracted too: with several seeds, every other source whose
   peak lies within 3 of its FWHM of an ROI's box has its point-spread model (fitted
   once per source: the split fit's, else a single Gaussian on its own region)
   removed before thresholding; ``neighbour_signal`` reports it, and ``shared_signal``
   flags it when above 0.5 % of the total. Extended structures (rings, vessels) can
   hold several maxima: turn ``split_sources`` off for them (no subtraction at all);
4. statistics: peak (sub-voxel), mean, volume (mm³; area mm² in 2-D), total signal =
   mean × volume (a.u.·mm³), SNR = peak / noise SD, FWHM per axis from a Lorentzian
   fit of the line profile through the peak (Ureña Horno et al. 2025).

   Volume, total and mean are those of the native voxel set, the mask that is written
   and drawn (``n_voxels`` × voxel volume; Σ signal over the mask × voxel volume): what
   a user re-measures from the mask in another viewer. The field's thresholded ROIs are
   voxel sets (a voxel is in when its centre reaches the threshold); on coarse MPI
   grids (0.25–1 mm voxels, ~80 per half-maximum ROI) that makes a point source's total
   depend on where it sits within a voxel (±2–4 % on the demo's 0.5 mm grid). So the
   same threshold surface is also integrated at sub-voxel resolution
   (``volume_subvoxel_mm3`` / ``total_signal_subvoxel_au_mm3``): the ROI's bounding box
   (+1 voxel) is interpolated by a cubic B-spline onto a grid 4× finer per axis,
   thresholded there (after any neighbour subtraction; fine voxels crossed by the
   threshold surface count by their fraction inside), total = Σ fine signal ≥ threshold
   × fine voxel volume (within 0.1 % of the continuous-space value at any offset; see
   :mod:`mpi_viewer.roi._subvoxel`). Calibrations turn that sub-voxel total into iron,
   phantoms and targets alike (:attr:`ROIResult.calibration_signal`).

   Measurement revision 1 (:attr:`ROIParams.revision`; sessions saved before
   revisions were recorded) reported the sub-voxel volume, total and mean in place of
   the voxel set's, and has no sub-voxel columns.

All work happens in a local box around the seed that grows until the region no
longer touches its edge: nothing labels or copies the whole volume. An optional
receiver-saturation curve (:class:`SaturationCurve`) corrects the signal before any
statistic.

Manual ROIs (a polygon drawn on an image or slice, :func:`polygon_to_mask`; voxels
painted in a label image, :func:`measure_label_image`) are measured by
:func:`measure_mask` with the same statistics (method ``"manual"``).

Positions are physical mm in ITK (x, y, z) order; arrays are numpy (z, y, x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mpi_viewer.defaults import HALFMAX_FRACTION, MEASUREMENT_REVISION, N_SD, REVISIONS
from mpi_viewer.errors import InputError
from mpi_viewer.roi._saturation import SaturationCurve

if TYPE_CHECKING:  # pragma: no cover
    from mpi_viewer.geometry.volume import Volume


#: ROI methods, the default first.
METHODS = ("halfmax", "nsd", "kmeans")


#: Half-maximum reference peaks (see :class:`ROIParams`), the default first.
PEAK_CONVENTIONS = ("subvoxel", "voxel")


#: Point-source models for splitting (see :class:`ROIParams`), the default first.
PSF_MODELS = ("measured", "gaussian")


#: Flags an ROI can carry (see :class:`ROIResult`).
FLAGS = (
    "touching",
    "shared_signal",
    "multiple_peaks",
    "extended",
    "saturated",
    "duplicate",
    "edge",
    "unseeded_peak",
)

#: Each flag said in words, for a user (the bare code is for programs and the CSV's
#: ``flags`` column), and the words of the ROI's own warning that already say it.
FLAG_TEXT = {
    "touching": ("touches another ROI.", ("touches ",)),
    "shared_signal": (
        "shares its signal with a neighbouring source (the neighbour's model was subtracted).",
        ("share this region", "tails reach"),
    ),
    "multiple_peaks": ("the region holds more than one peak.", ("maxima", "peaks and was not")),
    "extended": ("not point-like: an extended source.", ("not point-like",)),
    "saturated": ("the peak is in the receiver's saturation (corrected).", ("saturat",)),
    "duplicate": ("the same peak as another ROI.", ("same peak as",)),
    "edge": ("the ROI reaches the image edge.", ("image edge",)),
    "unseeded_peak": ("a peak found without a seed.", ("seed",)),
}


def flag_sentences(flags, warnings=()) -> list[str]:
    """The ROI's flags in words, leaving out those its ``warnings`` already say in full
    (a warning such as "touches weak." makes "touching" redundant); unknown flags as they are."""
    said = " ".join(str(w) for w in warnings or ())
    out = []
    for flag in flags or ():
        text, keys = FLAG_TEXT.get(str(flag), (str(flag), ()))
        if keys and any(k in said for k in keys):
            continue
        if text not in out:
            out.append(text)
    return out


@dataclass
class ROIParams:
    """How an ROI is delineated; shared by the dock, the command line and sessions.

    Attributes
    ----------
    method : {"halfmax", "nsd", "kmeans"}
        Threshold rule (see the module docstring). ``"halfmax"`` is the default: it is
        the field's convention (Sehl et al. 2020) and does not depend on the noise
        estimate; ``"nsd"`` captures more of faint sources.
    fraction : float
        ``halfmax``: threshold as a fraction of the source's own peak (0 < f < 1).
    n_sd : float
        ``nsd``: threshold in multiples of the noise SD (5 in Ureña Horno et al. 2025).
    noise_sd : float or None
        Noise SD in a.u.; ``None`` estimates it (from ``background_bbox`` when given,
        else robustly from the whole image, see :func:`estimate_noise_sd`).
    background_bbox : tuple or None
        A user background region as index bounds ``((z0, z1), (y0, y1), (x0, x1))``
        (half-open, numpy order) for the noise SD.
    background_mask : ndarray or None
        A boolean background mask on the MPI grid (not serialised; the dock passes it).
    split_sources : bool
        Give every peak in a region its own ROI, correcting for neighbours' signal.
    connectivity : {"full", "face"}
        Voxel neighbourhood of a region: 26 (8 in 2-D) or 6 (4 in 2-D).
    search_radius_mm : float
        Longest climb from the seed to its peak, mm.
    kmeans_clusters : int
        ``kmeans``: number of intensity classes (the lowest is background).
    min_snr : float
        A peak below ``min_snr`` × noise SD is background (no ROI).
    saturation_curve : SaturationCurve or None
        Receiver response (measured → true), applied before any statistic.
    peak_convention : {"subvoxel", "voxel"}
        ``halfmax``: the maximum the fraction is taken of. ``"subvoxel"`` (default):
        the sub-voxel fitted peak (a point source between voxels peaks above its
        brightest voxel; the fit averages the noise of ~25 voxels), never below the
        brightest voxel of the region. ``"voxel"``: the brightest voxel, as read in a
        DICOM viewer (Horos). Either way the threshold is never below half of the
        source's brightest voxel — except, with ``"subvoxel"`` at revision 2, a faint
        lone point source (peak SNR < 30): its region is the half maximum of its fitted
        point-spread model, as the brightest of its noisy voxels reads high (+16 % at
        SNR 6.5).
    psf : {"measured", "gaussian"}
        Point-source model used to split sources and subtract a neighbour's tail:
        ``"measured"`` (default) — the PSF measured on the image from its bright,
        isolated, point-like sources (vials, isolated spots), heavy tails included;
        Gaussians when the image holds none. ``"gaussian"`` — axis-aligned Gaussians
        fitted per source (no tails).
    revision : int
        Measurement revision (:data:`REVISIONS`): how the numbers are computed, so that
        a saved session replays with the numbers it was measured with. New ROIParams
        take :data:`MEASUREMENT_REVISION`; a stored parameter dict without one was
        written before revisions existed and is revision 1 (:meth:`from_dict`;
        :meth:`to_dict` leaves revision 1 out, so such dicts stay as they were).
    """

    method: str = "halfmax"
    fraction: float = HALFMAX_FRACTION
    n_sd: float = N_SD
    noise_sd: float | None = None
    background_bbox: tuple[tuple[int, int], ...] | None = None
    background_mask: np.ndarray | None = field(default=None, repr=False, compare=False)
    split_sources: bool = True
    connectivity: str = "full"
    search_radius_mm: float = 3.0
    kmeans_clusters: int = 2
    min_snr: float = 5.0
    saturation_curve: SaturationCurve | None = None
    peak_convention: str = "subvoxel"
    psf: str = "measured"
    revision: int = MEASUREMENT_REVISION

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InputError` (one line) on a value no method can use."""
        if self.method not in METHODS:
            raise InputError(f"ROI method {self.method!r}: expected one of {', '.join(METHODS)}")
        if not (0.0 < float(self.fraction) < 1.0):
            raise InputError(
                f"ROI fraction {self.fraction}: must be between 0 and 1 (0.5 = half maximum)"
            )
        if not (float(self.n_sd) > 0 and math.isfinite(float(self.n_sd))):
            raise InputError(f"ROI n_sd {self.n_sd}: must be a positive number of noise SDs")
        if self.noise_sd is not None and not (
            float(self.noise_sd) > 0 and math.isfinite(float(self.noise_sd))
        ):
            raise InputError(f"noise SD {self.noise_sd} a.u.: must be positive")
        if self.connectivity not in ("full", "face"):
            raise InputError(f"connectivity {self.connectivity!r}: expected 'full' or 'face'")
        if not float(self.search_radius_mm) > 0:
            raise InputError(f"search radius {self.search_radius_mm} mm: must be positive")
        from mpi_viewer.io.guards import MAX_KMEANS_CLUSTERS

        if int(self.kmeans_clusters) < 2:
            raise InputError(f"k-means clusters {self.kmeans_clusters}: at least 2")
        if int(self.kmeans_clusters) > MAX_KMEANS_CLUSTERS:
            raise InputError(
                f"k-means clusters {self.kmeans_clusters}: at most {MAX_KMEANS_CLUSTERS}"
            )
        if self.peak_convention not in PEAK_CONVENTIONS:
            raise InputError(
                f"peak convention {self.peak_convention!r}: expected one of "
                f"{', '.join(PEAK_CONVENTIONS)}"
            )
        if self.psf not in PSF_MODELS:
            raise InputError(f"PSF model {self.psf!r}: expected one of {', '.join(PSF_MODELS)}")
        if not float(self.min_snr) >= 0:
            raise InputError(f"min_snr {self.min_snr}: must be zero or positive")
        if isinstance(self.revision, bool) or self.revision not in REVISIONS:
            raise InputError(
                f"ROI measurement revision {self.revision!r}: expected one of "
                f"{', '.join(map(str, REVISIONS))}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (``background_mask`` is left out: saved as NIfTI)."""
        d: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "background_mask":
                continue
            v = getattr(self, f.name)
            if f.name == "saturation_curve":
                v = v.to_dict() if v is not None else None
            elif f.name == "background_bbox" and v is not None:
                v = [list(map(int, b)) for b in v]
            elif f.name == "revision" and v == 1:
                continue  # as written before revisions existed
            d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ROIParams:
        d = dict(d or {})
        names = {f.name for f in fields(cls)} - {"background_mask"}
        unknown = set(d) - names
        if unknown:
            raise InputError(f"ROI parameters: unknown field(s) {', '.join(sorted(unknown))}")
        if d.get("saturation_curve") is not None:
            d["saturation_curve"] = SaturationCurve.from_dict(d["saturation_curve"])
        if d.get("background_bbox") is not None:
            d["background_bbox"] = tuple(tuple(int(v) for v in b) for b in d["background_bbox"])
        d.setdefault("revision", 1)  # stored before revisions were recorded
        return cls(**d)


@dataclass
class ROIMask:
    """An ROI's voxels on the native MPI grid without a full-volume copy.

    Attributes
    ----------
    start : tuple of int
        Index (z, y, x) of the sub-array's first voxel.
    array : ndarray of bool
        The ROI inside the box ``start … start + array.shape``.
    """

    start: tuple[int, ...]
    array: np.ndarray

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.array.shape, strict=True))

    @property
    def n_voxels(self) -> int:
        return int(np.count_nonzero(self.array))

    def to_full(self, shape: tuple[int, ...]) -> np.ndarray:
        """The mask as a full boolean array of ``shape`` (for small images and tests)."""
        out = np.zeros(shape, dtype=bool)
        out[self.slices] = self.array
        return out

    def indices(self) -> np.ndarray:
        """(n, d) integer indices (z, y, x) of the ROI's voxels."""
        return np.argwhere(self.array) + np.asarray(self.start)


@dataclass
class ROIResult:
    """One ROI and its signal statistics.

    Attributes
    ----------
    name : str
        ROI name (``roi_1``… unless given).
    seed_mm : tuple of float
        The click, physical mm (x, y, z).
    peak_mm : tuple of float
        Sub-voxel position of the ROI's peak, physical mm (x, y, z).
    peak_au : float
        Peak signal (a.u.), from a Gaussian (log-quadratic) fit of the 3×3(×3)
        neighbourhood of the brightest voxel: the maximum, less noisy than one voxel.
    mean_au : float
        Mean signal in the ROI (a.u.).
    n_voxels : int
        ROI voxels on the native grid (the mask: written, drawn).
    size : float
        ROI volume (mm³) or, on a 2-D image, area (mm²); unit in ``size_unit``. Revision
        ≥ 2: ``n_voxels`` × voxel size, the written mask's exactly. Revision 1
        (thresholded ROIs): the sub-voxel integrated size (now ``size_subvoxel``).
    size_unit : str
        ``"mm3"`` or ``"mm2"``.
    total_signal : float
        mean × size (a.u.·mm³ or a.u.·mm²), after any correction for neighbours' signal
        (``neighbour_signal``) and receiver saturation. Revision ≥ 2: the sum over the
        mask's voxels × voxel size (with ``neighbour_signal``, what a user re-measures
        from the written mask). Revision 1 (thresholded ROIs): the sub-voxel integration
        (now ``total_signal_subvoxel``).
    size_subvoxel, total_signal_subvoxel : float or None
        Revision ≥ 2, thresholded ROIs: size and total of the same threshold surface
        integrated at sub-voxel resolution (:mod:`mpi_viewer.roi._subvoxel`; a faint lone
        source's total corrected for the noise's bias). Free of the ±2–4 % dependence
        on where a source sits within its voxel, so it is what calibrations use
        (:attr:`calibration_signal`); ``None`` otherwise.
    snr : float
        ``peak_au / noise_sd``.
    fwhm_mm : tuple of float
        FWHM along x, y(, z) in mm from a Lorentzian fit of the line profile through
        the peak (NaN when the fit fails).
    noise_sd : float
        Noise SD used (a.u.).
    threshold_au : float
        Signal threshold of the region (a.u.).
    method : str
        ROI method.
    revision : int
        Measurement revision it was measured with (:attr:`ROIParams.revision`; column
        ``roi_revision``).
    neighbour_signal : float
        Signal of neighbouring sources' point-spread model removed from this ROI
        (same unit as ``total_signal``): peaks in its region, and other measured
        sources whose tails reach into it; 0 when alone.
    neighbour_signal_sd : float
        SD (same unit) of the calibrated total (:attr:`calibration_signal`) due to the uncertainty of those neighbours'
        models (the measured template's noise and ``NEIGHBOUR_MODEL_REL_SD`` of each
        model, propagated through the whole delineation; two sources dividing a signal
        carry the larger of their two); 0 when nothing was subtracted. Calibrated
        intervals carry it.
    delineation_sd : float
        SD (same unit) of the calibrated total (:attr:`calibration_signal`) from the
        delineation (revision 2, half maximum): the threshold's jitter with the noisy
        reference peak (``dT/dθ × SD(θ)``), or, for a faint lone point source delineated
        on its fitted model, the noise summed over that region; 0 otherwise. Calibrated
        intervals carry it.
    flags : list of str
        ``touching`` (borders another ROI), ``shared_signal`` (the region held other
        peaks, or other measured sources' tails were > 0.5 % of its total; their models
        were subtracted), ``saturated`` (saturation correction
        changed the signal), ``duplicate`` (same peak as an earlier seed), ``edge``
        (the ROI reaches the image edge), ``unseeded_peak`` (a source no seed measures
        lies inside the ROI, or its tail raises the ROI's total by more than 1 %; the
        warning gives its position and the seed to add, see :mod:`mpi_viewer.roi._unseeded`).
    warnings : list of str
        Sentences for the user.
    mask : ROIMask
        The ROI's voxels (box + boolean sub-array) on the MPI grid.
    label : int
        Label value in :func:`rois_to_label_image` (1, 2, …).
    """

    name: str
    seed_mm: tuple[float, ...]
    peak_mm: tuple[float, ...]
    peak_au: float
    mean_au: float
    n_voxels: int
    size: float
    size_unit: str
    total_signal: float
    snr: float
    fwhm_mm: tuple[float, ...]
    noise_sd: float
    threshold_au: float
    method: str
    mask: ROIMask = field(repr=False)
    label: int = 1
    revision: int = MEASUREMENT_REVISION
    neighbour_signal: float = 0.0
    neighbour_signal_sd: float = 0.0
    delineation_sd: float = 0.0
    size_subvoxel: float | None = None
    total_signal_subvoxel: float | None = None
    flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ndim(self) -> int:
        return len(self.seed_mm)

    @property
    def volume_mm3(self) -> float:
        """ROI volume in mm³ (NaN for a 2-D ROI: see :attr:`area_mm2`)."""
        return self.size if self.size_unit == "mm3" else float("nan")

    @property
    def area_mm2(self) -> float:
        """ROI area in mm² (NaN for a 3-D ROI: see :attr:`volume_mm3`)."""
        return self.size if self.size_unit == "mm2" else float("nan")

    @property
    def calibration_signal(self) -> float:
        """The total a calibration turns into iron (a.u.·mm³ or a.u.·mm²):
        ``total_signal_subvoxel`` where there is one (thresholded ROIs, revision ≥ 2),
        else ``total_signal``; phantoms and targets alike."""
        if self.total_signal_subvoxel is not None:
            return float(self.total_signal_subvoxel)
        return float(self.total_signal)

    @property
    def total_signal_unit(self) -> str:
        return f"a.u.*{self.size_unit}"

    def to_row(self) -> dict[str, Any]:
        """One table row; column names carry units (``volume_mm3``, ``total_signal_au_mm3``…)."""
        axes = "xyz"[: self.ndim]
        u = self.size_unit
        row: dict[str, Any] = {"name": self.name, "label": self.label, "method": self.method}
        row["roi_revision"] = int(self.revision)
        row.update({f"seed_{a}_mm": float(v) for a, v in zip(axes, self.seed_mm, strict=True)})
        row.update({f"peak_{a}_mm": float(v) for a, v in zip(axes, self.peak_mm, strict=True)})
        row["peak_au"] = self.peak_au
        row["mean_au"] = self.mean_au
        row["n_voxels"] = self.n_voxels
        row["volume_mm3" if u == "mm3" else "area_mm2"] = self.size
        row[f"total_signal_au_{u}"] = self.total_signal
        if self.size_subvoxel is not None:
            row["volume_subvoxel_mm3" if u == "mm3" else "area_subvoxel_mm2"] = self.size_subvoxel
        if self.total_signal_subvoxel is not None:
            row[f"total_signal_subvoxel_au_{u}"] = self.total_signal_subvoxel
        row["snr"] = self.snr
        row["noise_sd_au"] = self.noise_sd
        row["threshold_au"] = self.threshold_au
        row.update({f"fwhm_{a}_mm": float(v) for a, v in zip(axes, self.fwhm_mm, strict=True)})
        row[f"neighbour_signal_au_{u}"] = self.neighbour_signal
        row["flags"] = ";".join(self.flags)
        row["warnings"] = " ".join(self.warnings)
        return row


# -- public functions ----------------------------------------------------------------------------
def estimate_noise_sd(volume_or_array, *, mask=None, bbox=None) -> float:
    """Noise SD (a.u.) of an MPI image.

    Parameters
    ----------
    volume_or_array : Volume or ndarray
        The image (numpy order).
    mask : ndarray of bool, optional
        A background region drawn by the user (same shape as the image): the SD of
        its voxels (sample SD, as Ureña Horno et al. 2025 measure it).
    bbox : sequence of (start, stop), optional
        A background box in index bounds (numpy order), used like ``mask``.

    Returns
    -------
    float
        Without a mask: the SD of the image's own background, found automatically:
        the voxels away from every structure (more than 4 SDs from the background
        median, grown by 15 % of the image's smallest extent) — ring artefacts,
        negative lobes and tails excluded. Within 20 % of the SD of the corners of
        the real FFL reconstructions in the test data, where the ``1.4826 × MAD`` of
        all voxels read 1.1–3.3× too high. Images above ~2.5·10⁵ voxels are
        subsampled regularly.

    Raises
    ------
    InputError
        Empty background region, or no spread (a constant image).
    """
    from mpi_viewer.roi._grow import noise_sd

    return noise_sd(_array_of(volume_or_array), mask=mask, bbox=bbox)


def grow_roi(
    volume: Volume, seed_xyz_mm, params: ROIParams | None = None, *, name: str | None = None
):
    """The ROI of the source a click belongs to, with its statistics.

    Parameters
    ----------
    volume : Volume
        The MPI image (2-D or 3-D), quantified on its own grid.
    seed_xyz_mm : sequence of float
        The click, physical mm (x, y, z; x, y on a 2-D image).
    params : ROIParams, optional
        Method and options (half maximum by default).
    name : str, optional
        ROI name.

    Returns
    -------
    ROIResult

    Raises
    ------
    InputError
        Seed outside the image or of the wrong dimension, no peak above the noise
        near the seed (a click on background), NaNs inside the ROI.

    References
    ----------
    Sehl et al., Tomography 6:315 (2020), doi:10.18383/j.tom.2020.00043 (half maximum);
    Ureña Horno et al., Nanoscale 17:24060 (2025), doi:10.1039/d5nr02393a (5 × noise
    SD, Lorentzian FWHM, saturation correction).
    """
    return measure(volume, [seed_xyz_mm], params, names=[name] if name else None)[0]


def measure(
    volume: Volume,
    seeds_xyz_mm,
    params: ROIParams | None = None,
    *,
    names=None,
    on_error: str = "raise",
) -> list[ROIResult]:
    """One ROI per seed, sources in one region split between their peaks.

    Parameters
    ----------
    volume : Volume
        The MPI image (2-D or 3-D).
    seeds_xyz_mm : sequence of sequence of float
        Clicks, physical mm (x, y, z), one ROI each.
    params : ROIParams, optional
        Method and options.
    names : sequence of str, optional
        ROI names (``roi_1``, ``roi_2``… by default).
    on_error : {"raise", "skip"}
        ``"raise"``: the first bad seed raises :class:`InputError`. ``"skip"``: bad
        seeds are left out (their messages are in the ``errors`` attribute of the
        returned list).

    Returns
    -------
    list of ROIResult
        Labels 1, 2, … in seed order; ROIs that border each other are flagged
        ``touching``.
    """
    from mpi_viewer.io.guards import MAX_ROIS, check_count
    from mpi_viewer.roi._grow import measure_seeds

    params = params or ROIParams()
    params.validate()
    check_count(len(seeds_xyz_mm), MAX_ROIS, "seeds")
    return _revised(
        measure_seeds(
            volume, _array_of(volume), seeds_xyz_mm, params, names=names, on_error=on_error
        ),
        params,
    )


def _revised(results, params: ROIParams):
    """Results marked with the measurement revision they were measured with."""
    for r in results:
        r.revision = int(params.revision)
    return results


def measure_mask(
    volume: Volume,
    mask,
    params: ROIParams | None = None,
    *,
    name: str = "manual",
    label: int | None = None,
) -> ROIResult:
    """Statistics of a manual ROI: a mask drawn or painted by the user on the MPI grid.

    The same statistics as the grown ROIs (one shared code path): peak (sub-voxel
    position and value), mean, volume mm³ (area mm² in 2-D), total signal = sum ×
    voxel size (a.u.·mm³ or a.u.·mm²), SNR against the noise SD, FWHM per axis from a
    Lorentzian fit of the line profile through the peak (Ureña Horno et al., Nanoscale
    17:24060, 2025, doi:10.1039/d5nr02393a), flags ``edge`` and ``saturated``.

    Parameters
    ----------
    volume : Volume
        The MPI image (2-D or 3-D), measured on its own grid.
    mask : ndarray of bool or ROIMask
        The ROI: a full-size array of the image's shape (numpy order; non-zero = in),
        or an :class:`ROIMask` (box + sub-array).
    params : ROIParams, optional
        Only the noise SD (``noise_sd``, else the background mask/box, else the robust
        estimate of :func:`estimate_noise_sd`; NaN on a noiseless image) and the
        receiver-saturation curve are used; the method is ``"manual"``.
    name : str
        ROI name.
    label : int, optional
        Label value in :func:`rois_to_label_image` (1 by default).

    Returns
    -------
    ROIResult
        ``method="manual"``, ``seed_mm`` = the mask's centroid (mm, x, y, z),
        ``threshold_au`` NaN (no threshold).

    Raises
    ------
    InputError
        Mask shape not the image's, empty mask, NaN inside the mask.
    """
    from mpi_viewer.roi._grow import _noise_for
    from mpi_viewer.roi._manual import measure_region

    params = params or ROIParams()
    params.validate()
    arr = _array_of(volume)
    return _revised(
        [
            measure_region(
                volume,
                arr,
                mask,
                params,
                _noise_for(arr, params),
                name=name,
                label=1 if label is None else int(label),
            )
        ],
        params,
    )[0]


def measure_label_image(
    volume: Volume, labels, params: ROIParams | None = None, *, names=None
) -> list[ROIResult]:
    """One manual ROI per non-zero label of a label image on the MPI grid.

    Parameters
    ----------
    volume : Volume
        The MPI image (2-D or 3-D).
    labels : ndarray of int or Volume
        Label image of the image's shape (numpy order): a napari Labels layer's data,
        or a NIfTI read with :func:`mpi_viewer.io.images.read_volume` (its geometry must
        be the MPI's).
    params : ROIParams, optional
        Noise SD and saturation curve, as in :func:`measure_mask`.
    names : sequence of str or mapping label → str, optional
        ROI names (``manual_<label>`` by default), in increasing label order.

    Returns
    -------
    list of ROIResult
        In increasing label order; ``label`` is the painted label value; ROIs that
        border each other are flagged ``touching``.

    Raises
    ------
    InputError
        Shape or geometry not the MPI's, no labelled voxel, non-integer or negative
        labels, NaN inside a mask.
    """
    from mpi_viewer.roi._grow import _noise_for
    from mpi_viewer.roi._manual import measure_labels

    params = params or ROIParams()
    params.validate()
    if hasattr(labels, "image") and hasattr(labels, "spacing_mm"):
        lab_vol = labels
        if tuple(lab_vol.shape) != tuple(volume.shape) or not (
            np.allclose(lab_vol.spacing_mm, volume.spacing_mm, rtol=1e-4)
            and np.allclose(lab_vol.origin_mm, volume.origin_mm, atol=1e-3 * min(volume.spacing_mm))
            and np.allclose(lab_vol.direction, volume.direction, atol=1e-4)
        ):
            raise InputError(
                f"label image {lab_vol.source or lab_vol.name}: its grid (shape {tuple(lab_vol.shape)}, "
                f"spacing {lab_vol.spacing_mm} mm) is not the MPI's (shape {tuple(volume.shape)}, "
                f"spacing {volume.spacing_mm} mm)"
            )
        labels = lab_vol.array
    from mpi_viewer.io.guards import MAX_ROIS, check_count

    found = np.unique(np.asarray(labels))
    check_count(int(np.count_nonzero(found)), MAX_ROIS, "label image: regions (non-zero labels)")
    arr = _array_of(volume)
    return _revised(
        measure_labels(volume, arr, labels, params, _noise_for(arr, params), names=names), params
    )


def polygon_to_mask(volume: Volume, polygon_xyz_mm) -> np.ndarray:
    """A full-size boolean mask of a polygon drawn on the image (for :func:`measure_mask`).

    Parameters
    ----------
    volume : Volume
        The MPI image.
    polygon_xyz_mm : (n, d) array_like
        Vertices in physical mm, (x, y) on a 2-D image; (x, y, z) on a 3-D image, all on
        one slice of the image (the polygon is drawn on that slice only).

    Returns
    -------
    ndarray of bool
        Image shape (numpy order): the voxels whose centres lie inside the polygon
        (:func:`skimage.draw.polygon2mask` on index coordinates).

    Raises
    ------
    InputError
        Fewer than three vertices, wrong dimension, vertices on different slices, or a
        polygon covering no voxel centre.
    """
    from mpi_viewer.roi._manual import polygon_mask

    return polygon_mask(volume, polygon_xyz_mm)


def rois_to_label_image(volume: Volume, results) -> np.ndarray:
    """A uint16 label image on the MPI grid (numpy order): ROI ``label`` values, 0 elsewhere."""
    out = np.zeros(tuple(volume.shape), dtype=np.uint16)
    for r in results:
        sub = out[r.mask.slices]
        sub[r.mask.array & (sub == 0)] = r.label
    return out


def write_masks_nifti(path, volume: Volume, results) -> Path:
    """Write the ROIs as a label image (uint16) with the MPI's geometry (NIfTI or any ITK format)."""
    import SimpleITK as sitk

    p = Path(path)
    if volume.source and Path(volume.source).resolve() == p.resolve():
        raise InputError(f"{p}: refusing to overwrite the input image")
    from mpi_viewer.io.atomic import atomic_write_image

    img = sitk.GetImageFromArray(rois_to_label_image(volume, results))
    img.CopyInformation(volume.image)
    return atomic_write_image(p, img, compress=str(p).endswith(".gz"), mkdir=True)


def _array_of(volume_or_array) -> np.ndarray:
    """The pixel array (numpy order) without a copy where possible."""
    if isinstance(volume_or_array, np.ndarray):
        return volume_or_array
    vol = volume_or_array
    if getattr(vol, "_array", None) is not None:
        return vol._array
    import SimpleITK as sitk

    # a view on the ITK buffer: no full-volume copy (the Volume keeps the image alive)
    return sitk.GetArrayViewFromImage(vol.image)
