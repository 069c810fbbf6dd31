"""The core never imports a GUI library; the plugin loads without SciPy or SimpleITK."""

import pathlib
import re
import subprocess
import sys

CORE = pathlib.Path(__file__).resolve().parent.parent / "mpi_viewer"
GUI = ("napari", "qtpy", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "vispy")


def test_core_sources_do_not_import_gui_libraries():
    pattern = re.compile(r"^\s*(?:import|from)\s+(" + "|".join(GUI) + r")\b", re.M)
    offenders = [str(p) for p in CORE.rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_importing_the_whole_core_loads_no_gui_library():
    code = (
        "import sys, pkgutil, importlib, mpi_viewer\n"
        "for m in pkgutil.walk_packages(mpi_viewer.__path__, 'mpi_viewer.'):\n"
        "    if not m.name.startswith('mpi_viewer.plugins'): importlib.import_module(m.name)\n"
        f"bad = [g for g in {GUI!r} if g in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
