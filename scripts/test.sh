#!/usr/bin/env bash
# The test command: set up (idempotent), then run the whole suite under a virtual screen.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_API="${QT_API:-pyqt6}"  # napari 0.9 deprecates PyQt5
export MPLBACKEND=Agg
# software OpenGL (Mesa llvmpipe under Xvfb): one render thread per process; the two
# pytest-xdist workers already fill the two cores (more threads only add hand-offs)
export LP_NUM_THREADS="${LP_NUM_THREADS:-1}"
# style first: ruff check and ruff format (pyproject config) must be clean
python3 -m ruff check --quiet . && python3 -m ruff format --check --quiet .
exec xvfb-run -a -s "-screen 0 1920x1200x24" python3 -m pytest -p no:cacheprovider -n 2 --dist loadgroup --no-loadscope-reorder "$@"
