"""A deployment's monitoring on its page (issue 12): each replica's latest
figures (request rate, error rate, latency percentiles, per-feature PSI and
KS against the thresholds) from its heartbeats, the alerts (drift,
degradation, automatic rollback) paged, what model servers send escaped,
malformed figures shown as missing rather than failing, and the API's
refusals (a consumer, a reader of another namespace)."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

from tests.auth_helpers import ADMIN_TOKEN, bearer, make_user
from tests.helpers import push
from tests.web.conftest import sign_in
from tests.web.html_checks import page_text, unsafe_markup
from tests.web.test_pages import XSS

D = "/api/v1/deployments"
PAGE = "/deployments/prod-eu/default/fraud%40production"


def _hb(client: TestClient, **kw: Any) -> Any:
    body: dict[str, Any] = {
        "environment": "prod-eu",
        "reference": "fraud@production",
        "replica": "pod-a",
        "status": "ready",
        "version": 1,
    }
    body.update(kw)
    r = client.post(f"{D}/heartbeats", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _alert(client: TestClient, kind: str, detail: dict[str, Any], **kw: Any) -> Any:
    body: dict[str, Any] = {
        "environment": "prod-eu",
        "reference": "fraud@production",
        "replica": "pod-a",
        "kind": kind,
        "version": 1,
        "detail": detail,
    }
    body.update(kw)
    r = client.post(f"{D}/alerts", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _measures(**kw: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "window_seconds": 60.0,
        "requests": 600,
        "errors": 48,
        "error_rate": 0.08,
        "latency_p50_ms": 1.25,
        "latency_p99_ms": 42.0,
        "version": 1,
        "features": {
            "age": {"kind": "numeric", "count": 600, "psi": 0.71, "ks": 0.38},
            "income": {"kind": "numeric", "count": 600, "psi": 0.02, "ks": 0.05},
            "country": {
                "kind": "categorical",
                "count": 600,
                "psi": 0.01,
                "ks": None,
                "unseen_share": 0.125,
            },
        },
        "features_total": 3,
        "thresholds": {
            "psi": 0.2,
            "ks": 0.2,
            "error_rate": 0.05,
            "latency_p99_ms": 100.0,
            "min_requests": 20,
        },
    }
    m.update(kw)
    return m


def _model(client: TestClient) -> None:
    push(client, "fraud", {"m": b"1"})
    push(client, "fraud", {"m": b"2"}, create=False)
    client.put("/api/v1/models/default/fraud/aliases/production", json={"version": "1"})


def test_latest_figures_against_thresholds(client: TestClient) -> None:
    _model(client)
    _hb(client, measures=_measures(requests=10))  # an older heartbeat: replaced
    _hb(client, measures=_measures())
    _hb(client, replica="pod-b")  # a server that sends no figures
    stored = client.get(f"{D}/prod-eu/fraud@production").json()["instances"]
    assert {r["replica"]: r["measures"] is not None for r in stored} == {
        "pod-a": True,
        "pod-b": False,
    }
    page = client.get(PAGE)
    assert page.status_code == 200 and unsafe_markup(page.text) == []
    text = page_text(page.text)
    assert "Monitoring" in text and "Replica pod-a on v1" in text
    assert "600 (10/s)" in text  # 600 requests over a 60 s window
    assert "8.00 % limit 5.00 % over" in text  # error rate over its threshold
    assert "1.25 ms" in text and "42 ms limit 100 ms" in text  # p99 under its limit
    # Features, the most drifted first, the drifted one marked.
    rows = re.findall(r"<tr class=\"over\">\s*<th scope=\"row\"><code>([^<]+)</code>", page.text)
    assert rows == ["age"]
    assert text.index("age drift") < text.index("income") < text.index("country")
    assert "12.5 %" in text  # unseen categories
    assert "pod-b" in text and text.count("Replica pod-") == 1  # no figures, no block
    assert "No alert" in text


def test_few_requests_judge_nothing_and_bad_figures_show_as_missing(client: TestClient) -> None:
    _model(client)
    _hb(client, measures=_measures(requests=5, error_rate=0.5, latency_p99_ms=500.0))
    text = page_text(client.get(PAGE).text)
    assert "Fewer than 20 requests in the window: no threshold applies yet." in text
    figures = client.get(PAGE).text.split('id="monitoring-title"')[1].split('id="alerts-title"')[0]
    assert '<div class="over">' not in figures  # 50 % errors, 500 ms: not judged on 5
    assert figures.count('<tr class="over">') == 1  # a feature is judged on its own count
    # A server may send anything JSON: none of it breaks the page.
    junk = {
        "requests": "many",
        "error_rate": [1],
        "latency_p99_ms": {"x": 1},
        "window_seconds": 0,
        "features": {"f": "nope", "g": {"psi": "high", "count": True}},
        "thresholds": "strict",
    }
    _hb(client, measures=junk)
    page = client.get(PAGE)
    assert page.status_code == 200
    text = page_text(page.text)
    assert "Replica pod-a" in text and "—" in text
    _hb(client, measures={})
    assert client.get(PAGE).status_code == 200
    # What the API refuses, the page never sees.
    r = client.post(
        f"{D}/heartbeats",
        json={
            "environment": "prod-eu",
            "reference": "fraud@production",
            "replica": "pod-a",
            "status": "ready",
            "version": 1,
            "measures": {"x": "y" * 20_000},
        },
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_DEPLOYMENT"
    bad = client.post(
        f"{D}/heartbeats",
        json={
            "environment": "prod-eu",
            "reference": "fraud@production",
            "replica": "pod-a",
            "status": "ready",
            "version": 1,
            "measures": [1, 2],
        },
    )
    assert bad.status_code in (400, 422)


def test_alerts_and_automatic_rollback(client: TestClient) -> None:
    _model(client)
    client.put("/api/v1/models/default/fraud/aliases/production", json={"version": "2"})
    client.put(
        D,
        json={
            "environment": "prod-eu",
            "reference": "fraud@production",
            "monitoring": {"rollback": True, "rollback_after_seconds": 60, "error_rate": 0.05},
        },
    )
    _hb(client, version=2)
    _alert(
        client,
        "drift",
        {
            "features": {"age": {"psi": 0.71, "ks": 0.38, "count": 600}},
            "thresholds": {"psi": 0.2, "ks": 0.2},
            "window_seconds": 60,
        },
        version=2,
    )
    answer = _alert(
        client,
        "degraded",
        {
            "reasons": ["error_rate"],
            "error_rate": 0.3,
            "latency_p99_ms": 12.0,
            "requests": 400,
            "thresholds": {"error_rate": 0.05, "latency_p99_ms": None},
            "window_seconds": 60,
        },
        version=2,
        sustained_seconds=61.5,
    )
    assert answer["rollback"]["done"] is True
    page = client.get(PAGE)
    assert page.status_code == 200 and unsafe_markup(page.text) == []
    text = page_text(page.text)
    alerts = " ".join(text.split("Alerts")[1].split("History")[0].split())
    assert "Automatic rollback: on, after 60 s degraded" in text
    # Newest first: the rollback, the degradation that caused it, the drift.
    assert alerts.index("automatic rollback v2 → v1") < alerts.index("degraded on v2")
    assert alerts.index("degraded on v2") < alerts.index("drift on v2")
    assert "error rate 30.00% (limit 5.00%)" in alerts and "held s 61.5" in alerts
    assert "rolled back v2 → v1" in alerts
    assert "age PSI 0.71 · KS 0.38" in alerts and "PSI limit 0.2" in alerts
    # A refused rollback says why: a late report about version 2 finds the
    # alias already moved back.
    late = _alert(client, "degraded", {"reasons": ["latency"]}, version=2, sustained_seconds=90)
    assert late["rollback"]["code"] == "ALIAS_CHANGED"
    text = " ".join(page_text(client.get(PAGE).text).split())
    assert "rollback refused: ALIAS_CHANGED" in text


def test_alert_pages(client: TestClient) -> None:
    _model(client)
    _hb(client)
    for i in range(13):
        _alert(client, "drift", {"features": {f"f{i}": {"psi": 1.0, "ks": 0.5}}})
    page = client.get(PAGE)
    alerts = page.text.split('id="alerts-title"')[1].split('id="dep-history-title"')[0]
    assert alerts.count("<time ") == 10 and "f12" in alerts and "f2<" not in alerts
    nxt = re.search(r'rel="next" href="([^"]+alerts_before[^"]+)"', page.text)
    assert nxt is not None
    older = client.get(nxt.group(1).replace("&amp;", "&"))
    rest = older.text.split('id="alerts-title"')[1].split('id="dep-history-title"')[0]
    assert older.status_code == 200 and rest.count("<time ") == 3 and "f0<" in rest
    assert "« Newest alerts" in page_text(older.text)
    assert client.get(f"{PAGE}?alerts_before=x").status_code == 400


def test_server_text_is_escaped(client: TestClient) -> None:
    _model(client)
    features = {x: {"kind": x, "count": 30, "psi": 0.9, "ks": 0.9} for x in XSS}
    _hb(client, replica="pod-x", measures=_measures(features=features, features_total=4))
    _alert(
        client,
        "drift",
        {
            "features": {x: {"psi": 1, "ks": 1} for x in XSS},
            "reason": XSS[0],
            "alias": XSS[1],
            "reasons": XSS,
        },
    )
    _alert(
        client,
        "degraded",
        {"rollback": {"done": False, "code": XSS[1], "message": XSS[0]}},
        sustained_seconds=1,
    )
    page = client.get(PAGE)
    assert page.status_code == 200
    assert unsafe_markup(page.text) == []
    text = page_text(page.text)
    for x in XSS:
        assert x in text, x


def test_consumer_and_outsider_are_refused(auth_client: TestClient) -> None:
    c = auth_client
    admin = bearer(ADMIN_TOKEN)
    assert c.post("/api/v1/namespaces", json={"name": "ops"}, headers=admin).is_success
    c.headers.update(admin)
    _model(c)
    c.post("/api/v1/models/default/fraud/versions/1/publish")
    _hb(c, measures=_measures())
    del c.headers["Authorization"]
    for name, roles in (("carl", {"default": "consumer"}), ("olga", {"ops": "reader"})):
        token = make_user(c, name, roles)
        sign_in(c, token)
        r = c.get(PAGE)
        api = c.get(f"{D}/prod-eu/default/fraud@production", headers=bearer(token))
        assert r.status_code == 403 and api.status_code == 403, name
        assert api.json()["error"]["message"] in page_text(r.text)
        assert "pod-a" not in r.text and "600" not in page_text(r.text)
    reader = make_user(c, "rita", {"default": "reader"})
    sign_in(c, reader)
    assert "600 (10/s)" in page_text(c.get(PAGE).text)
