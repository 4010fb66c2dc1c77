"""MLflow's multipart artifact uploads onto the content-addressed store.

MLflow's client sends a big artifact in parts (``MlflowArtifactsRepository``
when ``/server-info`` says ``multipart_uploads_enabled``): ``create`` hands
out one URL per part, the client PUTs each part to its URL with no
credentials (as to an object store's presigned URL), then ``complete``
names the parts by their ETags, or ``abort`` gives up.

Here:

- ``create`` (write on the target's namespace) opens an upload under a
  random 256-bit id, stored only as its SHA-256; that id in a part's URL is
  the part's whole authority, as a presigned URL's signature is, and it runs
  out after :data:`UPLOAD_TTL` seconds.
- each part is streamed into a blob of its own (hashed as it arrives); its
  ETag is that digest. Part blobs are recorded for no uploader, so no
  version manifest can name them; unreferenced, the blob collector takes
  them like any other unreferenced blob.
- ``complete`` (write again, same target) checks the ETags the client names
  against the parts received, then streams the parts in order into the
  final blob, recorded for the caller, and indexes it under the path, as a
  single PUT would have. Nothing is trusted that the server did not hash.
"""

from __future__ import annotations

import hashlib
import posixpath
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from modelyard.cooperative import off_loop
from modelyard.domain.errors import InvalidInput, NotFound
from modelyard.domain.identity import Principal
from modelyard.domain.names import validate_file_path
from modelyard.service.artifacts import ArtifactService
from modelyard.service.blobs import StoredBlob, Upload
from modelyard.store.metadata.ports import RegistryTx, now_us

UPLOAD_TTL: Final = 24 * 3600
MAX_PARTS: Final = 10_000  # S3's limit, which MLflow's client sizes its parts for


@dataclass(frozen=True, slots=True)
class OpenedUpload:
    """A multipart upload just opened: its id (the parts' capability) and parts."""

    upload_id: str
    part_numbers: list[int]


def _key(upload_id: str) -> str:
    if not isinstance(upload_id, str) or not 16 <= len(upload_id) <= 128:
        raise _unknown()
    return hashlib.sha256(upload_id.encode()).hexdigest()


def _unknown() -> NotFound:
    return NotFound(
        "no such multipart upload (finished, aborted or expired)",
        code="UPLOAD_NOT_FOUND",
    )


def _file_name(local_path: str) -> str:
    """The file name of the client's local path (MLflow keeps its base name)."""
    if not isinstance(local_path, str) or not local_path:
        raise InvalidInput("the upload's 'path' names the local file", code="INVALID_INPUT")
    name = local_path.replace("\\", "/").rsplit("/", 1)[-1]
    validate_file_path(name)
    return name


class MultipartUploads:
    """Create, receive parts of, complete and abort MLflow multipart uploads."""

    def __init__(self, artifacts: ArtifactService) -> None:
        self.artifacts = artifacts
        self.db = artifacts.db
        self.blob_service = artifacts.blob_service

    def create(
        self, directory: str, local_path: str, num_parts: int, *, actor: Principal
    ) -> OpenedUpload:
        """Open an upload of ``<directory>/<base name of local_path>`` in
        ``num_parts`` parts. Requires: write on the owner's namespace."""
        if isinstance(num_parts, bool) or not isinstance(num_parts, int):
            raise InvalidInput("num_parts must be a whole number", code="INVALID_INPUT")
        if not 1 <= num_parts <= MAX_PARTS:
            raise InvalidInput(f"num_parts must be 1..{MAX_PARTS}", code="INVALID_INPUT")
        path = posixpath.join(directory, _file_name(local_path))
        target = self.artifacts.target(path, actor=actor, write=True)
        upload_id = secrets.token_urlsafe(32)
        at = now_us()
        values = {
            "id": _key(upload_id),
            "owner": target.owner,
            "path": path,
            "num_parts": num_parts,
            "created_by": actor.name,
            "created_at": at,
            "expires_at": at + UPLOAD_TTL * 1_000_000,
        }

        def op(tx: RegistryTx) -> None:
            tx.tracking.insert_artifact_upload(values)

        self.db.transact(op, retry_conflicts=True)
        return OpenedUpload(upload_id, list(range(1, num_parts + 1)))

    def _open(self, upload_id: str) -> Any:
        with self.db.read() as tx:
            row = tx.tracking.artifact_upload(_key(upload_id))
        if row is None or row.expires_at < now_us():
            raise _unknown()
        return row

    def begin_part(self, upload_id: str, part_number: int, size: int | None) -> Upload:
        """Start receiving one part (the id is its authority: no principal)."""
        row = self._open(upload_id)
        if isinstance(part_number, bool) or not 1 <= part_number <= row.num_parts:
            raise InvalidInput(f"part_number must be 1..{row.num_parts}", code="INVALID_INPUT")
        return self.blob_service.begin_unrecorded_upload(declared_size=size)

    def finish_part(self, upload_id: str, part_number: int, stored: StoredBlob) -> str:
        """Record a received part; its ETag (the digest of its bytes)."""
        key = _key(upload_id)
        self._open(upload_id)

        def op(tx: RegistryTx) -> None:
            if tx.tracking.artifact_upload(key) is None:
                raise _unknown()
            tx.tracking.put_upload_part(key, part_number, stored.digest, stored.size)

        self.db.transact(op, retry_conflicts=True)
        return stored.digest

    def complete(
        self,
        directory: str,
        local_path: str,
        upload_id: str,
        etags: Sequence[tuple[int, str]],
        *,
        actor: Principal,
    ) -> None:
        """Join the parts named by (part number, ETag) into the file and index
        it. Blocks while the bytes are copied: run it off the event loop.
        Requires: write on the owner's namespace."""
        path = posixpath.join(directory, _file_name(local_path))
        target = self.artifacts.target(path, actor=actor, write=True)
        row = self._open(upload_id)
        if row.path != path or row.owner != target.owner:
            raise _unknown()
        key = _key(upload_id)
        with self.db.read() as tx:
            received = tx.tracking.upload_parts(key)
        numbers = [n for n, _ in etags]
        if sorted(numbers) != list(range(1, row.num_parts + 1)):
            raise InvalidInput(
                f"complete names parts {numbers}; the upload has parts 1..{row.num_parts}",
                code="INVALID_INPUT",
            )
        ordered = []
        for number, etag in sorted(etags):
            got = received.get(number)
            if got is None or got[0] != etag.strip('"'):
                raise InvalidInput(
                    f"part {number} was not received with ETag {etag!r}", code="INVALID_INPUT"
                )
            ordered.append(got)
        # Copying (and hashing) the whole file is slow: a worker thread's job.
        stored = off_loop(self._join, ordered, actor)
        self.artifacts.finish_upload(target, stored, actor=actor)
        self.db.transact(lambda tx: tx.tracking.delete_artifact_upload(key), retry_conflicts=True)

    def _join(self, parts: list[tuple[str, int]], actor: Principal) -> StoredBlob:
        """The parts' bytes, in order, as one new blob recorded for ``actor``."""
        store = self.blob_service.store
        upload = self.blob_service.begin_upload(actor, declared_size=sum(size for _, size in parts))
        try:
            for digest, _size in parts:
                for chunk in store.iter_range(digest):
                    upload.write(chunk)
            return upload.commit()
        except BaseException:
            upload.abort()
            raise

    def abort(self, directory: str, local_path: str, upload_id: str, *, actor: Principal) -> None:
        """Give an upload up (its part blobs are left to the collector).
        Requires: write on the owner's namespace."""
        path = posixpath.join(directory, _file_name(local_path))
        target = self.artifacts.target(path, actor=actor, write=True)
        row = self._open(upload_id)
        if row.path != path or row.owner != target.owner:
            raise _unknown()
        key = _key(upload_id)
        self.db.transact(lambda tx: tx.tracking.delete_artifact_upload(key), retry_conflicts=True)
