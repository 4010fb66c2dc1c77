"""Over REST v1 (issue 14): the namespace policy's ``bundle_breaks: flag``
(a breaking model alias move applies and the bundle shows what it broke) and
``DELETE /api/v1/bundles/{ns}/{name}`` (admin only; 409 while aliased unless
forced)."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from modelyard.api.app import create_app
from tests.auth_helpers import ADMIN_TOKEN, auth_settings, bearer, make_user
from tests.helpers import assert_error, push

B = "/api/v1/bundles/default"
M = "/api/v1/models/default"
POLICY = "/api/v1/namespaces/default/policy"
DET = {"outputs": [{"name": "boxes", "dtype": "float32", "shape": [-1, 4]}]}
CLS = {"inputs": [{"name": "rois", "dtype": "float32", "shape": [-1, 4]}]}
EDGE = {"from": "detector", "to": "classifier", "mapping": {"boxes": "rois"}}


def _pipe(client: TestClient) -> None:
    push(client, "det", {"m": b"d"}, signature=DET)
    push(client, "cls", {"m": b"c"}, signature=CLS)
    assert client.put(f"{M}/det/aliases/production", json={"version": "1"}).is_success
    body = {
        "name": "pipe",
        "roles": {"detector": "det@production", "classifier": "cls/1"},
        "edges": [EDGE],
    }
    assert client.post(B, json=body).status_code == 201
    assert client.post(f"{B}/pipe/versions", json={}).status_code == 201


def test_flagged_breaking_move_over_rest(client: TestClient) -> None:
    _pipe(client)
    push(client, "det", {"m": b"d2"}, signature={"outputs": [{"name": "boxes", "dtype": "int8"}]})
    err = assert_error(
        client.put(f"{M}/det/aliases/production", json={"version": "2"}), 409, "BUNDLE_INCOMPATIBLE"
    )
    assert err["details"]["bundles"][0]["mode"] == "refuse"
    assert_error(client.put(POLICY, json={"bundle_breaks": "sometimes"}), 400, "INVALID_POLICY")
    r = client.put(POLICY, json={"bundle_breaks": "flag"})
    assert r.status_code == 200, r.text
    assert r.json()["policy"]["bundle_breaks"] == "flag"
    assert_error(
        client.put(f"{M}/det/policy", json={"bundle_breaks": "flag"}), 400, "INVALID_POLICY"
    )
    r = client.put(f"{M}/det/aliases/production", json={"version": "2", "reason": "int8 det"})
    assert r.status_code == 200, r.text
    [flag] = client.get(f"{B}/pipe").json()["incompatible"]
    assert flag["alias"] == "default/det@production" and flag["ref"] == "default/det/2"
    assert flag["mode"] == "flag" and flag["at"].endswith("Z")
    problems = [m["problem"] for r in flag["roles"] for m in r["mismatches"]]
    assert "detector.boxes is int8 but classifier.rois takes float32" in problems
    assert client.get(B).json()["bundles"][0]["incompatible"] == [flag]
    audit = client.get("/api/v1/audit", params={"action": "bundle.incompatible"}).json()
    [event] = audit["entries"]
    assert event["target"] == "bundle:default/pipe" and event["action"] == "bundle.incompatible"


def test_delete_bundle_route(client: TestClient) -> None:
    _pipe(client)
    assert client.put(f"{B}/pipe/aliases/production", json={"version": 1}).status_code == 200
    err = assert_error(client.delete(f"{B}/pipe"), 409, "BUNDLE_HAS_ALIASES")
    assert err["details"]["aliases"] == {"production": 1}
    assert client.delete(f"{B}/pipe", params={"force": "true", "reason": "gone"}).status_code == 204
    assert_error(client.get(f"{B}/pipe"), 404, "BUNDLE_NOT_FOUND")
    assert_error(client.get(f"{B}/pipe/versions/1"), 404, "BUNDLE_NOT_FOUND")
    assert_error(client.delete(f"{B}/pipe"), 404, "BUNDLE_NOT_FOUND")
    assert client.get(f"{M}/det/versions/1").status_code == 200
    assert client.delete(f"{M}/cls", params={"force": "true"}).status_code == 204


def test_only_admins_delete_bundles(tmp_path: Path, db_url: str) -> None:
    with TestClient(create_app(auth_settings(tmp_path, db_url))) as client:
        admin = bearer(ADMIN_TOKEN)
        writer = bearer(make_user(client, "wri", {"default": "writer"}))
        client.headers.update(admin)
        _pipe(client)
        assert_error(client.delete(f"{B}/pipe", headers=writer), 403, "PERMISSION_DENIED")
        assert client.get(f"{B}/pipe", headers=admin).status_code == 200
        assert client.delete(f"{B}/pipe", headers=admin).status_code == 204
