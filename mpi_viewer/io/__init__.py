"""Files: image formats and sidecars, point and phantom CSVs, result tables, transform files."""

from .images import (  # noqa: F401
    PLAIN_ARRAY_EXTENSIONS,
    display_name,
    guess_modality,
    read_sidecar,
    read_volume,
    sidecar_path,
    write_volume,
)
from .points import (  # noqa: F401
    PointSet,
    atomic_write_text,
    read_points_csv,
    read_text_file,
    write_points_csv,
)
from .tables import (  # noqa: F401
    UNIT_SUFFIXES,
    add_columns,
    columns_of,
    format_value,
    header_label,
    read_csv,
    rows_from_results,
    to_csv_text,
    write_csv,
)
from .transform_files import (  # noqa: F401
    load_transform,
    read_transform,
    write_transform,
)
