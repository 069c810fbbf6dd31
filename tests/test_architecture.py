"""The core never imports a GUI library; the plugin loads without SciPy or SimpleITK."""

import pathlib
import re
import subprocess
import sys

CORE = pathlib.Path(__file__).resolve().parent.parent / "mpi_viewer"
GUI = ("napari", "qtpy", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "vispy")


def test_core_sources_do_not_import_gui_libraries():
    pattern = re.compile(r"^\s*(?:import|from)\s+(" + "|".join(GUI) + r")\b", re.M)
    offenders = [
        str(p) for p in CORE.rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))
    ]
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


#: The core's stages, lowest first: a module may import its own stage and the ones below.
STAGES = (
    "errors",
    "defaults",
    "geometry",
    "io",
    "registration",
    "roi",
    "calibration",
    "study",
    "report",
    "demo",
    "cli",
)


def _stage(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "mpi_viewer":
        return None
    if len(parts) == 1:
        return -1  # the package itself (__version__)
    return STAGES.index(parts[1]) if parts[1] in STAGES else len(STAGES)  # plugins: above all


def _imports(path: pathlib.Path):
    import ast

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.ImportFrom) and node.level:
            yield node.lineno, "mpi_viewer.<relative>." + (node.module or "")
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name


def test_core_stages_import_only_downwards():
    """Import contract: geometry → io → registration → roi → calibration → study → report → demo → cli.

    The command line alone may start the napari window (``mpi_viewer.plugins._launch``).
    Relative imports are not used in the core, so the rule can be read off every file.
    """
    offenders = []
    for path in CORE.rglob("*.py"):
        rel = path.relative_to(CORE.parent).with_suffix("")
        me = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        mine = _stage(me)
        for line, module in _imports(path):
            if module.startswith("mpi_viewer.<relative>") and rel.name != "__init__":
                offenders.append(f"{path.name}:{line} relative import")
                continue
            theirs = _stage(module)
            if theirs is None or module.startswith("mpi_viewer.<relative>"):
                continue
            if me == "mpi_viewer.cli" and module == "mpi_viewer.plugins":
                continue
            if theirs > mine:
                offenders.append(f"{me}:{line} imports {module}")
    assert offenders == []


def test_contract_test_catches_an_upward_import(tmp_path):
    """The contract above is not vacuous: an upward import is seen."""
    assert _stage("mpi_viewer.geometry.volume") < _stage("mpi_viewer.roi.regions")
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from mpi_viewer.study.session import Session\n")
    assert "mpi_viewer.study.session" in [m for _, m in _imports(f)]


def test_headless_commands_load_no_gui_library():
    """replay, quantify, report and the batch (a headless install, a Dask worker) import
    no napari, Qt or magicgui: they work with `pip install mpi-viewer` (no [napari] extra)."""
    code = (
        "import sys\n"
        "from mpi_viewer import cli\n"
        "import mpi_viewer.study.batch, mpi_viewer.study.pipeline, mpi_viewer.study.model\n"
        "import mpi_viewer.report.study_report\n"
        "for cmd in (['replay', '--help'], ['quantify', '--help'], ['report', '--help']):\n"
        "    try: cli.main(cmd)\n"
        "    except SystemExit: pass\n"
        f"bad = [g for g in {GUI!r} if g in sys.modules]\n"
        "print(bad, file=sys.stderr); sys.exit(1 if bad else 0)\n"
    )
    # utf-8: the help texts hold µ and ±, and a Qt test run before may have left the
    # process's locale (the default decoding) ASCII
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8"
    )
    assert r.returncode == 0, r.stderr[-2000:]


def test_gui_libraries_are_an_extra():
    import tomllib

    meta = tomllib.loads((CORE.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = " ".join(meta["dependencies"]).lower()
    for lib in ("napari", "qtpy", "magicgui", "pyqt", "npe2"):
        assert lib not in core
    extra = " ".join(meta["optional-dependencies"]["napari"]).lower()
    assert all(lib in extra for lib in ("napari", "qtpy", "magicgui", "pyqt6", "npe2"))
    assert "mpi-viewer[napari]" in meta["optional-dependencies"]["test"]
