"""Checking a registry end to end (``modelyard fsck``), and repairing its blobs
from a backup.

What is checked::

    listed     every digest a version manifest or artifact index lists is in
               the blob store, at the size it is listed with
    hashed     every stored blob (listed or not) hashes to its name: an
               unlisted damaged blob is damage too, since a new upload of
               those bytes would be stored once, on top of it
    pointers   aliases, manifest rows, lineage and bundle pins point at
               versions that exist (``store/metadata/integrity.py``)

A repair copies each missing or damaged blob from a backup's blob store
(``modelyard backup``) through an ordinary writer, which verifies the digest
again on the way in; a damaged copy is removed first, because a store keeps
the bytes already under a digest. Pointers cannot be repaired from blobs:
they are reported, and a restore of the metadata is the way back.

Runs beside live servers: nothing is locked. A listed blob found missing is
checked again against the references of that moment, so one that garbage
collection removed after a hard delete during the check is not reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.domain import identity as auth
from modelyard.domain.errors import ModelyardError
from modelyard.domain.identity import GLOBAL_SCOPE, Principal

if TYPE_CHECKING:
    from modelyard.service.registry import RegistryService
    from modelyard.store.blobs.base import BlobStore
    from modelyard.store.metadata.ports import RegistryTx

HASH_THREADS = 4
"""Blobs hashed at once: enough to keep an object store's reads in flight."""


@dataclass(slots=True)
class BlobDamage:
    """One damaged blob: ``problem`` is ``missing`` (listed, not stored),
    ``size`` (stored at another size than listed, or listed at several),
    or ``corrupt`` (its bytes hash to something else)."""

    digest: str
    problem: str
    listed_sizes: list[int]
    stored_size: int | None
    actual_digest: str | None = None
    used_by: list[str] = field(default_factory=list)
    repaired: bool = False
    repair_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The damage as JSON."""
        return {
            "digest": self.digest,
            "problem": self.problem,
            "listed_sizes": self.listed_sizes,
            "stored_size": self.stored_size,
            "actual_digest": self.actual_digest,
            "used_by": self.used_by,
            "repaired": self.repaired,
            "repair_error": self.repair_error,
        }


@dataclass(slots=True)
class FsckReport:
    """What a check found (and, with a backup, repaired)."""

    listed: int = 0
    stored: int = 0
    hashed: int = 0
    bytes_hashed: int = 0
    unlisted: int = 0
    # Listed by a draft that waits for a direct upload's verification, not
    # stored yet: not damage (issue 13).
    pending: int = 0
    blobs: list[BlobDamage] = field(default_factory=list)
    pointers: list[dict[str, Any]] = field(default_factory=list)
    repair_source: str | None = None

    @property
    def repaired(self) -> int:
        """Damaged blobs put right from the backup."""
        return sum(1 for d in self.blobs if d.repaired)

    @property
    def ok(self) -> bool:
        """True when nothing is left damaged (repaired blobs count as fixed)."""
        return not self.pointers and all(d.repaired for d in self.blobs)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON (the CLI's ``--json``)."""
        return {
            "ok": self.ok,
            "blobs_listed": self.listed,
            "blobs_stored": self.stored,
            "blobs_hashed": self.hashed,
            "bytes_hashed": self.bytes_hashed,
            "blobs_unlisted": self.unlisted,
            "blobs_pending": self.pending,
            "damaged_blobs": [d.to_dict() for d in self.blobs],
            "broken_pointers": self.pointers,
            "repaired": self.repaired,
            "repair_source": self.repair_source,
        }


def hash_blob(store: BlobStore, digest: str) -> tuple[str, int]:
    """(SHA-256, size) of the stored bytes of ``digest``, streamed."""
    h = hashlib.sha256()
    n = 0
    for chunk in store.iter_range(digest, chunk_size=4 << 20):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def copy_blob(source: BlobStore, target: BlobStore, digest: str) -> int:
    """Copy one blob between stores, verified on the way in; its size."""
    size = source.size_of(digest)
    writer = target.writer(size)
    try:
        for chunk in source.iter_range(digest, chunk_size=4 << 20):
            writer.write(chunk)
        writer.commit(expected_digest=digest, expected_size=size)
    except BaseException:
        writer.abort()
        raise
    return size or 0


class FsckService:
    """Integrity checks over the registry's metadata and blob stores."""

    def __init__(self, registry: RegistryService) -> None:
        self.registry = registry

    def check(
        self,
        *,
        actor: Principal,
        repair_from: BlobStore | None = None,
        repair_source: str | None = None,
        verify_bytes: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> FsckReport:
        """Check every listed and stored blob and every pointer; with
        ``repair_from`` (a backup's blob store, named ``repair_source`` in the
        report), copy back what is missing or damaged.

        ``verify_bytes=False`` skips hashing (sizes and presence only).
        ``progress`` is called with the number of blobs hashed so far.
        Requires: instance admin.
        """
        auth.require_instance_admin(actor)
        store = self.registry.blobs
        report = FsckReport(repair_source=repair_source)
        with self.registry.db.read() as tx:
            listed = tx.listed_blobs()
            waiting = tx.waiting_digests()
            report.pointers = tx.broken_pointers()
        report.listed = len(listed)
        stored = {b.digest: b.size for b in store.iter_blobs()}
        report.stored = len(stored)
        report.unlisted = sum(1 for d in stored if d not in listed)
        hashes = self._hash_all(list(stored), progress, report) if verify_bytes else {}
        damage: dict[str, BlobDamage] = {}
        for digest, here in stored.items():
            actual = hashes.get(digest, digest)
            if actual is None and digest in listed:  # gone meanwhile: judged below
                damage[digest] = BlobDamage(digest, "missing", sorted(listed[digest]), None)
            elif actual is not None and actual != digest:
                damage[digest] = BlobDamage(
                    digest, "corrupt", sorted(listed.get(digest, ())), here, actual_digest=actual
                )
        for digest, sizes in listed.items():
            at = stored.get(digest)
            if at is None and digest in waiting:
                report.pending += 1
            elif at is None:
                damage[digest] = BlobDamage(digest, "missing", sorted(sizes), None)
            elif digest not in damage and (len(sizes) > 1 or at not in sizes):
                damage[digest] = BlobDamage(digest, "size", sorted(sizes), at)
                if verify_bytes:
                    # The bytes hash to their name, so the size is theirs: the
                    # metadata is what is wrong, and no blob copy can fix it.
                    damage[digest].repair_error = "the metadata lists a size the bytes do not have"
        self._drop_unlisted_missing(damage)
        if damage:
            with self.registry.db.read() as tx:
                users = tx.blob_users(list(damage))
            for digest, d in damage.items():
                d.used_by = users.get(digest, [])
        report.blobs = sorted(damage.values(), key=lambda d: (d.problem, d.digest))
        if repair_from is not None and report.blobs:
            self._repair(report, repair_from, actor)
        return report

    def _hash_all(
        self, digests: list[str], progress: Callable[[int], None] | None, report: FsckReport
    ) -> dict[str, str | None]:
        """digest -> what its bytes hash to (None: deleted while we looked)."""
        store = self.registry.blobs

        def one(digest: str) -> tuple[str, str | None, int]:
            try:
                actual, n = hash_blob(store, digest)
            except (FileNotFoundError, ModelyardError):
                return digest, None, 0
            return digest, actual, n

        out: dict[str, str | None] = {}
        with ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="fsck-hash") as pool:
            for digest, actual, n in pool.map(one, digests):
                out[digest] = actual
                if actual is not None:
                    report.hashed += 1
                    report.bytes_hashed += n
                    if progress is not None:
                        progress(report.hashed)
        return out

    def _drop_unlisted_missing(self, damage: dict[str, BlobDamage]) -> None:
        """Forget blobs found missing that nothing lists any more (a hard
        delete and a collection ran while we looked)."""
        missing = [d for d, x in damage.items() if x.problem == "missing"]
        if not missing:
            return
        with self.registry.db.read() as tx:
            still = tx.referenced_digests(missing)
        for digest in missing:
            if digest not in still:
                del damage[digest]

    def _repair(self, report: FsckReport, source: BlobStore, actor: Principal) -> None:
        store = self.registry.blobs
        for d in report.blobs:
            if d.repair_error is not None:
                continue  # not a matter of bytes
            try:
                if not source.exists(d.digest):
                    d.repair_error = "not in the backup"
                    continue
                if d.stored_size is not None:
                    # A store keeps the bytes already under a digest: the
                    # damaged copy has to go before the good one can land.
                    store.delete(d.digest)
                copy_blob(source, store, d.digest)
            except ModelyardError as exc:
                d.repair_error = f"{exc.code}: {exc.message}"
                continue
            except OSError as exc:  # the backup's copy went away meanwhile
                d.repair_error = f"{type(exc).__name__}: {exc.strerror or exc}"
                continue
            d.repaired = True
        repaired = [d.digest for d in report.blobs if d.repaired]
        if not repaired:
            return

        def op(tx: RegistryTx) -> None:
            tx.append_event(
                "blobs.repaired",
                actor=actor.name,
                namespace=GLOBAL_SCOPE,
                subject="blobs",
                payload={"digests": repaired, "source": report.repair_source},
            )

        self.registry.run_in_transaction(op)
