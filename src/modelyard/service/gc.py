"""Garbage collection of the blob store: blobs no manifest lists, and uploads
abandoned past a grace period, on any backend.

A collection is three steps, so that it never races a version commit::

    plan      list the store; keep blobs older than the grace period that no
              manifest lists (read transactions; slow, holds no lock)
    mark      one write transaction under the exclusive collection lock:
              re-check that no manifest lists them (a commit may have landed
              since the plan) and record the rest as being deleted
    finish    delete those blobs from the store (no transaction open), then
              drop the records; sweep abandoned uploads; write ``blobs.collected``

A version commit takes the same lock, shared, in its own transaction and
refuses a manifest naming a blob recorded as being deleted
(``service/blobs.py`` ``check_not_collected``). Whichever transaction comes
second sees the first: either the commit's manifest makes the re-check keep
the blob, or the commit sees the record and answers ``BLOB_MISSING`` (the
client uploads the bytes again). No version can list a deleted blob.

The grace period protects what the plan cannot see: a blob just uploaded for
a version whose commit has not started yet (the upload renews the age of
bytes already stored, on a local store). A record left by a collection that
died between mark and finish is completed by the next one.

A backup in progress holds collection off (``blob_holds``, taken under the
exclusive lock): mark refuses with ``GC_HELD`` while a hold is live, so the
blobs a backup's metadata snapshot lists stay until it has copied them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.domain import identity as auth
from modelyard.domain.errors import Conflict, InvalidInput
from modelyard.domain.identity import GLOBAL_SCOPE, Principal

if TYPE_CHECKING:
    from modelyard.service.registry import RegistryService
    from modelyard.store.metadata.ports import RegistryTx

DEFAULT_GRACE = 3600.0
"""Seconds a blob or upload is left alone after it was stored or started."""

_BATCH = 1000
"""Digests per reference check in the plan."""


@dataclass(frozen=True, slots=True)
class GcPlan:
    """What a collection means to delete: digest -> size (unreferenced blobs
    past the grace period, and deletions an earlier run left unfinished)."""

    candidates: dict[str, int]
    leftover: dict[str, int]
    scanned: int
    grace_s: float


@dataclass(frozen=True, slots=True)
class GcReport:
    """What a collection freed (or, with ``dry_run``, would free)."""

    dry_run: bool
    scanned: int
    blobs: int
    bytes: int
    kept: int
    uploads: int | None
    digests: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON (the CLI's ``--json``)."""
        return {
            "dry_run": self.dry_run,
            "scanned": self.scanned,
            "blobs_freed": self.blobs,
            "bytes_freed": self.bytes,
            "kept_by_new_references": self.kept,
            "uploads_swept": self.uploads,
            "digests": self.digests,
        }


class GcService:
    """Garbage collection over the registry's metadata and blob stores."""

    def __init__(self, registry: RegistryService) -> None:
        self.registry = registry

    def collect(
        self, *, actor: Principal, grace_s: float = DEFAULT_GRACE, dry_run: bool = False
    ) -> GcReport:
        """Delete unreferenced blobs and abandoned uploads older than ``grace_s``
        seconds (with ``dry_run``: only report what would go).

        Requires: instance admin.
        """
        plan = self.plan(actor=actor, grace_s=grace_s)
        if dry_run:
            doomed = {**plan.candidates, **plan.leftover}
            return GcReport(
                dry_run=True,
                scanned=plan.scanned,
                blobs=len(doomed),
                bytes=sum(doomed.values()),
                kept=0,
                uploads=None,
                digests=sorted(doomed),
            )
        marked = self.mark(plan, actor=actor)
        return self.finish(plan, marked, actor=actor)

    def plan(self, *, actor: Principal, grace_s: float = DEFAULT_GRACE) -> GcPlan:
        """List the store and pick the blobs no manifest lists, stored more than
        ``grace_s`` seconds ago. Reads only. Requires: instance admin."""
        auth.require_instance_admin(actor)
        if not grace_s >= 0:
            raise InvalidInput("the grace period is a number of seconds >= 0", code="INVALID_INPUT")
        cutoff = time.time() - grace_s
        db = self.registry.db
        with db.read() as tx:
            leftover = tx.pending_blob_deletions()
        candidates: dict[str, int] = {}
        scanned = 0
        batch: dict[str, int] = {}

        def check(batch: dict[str, int]) -> None:
            with db.read() as tx:
                used = tx.referenced_digests(list(batch))
            candidates.update((d, n) for d, n in batch.items() if d not in used)

        for blob in self.registry.blobs.iter_blobs():
            scanned += 1
            if blob.stored_at > cutoff or blob.digest in leftover:
                continue
            batch[blob.digest] = blob.size
            if len(batch) >= _BATCH:
                check(batch)
                batch = {}
        if batch:
            check(batch)
        return GcPlan(candidates, leftover, scanned, grace_s)

    def mark(self, plan: GcPlan, *, actor: Principal) -> dict[str, int]:
        """Re-check the plan's candidates under the exclusive collection lock and
        record those still unlisted as being deleted; return them (digest ->
        size), with the leftovers of an earlier run. Requires: instance admin."""
        auth.require_instance_admin(actor)

        def op(tx: RegistryTx) -> dict[str, int]:
            tx.lock_blob_collection(exclusive=True)
            holds = tx.active_blob_holds()
            if holds:
                # A backup is copying the blobs its snapshot lists (service/backup.py).
                raise Conflict(
                    "a backup is in progress; garbage collection deletes nothing until it ends",
                    code="GC_HELD",
                    details={"holders": [h for h, _ in holds]},
                )
            used = tx.referenced_digests(list(plan.candidates))
            doomed = {d: n for d, n in plan.candidates.items() if d not in used}
            if doomed:
                tx.mark_blobs_deleted(doomed)
            return doomed

        doomed = self.registry.run_in_transaction(op) if plan.candidates else {}
        return {**plan.leftover, **doomed}

    def finish(self, plan: GcPlan, marked: dict[str, int], *, actor: Principal) -> GcReport:
        """Delete the marked blobs from the store, drop their records, sweep
        abandoned uploads and write one ``blobs.collected`` event.
        Requires: instance admin."""
        auth.require_instance_admin(actor)
        store = self.registry.blobs
        for digest in marked:
            store.delete(digest)  # outside any transaction: it is I/O
        # Direct uploads queued for the background verifier keep their staged
        # bytes however long they wait; live uploads renew their age with
        # every part they send (store.blobs), so only the abandoned go.
        with self.registry.db.read() as tx:
            verifying = tx.pending_verification_uploads()
        uploads = store.clean_stale_uploads(plan.grace_s, keep=verifying)
        kept = len(plan.candidates) - (len(marked) - len(plan.leftover))
        report = GcReport(
            dry_run=False,
            scanned=plan.scanned,
            blobs=len(marked),
            bytes=sum(marked.values()),
            kept=kept,
            uploads=uploads,
            digests=sorted(marked),
        )

        def op(tx: RegistryTx) -> None:
            if marked:
                tx.clear_blob_deletions(list(marked))
            tx.append_event(
                "blobs.collected",
                actor=actor.name,
                namespace=GLOBAL_SCOPE,
                subject="blobs",
                payload={k: v for k, v in report.to_dict().items() if k != "digests"},
            )

        if marked or uploads:
            self.registry.run_in_transaction(op)
        return report
