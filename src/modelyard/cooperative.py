"""Blocking service calls run cooperatively on an event loop's thread.

The service is synchronous, and a write use case is two steps: a *prepare*
step (validation, blob checks, DNS, anything slow or outside the database),
then one *transaction* step (a function of the transaction that touches only
the database, run by the store's ``transact``). From a thread (the embedded
SDK, the CLI, a test, the server's threadpool on PostgreSQL) a call simply
runs: a slow step blocks that thread, the transaction goes to the store.

The API on SQLite runs calls on the event loop's own thread instead, because a
thread hand-off per request cost more than the work itself (``api/deps.py``).
There each call runs in a :class:`Call` greenlet, inline, until it reaches a
step it would wait on, and *suspends* there, handing the step to the loop's
driver (``api.deps.GroupedWrites``):

- its transaction (a :class:`Transaction`, handed over by the store's group
  committer): the driver gathers the transactions of every call that reached
  one in this turn of the loop into one group-committed SQLite transaction,
  and resumes each call with its own outcome once that has committed;
- a slow step (:func:`off_loop`): the driver runs it on a worker thread, and
  the loop serves other requests meanwhile.

So only transaction steps run under the writer lock, and one request's
prepare step (a webhook's DNS lookup) never holds up another's commit, nor
the loop. A read-only call never suspends and never takes the lock.

Greenlets rather than threads: resuming a call costs a few microseconds on
the same thread, with no GIL hand-off (threads per write measured p99 ~180-200
ms against ~55-90 ms, see ``api/deps.py``). The service needs no async code
and no door needs to know which of its steps are slow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, ParamSpec, TypeVar

from greenlet import getcurrent, greenlet

P = ParamSpec("P")
T = TypeVar("T")


class Outcome(NamedTuple):
    """What one operation of a batch returned or raised."""

    ok: bool
    result: Any
    error: BaseException | None


Operation = Callable[[Any], Any]
"""A transaction step: a function of the store's transaction object."""

BatchRunner = Callable[[Sequence[Operation]], list[Outcome]]
"""Runs operations in one shared transaction; one outcome each, in order."""


@dataclass(frozen=True, slots=True)
class Transaction:
    """A call's transaction step, and the batch runner of the store it writes to."""

    op: Operation
    run_batch: BatchRunner


@dataclass(frozen=True, slots=True)
class Blocking:
    """A slow step to run off the loop (see :func:`off_loop`)."""

    fn: Callable[[], Any]


Step = Transaction | Blocking


class Call(greenlet):  # type: ignore[misc]  # greenlet ships no type information
    """A service call driven by an event loop (see the module docstring).

    The driver starts it with ``switch()``; each time the call suspends, the
    driver gets a :data:`Step` back, and resumes it with ``switch(value)`` or
    ``throw(...)``. When the call ends, ``switch`` returns its result (or
    raises its exception) and the greenlet is dead.
    """


def in_call() -> bool:
    """True when running inside a :class:`Call` (on an event loop's thread)."""
    return isinstance(getcurrent(), Call)


def suspend(step: Step) -> Any:
    """Hand ``step`` to the driver of the running call; return what it sends back
    (or raise what it throws). Only inside a :class:`Call`."""
    here = getcurrent()
    if not isinstance(here, Call):
        raise RuntimeError("suspend() outside a cooperative call")
    return here.parent.switch(step)


def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a slow step (DNS, network I/O) where it cannot stall an event loop.

    Inside a :class:`Call` the step runs on a worker thread while the loop
    serves other requests, and the call resumes with its result; elsewhere
    (already on a thread of its own) it runs right here.
    """
    if isinstance(getcurrent(), Call):
        result: T = suspend(Blocking(functools.partial(fn, *args, **kwargs)))
        return result
    return fn(*args, **kwargs)
