"""Blob store on S3-compatible object storage (AWS S3, MinIO, Ceph, R2, ...).

Layout under ``s3://BUCKET/PREFIX``::

    PREFIX/sha256/ab/cd/<digest>    verified blobs, one object per digest
    PREFIX/uploads/<random>         big uploads in flight (multipart), staged

The local backend's promises hold here too:

- **Nothing is visible under a digest unless its bytes hash to it.** The
  writer hashes every byte it sends. A small blob is sent once its digest is
  known, straight to its digest key, with that SHA-256 as the request's
  checksum (``ChecksumSHA256``): the store itself refuses bytes that do not
  match. A big one is sent as a multipart upload to a staging key under
  ``uploads/``, hashed while it streams; only once the whole digest is
  verified is it copied (server side, no bytes through us) to its digest key,
  and the staged object removed.
- **Identical bytes are stored once**: a commit whose digest is stored already
  leaves the stored object alone.
- **Memory does not grow with the blob**: at most one part accumulating and one
  being sent, on a worker thread of its own, so the caller (an event loop)
  only copies chunks into a buffer and awaits :meth:`S3Writer.ready`.
- **Abandoned uploads are swept**: multipart uploads and staged objects older
  than a grace period (:data:`SWEEP_GRACE`). An object store cannot tell a live
  upload from a dead one, so the grace is long: a day, the usual lifecycle rule
  for incomplete multipart uploads.
- **Failures are domain errors**: an unreachable store, refused credentials or a
  missing bucket are ``STORAGE_UNAVAILABLE`` (503 at the HTTP door), never an
  unhandled exception.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from modelyard.domain.errors import IntegrityError, InvalidInput, NotFound, StorageUnavailable
from modelyard.domain.names import validate_digest
from modelyard.store.blobs.base import BlobInfo, S3Options, StagedPart, StagedUpload

log = logging.getLogger(__name__)

MAX_PUT = 5 << 30
"""S3's largest single PUT: bigger direct uploads go through the server."""

MIN_PART = 5 << 20
"""S3's smallest part (all but the last)."""

PART_STEP = 1000
"""Parts after which the part size doubles: 10,000 parts (S3's most) then hold
far more than the largest configured blob, whatever size was announced."""

SWEEP_INTERVAL = 3600.0
"""Seconds between background sweeps of abandoned uploads, at most."""

SWEEP_GRACE = 86400.0
"""Age past which a multipart upload or staged object counts as abandoned."""

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


@contextlib.contextmanager
def store_errors(operation: str) -> Iterator[None]:
    """Any failure of the object store as the domain's ``STORAGE_UNAVAILABLE``."""
    try:
        yield
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise StorageUnavailable(
            "the blob store refused the operation",
            details={"operation": operation, "error": str(err.get("Code", "unknown"))},
        ) from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(
            "the blob store could not be reached",
            details={"operation": operation, "error": type(exc).__name__},
        ) from exc


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _NOT_FOUND


def _started(key: str, listed: float) -> float:
    """When an upload began: the time in its staging name (see ``S3Writer``),
    else what the listing says."""
    stamp = key.rsplit("/", 1)[-1].split("-", 1)[0]
    return float(stamp) if stamp.isascii() and stamp.isdigit() else listed


def _stream(body: Any, chunk_size: int) -> Iterator[bytes]:
    try:
        with store_errors("get"):
            yield from body.iter_chunks(chunk_size)
    finally:
        body.close()


class S3Writer:
    """Streams one upload; see the module docstring for the two paths."""

    def __init__(self, store: S3BlobStore, size_hint: int | None) -> None:
        self._store = store
        self._hash = hashlib.sha256()
        self._buf = bytearray()
        self._size = 0
        self._part_size = store.part_size_for(size_hint)
        # The start time is in the name: the sweep reads an upload's age from
        # it, not from the listing's ``Initiated``, which some S3-compatible
        # stores do not fill in truthfully.
        self._staged = f"{store.prefix}uploads/{int(time.time())}-{uuid.uuid4().hex}"
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._sent = 0
        self._pending: Future[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._done = False

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def write(self, chunk: bytes) -> None:
        """Append bytes; a full part goes to the store on the writer's thread
        (blocking first if the previous part is still being sent)."""
        if self._done:
            raise RuntimeError("writer already finished")
        self._check_pending()
        self._buf += chunk
        self._size += len(chunk)
        if len(self._buf) >= self._part_size:
            self._send_buffer()

    def ready(self) -> Future[None] | None:
        """None if a chunk (up to 4 MiB) can be written without blocking; else
        the future of the part being sent. Raises what an earlier part met."""
        self._check_pending()
        pending = self._pending
        if pending is not None and len(self._buf) + (4 << 20) >= self._part_size:
            return pending
        return None

    def commit(self, expected_digest: str | None = None, expected_size: int | None = None) -> str:
        """Verify digest and size, then publish under the digest (or keep the
        identical blob already there)."""
        if self._done:
            raise RuntimeError("writer already finished")
        try:
            if self._sent == 0:
                digest = self._commit_small(expected_digest, expected_size)
            else:
                digest = self._commit_multipart(expected_digest, expected_size)
            self._done = True
            self._shutdown()
            return digest
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Discard what was sent (the multipart upload, or the staged object)."""
        self._done = True
        if self._pending is not None:
            with contextlib.suppress(BaseException):
                self._pending.result()
            self._pending = None
        self._shutdown()
        self._buf = bytearray()
        store = self._store
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            # Best effort: what is left is swept after the grace period.
            with contextlib.suppress(ClientError, BotoCoreError):
                store.client.abort_multipart_upload(
                    Bucket=store.bucket, Key=self._staged, UploadId=upload_id
                )
            with contextlib.suppress(ClientError, BotoCoreError):
                store.client.delete_object(Bucket=store.bucket, Key=self._staged)

    # -- internals ------------------------------------------------------------

    def _check(self, digest: str, expected_digest: str | None, expected_size: int | None) -> None:
        if expected_digest is not None and digest != expected_digest:
            raise IntegrityError(
                "uploaded bytes do not match the digest they were sent under",
                code="DIGEST_MISMATCH",
                details={"expected": expected_digest, "actual": digest, "size": self._size},
            )
        if expected_size is not None and self._size != expected_size:
            raise IntegrityError(
                "uploaded size does not match the declared size",
                code="SIZE_MISMATCH",
                details={"expected": expected_size, "actual": self._size},
            )

    def _commit_small(self, expected_digest: str | None, expected_size: int | None) -> str:
        data = bytes(self._buf)
        self._buf = bytearray()
        self._hash.update(data)
        digest = self._hash.hexdigest()
        self._check(digest, expected_digest, expected_size)
        store = self._store
        if store.size_of(digest) is None:
            with store_errors("put"):
                # The store verifies the bytes against this SHA-256 before it
                # keeps them: nothing unverified lands under the digest.
                store.client.put_object(
                    Bucket=store.bucket,
                    Key=store.key_for(digest),
                    Body=data,
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode(),
                )
        return digest

    def _commit_multipart(self, expected_digest: str | None, expected_size: int | None) -> str:
        if self._buf:
            self._send_buffer()
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        digest = self._hash.hexdigest()
        # Checked before the upload is completed: bytes that do not match are
        # never assembled into an object at all.
        self._check(digest, expected_digest, expected_size)
        store = self._store
        assert self._upload_id is not None
        with store_errors("complete multipart upload"):
            store.client.complete_multipart_upload(
                Bucket=store.bucket,
                Key=self._staged,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._upload_id = None
        try:
            if store.size_of(digest) is None:
                with store_errors("copy"):
                    # Server side, multipart for big objects: no bytes pass here.
                    store.client.copy(
                        {"Bucket": store.bucket, "Key": self._staged},
                        store.bucket,
                        store.key_for(digest),
                        Config=store.transfer,
                    )
        finally:
            with contextlib.suppress(ClientError, BotoCoreError):
                store.client.delete_object(Bucket=store.bucket, Key=self._staged)
        return digest

    def _check_pending(self) -> None:
        pending = self._pending
        if pending is not None and pending.done():
            self._pending = None
            pending.result()  # raises the part's failure, as a domain error

    def _send_buffer(self) -> None:
        if self._pending is not None:
            self._pending.result()  # bounded memory: one part in flight
            self._pending = None
        data = bytes(self._buf)
        self._buf = bytearray()
        self._sent += 1
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="s3-upload")
        self._pending = self._pool.submit(self._send_part, data, self._sent)
        if self._sent % PART_STEP == 0:
            self._part_size *= 2

    def _send_part(self, data: bytes, number: int) -> None:
        """On the writer's thread, in order: hash the part and send it."""
        self._hash.update(data)
        store = self._store
        with store_errors("upload part"):
            if self._upload_id is None:
                self._upload_id = store.client.create_multipart_upload(
                    Bucket=store.bucket, Key=self._staged
                )["UploadId"]
            answer = store.client.upload_part(
                Bucket=store.bucket,
                Key=self._staged,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,
            )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


class S3BlobStore:
    """Content-addressed blobs in an S3 bucket under a prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        options: S3Options,
        *,
        sweep_interval: float = SWEEP_INTERVAL,
    ) -> None:
        if options.part_size < MIN_PART:
            raise InvalidInput(
                f"S3 part size must be at least {MIN_PART} bytes",
                code="INVALID_SETTING",
                details={"part_size": options.part_size},
            )
        if not MIN_PART <= options.direct_multipart_threshold <= MAX_PUT:
            raise InvalidInput(
                f"the direct multipart threshold must be between {MIN_PART} and {MAX_PUT} bytes",
                code="INVALID_SETTING",
                details={"direct_multipart_threshold": options.direct_multipart_threshold},
            )
        self.direct_multipart_threshold = options.direct_multipart_threshold
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.part_size = options.part_size
        # Standard retries with backoff ride out a store's brief hiccups; the
        # pool is sized for the server's threadpool plus background writers.
        config = Config(
            retries={"max_attempts": 4, "mode": "standard"},
            max_pool_connections=64,
            connect_timeout=10,
            read_timeout=120,
            s3={"addressing_style": options.addressing_style},
        )
        with store_errors("connect"):
            self.client: Any = boto3.session.Session().client(
                "s3",
                endpoint_url=options.endpoint_url,
                region_name=options.region,
                config=config,
            )
        self.transfer = TransferConfig(
            multipart_threshold=options.part_size, multipart_chunksize=options.part_size
        )
        self.sweep_interval = sweep_interval
        self._next_sweep = time.monotonic() + sweep_interval
        self._sweep_lock = threading.Lock()

    @property
    def url(self) -> str:
        """The ``s3://`` URL of this store."""
        return f"s3://{self.bucket}/{self.prefix}"

    def key_for(self, digest: str) -> str:
        """The object key of a blob. Only ever called with a validated digest."""
        validate_digest(digest)
        return f"{self.prefix}sha256/{digest[:2]}/{digest[2:4]}/{digest}"

    def part_size_for(self, size_hint: int | None) -> int:
        """The first part size for an upload of about ``size_hint`` bytes: big
        enough that it fits in S3's 10,000 parts with room to spare."""
        if size_hint is None:
            return self.part_size
        return max(self.part_size, -(-size_hint // 9000))

    def exists(self, digest: str) -> bool:
        """True if the blob is stored."""
        return self.size_of(digest) is not None

    def check(self) -> None:
        """``STORAGE_UNAVAILABLE`` unless the bucket answers (and the credentials
        are let in): one ``HeadBucket``."""
        with store_errors("check"):
            self.client.head_bucket(Bucket=self.bucket)

    def size_of(self, digest: str) -> int | None:
        """The blob's size, or None."""
        key = self.key_for(digest)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            with store_errors("head"):
                raise
        except BotoCoreError:
            with store_errors("head"):
                raise
        return int(head["ContentLength"])

    def missing(self, digests: Iterable[str]) -> list[str]:
        """Digests not stored, in order, without repeats (probed in parallel)."""
        unique = list(dict.fromkeys(digests))
        for d in unique:
            validate_digest(d)
        if len(unique) <= 1:
            return [d for d in unique if not self.exists(d)]
        with ThreadPoolExecutor(min(16, len(unique)), thread_name_prefix="s3-head") as pool:
            present = list(pool.map(self.exists, unique))
        return [d for d, here in zip(unique, present, strict=True) if not here]

    def writer(self, size_hint: int | None = None) -> S3Writer:
        """Start an upload of about ``size_hint`` bytes (None: not known)."""
        self._maybe_sweep()
        return S3Writer(self, size_hint)

    def local_path(self, digest: str) -> Path | None:
        """Always None: the bytes live in the object store."""
        return None

    def iter_range(
        self, digest: str, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        """Yield ``[start, end)`` of the blob, streamed from the store.

        The request is made before the first byte is asked for, so a missing
        blob or an unreachable store is an error the caller can still answer
        with a status, not a cut-off stream."""
        key = self.key_for(digest)
        if end is not None and end <= start:
            return iter(())
        extra: dict[str, str] = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise IntegrityError(
                    "the blob is not in the store",
                    code="BLOB_MISSING",
                    details={"digest": digest},
                ) from exc
            with store_errors("get"):
                raise
        except BotoCoreError:
            with store_errors("get"):
                raise
        return _stream(body, chunk_size)

    # -- direct transfers (presigned URLs) -------------------------------------

    def presign_upload(self, size: int, expires_s: int) -> StagedUpload | None:
        """Where a client PUTs ``size`` bytes, straight into the store, under a
        fresh staging key: one URL, or past ``direct_multipart_threshold`` a
        multipart upload with one URL per part (sized as :meth:`part_size_for`
        sizes them, within S3's 10,000 parts). The bytes are not visible under
        any digest until :meth:`commit_staged` verified them."""
        upload_id = f"{int(time.time())}-{uuid.uuid4().hex}"
        key = self._staging_key(upload_id)
        if size <= self.direct_multipart_threshold:
            with store_errors("presign"):
                url = self.client.generate_presigned_url(
                    "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
                )
            return StagedUpload(upload_id, str(url), {"Content-Length": str(size)})
        part = self.part_size_for(size)
        with store_errors("presign"):
            multipart = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
            parts = []
            for number, offset in enumerate(range(0, size, part), start=1):
                url = self.client.generate_presigned_url(
                    "upload_part",
                    Params={
                        "Bucket": self.bucket,
                        "Key": key,
                        "UploadId": multipart["UploadId"],
                        "PartNumber": number,
                    },
                    ExpiresIn=expires_s,
                )
                parts.append(StagedPart(number, offset, min(part, size - offset), str(url)))
        return StagedUpload(upload_id, "", {}, tuple(parts))

    def _complete_staged_multipart(self, key: str) -> None:
        """Assemble a presigned multipart upload at ``key`` from the parts the
        store holds (their ETags come from the store, not the client); nothing
        if there is none (a single PUT, or nothing uploaded)."""
        with store_errors("list multipart uploads"):
            uploads = [
                u
                for page in self.client.get_paginator("list_multipart_uploads").paginate(
                    Bucket=self.bucket, Prefix=key
                )
                for u in page.get("Uploads", ())
                if u["Key"] == key
            ]
        if not uploads:
            return
        upload_id = uploads[0]["UploadId"]
        with store_errors("list parts"):
            parts = [
                {"PartNumber": int(p["PartNumber"]), "ETag": p["ETag"]}
                for page in self.client.get_paginator("list_parts").paginate(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
                for p in page.get("Parts", ())
            ]
        parts.sort(key=lambda p: int(p["PartNumber"]))
        if [p["PartNumber"] for p in parts] != list(range(1, len(parts) + 1)):
            raise IntegrityError(
                "parts of the upload are missing",
                code="UPLOAD_INCOMPLETE",
                details={"parts": [p["PartNumber"] for p in parts]},
            )
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except ClientError as exc:
            # A part below S3's minimum (all but the last), or none at all.
            raise IntegrityError(
                "the store refused to assemble the uploaded parts",
                code="UPLOAD_INCOMPLETE",
                details={"error": str(exc.response.get("Error", {}).get("Code", "unknown"))},
            ) from exc
        except BotoCoreError:
            with store_errors("complete multipart upload"):
                raise

    def _abort_staged_multipart(self, key: str) -> None:
        with contextlib.suppress(ClientError, BotoCoreError):
            for page in self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=key
            ):
                for u in page.get("Uploads", ()):
                    if u["Key"] == key:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=key, UploadId=u["UploadId"]
                        )

    def commit_staged(
        self, upload_id: str, expected_digest: str, expected_size: int | None = None
    ) -> str:
        """Verify a directly uploaded object and publish it under its digest, in
        the caller's thread: :meth:`assemble_staged` then :meth:`publish_staged`."""
        validate_digest(expected_digest)
        self.assemble_staged(upload_id, expected_size)
        return self.publish_staged(upload_id, expected_digest)

    def assemble_staged(self, upload_id: str, expected_size: int | None = None) -> int:
        """Make a direct upload one object and check its size; return the size.

        A presigned multipart upload is assembled from its parts
        (``UPLOAD_INCOMPLETE`` if some are missing); ``UPLOAD_NOT_FOUND`` if
        nothing was uploaded under that id; ``SIZE_MISMATCH`` against
        ``expected_size``. Reads no bytes: the SHA-256 is
        :meth:`publish_staged`'s. What was sent is removed if it is refused."""
        key = self._staging_key(upload_id)
        try:
            return self._assemble(key, upload_id, expected_size)
        except BaseException:
            self.discard_staged(upload_id)
            raise

    def _assemble(self, key: str, upload_id: str, expected_size: int | None) -> int:
        self._complete_staged_multipart(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                raise NotFound(
                    "nothing was uploaded under this upload id",
                    code="UPLOAD_NOT_FOUND",
                    details={"upload_id": upload_id},
                ) from exc
            with store_errors("head"):
                raise
        except BotoCoreError:
            with store_errors("head"):
                raise
        size = int(head["ContentLength"])
        if expected_size is not None and size != expected_size:
            raise IntegrityError(
                "uploaded size does not match the declared size",
                code="SIZE_MISMATCH",
                details={"expected": expected_size, "actual": size},
            )
        return size

    def publish_staged(self, upload_id: str, expected_digest: str) -> str:
        """Read an assembled direct upload back once, SHA-256 while streaming,
        and publish it under its digest (or keep the identical blob already
        there); ``DIGEST_MISMATCH`` if the bytes hash otherwise. The staged
        object is removed either way: bytes that do not match are never kept."""
        validate_digest(expected_digest)
        key = self._staging_key(upload_id)
        try:
            hasher = hashlib.sha256()
            size = 0
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            except ClientError as exc:
                if _missing(exc):
                    raise NotFound(
                        "nothing was uploaded under this upload id",
                        code="UPLOAD_NOT_FOUND",
                        details={"upload_id": upload_id},
                    ) from exc
                with store_errors("get"):
                    raise
            except BotoCoreError:
                with store_errors("get"):
                    raise
            for chunk in _stream(body, 4 << 20):
                hasher.update(chunk)
                size += len(chunk)
            digest = hasher.hexdigest()
            if digest != expected_digest:
                raise IntegrityError(
                    "uploaded bytes do not match the digest they were sent under",
                    code="DIGEST_MISMATCH",
                    details={"expected": expected_digest, "actual": digest, "size": size},
                )
            if self.size_of(digest) is None:
                with store_errors("copy"):
                    self.client.copy(
                        {"Bucket": self.bucket, "Key": key},
                        self.bucket,
                        self.key_for(digest),
                        Config=self.transfer,
                    )
            return digest
        finally:
            self.discard_staged(upload_id)

    def discard_staged(self, upload_id: str) -> None:
        """Remove whatever a direct upload left (parts or the object); best effort."""
        key = self._staging_key(upload_id)
        self._abort_staged_multipart(key)
        with contextlib.suppress(ClientError, BotoCoreError):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def presign_download(self, digest: str, expires_s: int, disposition: str) -> str:
        """A URL that GETs the blob straight from the store (``Range`` works)."""
        with store_errors("presign"):
            return str(
                self.client.generate_presigned_url(
                    "get_object",
                    Params={
                        "Bucket": self.bucket,
                        "Key": self.key_for(digest),
                        "ResponseContentDisposition": disposition,
                    },
                    ExpiresIn=expires_s,
                )
            )

    def _staging_key(self, upload_id: str) -> str:
        stamp, _, rand = upload_id.partition("-")
        hex_digits = set("0123456789abcdef")
        if not (
            stamp.isascii()
            and stamp.isdigit()
            and len(stamp) <= 20
            and len(rand) == 32
            and set(rand) <= hex_digits
        ):
            raise InvalidInput("malformed upload id", code="INVALID_UPLOAD_ID")
        return f"{self.prefix}uploads/{upload_id}"

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob, with its size and last-modified time."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}sha256/"
        )
        with store_errors("list"):
            for page in pages:
                for obj in page.get("Contents", ()):
                    name = str(obj["Key"]).rsplit("/", 1)[-1]
                    if len(name) == 64:
                        yield BlobInfo(name, int(obj["Size"]), obj["LastModified"].timestamp())

    def delete(self, digest: str) -> None:
        """Remove a blob."""
        with store_errors("delete"):
            self.client.delete_object(Bucket=self.bucket, Key=self.key_for(digest))

    def clean_stale_uploads(
        self, max_age_s: float = SWEEP_GRACE, keep: Collection[str] = ()
    ) -> int:
        """Abort multipart uploads and remove staged objects under ``uploads/``
        untouched for ``max_age_s`` seconds, except the upload ids in ``keep``
        (direct uploads waiting for verification); returns how many.

        An upload's age is that of its latest activity, not its start: a long
        upload whose parts keep arriving renews itself with every part, so a
        short grace never takes an upload still in progress."""
        cutoff = time.time() - max_age_s
        staging = f"{self.prefix}uploads/"
        kept = {f"{staging}{upload_id}" for upload_id in keep}
        n = 0
        with store_errors("sweep uploads"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=staging
            )
            for page in pages:
                for up in page.get("Uploads", ()):
                    key = up["Key"]
                    if key in kept or _started(key, up["Initiated"].timestamp()) >= cutoff:
                        continue
                    if self._last_part_at(key, up["UploadId"]) >= cutoff:
                        continue  # parts still arriving: a live upload
                    with contextlib.suppress(ClientError):
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=key, UploadId=up["UploadId"]
                        )
                        n += 1
            objects = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=staging
            )
            for page in objects:
                for obj in page.get("Contents", ()):
                    key = obj["Key"]
                    # A staged object's last write renews it too (a long
                    # single PUT lands only when it ends).
                    latest = max(_started(key, 0.0), obj["LastModified"].timestamp())
                    if key not in kept and latest < cutoff:
                        self.client.delete_object(Bucket=self.bucket, Key=key)
                        n += 1
        return n

    def _last_part_at(self, key: str, upload_id: str) -> float:
        """When the latest part of a multipart upload arrived (0: none yet)."""
        latest = 0.0
        try:
            for page in self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            ):
                for part in page.get("Parts", ()):
                    latest = max(latest, part["LastModified"].timestamp())
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchUpload" or _missing(exc):
                return float("inf")  # finished or aborted meanwhile: nothing to sweep
            raise
        return latest

    def _maybe_sweep(self) -> None:
        now = time.monotonic()
        with self._sweep_lock:
            if now < self._next_sweep:
                return
            self._next_sweep = now + self.sweep_interval
        threading.Thread(target=self._sweep_quietly, name="s3-upload-sweep", daemon=True).start()

    def _sweep_quietly(self) -> None:
        try:
            n = self.clean_stale_uploads()
        except Exception:  # retried by a later upload
            log.warning("sweeping abandoned S3 uploads failed", exc_info=True)
            return
        if n:
            log.info("removed %d abandoned S3 upload(s)", n)
