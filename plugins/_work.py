"""Long work off the GUI thread: one pattern, napari's ``thread_worker``.

:func:`start_work` runs a function or a generator function in a napari worker:

- a generator ``yield``\\ s its progress, a fraction 0..1, shown in napari's progress bar
  (a plain function gets an indeterminate bar), or hands a :class:`GuiStep` to the GUI
  thread: what must happen there (set a layer's data, add a layer, fill a table) runs in
  its own turn of the event loop, in order, and the worker waits for it, so the window
  repaints and takes clicks between two layers: the longest stall is napari's own cost
  of one layer;
- ``worker.quit()`` cancels: a generator stops at its next ``yield`` (nothing is
  delivered), and :func:`callback_steps` turns a core function that takes ``progress``
  and ``should_stop`` callbacks into such a generator;
- ``on_done(result)`` runs on the GUI thread with the return value, errors become one
  napari notification each, ``on_finish()`` runs after either;
- ``block=True`` runs the work on the calling thread (tests, scripts).
"""

from __future__ import annotations

import functools
import inspect
import queue
import threading
from collections.abc import Callable, Generator
from typing import Any

from mpi_viewer.errors import InputError


class GuiStep:
    """A callable to run on the GUI thread, yielded by a work generator (module docstring).

    After it ran, :attr:`result` holds what it returned and :attr:`done` is set: work that
    needs the result waits with :meth:`wait` (in its worker thread).
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

    def run_then_release(self) -> None:
        """Run it on the GUI thread; the worker goes on only once the event loop has
        drawn what it changed (a 0 ms timer fires after the pending paint), so the next
        step never shares a turn, and a stall, with this step's repaint."""
        from qtpy.QtCore import QTimer

        try:
            self.result = self.fn()
        finally:
            QTimer.singleShot(0, self.done.set)

    def wait(self, timeout_s: float = 300.0):
        """Wait (in the worker) until the step ran on the GUI thread; its result."""
        if not self.done.wait(timeout_s):
            raise TimeoutError("the window did not take the results (closed?)")
        return self.result


class _WorkError(Exception):
    """A RuntimeError raised in a worker's generator, passed on as another exception."""


def _unwrapped(exc: BaseException) -> BaseException:
    """The error a worker raised (a RuntimeError :func:`_paced` passed on as a _WorkError)."""
    return exc.__cause__ if isinstance(exc, _WorkError) and exc.__cause__ else exc


def _paced(fn):
    """``fn`` (a generator function) whose GuiSteps are waited for before it goes on: one
    step per turn of the event loop, and ``returned`` / ``finished`` after the last."""

    @functools.wraps(fn)
    def run():
        gen = fn()
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            except RuntimeError as exc:  # superqt takes a RuntimeError for a deleted worker
                # and emits neither ``errored`` nor ``finished``: the error would be silent
                # and the step's ``on_finish`` (un-pausing the layer pool, …) never run
                raise _WorkError(f"{type(exc).__name__}: {exc}") from exc
            yield item
            if isinstance(item, GuiStep):
                item.wait()

    return run


def notify_error(exc: BaseException, what: str = "") -> None:
    """A napari error notification of one line; never raises."""
    from napari.utils.notifications import show_error

    msg = (
        str(exc)
        if isinstance(exc, InputError)
        else f"{what + ': ' if what else ''}{type(exc).__name__}: {exc}"
    )
    show_error(" ".join(msg.split()))


#: Warnings held back while a step runs (:func:`hold_warnings`); None: shown at once.
_HELD: list[str] | None = None
#: The holds not released yet (tokens of :func:`hold_warnings`).
_HOLDS: set = set()
#: A hold ends by itself after this long (ms), released or not: a step whose worker was
#: deleted with its window never says it finished, and no warning may be held for good.
HOLD_MAX_MS = 120_000
_SEE = "See ⚠ "


def notify_warning(msg: str) -> None:
    """A napari warning notification (held back while :func:`hold_warnings` is on)."""
    if _HELD is not None:
        if msg not in _HELD:
            _HELD.append(msg)
        return
    from napari.utils.notifications import show_warning

    show_warning(msg)


def hold_warnings() -> object:
    """Hold the docks' warnings back until :func:`release_warnings` of the token returned
    (a session's docks restored one by one would each pop a notification up mid-open: each
    slides in over the canvas, and the window is composed again for every frame of it).
    Call it on the GUI thread."""
    global _HELD
    token = object()
    _HOLDS.add(token)
    if _HELD is None:
        _HELD = []
    from qtpy.QtCore import QTimer

    QTimer.singleShot(HOLD_MAX_MS, lambda: release_warnings(token, later=False))
    return token


def _merged(see: list[str]) -> str:
    """ "in the iron table: a, b" and "in the cells table: a, b" → "(iron, cells tables):
    a, b" (the same rows flagged; short: napari's notification shows one line of about 45
    characters); else joined with "; "."""
    import re

    parts = [re.fullmatch(r"in the (\w+) table: (.+)", m) for m in see]
    if len(see) > 1 and all(parts) and len({p.group(2) for p in parts}) == 1:
        names = [p.group(1) for p in parts]
        return f"({', '.join(names)} tables): {parts[0].group(2)}"
    return "; ".join(see)


def release_warnings(token: object, later: bool = True) -> None:
    """End the hold ``token`` (again: nothing). When no hold is left, the warnings held are
    shown: the "See ⚠ in the … table" ones as one notification ("See ⚠ (iron, cells
    tables): a"), each other as its own; on the next turn of the event loop
    (``later=False``: now)."""
    global _HELD
    if token not in _HOLDS:
        return
    _HOLDS.discard(token)
    if _HOLDS or _HELD is None:
        return
    held, _HELD = _HELD, None
    see = [m[len(_SEE) :] for m in held if m.startswith(_SEE)]
    texts = [m for m in held if not m.startswith(_SEE)]
    if see:
        texts.append(_SEE + _merged(see))

    def show() -> None:
        for text in texts:
            notify_warning(text)

    if not later:
        show()
        return
    from qtpy.QtCore import QTimer

    QTimer.singleShot(TURN_MS, show)


def _drain(gen: Generator) -> Any:
    """Run a generator to its end here (its GuiSteps too, in order); its return value."""
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        if isinstance(item, GuiStep):
            item()


def start_work(
    work: Callable[[], Any],
    *,
    on_done: Callable[[Any], None],
    desc: str | None = "working…",
    block: bool = False,
    on_error: Callable[[BaseException], None] | None = None,
    on_finish: Callable[[], None] | None = None,
    determinate: bool | None = None,
    hold: bool = False,
):
    """Run ``work()`` (a function or a generator function) in a napari ``thread_worker``.

    Parameters
    ----------
    work : callable
        No arguments. A generator function yields fractions done (0..1) and returns
        the result; a plain function returns it.
    on_done : callable(result)
        On the GUI thread, with the result (not called when cancelled or failed).
    desc : str or None
        The progress bar's text; None: no progress bar (quick display work).
    block : bool
        Run here and now (tests, scripts); returns None.
    on_error : callable(exception), optional
        Instead of the default notification.
    on_finish : callable(), optional
        After the work ends, whatever the outcome (re-enable buttons…).
    determinate : bool, optional
        A bar that fills with the yielded fractions (default: for a generator). Work that
        yields GuiSteps to build layers says False: napari's determinate bar runs the
        event loop at each of its updates, painting the canvas inside a step.
    hold : bool
        The docks' warnings shown while the work runs (and in ``on_done``) are held
        back and shown as one notification after it, on a turn of their own
        (:func:`hold_warnings`): work that swaps layers in over several turns.

    Returns
    -------
    napari worker or None
        ``quit()`` on it cancels a generator at its next yield.
    """
    is_gen = inspect.isgeneratorfunction(work)
    fail = on_error or (lambda exc: notify_error(exc, desc or ""))
    if hold:
        token = hold_warnings()
        after = on_finish

        def on_finish() -> None:
            try:
                if after is not None:
                    after()
            finally:
                release_warnings(token, later=not block)

    if block:
        try:
            result = _drain(work()) if is_gen else work()
        except Exception as exc:  # noqa: BLE001 - the GUI shows every error as a notification
            fail(exc)
        else:
            on_done(result)
        finally:
            if on_finish is not None:
                on_finish()
        return None
    try:
        return _start_worker(work, is_gen, on_done, desc, fail, on_finish, determinate)
    except BaseException:
        if hold:  # no worker, so no ``on_finish``: the hold would outlive the step
            release_warnings(token, later=False)
        raise


def _start_worker(work, is_gen, on_done, desc, fail, on_finish, determinate):
    """:func:`start_work`'s napari worker, started."""
    from napari.qt.threading import thread_worker

    # errors are ours to show (one notification), not re-raised on the GUI thread
    worker = thread_worker(
        _paced(work) if is_gen else work, start_thread=False, ignore_errors=True
    )()
    determinate = is_gen if determinate is None else (determinate and is_gen)
    pbar = None
    if desc is not None:
        from napari.utils import progress

        pbar = progress(total=100 if determinate else 0, desc=desc)
        worker.finished.connect(pbar.close)
        worker.progress_bar = pbar  # napari's bar of this work (tests read it)
    if is_gen:

        def step(item) -> None:
            if isinstance(item, GuiStep):
                try:
                    item.run_then_release()
                except Exception as exc:  # noqa: BLE001 - never let an error reach Qt
                    fail(exc)
            elif pbar is not None and determinate:
                n = int(min(max(float(item or 0.0), 0.0), 1.0) * 100)
                if n > pbar.n:
                    pbar.update(n - pbar.n)

        worker.yielded.connect(step)
    worker.returned.connect(lambda result: None if worker.abort_requested else on_done(result))
    worker.errored.connect(lambda exc: None if worker.abort_requested else fail(_unwrapped(exc)))
    if on_finish is not None:
        worker.finished.connect(on_finish)
    from mpi_viewer.plugins._warm_up import after_step

    worker.finished.connect(after_step)  # the step's garbage freed, its survivors frozen
    worker.start()
    return worker


#: Milliseconds between two turns of :func:`in_turns`: a real timer, so the event loop
#: takes the pending paint, clicks and other timers between two pieces.
TURN_MS = 1


def in_turns(
    steps, *, block: bool = False, on_finish: Callable[[], None] | None = None, what: str = ""
) -> None:
    """Run the callables ``steps`` on the GUI thread, one per turn of the event loop.

    GUI-thread work that changes several layers (each costs napari a refresh and the
    canvas a redraw) is split so that the window repaints and takes clicks between two
    layers: the longest stall is one piece, not their sum. ``block=True`` (tests, a
    session opened blocking) runs them all here and now. An error in a piece is one
    napari notification (``what``: what was being done); the pieces after it still run.
    ``on_finish()`` runs after the last.
    """
    steps = list(steps)

    def run(fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - never let an error reach Qt
            notify_error(exc, what)

    if block:
        for fn in steps:
            run(fn)
        if on_finish is not None:
            on_finish()
        return
    from qtpy.QtCore import QTimer

    def nxt() -> None:
        if steps:
            run(steps.pop(0))
            QTimer.singleShot(TURN_MS, nxt)
        elif on_finish is not None:
            on_finish()

    nxt()


def stop_at_failure(steps, *, catch=(Exception,), on_error=None) -> list:
    """The callables ``steps`` wrapped so that once one has raised (an exception of
    ``catch``) those after it do nothing: pieces of a restore that each build on the last.
    ``on_error(exc)`` is told of the failure; without it the exception goes on to the
    caller (e.g. :func:`in_turns`' notification)."""
    failed: list = []

    def wrap(fn):
        def run():
            if failed:
                return
            try:
                fn()
            except catch as exc:
                failed.append(exc)
                if on_error is None:
                    raise
                on_error(exc)

        return run

    return [wrap(fn) for fn in steps]


def callback_steps(run: Callable[..., Any], *, stop: Callable[[], bool]) -> Generator:
    """A generator over a core function that reports progress by callbacks.

    ``run(progress=..., should_stop=...)`` is called on a helper thread; its progress
    fractions are yielded here, its result returned (its exception raised). ``stop()``
    (e.g. ``lambda: worker.abort_requested``) is handed to it as ``should_stop``.
    """
    q: queue.Queue = queue.Queue()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = run(progress=lambda f, *_: q.put(float(f)), should_stop=stop)
        except BaseException as exc:  # noqa: BLE001 - handed back to the worker thread
            box["error"] = exc
        finally:
            q.put(None)

    thread = threading.Thread(target=target, name="mpi-viewer work", daemon=True)
    thread.start()
    while (fraction := q.get()) is not None:
        yield fraction
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
