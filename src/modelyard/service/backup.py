"""Backups of a registry (``modelyard backup``) and the blob half of a restore.

The consistency model, in the order a backup runs::

    hold       one write transaction under the exclusive collection lock:
               record a hold (``blob_holds``). Garbage collection's mark step
               takes the same lock and deletes nothing while a hold is live,
               so from here on no stored blob goes away.
    snapshot   a consistent copy of the metadata (SQLite's online backup,
               ``pg_dump``); writers are not blocked.
    blobs      copy every blob the store holds that the backup does not have
               yet (by digest: a second backup copies only new ones), each
               verified against its digest as it lands.
    publish    the snapshot file and its manifest, then ``latest``: a backup
               cut short leaves the previous one in force.
    release    drop the hold.

Every blob the snapshot lists is in the store when the blobs are copied:
blobs are immutable, a version commit refuses a blob garbage collection has
marked (``check_not_collected``), a collection that marked blobs before the
hold only marked blobs no manifest listed then, and none can be marked after.
Copying every stored blob rather than the snapshot's list costs the bytes of
uploads not yet committed (bounded by gc's grace period) and needs no second
reading of the snapshot. Only garbage collection waits for a backup, and only
for its blob copy; the hold expires by itself if the backup process dies.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.domain import identity as auth
from modelyard.domain.errors import InvalidInput, ModelyardError, NotFound
from modelyard.domain.identity import GLOBAL_SCOPE, Principal
from modelyard.service.fsck import copy_blob

if TYPE_CHECKING:
    from modelyard.service.registry import RegistryService
    from modelyard.store.blobs.base import BackupArea, BlobStore
    from modelyard.store.metadata.ports import RegistryTx

FORMAT = 1
"""Version of the backup layout (``manifest.json``'s ``format``)."""

DEFAULT_HOLD = 86400.0
"""Seconds a backup's hold on garbage collection lasts at most."""

COPY_THREADS = 4
"""Blobs copied at once (an object store answers better with several in flight)."""

_STAMP = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")
SNAPSHOT_FILES = {"sqlite": "metadata.sqlite", "postgresql": "metadata.pgdump"}


@dataclass(slots=True)
class BlobCopy:
    """What copying blobs between two stores did."""

    considered: int = 0
    copied: int = 0
    bytes: int = 0
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BackupReport:
    """One backup: where, which snapshot, what was copied."""

    destination: str
    stamp: str
    database: str
    revision: str | None
    blobs_stored: int
    blobs_copied: int
    bytes_copied: int
    blobs_failed: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON (the CLI's ``--json``, the manifest)."""
        return {
            "format": FORMAT,
            "destination": self.destination,
            "stamp": self.stamp,
            "database": self.database,
            "schema_revision": self.revision,
            "metadata": f"snapshots/{self.stamp}/{SNAPSHOT_FILES[self.database]}",
            "blobs_stored": self.blobs_stored,
            "blobs_copied": self.blobs_copied,
            "bytes_copied": self.bytes_copied,
            "blobs_failed": self.blobs_failed,
        }


def copy_blobs(source: BlobStore, target: BlobStore, digests: list[str]) -> BlobCopy:
    """Copy the ``digests`` the target lacks, verified as they land; a blob
    that cannot be copied (damaged in the source, say) is noted, not fatal."""
    result = BlobCopy(considered=len(digests))
    todo = target.missing(digests)

    def one(digest: str) -> tuple[str, int | None, str | None]:
        try:
            return digest, copy_blob(source, target, digest), None
        except (ModelyardError, FileNotFoundError) as exc:
            code = exc.code if isinstance(exc, ModelyardError) else "BLOB_MISSING"
            return digest, None, code

    with ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="blob-copy") as pool:
        for digest, size, error in pool.map(one, todo):
            if error is not None:
                result.failed[digest] = error
            else:
                result.copied += 1
                result.bytes += size or 0
    return result


def read_manifest(area: BackupArea, stamp: str | None = None) -> dict[str, Any]:
    """The manifest of snapshot ``stamp`` (default: the latest complete one)."""
    if stamp is None:
        stamp = (area.get_text("latest") or "").strip()
        if not stamp:
            raise NotFound(
                "no complete backup here", code="BACKUP_NOT_FOUND", details={"url": area.url}
            )
    if not _STAMP.match(stamp):
        raise InvalidInput(
            "malformed backup stamp", code="INVALID_BACKUP", details={"stamp": stamp}
        )
    text = area.get_text(f"snapshots/{stamp}/manifest.json")
    if text is None:
        raise NotFound("no such backup snapshot", code="BACKUP_NOT_FOUND", details={"stamp": stamp})
    manifest: dict[str, Any] = json.loads(text)
    if manifest.get("format") != FORMAT or manifest.get("database") not in SNAPSHOT_FILES:
        raise InvalidInput(
            "not a backup this release can read", code="INVALID_BACKUP", details={"stamp": stamp}
        )
    return manifest


class BackupService:
    """Backups of the registry's metadata and blobs into a backup area."""

    def __init__(self, registry: RegistryService) -> None:
        self.registry = registry

    def backup(
        self,
        area: BackupArea,
        *,
        actor: Principal,
        pg_bin: Path | None = None,
        hold_s: float = DEFAULT_HOLD,
    ) -> BackupReport:
        """Back the registry up into ``area`` (see the module docstring).
        Requires: instance admin."""
        auth.require_instance_admin(actor)
        if not hold_s > 0:
            raise InvalidInput("the hold is a number of seconds > 0", code="INVALID_INPUT")
        now = time.time_ns() // 1000
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now / 1e6)) + f".{now % 1_000_000:06d}Z"

        def hold(tx: RegistryTx) -> int:
            tx.lock_blob_collection(exclusive=True)
            return tx.add_blob_hold(f"backup {stamp} to {area.url}", hold_s)

        hold_id = self.registry.run_in_transaction(hold)
        try:
            with tempfile.TemporaryDirectory(prefix="modelyard-backup-") as tmp:
                snap_file = Path(tmp) / "metadata"
                info = self.registry.db.snapshot(snap_file, pg_bin=pg_bin)
                stored = [b.digest for b in self.registry.blobs.iter_blobs()]
                copied = copy_blobs(self.registry.blobs, area.blobs, stored)
                report = BackupReport(
                    destination=area.url,
                    stamp=stamp,
                    database=info.kind,
                    revision=info.revision,
                    blobs_stored=len(stored),
                    blobs_copied=copied.copied,
                    bytes_copied=copied.bytes,
                    blobs_failed=copied.failed,
                )
                area.put_file(f"snapshots/{stamp}/{SNAPSHOT_FILES[info.kind]}", snap_file)
            manifest = json.dumps(report.to_dict(), indent=2)
            area.put_text(f"snapshots/{stamp}/manifest.json", manifest)
            area.put_text("latest", stamp + "\n")
        finally:
            self.registry.run_in_transaction(lambda tx: tx.drop_blob_hold(hold_id))

        def done(tx: RegistryTx) -> None:
            payload = {k: v for k, v in report.to_dict().items() if k != "blobs_failed"}
            payload["blobs_failed"] = len(report.blobs_failed)
            tx.append_event(
                "registry.backed_up",
                actor=actor.name,
                namespace=GLOBAL_SCOPE,
                subject="registry",
                payload=payload,
            )

        self.registry.run_in_transaction(done)
        return report

    def restore_blobs(self, source: BlobStore, *, actor: Principal) -> BlobCopy:
        """Copy every blob the (restored) metadata lists from ``source`` into
        this registry's store, skipping those it has. Requires: instance admin."""
        auth.require_instance_admin(actor)
        with self.registry.db.read() as tx:
            listed = sorted(tx.listed_blobs())
        return copy_blobs(source, self.registry.blobs, listed)
