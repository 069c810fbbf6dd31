"""Replay many sessions in parallel: local processes by default, or a Dask cluster.

:func:`replay_many` runs :func:`mpi_viewer.study.replay.replay_path` for every session
file, in a :class:`concurrent.futures.ProcessPoolExecutor` (``jobs`` processes, one
SimpleITK thread each so that processes do not fight for the cores), or on a
``dask.distributed`` scheduler when ``scheduler`` is given (an address such as
``tcp://10.0.0.5:8786``, or a ``Client``/``LocalCluster``). A ``progress`` callback
hears about every finished session.

Outcomes come back in the order of ``paths``; a session with bad input gives an
outcome of status 2, it never stops the others.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mpi_viewer.errors import InputError
from mpi_viewer.study.replay import ReplayOutcome, replay_path

Progress = Callable[[int, int, ReplayOutcome], None]


def _init_worker() -> None:
    """One SimpleITK thread per worker process: the processes share out the cores."""
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    except Exception:  # noqa: BLE001 - best effort
        pass


def _replay_in_worker(path: str, allow_changed_inputs: bool) -> ReplayOutcome:
    _init_worker()
    return replay_path(path, allow_changed_inputs)


#: Modules the worker server imports once (missing ones are skipped), so that workers
#: fork warm instead of importing SciPy, scikit-image and SimpleITK each.
_PRELOAD = (
    "mpi_viewer.study.pipeline",
    "mpi_viewer.geometry.volume",
    "mpi_viewer.io._formats",
    "mpi_viewer.roi",
    "mpi_viewer.roi._grow",
    "mpi_viewer.roi._fwhm",
    "mpi_viewer.calibration",
    "mpi_viewer.calibration.cells",
    "mpi_viewer.registration.molds",
    "mpi_viewer.registration._fiducial_detect",
    "mpi_viewer.registration._fiducial_match",
    "mpi_viewer.registration",
    "mpi_viewer.io.tables",
    "SimpleITK",
    "scipy.ndimage",
    "scipy.optimize",
    "scipy.stats",
    "scipy.spatial",
    "skimage.feature",
    "skimage.measure",
    "skimage.segmentation",
    "skimage.morphology",
)


def _context():
    """Worker start method: ``forkserver`` with the science modules preloaded where it
    exists (safe in a process that already runs threads: Qt, ITK's thread pool), else
    the platform's default."""
    import multiprocessing as mp

    try:
        ctx = mp.get_context("forkserver")
    except ValueError:  # pragma: no cover - Windows
        return mp.get_context()
    ctx.set_forkserver_preload(list(_PRELOAD))
    _start_forkserver_single_threaded()
    return ctx


#: Thread-pool sizes for the worker processes: the processes share out the cores, so
#: each runs BLAS/OpenMP single-threaded (else two workers each spin two BLAS threads on
#: two cores and a batch runs slower than one by one).
_WORKER_THREAD_ENV = {
    k: "1"
    for k in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "BLIS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
    )
}


def _start_forkserver_single_threaded() -> None:
    """Start the fork server (which preloads numpy) with single-threaded BLAS/OpenMP;
    this process's own environment is left as it was."""
    from multiprocessing import forkserver

    saved = {k: os.environ.get(k) for k in _WORKER_THREAD_ENV}
    os.environ.update(_WORKER_THREAD_ENV)
    try:
        forkserver.ensure_running()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def default_jobs() -> int:
    """Worker processes by default: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def replay_many(
    paths: Sequence[str | Path],
    *,
    jobs: int | None = None,
    scheduler: Any = None,
    allow_changed_inputs: bool = False,
    progress: Progress | None = None,
) -> list[ReplayOutcome]:
    """Replay session files in parallel.

    Parameters
    ----------
    paths : sequence of path
        Session JSON files.
    jobs : int, optional
        Local worker processes (default: the usable cores). ``1`` runs in this process.
    scheduler : str or dask.distributed.Client or LocalCluster, optional
        Run on a Dask distributed cluster instead of local processes.
    allow_changed_inputs : bool
        Replay sessions whose input files changed (noted in each outcome's warnings).
    progress : callable(done, total, outcome), optional
        Called as each session finishes.

    Returns
    -------
    list of ReplayOutcome
        In the order of ``paths``.
    """
    paths = [str(p) for p in paths]
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs {jobs}: expected a positive number of processes")
    if scheduler is not None:
        return _replay_dask(paths, scheduler, allow_changed_inputs, progress)
    n = min(jobs or default_jobs(), len(paths))
    out: list[ReplayOutcome | None] = [None] * len(paths)
    if n <= 1:
        for i, p in enumerate(paths):
            out[i] = replay_path(p, allow_changed_inputs)
            if progress:
                progress(i + 1, len(paths), out[i])
        return out  # type: ignore[return-value]
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(
        max_workers=n, initializer=_init_worker, mp_context=_context()
    ) as pool:
        futures = {
            pool.submit(replay_path, p, allow_changed_inputs): i for i, p in enumerate(paths)
        }
        for done, fut in enumerate(as_completed(futures), 1):
            i = futures[fut]
            out[i] = fut.result()
            if progress:
                progress(done, len(paths), out[i])
    return out  # type: ignore[return-value]


def _replay_dask(
    paths: list[str], scheduler: Any, allow_changed_inputs: bool, progress: Progress | None
) -> list[ReplayOutcome]:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise InputError(
            "--scheduler needs dask.distributed: pip install 'mpi-viewer[distributed]'"
        ) from None
    own = not isinstance(scheduler, Client)
    if own and isinstance(scheduler, str):
        _check_reachable(scheduler)
    try:
        client = Client(scheduler, timeout=20) if own else scheduler
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
    try:
        # session paths must be valid on the workers: send absolute ones
        abs_paths = [str(Path(p).resolve()) for p in paths]
        futures = client.map(
            _replay_in_worker, abs_paths, [allow_changed_inputs] * len(paths), pure=False
        )
        index = {f.key: i for i, f in enumerate(futures)}
        out: list[ReplayOutcome | None] = [None] * len(paths)
        for done, fut in enumerate(as_completed(futures), 1):
            i = index[fut.key]
            o = fut.result()
            o.path = paths[i]
            out[i] = o
            if progress:
                progress(done, len(paths), o)
        return out  # type: ignore[return-value]
    finally:
        if own:
            client.close()


def _check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast, in one line, when a tcp:// scheduler does not answer."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(address if "://" in address else f"tcp://{address}")
    if u.scheme not in ("tcp", "tls") or not u.hostname:
        return
    try:
        with socket.create_connection((u.hostname, u.port or 8786), timeout=timeout_s):
            pass
    except OSError as exc:
        raise InputError(f"--scheduler {address}: cannot connect ({exc.strerror or exc})") from None


class TextProgress:
    """A progress bar on a text stream (stderr): redrawn in place on a terminal, one
    line per session otherwise."""

    def __init__(self, stream=None, width: int = 30):
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, done: int, total: int, outcome: ReplayOutcome) -> None:
        filled = int(self.width * done / max(total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        state = {0: "matches", 1: "DIFFERS", 2: "ERROR"}.get(outcome.status, "?")
        text = (
            f"[{bar}] {done}/{total} {Path(outcome.path).name}: {state} ({outcome.seconds:.1f} s)"
        )
        if self.tty:
            self.stream.write("\r" + text + ("\n" if done == total else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
