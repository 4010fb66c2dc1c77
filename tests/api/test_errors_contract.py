"""The one error body, for every kind of bad request; no bad input yields a 500."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.helpers import assert_error, sha, upload

TRAVERSALS = [
    "../etc/passwd",
    "a/../../b",
    "..",
    ".",
    "a/./b",
    "/abs/path",
    "C:/win",
    "c:x",
    "\\\\server\\share",
    "a\\b",
    "a//b",
    "a/",
    "",
    "a/\x00b",
    "a\nb",
    "%2e%2e/x",
    "%252e%252e/x",
    "%25252e%25252e%25252fx",
    "a/%2e%2e/b",
    "..%2fx",
    "%2Fabs",
    "a/ b",
    " a",
    "a\u0085b",
    "\u212bngstrom",
]


@pytest.fixture
def sq(tmp_path, sqlite_url):  # type: ignore[no-untyped-def]
    from modelyard.api.app import create_app
    from modelyard.settings import Settings

    app = create_app(Settings(data_dir=tmp_path / "d", db=sqlite_url, max_json_body=64 * 1024))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("path", TRAVERSALS)
def test_bad_paths_are_refused(sq: TestClient, path: str) -> None:
    sq.post("/api/v1/models", json={"name": "m"})
    digest = upload(sq, b"x")
    r = sq.post(
        "/api/v1/models/default/m/versions",
        json={"files": [{"path": path, "digest": digest, "size": 1}]},
    )
    assert_error(r, 400, "INVALID_PATH")


def test_manifest_shape_errors(sq: TestClient) -> None:
    sq.post("/api/v1/models", json={"name": "m"})
    d = upload(sq, b"x")
    url = "/api/v1/models/default/m/versions"
    dup = [{"path": "a", "digest": d, "size": 1}, {"path": "a", "digest": d, "size": 1}]
    assert_error(sq.post(url, json={"files": dup}), 400, "INVALID_MANIFEST")
    case = [{"path": "A", "digest": d, "size": 1}, {"path": "a", "digest": d, "size": 1}]
    assert_error(sq.post(url, json={"files": case}), 400, "INVALID_MANIFEST")
    nest = [{"path": "a", "digest": d, "size": 1}, {"path": "a/b", "digest": d, "size": 1}]
    assert_error(sq.post(url, json={"files": nest}), 400, "INVALID_MANIFEST")
    neg = [{"path": "a", "digest": d, "size": -1}]
    assert_error(sq.post(url, json={"files": neg}), 400, "INVALID_MANIFEST")
    assert_error(
        sq.post(url, json={"files": [{"path": "a", "digest": "zz", "size": 1}]}),
        400,
        "INVALID_DIGEST",
    )
    assert_error(sq.post(url, json={"metrics": {"acc": "high"}}), 400, "INVALID_METRIC")
    nan = sq.post(
        url, content=b'{"metrics": {"acc": NaN}}', headers={"content-type": "application/json"}
    )
    assert_error(nan, 400, "INVALID_METRIC")
    assert_error(sq.post(url, json={"tags": {"bad key!": "x"}}), 400, "INVALID_KEY")
    assert_error(sq.post(url, json={"framework": "py torch"}), 400, "INVALID_INPUT")


def test_client_uris_are_never_dereferenced(sq: TestClient) -> None:
    """file:// and http:// strings are opaque text: stored as given, never opened."""
    sq.post("/api/v1/models", json={"name": "m"})
    r = sq.post(
        "/api/v1/models/default/m/versions",
        json={
            "lineage": {
                "datasets": ["file:///etc/passwd", {"uri": "http://x/y"}],
                "code_ref": "file:///etc/shadow",
            }
        },
    )
    assert r.status_code == 201
    assert r.json()["lineage"]["datasets"][0] == "file:///etc/passwd"
    assert r.json()["files"] == []
    # Paths in a manifest that look like URIs are just (invalid) logical names.
    d = upload(sq, b"x")
    r = sq.post(
        "/api/v1/models/default/m/versions",
        json={"files": [{"path": "file:///etc/passwd", "digest": d, "size": 1}]},
    )
    assert_error(r, 400, "INVALID_PATH")


def test_framework_errors_use_the_body(sq: TestClient) -> None:
    assert_error(sq.get("/no/such/route"), 404, "ROUTE_NOT_FOUND")
    assert_error(sq.delete("/api/v1/namespaces"), 405, "METHOD_NOT_ALLOWED")
    r = sq.post(
        "/api/v1/models", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(r, 422, "VALIDATION_ERROR")
    assert_error(sq.post("/api/v1/models", json={"nme": "x"}), 422, "VALIDATION_ERROR")
    assert_error(
        sq.get("/api/v1/search/versions", params={"page_size": 0}), 422, "VALIDATION_ERROR"
    )
    assert_error(
        sq.get("/api/v1/search/versions", params={"filter": "tags.a = "}), 400, "INVALID_FILTER"
    )
    assert_error(
        sq.get("/api/v1/search/versions", params={"page_token": "garbage"}), 400, "INVALID_CURSOR"
    )


def test_oversized_bodies(sq: TestClient) -> None:
    big = {"name": "m", "description": "x" * 70_000}
    assert_error(sq.post("/api/v1/models", json=big), 413, "PAYLOAD_TOO_LARGE")

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b" " * 8192

    r = sq.post("/api/v1/models", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413, "PAYLOAD_TOO_LARGE")
    # The blob routes that stream are exempt; their JSON sibling is not.
    many = {"digests": ["0" * 64] * 2000}
    assert_error(sq.post("/api/v1/blobs/missing", json=many), 413, "PAYLOAD_TOO_LARGE")


def test_unicode_digits_are_not_numbers(sq: TestClient) -> None:
    """``"²".isdigit()`` is true but ``int("²")`` fails: such input must be a
    clear 4xx, never a 500."""
    data = b"abc"
    r = sq.put(f"/api/v1/blobs/{sha(data)}", content=data, headers={"content-length": b"\xb2"})
    assert r.status_code < 500
    assert sq.get("/api/v1/models/default/m/versions/\u00b2").status_code < 500
    assert sq.get("/api/v1/audit", params={"since": "\u00b2"}).status_code == 400
    assert sq.get("/api/v1/audit", params={"page_token": "\u00b2"}).status_code == 400


def test_blob_limit(tmp_path, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    from modelyard.api.app import create_app
    from modelyard.settings import Settings

    app = create_app(Settings(data_dir=tmp_path / "d", db=sqlite_url, max_blob_size=10))
    with TestClient(app, raise_server_exceptions=False) as c:
        data = b"y" * 11
        assert_error(c.put(f"/api/v1/blobs/{sha(data)}", content=data), 413, "PAYLOAD_TOO_LARGE")

        def gen():  # type: ignore[no-untyped-def]
            yield data

        assert_error(c.put(f"/api/v1/blobs/{sha(data)}", content=gen()), 413, "PAYLOAD_TOO_LARGE")
        assert_error(c.post("/api/v1/blobs", content=gen()), 413, "PAYLOAD_TOO_LARGE")
        assert_error(c.post("/api/v1/blobs", content=data), 413, "PAYLOAD_TOO_LARGE")
        assert c.head(f"/api/v1/blobs/{sha(data)}").status_code == 404
        ok = b"z" * 10
        r = c.post("/api/v1/blobs", content=ok)
        assert r.status_code == 201 and r.json() == {"digest": sha(ok), "size": 10}
        assert c.head(f"/api/v1/blobs/{sha(ok)}").status_code == 200
        # The same bytes again are stored once.
        assert c.post("/api/v1/blobs", content=ok).json()["digest"] == sha(ok)
    leftovers = list((tmp_path / "d" / "blobs" / "tmp").iterdir())
    assert leftovers == []
