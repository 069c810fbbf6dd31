"""GUI-thread stalls during the demo study, step by step (needs a display: ``xvfb-run -a``).

    xvfb-run -a -s "-screen 0 1920x1200x24" python benchmarks/bench_gui_stalls.py [--warnings]

A 10 ms ``QTimer`` heartbeat runs on the GUI thread; for each step of the demo study
(mold registration, four ROIs, calibration fit, cells, report, session save, session
open) the longest gap between two beats is the longest time the window could not
repaint or take a click (beside it, the GUI thread's own CPU time in its costliest
gap: on a shared, loaded machine the wall-clock gap is mostly waiting for a core). Each step is started the way the dock's button starts it
(``block=False``: workers where the dock has one; the ROIs as clicks are, measured in
a worker) and waited for with the event loop running. Side by side: napari's own cost
of adding the same layers (the demo's MRI, CT and MPI images, a Labels layer, and the
density, outline and text-label layers of the cells step) measured by the same
heartbeat: a step that adds a layer cannot stall less than napari adding it. Target: ≤ 100 ms
per step (the viewer's own start-up excluded).

Start-up is the one ``mpi-viewer demo`` does (``plugins/_launch.prepare``: docks, the
warm-up and ``gc.freeze`` of :mod:`mpi_viewer.plugins._warm_up`, then the data);
The layer pool of :mod:`mpi_viewer.plugins._layer_pool` (the layers the mold, first-ROI
and cells steps add, made empty as the demo's images open) is part of start-up;
``--no-pool`` leaves it out (the steps add their layers). ``--cold`` leaves the warm-up,
the freeze and the pool out (how it was before); ``--no-step-freeze`` keeps the start-up
freeze but not the freeze of each finished step's survivors
(:func:`mpi_viewer.plugins._warm_up.after_step`). ``--memory N`` then opens the saved
session N more times and prints the process's RSS and the collector's frozen-object count
after each (the freezing policy must not grow without bound). ``--plugins-menu`` starts as a
user who starts from napari does: each dock opened by triggering its action in the window's
menu bar, Plugins > mpi-viewer > the dock (napari's own app-model command, as a click on
it runs it), no ``mpi-viewer`` start-up; the first of our docks napari adds installs the
layer pool and, the viewer having no layer yet, the freeze (no warm-up), and the docks are
tabbed together (:mod:`mpi_viewer.plugins._plugin_docks`); then the demo's images.
``--no-pool`` there leaves the pool out (the steps add their layers). After the study's
own session open, the saved session is also opened into a fresh window started as
``mpi-viewer`` starts (``prepare``; Session > Open): "session open (fresh window)".
``--warnings`` also lists
every napari notification shown during the study; ``--stacks``
prints, for each step, where the GUI thread was during its longest gap (a sampling
thread reads the GUI thread's stack every 5 ms while the heartbeat is late; a
diagnostic only: reading another thread's frames can crash CPython 3.11 now and then).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

os.environ.setdefault("QT_API", "pyqt6")


class Heartbeat:
    """Time stamps of a 10 ms QTimer; :meth:`longest_gap_ms` between two marks.

    Each beat also reads the GUI thread's own CPU clock (``time.thread_time``):
    :meth:`busiest_gap_cpu_ms` is the most CPU the GUI thread spent between two beats,
    the part of a stall that is the program's own work. On a loaded machine (other
    processes on the cores) a gap's wall time grows with the load while this does not;
    it leaves out what other threads do meanwhile (llvmpipe's rendering threads, the X
    server), so on an idle machine a gap is this plus the drawing it waits for.
    """

    def __init__(self, interval_ms: int = 10):
        from qtpy.QtCore import QTimer

        self.beats: list[float] = []
        self.cpu: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._beat)
        self.timer.start()

    def _beat(self) -> None:
        self.beats.append(time.perf_counter())
        self.cpu.append(time.thread_time())

    def longest_gap_ms(self, t0: float, t1: float) -> float:
        ts = [t0, *[b for b in self.beats if t0 <= b <= t1], t1]
        return 1000.0 * max(b - a for a, b in zip(ts, ts[1:], strict=False))

    def busiest_gap_cpu_ms(self, t0: float, t1: float, c0: float, c1: float) -> float:
        """The GUI thread's CPU ms in its busiest gap between ``t0`` and ``t1`` (whose
        ``thread_time`` readings are ``c0``, ``c1``)."""
        got = [c for b, c in zip(self.beats, self.cpu, strict=True) if t0 <= b <= t1]
        cs = [c0, *got, c1]
        return 1000.0 * max(b - a for a, b in zip(cs, cs[1:], strict=False))


class StallSampler(threading.Thread):
    """Samples the GUI thread's stack every 5 ms while the heartbeat is over 30 ms late."""

    def __init__(self, hb: Heartbeat, late_s: float = 0.03):
        super().__init__(daemon=True)
        self.hb, self.late_s = hb, late_s
        self.main = threading.main_thread().ident
        self.samples: list[tuple[float, list[str]]] = []  # (beat before the gap, frames)
        self.running = True

    def run(self) -> None:
        while self.running:
            time.sleep(0.005)
            last = self.hb.beats[-1] if self.hb.beats else 0.0
            if time.perf_counter() - last < self.late_s:
                continue
            frame = sys._current_frames().get(self.main)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)
            self.samples.append(
                (last, [f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in stack])
            )

    def report(self, t0: float, t1: float, top: int = 14) -> str:
        """The frames seen most often during the longest gap between ``t0`` and ``t1``."""
        beats = [t0, *[b for b in self.hb.beats if t0 <= b <= t1], t1]
        start = max(zip(beats, beats[1:], strict=False), key=lambda ab: ab[1] - ab[0])[0]
        stacks = [st for last, st in self.samples if abs(last - start) < 1e-9]
        if not stacks:
            return "    (no sample in the longest gap)"
        count: collections.Counter = collections.Counter()
        depth: dict[str, int] = {}
        for st in stacks:
            count.update(dict.fromkeys(st, 1))
            for k, f in enumerate(st):
                depth.setdefault(f, k)
        # the call chain most samples share, innermost last, then where they diverge
        common = sorted((f for f in count if count[f] >= 0.3 * len(stacks)), key=depth.get)
        rows = [f"    {count[f]:3d}/{len(stacks)} {f}" for f in common[-top:]]
        return "\n".join(rows)


def pump(until, timeout_s: float = 300.0) -> None:
    """Run the event loop until ``until()`` is true (or fail after ``timeout_s``)."""
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + timeout_s
    while not until():
        QApplication.processEvents()
        time.sleep(0.002)
        if time.perf_counter() > end:
            raise TimeoutError("step did not finish")


def wait_worker(worker) -> None:
    if not hasattr(worker, "finished"):  # the step ran on the GUI thread (or was refused)
        return
    done: list[bool] = []
    worker.finished.connect(lambda: done.append(True))  # queued: delivered by pump()
    pump(lambda: bool(done))


SAMPLER: StallSampler | None = None


class GcPauses:
    """Durations of Python's garbage collections (any thread), with their generation."""

    def __init__(self):
        import gc

        self.pauses: list[tuple[float, float, int]] = []  # (start, seconds, generation)
        self._t = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase, info) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses.append((self._t, time.perf_counter() - self._t, info["generation"]))

    def longest_ms(self, t0: float, t1: float) -> str:
        got = [(d, g) for t, d, g in self.pauses if t0 <= t <= t1]
        if not got:
            return "-"
        d, g = max(got)
        return f"{1000 * d:.0f} (gen {g})"


GC = GcPauses()


def _rss_mb() -> float:
    """The process's resident memory (MB), from /proc (Linux)."""
    try:
        return (
            int(Path("/proc/self/statm").read_text().split()[1])
            * os.sysconf("SC_PAGE_SIZE")
            / 2**20
        )
    except (OSError, ValueError):
        return float("nan")


def _frozen() -> int:
    import gc

    return gc.get_freeze_count()


def step(hb: Heartbeat, name: str, fn, table: list) -> None:
    from qtpy.QtWidgets import QApplication

    for _ in range(5):
        QApplication.processEvents()
    t0, c0 = time.perf_counter(), time.thread_time()
    fn()
    # let deferred drawing happen (layers swapped in, canvas redrawn)
    t_end = time.perf_counter() + 0.3
    pump(lambda: time.perf_counter() > t_end)
    t1, c1 = time.perf_counter(), time.thread_time()
    table.append(
        (
            name,
            hb.longest_gap_ms(t0, t1),
            1000.0 * (t1 - t0 - 0.3),
            GC.longest_ms(t0, t1),
            hb.busiest_gap_cpu_ms(t0, t1, c0, c1),
        )
    )
    print(
        f"{name:<34} longest gap {table[-1][1]:7.0f} ms   wall {table[-1][2]:7.0f} ms"
        f"   longest GC {table[-1][3]} ms   GUI CPU in busiest gap {table[-1][4]:5.0f} ms",
        flush=True,
    )
    if SAMPLER is not None:
        print(SAMPLER.report(t0, t1), flush=True)


def menu_action(viewer, *path):
    """The QAction at the end of a path in the window's menu bar ("Plugins", "mpi-viewer",
    "MPI ROIs"), found by its titles as a user finds it (each menu shown first: napari
    fills some then)."""
    from mpi_viewer.plugins import _napari_compat as compat

    def plain(text):
        return text.replace("&", "").rstrip(".…").strip()

    actions = list(compat.qt_window(viewer).menuBar().actions())
    for i, title in enumerate(path):
        hits = [a for a in actions if plain(a.text()).startswith(title)]
        if not hits:
            raise LookupError(f"no menu item {title!r} in {[plain(a.text()) for a in actions]}")
        if i == len(path) - 1:
            return hits[0]
        menu = hits[0].menu()
        menu.aboutToShow.emit()
        actions = menu.actions()
    raise LookupError(path)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warnings", action="store_true")
    ap.add_argument("--stacks", action="store_true")
    ap.add_argument("--cold", action="store_true", help="no warm-up, no gc.freeze at start-up")
    ap.add_argument("--no-step-freeze", action="store_true", help="no gc.freeze after each step")
    ap.add_argument("--memory", type=int, default=0, metavar="N", help="reopen N more times")
    ap.add_argument("--no-pool", action="store_true", help="no layer pool: steps add layers")
    ap.add_argument(
        "--plugins-menu", action="store_true", help="docks from the Plugins menu, no start-up"
    )
    ap.add_argument(
        "--file-open",
        action="store_true",
        help="`mpi-viewer` without data, then File > Open the MRI, CT and MPI (unregistered)",
    )
    args = ap.parse_args(argv)
    cold = args.cold  # (the Plugins-menu order sets it: no `mpi-viewer` start-up there)

    import napari
    import numpy as np
    from mpi_viewer.plugins._launch import load_demo, open_docks
    from napari.utils.notifications import notification_manager

    from mpi_viewer.demo.study import make_demo_study, write_demo_study

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))

    t = time.perf_counter()
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    if args.plugins_menu:  # Plugins > mpi-viewer > each dock, as a user clicks them
        from mpi_viewer.plugins._launch import DOCKS

        for n in DOCKS:
            menu_action(viewer, "Plugins", "mpi-viewer", n).trigger()
            pump(lambda n=n: any(k.startswith(n) for k in viewer.window.dock_widgets))
        docks = {type(w).__name__: w for w in viewer.window.dock_widgets.values()}
        t_end = time.perf_counter() + 1.0  # the freeze, scheduled as the first dock arrived
        pump(lambda: time.perf_counter() > t_end)
        args.cold = True  # napari runs no mpi-viewer start-up (only what the docks start)
    elif args.file_open:  # `mpi-viewer`: its start-up (the layer pool made now), no data
        from mpi_viewer.plugins._launch import prepare

        docks = {type(w).__name__: w for w in prepare(viewer, settle=True)}
    else:
        docks = {type(w).__name__: w for w in open_docks(viewer)}
    if not args.cold and not args.file_open:  # (`mpi-viewer` settled in prepare)
        from mpi_viewer.plugins._warm_up import settle

        settle(viewer, warm=False)  # as `mpi-viewer demo` starts (plugins/_launch.prepare)
        if args.no_step_freeze:
            from mpi_viewer.plugins import _warm_up

            _warm_up._POLICY["on"] = False
    hb = None
    rows: list = []
    if args.file_open:  # File > Open each of the demo's images (napari reads and adds them)
        study = make_demo_study()  # the truth of the files written next (the same demo)
        files = Path(tempfile.mkdtemp(prefix="bench_gui_files_")) / "study"
        write_demo_study(files)
        hb = Heartbeat()
        for name in ("mri", "ct", "mpi"):
            step(
                hb,
                f"File > Open {name} (napari's reader and add; not a step)",
                lambda name=name: viewer.open(str(files / f"{name}.nii.gz"), plugin="mpi-viewer"),
                rows,
            )
    else:
        study = load_demo(viewer)
    if (not args.cold or args.plugins_menu) and not args.no_pool:
        from mpi_viewer.plugins._layer_pool import ready

        pump(lambda: ready(viewer))  # the layer pool, made as the demo's images open
    else:
        from mpi_viewer.plugins._layer_pool import disable

        disable(viewer)
    if not args.cold and not args.file_open:
        from mpi_viewer.plugins._warm_up import after_step

        after_step()  # as prepare() ends: the data's layers frozen while starting
    print(
        f"start-up (viewer, docks, demo layers; not a step): {time.perf_counter() - t:.1f} s"
        f" (load average {os.getloadavg()[0]:.1f})"
    )
    hb = hb or Heartbeat()
    if args.stacks:
        global SAMPLER
        SAMPLER = StallSampler(hb)
        SAMPLER.start()
    if args.file_open:  # the session beside the images it opened (else it asks about them)
        tmp, folder = files.parent, files
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench_gui_"))
        folder = tmp / "study"
        write_demo_study(folder)
    truth = study.truth

    mold = docks.get("MoldPanel")
    if mold is not None:
        step(hb, "register (mold detect + fit)", lambda: wait_worker(mold.detect()), rows)
    roi = docks["ROIDock"]
    for k, s in enumerate(truth["sources"][:4]):
        step(
            hb,
            f"ROI {k + 1} ({s['name']})",
            lambda s=s: wait_worker(roi.add_seed_mm(s["mpi_mm"], name=s["name"], block=False)),
            rows,
        )
    cal = docks["CalibrationDock"]
    cal.load_phantoms_csv(folder / "phantoms.csv")
    step(hb, "calibrate (measure + fit)", lambda: wait_worker(cal.fit()), rows)
    cells = docks["CellsDock"]
    step(hb, "cells and overlays", lambda: wait_worker(cells.compute()), rows)
    step(hb, "report", lambda: wait_worker(cells.write_report(tmp / "report")), rows)
    sess = docks["SessionDock"]
    sess._timer.stop()
    step(
        hb,
        "session save",
        lambda: (sess.save(tmp / "s.json", block=False), wait_worker(sess._worker)),
        rows,
    )
    step(
        hb,
        "session save again (files exist)",
        lambda: (sess.save(tmp / "s.json", block=False), wait_worker(sess._worker)),
        rows,
    )
    step(
        hb,
        "session open",
        lambda: (sess.open(tmp / "s.json", block=False), wait_worker(sess._worker)),
        rows,
    )

    # napari's own cost of redrawing the study's window once (nothing changed but the zoom,
    # by 0.01 %): a step that changes what the canvas shows cannot stall less than this
    step(
        hb,
        f"napari redraws the study ({viewer.dims.ndisplay}-D, zoom nudged)",
        lambda: setattr(viewer.camera, "zoom", viewer.camera.zoom * 1.0001),
        rows,
    )

    memory = [("after the study and one session open", _rss_mb(), _frozen())]
    for k in range(args.memory):
        sess.open(tmp / "s.json", block=False)
        wait_worker(sess._worker)
        t_end = time.perf_counter() + 0.3
        pump(lambda t_end=t_end: time.perf_counter() > t_end)
        memory.append((f"after session open {k + 2}", _rss_mb(), _frozen()))

    # the saved session opened into a fresh window (`mpi-viewer`, then Session > Open)
    from mpi_viewer.plugins._launch import prepare

    v3 = napari.Viewer(show=True)
    v3.window.resize(1600, 1000)
    sess3 = {type(w).__name__: w for w in prepare(v3, settle=not cold)}["SessionDock"]
    sess3._timer.stop()
    step(
        hb,
        "session open (fresh window)",
        lambda: (sess3.open(tmp / "s.json", block=False), wait_worker(sess3._worker)),
        rows,
    )
    v3.close()

    # napari's own cost of adding the same layers
    demo = make_demo_study()
    v2 = napari.Viewer(show=True)
    v2.window.resize(1600, 1000)
    for name, vol in (("MRI", demo.mri), ("CT", demo.ct), ("MPI", demo.mpi)):
        arr = np.asarray(vol.array)
        step(hb, f"napari add_image {name} {arr.shape}", lambda a=arr: v2.add_image(a), rows)
    lab = (np.asarray(demo.mpi.array) > np.asarray(demo.mpi.array).max() * 0.5).astype(np.uint16)
    step(hb, "napari add_labels (MPI grid)", lambda: v2.add_labels(lab), rows)
    # the layers "cells and overlays" adds, as napari adds them without any dock (the
    # arrays the layers show: the density and outlines cut to the ROIs' box)
    from mpi_viewer.plugins._cells_overlays import DENSITY_LAYER, OUTLINE_LAYER

    dens = np.asarray(viewer.layers[DENSITY_LAYER].data)
    out = np.asarray(viewer.layers[OUTLINE_LAYER].data).astype(np.uint16)
    step(hb, f"napari add_image density {dens.shape}", lambda: v2.add_image(dens), rows)
    step(hb, f"napari add_labels outlines {out.shape}", lambda: v2.add_labels(out), rows)
    texts = cells.label_texts()
    step(
        hb,
        f"napari add_points {len(texts)} text labels",
        lambda: v2.add_points(
            np.zeros((len(texts), 3)), features={"t": texts}, text={"string": "{t}"}
        ),
        rows,
    )

    print(
        f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
        "step | longest GUI-thread gap (ms) | wall (ms) | longest GC pause (ms)"
        " | GUI-thread CPU in its busiest gap (ms)"
    )
    for name, gap, wall, gc_ms, cpu in rows:
        print(f"{name} | {gap:.0f} | {wall:.0f} | {gc_ms} | {cpu:.0f}")
    print("\nmemory | RSS (MB) | objects frozen out of the collector")
    for name, rss, frozen in memory:
        print(f"{name} | {rss:.0f} | {frozen}")
    if args.warnings:
        print("\nnotifications:")
        for m in seen:
            print("  ", m[:200])
    hb.timer.stop()
    v2.close()
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
