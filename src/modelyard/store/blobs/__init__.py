"""Content-addressed blob storage (sha256): the interface and its backends."""

from __future__ import annotations

from modelyard.store.blobs.base import BlobStore, BlobWriter, open_blob_store

__all__ = ["BlobStore", "BlobWriter", "open_blob_store"]
