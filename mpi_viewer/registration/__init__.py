"""Coregistration of the MPI (moving) to the anatomy (fixed): landmarks, animal molds, intensity refinement."""

from .intensity import (  # noqa: F401
    nearest_rotation,
    refine,
    refine_intensity,
)
from .landmarks import (  # noqa: F401
    MODELS,
    LandmarkFit,
    RegistrationParams,
    fit_landmarks,
    fit_pointsets,
    pair_points,
)
from .molds import (  # noqa: F401
    AMBIGUITY_MARGIN,
    APPEARANCES,
    MAX_ROTATION_DEG,
    TEMPLATES_ENV,
    AmbiguousPoseError,
    Candidates,
    Fiducial,
    MoldMatch,
    MoldParams,
    MoldRegistration,
    PoseCandidate,
    Template,
    detect_fiducials,
    list_templates,
    load_template,
    match_fiducials,
    register_with_template,
    template_path,
    template_self_match,
)
