"""Keeps a server process's token cache in step with changes made elsewhere.

Each server process caches token lookups (``service/identity.py``). A token
revoked, a user disabled or a role taken away through another replica (or
another worker, or the CLI) is written to the outbox in the same transaction;
this thread reads the outbox every ``auth_sync_interval`` seconds and drops
the cache when such an event appeared (:meth:`IdentityService.sync_with_outbox`).
The change then applies here within about one interval, not after the cache
entry's lifetime (``auth_cache_seconds``, which stays as a backstop should
the database be unreachable for a while).

Like the dispatcher it keeps no state another replica needs: each process
runs its own, reading the one outbox.
"""

from __future__ import annotations

import logging
import threading

from modelyard.service.identity import IdentityService

log = logging.getLogger("modelyard.events")


class CacheSync:
    """A background thread calling ``identity.sync_with_outbox`` until stopped."""

    def __init__(self, identity: IdentityService, *, interval: float) -> None:
        self.identity = identity
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Note the outbox position now, then follow it on a thread."""
        if self._thread is not None:
            return
        try:
            self.identity.sync_with_outbox()
        except Exception:
            # The database may be down at start-up; the thread retries.
            log.exception("reading the outbox for identity changes failed; retrying")
        self._thread = threading.Thread(target=self._loop, name="modelyard-cache-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (it is between reads or in one short query)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.identity.sync_with_outbox()
            except Exception:
                # Logged once per failure; entries still run out after
                # auth_cache_seconds, so a long outage cannot keep them.
                log.warning("reading the outbox for identity changes failed", exc_info=True)
