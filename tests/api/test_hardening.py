"""Bad input from an adversarial pass (issue 9): every answer is a clean 4xx
in the one error body, and no answer points off the server."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event
from starlette.testclient import TestClient

from modelyard.api.app import create_app
from modelyard.api.errors import error_response
from modelyard.api.middleware import lone_surrogate
from modelyard.composition import build_services
from modelyard.domain.errors import InvalidInput
from modelyard.domain.identity import Principal
from modelyard.service.registry import VersionSpec
from modelyard.service.validation import Limits, check_json
from modelyard.settings import Settings
from modelyard.store.blobs.local import LocalBlobStore
from tests.conftest_server import start_server, stop_server
from tests.helpers import assert_error, upload


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


def _nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_metadata_nesting_has_a_documented_limit(sq: TestClient) -> None:
    """Metadata about 252+ levels deep was a 500 while the event was written."""
    for levels in (260, 300):
        r = sq.post(
            "/api/v1/models", json={"name": f"deep{levels}", "metadata": {"a": _nested(levels)}}
        )
        err = assert_error(r, 400, "NESTING_TOO_DEEP")
        assert err["details"] == {"field": "metadata", "limit": 32}
    # The object itself is level 1: 31 more levels fit, 32 do not.
    ok = sq.post("/api/v1/models", json={"name": "deep31", "metadata": {"a": _nested(31)}})
    assert ok.status_code == 201, ok.text
    assert_error(
        sq.post("/api/v1/models", json={"name": "deep32", "metadata": {"a": _nested(32)}}),
        400,
        "NESTING_TOO_DEEP",
    )
    url = "/api/v1/models/default/deep31/versions"
    for field, value in (
        ("signature", {"inputs": _nested(300)}),
        ("metadata", {"a": {"b": _nested(300)}}),
    ):
        assert_error(sq.post(url, json={field: value}), 400, "NESTING_TOO_DEEP")
    lineage = {"datasets": [{"a": _nested(300)}]}
    assert_error(sq.post(url, json={"lineage": lineage}), 400, "NESTING_TOO_DEEP")
    patch = sq.patch("/api/v1/models/default/deep31", json={"metadata": {"a": _nested(300)}})
    assert_error(patch, 400, "NESTING_TOO_DEEP")


def test_manifest_sizes_beyond_64_bits_are_refused(tmp_path: Path, db_url: str) -> None:
    """On both backends (PostgreSQL's BIGINT too): 400, never a 500."""
    app = create_app(Settings(data_dir=tmp_path / "d", db=db_url))
    with TestClient(app, raise_server_exceptions=False) as c:
        c.post("/api/v1/models", json={"name": "m"})
        digest = upload(c, b"x")
        url = "/api/v1/models/default/m/versions"
        for size in (1 << 63, 1 << 64, 10**400, -1):
            files = [{"path": "a", "digest": digest, "size": size}]
            assert_error(c.post(url, json={"files": files}), 400, "INVALID_MANIFEST")
            draft = c.post(url, json={"draft": True}).json()["version"]
            commit = c.post(f"{url}/{draft}/files", json={"files": files})
            assert_error(commit, 400, "INVALID_MANIFEST")
        assert_error(c.post(url, json={"metadata": {"n": 1 << 64}}), 400, "INVALID_JSON")
        ok = c.post(url, json={"files": [{"path": "a", "digest": digest, "size": 1}]})
        assert ok.status_code == 201, ok.text


def test_counts_and_sizes_have_limits(sq: TestClient) -> None:
    """100k metadata keys, 10 MB of metadata and a 100k-item delete_tags
    were accepted; each is now a 400 with a stable code naming the limit."""
    assert sq.post("/api/v1/models", json={"name": "m"}).status_code == 201
    many = {f"k{i}": i for i in range(1001)}
    err = assert_error(
        sq.post("/api/v1/models", json={"name": "m2", "metadata": many}), 400, "TOO_MANY_ITEMS"
    )
    assert err["details"] == {"field": "metadata", "limit": 1000}
    nested_many = {"a": {f"k{i}": i for i in range(1001)}}
    assert_error(
        sq.post("/api/v1/models", json={"name": "m2", "metadata": nested_many}),
        400,
        "TOO_MANY_ITEMS",
    )
    big = {"blob": "x" * (256 * 1024)}
    err = assert_error(
        sq.post("/api/v1/models", json={"name": "m2", "metadata": big}), 400, "VALUE_TOO_LARGE"
    )
    assert err["details"] == {"field": "metadata", "limit": 256 * 1024}
    drop = [f"t{i}" for i in range(1001)]
    for url in ("/api/v1/models/default/m",):
        err = assert_error(sq.patch(url, json={"delete_tags": drop}), 400, "TOO_MANY_ITEMS")
        assert err["details"]["field"] == "delete_tags"
    version = sq.post("/api/v1/models/default/m/versions", json={}).json()["version"]
    r = sq.patch(f"/api/v1/models/default/m/versions/{version}", json={"delete_tags": drop})
    assert_error(r, 400, "TOO_MANY_ITEMS")
    r = sq.post(
        "/api/v1/models/default/m/versions", json={"tags": {f"t{i}": "v" for i in range(1001)}}
    )
    assert_error(r, 400, "TOO_MANY_ITEMS")
    r = sq.post("/api/v1/models", json={"name": "m3", "description": "x" * 65537})
    assert_error(r, 400, "VALUE_TOO_LARGE")
    # Within the limits all is well.
    fine = {
        "metadata": {f"k{i}": "v" * 200 for i in range(1000)},
        "tags": {f"t{i}": "v" for i in range(1000)},
    }
    assert sq.post("/api/v1/models/default/m/versions", json=fine).status_code == 201
    r = sq.patch("/api/v1/models/default/m", json={"delete_tags": drop[:1000]})
    assert r.status_code == 200, r.text


def test_limits_come_from_settings(tmp_path: Path, sqlite_url: str) -> None:
    s = Settings(
        data_dir=tmp_path / "d",
        db=sqlite_url,
        max_map_keys=3,
        max_metadata_bytes=2048,
        max_metadata_depth=2,
    )
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        assert_error(
            c.post("/api/v1/models", json={"name": "m", "metadata": {"a": [[1]]}}),
            400,
            "NESTING_TOO_DEEP",
        )
        assert_error(
            c.post(
                "/api/v1/models", json={"name": "m", "tags": {"a": "", "b": "", "c": "", "d": ""}}
            ),
            400,
            "TOO_MANY_ITEMS",
        )
        assert_error(
            c.post("/api/v1/models", json={"name": "m", "metadata": {"a": "x" * 2048}}),
            400,
            "VALUE_TOO_LARGE",
        )
        ok = c.post("/api/v1/models", json={"name": "m", "metadata": {"a": [1], "b": "x"}})
        assert ok.status_code == 201, ok.text


def test_metadata_writes_on_a_full_database_are_507(tmp_path: Path, sqlite_url: str) -> None:
    """SQLite's "database or disk is full" is the domain's STORAGE_FULL (507),
    as full blob writes are. ``max_page_count`` caps the database file the
    way a full disk does: SQLite answers SQLITE_FULL at the page it cannot add."""
    app = create_app(Settings(data_dir=tmp_path / "d", db=sqlite_url))
    engine = app.state.registry.db.engine
    cap: list[int] = []

    def capped(dbapi_conn: Any, _record: Any) -> None:
        if cap:
            dbapi_conn.execute(f"PRAGMA max_page_count={cap[0]}")

    event.listen(engine, "connect", capped)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.post("/api/v1/models", json={"name": "m"}).status_code == 201
        with engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        cap.append(int(pages) + 4)
        engine.dispose()  # pooled connections were opened without the cap
        meta = {f"k{i}": "x" * 200 for i in range(1000)}
        model = c.post("/api/v1/models", json={"name": "big", "metadata": meta})
        assert_error(model, 507, "STORAGE_FULL")
        version = c.post("/api/v1/models/default/m/versions", json={"metadata": meta})
        assert_error(version, 507, "STORAGE_FULL")
        patch = c.patch("/api/v1/models/default/m", json={"metadata": meta})
        assert_error(patch, 507, "STORAGE_FULL")
        # Nothing partial was kept, reads go on, and with room again writes do.
        assert c.get("/api/v1/models/default/big").status_code == 404
        assert c.get("/api/v1/models/default/m").json()["metadata"] == {}
        cap[0] = 1 << 30
        engine.dispose()
        assert c.post("/api/v1/models", json={"name": "big", "metadata": meta}).status_code == 201


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (needs the right to mount: root here and in CI)."""
    where = tmp_path / "tiny"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace')}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_metadata_writes_on_a_really_full_disk_are_507(tiny_fs: Path) -> None:
    app = create_app(Settings(data_dir=tiny_fs / "d"))
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.post("/api/v1/models", json={"name": "m"}).status_code == 201
        stat = os.statvfs(tiny_fs)
        filler = tiny_fs / "filler"
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            f.write(b"\0" * (stat.f_bavail * stat.f_bsize - 16384))
        meta = {f"k{i}": "x" * 200 for i in range(1000)}
        r = c.post("/api/v1/models", json={"name": "big", "metadata": meta})
        assert_error(r, 507, "STORAGE_FULL")
        filler.unlink()
        assert c.get("/api/v1/models/default/m").status_code == 200
        assert c.post("/api/v1/models", json={"name": "big", "metadata": meta}).status_code == 201


_DYING_UPLOAD = """
import sys, time
from pathlib import Path
from modelyard.store.blobs.local import LocalBlobStore
w = LocalBlobStore(Path(sys.argv[1])).writer(None)
w.write(b"x" * (1 << 20))
print("written", flush=True)
time.sleep(120)
"""


def _temp_files(root: Path) -> set[Path]:
    return set((root / "tmp").glob("upload-*"))


def test_dead_uploads_temp_files_are_swept_while_the_server_runs(tmp_path: Path) -> None:
    """A temp file left by a process killed mid-upload goes once uploads go
    on, without a restart; the temp file of a live upload stays, however old."""
    data = tmp_path / "server"
    proc, url = start_server(data)
    try:
        root = data / "blobs"
        dying = subprocess.Popen(
            [sys.executable, "-c", _DYING_UPLOAD, str(root)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert dying.stdout is not None and dying.stdout.readline() == b"written\n"
        (dead,) = _temp_files(root)
        dying.kill()  # SIGKILL: no clean-up runs
        dying.wait(10)
        dying.stdout.close()
        hour_ago = time.time() - 3600
        os.utime(dead, (hour_ago, hour_ago))

        # A live upload over HTTP, its body cut in two.
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        first, second = b"a" * 70_000, b"b" * 70_000
        conn.putrequest("POST", "/api/v1/blobs")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        conn.send(b"%x\r\n%s\r\n" % (len(first), first))
        deadline = time.monotonic() + 30
        while dead.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not dead.exists(), "the dead upload's temp file is still there"
        (live,) = _temp_files(root)
        # Another process sharing the directory sweeps too: the live file is
        # held, so it stays even when it looks an hour old.
        os.utime(live, (hour_ago, hour_ago))
        assert LocalBlobStore(root).clean_stale_uploads() == 0
        assert live.exists()
        conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(second), second))
        r = conn.getresponse()
        assert r.status == 201, r.read()
        assert json.loads(r.read())["digest"] == hashlib.sha256(first + second).hexdigest()
        conn.close()
        assert _temp_files(root) == set()
    finally:
        stop_server(proc)


def test_embedded_callers_cannot_store_lone_surrogates(tmp_path: Path, sqlite_url: str) -> None:
    """Python callers (the embedded SDK) pass ``str`` straight to the service:
    each text field refuses a lone surrogate with a 4xx-class domain error."""
    services = build_services(Settings(data_dir=tmp_path / "d", db=sqlite_url))
    svc = services.registry
    me = Principal.local()
    try:
        for kwargs in (
            {"description": "x\ud800"},
            {"tags": {"a": "x\udc00"}},
            {"metadata": {"a": {"b": "x\ud800"}}},
            {"metadata": {"a": {"b\ud800": 1}}},
        ):
            with pytest.raises(InvalidInput):
                svc.create_model("m", actor=me, **kwargs)
        svc.create_model("m", actor=me)
        with pytest.raises(InvalidInput):
            svc.create_version("m", VersionSpec(params={"p": "\ud800"}), actor=me)
    finally:
        services.close()


@pytest.mark.parametrize(
    ("body", "at"),
    [
        (b'{"x":NaN,"a":"\\ud800"}', 14),
        (b'{"x":NaN,"a":"\\u0041\\udc00"}', 20),
        (b'{"x":NaN,"a":"\\ud83d\\ude00"}', None),
        (b'{"x":NaN,"a":"\\\\ud800"}', None),
        (b'{"x":NaN,"a":"\xed\xb0\x80"}', 14),
        (b'{"a":"\\ud800', 6),
        (b'{"a":"\\uZZZZ"}', None),
    ],
)
def test_lone_surrogate_outside_what_orjson_parses(body: bytes, at: int | None) -> None:
    """Python's parser takes NaN, orjson does not: such text is scanned exactly."""
    assert lone_surrogate(body) == at


def test_brackets_and_colons_inside_strings_are_text() -> None:
    """The quick bounds over-count such text; the walk then decides."""
    check_json({"a": "[{" * 100, "b": ":" * 2000}, "metadata")
    with pytest.raises(InvalidInput) as info:
        check_json({"a": [[["x"]]]}, "metadata", Limits(max_metadata_depth=3))
    assert info.value.code == "NESTING_TOO_DEEP"
    with pytest.raises(InvalidInput) as info:
        check_json({"a": {"b": 1, "c": 2}}, "metadata", Limits(max_map_keys=1))
    assert info.value.code == "TOO_MANY_ITEMS"
    with pytest.raises(InvalidInput) as info:
        check_json({1: "x"}, "metadata")
    assert info.value.code == "INVALID_JSON"
