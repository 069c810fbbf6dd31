"""Physical space: volumes with their geometry, the one (x, y, z) ↔ (z, y, x) converter, the transform type."""

from .axes import (  # noqa: F401
    affine_xyz_to_zyx,
    image_to_world_affine,
    matrix_xyz_to_zyx,
    xyz_to_zyx,
    zyx_to_xyz,
)
from .transform import (  # noqa: F401
    MODELS,
    Transform,
    as_sitk_transform,
    matrix_to_sitk,
    napari_affine_for_moving,
    project,
    project_points,
    resample_to_fixed,
    transform_to_matrix,
)
from .volume import (  # noqa: F401
    DEFAULT_UNITS,
    MODALITIES,
    Acquisition,
    MissingSpacingError,
    Volume,
    array_view,
    finite_range,
    image_from_array,
    validate_geometry,
    validate_image_data,
)
