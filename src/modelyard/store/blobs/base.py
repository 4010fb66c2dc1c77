"""The blob store seam. Backends are chosen by URL scheme: ``file://`` (or a
plain path) for a local directory, ``s3://bucket/prefix`` for S3-compatible
object storage.

Rules every backend keeps (ARCHITECTURE.md, rule 4):
- a blob is named by the sha256 of its bytes and never changes;
- no blob is visible under a digest unless its bytes hash to that digest;
- a writer streams: memory does not grow with the blob's size;
- an interrupted write leaves nothing visible.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from modelyard.domain.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """One stored blob as a listing sees it: digest, size, and when its bytes
    were stored (seconds since the epoch), for garbage collection's grace."""

    digest: str
    size: int
    stored_at: float


@dataclass(frozen=True, slots=True)
class S3Options:
    """How to reach an S3-compatible store. Every None falls back to the
    standard AWS configuration (environment, ``~/.aws/config`` and
    ``~/.aws/credentials``, instance roles) as boto3 reads it."""

    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str = "auto"
    part_size: int = 8 << 20
    direct_multipart_threshold: int = 5 << 30
    """Direct uploads bigger than this go as presigned multipart uploads (S3's
    largest single PUT is 5 GiB)."""


@dataclass(frozen=True, slots=True)
class StagedPart:
    """One part of a presigned multipart upload: PUT bytes ``[offset, offset +
    size)`` of the blob to ``url``."""

    number: int
    offset: int
    size: int
    url: str


@dataclass(frozen=True, slots=True)
class StagedUpload:
    """Where a client sends a blob straight to the store: PUT ``url`` with
    ``headers`` or, for a big blob, each of ``parts`` (then ``url`` is empty);
    then the server verifies it (``commit_staged(upload_id, ...)``)."""

    upload_id: str
    url: str
    headers: dict[str, str]
    parts: tuple[StagedPart, ...] = ()


@runtime_checkable
class DirectTransfers(Protocol):
    """What a store whose clients can reach it directly (S3) adds: presigned
    URLs, and verification of what was uploaded through them."""

    def presign_upload(self, size: int, expires_s: int) -> StagedUpload | None:
        """A staged upload of ``size`` bytes, or None if it must go through the server."""

    def commit_staged(
        self, upload_id: str, expected_digest: str, expected_size: int | None = None
    ) -> str:
        """Verify (size, SHA-256) and publish a staged upload under its digest."""

    def assemble_staged(self, upload_id: str, expected_size: int | None = None) -> int:
        """Make a staged upload one object and check its size (reads no bytes);
        a refused upload's bytes are removed."""

    def publish_staged(self, upload_id: str, expected_digest: str) -> str:
        """Read an assembled staged upload back once, check its SHA-256 and
        publish it under its digest; the staged object goes either way."""

    def discard_staged(self, upload_id: str) -> None:
        """Remove what a staged upload left in the store (best effort)."""

    def presign_download(self, digest: str, expires_s: int, disposition: str) -> str:
        """A URL that reads the blob straight from the store, answered with
        this ``Content-Disposition``."""


class BlobWriter(Protocol):
    """An in-progress upload. Call ``commit`` once, or ``abort``."""

    def write(self, chunk: bytes) -> None:
        """Append bytes (hashing them as they pass). May block while earlier
        bytes are still being stored; see :meth:`ready`."""

    def ready(self) -> Future[None] | None:
        """None if :meth:`write` can take a chunk (up to 4 MiB) without
        blocking, else a future that completes when it can: an event loop
        awaits it instead of blocking."""

    def commit(self, expected_digest: str | None = None, expected_size: int | None = None) -> str:
        """Verify and publish the blob; return its digest. Raises ``IntegrityError``."""

    def abort(self) -> None:
        """Discard what was written."""

    @property
    def size(self) -> int:
        """Bytes written so far."""


class BlobStore(Protocol):
    """Content-addressed storage of immutable blobs."""

    def exists(self, digest: str) -> bool:
        """True if a verified blob with this digest is stored."""

    def size_of(self, digest: str) -> int | None:
        """The stored blob's size, or None if absent."""

    def missing(self, digests: Iterable[str]) -> list[str]:
        """The subset of ``digests`` not yet stored, in input order, without repeats."""

    def writer(self, size_hint: int | None = None) -> BlobWriter:
        """Start a streaming upload of about ``size_hint`` bytes (None: not known)."""

    def local_path(self, digest: str) -> Path | None:
        """The file holding the blob, when the backend keeps files (else None)."""

    def iter_range(
        self, digest: str, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        """Yield bytes ``[start, end)`` of a blob (to the end when ``end`` is None)."""

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob, in no particular order (garbage collection)."""

    def delete(self, digest: str) -> None:
        """Remove a blob (garbage collection only; never for referenced blobs)."""

    def clean_stale_uploads(self, max_age_s: float = 60.0, keep: Collection[str] = ()) -> int:
        """Drop leftovers of uploads no live process holds, untouched for
        ``max_age_s``, except the direct uploads named in ``keep``."""

    def check(self) -> None:
        """Raise ``StorageUnavailable`` unless the store can be reached and written
        to now (readiness); reads nothing but the store's own bookkeeping."""


class BackupArea(Protocol):
    """Where ``modelyard backup`` writes (a directory or an S3 prefix): a blob
    store under ``blobs/`` shared by every snapshot, so a second backup copies
    only new digests, and small named files (metadata snapshots, manifests)."""

    @property
    def url(self) -> str:
        """Where the backup lives, as given."""

    @property
    def blobs(self) -> BlobStore:
        """The backup's blob store (the same layout as a registry's)."""

    def put_file(self, name: str, source: Path) -> None:
        """Store a local file under ``name`` (replacing it, atomically)."""

    def get_file(self, name: str, dest: Path) -> bool:
        """Fetch ``name`` into ``dest``; False if there is no such file."""

    def put_text(self, name: str, text: str) -> None:
        """Store a small text file under ``name`` (replacing it, atomically)."""

    def get_text(self, name: str) -> str | None:
        """The text stored under ``name``, or None."""


def open_blob_store(url: str, *, s3: S3Options | None = None) -> BlobStore:
    """Open the blob store named by ``url``: ``file:///abs/dir``, a plain path,
    or ``s3://bucket/prefix`` (reached as ``s3`` says)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        from modelyard.store.blobs.local import LocalBlobStore

        path = unquote(parsed.path) if parsed.scheme else url
        return LocalBlobStore(Path(path))
    if parsed.scheme == "s3":
        # Imported here: boto3 takes a noticeable time to import, and a
        # registry on a local directory never needs it.
        from modelyard.store.blobs.s3 import S3BlobStore

        if not parsed.netloc:
            raise InvalidInput(
                "an S3 store URL names a bucket: s3://bucket/prefix", code="INVALID_SETTING"
            )
        return S3BlobStore(parsed.netloc, unquote(parsed.path), s3 or S3Options())
    raise InvalidInput(
        f"unsupported blob store URL scheme {parsed.scheme!r}", code="INVALID_SETTING"
    )
