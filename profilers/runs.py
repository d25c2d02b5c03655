"""A stored run's lifecycle, written once: create → progress → cancel → finish or fail.

Every kind of run (a kernel sweep, a block sweep, a lab's grid or table) goes
through ``stored_run``: the run's record exists from the start (status
running), the dashboard's Cancel (SIGTERM) or Ctrl-C ends it as cancelled with
what was finished kept (the signal is only noted, and the run stops at its next
``checkpoint``, in a loop of its own), an error ends it as failed with the
error's first line, and a process that dies leaves it running until the store
marks it interrupted. No torch here: the lifecycle is bookkeeping over the store.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .store import Store, StoreError

CANCELLED_BY_USER = "cancelled by the user"


class Cancelled(BaseException):
    """The user asked the run to stop (SIGTERM from the dashboard's Cancel, or Ctrl-C). A BaseException, like
    KeyboardInterrupt: a point's ``except Exception`` must not turn a cancel into a failed point."""


# Signals received inside the outermost ``cancellable`` block, by name. A list the handler appends to: no lock
# is taken in a signal handler (the main thread may hold it at that moment).
_requested: list[str] = []
_depth = 0
SLICE_S = 0.2  # how long ``pause`` sleeps between looks at the cancel state


def cancel_requested() -> str | None:
    """The name of the signal that asked this run to stop (SIGTERM, SIGINT), or None."""
    return _requested[0] if _requested else None


def checkpoint() -> None:
    """Raise Cancelled here, in NormScope's own code, when the run was asked to stop. Every loop of a run calls
    it between waits (a visit, a cell, a training step, a turn of ``ray.wait``)."""
    if _requested:
        raise Cancelled(f"{_requested[0]} received")


def pause(seconds: float) -> None:
    """Sleep ``seconds``, looking at the cancel state every ``SLICE_S``: a wait a cancel cuts short."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        checkpoint()
        time.sleep(min(SLICE_S, left))
    checkpoint()


@contextlib.contextmanager
def cancellable() -> Iterator[None]:
    """Inside this block SIGTERM (the dashboard's Cancel) and SIGINT (Ctrl-C) only note the request; the run
    stops at its next ``checkpoint``. A handler that raised would raise wherever the main thread happens to
    be, and that may be foreign code that checks signals itself: inside ``ray.wait`` Ray's Cython turns the
    exception into ``SystemError: … returned a result with an exception set``, psycopg leaves its connection
    mid-protocol. Noting it is all a handler does; the raise happens at a checkpoint, in a loop of ours.

    Blocks nest (a calibration's sweeps, a run's body): the outermost installs the handlers and forgets the
    request when it ends, so an inner block's cancel also stops the outer one at its next checkpoint. Signals
    can be set in the main thread only: elsewhere the block changes nothing."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth:
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return

    def note(signum: int, frame: object) -> None:
        _requested.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
    _depth = 1
    try:
        yield
    finally:
        _depth = 0
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _requested.clear()


def first_line(exc: BaseException) -> str:
    """An error as one line (a run's or a point's reason): its type and the first line of its text."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


@dataclass
class Outcome:
    """How a stored run ended; each lab's result adds what it measured."""

    run_id: int
    status: str = "running"
    error: str | None = None
    closed: bool = False  # the body stored the record's ending itself (a run filled in one transaction)

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this ending: 0 completed, 130 cancelled, 1 otherwise."""
        return 0 if self.status == "completed" else 130 if self.status == "cancelled" else 1


@contextlib.contextmanager
def stored_run(
    store: Store,
    outcome: Outcome,
    *,
    cancelled: str = CANCELLED_BY_USER,
    failed: str = "",
    reraise: bool = True,
) -> Iterator[Outcome]:
    """Run the block as the body of run ``outcome.run_id``; finish the record however the block ends.

    ``cancelled`` is the reason a cancel stores; ``failed`` is added to a failure's reason (what was kept).
    A failure is re-raised after the record is closed unless ``reraise`` is False; the body may set
    ``outcome.status`` to "failed" itself (an expected failure with its own reason), or ``outcome.closed`` when
    it wrote the record's ending (its status and finish time) itself.
    """
    try:
        with cancellable():
            yield outcome
        if outcome.status == "running":
            outcome.status = "completed"
    except (KeyboardInterrupt, Cancelled):
        outcome.status, outcome.error = "cancelled", cancelled
    except Exception as e:
        outcome.status, outcome.error = "failed", first_line(e) + (f"; {failed}" if failed else "")
        try:
            store.finish_run(outcome.run_id, outcome.status, outcome.error)
        except StoreError as gone:  # the store itself went away: say so, and what it still holds
            raise StoreError(
                f"{first_line(gone)}; run {outcome.run_id} stopped: the points committed before are kept, and the "
                "run is marked interrupted when the store is next opened on this host"
            ) from None
        if reraise:
            raise
        return
    if not outcome.closed:
        store.finish_run(outcome.run_id, outcome.status, outcome.error)


def create(store: Store, spec: Any, machine: dict[str, Any], versions: dict[str, Any], planned: int, **kw: Any) -> int:
    """A new run record in status running (kind and label by keyword)."""
    return store.create_run(spec, machine, versions, planned, **kw)
