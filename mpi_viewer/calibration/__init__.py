"""From MPI signal to iron mass and cell number: phantoms, the calibration line, cells."""

from .cells import (  # noqa: F401
    IRON_PER_CELL_PG,
    IRON_PER_CELL_SD_PG,
    MC_DRAWS,
    MC_SEED,
    IronPerCell,
    cells_from_iron,
    format_cells,
    format_iron,
)
from .fit import (  # noqa: F401
    ENVIRONMENTS,
    KINDS,
    MIN_POINTS,
    MIN_R2,
    MODES,
    PREPARATIONS,
    SCHEMA_VERSION,
    WEIGHTINGS,
    X_UNITS,
    CalibrationFit,
    detection_limit,
    detection_limit_ug,
    fit_calibration,
    inverse_predict,
    new_observation_variance,
    peak_per_amount,
    prediction_band,
)
from .phantoms import (  # noqa: F401
    CalibrationPoint,
    Phantom,
    measure_phantoms,
    phantoms_from_template,
    phantoms_outside,
    read_phantoms_csv,
    roi_signal_sd,
)
from .record import (  # noqa: F401
    QUANTITY_COLUMNS,
    Calibration,
    CalibrationLibrary,
    QuantityResult,
    apply_calibration,
    compatibility_warnings,
    load_calibration,
    save_calibration,
)
