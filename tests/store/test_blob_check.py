"""``BlobStore.check`` (readiness, issue 13) on both backends: it passes on a
working store and says ``STORAGE_UNAVAILABLE`` once the store is gone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelyard.domain.errors import StorageUnavailable
from modelyard.store.blobs import S3Options, open_blob_store
from modelyard.store.blobs.local import LocalBlobStore
from modelyard.store.blobs.s3 import S3BlobStore


def test_check_passes_then_fails_when_the_store_goes(store_url: str) -> None:
    store = open_blob_store(store_url, s3=S3Options())
    store.check()
    if isinstance(store, LocalBlobStore):
        shutil.rmtree(store.tmp_dir)  # the volume went away
    else:
        assert isinstance(store, S3BlobStore)
        store.client.delete_bucket(Bucket=store.bucket)
    with pytest.raises(StorageUnavailable) as caught:
        store.check()
    assert caught.value.code == "STORAGE_UNAVAILABLE"
    assert caught.value.details["operation"] == "check"
    if isinstance(store, LocalBlobStore):
        assert str(Path(store.root)) not in caught.value.message
