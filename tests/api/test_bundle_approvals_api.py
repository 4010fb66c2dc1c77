"""Bundle alias approval requests over REST v1 with auth on (issue 14): a
writer asks, the requester cannot approve, a reviewer's approval moves the
protected alias; reject, cancel, listing and the errors of each route."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from modelyard.api.app import create_app
from tests.auth_helpers import ADMIN_TOKEN, auth_settings, bearer, make_user
from tests.helpers import assert_error, push

B = "/api/v1/bundles/default"
M = "/api/v1/models/default"
DET = {"outputs": [{"name": "boxes", "dtype": "float32", "shape": [-1, 4]}]}
CLS = {"inputs": [{"name": "rois", "dtype": "float32", "shape": [-1, 4]}]}
EDGE = {"from": "detector", "to": "classifier", "mapping": {"boxes": "rois"}}


def test_bundle_approval_routes(tmp_path: Path, db_url: str) -> None:
    with TestClient(create_app(auth_settings(tmp_path, db_url))) as client:
        writer = bearer(make_user(client, "wri", {"default": "writer"}))
        reviewer = bearer(make_user(client, "rev", {"default": "reviewer"}))
        client.headers.update(bearer(ADMIN_TOKEN))
        for name, sig in (("det", DET), ("cls", CLS), ("det", DET)):
            push(client, name, {"m": name.encode() + b"x"}, signature=sig)
        for path in ("det/versions/1", "cls/versions/1", "det/versions/2"):
            assert client.post(f"{M}/{path}/publish").status_code == 200
        for name in ("det", "cls"):
            assert client.put(f"{M}/{name}/aliases/production", json={"version": "1"}).is_success
        body = {"name": "pipe", "roles": {"detector": "det/1", "classifier": "cls/1"}}
        assert client.post(B, json={**body, "edges": [EDGE]}).status_code == 201
        assert client.post(f"{B}/pipe/versions", json={}).status_code == 201
        roles = {"roles": {"detector": "det/2", "classifier": "cls/1"}}
        assert client.patch(f"{B}/pipe", json=roles).json()["version"] == 2
        assert client.put(f"{B}/pipe/aliases/production", json={"version": 1}).is_success
        policy = {"protected_aliases": ["production"], "required_approvals": 1}
        assert client.put("/api/v1/namespaces/default/policy", json=policy).is_success

        direct = client.put(f"{B}/pipe/aliases/production", json={"version": 2}, headers=writer)
        assert_error(direct, 409, "APPROVAL_REQUIRED")
        r = client.post(
            f"{B}/pipe/approvals",
            json={"version": 2, "alias": "production", "comment": "det 2"},
            headers=writer,
        )
        assert r.status_code == 201, r.text
        a = r.json()
        assert (a["ref"], a["bundle"], a["alias_from"], a["state"]) == (
            "default/pipe/2",
            "pipe",
            1,
            "pending",
        )
        again = client.post(
            f"{B}/pipe/approvals", json={"version": 2, "alias": "production"}, headers=writer
        )
        assert_error(again, 409, "APPROVAL_ALREADY_PENDING")
        listed = client.get(f"{B}/pipe/approvals", headers=reviewer).json()["approvals"]
        assert [x["id"] for x in listed] == [a["id"]]
        url = f"{B}/pipe/approvals/{a['id']}"
        assert_error(client.post(f"{url}/approve", headers=writer), 403, "PERMISSION_DENIED")
        assert_error(client.post(f"{url}/cancel", headers=reviewer), 403, "PERMISSION_DENIED")
        done = client.post(f"{url}/approve", json={"comment": "ok"}, headers=reviewer)
        assert done.status_code == 200, done.text
        assert done.json()["state"] == "applied" and done.json()["approvals"] == ["rev"]
        assert client.get(f"{B}/pipe").json()["aliases"] == {"production": 2}
        assert client.get(url, headers=writer).json()["reviews"][0]["comment"] == "ok"
        assert_error(client.post(f"{url}/reject", headers=reviewer), 409, "APPROVAL_NOT_PENDING")
        # Reject and cancel.
        back = client.post(
            f"{B}/pipe/approvals", json={"version": 1, "alias": "production"}, headers=writer
        ).json()
        rejected = client.post(
            f"{B}/pipe/approvals/{back['id']}/reject", json={"comment": "no"}, headers=reviewer
        )
        assert rejected.json()["state"] == "rejected"
        other = client.post(
            f"{B}/pipe/approvals", json={"version": 1, "alias": "production"}, headers=writer
        ).json()
        cancelled = client.post(f"{B}/pipe/approvals/{other['id']}/cancel", headers=writer)
        assert cancelled.json()["state"] == "cancelled"
        everything = client.get(f"{B}/pipe/approvals", params={"state": "all"}).json()
        assert [x["state"] for x in everything["approvals"]] == ["cancelled", "rejected", "applied"]
        assert client.get(f"{B}/pipe/approvals?state=open").status_code == 422
        assert_error(client.get(f"{B}/pipe/approvals/999"), 404, "APPROVAL_NOT_FOUND")
        assert_error(client.get(f"{B}/pipe/approvals/{2**70}"), 404, "APPROVAL_NOT_FOUND")
        assert client.get(f"{B}/pipe/approvals/x").status_code == 422
        assert_error(
            client.post(f"{B}/pipe/approvals", json={"version": 9, "alias": "production"}),
            404,
            "BUNDLE_VERSION_NOT_FOUND",
        )
        assert_error(
            client.post(f"{B}/nope/approvals", json={"version": 1, "alias": "production"}),
            404,
            "BUNDLE_NOT_FOUND",
        )
        audit = client.get("/api/v1/audit", params={"action": "bundle.approval_*"}).json()
        assert {e["action"] for e in audit["entries"]} >= {
            "bundle.approval_requested",
            "bundle.approval_approved",
            "bundle.approval_applied",
            "bundle.approval_rejected",
            "bundle.approval_cancelled",
        }
