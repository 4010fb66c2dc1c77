"""The background verifier of direct uploads: a thread in each server process.

A blob a client PUT straight into the object store (presigned URLs) must be
read back once, and its SHA-256 checked, before it is published under its
digest and any version may name it. That read lasts as long as the bytes
take to stream, so it happens here, not in the request that completed the
upload (``BlobService.complete_direct_upload`` queues it). Each round claims
a few pending uploads with a lease, as the webhook dispatcher claims
deliveries: two replicas never read the same upload at once, and the claim
of a process killed mid-read expires and another replica redoes it. While
an upload is being read its lease is renewed, however big it is.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from modelyard.service.blobs import BlobService
from modelyard.store.metadata.ports import VerificationRow

log = logging.getLogger("modelyard.events")
PRUNE_EVERY = 3600.0
"""Seconds between prunes of finished verifications (kept a day for clients)."""


class BlobVerifier:
    """Verifies queued direct uploads until stopped."""

    def __init__(
        self, service: BlobService, *, interval: float = 1.0, lease_s: float = 60.0
    ) -> None:
        self.service = service
        self.interval = interval
        self.lease_s = lease_s
        # Identifies this verifier's claims; unique per process start.
        self.worker = f"verifier-{uuid.uuid4().hex[:16]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reading: VerificationRow | None = None
        self._renewer: threading.Thread | None = None
        self._next_prune = 0.0

    def start(self) -> None:
        """Start the background threads (the rounds, and the lease renewer)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="modelyard-verifier", daemon=True
            )
            self._renewer = threading.Thread(
                target=self._renew_loop, name="modelyard-verifier-lease", daemon=True
            )
            self._thread.start()
            self._renewer.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop after the current upload (an unfinished one's lease expires)."""
        self._stop.set()
        for thread in (self._thread, self._renewer):
            if thread is not None:
                thread.join(timeout)
        self._thread = self._renewer = None

    def run_once(self) -> int:
        """One round; returns how many uploads were claimed."""
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_EVERY
            try:
                self.service.prune_verifications()
            except Exception:
                log.exception("pruning finished blob verifications failed")
        try:
            return self.service.verify_pending(
                self.worker, limit=1, lease_s=self.lease_s, renew=self._now_reading
            )
        finally:
            self._reading = None

    def _now_reading(self, row: VerificationRow) -> None:
        self._reading = row

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                # A database or store hiccup: the next round retries.
                log.exception("blob verifier round failed")
                busy = 0
            if not busy:
                self._stop.wait(self.interval)

    def _renew_loop(self) -> None:
        """Keep the lease of the upload being read alive: a third of the lease
        between renewals, so one late renewal never lets it lapse."""
        while not self._stop.wait(self.lease_s / 3):
            row = self._reading
            if row is None:
                continue
            try:
                self.service.renew_verification(row.upload_id, self.worker, self.lease_s)
            except Exception:
                log.exception("renewing the lease of a blob verification failed")
