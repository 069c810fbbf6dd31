#!/usr/bin/env bash
# Install what mpi-viewer needs on a fresh Debian machine: the X/Qt/OpenGL system
# libraries napari needs under Xvfb, then the Python package with its test extras.
# Idempotent and quick the second time: the system packages are checked with one
# dpkg-query call, and pip runs only when pyproject.toml (or this checkout's place)
# changed since the last install into this Python (a stamp in its prefix).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
PKGS="xvfb xauth libgl1 libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 \
libdbus-1-3 libfontconfig1"
installed="$(dpkg-query -W -f='${Package} ${Status}\n' $PKGS 2>/dev/null | awk '/install ok installed/ {print $1}' || true)"
missing=""
for p in $PKGS; do
  case " $(echo $installed) " in *" $p "*) ;; *) missing="$missing $p" ;; esac
done
if [ -n "$missing" ]; then
  echo "setup: installing system packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# pip only when needed: the stamp records pyproject.toml's hash and this checkout's path
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $(pwd -P)"
stamp="$(python3 -c 'import sys; print(sys.prefix)')/.mpi-viewer-setup-stamp"
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$have" != "$want" ] || ! python3 -c "import mpi_viewer, mpi_viewer.plugins" 2>/dev/null; then
  echo "setup: installing mpi-viewer with its test extras (pip install -e '.[napari,test]')"
  python3 -m pip install -q --disable-pip-version-check -e '.[napari,test]'
  echo "$want" > "$stamp" 2>/dev/null || true
fi
