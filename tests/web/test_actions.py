"""Actions from the version and model pages: the same service calls as REST v1,
refused with the same code and message, each form CSRF-protected."""

from __future__ import annotations

import re

import httpx
from starlette.testclient import TestClient

from tests import governance_fixtures
from tests.governance_fixtures import as_
from tests.helpers import push
from tests.web.conftest import csrf_of
from tests.web.html_checks import page_text

gclient = governance_fixtures.gclient
M = "/api/v1/models/default/fraud"
PAGE = "/models/default/fraud"
PROD_POLICY = {
    "required_tags": {"encrypted": "true"},
    "metric_thresholds": ["metrics.accuracy >= 0.9"],
    "required_approvals": 1,
    "protected_aliases": ["production"],
}


def _post(c: TestClient, url: str, actor: str, **fields: str) -> httpx.Response:
    token = csrf_of(c.get(PAGE + "/versions/1", **as_(actor)).text)
    return c.post(url, data={"csrf_token": token, **fields}, follow_redirects=False, **as_(actor))


def test_publish_refused_with_the_apis_policy_message(gclient: TestClient) -> None:
    c = gclient
    assert c.put("/api/v1/namespaces/default/policy", json=PROD_POLICY, **as_("admin")).is_success
    push(c, "fraud", {"m": b"1"}, metrics={"accuracy": 0.85})
    page = c.get(PAGE + "/versions/1", **as_("ana"))
    assert "Publish</button>" in page.text and "Request approval</button>" in page.text
    r = _post(c, PAGE + "/versions/1/publish", "ana")
    assert r.status_code == 409
    api = c.post(f"{M}/versions/1/publish", **as_("ana")).json()["error"]
    text = page_text(r.text)
    assert api["code"] == "POLICY_VIOLATION" and api["message"] in text
    # Without the form's CSRF token nothing happens.
    r2 = c.post(PAGE + "/versions/1/archive", data={}, follow_redirects=False, **as_("ana"))
    assert r2.status_code == 403 and "CSRF_FAILED" in r2.text
    assert c.get(f"{M}/versions/1").json()["state"] == "ready"


def test_request_approve_alias_timeline_and_rollback(gclient: TestClient) -> None:
    c = gclient
    assert c.put("/api/v1/namespaces/default/policy", json=PROD_POLICY, **as_("admin")).is_success
    for n in (1, 2):
        push(
            c,
            "fraud",
            {"m": str(n).encode()},
            create=n == 1,
            metrics={"accuracy": 0.95},
            tags={"encrypted": "true"},
        )
    # Request: publish v2 and point production at it.
    r = _post(c, PAGE + "/versions/2/approvals", "ana", action="publish", alias="production")
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith(PAGE + "/versions/2?done=approval")
    assert "requested" in page_text(c.get(location, **as_("ana")).text)
    approval = c.get("/api/v1/namespaces/default/approvals", **as_("ana")).json()["approvals"][0]
    assert c.post(f"/api/v1/approvals/{approval['id']}/approve", **as_("bob")).is_success
    v2 = page_text(c.get(PAGE + "/versions/2", **as_("ana")).text)
    assert "published" in v2 and "@production" in v2
    # A free alias moved twice from the page, then rolled back from the model page.
    for n in ("1", "2"):
        r = _post(c, f"{PAGE}/versions/{n}/alias", "ana", alias="staging", reason=f"try {n}")
        assert r.status_code == 303
    model = c.get(PAGE, **as_("ana")).text
    found = re.search(r'<ol class="timeline">.*?</ol>', model, re.S)
    assert found is not None
    timeline = page_text(found.group(0))
    assert timeline.index("try 2") < timeline.index("try 1")
    assert "/aliases/staging/rollback" in model
    r = _post(c, PAGE + "/aliases/staging/rollback", "ana", reason="bad canary")
    assert r.status_code == 303
    assert "rolled back to v1" in page_text(c.get(r.headers["location"], **as_("ana")).text)
    assert c.get(f"{M}/versions/staging").json()["version"] == 1
    # Nothing before production's first move: the API's refusal, as a page.
    r = _post(c, PAGE + "/aliases/production/rollback", "ana")
    assert r.status_code == 409 and "NO_PREVIOUS_TARGET" in r.text
