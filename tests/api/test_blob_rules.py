"""The one blob use case (``service/blobs.py``): the same rules on every door,
on every blob store backend (``store_url``: a local directory and S3)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from modelyard.client.backends import EmbeddedBackend
from modelyard.client.registry import Registry
from modelyard.domain.errors import ModelyardError
from modelyard.settings import Settings
from modelyard.store.blobs import open_blob_store
from tests.auth_helpers import ADMIN_TOKEN, auth_settings, bearer, make_user
from tests.helpers import assert_error, sha

ADMIN = bearer(ADMIN_TOKEN)

SRC = Path(__file__).resolve().parents[2] / "src" / "modelyard"


@pytest.fixture
def settings(tmp_path: Path, db_url: str, store_url: str) -> Settings:
    """This module's app settings: every database, every blob store backend."""
    return Settings(data_dir=tmp_path / "data", db=db_url, store=store_url)


def test_embedded_sdk_refuses_a_blob_over_the_limit_like_rest(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``max_blob_size`` holds in-process too, with REST's error code."""
    from modelyard.api.app import create_app
    from modelyard.settings import Settings

    data = b"y" * 11
    app = create_app(Settings(data_dir=tmp_path / "srv", db=sqlite_url, max_blob_size=10))
    with TestClient(app, raise_server_exceptions=False) as c:
        rest = c.post("/api/v1/blobs", content=data)
        assert_error(rest, 413, "PAYLOAD_TOO_LARGE")

    monkeypatch.setenv("MODELYARD_MAX_BLOB_SIZE", "10")
    src = tmp_path / "model"
    src.mkdir()
    (src / "big.bin").write_bytes(data)
    with Registry(tmp_path / "embedded", cache_dir=tmp_path / "cache") as reg:
        reg.create_model("m")
        with pytest.raises(ModelyardError) as caught:
            reg.push("m", src)
    assert caught.value.code == rest.json()["error"]["code"]
    assert caught.value.details == rest.json()["error"]["details"]
    # Nothing half-written is left behind, and a blob within the limit passes.
    assert list((tmp_path / "embedded" / "blobs" / "tmp").iterdir()) == []
    backend = EmbeddedBackend(tmp_path / "embedded")
    try:
        ok = tmp_path / "ok.bin"
        ok.write_bytes(b"z" * 10)
        assert backend.upload(ok, 10, None, digest=None) == sha(b"z" * 10)
    finally:
        backend.close()


def test_invalid_digests_get_one_answer_on_both_doors(tmp_path: Path, client: TestClient) -> None:
    bad = "A" * 64
    codes = {
        client.head(f"/api/v1/blobs/{bad}").status_code,
        client.put(f"/api/v1/blobs/{bad}", content=b"x").json()["error"]["code"],
        client.post("/api/v1/blobs/missing", json={"digests": [bad]}).json()["error"]["code"],
    }
    assert codes == {400, "INVALID_DIGEST"}
    backend = EmbeddedBackend(tmp_path / "embedded")
    try:
        for call in (
            lambda: backend.missing([bad]),
            lambda: backend.upload(tmp_path / "none", 1, None, digest=bad),
        ):
            with pytest.raises(ModelyardError) as caught:
                call()
            assert caught.value.code == "INVALID_DIGEST"
    finally:
        backend.close()


def _calls(file: Path, name: str) -> bool:
    tree = ast.parse(file.read_text())
    return any(
        isinstance(node, ast.Name | ast.Attribute)
        and (node.id if isinstance(node, ast.Name) else node.attr) == name
        for node in ast.walk(tree)
    )


def test_blob_rules_live_in_the_blob_service() -> None:
    """The routes and the SDK move bytes; digest, size and permission rules for
    blobs are ``service/blobs.py``'s alone."""
    doors = [*(SRC / "api").rglob("*.py"), SRC / "client" / "backends.py"]
    for name in ("validate_digest", "max_blob_size", "writes_somewhere", "writer"):
        offenders = [str(f.relative_to(SRC)) for f in doors if _calls(f, name)]
        allowed = {"client/backends.py", "api/app.py"} if name == "max_blob_size" else set()
        assert set(offenders) <= allowed, (name, offenders)
    assert _calls(SRC / "service" / "blobs.py", "validate_digest")
    assert not _calls(SRC / "service" / "registry.py", "validate_digest")


# -- the mount rule: knowing a digest is not enough (auth on) ------------------


@pytest.fixture
def mount(
    tmp_path: Path, db_url: str, store_url: str
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    """Auth on; namespaces alpha and beta, each with a model ``m``; alpha holds
    a blob in a version. Users: ``a`` writes alpha, ``b`` writes beta, ``ra``
    reads alpha and writes beta, ``ca`` consumes alpha and writes beta."""
    from modelyard.api.app import create_app

    app = create_app(auth_settings(tmp_path, db_url, store=store_url))
    with TestClient(app, raise_server_exceptions=False) as c:
        for ns in ("alpha", "beta"):
            r = c.post("/api/v1/namespaces", json={"name": ns}, headers=ADMIN)
            assert r.status_code == 201, r.text
            r = c.post("/api/v1/models", json={"name": "m", "namespace": ns}, headers=ADMIN)
            assert r.status_code == 201, r.text
        users = {
            "a": make_user(c, "a", {"alpha": "writer"}),
            "b": make_user(c, "b", {"beta": "writer"}),
            "ra": make_user(c, "ra", {"alpha": "reader", "beta": "writer"}),
            "ca": make_user(c, "ca", {"alpha": "consumer", "beta": "writer"}),
        }
        r = c.put(f"/api/v1/blobs/{SECRET_SHA}", content=SECRET, headers=bearer(users["a"]))
        assert r.status_code == 201, r.text
        r = c.post("/api/v1/models/alpha/m/versions", json=_manifest(), headers=bearer(users["a"]))
        assert r.status_code == 201, r.text
        yield c, {name: bearer(token) for name, token in users.items()}


SECRET = b"alpha's weights"
SECRET_SHA = sha(SECRET)


def _manifest(digest: str = SECRET_SHA, size: int = len(SECRET)) -> dict[str, Any]:
    return {"files": [{"path": "w.bin", "digest": digest, "size": size}]}


def test_a_writer_cannot_reference_another_namespaces_blob(
    mount: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    c, who = mount
    r = c.post("/api/v1/models/beta/m/versions", json=_manifest(), headers=who["b"])
    err = assert_error(r, 422, "BLOB_MISSING")
    assert err["details"] == {"path": "w.bin", "digest": SECRET_SHA}
    # A wrong size says nothing more: the blob is missing to this caller.
    r = c.post("/api/v1/models/beta/m/versions", json=_manifest(size=3), headers=who["b"])
    assert_error(r, 422, "BLOB_MISSING")
    # The draft-then-commit path holds the same rule.
    r = c.post("/api/v1/models/beta/m/versions", json={"draft": True}, headers=who["b"])
    assert r.status_code == 201, r.text
    r = c.post("/api/v1/models/beta/m/versions/1/files", json=_manifest(), headers=who["b"])
    assert_error(r, 422, "BLOB_MISSING")


def test_existence_is_not_revealed_across_namespaces(
    mount: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    c, who = mount
    absent = sha(b"nobody has this")
    assert c.head(f"/api/v1/blobs/{SECRET_SHA}", headers=who["b"]).status_code == 404
    r = c.post("/api/v1/blobs/missing", json={"digests": [SECRET_SHA, absent]}, headers=who["b"])
    assert r.json() == {"missing": [SECRET_SHA, absent]}
    # Claiming the digest with the right size alone is not an upload: the
    # bytes are read and verified, and the answer looks like a first upload.
    r = c.put(
        f"/api/v1/blobs/{SECRET_SHA}",
        content=b"x" * len(SECRET),
        headers={**who["b"], "content-length": str(len(SECRET))},
    )
    assert_error(r, 422, "DIGEST_MISMATCH")
    assert c.head(f"/api/v1/blobs/{SECRET_SHA}", headers=who["b"]).status_code == 404
    # Its uploader and readers of a version listing it see it.
    for name in ("a", "ra"):
        assert c.head(f"/api/v1/blobs/{SECRET_SHA}", headers=who[name]).status_code == 200
        r = c.post("/api/v1/blobs/missing", json={"digests": [SECRET_SHA]}, headers=who[name])
        assert r.json() == {"missing": []}


def test_uploading_the_bytes_makes_them_usable(
    mount: tuple[TestClient, dict[str, dict[str, str]]], store_url: str
) -> None:
    c, who = mount
    r = c.put(f"/api/v1/blobs/{SECRET_SHA}", content=SECRET, headers=who["b"])
    assert r.status_code == 201, r.text
    assert r.json() == {"digest": SECRET_SHA, "size": len(SECRET), "created": True}
    assert c.head(f"/api/v1/blobs/{SECRET_SHA}", headers=who["b"]).status_code == 200
    r = c.post("/api/v1/models/beta/m/versions", json=_manifest(), headers=who["b"])
    assert r.status_code == 201, r.text
    r = c.get("/api/v1/models/beta/m/versions/1/files/w.bin", headers=who["b"])
    assert r.content == SECRET
    # Sent again, the bytes are known to this caller now: not read twice.
    r = c.put(f"/api/v1/blobs/{SECRET_SHA}", content=SECRET, headers=who["b"])
    assert r.status_code == 200 and r.json()["created"] is False
    # Stored once.
    store = open_blob_store(store_url)
    stored = [b"".join(store.iter_range(b.digest)) for b in store.iter_blobs()]
    assert stored == [SECRET]


def test_the_unnamed_upload_records_its_uploader(
    mount: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    c, who = mount
    r = c.post("/api/v1/blobs", content=SECRET, headers=who["b"])
    assert r.status_code == 201 and r.json()["digest"] == SECRET_SHA
    r = c.post("/api/v1/models/beta/m/versions", json=_manifest(), headers=who["b"])
    assert r.status_code == 201, r.text


def test_a_reader_may_mount_what_it_can_read(
    mount: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    """``ra`` reads alpha and writes beta: it may reference alpha's blob in beta
    without sending the bytes (it could download them anyway)."""
    c, who = mount
    r = c.post("/api/v1/models/beta/m/versions", json=_manifest(), headers=who["ra"])
    assert r.status_code == 201, r.text
    assert r.json()["files"][0]["digest"] == SECRET_SHA


def test_a_consumer_sees_only_the_production_views_blobs(
    mount: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    """A consumer of alpha reads only what the production policy lets through:
    alpha/m/1 is ``ready``, not published, so its blob stays hidden."""
    c, who = mount
    r = c.post("/api/v1/models/beta/m/versions", json=_manifest(), headers=who["ca"])
    assert_error(r, 422, "BLOB_MISSING")
    r = c.post("/api/v1/models/alpha/m/versions/1/publish", headers=ADMIN)
    assert r.status_code == 200, r.text
    r = c.post("/api/v1/models/beta/m/versions", json=_manifest(), headers=who["ca"])
    assert r.status_code == 201, r.text


def test_with_auth_off_every_stored_blob_is_visible(client: TestClient) -> None:
    """Everyone is the superuser ``anonymous``: nothing changes, nothing is recorded."""
    data = b"shared"
    assert client.put(f"/api/v1/blobs/{sha(data)}", content=data).status_code == 201
    assert client.head(f"/api/v1/blobs/{sha(data)}").status_code == 200
    r = client.post("/api/v1/blobs/missing", json={"digests": [sha(data)]})
    assert r.json() == {"missing": []}
    r = client.put(f"/api/v1/blobs/{sha(data)}", content=data)
    assert r.status_code == 200 and r.json()["created"] is False


def test_the_embedded_sdk_keeps_the_mount_rule(tmp_path: Path) -> None:
    """An embedded registry acting as a real principal gets the server's answers."""
    from modelyard.domain.identity import Principal, Role

    data_dir = tmp_path / "e"
    weights = tmp_path / "w.bin"
    weights.write_bytes(SECRET)

    def as_writer_of(name: str, ns: str) -> EmbeddedBackend:
        return EmbeddedBackend(
            data_dir, actor=Principal(name, roles={ns: frozenset({Role.WRITER})})
        )

    owner = EmbeddedBackend(data_dir)
    a, b = as_writer_of("a", "alpha"), as_writer_of("b", "beta")
    try:
        for ns in ("alpha", "beta"):
            owner.svc.create_namespace(ns, actor=owner.actor)
            owner.create_model(ns, "m", {})
        assert a.upload(weights, len(SECRET), None, digest=SECRET_SHA) == SECRET_SHA
        a.create_version("alpha", "m", _manifest(), None)
        assert b.missing([SECRET_SHA]) == [SECRET_SHA]
        with pytest.raises(ModelyardError) as caught:
            b.create_version("beta", "m", _manifest(), None)
        assert caught.value.code == "BLOB_MISSING"
        assert b.upload(weights, len(SECRET), None, digest=SECRET_SHA) == SECRET_SHA
        assert b.missing([SECRET_SHA]) == []
        assert b.create_version("beta", "m", _manifest(), None)["version"] == 1
    finally:
        for backend in (owner, a, b):
            backend.close()
