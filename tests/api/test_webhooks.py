"""Webhook delivery in-process: the app's own dispatcher thread and real receivers on 127.0.0.1.

Retry delays are shrunk through settings; every wait is a poll with a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from modelyard.api.app import create_app
from modelyard.settings import Settings
from modelyard.webhooks import WebhookVerificationError, verify
from tests.helpers import assert_error, push
from tests.receiver import Received, Reply, receiver, wait_for

FAST = {
    "webhook_allow": "127.0.0.1",
    "dispatcher_interval": 0.05,
    "webhook_retry_base": 0.05,
    "webhook_retry_cap": 0.2,
    "webhook_timeout": 2.0,
    "webhook_lease": 5.0,
}


def make_client(tmp_path: Path, db_url: str, **overrides: Any) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", db=db_url, **{**FAST, **overrides})
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def hc(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    """A client whose app delivers fast to 127.0.0.1."""
    with make_client(tmp_path, db_url) as c:
        yield c


def create_hook(c: TestClient, url: str, **body: Any) -> dict[str, Any]:
    r = c.post("/api/v1/webhooks", json={"url": url, **body})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def deliveries(c: TestClient, hook_id: int) -> list[dict[str, Any]]:
    r = c.get(f"/api/v1/webhooks/{hook_id}/deliveries")
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["deliveries"]
    return out


def test_signed_delivery_verifies_and_is_recorded(hc: TestClient) -> None:
    with receiver() as rec:
        hook = create_hook(hc, rec.url + "/hook", event_types=["version.*"])
        assert hook["secret"].startswith("whsec_")
        listed = hc.get("/api/v1/webhooks").json()["webhooks"]
        assert [h["id"] for h in listed] == [hook["id"]]
        assert (
            "secret" not in listed[0]
            and "secret" not in hc.get(f"/api/v1/webhooks/{hook['id']}").json()
        )
        v = push(hc, "fraud", {"model.onnx": b"weights"})
        got = wait_for(lambda: rec.snapshot(), what="a delivery")
        req = got[0]
        assert req.path == "/hook"
        body = verify(req.headers, req.body, hook["secret"])
        assert body["type"] == "version.created"
        assert body["subject"] == v["ref"]
        assert body["data"]["version"] == 1
        with pytest.raises(WebhookVerificationError):
            verify(req.headers, req.body + b" ", hook["secret"])
        done = wait_for(
            lambda: [d for d in deliveries(hc, hook["id"]) if d["status"] == "succeeded"],
            what="succeeded delivery",
        )
        d = done[0]
        assert req.headers["webhook-id"] == d["message_id"] == f"msg_{d['id']}"
        assert d["event_id"] == body["id"] and d["event_type"] == "version.created"
        [attempt] = d["attempts"]
        assert attempt["status"] == "succeeded" and attempt["response_code"] == 200
        assert attempt["response_body"] == "ok" and attempt["latency_ms"] >= 0
        text = hc.get("/metrics").text
        assert 'modelyard_webhook_attempts_total{result="succeeded"} 1.0' in text
        assert "modelyard_webhook_attempt_duration_seconds_count 1.0" in text
        # model.created was not subscribed to
        assert [r.json["type"] for r in rec.snapshot()] == ["version.created"]


def test_receiver_fails_then_recovers(hc: TestClient) -> None:
    def flaky(_: Received, i: int) -> Reply:
        return (500, {}, b"boom") if i < 3 else (200, {}, b"fine")

    with receiver(flaky) as rec:
        hook = create_hook(hc, rec.url, event_types=["model.created"])
        hc.post("/api/v1/models", json={"name": "m1"})
        d = wait_for(
            lambda: [d for d in deliveries(hc, hook["id"]) if d["status"] == "succeeded"],
            what="recovery",
        )[0]
        assert [(a["status"], a["response_code"]) for a in d["attempts"]] == [
            ("failed", 500),
            ("failed", 500),
            ("failed", 500),
            ("succeeded", 200),
        ]
        assert d["attempts"][0]["response_body"] == "boom"
        reqs = rec.snapshot()
        assert len(reqs) == 4
        assert len({r.headers["webhook-id"] for r in reqs}) == 1
        assert len({r.json["id"] for r in reqs}) == 1
        assert hc.get(f"/api/v1/webhooks/{hook['id']}").json()["failing_since"] is None


def test_410_disables_the_webhook(hc: TestClient) -> None:
    with receiver(lambda _, __: (410, {}, b"gone")) as rec:
        hook = create_hook(hc, rec.url)
        hc.post("/api/v1/models", json={"name": "m1"})
        got = wait_for(
            lambda: not hc.get(f"/api/v1/webhooks/{hook['id']}").json()["active"],
            what="disable",
        )
        assert got
        h = hc.get(f"/api/v1/webhooks/{hook['id']}").json()
        assert "410" in h["disabled_reason"]
        [d] = deliveries(hc, hook["id"])
        assert d["status"] == "failed" and len(d["attempts"]) == 1
        events = hc.get("/api/v1/events", params={"types": "webhook.disabled"}).json()["events"]
        assert [e["payload"]["webhook_id"] for e in events] == [hook["id"]]
        assert events[0]["payload"]["url"] == rec.url  # path and query never in events
        # Disabled: new events are not queued, test and redeliver are refused.
        hc.post("/api/v1/models", json={"name": "m2"})
        assert_error(hc.post(f"/api/v1/webhooks/{hook['id']}/test"), 409, "WEBHOOK_DISABLED")
        assert_error(
            hc.post(f"/api/v1/webhooks/{hook['id']}/deliveries/{d['id']}/redeliver"),
            409,
            "WEBHOOK_DISABLED",
        )
        assert len(rec.snapshot()) == 1


def test_continuous_failure_disables_with_event(tmp_path: Path, db_url: str) -> None:
    with (
        make_client(tmp_path, db_url, webhook_disable_after=0.3) as c,
        receiver(lambda _, __: (500, {}, b"")) as rec,
    ):
        hook = create_hook(c, rec.url)
        c.post("/api/v1/models", json={"name": "m1"})
        wait_for(lambda: not c.get(f"/api/v1/webhooks/{hook['id']}").json()["active"])
        h = c.get(f"/api/v1/webhooks/{hook['id']}").json()
        assert h["disabled_reason"].startswith("failing without a success since")
        ev = c.get("/api/v1/events", params={"types": "webhook.disabled"}).json()["events"]
        assert len(ev) == 1 and ev[0]["actor"] == "system"
        assert len(rec.snapshot()) >= 2
        # Re-enabling clears the failure run and delivery resumes.
        r = c.patch(f"/api/v1/webhooks/{hook['id']}", json={"active": True})
        assert r.json()["active"] and r.json()["disabled_reason"] is None


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_honoured_and_capped(tmp_path: Path, sqlite_url: str, form: str) -> None:
    def busy(_: Received, i: int) -> Reply:
        if i > 0:
            return 200, {}, b""
        value = "3600" if form == "seconds" else formatdate(time.time() + 3600, usegmt=True)
        return 503, {"Retry-After": value}, b"busy"

    # Without Retry-After the retry would come after at most 0.2 s; the cap is 1.2 s.
    with (
        make_client(tmp_path, sqlite_url, webhook_retry_after_cap=1.2) as c,
        receiver(busy) as rec,
    ):
        hook = create_hook(c, rec.url)
        c.post("/api/v1/models", json={"name": "m1"})
        d = wait_for(lambda: [d for d in deliveries(c, hook["id"]) if d["status"] == "succeeded"])[
            0
        ]
        first, second = d["attempts"]
        assert first["response_code"] == 503
        t0 = datetime.fromisoformat(first["at"])
        t1 = datetime.fromisoformat(second["at"])
        assert (t1 - t0).total_seconds() >= 1.0
        assert len(rec.snapshot()) == 2


def test_redirects_are_not_followed(tmp_path: Path, sqlite_url: str) -> None:
    with (
        make_client(tmp_path, sqlite_url, webhook_max_attempts=2) as c,
        receiver() as target,
        receiver(lambda _, __: (302, {"Location": target.url + "/x"}, b"")) as rec,
    ):
        hook = create_hook(c, rec.url)
        c.post("/api/v1/models", json={"name": "m1"})
        d = wait_for(lambda: [d for d in deliveries(c, hook["id"]) if d["status"] == "failed"])[0]
        assert [a["response_code"] for a in d["attempts"]] == [302, 302]
        assert target.snapshot() == []


def test_test_event_goes_to_one_webhook_and_redeliver_keeps_the_id(hc: TestClient) -> None:
    with receiver() as a, receiver() as b:
        ha = create_hook(hc, a.url)
        create_hook(hc, b.url)
        r = hc.post(f"/api/v1/webhooks/{ha['id']}/test")
        assert r.status_code == 202 and r.json()["event_type"] == "webhook.test"
        first = wait_for(lambda: a.snapshot())[0]
        assert first.json["type"] == "webhook.test"
        assert first.json["data"]["webhook_id"] == ha["id"]
        d = wait_for(lambda: [d for d in deliveries(hc, ha["id"]) if d["status"] == "succeeded"])[0]
        r = hc.post(f"/api/v1/webhooks/{ha['id']}/deliveries/{d['id']}/redeliver")
        assert r.status_code == 202 and r.json()["status"] == "pending"
        again = wait_for(lambda: a.snapshot()[1:])[0]
        assert again.headers["webhook-id"] == first.headers["webhook-id"]
        assert again.body == first.body
        wait_for(
            lambda: (
                len(hc.get(f"/api/v1/webhooks/{ha['id']}/deliveries/{d['id']}").json()["attempts"])
                == 2
            )
        )
        # b subscribed to everything but never gets another webhook's test event
        assert all(r.json["type"] != "webhook.test" for r in b.snapshot())


def test_secret_rotation_signs_with_both_during_overlap(hc: TestClient) -> None:
    with receiver() as rec:
        hook = create_hook(hc, rec.url, event_types=["model.*"])
        old = hook["secret"]
        r = hc.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", json={"overlap_seconds": 600})
        assert r.status_code == 200
        new = r.json()["secret"]
        assert new != old and r.json()["previous_secret_expires_at"]
        hc.post("/api/v1/models", json={"name": "m1"})
        req = wait_for(lambda: rec.snapshot())[0]
        assert len(req.headers["webhook-signature"].split()) == 2
        verify(req.headers, req.body, old)
        verify(req.headers, req.body, new)
        r = hc.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", json={"overlap_seconds": 0})
        newest = r.json()["secret"]
        hc.post("/api/v1/models", json={"name": "m2"})
        req = wait_for(lambda: rec.snapshot()[1:])[0]
        assert len(req.headers["webhook-signature"].split()) == 1
        verify(req.headers, req.body, newest)
        with pytest.raises(WebhookVerificationError):
            verify(req.headers, req.body, new)
        types = [
            e["type"]
            for e in hc.get("/api/v1/events", params={"types": "webhook.*"}).json()["events"]
        ]
        assert types == ["webhook.created", "webhook.secret_rotated", "webhook.secret_rotated"]
        assert all(new not in str(e) for e in hc.get("/api/v1/events").json()["events"])


def test_namespace_and_model_filters(hc: TestClient) -> None:
    hc.post("/api/v1/namespaces", json={"name": "team"})
    with receiver() as rec:
        create_hook(hc, rec.url, namespace="team", model="fraud", event_types=["version.*"])
        push(hc, "fraud", {"a": b"1"})  # default namespace: not matched
        push(hc, "other", {"a": b"2"}, namespace="team")
        v = push(hc, "fraud", {"a": b"3"}, namespace="team")
        hc.put("/api/v1/models/team/fraud/aliases/prod", json={"version": "1"})  # not version.*
        hc.post("/api/v1/models/team/fraud/versions/1/publish")
        got = wait_for(lambda: rec.snapshot()[1:], what="two deliveries")
        time.sleep(0.3)  # let a wrongly matched event show up, if there were one
        got = rec.snapshot()
        assert sorted((r.json["type"], r.json["subject"]) for r in got) == [
            ("version.created", v["ref"]),
            ("version.published", v["ref"]),
        ]


def test_update_delete_and_validation(hc: TestClient) -> None:
    hook = create_hook(hc, "http://127.0.0.1:9/x", event_types=["version.created"])
    hid = hook["id"]
    r = hc.patch(f"/api/v1/webhooks/{hid}", json={"event_types": ["alias.*"], "model": "m"})
    assert r.status_code == 200, r.text
    assert r.json()["event_types"] == ["alias.*"] and r.json()["namespace"] == "default"
    r = hc.patch(f"/api/v1/webhooks/{hid}", json={"model": None, "namespace": None})
    assert r.json()["model"] is None and r.json()["namespace"] is None
    r = hc.patch(f"/api/v1/webhooks/{hid}", json={"active": False})
    assert not r.json()["active"] and r.json()["disabled_reason"] == "disabled by anonymous"
    assert_error(
        hc.post("/api/v1/webhooks", json={"url": "http://127.0.0.1/", "event_types": ["Bad"]}),
        400,
        "INVALID_EVENT_TYPE",
    )
    assert_error(
        hc.post("/api/v1/webhooks", json={"url": "http://127.0.0.1/", "event_types": []}),
        400,
        "INVALID_EVENT_TYPE",
    )
    assert_error(hc.get("/api/v1/webhooks/999"), 404, "WEBHOOK_NOT_FOUND")
    assert_error(
        hc.post("/api/v1/webhooks", json={"url": "http://127.0.0.1/", "namespace": "nope"}),
        404,
        "NAMESPACE_NOT_FOUND",
    )
    assert_error(
        hc.patch(f"/api/v1/webhooks/{hid}", json={"colour": "red"}), 422, "VALIDATION_ERROR"
    )
    assert_error(hc.get(f"/api/v1/webhooks/{hid}/deliveries/5"), 404, "DELIVERY_NOT_FOUND")
    assert_error(
        hc.get(f"/api/v1/webhooks/{hid}/deliveries", params={"status": "x"}), 400, "INVALID_STATUS"
    )
    assert_error(
        hc.get(f"/api/v1/webhooks/{hid}/deliveries", params={"page_token": "x"}),
        400,
        "INVALID_CURSOR",
    )
    assert_error(
        hc.post(f"/api/v1/webhooks/{hid}/rotate-secret", json={"overlap_seconds": -1}),
        400,
        "INVALID_INPUT",
    )
    assert_error(hc.get("/api/v1/webhooks/99999999999999999999"), 400, "INVALID_ID")
    assert hc.delete(f"/api/v1/webhooks/{hid}").status_code == 204
    assert_error(hc.get(f"/api/v1/webhooks/{hid}"), 404, "WEBHOOK_NOT_FOUND")


def test_deliveries_are_paged(hc: TestClient) -> None:
    with receiver() as rec:
        hook = create_hook(hc, rec.url, event_types=["model.created"])
        for i in range(5):
            hc.post("/api/v1/models", json={"name": f"m{i}"})
        wait_for(lambda: len(rec.snapshot()) == 5)
        seen: list[int] = []
        token = None
        while True:
            params: dict[str, Any] = {"page_size": 2}
            if token:
                params["page_token"] = token
            page = hc.get(f"/api/v1/webhooks/{hook['id']}/deliveries", params=params).json()
            seen += [d["id"] for d in page["deliveries"]]
            token = page["next_page_token"]
            if not token:
                break
        assert seen == sorted(seen, reverse=True) and len(set(seen)) == 5


REFUSED = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://10.0.0.7/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://100.64.0.1/",
]


def test_ssrf_refused_without_allowlist(tmp_path: Path, sqlite_url: str) -> None:
    with make_client(tmp_path, sqlite_url, webhook_allow="") as c:
        for url in REFUSED:
            r = c.post("/api/v1/webhooks", json={"url": url})
            err = assert_error(r, 422, "WEBHOOK_URL_REFUSED")
            assert "MODELYARD_WEBHOOK_ALLOW" in err["message"], url
        for url in ("ftp://example.com/", "file:///etc/passwd", "http:///x", "x", "h" * 3000):
            assert_error(c.post("/api/v1/webhooks", json={"url": url}), 422, "WEBHOOK_URL_REFUSED")
        hook = create_hook(c, "http://93.184.215.14/hook")  # a public address needs no allowance
        r = c.patch(f"/api/v1/webhooks/{hook['id']}", json={"url": "http://10.1.1.1/"})
        assert_error(r, 422, "WEBHOOK_URL_REFUSED")
        assert c.get("/api/v1/webhooks").json()["webhooks"][0]["url"] == "http://93.184.215.14/hook"


def test_events_list_filters(hc: TestClient) -> None:
    hc.post("/api/v1/namespaces", json={"name": "team"})
    push(hc, "fraud", {"a": b"1"})
    push(hc, "fraud_x", {"a": b"2"})  # '_' must not act as a LIKE wildcard
    push(hc, "fraud", {"a": b"3"}, namespace="team")
    hc.put("/api/v1/models/default/fraud/aliases/prod", json={"version": "1"})

    def types(**params: Any) -> list[tuple[str, str]]:
        r = hc.get("/api/v1/events", params=params)
        assert r.status_code == 200, r.text
        return [(e["type"], e["subject"]) for e in r.json()["events"]]

    assert types(model="default/fraud") == [
        ("model.created", "default/fraud"),
        ("version.created", "default/fraud/1"),
        ("alias.moved", "default/fraud@prod"),
    ]
    assert types(model="fraud", types="version.*,alias.moved") == [
        ("version.created", "default/fraud/1"),
        ("alias.moved", "default/fraud@prod"),
    ]
    assert types(namespace="team", types="version.created") == [("version.created", "team/fraud/1")]
    assert types(subject="default/fraud_x/1") == [("version.created", "default/fraud_x/1")]
    all_ = hc.get("/api/v1/events", params={"limit": 2}).json()
    nxt = hc.get("/api/v1/events", params={"after": all_["next_after"]}).json()["events"]
    assert nxt[0]["id"] > all_["events"][-1]["id"]
    assert_error(hc.get("/api/v1/events", params={"types": "Version"}), 400, "INVALID_EVENT_TYPE")
    assert_error(hc.get("/api/v1/events", params={"model": "a/b/c"}), 400, "INVALID_NAME")
    # The stream refuses bad requests before it starts.
    stream = "/api/v1/events/stream"
    assert_error(hc.get(stream, params={"after": 2**64}), 400, "INVALID_CURSOR")
    assert_error(hc.get(stream, params={"types": "x"}), 400, "INVALID_EVENT_TYPE")
    assert_error(hc.get(stream, headers={"Last-Event-ID": "-1"}), 400, "INVALID_CURSOR")
    # Non-ASCII digits ("²".isdigit() is True) are bad input, never a 500.
    assert_error(hc.get(stream, headers={"Last-Event-ID": b"\xb2"}), 400, "INVALID_CURSOR")
    r = hc.get("/api/v1/models/default/fraud/versions", params={"page_token": "\u00b2"})
    assert_error(r, 400, "INVALID_CURSOR")
    hook = create_hook(hc, "http://127.0.0.1:9/")
    r = hc.get(f"/api/v1/webhooks/{hook['id']}/deliveries", params={"page_token": "\u00b2"})
    assert_error(r, 400, "INVALID_CURSOR")
