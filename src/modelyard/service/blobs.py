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
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.domain.entities import FileEntry, Version
from modelyard.domain.errors import InvalidInput, PayloadTooLarge, PermissionDenied
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.names import validate_digest
from modelyard.domain.references import Reference

if TYPE_CHECKING:
    from modelyard.service.registry import RegistryService
    from modelyard.store.blobs import BlobStore, BlobWriter


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """The outcome of an upload: the digest the bytes are stored under, their
    size, and whether the caller could not see them before (``created``)."""

    digest: str
    size: int
    created: bool


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
    ) -> None:
        self._writer = writer
        self._digest = digest
        self._declared = declared_size
        self._limit = limit
        self._existed = existed

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
        """Verify (digest and declared size) and publish the blob. Blocks for the
        fsync: an event loop runs it in a thread."""
        stored = self._writer.commit(expected_digest=self._digest, expected_size=self._declared)
        return StoredBlob(stored, self._writer.size, not self._existed)

    def abort(self) -> None:
        """Discard what was written."""
        self._writer.abort()


class BlobService:
    """Content-addressed blobs, shared by content across namespaces.

    An upload names no namespace, so it needs write permission on some
    namespace; the version whose manifest lists a blob is checked when it is
    created.
    """

    def __init__(self, registry: RegistryService, *, max_blob_size: int) -> None:
        self.registry = registry
        self.store: BlobStore = registry.blobs
        self.max_blob_size = max_blob_size

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
        """Which of these digests still need uploading (input order, no repeats).

        Requires: write on some namespace.
        """
        self.authorize(actor)
        if len(digests) > self.registry.max_files:
            raise InvalidInput("too many digests in one request", code="INVALID_INPUT")
        for d in digests:
            self.check_digest(d)
        return self.store.missing(digests)

    def stored_size(self, digest: str, *, actor: Principal) -> int | None:
        """The size of the stored blob, or None if it is not stored.

        Requires: write on some namespace.
        """
        self.authorize(actor)
        self.check_digest(digest)
        return self.store.size_of(digest)

    def begin_upload(
        self, actor: Principal, *, digest: str | None = None, declared_size: int | None = None
    ) -> Upload:
        """Start a streamed upload, checked against ``digest`` (if named) and
        ``declared_size`` (if known) at commit. Requires: write on some namespace."""
        self.authorize(actor)
        if digest is not None:
            self.check_digest(digest)
        self.check_size(declared_size)
        existed = digest is not None and self.store.exists(digest)
        return Upload(
            self.store.writer(declared_size),
            digest=digest,
            declared_size=declared_size,
            limit=self.max_blob_size,
            existed=existed,
        )

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

    def open_file(
        self, ref: str | Reference, path: str, *, actor: Principal
    ) -> tuple[Version, FileEntry, Iterator[bytes]]:
        """One file of a version and its bytes. Requires: as ``get_version``."""
        version, entry = self.registry.get_file(ref, path, actor=actor)
        return version, entry, self.store.iter_range(entry.digest)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge("blob larger than the configured limit", details={"limit": limit})
