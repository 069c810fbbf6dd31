"""A landmark fit with everything a user should be told about it.

:func:`review_landmarks` fits the pairs (:func:`~mpi_viewer.registration.fit_landmarks`)
and collects the warnings a registration view shows beside the residuals: fiducials
without a partner, fiducials outside their image, pairs whose residual exceeds the
tolerance, and the fit's own warnings. It never raises for too few or degenerate pairs:
that is a warning too (``too_few`` says which).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mpi_viewer.errors import MPIViewerError


@dataclass
class LandmarkReview:
    """The outcome of :func:`review_landmarks`.

    Attributes
    ----------
    fit : LandmarkFit or None
        None when there are no pairs, too few, or the fit failed.
    warnings : list of str
        In the order a user reads them.
    too_few : bool
        The fit failed for want of (non-degenerate) pairs: a state while clicking,
        not an error worth a notification at every click.
    used : ndarray of bool
        Per pair, whether it entered the fit.
    """

    fit: object | None = None
    warnings: list[str] = field(default_factory=list)
    too_few: bool = False
    used: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def used_mask(fit, n: int) -> np.ndarray:
    """Per pair (n of them), whether the fit used it (a fit's ``used`` may be indices)."""
    if fit is None:
        return np.zeros(n, bool)
    used = np.asarray(fit.used)
    if used.dtype == bool and used.size == n:
        return used
    mask = np.zeros(n, bool)
    mask[used.astype(int)] = True
    return mask


def review_landmarks(
    names: Sequence[str],
    fixed_xyz,
    moving_xyz,
    *,
    model: str = "rigid",
    excluded: Sequence[str] = (),
    fle_mm: float | None = None,
    fre_tolerance_mm: float = 1.0,
    unpaired: tuple[Sequence[str], Sequence[str]] = ((), ()),
    fixed_image=None,
    moving_image=None,
    image_names: tuple[str, str] = ("fixed", "moving"),
) -> LandmarkReview:
    """Fit paired fiducials and say what is wrong with them.

    Parameters
    ----------
    names : sequence of str
        One name per pair.
    fixed_xyz, moving_xyz : array_like, shape (n, d)
        Each image's own physical mm, ITK (x, y, z) order.
    model, fle_mm, fre_tolerance_mm
        As :func:`~mpi_viewer.registration.fit_landmarks`; pairs whose residual (mm)
        exceeds ``fre_tolerance_mm`` are named.
    excluded : sequence of str
        Pairs left out of the fit (their residuals are still given).
    unpaired : (fixed-only names, moving-only names)
        Fiducials clicked in one image only.
    fixed_image, moving_image : Volume, optional
        When given, fiducials outside them are named.
    image_names : (str, str)
        How the images are named in the warnings.
    """
    from mpi_viewer.registration.landmarks import fit_landmarks

    names = [str(n) for n in names]
    out = LandmarkReview(used=np.zeros(len(names), bool))
    only_f, only_m = unpaired
    if only_f or only_m:
        out.warnings.append(
            "unpaired: "
            + ", ".join(
                [f"{n} (fixed only)" for n in only_f] + [f"{n} (moving only)" for n in only_m]
            )
        )
    for which, xyz, image, shown in (
        ("fixed", fixed_xyz, fixed_image, image_names[0]),
        ("moving", moving_xyz, moving_image, image_names[1]),
    ):
        if names and image is not None:
            inside = image.contains_physical(np.asarray(xyz, dtype=float))
            outside = [n for n, ok in zip(names, inside, strict=True) if not ok]
            if outside:
                out.warnings.append(f"{', '.join(outside)} outside the {which} image {shown!r}")
    if not names:
        return out
    try:
        out.fit = fit_landmarks(
            fixed_xyz,
            moving_xyz,
            model=model,
            names=names,
            exclude=[n for n in names if n in set(excluded)],
            fle_mm=fle_mm,
            fre_tolerance_mm=fre_tolerance_mm,
        )
    except MPIViewerError as exc:
        msg = str(exc).lower()
        out.too_few = "pair" in msg and ("need" in msg or "few" in msg)
        out.warnings.append(str(exc))
        return out
    except Exception as exc:  # noqa: BLE001 - a degenerate click state, said as a warning
        out.warnings.append(f"fit failed: {exc}")
        return out
    out.warnings += list(out.fit.warnings)
    out.used = used_mask(out.fit, len(names))
    res = np.asarray(out.fit.residuals_mm, dtype=float)
    over = [n for n, r, u in zip(names, res, out.used, strict=False) if u and r > fre_tolerance_mm]
    if over:
        out.warnings.append(f"FRE above {fre_tolerance_mm:.2f} mm: {', '.join(over)}")
    return out
