"""Roles on the governance routes, and the production view under a production policy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.api.app import create_app
from tests.auth_helpers import ADMIN_TOKEN, auth_settings, bearer, make_user
from tests.helpers import assert_error, sha

ADMIN = bearer(ADMIN_TOKEN)
V = "/api/v1/models/default"


@pytest.fixture
def c(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    app = create_app(auth_settings(tmp_path, db_url))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _version(c: TestClient, model: str, tags: dict[str, str], **extra: object) -> int:
    data = f"{model}-{tags}-{extra}".encode()
    c.put(f"/api/v1/blobs/{sha(data)}", content=data, headers=ADMIN)
    c.post("/api/v1/models", json={"name": model}, headers=ADMIN)
    body = {"files": [{"path": "w.bin", "digest": sha(data), "size": len(data)}], "tags": tags}
    r = c.post(f"{V}/{model}/versions", json={**body, **extra}, headers=ADMIN)
    assert r.status_code == 201, r.text
    number: int = r.json()["version"]
    return number


def _publish(c: TestClient, model: str, number: int) -> None:
    r = c.post(f"{V}/{model}/versions/{number}/publish", headers=ADMIN)
    assert r.status_code == 200, r.text


def test_consumers_see_only_what_the_production_policy_allows(c: TestClient) -> None:
    # Published before the policy existed: published, but not encrypted.
    plain = _version(c, "fraud", {})
    _publish(c, "fraud", plain)
    r = c.put(
        "/api/v1/namespaces/default/policy",
        json={"required_tags": {"encrypted": "true"}},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    sealed = _version(c, "fraud", {"encrypted": "true"})
    _publish(c, "fraud", sealed)
    unpublished = _version(c, "fraud", {"encrypted": "true"})
    # A model with a policy of its own (set after its first publish): also
    # needs accuracy >= 0.9.
    weak = _version(c, "churn", {"encrypted": "true"}, metrics={"accuracy": 0.5})
    _publish(c, "churn", weak)
    r = c.put(
        f"{V}/churn/policy", json={"metric_thresholds": ["metrics.accuracy >= 0.9"]}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    strong = _version(c, "churn", {"encrypted": "true"}, metrics={"accuracy": 0.95})
    _publish(c, "churn", strong)

    consumer = bearer(make_user(c, "prod", {"default": "consumer"}))
    found = c.get("/api/v1/search/versions", headers=consumer).json()["versions"]
    assert sorted(v["ref"] for v in found) == [f"default/churn/{strong}", f"default/fraud/{sealed}"]
    assert c.get(f"{V}/fraud/versions/latest", headers=consumer).json()["version"] == sealed
    for model, hidden in (("fraud", plain), ("fraud", unpublished), ("churn", weak)):
        r = c.get(f"{V}/{model}/versions/{hidden}", headers=consumer)
        assert_error(r, 404, "VERSION_NOT_FOUND")
        r = c.get(f"{V}/{model}/versions/{hidden}/files/w.bin", headers=consumer)
        assert_error(r, 404, "VERSION_NOT_FOUND")
    listed = c.get(f"{V}/churn/versions", headers=consumer).json()["versions"]
    assert [v["version"] for v in listed] == [strong]
    # Relaxing the policy widens the view at once: it is a filter, not a copy.
    c.delete("/api/v1/namespaces/default/policy", headers=ADMIN)
    found = c.get("/api/v1/search/versions", params={"filter": "name = 'fraud'"}, headers=consumer)
    assert sorted(v["version"] for v in found.json()["versions"]) == [plain, sealed]


def test_governance_routes_follow_roles(c: TestClient) -> None:
    c.post("/api/v1/namespaces", json={"name": "team"}, headers=ADMIN)
    number = _version(c, "fraud", {})
    tokens = {
        role: bearer(make_user(c, f"the-{role}", {"default": role}))
        for role in ("reader", "writer", "reviewer", "admin", "consumer")
    }
    outsider = bearer(make_user(c, "outsider", {"team": "admin"}))
    policy = {"required_approvals": 1}
    for who in ("reader", "writer", "reviewer", "consumer"):
        r = c.put("/api/v1/namespaces/default/policy", json=policy, headers=tokens[who])
        assert_error(r, 403, "PERMISSION_DENIED")
    r = c.put("/api/v1/namespaces/default/policy", json=policy, headers=tokens["admin"])
    assert r.status_code == 200
    assert c.get("/api/v1/namespaces/default/policy", headers=tokens["reader"]).status_code == 200
    r = c.get("/api/v1/namespaces/default/policy", headers=tokens["consumer"])
    assert_error(r, 403, "PERMISSION_DENIED")

    # Publishing now needs an approval; the writer asks, a reviewer decides.
    r = c.post(f"{V}/fraud/versions/{number}/publish", headers=tokens["writer"])
    assert_error(r, 409, "APPROVAL_REQUIRED")
    r = c.post(f"{V}/fraud/versions/{number}/approvals", json={}, headers=tokens["reader"])
    assert_error(r, 403, "PERMISSION_DENIED")
    r = c.post(f"{V}/fraud/versions/{number}/approvals", json={}, headers=tokens["writer"])
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    for who, status, code in (
        ("writer", 403, "PERMISSION_DENIED"),
        ("reader", 403, "PERMISSION_DENIED"),
        ("consumer", 404, "APPROVAL_NOT_FOUND"),
    ):
        r = c.post(f"/api/v1/approvals/{aid}/approve", json={}, headers=tokens[who])
        assert_error(r, status, code)
    r = c.post(f"/api/v1/approvals/{aid}/approve", json={}, headers=outsider)
    assert_error(r, 404, "APPROVAL_NOT_FOUND")
    assert_error(c.get(f"/api/v1/approvals/{aid}", headers=outsider), 404, "APPROVAL_NOT_FOUND")
    r = c.post(f"/api/v1/approvals/{aid}/approve", json={}, headers=tokens["reviewer"])
    assert r.status_code == 200 and r.json()["state"] == "applied", r.text
    # Holding the reviewer permission does not let anyone approve their own request.
    other = _version(c, "fraud", {})
    r = c.post(f"{V}/fraud/versions/{other}/approvals", json={}, headers=tokens["admin"])
    r = c.post(f"/api/v1/approvals/{r.json()['id']}/approve", json={}, headers=tokens["admin"])
    assert_error(r, 403, "SELF_APPROVAL")
    version = c.get(f"{V}/fraud/versions/{number}", headers=tokens["reader"]).json()
    assert version["state"] == "published"

    # The audit log: readers see their namespace, not others' or instance-wide entries.
    entries = c.get("/api/v1/audit", headers=tokens["reader"]).json()["entries"]
    assert entries and {e["namespace"] for e in entries} == {"default"}
    applied = [e for e in entries if e["action"] == "approval.applied"]
    assert applied[0]["actor"] == "the-reviewer"
    r = c.get("/api/v1/audit", params={"namespace": "team"}, headers=tokens["reader"])
    assert_error(r, 403, "PERMISSION_DENIED")
    assert c.get("/api/v1/audit", headers=tokens["consumer"]).json()["entries"] == []
    everything = c.get("/api/v1/audit", params={"page_size": 1000}, headers=ADMIN).json()
    assert "*" in {e["namespace"] for e in everything["entries"]}
    r = c.get(f"{V}/fraud/versions/{number}/policy-check", headers=tokens["consumer"])
    assert_error(r, 403, "PERMISSION_DENIED")
    r = c.post(f"{V}/fraud/aliases/production/rollback", json={}, headers=tokens["reviewer"])
    assert_error(r, 403, "PERMISSION_DENIED")


def test_webhooks_need_namespace_admin_and_events_are_scoped(tmp_path: Path, db_url: str) -> None:
    app = create_app(auth_settings(tmp_path, db_url, dispatcher=False))
    with TestClient(app, raise_server_exceptions=False) as c:
        c.post("/api/v1/namespaces", json={"name": "team"}, headers=ADMIN)
        c.post("/api/v1/models", json={"name": "t", "namespace": "team"}, headers=ADMIN)
        boss = bearer(make_user(c, "boss", {"default": "admin"}))
        writer = bearer(make_user(c, "wri", {"default": "writer"}))
        consumer = bearer(make_user(c, "con", {"default": "consumer"}))
        url = "http://93.184.215.14/in"
        mine = {"url": url, "namespace": "default"}
        assert_error(
            c.post("/api/v1/webhooks", json=mine, headers=writer), 403, "PERMISSION_DENIED"
        )
        r = c.post("/api/v1/webhooks", json={"url": url}, headers=boss)
        assert_error(r, 403, "PERMISSION_DENIED")  # every namespace: instance admin only
        r = c.post("/api/v1/webhooks", json=mine, headers=boss)
        assert r.status_code == 201, r.text
        own_id = r.json()["id"]
        theirs = c.post("/api/v1/webhooks", json={**mine, "namespace": "team"}, headers=ADMIN)
        team_id = theirs.json()["id"]
        listed = c.get("/api/v1/webhooks", headers=boss).json()["webhooks"]
        assert [h["id"] for h in listed] == [own_id]
        assert len(c.get("/api/v1/webhooks", headers=ADMIN).json()["webhooks"]) == 2
        assert c.post(f"/api/v1/webhooks/{own_id}/test", headers=boss).status_code == 202
        assert_error(c.get(f"/api/v1/webhooks/{team_id}", headers=boss), 404, "WEBHOOK_NOT_FOUND")
        assert_error(c.get(f"/api/v1/webhooks/{own_id}", headers=writer), 403, "PERMISSION_DENIED")
        r = c.patch(f"/api/v1/webhooks/{own_id}", json={"namespace": "team"}, headers=boss)
        assert_error(r, 403, "PERMISSION_DENIED")

        # Events: only namespaces the caller reads; instance-wide ones for admins.
        events = c.get("/api/v1/events", params={"limit": 1000}, headers=writer).json()
        assert events["events"] and {e["namespace"] for e in events["events"]} == {"default"}
        everything = c.get("/api/v1/events", params={"limit": 1000}, headers=ADMIN).json()
        assert {"default", "team", "*"} <= {e["namespace"] for e in everything["events"]}
        r = c.get("/api/v1/events", params={"namespace": "team"}, headers=writer)
        assert_error(r, 403, "PERMISSION_DENIED")
        r = c.get("/api/v1/events/stream", params={"namespace": "team"}, headers=writer)
        assert_error(r, 403, "PERMISSION_DENIED")
        assert c.get("/api/v1/events", headers=consumer).json()["events"] == []
