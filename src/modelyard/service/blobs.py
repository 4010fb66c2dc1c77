"""The blob use case: who may upload, what is missing, streamed verified
uploads, existence answers and reading a version's file bytes.

Every door goes through here (the REST routes in ``api/v1/blobs.py`` and the
embedded SDK alike), so the size limit, the digest rules and the permission
are decided once. An upload is driven by its caller, chunk by chunk, so an
event loop can await the writer's backlog while a plain thread just writes::

    upload = blobs.begin_upload(actor, digest=d, declared_size=n)
    try:
        for chunk in body:
            upload.write(chunk)          # refuses bytes past max_blob_size
        stored = upload.commit()         # hash and size checked, fsynced
    except BaseException:
        upload.abort()
        raise

Blobs are shared by content across namespaces, but knowing a digest is not
enough to use or even see its bytes (the OCI registry "mount" rule): a caller
sees a stored digest only if it uploaded those bytes itself or can already
read a version whose manifest lists them. Everything else is answered as if
the blob were absent: ``missing`` lists it, ``HEAD`` says 404, a manifest
naming it fails with ``BLOB_MISSING``, and uploading the bytes (stored once)
records the caller as an uploader. Principals that read every namespace
(instance admins, and everyone when auth is off) see every stored blob.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelyard.domain.entities import FileEntry, Version
from modelyard.domain.errors import (
    IntegrityError,
    InvalidInput,
    ModelyardError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    StorageUnavailable,
)
from modelyard.domain.identity import GLOBAL_SCOPE, Permission, Principal
from modelyard.domain.names import validate_digest
from modelyard.domain.references import Reference
from modelyard.service import pending_versions
from modelyard.service.views import ProductionView
from modelyard.store.blobs.base import DirectTransfers
from modelyard.store.metadata.ports import FAILED, VERIFIED, VerificationRow

if TYPE_CHECKING:
    from modelyard.service.registry import RegistryService
    from modelyard.store.blobs.base import BlobStore, BlobWriter, StagedUpload
    from modelyard.store.metadata.ports import RegistryTx

log = logging.getLogger(__name__)

VERIFY_ATTEMPTS = 5
"""Claims of one verification that met an unreachable store before it is
given up as failed (``STORAGE_UNAVAILABLE``); the client uploads again."""


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """The outcome of an upload: the digest the bytes are stored under, their
    size, whether the caller could not see them before (``created``), and
    whether they are verified and published yet (``verified``; False: a
    direct upload the background verifier has still to read back)."""

    digest: str
    size: int
    created: bool
    verified: bool = True


@dataclass(frozen=True, slots=True)
class DirectUploadStatus:
    """Where a direct upload's verification stands: ``pending``, ``verified``
    (published under ``digest``) or ``failed`` (``error``: the domain error's
    code, message and details; the staged bytes were removed)."""

    upload_id: str
    state: str
    digest: str
    size: int
    error: dict[str, Any] | None


class Upload:
    """One streamed upload in progress (see the module docstring). Call
    :meth:`commit` once, or :meth:`abort`."""

    def __init__(
        self,
        writer: BlobWriter,
        *,
        digest: str | None,
        declared_size: int | None,
        limit: int,
        existed: bool,
        on_commit: Callable[[str], None],
    ) -> None:
        self._writer = writer
        self._digest = digest
        self._declared = declared_size
        self._limit = limit
        self._existed = existed
        self._on_commit = on_commit

    @property
    def size(self) -> int:
        """Bytes received so far."""
        return self._writer.size

    def ready(self) -> Future[None] | None:
        """None if :meth:`write` takes a chunk without blocking, else a future to
        wait on first (an event loop awaits it instead of blocking)."""
        return self._writer.ready()

    def write(self, chunk: bytes) -> None:
        """Append bytes; ``PAYLOAD_TOO_LARGE`` once past the configured limit."""
        self._writer.write(chunk)
        if self._writer.size > self._limit:
            raise _too_large(self._limit)

    def commit(self) -> StoredBlob:
        """Verify (digest and declared size) and publish the blob, and record the
        caller as its uploader. Blocks for the fsync: an event loop runs it in
        a thread."""
        stored = self._writer.commit(expected_digest=self._digest, expected_size=self._declared)
        self._on_commit(stored)
        return StoredBlob(stored, self._writer.size, not self._existed)

    def abort(self) -> None:
        """Discard what was written."""
        self._writer.abort()


class BlobService:
    """Content-addressed blobs, shared by content across namespaces.

    An upload names no namespace, so it needs write permission on some
    namespace; the version whose manifest lists a blob is checked when it is
    created (:func:`check_manifest`). Existence answers follow the mount rule
    (module docstring): a stored blob the caller may not see is absent to it.
    """

    def __init__(
        self,
        registry: RegistryService,
        *,
        max_blob_size: int,
        direct_transfers: bool = True,
        url_ttl: int = 3600,
        verify_in_background: bool = True,
    ) -> None:
        self.registry = registry
        self.store: BlobStore = registry.blobs
        self.max_blob_size = max_blob_size
        # Presigned URLs, where the store gives them and the operator allows
        # them (a store the clients cannot reach: bytes go through the server).
        store = registry.blobs
        self.direct: DirectTransfers | None = (
            store if direct_transfers and isinstance(store, DirectTransfers) else None
        )
        self.url_ttl = url_ttl
        # Reading a direct upload back takes as long as its bytes take to
        # stream: off the request, in the background verifier (issue 13).
        self.verify_in_background = verify_in_background

    # -- rules --------------------------------------------------------------

    def authorize(self, actor: Principal) -> None:
        """Check that the caller may upload blobs. Requires: write on some namespace."""
        if not actor.writes_somewhere:
            raise PermissionDenied(
                f"{actor.name!r} may not write in any namespace",
                code="PERMISSION_DENIED",
                details={"permission": Permission.WRITE.value},
            )

    @staticmethod
    def check_digest(digest: str) -> str:
        """The one digest rule for every blob request (``INVALID_DIGEST``)."""
        return validate_digest(digest)

    def check_size(self, declared: int | None) -> int | None:
        """Refuse a declared size over ``max_blob_size`` before reading a byte."""
        if declared is not None and declared > self.max_blob_size:
            raise _too_large(self.max_blob_size)
        return declared

    # -- use cases ------------------------------------------------------------

    def missing(self, digests: Sequence[str], *, actor: Principal) -> list[str]:
        """Which of these digests still need uploading by this caller: those not
        stored, and those it may not see (input order, no repeats).

        Requires: write on some namespace.
        """
        self.authorize(actor)
        if len(digests) > self.registry.max_files:
            raise InvalidInput("too many digests in one request", code="INVALID_INPUT")
        for d in digests:
            self.check_digest(d)
        absent = self.store.missing(digests)
        if actor.reads_everything:
            return absent
        gone = set(absent)
        seen = visible_digests(self.registry, [d for d in digests if d not in gone], actor)
        return [d for d in dict.fromkeys(digests) if d not in seen]

    def stored_size(self, digest: str, *, actor: Principal) -> int | None:
        """The size of the stored blob, or None if it is not stored or the
        caller may not see it. Requires: write on some namespace."""
        self.authorize(actor)
        self.check_digest(digest)
        size = self.store.size_of(digest)
        if size is None or not visible_digests(self.registry, [digest], actor):
            return None
        return size

    def begin_upload(
        self, actor: Principal, *, digest: str | None = None, declared_size: int | None = None
    ) -> Upload:
        """Start a streamed upload, checked against ``digest`` (if named) and
        ``declared_size`` (if known) at commit. Requires: write on some namespace."""
        self.authorize(actor)
        if digest is not None:
            self.check_digest(digest)
        self.check_size(declared_size)
        existed = (
            digest is not None
            and self.store.exists(digest)
            and bool(visible_digests(self.registry, [digest], actor))
        )
        return Upload(
            self.store.writer(declared_size),
            digest=digest,
            declared_size=declared_size,
            limit=self.max_blob_size,
            existed=existed,
            on_commit=lambda stored: self.record_upload(stored, actor=actor),
        )

    def begin_unrecorded_upload(self, *, declared_size: int | None = None) -> Upload:
        """Start storing bytes no caller is recorded for, so no manifest may
        name them by digest (the mount rule): intermediate pieces such as
        the parts of a multipart upload, joined later by an authorized caller.
        The caller of this method has checked the authority to send them."""
        self.check_size(declared_size)
        return Upload(
            self.store.writer(declared_size),
            digest=None,
            declared_size=declared_size,
            limit=self.max_blob_size,
            existed=False,
            on_commit=lambda stored: None,
        )

    def record_upload(self, digest: str, *, actor: Principal) -> None:
        """Note that ``actor`` holds the bytes of ``digest`` (after they were
        stored and verified). Principals that see every blob need no record.
        Draft versions waiting on this caller's upload of the digest (a direct
        upload that failed verification, say) are released in the same
        transaction (``service/pending_versions.py``)."""

        if actor.reads_everything:
            # No record to write: a write transaction only if a draft waits.
            with self.registry.db.read() as rtx:
                if not rtx.versions_waiting_on(digest, actor.name):
                    return

        def op(tx: RegistryTx) -> None:
            if not actor.reads_everything:
                tx.record_blob_upload(digest, actor.name)
            pending_versions.release_in_tx(tx, digest, actor.name)

        self.registry.run_in_transaction(op)

    def upload(
        self,
        chunks: Iterable[bytes],
        *,
        actor: Principal,
        digest: str | None = None,
        size: int | None = None,
    ) -> StoredBlob:
        """A whole upload from a blocking caller (the embedded SDK)."""
        up = self.begin_upload(actor, digest=digest, declared_size=size)
        try:
            for chunk in chunks:
                up.write(chunk)  # blocks while the writer's backlog is full
            return up.commit()
        except BaseException:
            up.abort()
            raise

    # -- direct transfers: bytes between the client and the store ------------

    def offer_direct_upload(
        self, actor: Principal, *, size: int, digest: str | None = None
    ) -> StagedUpload | None:
        """A presigned URL to PUT ``size`` bytes straight into the store, or
        None when they go through the server (a store without presigned URLs,
        direct transfers turned off, or a blob too big for one PUT).
        Requires: write on some namespace."""
        self.authorize(actor)
        if digest is not None:
            self.check_digest(digest)
        if not isinstance(size, int) or size < 0:
            raise InvalidInput("size must be a whole number of bytes", code="INVALID_INPUT")
        self.check_size(size)
        if self.direct is None:
            return None
        return self.direct.presign_upload(size, self.url_ttl)

    def complete_direct_upload(
        self, actor: Principal, upload_id: str, *, digest: str, size: int | None = None
    ) -> StoredBlob:
        """Take a direct upload the client says is complete.

        Its size is checked at once (a multipart upload is assembled first);
        the SHA-256 needs every byte read back once. Inline (the operator's
        choice) that happens here; by default the upload is queued for the
        background verifier (:meth:`verify_pending`) and the answer says
        ``verified=False``: the client asks :meth:`direct_upload_status`
        until the blob is published. Either way no version may name the
        digest before it is verified, and the caller is recorded as its
        uploader only then. Requires: write on some namespace."""
        self.authorize(actor)
        self.check_digest(digest)
        self.check_size(size)
        direct = self.direct
        if direct is None:
            # No upload can have been offered: as for an id nobody was given.
            raise NotFound(
                "this server takes no direct uploads",
                code="UPLOAD_NOT_FOUND",
                details={"upload_id": upload_id},
            )
        existed = self.store.exists(digest) and bool(
            visible_digests(self.registry, [digest], actor)
        )
        if not self.verify_in_background:
            stored = direct.commit_staged(upload_id, digest, size)
            self.record_upload(stored, actor=actor)
            stored_size = self.store.size_of(stored)
            return StoredBlob(stored, stored_size if stored_size is not None else 0, not existed)
        with self.registry.db.read() as tx:
            queued = tx.blob_verification(upload_id)
        if queued is not None:
            # Completed before (a retry): the same answer, never a second queue entry.
            return self._queued_answer(queued, actor, existed)
        actual = direct.assemble_staged(upload_id, size)  # removes what it refuses
        if existed:
            # The caller may already name these bytes: nothing to prove.
            direct.discard_staged(upload_id)
            return StoredBlob(digest, actual, False)

        def op(tx: RegistryTx) -> VerificationRow:
            prior = tx.blob_verification(upload_id)
            if prior is not None:
                return prior
            tx.add_blob_verification(upload_id, digest, actual, actor.name)
            row = tx.blob_verification(upload_id)
            assert row is not None
            return row

        return self._queued_answer(self.registry.run_in_transaction(op), actor, existed)

    def _queued_answer(self, row: VerificationRow, actor: Principal, existed: bool) -> StoredBlob:
        if row.uploader != actor.name and not actor.reads_everything:
            raise NotFound(
                "no such direct upload",
                code="UPLOAD_NOT_FOUND",
                details={"upload_id": row.upload_id},
            )
        if row.state == FAILED:
            raise _failure(row)
        return StoredBlob(row.digest, row.size, not existed, verified=row.state == VERIFIED)

    def direct_upload_status(self, actor: Principal, upload_id: str) -> DirectUploadStatus:
        """Where the verification of a completed direct upload stands. Only its
        uploader (or an instance-wide reader) sees it; to anyone else it is
        ``UPLOAD_NOT_FOUND``. Requires: write on some namespace."""
        self.authorize(actor)
        with self.registry.db.read() as tx:
            row = tx.blob_verification(upload_id)
        if row is None or (row.uploader != actor.name and not actor.reads_everything):
            raise NotFound(
                "no such direct upload", code="UPLOAD_NOT_FOUND", details={"upload_id": upload_id}
            )
        error = None if row.state != FAILED else _failure(row).to_dict()
        return DirectUploadStatus(row.upload_id, row.state, row.digest, row.size, error)

    def pending_direct_uploads(self) -> list[str]:
        """Upload ids still waiting for the verifier: their staged bytes stay
        (garbage collection's sweep of abandoned uploads spares them)."""
        with self.registry.db.read() as tx:
            return tx.pending_verification_uploads()

    def verify_pending(
        self,
        worker: str,
        *,
        limit: int = 2,
        lease_s: float = 300.0,
        renew: Callable[[VerificationRow], None] | None = None,
    ) -> int:
        """One round of the background verifier: claim up to ``limit`` pending
        direct uploads (a lease of ``lease_s`` seconds keeps other replicas
        off them) and verify each: read back, SHA-256, publish under the
        digest and record the uploader; or, if the bytes do not hash to the
        digest (or are gone), remove them, mark the upload failed and write a
        ``blob.verification_failed`` event. An unreachable store leaves the
        claim to expire and be retried, up to :data:`VERIFY_ATTEMPTS` claims.
        ``renew`` is told which upload is being read (the caller keeps its
        lease alive meanwhile). Returns how many were claimed."""
        direct = self.direct
        if direct is None:
            return 0
        claimed = self.registry.run_in_transaction(
            lambda tx: tx.claim_blob_verifications(lease_s=lease_s, worker=worker, limit=limit)
        )
        for row in claimed:
            if renew is not None:
                renew(row)
            try:
                direct.publish_staged(row.upload_id, row.digest)
            except StorageUnavailable as exc:
                if row.attempts < VERIFY_ATTEMPTS:
                    log.warning("verifying direct upload %s: %s; retried", row.upload_id, exc)
                    continue
                self._fail(row, exc, worker)
            except ModelyardError as exc:
                self._fail(row, exc, worker)
            else:
                self._verified(row, worker)
        return len(claimed)

    def _verified(self, row: VerificationRow, worker: str) -> None:
        def op(tx: RegistryTx) -> None:
            if tx.finish_blob_verification(
                row.upload_id, worker=worker, state=VERIFIED, detail=None
            ):
                tx.record_blob_upload(row.digest, row.uploader)
                # Drafts waiting on these bytes become ready in this same
                # transaction (exactly once: only the claim's holder gets here).
                pending_versions.release_in_tx(tx, row.digest, row.uploader)

        self.registry.run_in_transaction(op)

    def _fail(self, row: VerificationRow, exc: ModelyardError, worker: str) -> None:
        detail = json.dumps(exc.to_dict())
        # The uploader may hold verified bytes of this digest from another
        # upload (a draft made while a second upload of it was pending waits
        # on that one). Those are what its drafts wait for: they are released,
        # not failed. Failed, they stayed drafts for good, since uploading the
        # bytes again then finds them stored and proves nothing anew.
        try:
            stored = self.store.exists(row.digest)
        except StorageUnavailable:
            stored = False  # unknown: fail them, as before; a right upload releases them

        def op(tx: RegistryTx) -> None:
            if not tx.finish_blob_verification(
                row.upload_id, worker=worker, state=FAILED, detail=detail
            ):
                return  # the claim was lost: its new holder reports the outcome
            tx.append_event(
                "blob.verification_failed",
                actor=row.uploader,
                namespace=GLOBAL_SCOPE,
                subject="blobs",
                payload={
                    "upload_id": row.upload_id,
                    "digest": row.digest,
                    "size": row.size,
                    "error": exc.to_dict(),
                },
            )
            if stored and row.digest in tx.blobs_uploaded_by(row.uploader, [row.digest]):
                tx.lock_blob_collection(exclusive=False)
                if not tx.blobs_being_deleted([row.digest]):
                    pending_versions.release_in_tx(tx, row.digest, row.uploader)
                    return
            # Drafts waiting on these bytes stay drafts, their file marked failed.
            pending_versions.fail_in_tx(tx, row.digest, row.uploader, exc, row.upload_id)

        self.registry.run_in_transaction(op)

    def prune_verifications(self, *, older_than_s: float = 86400.0) -> int:
        """Forget verified and failed direct uploads older than ``older_than_s``."""
        return self.registry.run_in_transaction(
            lambda tx: tx.prune_blob_verifications(older_than_s=older_than_s)
        )

    def renew_verification(self, upload_id: str, worker: str, lease_s: float) -> bool:
        """Extend this worker's lease on a verification it is still reading."""
        return self.registry.run_in_transaction(
            lambda tx: tx.renew_blob_verification(upload_id, worker=worker, lease_s=lease_s)
        )

    def download_url(self, digest: str, disposition: str) -> str | None:
        """A presigned URL reading a blob straight from the store, or None.
        Callers check the read permission first (``get_file``)."""
        if self.direct is None:
            return None
        return self.direct.presign_download(digest, self.url_ttl, disposition)

    def open_file(
        self, ref: str | Reference, path: str, *, actor: Principal
    ) -> tuple[Version, FileEntry, Iterator[bytes]]:
        """One file of a version and its bytes. Requires: as ``get_version``."""
        version, entry = self.registry.get_file(ref, path, actor=actor)
        return version, entry, self.store.iter_range(entry.digest)


def visible_digests(
    registry: RegistryService, digests: Sequence[str], actor: Principal
) -> set[str]:
    """The subset of ``digests`` that ``actor`` may see, whether stored or not:
    those it uploaded, and those a version it can read lists (the mount rule)."""
    if actor.reads_everything:
        return set(digests)
    if not digests:
        return set()
    # One read transaction, and the caller's visibility filter built once in
    # it, for the whole list (a manifest can name thousands of digests).
    with registry.db.read() as tx:
        seen = tx.blobs_uploaded_by(actor.name, digests)
        rest = [d for d in dict.fromkeys(digests) if d not in seen]
        if rest:
            node = ProductionView(tx).visibility(actor, "versions")
            seen.update(d for d in rest if tx.digest_visible(d, node))
    return seen


def check_manifest(
    registry: RegistryService,
    files: Sequence[FileEntry],
    *,
    actor: Principal,
    allow_pending: bool = False,
) -> list[FileEntry]:
    """Every file's blob is stored with the declared size and ``actor`` may use
    it (the mount rule); else ``BLOB_MISSING`` (a blob the caller may not see
    is missing to it, never reported otherwise) or ``SIZE_MISMATCH``.

    With ``allow_pending``, a blob the caller itself sent as a direct upload
    that the background verifier has not read back yet is accepted too: the
    files naming such blobs are returned (the version waits on them as a
    draft, ``service/pending_versions.py``). Anyone else's pending upload of
    the digest does not count.

    Checked before the write transaction (it reads the store): blobs are
    immutable once stored, and the one way one goes, garbage collection, is
    caught inside the transaction by :func:`check_not_collected`.
    """
    sizes = {f.digest: registry.blobs.size_of(f.digest) for f in files}
    stored = [d for d, size in sizes.items() if size is not None]
    usable = visible_digests(registry, stored, actor)
    unusable = [f for f in files if sizes[f.digest] is None or f.digest not in usable]
    pending: dict[str, int] = {}
    if unusable and allow_pending:
        uploader = None if actor.reads_everything else actor.name
        with registry.db.read() as tx:
            pending = pending_versions.pending_files(tx, unusable, uploader)
    waiting: list[FileEntry] = []
    for f in files:
        size = sizes[f.digest]
        if size is None or f.digest not in usable:
            if f.digest not in pending:
                raise IntegrityError(
                    f"blob for {f.path!r} has not been uploaded",
                    code="BLOB_MISSING",
                    details={"path": f.path, "digest": f.digest},
                )
            size = pending[f.digest]
            waiting.append(f)
        if size != f.size:
            raise IntegrityError(
                f"declared size of {f.path!r} does not match its blob",
                code="SIZE_MISMATCH",
                details={"path": f.path, "declared": f.size, "stored": size},
            )
    return waiting


def check_not_collected(tx: RegistryTx, files: Sequence[FileEntry]) -> None:
    """Inside a version commit's transaction: refuse a manifest naming a blob
    that garbage collection is deleting (``BLOB_MISSING``: upload it again).

    :func:`check_manifest` saw the blob stored, before the transaction; this
    closes the gap. The collection lock (shared here, exclusive while garbage
    collection re-checks references and records its deletions) orders the two:
    either this commit's manifest is visible to garbage collection's re-check,
    and the blob stays, or the deletion record is visible here.
    """
    if not files:
        return
    digests = [f.digest for f in files]
    tx.lock_blob_collection(exclusive=False)
    doomed = tx.blobs_being_deleted(digests)
    for f in files:
        if f.digest in doomed:
            raise IntegrityError(
                f"blob for {f.path!r} is being garbage-collected; upload it again",
                code="BLOB_MISSING",
                details={"path": f.path, "digest": f.digest},
            )


def _failure(row: VerificationRow) -> IntegrityError:
    """The error a failed verification recorded, as the client meets it."""
    try:
        recorded = json.loads(row.detail or "{}")
    except ValueError:
        recorded = {}
    return IntegrityError(
        str(recorded.get("message") or "the direct upload failed verification"),
        code=str(recorded.get("code") or "DIGEST_MISMATCH"),
        details={**dict(recorded.get("details") or {}), "upload_id": row.upload_id},
    )


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge("blob larger than the configured limit", details={"limit": limit})
