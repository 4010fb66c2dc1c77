"""Bad input from an adversarial pass (issue 9): every answer is a clean 4xx
in the one error body, and no answer points off the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.api.app import create_app
from modelyard.settings import Settings
from tests.helpers import assert_error


@pytest.fixture
def sq(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(data_dir=tmp_path / "d", db=sqlite_url))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/blobs/"),
        ("POST", "/api/v1/blobs/"),
        ("GET", "/api/v1/models/"),
        ("GET", "/api/v1/namespaces/"),
        ("GET", "/health/"),
    ],
)
def test_no_redirect_follows_the_host_header(sq: TestClient, method: str, path: str) -> None:
    r = sq.request(method, path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert "location" not in r.headers, r.headers
    assert not 300 <= r.status_code < 400
    assert_error(r, 404, "ROUTE_NOT_FOUND")
