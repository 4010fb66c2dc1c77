"""Bad input from an adversarial pass (issue 9): every answer is a clean 4xx
in the one error body, and no answer points off the server."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from modelyard.api.app import create_app
from modelyard.api.errors import error_response
from modelyard.api.middleware import lone_surrogate
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


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec=None), max_size=12), st.booleans())
def test_lone_surrogate_finds_exactly_the_unencodable_strings(text: str, ascii_: bool) -> None:
    """Escaped (``\\udXXX``) or as raw bytes, JSON text is refused exactly when
    the string it decodes to cannot be written as UTF-8."""
    body = json.dumps({"k\\": [text, "\\u"]}, ensure_ascii=ascii_).encode("utf-8", "surrogatepass")
    assert json.loads(body)["k\\"][0] == text
    assert (lone_surrogate(body) is None) == _utf8_ok(text)


BAD_TEXT = [
    b'{"name":"m\\ud800"}',
    b'{"name":"m\\uDBFF\\u0041"}',
    b'{"name":"m\\udc00"}',
    b'{"name":"okmodel","description":"x\\ud800"}',
    b'{"name":"okmodel","tags":{"a":"x\\udfff"}}',
    b'{"name":"okmodel","metadata":{"a":{"b\\ud83d":"x"}}}',
    b'{"name":"m\xed\xa0\x80"}',
]


def _exchange(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None) -> Any:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()


@pytest.mark.parametrize("body", BAD_TEXT)
def test_lone_surrogates_are_a_clean_422_and_the_connection_stays_usable(
    live_server: str, body: bytes
) -> None:
    """Raw bytes over one real keep-alive connection to a live server: the
    answer is the one error body, and the next request on it is served."""
    url = urlsplit(live_server)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        status, raw = _exchange(conn, "POST", "/api/v1/models", body)
        assert status == 422, raw
        error = json.loads(raw)["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"]["errors"][0]["type"] == "json_invalid"
        status, raw = _exchange(conn, "GET", "/health", None)
        assert status == 200, raw
    finally:
        conn.close()


def test_surrogate_pairs_and_escaped_backslashes_are_text(sq: TestClient) -> None:
    body = b'{"name":"okpair","description":"\\\\ud800","metadata":{"a":["\\ud83d\\ude00"]}}'
    r = sq.post("/api/v1/models", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["description"] == "\\ud800"
    assert r.json()["metadata"] == {"a": ["\U0001f600"]}


def test_an_error_quoting_unwritable_input_is_still_the_one_body() -> None:
    """Embedded callers can pass what JSON cannot carry; the error body
    writes it in a safe form instead of failing."""
    r = error_response(400, "INVALID_NAME", "bad \ud800", {"value": "m\ud800", "n": 1 << 70})
    assert r.status_code == 400
    error = json.loads(r.body)["error"]
    assert error["details"] == {"value": "m\\ud800", "n": str(1 << 70)}
