"""Content-addressed blob storage (sha256): the interface and its backends."""

from __future__ import annotations

from modelyard.store.blobs.base import (
    BackupArea,
    BlobInfo,
    BlobStore,
    BlobWriter,
    DirectTransfers,
    S3Options,
    StagedPart,
    StagedUpload,
    open_blob_store,
)

__all__ = [
    "BackupArea",
    "BlobInfo",
    "BlobStore",
    "BlobWriter",
    "DirectTransfers",
    "S3Options",
    "StagedPart",
    "StagedUpload",
    "open_blob_store",
]
