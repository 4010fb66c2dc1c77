"""Governance over HTTP (issue 3): policies, dry runs, approvals, rollback,
alias at a time and the audit log, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

from starlette.testclient import TestClient

from tests import governance_fixtures
from tests.governance_fixtures import as_
from tests.helpers import assert_error, push

M = "/api/v1/models/default/fraud"
gclient = governance_fixtures.gclient
PROD_POLICY = {
    "required_tags": {"encrypted": "true"},
    "metric_thresholds": ["metrics.accuracy >= 0.9"],
    "required_approvals": 1,
    "protected_aliases": ["production"],
}


def _push(c: TestClient, n: int, **extra: Any) -> dict[str, Any]:
    return push(c, "fraud", {"model.onnx": f"weights {n}".encode()}, **extra)


def _audit(c: TestClient, **params: Any) -> list[dict[str, Any]]:
    r = c.get("/api/v1/audit", params=params)
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()["entries"]
    return entries


def test_done_when_walkthrough(gclient: TestClient) -> None:
    c = gclient
    r = c.put("/api/v1/namespaces/default/policy", json=PROD_POLICY, **as_("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["policy"]["metric_thresholds"][0]["text"] == "metrics.accuracy >= 0.9"

    # v1: a push that fails the production policy, with a readable list.
    _push(c, 1, format="onnx", metrics={"accuracy": 0.85}, tags={"team": "risk"})
    check = c.get(f"{M}/versions/1/policy-check").json()
    assert check["ok"] is False
    rules = sorted(v["rule"] for v in check["violations"])
    assert rules == ["approvals", "metric", "required_tag"]
    err = assert_error(c.post(f"{M}/versions/1/publish", **as_("ana")), 409, "POLICY_VIOLATION")
    assert "tag 'encrypted' must be 'true'" in err["message"]
    assert "metrics.accuracy >= 0.9 is not met (it is 0.85)" in err["message"]
    assert {v["rule"] for v in err["details"]["violations"]} == {
        "required_tag",
        "metric",
        "approvals",
    }
    # Requests for something that cannot pass are refused up front.
    assert_error(
        c.post(f"{M}/versions/1/approvals", json={"alias": "production"}, **as_("ana")),
        409,
        "POLICY_VIOLATION",
    )

    # Fix: a new version with the tag and the accuracy. Only approval is missing.
    _push(c, 2, format="onnx", metrics={"accuracy": 0.93}, tags={"encrypted": "true"})
    check = c.get(f"{M}/versions/2/policy-check").json()
    assert [v["rule"] for v in check["violations"]] == ["approvals"]
    err = assert_error(c.post(f"{M}/versions/2/publish", **as_("ana")), 409, "APPROVAL_REQUIRED")
    assert "request" in err["message"]
    r = c.post(
        f"{M}/versions/2/approvals",
        json={"alias": "production", "comment": "ready for prod"},
        **as_("ana"),
    )
    assert r.status_code == 201, r.text
    req = r.json()
    assert req["state"] == "pending" and req["requested_by"] == "ana"
    pending = c.get("/api/v1/namespaces/default/approvals").json()["approvals"]
    assert [p["id"] for p in pending] == [req["id"]]

    # No self-approval; another actor approves and the transition applies.
    assert_error(
        c.post(f"/api/v1/approvals/{req['id']}/approve", **as_("ana")), 403, "SELF_APPROVAL"
    )
    r = c.post(f"/api/v1/approvals/{req['id']}/approve", json={"comment": "lgtm"}, **as_("bob"))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "applied" and r.json()["approvals"] == ["bob"]
    v2 = c.get(f"{M}/versions/production").json()
    assert v2["version"] == 2 and v2["state"] == "published"
    assert c.get("/api/v1/namespaces/default/approvals").json()["approvals"] == []

    # The move is in the audit log, with who, from and to.
    moves = _audit(c, action="alias.moved", model="fraud")
    assert moves[0]["actor"] == "bob" and moves[0]["target"] == "default/fraud@production"
    assert moves[0]["before"] == {"version": None} and moves[0]["after"] == {"version": 2}
    assert moves[0]["payload"]["approval_id"] == req["id"]
    types = [e["action"] for e in _audit(c, model="default/fraud")]
    assert types[:4] == [
        "approval.applied",
        "alias.moved",
        "version.published",
        "approval.approved",
    ]

    # v3 goes the same way, then roll back to v2.
    _push(c, 3, format="onnx", metrics={"accuracy": 0.95}, tags={"encrypted": "true"})
    rid = c.post(f"{M}/versions/3/approvals", json={"alias": "production"}, **as_("ana")).json()[
        "id"
    ]
    assert c.post(f"/api/v1/approvals/{rid}/approve", **as_("bob")).json()["state"] == "applied"
    assert c.get(f"{M}/versions/production").json()["version"] == 3
    r = c.post(f"{M}/aliases/production/rollback", json={"reason": "latency"}, **as_("ops"))
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    last = _audit(c, action="alias.", actor="ops")[0]
    assert last["before"] == {"version": 3} and last["after"] == {"version": 2}
    assert last["payload"]["rollback"] is True and last["payload"]["reason"] == "latency"


def test_policy_crud_merge_and_events(gclient: TestClient) -> None:
    c = gclient
    assert c.get("/api/v1/namespaces/default/policy").json()["policy"] is None
    _push(c, 1)
    ns = {"required_tags": ["encrypted=true", "team"], "metric_thresholds": ["accuracy > 0.5"]}
    assert c.put("/api/v1/namespaces/default/policy", json=ns).status_code == 200
    model = {
        "required_tags": {"team": "risk"},
        "metric_thresholds": [{"metric": "accuracy", "op": ">=", "value": 0.9}],
        "required_metadata": ["owner"],
        "allowed_formats": ["ONNX"],
    }
    assert c.put(f"{M}/policy", json=model, **as_("admin")).status_code == 200
    body = c.get(f"{M}/policy").json()
    eff = body["effective"]
    assert eff["required_tags"] == {"encrypted": "true", "team": "risk"}
    assert [m["text"] for m in eff["metric_thresholds"]] == ["metrics.accuracy >= 0.9"]
    assert eff["allowed_formats"] == ["onnx"] and eff["required_metadata"] == ["owner"]
    assert body["namespace_policy"]["policy"]["required_tags"] == {
        "encrypted": "true",
        "team": None,
    }
    ev = _audit(c, action="policy.updated")
    assert ev[0]["actor"] == "admin" and ev[0]["target"] == "default/fraud"
    assert ev[0]["before"] is None and ev[0]["after"]["required_metadata"] == ["owner"]
    # Replace: before/after both present.
    c.put(f"{M}/policy", json={"require_signature": True}, **as_("admin"))
    ev = _audit(c, action="policy.updated", model="fraud")
    assert ev[0]["before"]["required_metadata"] == ["owner"]
    assert ev[0]["after"]["require_signature"] is True
    assert c.delete(f"{M}/policy").status_code == 204
    assert_error(c.delete(f"{M}/policy"), 404, "POLICY_NOT_FOUND")
    assert _audit(c, action="policy.*")[0]["action"] == "policy.deleted"
    # Bad policies never reach the store.
    for bad in (
        {"metric_thresholds": ["accuracy ~ 3"]},
        {"required_approvals": -1},
        {"protected_aliases": ["latest"]},
        {"allowed_formats": []},
        {"required_tags": {"bad key": "x"}},
    ):
        assert_error(c.put("/api/v1/namespaces/default/policy", json=bad), 400, "INVALID_POLICY")
    r = c.put("/api/v1/namespaces/default/policy", json={"nope": 1})
    assert r.status_code == 422
    assert_error(c.get("/api/v1/namespaces/nope/policy"), 404, "NAMESPACE_NOT_FOUND")


def test_every_unmet_rule_is_listed(gclient: TestClient) -> None:
    c = gclient
    policy = {
        "required_tags": {"encrypted": "true", "reviewed": None},
        "required_metadata": ["owner"],
        "require_signature": True,
        "metric_thresholds": ["accuracy >= 0.9", "latency_ms < 50"],
        "allowed_formats": ["onnx"],
    }
    c.put("/api/v1/namespaces/default/policy", json=policy)
    _push(c, 1, format="pytorch", metrics={"accuracy": 0.5}, tags={"encrypted": "no"})
    err = assert_error(c.post(f"{M}/versions/1/publish"), 409, "POLICY_VIOLATION")
    got = {(v["rule"], v["key"]) for v in err["details"]["violations"]}
    assert got == {
        ("required_tag", "encrypted"),
        ("required_tag", "reviewed"),
        ("required_metadata", "owner"),
        ("signature", None),
        ("metric", "accuracy"),
        ("metric", "latency_ms"),
        ("format", None),
    }
    assert all(v["message"] for v in err["details"]["violations"])
    assert c.get(f"{M}/versions/1").json()["state"] == "ready"
    _push(
        c,
        2,
        format="onnx",
        metrics={"accuracy": 0.95, "latency_ms": 10},
        tags={"encrypted": "true", "reviewed": "ana"},
        metadata={"owner": {"team": "risk"}},
        signature={"inputs": [{"name": "x"}]},
    )
    assert c.get(f"{M}/versions/2/policy-check").json()["ok"] is True
    r = c.post(f"{M}/versions/2/publish", json={"archive_previous": True})
    assert r.status_code == 200 and r.json()["state"] == "published"


def test_protected_alias_moves(gclient: TestClient) -> None:
    c = gclient
    c.put(
        "/api/v1/namespaces/default/policy",
        json={"required_tags": {"encrypted": "true"}, "protected_aliases": ["production"]},
    )
    _push(c, 1, tags={"encrypted": "true"})
    # Unprotected aliases move freely; protected ones need a published, compliant version.
    assert c.put(f"{M}/aliases/staging", json={"version": "1"}).status_code == 200
    err = assert_error(
        c.put(f"{M}/aliases/production", json={"version": "1"}), 409, "POLICY_VIOLATION"
    )
    assert [v["rule"] for v in err["details"]["violations"]] == ["published"]
    dry = c.get(f"{M}/versions/1/policy-check", params={"action": "alias", "alias": "production"})
    assert dry.json()["gated"] is True and not dry.json()["ok"]
    free = c.get(f"{M}/versions/1/policy-check", params={"action": "alias", "alias": "staging"})
    assert free.json()["gated"] is False and free.json()["ok"]
    assert c.post(f"{M}/versions/1/publish").status_code == 200
    assert c.put(f"{M}/aliases/production", json={"version": "1"}).status_code == 200
    assert_error(c.delete(f"{M}/aliases/production"), 409, "ALIAS_PROTECTED")
    # Nor can its target stop being published under it.
    for action in ("archive", "restore"):
        err = assert_error(c.post(f"{M}/versions/1/{action}"), 409, "ALIAS_PROTECTED")
        assert err["details"] == {
            "alias": "production",
            "ref": "default/fraud/1",
            "state": ("archived" if action == "archive" else "ready"),
        }
    assert c.get(f"{M}/versions/1").json()["state"] == "published"
    assert c.delete(f"{M}/aliases/staging").status_code == 204
    # Compare-and-set on set_alias.
    _push(c, 2, tags={"encrypted": "true"})
    c.post(f"{M}/versions/2/publish")
    err = assert_error(
        c.put(f"{M}/aliases/production", json={"version": "2", "expected_version": 7}),
        409,
        "ALIAS_CHANGED",
    )
    assert err["details"]["actual"] == 1
    r = c.put(f"{M}/aliases/production", json={"version": "2", "expected_version": 1})
    assert r.status_code == 200
    # One approved request may publish, archive the others and move the alias:
    # the invariant is checked when the transaction is complete.
    _push(c, 3, tags={"encrypted": "true"})
    body = {"alias": "production", "archive_previous": True}
    req = c.post(f"{M}/versions/3/approvals", json=body, **as_("ana")).json()
    assert c.post(f"/api/v1/approvals/{req['id']}/approve", **as_("bob")).json()["state"] == (
        "applied"
    )
    states = {v["version"]: v["state"] for v in c.get(f"{M}/versions").json()["versions"]}
    assert states == {1: "archived", 2: "archived", 3: "published"}
    assert c.get(f"{M}/versions/production").json()["version"] == 3
    for bad in (10**20, 0, -1):
        assert_error(
            c.put(f"{M}/aliases/production", json={"version": "2", "expected_version": bad}),
            400,
            "INVALID_INPUT",
        )
        assert_error(
            c.post(f"{M}/aliases/production/rollback", json={"expected_version": bad}),
            400,
            "INVALID_INPUT",
        )


def test_approval_rules(gclient: TestClient) -> None:
    c = gclient
    c.put(
        "/api/v1/namespaces/default/policy",
        json={"required_tags": {"encrypted": "true"}, "required_approvals": 2},
    )
    _push(c, 1, tags={"encrypted": "true"})
    _push(c, 2, tags={"encrypted": "true"})
    a1 = c.post(f"{M}/versions/1/approvals", json={"comment": "pls"}, **as_("ana")).json()
    assert_error(
        c.post(f"{M}/versions/1/approvals", json={}, **as_("ana")), 409, "APPROVAL_ALREADY_PENDING"
    )
    # Two distinct approvals: the first does not apply, a repeat is refused.
    r = c.post(f"/api/v1/approvals/{a1['id']}/approve", **as_("bob"))
    assert r.json()["state"] == "pending" and r.json()["approvals"] == ["bob"]
    assert_error(
        c.post(f"/api/v1/approvals/{a1['id']}/approve", **as_("bob")), 409, "ALREADY_REVIEWED"
    )
    # Policy no longer holds: the approval is refused and the request stays pending.
    c.patch(f"{M}/versions/1", json={"delete_tags": ["encrypted"]})
    err = assert_error(
        c.post(f"/api/v1/approvals/{a1['id']}/approve", **as_("cy")), 409, "POLICY_VIOLATION"
    )
    assert [v["rule"] for v in err["details"]["violations"]] == ["required_tag"]
    got = c.get(f"/api/v1/approvals/{a1['id']}").json()
    assert got["state"] == "pending" and got["approvals"] == ["bob"]
    c.patch(f"{M}/versions/1", json={"tags": {"encrypted": "true"}})
    r = c.post(f"/api/v1/approvals/{a1['id']}/approve", json={"comment": "ok"}, **as_("cy"))
    assert r.json()["state"] == "applied" and r.json()["approvals"] == ["bob", "cy"]
    assert c.get(f"{M}/versions/1").json()["state"] == "published"
    assert_error(
        c.post(f"/api/v1/approvals/{a1['id']}/approve", **as_("dan")), 409, "APPROVAL_NOT_PENDING"
    )
    # Reject and cancel.
    a2 = c.post(f"{M}/versions/2/approvals", json={}, **as_("ana")).json()
    assert_error(c.post(f"/api/v1/approvals/{a2['id']}/reject", **as_("ana")), 403, "SELF_APPROVAL")
    r = c.post(f"/api/v1/approvals/{a2['id']}/reject", json={"comment": "no"}, **as_("bob"))
    assert r.json()["state"] == "rejected" and r.json()["reviews"][0]["comment"] == "no"
    a3 = c.post(f"{M}/versions/2/approvals", json={}, **as_("ana")).json()
    assert_error(c.post(f"/api/v1/approvals/{a3['id']}/cancel", **as_("bob")), 403, "NOT_REQUESTER")
    assert c.post(f"/api/v1/approvals/{a3['id']}/cancel", **as_("ana")).json()["state"] == (
        "cancelled"
    )
    listed = c.get("/api/v1/namespaces/default/approvals", params={"state": "all"}).json()
    assert [a["state"] for a in listed["approvals"]] == ["cancelled", "rejected", "applied"]
    page = c.get(
        "/api/v1/namespaces/default/approvals", params={"state": "all", "page_size": 2}
    ).json()
    assert len(page["approvals"]) == 2 and page["next_page_token"]
    rest = c.get(
        "/api/v1/namespaces/default/approvals",
        params={"state": "all", "page_token": page["next_page_token"]},
    ).json()
    assert [a["state"] for a in rest["approvals"]] == ["applied"]
    types = [e["action"] for e in _audit(c, action="approval.")]
    assert types.count("approval.requested") == 3 and "approval.cancelled" in types
    assert "approval.rejected" in types and types.count("approval.approved") == 2
    assert_error(c.get("/api/v1/approvals/999"), 404, "APPROVAL_NOT_FOUND")
    assert_error(c.get(f"/api/v1/approvals/{10**20}"), 404, "APPROVAL_NOT_FOUND")
    assert_error(
        c.post(f"/api/v1/approvals/{10**20}/approve", **as_("bob")), 404, "APPROVAL_NOT_FOUND"
    )
    assert_error(
        c.post(f"{M}/versions/2/approvals", json={"comment": "a\x00b"}), 400, "INVALID_INPUT"
    )
    assert_error(
        c.post(f"{M}/versions/2/approvals", json={"action": "delete"}), 400, "INVALID_ACTION"
    )
    assert_error(
        c.post(f"{M}/versions/2/approvals", json={"action": "alias"}), 400, "INVALID_ALIAS"
    )
    c.post(f"{M}/versions/2/archive")
    assert_error(
        c.post(f"{M}/versions/2/approvals", json={"action": "alias", "alias": "x"}),
        409,
        "INVALID_STATE_TRANSITION",
    )
    assert_error(c.post(f"{M}/versions/2/approvals", json={}), 409, "INVALID_STATE_TRANSITION")
    assert_error(
        c.get("/api/v1/namespaces/default/approvals", params={"state": "x"}), 400, "INVALID_STATE"
    )


def test_rollback_and_alias_at_time(gclient: TestClient) -> None:
    c = gclient
    for n in (1, 2, 3):
        _push(c, n)
    assert_error(c.post(f"{M}/aliases/prod/rollback"), 409, "NO_PREVIOUS_TARGET")
    c.put(f"{M}/aliases/prod", json={"version": "1"})
    t1 = c.get(f"{M}/aliases/prod").json()
    assert t1["version"] == 1
    assert_error(c.post(f"{M}/aliases/prod/rollback"), 409, "NO_PREVIOUS_TARGET")
    time.sleep(0.002)  # distinct microsecond timestamps for the time-travel query
    c.put(f"{M}/aliases/prod", json={"version": "2"})
    c.put(f"{M}/aliases/prod", json={"version": "3"})
    after3 = c.get(f"{M}/aliases/prod").json()["at_us"]
    assert_error(
        c.post(f"{M}/aliases/prod/rollback", json={"expected_version": 2}), 409, "ALIAS_CHANGED"
    )
    r = c.post(f"{M}/aliases/prod/rollback", json={"expected_version": 3})
    assert r.status_code == 200 and r.json()["version"] == 2
    # A second rollback undoes the rollback (the history is the source of truth).
    assert c.post(f"{M}/aliases/prod/rollback").json()["version"] == 3
    hist = c.get(f"{M}/aliases/history", params={"alias": "prod"}).json()["history"]
    assert [(h["from_version"], h["to_version"]) for h in hist] == [
        (None, 1),
        (1, 2),
        (2, 3),
        (3, 2),
        (2, 3),
    ]
    # Time travel: before the first move, at it, at an RFC 3339 time, and now.
    first = t1["move"]["at"]
    assert (
        c.get(f"{M}/aliases/prod", params={"at": "1970-01-01T00:00:00Z"}).json()["version"] is None
    )
    assert c.get(f"{M}/aliases/prod", params={"at": first}).json()["version"] == 1
    assert c.get(f"{M}/aliases/prod", params={"at": str(after3)}).json()["version"] == 3
    assert c.get(f"{M}/aliases/prod").json()["version"] == 3
    assert c.get(f"{M}/aliases/nothing").json()["version"] is None
    c.delete(f"{M}/aliases/prod")
    assert c.get(f"{M}/aliases/prod").json()["version"] is None
    assert c.get(f"{M}/aliases/prod", params={"at": str(after3)}).json()["version"] == 3
    # Rolling back a deletion restores the alias.
    assert c.post(f"{M}/aliases/prod/rollback").json()["version"] == 3
    for bad in ("yesterday", "2026-13-01", "9" * 30):
        assert_error(c.get(f"{M}/aliases/prod", params={"at": bad}), 400, "INVALID_TIME")
    assert_error(c.get("/api/v1/models/default/nope/aliases/prod"), 404, "MODEL_NOT_FOUND")


def test_audit_filters_and_pages(gclient: TestClient) -> None:
    c = gclient
    for name, who in (("fraud", "ana"), ("fraudster", "bob")):
        c.post("/api/v1/models", json={"name": name}, **as_(who))
        r = c.post(f"/api/v1/models/default/{name}/versions", json={}, **as_(who))
        assert r.status_code == 201, r.text
    c.put(f"{M}/aliases/prod", json={"version": "1"}, **as_("bob"))
    c.patch(f"{M}/versions/1", json={"tags": {"k": "v"}}, **as_("ana"))
    mid = _audit(c)[0]["at"]
    c.post(f"{M}/versions/1/publish", **as_("cy"))

    every = _audit(c)
    ids = [e["id"] for e in every]
    assert ids == sorted(ids, reverse=True)
    assert {"id", "at", "actor", "action", "namespace", "target", "before", "after"} <= set(
        every[0]
    )
    # By model: the model, its versions and aliases, not a model sharing its prefix.
    targets = {e["target"] for e in _audit(c, model="fraud")}
    assert targets == {"default/fraud", "default/fraud/1", "default/fraud@prod"}
    assert {e["actor"] for e in _audit(c, actor="bob")} == {"bob"}
    assert [e["action"] for e in _audit(c, actor="bob", model="fraud")] == ["alias.moved"]
    assert [e["action"] for e in _audit(c, action="version.*", model="fraud")] == [
        "version.published",
        "version.updated",
        "version.created",
    ]
    upd = _audit(c, action="version.updated")[0]
    assert upd["before"]["tags"] == {} and upd["after"]["tags"] == {"k": "v"}
    pub = _audit(c, action="version.published")[0]
    assert pub["before"] == {"state": "ready"} and pub["after"] == {"state": "published"}
    # Time range: since is inclusive, until exclusive.
    assert [e["action"] for e in _audit(c, since=mid)][-1] == "version.updated"
    assert all(e["action"] != "version.published" for e in _audit(c, until=mid))
    # Cursor pages walk everything exactly once.
    seen: list[int] = []
    token = None
    while True:
        params: dict[str, Any] = {"page_size": 2}
        if token:
            params["page_token"] = token
        body = c.get("/api/v1/audit", params=params).json()
        seen += [e["id"] for e in body["entries"]]
        token = body["next_page_token"]
        if not token:
            break
    assert seen == ids
    assert_error(c.get("/api/v1/audit", params={"page_token": "x"}), 400, "INVALID_CURSOR")
    assert_error(c.get("/api/v1/audit", params={"action": "DROP TABLE"}), 400, "INVALID_INPUT")
    # ``$`` would let a trailing newline through a plain match.
    assert_error(c.get("/api/v1/audit", params={"action": "alias.*\n"}), 400, "INVALID_INPUT")
    assert_error(c.get("/api/v1/audit", params={"since": "soon"}), 400, "INVALID_TIME")
    assert_error(c.get("/api/v1/audit", params={"model": "a/b/c"}), 400, "INVALID_NAME")
    assert c.get("/api/v1/audit", params={"actor": "x" * 300}).status_code == 400
    assert_error(c.get("/api/v1/audit", params={"actor": "a\x00"}), 400, "INVALID_INPUT")


def test_governance_routes_are_documented(gclient: TestClient) -> None:
    spec = gclient.get("/openapi.json").json()
    wanted = {
        ("/api/v1/namespaces/{namespace}/policy", "put"),
        ("/api/v1/models/{namespace}/{name}/policy", "get"),
        ("/api/v1/models/{namespace}/{name}/versions/{version}/policy-check", "get"),
        ("/api/v1/models/{namespace}/{name}/versions/{version}/approvals", "post"),
        ("/api/v1/namespaces/{namespace}/approvals", "get"),
        ("/api/v1/approvals/{approval_id}/approve", "post"),
        ("/api/v1/models/{namespace}/{name}/aliases/{alias}/rollback", "post"),
        ("/api/v1/models/{namespace}/{name}/aliases/{alias}", "get"),
        ("/api/v1/audit", "get"),
    }
    for path, method in wanted:
        op = spec["paths"][path][method]
        assert op["summary"] and "governance" in op["tags"], (path, method)
    # The alias history route is still reachable (not shadowed by GET .../{alias}).
    assert gclient.get(f"{M}/aliases/history").status_code == 404  # no such model yet
    _push(gclient, 1)
    assert gclient.get(f"{M}/aliases/history").json() == {"history": [], "next_page_token": None}


def test_deleting_a_model_takes_its_policy_and_requests(gclient: TestClient) -> None:
    c = gclient
    _push(c, 1)
    c.put(f"{M}/policy", json={"required_approvals": 1})
    rid = c.post(f"{M}/versions/1/approvals", json={}, **as_("ana")).json()["id"]
    c.post(f"/api/v1/approvals/{rid}/reject", **as_("bob"))
    c.post(f"{M}/versions/1/approvals", json={}, **as_("ana"))
    assert c.delete(f"{M}").status_code == 204
    assert_error(c.get(f"/api/v1/approvals/{rid}"), 404, "APPROVAL_NOT_FOUND")
    assert c.get("/api/v1/namespaces/default/approvals", params={"state": "all"}).json() == {
        "approvals": [],
        "next_page_token": None,
    }
    _push(c, 1)  # same name again: no policy carried over
    assert c.get(f"{M}/policy").json()["model_policy"]["policy"] is None
    deleted = _audit(c, action="model.deleted")[0]
    assert deleted["before"]["name"] == "fraud" and deleted["after"] is None


def test_rollback_restores_a_version_archived_by_archive_previous(gclient: TestClient) -> None:
    """Issue 9: publish v2 through approval with archive_previous (archiving v1,
    moving production to v2), then roll production back in one step: v1 comes
    back published and takes the alias in one transaction, both evented."""
    c = gclient
    policy = {**PROD_POLICY, "metric_thresholds": []}
    assert c.put("/api/v1/namespaces/default/policy", json=policy).status_code == 200
    tags = {"encrypted": "true"}
    _push(c, 1, tags=tags)
    req = c.post(f"{M}/versions/1/approvals", json={"alias": "production"}, **as_("ana")).json()
    assert c.post(f"/api/v1/approvals/{req['id']}/approve", **as_("bob")).json()["state"] == (
        "applied"
    )
    _push(c, 2, tags=tags)
    body = {"alias": "production", "archive_previous": True}
    req = c.post(f"{M}/versions/2/approvals", json=body, **as_("ana")).json()
    assert c.post(f"/api/v1/approvals/{req['id']}/approve", **as_("bob")).json()["state"] == (
        "applied"
    )
    assert c.get(f"{M}/versions/1").json()["state"] == "archived"

    # A later policy rule v1 does not meet: refused, naming version and rule,
    # and nothing changed (the restore is in the alias move's transaction).
    stricter = {**policy, "required_tags": {"encrypted": "true", "scan": "clean"}}
    assert c.put("/api/v1/namespaces/default/policy", json=stricter).status_code == 200
    err = assert_error(
        c.post(f"{M}/aliases/production/rollback", **as_("ops")), 409, "POLICY_VIOLATION"
    )
    assert "default/fraud/1" in err["message"] and err["details"]["ref"] == "default/fraud/1"
    assert [v["key"] for v in err["details"]["violations"]] == ["scan"]
    assert c.get(f"{M}/versions/1").json()["state"] == "archived"
    assert c.get(f"{M}/versions/production").json()["version"] == 2

    assert c.put("/api/v1/namespaces/default/policy", json=policy).status_code == 200
    r = c.post(f"{M}/aliases/production/rollback", json={"reason": "bad v2"}, **as_("ops"))
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1 and r.json()["state"] == "published"
    assert c.get(f"{M}/versions/production").json()["version"] == 1
    assert c.get(f"{M}/versions/2").json()["state"] == "published"
    restored, moved = _audit(c, model="fraud", actor="ops")[1::-1]
    assert restored["action"] == "version.restored" and moved["action"] == "alias.moved"
    assert restored["before"] == {"state": "archived"} and restored["after"] == {
        "state": "published"
    }
    assert restored["payload"]["rollback"] is True
    assert moved["payload"]["rollback"] is True and moved["after"] == {"version": 1}
    assert moved["id"] == restored["id"] + 1

    # Behind an unprotected alias the target comes back ready (a plain restore).
    assert c.put(f"{M}/aliases/staging", json={"version": "1"}).status_code == 200
    assert c.put(f"{M}/aliases/staging", json={"version": "2"}).status_code == 200
    assert c.post(f"{M}/versions/1/archive").status_code == 409  # still behind production
    c.post(f"{M}/aliases/production/rollback", **as_("ops"))  # back to 2
    assert c.post(f"{M}/versions/1/archive").status_code == 200
    r = c.post(f"{M}/aliases/staging/rollback")
    assert r.status_code == 200 and r.json()["version"] == 1 and r.json()["state"] == "ready"

    # Pointing an alias at an archived version says which and what to do.
    c.post(f"{M}/versions/1/archive")
    err = assert_error(
        c.put(f"{M}/aliases/canary", json={"version": "1"}), 409, "INVALID_STATE_TRANSITION"
    )
    assert "an archived version" in err["message"] and "restore it first" in err["message"]
    assert err["details"] == {"ref": "default/fraud/1", "state": "archived", "alias": "canary"}


def test_an_edit_may_not_break_the_policy_under_a_protected_alias(gclient: TestClient) -> None:
    """Issue 9: a tag edit, tag delete or metadata edit that breaks a rule for the
    version behind protected @production is refused, naming alias and rule."""
    c = gclient
    policy = {
        "required_tags": {"encrypted": "true"},
        "required_metadata": ["owner"],
        "protected_aliases": ["production"],
    }
    assert c.put("/api/v1/namespaces/default/policy", json=policy).status_code == 200
    _push(c, 1, tags={"encrypted": "true", "team": "risk"}, metadata={"owner": "risk"})
    assert c.post(f"{M}/versions/1/publish").status_code == 200
    assert c.put(f"{M}/aliases/production", json={"version": "1"}).status_code == 200
    for body, key in (
        ({"tags": {"encrypted": "false"}}, "encrypted"),
        ({"delete_tags": ["encrypted"]}, "encrypted"),
        ({"metadata": {"team": "x"}}, "owner"),
    ):
        err = assert_error(c.patch(f"{M}/versions/1", json=body), 409, "POLICY_VIOLATION")
        assert "@production" in err["message"] and "default/fraud/1" in err["message"]
        assert err["details"]["alias"] == "production" and err["details"]["aliases"] == [
            "production"
        ]
        assert [v["key"] for v in err["details"]["violations"]] == [key]
    got = c.get(f"{M}/versions/1").json()
    assert got["tags"]["encrypted"] == "true" and got["metadata"] == {"owner": "risk"}
    assert c.get(f"{M}/versions/production").json()["version"] == 1
    # Edits that keep it compliant pass, as do edits of versions no protected alias is on.
    assert c.patch(f"{M}/versions/1", json={"tags": {"team": "fraud"}}).status_code == 200
    assert c.patch(f"{M}/versions/1", json={"description": "v1"}).status_code == 200
    _push(c, 2, tags={"encrypted": "true"})
    r = c.patch(f"{M}/versions/2", json={"tags": {"encrypted": "false"}})
    assert r.status_code == 200
    # A rule added to the policy later does not block unrelated edits.
    stricter = {**policy, "required_tags": {"encrypted": "true", "scan": "clean"}}
    assert c.put("/api/v1/namespaces/default/policy", json=stricter).status_code == 200
    assert c.patch(f"{M}/versions/1", json={"description": "still v1"}).status_code == 200
