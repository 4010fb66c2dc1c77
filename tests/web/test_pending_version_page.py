"""The version page of a draft waiting on direct uploads (issue 13) names the
files it waits on and their state, on an S3 store (a moto server process)
and on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from modelyard.api.app import create_app
from modelyard.domain.identity import Principal
from modelyard.service.registry import VersionSpec
from modelyard.settings import Settings
from tests.s3server import S3Server
from tests.web.html_checks import page_text

pytestmark = pytest.mark.s3

ME = Principal.local("anonymous")


@pytest.fixture
def app_client(tmp_path: Path, s3_server: S3Server, db_url: str) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path / "d",
        db=db_url,
        store=f"s3://{s3_server.new_bucket()}/reg",
        blob_verifier=False,  # the test runs the verifier's rounds itself
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _send(app: Any, data: bytes) -> str:
    blobs = app.state.blobs
    digest = hashlib.sha256(data).hexdigest()
    staged = blobs.offer_direct_upload(ME, size=len(data), digest=digest)
    assert httpx.put(staged.url, content=data, headers=staged.headers).status_code == 200
    blobs.complete_direct_upload(ME, staged.upload_id, digest=digest, size=len(data))
    return staged.upload_id


def test_a_waiting_draft_shows_what_it_waits_on(app_client: TestClient) -> None:
    app: Any = app_client.app
    data = os.urandom(20_000)
    reg = app.state.registry
    reg.create_model("m", actor=ME)
    _send(app, data)
    spec = VersionSpec(
        files=[{"path": "w.bin", "digest": hashlib.sha256(data).hexdigest(), "size": len(data)}]
    )
    reg.create_version("m", spec, actor=ME)

    text = page_text(app_client.get("/models/default/m/versions/1").text)
    assert "Waiting for verification" in text and "w.bin pending" in text

    assert app.state.blobs.verify_pending("test") == 1
    text = page_text(app_client.get("/models/default/m/versions/1").text)
    assert "Waiting for verification" not in text and "ready" in text
