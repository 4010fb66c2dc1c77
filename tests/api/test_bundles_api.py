"""Bundles over REST v1 (issue 14): create, pin, read, and the error bodies."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.helpers import assert_error, push

B = "/api/v1/bundles/default"
DET = {"outputs": [{"name": "boxes", "dtype": "float32", "shape": [-1, 4]}]}
CLS = {"inputs": [{"name": "rois", "dtype": "float32", "shape": [-1, 4]}]}


def test_bundle_routes(client: TestClient) -> None:
    push(client, "det", {"m": b"d"}, signature=DET)
    push(client, "cls", {"m": b"c"}, signature=CLS)
    body = {
        "name": "pipe",
        "roles": {"detector": "det/1", "classifier": "cls@latest"},
        "edges": [{"from": "detector", "to": "classifier", "mapping": {"boxes": "rois"}}],
    }
    r = client.post(B, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["roles"] == {"detector": "default/det/1", "classifier": "default/cls@latest"}
    assert_error(client.post(B, json=body), 409, "BUNDLE_ALREADY_EXISTS")
    assert [b["name"] for b in client.get(B).json()["bundles"]] == ["pipe"]
    r = client.post(f"{B}/pipe/versions", json={})
    assert r.status_code == 201, r.text
    bv = r.json()
    assert bv["ref"] == "default/pipe/1"
    assert bv["members"]["classifier"]["ref"] == "default/cls/1"
    assert bv["members"]["detector"]["files"][0]["path"] == "m"
    assert client.get(f"{B}/pipe/versions/latest").json()["version"] == 1
    assert client.get(f"{B}/pipe").json()["latest_version"] == 1
    # The classifier's input changes dtype: the next pin is refused, spelled out.
    push(client, "cls", {"m": b"c2"}, signature={"inputs": [{"name": "rois", "dtype": "int8"}]})
    err = assert_error(client.post(f"{B}/pipe/versions", json={}), 409, "BUNDLE_INCOMPATIBLE")
    assert "detector.boxes is float32 but classifier.rois takes int8" in err["message"]
    assert_error(client.get(f"{B}/pipe/versions/7"), 404, "BUNDLE_VERSION_NOT_FOUND")
    assert_error(client.get(f"{B}/pipe/versions/prod"), 404, "ALIAS_NOT_FOUND")
    assert_error(client.get(f"{B}/pipe/versions/Bad%20Alias"), 400, "INVALID_ALIAS")
    assert_error(client.get(f"{B}/nope"), 404, "BUNDLE_NOT_FOUND")
    r = client.post(B, json={"name": "x", "roles": {"a": "det/1"}, "edges": [{"from": "a"}]})
    assert r.status_code == 422
    r = client.post(B, json={"name": "y", "roles": {"A B": "det/1"}})
    assert_error(r, 400, "INVALID_BUNDLE")
