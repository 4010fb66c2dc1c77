"""Backup areas: a directory or an S3 prefix that ``modelyard backup`` fills.

Layout (the same on both)::

    blobs/sha256/ab/cd/<digest>      a blob store, shared by every snapshot
    snapshots/<stamp>/metadata.*     the metadata snapshot of one backup
    snapshots/<stamp>/manifest.json  what that snapshot holds
    latest                           the stamp of the newest complete backup

Blobs go through the blob store's own writers, so the backup's copies are
verified against their digests as they land, exactly as uploads are.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from modelyard.domain.errors import InvalidInput, NotFound
from modelyard.store.blobs.base import BlobStore, S3Options
from modelyard.store.blobs.local import LocalBlobStore

_NAME = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def _checked(name: str) -> str:
    """A name of ours (``snapshots/<stamp>/manifest.json``): no ``..``, no root."""
    if not _NAME.match(name) or any(part in (".", "..") for part in name.split("/")):
        raise InvalidInput(
            "malformed backup file name", code="INVALID_BACKUP", details={"name": name}
        )
    return name


class LocalBackupArea:
    """A backup in a directory (a mounted disk, an NFS share, ...)."""

    def __init__(self, root: Path, *, create: bool = True) -> None:
        self.root = root
        if not create and not root.is_dir():
            raise NotFound(
                "no backup at this path", code="BACKUP_NOT_FOUND", details={"path": str(root)}
            )
        root.mkdir(parents=True, exist_ok=True)
        self._blobs = LocalBlobStore(root / "blobs")

    @property
    def url(self) -> str:
        """The directory."""
        return str(self.root)

    @property
    def blobs(self) -> BlobStore:
        """The backup's blob store."""
        return self._blobs

    def _path(self, name: str) -> Path:
        return self.root / _checked(name)

    def put_file(self, name: str, source: Path) -> None:
        """Copy ``source`` in, then rename it into place (fsynced)."""
        dest = self._path(name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                while chunk := src.read(4 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def get_file(self, name: str, dest: Path) -> bool:
        """Copy ``name`` out to ``dest``."""
        path = self._path(name)
        if not path.is_file():
            return False
        with open(path, "rb") as src, open(dest, "wb") as out:
            while chunk := src.read(4 << 20):
                out.write(chunk)
        return True

    def put_text(self, name: str, text: str) -> None:
        """Write a small file atomically."""
        with tempfile.NamedTemporaryFile("w", delete=False, encoding="utf-8") as tmp:
            tmp.write(text)
        try:
            self.put_file(name, Path(tmp.name))
        finally:
            os.unlink(tmp.name)

    def get_text(self, name: str) -> str | None:
        """Read a small file."""
        try:
            return self._path(name).read_text("utf-8")
        except FileNotFoundError:
            return None


class S3BackupArea:
    """A backup under an S3 prefix (any S3-compatible store)."""

    def __init__(self, bucket: str, prefix: str, options: S3Options) -> None:
        from botocore.exceptions import ClientError

        from modelyard.store.blobs.s3 import S3BlobStore, store_errors

        self._errors = store_errors
        self._client_error = ClientError
        prefix = prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.bucket = bucket
        self._blobs = S3BlobStore(bucket, f"{self.prefix}blobs", options)
        self.client: Any = self._blobs.client

    @property
    def url(self) -> str:
        """The ``s3://`` URL."""
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def blobs(self) -> BlobStore:
        """The backup's blob store."""
        return self._blobs

    def _key(self, name: str) -> str:
        return self.prefix + _checked(name)

    def put_file(self, name: str, source: Path) -> None:
        """Upload (multipart for big files): an object appears whole or not at all."""
        with self._errors("put"):
            self.client.upload_file(
                str(source), self.bucket, self._key(name), Config=self._blobs.transfer
            )

    def get_file(self, name: str, dest: Path) -> bool:
        """Download ``name`` to ``dest``."""
        try:
            self.client.download_file(
                self.bucket, self._key(name), str(dest), Config=self._blobs.transfer
            )
        except self._client_error as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey"):
                return False
            with self._errors("get"):
                raise
        return True

    def put_text(self, name: str, text: str) -> None:
        """Write a small object."""
        with self._errors("put"):
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(name), Body=text.encode("utf-8")
            )

    def get_text(self, name: str) -> str | None:
        """Read a small object."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
        except self._client_error as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey"):
                return None
            with self._errors("get"):
                raise
        with self._errors("get"):
            return bytes(body.read()).decode("utf-8")


def open_backup_area(
    url: str, *, s3: S3Options | None = None, create: bool = True
) -> LocalBackupArea | S3BackupArea:
    """The backup area named by ``url``: a directory (a path or ``file://``;
    made if missing, unless ``create`` is false) or ``s3://bucket/prefix``."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return LocalBackupArea(Path(unquote(parsed.path) if parsed.scheme else url), create=create)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InvalidInput(
                "an S3 backup URL names a bucket: s3://bucket/prefix", code="INVALID_BACKUP"
            )
        return S3BackupArea(parsed.netloc, unquote(parsed.path), s3 or S3Options())
    raise InvalidInput(f"unsupported backup URL scheme {parsed.scheme!r}", code="INVALID_BACKUP")
