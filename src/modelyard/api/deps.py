"""Request-scoped helpers shared by the routers."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from modelyard.api.access import principal_of
from modelyard.domain.identity import Principal
from modelyard.service.identity import IdentityService
from modelyard.service.registry import RegistryService
from modelyard.service.webhooks import WebhookService

P = ParamSpec("P")
T = TypeVar("T")


class CallBatcher(Protocol):
    """Runs whole write calls as one transaction (the store's group committer)."""

    def run_calls(self, calls: Sequence[Callable[[], Any]]) -> Sequence[Any]:
        """Run ``calls`` together; each outcome has ``ok``, ``result``, ``error``."""
        ...


class ServiceCall:
    """Runs a (blocking) service call from an async endpoint.

    Which one a request gets is chosen by :func:`service_call`:

    - Reads on SQLite run right on the event loop: the database is an
      in-process library call of well under a millisecond, and a thread
      hand-off per request would cost more than the query (measured with
      py-spy: ~40% of CPU in thread signalling under point-read load).
    - Writes on SQLite (:class:`GroupedWrites`) run on the event loop too,
      but gathered: the requests that reach their write in one turn of the
      loop run as one group-committed transaction (see
      ``store/metadata/groupcommit.py``), each call in its own savepoint.
      A thread per write would let writes share a commit as well, but the
      hand-offs between the loop and the committing thread (the GIL) cost
      more than the shared commit saved (measured: creates no faster, p99
      ~180-200 ms against ~55-90 ms).
    - Every call on PostgreSQL goes to the threadpool: it waits on the network
      and on row locks held by other replicas.
    """

    def __init__(self, *, inline: bool) -> None:
        self.inline = inline

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` inline or in the threadpool."""
        if self.inline:
            return fn(*args, **kwargs)
        return await run_in_threadpool(fn, *args, **kwargs)

    async def heavy(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` in the threadpool whatever the backend: for calls that may
        take tens of milliseconds (searches), which must not stall the loop."""
        return await run_in_threadpool(fn, *args, **kwargs)


class GroupedWrites(ServiceCall):
    """Runs the write calls of concurrent requests in one SQLite transaction.

    A call is queued and the loop goes on; at the end of the loop's turn
    (``call_soon``) every queued call runs, inline, through the store's group
    committer, which commits them together and hands each its own result or
    exception. While a batch runs the loop is blocked, as it was by each
    inline write before; requests that arrive meanwhile form the next batch.
    """

    def __init__(self, group: CallBatcher) -> None:
        super().__init__(inline=True)
        self._group = group
        self._queue: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Queue ``fn(*args, **kwargs)`` for this turn's batch; await its outcome."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.append((functools.partial(fn, *args, **kwargs), fut))
        if len(self._queue) == 1:
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        items, self._queue = self._queue, []
        try:
            outcomes = self._group.run_calls([call for call, _ in items])
        except BaseException as exc:  # no request may be left waiting
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(exc)
            raise
        for (_, fut), out in zip(items, outcomes, strict=True):
            if fut.cancelled():
                continue
            if out.ok:
                fut.set_result(out.result)
            else:
                assert out.error is not None
                fut.set_exception(out.error)


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
    state = request.app.state
    return state.identity, state.call


def webhook_services(request: Request) -> tuple[WebhookService, ServiceCall]:
    """The webhook and event-stream service built by ``create_app`` and how to call it."""
    return request.app.state.webhooks, service_call(request)
