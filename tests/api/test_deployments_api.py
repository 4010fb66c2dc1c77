"""Deployments over REST v1 (issue 12): heartbeats, records, "who follows this
alias", history paging, and error bodies for bad input."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.helpers import assert_error, push

D = "/api/v1/deployments"


def hb(client: TestClient, **kw: object) -> Any:
    body: dict[str, object] = {
        "environment": "prod-eu",
        "reference": "fraud@production",
        "replica": "pod-a",
        "status": "ready",
        "version": 1,
    }
    body.update(kw)
    return client.post(f"{D}/heartbeats", json=body)


def test_deployment_routes(client: TestClient) -> None:
    push(client, "fraud", {"m": b"1"})
    push(client, "fraud", {"m": b"2"})
    r = client.put("/api/v1/models/default/fraud/aliases/production", json={"version": "1"})
    assert r.status_code == 200, r.text
    r = hb(client, endpoint="http://10.0.0.7:8000")
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["reference"], d["version"], d["resolved"], d["status"]) == (
        "default/fraud@production",
        1,
        "default/fraud/1",
        "ready",
    )
    [rep] = d["instances"]
    assert rep["replica"] == "pod-a" and rep["stale"] is False and rep["status"] == "ready"
    assert rep["heartbeat_at"].endswith("Z")

    r = client.put(
        D, json={"environment": "prod-eu", "reference": "fraud@production", "replicas": 3}
    )
    assert r.status_code == 200, r.text
    assert r.json()["replicas"] == 3

    hb(client, version=2)  # the server swapped
    got = client.get(f"{D}/prod-eu/default/fraud@production").json()
    assert got["version"] == 2 and got["instances"][0]["version"] == 2
    assert client.get(f"{D}/prod-eu/fraud@production").json()["version"] == 2

    hb(client, environment="staging", reference="fraud/2", version=2)
    follows = client.get(D, params={"follows": "fraud@production"}).json()["deployments"]
    assert [x["environment"] for x in follows] == ["prod-eu"]
    assert len(client.get(D).json()["deployments"]) == 2
    assert [
        x["environment"]
        for x in client.get(D, params={"environment": "staging"}).json()["deployments"]
    ] == ["staging"]

    page = client.get(f"{D}/prod-eu/history", params={"limit": 2}).json()
    assert [h["kind"] for h in page["history"]] == ["swapped", "updated"]
    assert page["history"][0]["previous_version"] == 1
    rest = client.get(
        f"{D}/prod-eu/history", params={"limit": 2, "before": page["next_before"]}
    ).json()
    assert [h["kind"] for h in rest["history"]] == ["replica", "created"]
    last = client.get(
        f"{D}/prod-eu/history", params={"limit": 2, "before": rest["next_before"]}
    ).json()
    assert last == {"history": [], "next_before": None}

    events = client.get("/api/v1/events", params={"types": "deployment.swapped"}).json()
    [swap] = events["events"]
    assert swap["subject"] == "deployment:prod-eu/default/fraud@production"
    assert swap["payload"]["version"] == 2


def test_deployment_errors(client: TestClient) -> None:
    push(client, "fraud", {"m": b"1"})
    assert_error(client.get(f"{D}/prod-eu/fraud/1"), 404, "DEPLOYMENT_NOT_FOUND")
    assert_error(hb(client, reference="ghost/1"), 404, "VERSION_NOT_FOUND")
    assert_error(hb(client, reference="fraud/1", version=9), 404, "VERSION_NOT_FOUND")
    assert_error(client.get(f"{D}/prod eu/history"), 400, "INVALID_ENVIRONMENT")
    assert_error(client.get(D, params={"follows": "a b"}), 400, "INVALID_REFERENCE")
    assert_error(
        client.put(D, json={"environment": "prod-eu", "reference": "ghost@production"}),
        404,
        "MODEL_NOT_FOUND",
    )
    for bad in (
        {"status": "asleep"},
        {"replica": "a b"},
        {"version": 0},
        {"endpoint": "ftp://x"},
        {"extra": 1},
    ):
        r = hb(client, reference="fraud/1", **bad)
        assert r.status_code in (400, 422), (bad, r.text)


def test_monitoring_settings_and_alerts(client: TestClient) -> None:
    push(client, "fraud", {"m": b"1"})
    push(client, "fraud", {"m": b"2"})
    for v in ("1", "2"):
        r = client.put("/api/v1/models/default/fraud/aliases/production", json={"version": v})
        assert r.status_code == 200, r.text
    assert hb(client, version=2).json()["monitoring"]["rollback"] is False
    settings = {"rollback": True, "rollback_after_seconds": 5, "window_seconds": 2}
    r = client.put(
        D, json={"environment": "prod-eu", "reference": "fraud@production", "monitoring": settings}
    )
    assert r.status_code == 200, r.text
    assert r.json()["monitoring"]["rollback"] is True
    # The heartbeat's answer carries the settings to the model server.
    assert hb(client, version=2).json()["monitoring"]["window_seconds"] == 2.0
    alert = {
        "environment": "prod-eu",
        "reference": "fraud@production",
        "replica": "pod-a",
        "kind": "degraded",
        "version": 2,
        "sustained_seconds": 6,
        "detail": {"reasons": ["error_rate"], "error_rate": 0.5},
    }
    r = client.post(f"{D}/alerts", json=alert)
    assert r.status_code == 200, r.text
    assert r.json()["rollback"] == {"done": True, "from_version": 2, "to_version": 1}
    got = client.get("/api/v1/models/default/fraud/versions/production").json()
    assert got["version"] == 1
    types = {
        e["type"] for e in client.get("/api/v1/events", params={"limit": 1000}).json()["events"]
    }
    assert {"deployment.degraded", "deployment.rolled_back", "alias.moved"} <= types
    # Bad input is a 4xx with the one error body, never a 500; the schema
    # declares every setting, so an unknown one is refused there.
    for monitoring in ({"window_seconds": 0}, {"nope": 1}, {"ks": 2}):
        body = {"environment": "prod-eu", "reference": "fraud@production", "monitoring": monitoring}
        assert_error(client.put(D, json=body), 422, "VALIDATION_ERROR")
    r = client.post(f"{D}/alerts", json={**alert, "kind": "boom"})
    assert r.status_code in (400, 422), r.text
    r = client.post(f"{D}/alerts", json={**alert, "environment": "nowhere"})
    assert_error(r, 404, "DEPLOYMENT_NOT_FOUND")
    r = client.post(f"{D}/alerts", json={**alert, "detail": {"x": "y" * 20000}})
    assert_error(r, 400, "INVALID_ALERT")


def test_delete_deployment_route(client: TestClient) -> None:
    push(client, "fraud", {"m": b"1"})
    push(client, "fraud", {"m": b"2"})
    r = client.put("/api/v1/models/default/fraud/aliases/production", json={"version": "1"})
    assert r.status_code == 200, r.text
    assert hb(client).status_code == 200
    got = client.get(f"{D}/prod-eu/fraud@production").json()
    assert (got["version"], got["desired_version"], got["drift"]) == (1, 1, False)
    client.put("/api/v1/models/default/fraud/aliases/production", json={"version": "2"})
    got = client.get(f"{D}/prod-eu/fraud@production").json()
    assert (got["version"], got["desired_version"], got["desired"], got["drift"]) == (
        1,
        2,
        "default/fraud/2",
        True,
    )
    assert_error(client.delete(f"{D}/prod-eu/fraud@production"), 409, "DEPLOYMENT_ACTIVE")
    r = client.delete(f"{D}/prod-eu/fraud@production", params={"force": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["reference"] == "default/fraud@production"
    assert_error(client.get(f"{D}/prod-eu/fraud@production"), 404, "DEPLOYMENT_NOT_FOUND")
    assert_error(
        client.delete(f"{D}/prod-eu/fraud@production", params={"force": "true"}),
        404,
        "DEPLOYMENT_NOT_FOUND",
    )
    assert client.get(D).json()["deployments"] == []
    kinds = [h["kind"] for h in client.get(f"{D}/prod-eu/history").json()["history"]]
    assert kinds == ["deleted", "replica", "created"]
    [event] = client.get("/api/v1/events", params={"types": "deployment.deleted"}).json()["events"]
    assert event["subject"] == "deployment:prod-eu/default/fraud@production"
    assert event["payload"]["forced"] is True
