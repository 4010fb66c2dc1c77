"""The webhook dispatcher: a background thread in each server process.

Each tick it (1) advances the outbox cursor, queueing deliveries for matching
subscriptions, then (2) claims due deliveries with a lease and sends them in a
small thread pool, recording every attempt. All state is in the database:
any number of processes may run a dispatcher against one database, and a
process killed at any point leaves only leases that expire.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from modelyard.domain.webhooks import AttemptOutcome
from modelyard.events.sender import WebhookSender
from modelyard.service.webhooks import Claim, WebhookService

log = logging.getLogger("modelyard.events")
PRUNE_EVERY = 3600.0  # seconds between retention prunes of one dispatcher
FANOUT_BATCH = 500  # events fanned out per transaction at most
BURST_PAUSE = 0.1
"""Seconds between rounds while events trickle in (see :meth:`Dispatcher._loop`)."""


class Dispatcher:
    """Fans the outbox out to subscriptions and delivers, until stopped."""

    def __init__(
        self,
        service: WebhookService,
        sender: WebhookSender,
        *,
        interval: float = 1.0,
        concurrency: int = 4,
        prune_every: float = PRUNE_EVERY,
        on_attempt: Callable[[AttemptOutcome], None] | None = None,
    ) -> None:
        self.service = service
        self.on_attempt = on_attempt
        self.sender = sender
        self.interval = interval
        self.concurrency = concurrency
        self.prune_every = prune_every
        self._next_prune = 0.0  # time.monotonic(): the first round prunes
        # Whether the last round left work it could not take (a full batch of
        # events, as many due deliveries as it could send): go on at once.
        self._more = False
        # Identifies this dispatcher's claims; unique per process start.
        self.worker = f"dispatcher-{uuid.uuid4().hex[:16]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="modelyard-webhook")

    def start(self) -> None:
        """Start the background thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="modelyard-dispatcher", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop after the current round (in-flight attempts finish and are recorded)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.sender.close()

    def run_once(self) -> int:
        """One round: fan out, then claim and deliver (and, every ``prune_every``
        seconds, drop deliveries past their retention). Returns the work done."""
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + self.prune_every
            try:
                self.service.prune_deliveries()
            except Exception:
                # Retention is housekeeping: delivering goes on; next hour retries.
                log.exception("pruning old webhook deliveries failed")
        work = self.service.fan_out(batch=FANOUT_BATCH)
        claims = self.service.claim_due(worker=self.worker, limit=self.concurrency)
        if claims:
            list(self._pool.map(self._deliver, claims))
        self._more = work >= FANOUT_BATCH or len(claims) >= self.concurrency
        return work + len(claims)

    def _deliver(self, claim: Claim) -> None:
        outcome = self.sender.send(claim)
        if self.on_attempt is not None:
            self.on_attempt(outcome)
        try:
            self.service.record_attempt(claim, outcome)
        except Exception:
            # The lease expires and the delivery is retried: at-least-once.
            log.exception("could not record delivery %d", claim.delivery_id)

    def _loop(self) -> None:
        """Rounds until stopped: at once while work is left over, after
        :data:`BURST_PAUSE` after a round that took everything there was,
        after ``interval`` after an idle one.

        The pause groups a burst of writes: going on at once, the dispatcher
        followed each committed write with a cursor-advancing transaction of
        its own and two reads, as many statements as a version's creation
        itself (SQLite trace of an MLflow ``create_model_version``), which
        competed with the writers for the writer lock and the interpreter. A
        delivery is claimed in the round that fans its event out, so this adds
        at most the pause to its delay, and only during bursts.
        """
        while not self._stop.is_set():
            try:
                busy = self.run_once() > 0
            except Exception:
                log.exception("webhook dispatcher round failed; retrying")
                busy = False
                self._more = False
            if not busy:
                self._stop.wait(self.interval)
            elif not self._more:
                self._stop.wait(min(self.interval, BURST_PAUSE))
