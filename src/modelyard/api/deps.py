"""Request-scoped helpers shared by the routers."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.to_thread
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from modelyard.api.access import principal_of
from modelyard.cooperative import BatchRunner, Call, Transaction
from modelyard.domain.identity import Principal
from modelyard.service.identity import IdentityService
from modelyard.service.registry import RegistryService
from modelyard.service.webhooks import WebhookService

P = ParamSpec("P")
T = TypeVar("T")


class ServiceCall:
    """Runs a (blocking) service call from an async endpoint.

    Which one a request gets is chosen by :func:`service_call`:

    - Reads on SQLite run right on the event loop: the database is an
      in-process library call of well under a millisecond, and a thread
      hand-off per request would cost more than the query (measured with
      py-spy: ~40% of CPU in thread signalling under point-read load).
    - Writes on SQLite (:class:`GroupedWrites`) run on the event loop too, as
      cooperative calls (``modelyard/cooperative.py``): a call's prepare step
      runs inline, its slow steps on a worker thread, and only its
      transaction step is gathered with those of the other requests of the
      same loop turn into one group-committed transaction
      (``store/metadata/groupcommit.py``), each in its own savepoint. A
      thread per write would let writes share a commit as well, but the
      hand-offs between the loop and the committing thread (the GIL) cost
      more than the shared commit saved (measured: creates no faster, p99
      ~180-200 ms against ~55-90 ms).
    - Every call on PostgreSQL goes to the threadpool: it waits on the network
      and on row locks held by other replicas.
    """

    def __init__(self, *, inline: bool, heavy_limit: int) -> None:
        self.inline = inline
        self.heavy_limit = heavy_limit
        self._heavy_limiter: anyio.CapacityLimiter | None = None

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` inline or in the threadpool."""
        if self.inline:
            return fn(*args, **kwargs)
        return await run_in_threadpool(fn, *args, **kwargs)

    async def heavy(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` in the threadpool whatever the backend: for calls that may
        take tens of milliseconds (searches), which must not stall the loop.

        At most ``heavy_limit`` (the connection pool's size) run at once; the
        rest queue here. Each holds a pooled connection, and with Starlette's
        40 threads, 16 concurrent searches opened and closed overflow
        connections per request and fought over the GIL: 6.5 CPU ms per page
        of 50 against 3.2-3.5 with the limit (``bench/point_reads.py``).
        """
        if self._heavy_limiter is None:
            self._heavy_limiter = anyio.CapacityLimiter(self.heavy_limit)
        return await anyio.to_thread.run_sync(
            functools.partial(fn, *args, **kwargs), limiter=self._heavy_limiter
        )


class GroupedWrites(ServiceCall):
    """Drives cooperative service calls on the event loop; batches their transactions.

    A call runs inline in a :class:`~modelyard.cooperative.Call` greenlet until
    it suspends. At its transaction step the operation is queued and the loop
    goes on; at the end of the loop's turn (``call_soon``) every queued
    operation runs through its store's group committer, which commits them
    together and hands each its own result or exception, and each call
    resumes with its own. While a batch runs the loop is blocked, as it was by
    each inline write before; operations queued meanwhile form the next batch.
    A slow step (``off_loop``) goes to the threadpool while the loop serves
    others. A call that never reaches a transaction (a read-only POST) never
    takes the writer lock.
    """

    def __init__(self, reads: ServiceCall) -> None:
        super().__init__(inline=True, heavy_limit=reads.heavy_limit)
        self._reads = reads
        self._queue: list[tuple[Transaction, asyncio.Future[Any]]] = []

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` as a cooperative call; return its result."""
        call = Call(functools.partial(fn, *args, **kwargs))
        # The call sees this request's context variables, as an inline call would.
        call.gr_context = contextvars.copy_context()
        step = call.switch()
        while not call.dead:
            try:
                if isinstance(step, Transaction):
                    value = await self._transact(step)
                else:
                    value = await run_in_threadpool(step.fn)
            except BaseException as exc:  # the call's own to handle (or not)
                step = call.throw(type(exc), exc, exc.__traceback__)
            else:
                step = call.switch(value)
        result: T = step
        return result

    async def heavy(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """As :meth:`ServiceCall.heavy`, under the same limit as the reads' (a
        search by POST is a read)."""
        return await self._reads.heavy(fn, *args, **kwargs)

    def _transact(self, step: Transaction) -> asyncio.Future[Any]:
        """Queue ``step`` for this turn's batch; the future of its outcome."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((step, fut))
        if len(self._queue) == 1:
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        items, self._queue = self._queue, []
        # One batch per store (there is one in practice), in queue order.
        by_runner: dict[BatchRunner, list[tuple[Transaction, asyncio.Future[Any]]]] = {}
        for item in items:
            by_runner.setdefault(item[0].run_batch, []).append(item)
        failure: BaseException | None = None
        for run_batch, group in by_runner.items():
            try:
                outcomes = run_batch([step.op for step, _ in group])
            except BaseException as exc:  # no request may be left waiting
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                failure = failure or exc
                continue
            for (_, fut), out in zip(group, outcomes, strict=True):
                if fut.cancelled():
                    continue
                if out.ok:
                    fut.set_result(out.result)
                else:
                    assert out.error is not None
                    fut.set_exception(out.error)
        if failure is not None:
            raise failure  # to the loop's exception handler, which logs it


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def service_call(request: Request) -> ServiceCall:
    """How to call a service for ``request``: reads one by one, writes
    gathered on SQLite (see :class:`ServiceCall`)."""
    state = request.app.state
    call: ServiceCall = state.call if request.method in SAFE_METHODS else state.write_call
    return call


def services(request: Request) -> tuple[RegistryService, ServiceCall]:
    """The registry service built by ``create_app`` and how to call it.

    A plain function rather than FastAPI dependencies: resolving dependencies
    costs ~100 µs a request in this FastAPI version, a quarter of a point read.
    """
    return request.app.state.registry, service_call(request)


def actor(request: Request) -> Principal:
    """Who is acting: the principal the route's guard authenticated (``api/access.py``)."""
    return principal_of(request.scope)


def identity(request: Request) -> tuple[IdentityService, ServiceCall]:
    """The identity service (users, tokens, roles) and how to call it."""
    return request.app.state.identity, service_call(request)


def webhook_services(request: Request) -> tuple[WebhookService, ServiceCall]:
    """The webhook and event-stream service built by ``create_app`` and how to call it."""
    return request.app.state.webhooks, service_call(request)
