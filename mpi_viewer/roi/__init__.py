"""Regions of interest on the native MPI grid and their signal statistics."""

from .regions import (  # noqa: F401
    FLAGS,
    METHODS,
    ROIMask,
    ROIParams,
    ROIResult,
    estimate_noise_sd,
    grow_roi,
    measure,
    measure_label_image,
    measure_mask,
    polygon_to_mask,
    rois_to_label_image,
    write_masks_nifti,
)
