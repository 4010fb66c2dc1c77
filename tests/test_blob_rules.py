"""The one blob use case (``service/blobs.py``): the same rules on every door."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.client.backends import EmbeddedBackend
from modelyard.client.registry import Registry
from modelyard.domain.errors import ModelyardError
from tests.helpers import assert_error, sha

SRC = Path(__file__).resolve().parent.parent / "src" / "modelyard"


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
