"""mpi-viewer core: magnetic particle imaging cell-tracking studies.

The core needs numpy, SimpleITK, scikit-image and SciPy, never Qt or napari. The
napari plugin lives in :mod:`mpi_viewer.plugins`.
"""

__version__ = "0.1.0"
