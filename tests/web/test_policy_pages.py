"""A request's own page and its cancel (the requester only), the policy
status column of the versions table, and a model's own policy (edit and
remove for admins), refused with the API's codes and messages."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from tests import governance_fixtures
from tests.auth_helpers import ADMIN_TOKEN, bearer, make_user
from tests.governance_fixtures import as_
from tests.helpers import push
from tests.web.conftest import csrf_of, sign_in
from tests.web.html_checks import page_text, unsafe_markup

gclient = governance_fixtures.gclient
POLICY = {
    "required_tags": {"encrypted": "true"},
    "metric_thresholds": ["metrics.accuracy >= 0.9"],
    "required_approvals": 1,
    "protected_aliases": ["production"],
}


def test_request_page_shows_the_check_and_only_the_requester_cancels(
    gclient: TestClient,
) -> None:
    c = gclient
    assert c.put("/api/v1/namespaces/default/policy", json=POLICY, **as_("admin")).is_success
    push(c, "fraud", {"m": b"1"}, metrics={"accuracy": 0.95}, tags={"encrypted": "true"})
    r = c.post(
        "/api/v1/models/default/fraud/versions/1/approvals",
        json={"comment": "<img src=x onerror=alert(1)>"},
        **as_("ana"),
    )
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    # Tags stay editable: the request now asks for a version that lacks one.
    r = c.patch(
        "/api/v1/models/default/fraud/versions/1", json={"delete_tags": ["encrypted"]}, **as_("ana")
    )
    assert r.status_code == 200, r.text
    mine = c.get(f"/approvals/{aid}", **as_("ana"))
    assert mine.status_code == 200 and unsafe_markup(mine.text) == []
    text = page_text(mine.text)
    assert "<img src=x onerror=alert(1)>" in text
    # The API's dry run: what applying it would still need, in its words.
    api = c.get("/api/v1/models/default/fraud/versions/1/policy-check", **as_("ana")).json()
    assert [v["rule"] for v in api["violations"]] == ["required_tag", "approvals"]
    for v in api["violations"]:
        assert v["message"] in text, v
    assert "Cancel request</button>" in mine.text and "Approve</button>" not in mine.text
    theirs = c.get(f"/approvals/{aid}", **as_("bob"))
    assert "Approve</button>" in theirs.text and "Cancel request" not in theirs.text
    token = csrf_of(theirs.text)
    # Someone else cancelling: the service's refusal, as the API gives it.
    r = c.post(f"/approvals/{aid}/cancel", data={"csrf_token": token}, **as_("bob"))
    api_err = c.post(f"/api/v1/approvals/{aid}/cancel", **as_("bob")).json()["error"]
    assert r.status_code == 403 and api_err["code"] == "NOT_REQUESTER"
    assert api_err["message"] in page_text(r.text)
    r = c.post(f"/approvals/{aid}/cancel", data={}, **as_("ana"))
    assert r.status_code == 403 and "CSRF_FAILED" in r.text
    r = c.post(
        f"/approvals/{aid}/cancel",
        data={"csrf_token": token},
        follow_redirects=False,
        **as_("ana"),
    )
    assert r.status_code == 303 and r.headers["location"].startswith(f"/approvals/{aid}?done=")
    done = page_text(c.get(r.headers["location"], **as_("ana")).text)
    assert f"request #{aid} cancelled" in done and "nothing left to check" in done
    assert c.get("/approvals/999", **as_("ana")).status_code == 404


def test_versions_table_policy_column(gclient: TestClient) -> None:
    c = gclient
    push(c, "fraud", {"m": b"1"}, metrics={"accuracy": 0.5})
    push(
        c,
        "fraud",
        {"m": b"2"},
        create=False,
        metrics={"accuracy": 0.95},
        tags={"encrypted": "true"},
    )
    # No policy: no column.
    assert '<th scope="col">Policy</th>' not in c.get("/models/default/fraud").text
    assert c.put("/api/v1/namespaces/default/policy", json=POLICY, **as_("admin")).is_success
    html = c.get("/models/default/fraud").text
    assert '<th scope="col">Policy</th>' in html
    rows = dict(
        re.findall(r'versions/(\d)">v\d</a></th>.*?<td class="policy-cell">(.*?)</td>', html, re.S)
    )
    assert "meets" in rows["2"] and "2 unmet" in rows["1"]
    v1 = page_text(rows["1"])
    assert "tag 'encrypted' must be 'true' (it is missing)" in v1
    assert "accuracy" in v1


def test_model_policy_edit_for_admins_only(auth_client: TestClient) -> None:
    c = auth_client
    push_headers = bearer(ADMIN_TOKEN)
    assert c.post("/api/v1/models", json={"name": "m"}, headers=push_headers).is_success
    assert c.put(
        "/api/v1/namespaces/default/policy",
        json={"required_approvals": 1},
        headers=push_headers,
    ).is_success
    reader = make_user(c, "rita", {"default": "reader"})
    sign_in(c, ADMIN_TOKEN)
    page = c.get("/models/default/m/policy")
    assert page.status_code == 200 and "No rules of its own" in page_text(page.text)
    token = csrf_of(page.text)
    r = c.post(
        "/models/default/m/policy",
        data={"csrf_token": token, "rules": '{"require_signature": true, "nope": 1}'},
    )
    assert r.status_code == 400 and "nope" in page_text(r.text)
    r = c.post(
        "/models/default/m/policy",
        data={"csrf_token": token, "rules": '{"require_signature": true}'},
        follow_redirects=False,
    )
    assert r.status_code == 303
    shown = c.get(r.headers["location"])
    effective = re.search(r'id="effective-title".*?</section>', shown.text, re.S)
    assert effective is not None
    # The effective policy merges the namespace's rule and the model's own.
    assert "require signature" in effective.group(0) and "required approvals" in effective.group(0)
    api = c.get("/api/v1/models/default/m/policy", headers=push_headers).json()
    assert api["model_policy"]["policy"]["require_signature"] is True
    # A reader sees it, cannot change it.
    sign_in(c, reader)
    page = c.get("/models/default/m/policy")
    assert page.status_code == 200 and "Save policy" not in page.text
    r = c.post("/models/default/m/policy/delete", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 403 and "PERMISSION_DENIED" in r.text
    # The admin removes it.
    sign_in(c, ADMIN_TOKEN)
    r = c.post("/models/default/m/policy/delete", data={"csrf_token": token})
    assert r.status_code == 200 and "policy removed" in page_text(r.text)
    assert (
        c.get("/api/v1/models/default/m/policy", headers=push_headers).json()["model_policy"][
            "policy"
        ]
        is None
    )
    r = c.post("/models/default/m/policy/delete", data={"csrf_token": token})
    assert r.status_code == 404 and "POLICY_NOT_FOUND" in r.text
    assert c.get("/models/default/ghost/policy").status_code == 404
