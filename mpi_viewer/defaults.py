"""The defaults of an analysis, defined once (ROI thresholds, interval confidence, iron per
cell). Every user of a default (the CLI flags, the docks, the Study model, the core
functions) imports it from here; nothing else is imported, so the command line can build
its help without loading numpy."""

#: Half-maximum ROIs: threshold as a fraction of the source's own peak.
HALFMAX_FRACTION = 0.5

#: n·SD ROIs (and the detection limit): threshold in noise SDs.
N_SD = 5.0

#: ROI measurement revisions (see ``mpi_viewer.roi.ROIParams.revision``) and the one new
#: measurements use. 1: mpi-viewer 0.1 (sessions and calibrations saved before revisions
#: were recorded): volume, total and mean integrated at sub-voxel resolution. 2: volume,
#: total and mean of the written voxel mask, the sub-voxel integration in columns of its
#: own (``*_subvoxel_*``, what calibrations use); a faint lone point source (peak SNR < 30)
#: delineated on its fitted point-spread model; intervals carrying the half-maximum
#: threshold's jitter and the split's uncertainty; an SNR²-weighted PSF template.
REVISIONS = (1, 2)
MEASUREMENT_REVISION = 2

#: Confidence of every interval (iron, cells, prediction bands).
CONFIDENCE = 0.95

#: Iron per labelled cell (pg Fe/cell), mean and SD, where the user has not measured one: a
#: typical SPION-labelled stem cell (Sehl et al. 2020, doi:10.18383/j.tom.2020.00043).
IRON_PER_CELL_PG = 15.0
IRON_PER_CELL_SD_PG = 1.5
