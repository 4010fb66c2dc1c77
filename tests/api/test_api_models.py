"""Models over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.helpers import assert_error, push


def test_create_get_list_update_model(client: TestClient) -> None:
    r = client.post(
        "/api/v1/models",
        json={
            "name": "fraud",
            "description": "card fraud",
            "tags": {"team": "risk"},
            "metadata": {"owner": "ana", "tier": 1},
        },
    )
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["namespace"] == "default" and m["name"] == "fraud"
    assert m["tags"] == {"team": "risk"} and m["metadata"] == {"owner": "ana", "tier": 1}
    assert m["latest_version"] is None

    assert client.get("/api/v1/models/default/fraud").json()["description"] == "card fraud"
    r = client.patch(
        "/api/v1/models/default/fraud",
        json={"tags": {"stage": "dev"}, "delete_tags": ["team"], "description": "new"},
    )
    assert r.status_code == 200
    assert r.json()["tags"] == {"stage": "dev"} and r.json()["description"] == "new"
    names = [m["name"] for m in client.get("/api/v1/models").json()["models"]]
    assert names == ["fraud"]


def test_model_errors(client: TestClient) -> None:
    assert_error(client.get("/api/v1/models/default/nope"), 404, "MODEL_NOT_FOUND")
    assert_error(client.get("/api/v1/models/nons/nope"), 404, "MODEL_NOT_FOUND")
    assert client.post("/api/v1/models", json={"name": "a"}).status_code == 201
    assert_error(client.post("/api/v1/models", json={"name": "a"}), 409, "MODEL_ALREADY_EXISTS")
    for bad in ("", "1abc", "a b", "../x", "a/b", "x" * 200, "é"):
        assert_error(client.post("/api/v1/models", json={"name": bad}), 400, "INVALID_NAME")
    assert_error(
        client.post("/api/v1/models", json={"name": "b", "namespace": "ghost"}),
        404,
        "NAMESPACE_NOT_FOUND",
    )
    assert_error(
        client.post("/api/v1/models", json={"name": "b", "tags": {"k": 1}}), 400, "INVALID_TAG"
    )


def test_namespaces(client: TestClient) -> None:
    assert client.post("/api/v1/namespaces", json={"name": "vision"}).status_code == 201
    assert_error(
        client.post("/api/v1/namespaces", json={"name": "vision"}), 409, "NAMESPACE_ALREADY_EXISTS"
    )
    names = {n["name"] for n in client.get("/api/v1/namespaces").json()["namespaces"]}
    assert names == {"default", "vision"}
    assert (
        client.post("/api/v1/models", json={"name": "det", "namespace": "vision"}).status_code
        == 201
    )
    assert client.get("/api/v1/models/vision/det").status_code == 200
    assert_error(client.get("/api/v1/models/default/det"), 404, "MODEL_NOT_FOUND")


def test_archive_and_delete(client: TestClient) -> None:
    push(client, "m", {"w.bin": b"abc"})
    r = client.post("/api/v1/models/default/m/archive")
    assert r.json()["archived"] is True
    r = client.post("/api/v1/models/default/m/versions", json={"files": []})
    assert_error(r, 409, "MODEL_ARCHIVED")
    client.post("/api/v1/models/default/m/restore")
    assert client.post("/api/v1/models/default/m/versions/1/publish").status_code == 200
    assert_error(client.delete("/api/v1/models/default/m"), 409, "MODEL_HAS_PUBLISHED_VERSIONS")
    assert client.delete("/api/v1/models/default/m?force=true").status_code == 204
    assert_error(client.get("/api/v1/models/default/m"), 404, "MODEL_NOT_FOUND")
    # The name is free again and numbering restarts.
    assert push(client, "m", {"w.bin": b"abc"})["version"] == 1


def test_delete_unpublished_model(client: TestClient) -> None:
    push(client, "tmp", {"a": b"1"})
    assert client.delete("/api/v1/models/default/tmp").status_code == 204
