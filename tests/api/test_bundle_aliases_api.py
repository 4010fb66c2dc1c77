"""Bundle aliases, bundle edits, the guard on followed model aliases and the
Idempotency-Key of attach_resources over REST v1 (issue 14)."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.helpers import assert_error, push, upload

B = "/api/v1/bundles/default"
M = "/api/v1/models/default"
DET = {"outputs": [{"name": "boxes", "dtype": "float32", "shape": [-1, 4]}]}
CLS = {"inputs": [{"name": "rois", "dtype": "float32", "shape": [-1, 4]}]}
EDGE = {"from": "detector", "to": "classifier", "mapping": {"boxes": "rois"}}


def _pipe(client: TestClient) -> None:
    push(client, "det", {"m": b"d"}, signature=DET)
    push(client, "cls", {"m": b"c"}, signature=CLS)
    client.put(f"{M}/det/aliases/production", json={"version": "1"})
    body = {
        "name": "pipe",
        "roles": {"detector": "det@production", "classifier": "cls/1"},
        "edges": [EDGE],
    }
    assert client.post(B, json=body).status_code == 201
    assert client.post(f"{B}/pipe/versions", json={}).status_code == 201


def test_bundle_alias_routes(client: TestClient) -> None:
    _pipe(client)
    r = client.put(f"{B}/pipe/aliases/production", json={"version": 1, "reason": "go"})
    assert r.status_code == 200, r.text
    assert r.json()["ref"] == "default/pipe/1" and r.json()["edges"] == [EDGE]
    got = client.get(f"{B}/pipe/versions/production").json()
    assert got["version"] == 1 and got["members"]["detector"]["ref"] == "default/det/1"
    assert client.get(f"{B}/pipe").json()["aliases"] == {"production": 1}
    r = client.put(f"{B}/pipe/aliases/production", json={"version": 1, "expected_version": 2})
    assert_error(r, 409, "ALIAS_CHANGED")
    assert_error(
        client.put(f"{B}/pipe/aliases/x", json={"version": 5}), 404, "BUNDLE_VERSION_NOT_FOUND"
    )
    assert client.put(f"{B}/pipe/aliases/x", json={"version": "a"}).status_code == 422
    assert client.delete(f"{B}/pipe/aliases/production?reason=bye").status_code == 204
    assert_error(client.delete(f"{B}/pipe/aliases/production"), 404, "ALIAS_NOT_FOUND")
    history = client.get(f"{B}/pipe/aliases/history").json()["history"]
    assert [(h["alias"], h["from_version"], h["to_version"], h["reason"]) for h in history] == [
        ("production", None, 1, "go"),
        ("production", 1, None, "bye"),
    ]
    assert client.get(f"{B}/pipe/aliases/history?alias=other").json()["history"] == []
    # Protected by the namespace policy: members must meet it; no deletion.
    r = client.put("/api/v1/namespaces/default/policy", json={"protected_aliases": ["production"]})
    assert r.status_code == 200, r.text
    err = assert_error(
        client.put(f"{B}/pipe/aliases/production", json={"version": 1}), 409, "POLICY_VIOLATION"
    )
    assert {v["role"] for v in err["details"]["violations"]} == {"detector", "classifier"}
    for name in ("det", "cls"):
        assert client.post(f"{M}/{name}/versions/1/publish").status_code == 200
    assert client.put(f"{B}/pipe/aliases/production", json={"version": 1}).status_code == 200
    assert_error(client.delete(f"{B}/pipe/aliases/production"), 409, "ALIAS_PROTECTED")


def test_bundle_edit_route(client: TestClient) -> None:
    _pipe(client)
    r = client.patch(f"{B}/pipe", json={"edges": [], "description": "loose"})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.json()["edges"] == []
    assert client.get(f"{B}/pipe/versions/1").json()["edges"] == [EDGE]
    bundle = client.get(f"{B}/pipe").json()
    assert bundle["description"] == "loose" and bundle["latest_version"] == 2
    push(client, "cls", {"m": b"c2"}, signature={"inputs": [{"name": "rois", "dtype": "int8"}]})
    r = client.patch(
        f"{B}/pipe", json={"roles": {"detector": "det/1", "classifier": "cls/2"}, "edges": [EDGE]}
    )
    err = assert_error(r, 409, "BUNDLE_INCOMPATIBLE")
    assert "detector.boxes is float32 but classifier.rois takes int8" in err["message"]
    assert client.get(f"{B}/pipe").json()["latest_version"] == 2
    assert client.patch(f"{B}/pipe", json={}).json()["version"] == 3  # a plain pin
    assert_error(client.patch(f"{B}/nope", json={"edges": []}), 404, "BUNDLE_NOT_FOUND")


def test_breaking_model_alias_move_is_refused_then_forced(client: TestClient) -> None:
    _pipe(client)
    push(client, "det", {"m": b"d2"}, signature={"outputs": [{"name": "boxes", "dtype": "int8"}]})
    r = client.put(f"{M}/det/aliases/production", json={"version": "2"})
    err = assert_error(r, 409, "BUNDLE_INCOMPATIBLE")
    assert "bundle default/pipe role detector" in err["message"]
    edges = {m.get("edge") for m in err["details"]["bundles"][0]["mismatches"]}
    assert "detector->classifier" in edges
    r = client.put(f"{M}/det/aliases/production", json={"version": "2", "force": True})
    assert r.status_code == 200, r.text
    assert client.get(f"{M}/det/versions/production").json()["version"] == 2


def test_attach_resources_idempotency_key(client: TestClient) -> None:
    push(client, "det", {"model.onnx": b"weights"})
    client.put(f"{M}/det/aliases/production", json={"version": "1"})
    digest = upload(client, b'{"t": 1}')
    body = {
        "resources": [{"name": "thresholds.json", "digest": digest, "size": 8}],
        "alias": "production",
    }
    url = f"{M}/det/versions/production/resources"
    h = {"Idempotency-Key": "res-1"}
    a = client.post(url, json=body, headers=h)
    assert a.status_code == 201, a.text
    # The replay names the same source text although @production moved: same answer.
    b = client.post(url, json=body, headers=h)
    assert b.status_code == 201 and b.json()["version"] == a.json()["version"] == 2
    assert len(client.get(f"{M}/det/versions").json()["versions"]) == 2
    other = {**body, "reason": "another"}
    assert_error(client.post(url, json=other, headers=h), 409, "IDEMPOTENCY_KEY_REUSED")
    # Without a key, or with another, the call makes the next version.
    c = client.post(url, json=body, headers={"Idempotency-Key": "res-2"})
    assert c.status_code == 201 and c.json()["version"] == 3
    assert len(client.get(f"{M}/det/versions").json()["versions"]) == 3
