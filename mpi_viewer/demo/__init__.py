"""The synthetic demo study (a mouse in a fiducial mold, MRI, CT and MPI with known truth)."""

from .study import (  # noqa: F401
    EXTRA_HOT_SPOTS,
    IRON_PER_CELL_PG,
    IRON_PER_CELL_SD_PG,
    SENSITIVITY_AU_MM3_PER_UG,
    SOURCES,
    TEMPLATE_NAME,
    VIALS,
    DemoParams,
    DemoStudy,
    langevin_psf,
    load_template,
    make_demo_session,
    make_demo_study,
    psf_fwhm_mm,
    psf_halfmax_fraction,
    psf_peak_au,
    rotation_matrix,
    sensitivity,
    truth_transform,
    write_demo_study,
)
