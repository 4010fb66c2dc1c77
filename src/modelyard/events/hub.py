"""One outbox poller per process, feeding every open event stream (issue 9).

Before, each ``GET /api/v1/events/stream`` polled the outbox itself every
``events_poll_interval`` (0.5 s): 200 idle streams made 400 queries a second.
Now one :class:`EventHub` task reads new events once per interval and keeps
the newest of them in memory; each stream takes what is new from there and
applies its own filter (types, namespace, model, subject, and the namespaces
its caller may read) with :func:`modelyard.domain.webhooks.filter_matches`,
the same rule the database query applies.

A stream whose position is older than what the hub holds (a resume with
``Last-Event-ID``, ``after=``, or a stream slower than the hub's window)
catches up from the database with its own filtered query first, then joins
the hub. Ids are commit-ordered (see ``Tx.append_event``), so "everything up
to the hub's position" is a consistent cut: no event is skipped or sent twice.

The hub runs only while streams are open, lives on the server's event loop,
and keeps no state another replica needs (every replica has its own).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

log = logging.getLogger("modelyard.events")

Event = dict[str, Any]
ReadAfter = Callable[[int, int], Awaitable[list[Event]]]
BATCH = 500


class EventHub:
    """Reads the outbox for every stream of this process; streams :meth:`subscribe`."""

    def __init__(
        self,
        read: ReadAfter,
        head: Callable[[], Awaitable[int]],
        *,
        poll: float,
        keep: int = 1_000,
    ) -> None:
        # Between keep and 2 * keep events are held (payloads can be large: a
        # version's file list); a stream further behind reads the database.
        self._read = read  # (after, limit) -> every event with id > after, oldest first
        self._head = head  # the newest committed event id
        self.poll = poll
        self.keep = keep
        self._events: list[Event] = []  # ids ascending: every event in (floor, position]
        self.floor = 0
        self.position = 0
        self.reads = 0  # outbox reads made by the poller (observability, tests)
        self._ready = False
        self._subscribers = 0
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def changed(self) -> asyncio.Event:
        """Set when the hub's position next moves (take it before :meth:`since`)."""
        return self._changed

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[EventHub]:
        """Keep the poller running while the block runs."""
        self._subscribers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="modelyard-event-hub")
        try:
            yield self
        finally:
            self._subscribers -= 1

    def covers(self, cursor: int) -> bool:
        """True if the hub holds every event after ``cursor`` it has read."""
        return self._ready and cursor >= self.floor

    def since(self, cursor: int) -> tuple[list[Event], int]:
        """(events with id > ``cursor`` held here, the position they reach)."""
        at = bisect.bisect_right(self._events, cursor, key=lambda e: int(e["id"]))
        return self._events[at:], self.position

    async def _start(self) -> None:
        """Begin at the head, not where the last stream left off after an idle
        spell: streams behind it catch up themselves."""
        while self._subscribers > 0:
            try:
                head = await self._head()
            except Exception:
                log.exception("event stream poller could not start; retrying")
                await asyncio.sleep(self.poll)
                continue
            if head > self.position:
                self._events.clear()
                self.floor = self.position = head
            self._ready = True
            self._wake()
            return

    async def _run(self) -> None:
        if not self._ready or self._subscribers == 1:
            await self._start()
        while self._subscribers > 0:
            try:
                events = await self._read(self.position, BATCH)
            except Exception:
                log.exception("event stream poll failed; retrying")
                events = []
            self.reads += 1
            if events:
                self._events.extend(events)
                self.position = int(events[-1]["id"])
                if len(self._events) > 2 * self.keep:
                    drop = len(self._events) - self.keep
                    self.floor = int(self._events[drop - 1]["id"])
                    del self._events[:drop]
                self._wake()
                if len(events) == BATCH:
                    continue
            await asyncio.sleep(self.poll)

    def _wake(self) -> None:
        woken, self._changed = self._changed, asyncio.Event()
        woken.set()
