#!/usr/bin/env bash
# The main job: set up (idempotent), then open napari with the demo study. On a
# machine without a display it runs under Xvfb and saves a screenshot instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_API="${QT_API:-pyqt6}"  # napari 0.9 deprecates PyQt5
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  exec mpi-viewer demo "$@"
else
  echo "no display: running under Xvfb and saving the window to demo.png"
  exec xvfb-run -a -s "-screen 0 1920x1200x24" mpi-viewer demo --screenshot demo.png "$@"
fi
