"""Deployment pages in-process: the list (filters), one deployment with its
replicas and paged history, escaping of what model servers report, and the
API's refusals."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

from tests.auth_helpers import ADMIN_TOKEN, bearer, make_user
from tests.helpers import push
from tests.web.conftest import sign_in
from tests.web.html_checks import page_text, unsafe_markup

D = "/api/v1/deployments"


def _hb(client: TestClient, **kw: object) -> Any:
    body: dict[str, object] = {
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


def test_list_detail_replicas_and_history(client: TestClient) -> None:
    push(client, "fraud", {"m": b"1"})
    push(client, "fraud", {"m": b"2"}, create=False)
    client.put("/api/v1/models/default/fraud/aliases/production", json={"version": "1"})
    _hb(client, endpoint="http://10.0.0.7:8000")
    _hb(
        client,
        replica="pod-b",
        status="failed",
        failed_version=2,
        version=1,
        error="<script>alert(1)</script> load failed",
    )
    client.put(D, json={"environment": "prod-eu", "reference": "fraud@production", "replicas": 3})
    _hb(client, version=2)  # pod-a swapped
    _hb(client, environment="staging", reference="fraud/2", version=2)

    listing = client.get("/deployments")
    assert listing.status_code == 200
    text = page_text(listing.text)
    assert "default/fraud@production" in text and "default/fraud/2" in text
    assert "degraded" in text  # a failed replica among the live ones
    only = page_text(client.get("/deployments", params={"environment": "staging"}).text)
    assert "default/fraud/2" in only and "fraud@production" not in only
    follows = page_text(client.get("/deployments", params={"follows": "fraud@production"}).text)
    assert "fraud@production" in follows and "default/fraud/2" not in follows
    link = re.search(r'href="(/deployments/prod-eu/[^"]+)"', listing.text)
    assert link is not None and link.group(1) == "/deployments/prod-eu/default/fraud%40production"

    page = client.get(link.group(1))
    assert page.status_code == 200 and unsafe_markup(page.text) == []
    shown = page_text(page.text)
    for fact in ("pod-a", "pod-b", "3 replica(s) wanted", "swapped", "created", "@production"):
        assert fact in shown, fact
    assert "<script>alert(1)</script> load failed" in shown
    assert 'href="/models/default/fraud/versions/2"' in page.text

    bad = client.get("/deployments/prod-eu/default/ghost@production")
    assert bad.status_code == 404 and "DEPLOYMENT_NOT_FOUND" in bad.text
    assert client.get("/deployments/9bad/fraud@x").status_code == 400
    assert client.get("/deployments?environment=%3Cx%3E").status_code == 400


def test_history_pages(client: TestClient) -> None:
    push(client, "fraud", {"m": b"1"})
    for i in range(30):
        _hb(client, replica=f"pod-{i}", reference="fraud/1")
    page = client.get("/deployments/prod-eu/default/fraud/1")
    assert page.text.count("<time ") == 25
    nxt = re.search(r'rel="next" href="([^"]+)"', page.text)
    assert nxt is not None
    older = client.get(nxt.group(1).replace("&amp;", "&"))
    assert older.status_code == 200 and older.text.count("<time ") == 6  # 30 joins + created
    assert 'rel="next"' not in older.text
    assert client.get("/deployments/prod-eu/default/fraud/1?before=x").status_code == 400


def test_reader_elsewhere_sees_nothing(auth_client: TestClient) -> None:
    c = auth_client
    admin = bearer(ADMIN_TOKEN)
    assert c.post("/api/v1/namespaces", json={"name": "ops"}, headers=admin).is_success
    c.headers.update(admin)
    push(c, "fraud", {"m": b"1"})
    _hb(c, reference="fraud/1")
    del c.headers["Authorization"]
    outsider = make_user(c, "olga", {"ops": "reader"})
    sign_in(c, outsider)
    listing = c.get("/deployments")
    assert listing.status_code == 200 and "No deployments" in listing.text
    r = c.get("/deployments/prod-eu/default/fraud/1")
    api = c.get(f"{D}/prod-eu/default/fraud/1", headers=bearer(outsider)).json()["error"]
    assert r.status_code == 403 and api["code"] == "PERMISSION_DENIED"
    assert api["message"] in page_text(r.text)


def test_list_pages(client: TestClient) -> None:
    push(client, "fraud", {"m": b"1"})
    for i in range(53):
        _hb(client, environment=f"env-{i:02d}", reference="fraud/1")
    first = client.get("/deployments")
    rows = re.findall(r"<td>(env-\d\d)</td>", first.text)
    assert rows == [f"env-{i:02d}" for i in range(50)]
    nxt = re.search(r'rel="next" href="([^"]+)"', first.text)
    assert nxt is not None
    second = client.get(nxt.group(1).replace("&amp;", "&"))
    assert re.findall(r"<td>(env-\d\d)</td>", second.text) == ["env-50", "env-51", "env-52"]
    assert 'rel="next"' not in second.text and "« First" in second.text
    # The token is REST v1's: one that is not a token is refused as there.
    bad = client.get("/deployments", params={"page_token": "not-a-token"})
    assert bad.status_code == 400 and "INVALID_CURSOR" in bad.text
