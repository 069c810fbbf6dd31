"""Long work off the GUI thread: the one pattern every dock uses.

:func:`run_task` runs a function, or a generator function, in napari's
``thread_worker`` with napari's progress bar. A generator reports progress by
``yield``; ``worker.quit()`` cancels it at its next ``yield`` (nothing is swapped in
then). What the GUI must do with the results (set a layer's data, add a layer, fill a
table) is yielded as a :class:`GuiStep`: each step runs on the GUI thread in its own
turn of the event loop, in order, before ``on_done``, so the window repaints and takes
clicks between two layers: the longest stall is napari's own cost of one layer.

``block=True`` runs the same code here, steps included (tests, scripts, replay).
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable

from mpi_viewer.errors import InputError


class GuiStep:
    """A callable to run on the GUI thread, yielded by a task (see the module docstring).

    After it ran, :attr:`result` holds what it returned and :attr:`done` is set: a task
    that needs the result waits with :meth:`wait` (in its worker thread).
    """

    __slots__ = ("fn", "result", "done")

    def __init__(self, fn: Callable[[], object]):
        self.fn = fn
        self.result = None
        self.done = threading.Event()

    def __call__(self) -> None:
        try:
            self.result = self.fn()
        finally:
            self.done.set()

    def wait(self, timeout_s: float = 300.0):
        """Wait (in the worker) until the step ran on the GUI thread; its result."""
        if not self.done.wait(timeout_s):
            raise TimeoutError("the window did not take the results (closed?)")
        return self.result


def notify_error(exc: BaseException, what: str = "") -> None:
    """A napari error notification of one line; never raises."""
    from napari.utils.notifications import show_error

    msg = (
        str(exc)
        if isinstance(exc, InputError)
        else f"{what + ': ' if what else ''}{type(exc).__name__}: {exc}"
    )
    show_error(" ".join(msg.split()))


def _on_yield(value, desc: str) -> None:
    if isinstance(value, GuiStep):
        try:
            value()
        except Exception as exc:  # noqa: BLE001 - never let an error reach Qt
            notify_error(exc, desc)


def _run_here(fn):
    """Run ``fn`` (function or generator function) on this thread; its return value."""
    out = fn()
    if not inspect.isgenerator(out):
        return out
    while True:
        try:
            value = next(out)
        except StopIteration as stop:
            return stop.value
        if isinstance(value, GuiStep):
            value()


def _paced(fn):
    """``fn`` (a generator function) whose GuiSteps are waited for before it goes on: one
    step per turn of the event loop (the window repaints between two layers), and
    ``returned`` / ``finished`` come after the last step."""

    @functools.wraps(fn)
    def run():
        gen = fn()
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            yield item
            if isinstance(item, GuiStep):
                item.wait()

    return run


def run_task(
    fn,
    *,
    on_done: Callable[[object], object],
    block: bool = False,
    desc: str = "working…",
    total: int = 0,
):
    """Run ``fn()`` off the GUI thread with napari's progress bar; ``on_done(result)`` after.

    Parameters
    ----------
    fn : callable
        A function, or a generator function whose ``yield`` reports one step of
        progress (``total`` of them: a determinate bar) or hands a :class:`GuiStep`
        to the GUI thread; ``return`` gives the result.
    on_done : callable
        Called on the GUI thread with the result (not when cancelled or failed).
    block : bool
        Run here instead (tests, scripts); GuiSteps run in order.
    desc : str
        The progress bar's text (and the error notification's prefix).
    total : int
        The number of yields, for a determinate bar (0: indeterminate, the default and
        the docks' choice: napari's bar runs the whole event loop at each of its steps,
        painting the canvas inside the step and lengthening the stall).

    Returns
    -------
    napari worker or None
        The worker (``quit()`` cancels, ``finished`` follows every step and
        ``on_done``), or None when ``block``. Errors become notifications.
    """
    if block:
        try:
            result = _run_here(fn)
        except Exception as exc:  # noqa: BLE001 - the GUI shows every error as a notification
            notify_error(exc, desc)
            return None
        on_done(result)
        return None
    from napari.qt.threading import thread_worker

    gen = inspect.isgeneratorfunction(fn)
    progress = {"total": int(total) if gen else 0, "desc": desc}
    worker = thread_worker(_paced(fn) if gen else fn, progress=progress, ignore_errors=True)()
    if hasattr(worker, "yielded"):
        worker.yielded.connect(lambda value: _on_yield(value, desc))
    worker.returned.connect(on_done)
    worker.errored.connect(lambda exc: notify_error(exc, desc))
    worker.start()
    return worker
