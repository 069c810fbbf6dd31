"""napari side of mpi-viewer: reader, sample data and dock widgets.

Installed as ``mpi_viewer.plugins``. Widgets read layers, call one core function and
write layers; the science is in :mod:`mpi_viewer`.
"""
