"""Governance pages: approvals queue (no approve button on one's own request),
approve / reject by form, the audit log's filters, the policy page (edit for
admins only)."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests import governance_fixtures
from tests.auth_helpers import ADMIN_TOKEN, make_user, seed_models
from tests.governance_fixtures import as_
from tests.helpers import push
from tests.web.conftest import csrf_of, sign_in
from tests.web.html_checks import page_text, unsafe_markup

gclient = governance_fixtures.gclient
POLICY = {"required_approvals": 1, "protected_aliases": ["production"]}


def test_queue_approve_reject_and_own_request(gclient: TestClient) -> None:
    c = gclient
    assert c.put("/api/v1/namespaces/default/policy", json=POLICY, **as_("admin")).is_success
    for n in (1, 2):
        push(c, "fraud", {"m": str(n).encode()}, create=n == 1)
    for n, comment in ((1, "<script>alert(1)</script>"), (2, "ship it")):
        r = c.post(
            f"/api/v1/models/default/fraud/versions/{n}/approvals",
            json={"alias": "production", "comment": comment},
            **as_("ana"),
        )
        assert r.status_code == 201, r.text
    own = c.get("/approvals?namespace=default", **as_("ana")).text
    assert "Approve</button>" not in own and "Your own request" in own
    assert unsafe_markup(own) == [] and "<script>alert(1)</script>" in page_text(own)
    queue = c.get("/approvals?namespace=default", **as_("bob")).text
    assert queue.count("Approve</button>") == 2
    token = csrf_of(queue)
    # Without the CSRF token: refused, nothing decided.
    r = c.post("/approvals/1/reject", data={"comment": "x"}, follow_redirects=False, **as_("bob"))
    assert r.status_code == 403 and "CSRF_FAILED" in r.text
    r = c.post(
        "/approvals/1/reject",
        data={"csrf_token": token, "comment": "not this one"},
        follow_redirects=False,
        **as_("bob"),
    )
    assert r.status_code == 303
    assert "rejected" in page_text(c.get(r.headers["location"], **as_("bob")).text)
    r = c.post(
        "/approvals/2/approve", data={"csrf_token": token}, follow_redirects=False, **as_("bob")
    )
    assert r.status_code == 303
    assert c.get("/api/v1/models/default/fraud/versions/production").json()["version"] == 2
    # The requester approving their own request: the service's refusal, as a page.
    r = c.post(
        "/api/v1/models/default/fraud/versions/1/approvals",
        json={"action": "publish"},
        **as_("ana"),
    )
    mine = r.json()["id"]
    r = c.post(f"/approvals/{mine}/approve", data={"csrf_token": token}, **as_("ana"))
    assert r.status_code == 403 and "SELF_APPROVAL" in r.text
    applied = c.get("/approvals?namespace=default&state=applied", **as_("bob")).text
    assert "#2" in applied and "bob" in applied
    # The audit log, filtered.
    audit = c.get("/audit", params={"action": "approval.*"}, **as_("bob")).text
    assert "approval.requested" in audit and "alias.moved" not in audit
    bad = c.get("/audit", params={"since": "yesterday"}, **as_("bob"))
    assert bad.status_code == 400 and "INVALID_TIME" in bad.text


def test_policy_page_edit_for_admins_only(auth_client: TestClient) -> None:
    seed_models(auth_client)
    reader = make_user(auth_client, "rita", {"default": "reader"})
    sign_in(auth_client, ADMIN_TOKEN)
    page = auth_client.get("/namespaces/default/policy")
    assert "No policy" in page.text and "Save policy</button>" in page.text
    token = csrf_of(page.text)
    r = auth_client.post(
        "/namespaces/default/policy", data={"csrf_token": token, "rules": "{not json"}
    )
    assert r.status_code == 400 and "INVALID_POLICY" in r.text and "{not json" in r.text
    r = auth_client.post(
        "/namespaces/default/policy",
        data={"csrf_token": token, "rules": '{"required_approvals": 3, "bogus": 1}'},
    )
    assert r.status_code == 400 and "bogus" in page_text(r.text)
    rules = '{"required_approvals": 2, "metric_thresholds": ["metrics.auc >= 0.9"]}'
    r = auth_client.post(
        "/namespaces/default/policy",
        data={"csrf_token": token, "rules": rules},
        follow_redirects=False,
    )
    assert r.status_code == 303
    shown = page_text(auth_client.get(r.headers["location"]).text)
    assert "policy saved" in shown and "metrics.auc >= 0.9" in shown
    # A reader sees the rules, no editor, and a post is refused.
    sign_in(auth_client, reader)
    page = auth_client.get("/namespaces/default/policy")
    assert "metrics.auc >= 0.9" in page_text(page.text) and "Save policy" not in page.text
    r = auth_client.post(
        "/namespaces/default/policy", data={"csrf_token": csrf_of(page.text), "rules": "{}"}
    )
    assert r.status_code == 403 and "PERMISSION_DENIED" in r.text
