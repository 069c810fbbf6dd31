"""The study report: numbers, masks, transform and pictures in one folder."""

from .study_report import (  # noqa: F401
    HALF_FIELD_MM,
    PIXEL_MM,
    plot_calibration,
    roi_label_text,
    write_report,
    write_session_report,
)
