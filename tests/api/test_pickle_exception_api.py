"""REST v1 doors of the pickle exception (issue 12): PUT/DELETE
``.../versions/{v}/pickle-exception``, the version showing it, and the error
bodies (the permission rows are in test_auth_matrix.py)."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.helpers import assert_error, push, sha

PICKLE = b"\x80\x04K\x02."
V = "/api/v1/models/default/legacy/versions"


def test_record_show_and_revoke_over_rest(client: TestClient) -> None:
    push(client, "legacy", {"model.joblib": PICKLE, "notes.txt": b"n"}, framework="sklearn")
    push(client, "legacy", {"notes.txt": b"no pickle here"}, create=False)
    assert client.get(f"{V}/1").json()["pickle_exception"] is None

    r = client.put(f"{V}/1/pickle-exception", json={"reason": "rebuilt from audited source"})
    assert r.status_code == 200, r.text
    shown = r.json()["pickle_exception"]
    assert shown["reason"] == "rebuilt from audited source"
    assert shown["digests"] == {"model.joblib": sha(PICKLE)}
    assert shown["by"] and shown["at"].endswith("Z")
    for path in (f"{V}/1", f"{V}/latest?files=false", "/api/v1/resolve?ref=legacy/1"):
        assert client.get(path.replace("latest", "1")).json()["pickle_exception"] == shown
    listed = client.get(V).json()["versions"]
    assert [v["pickle_exception"] for v in listed] == [None, shown]

    r = client.delete(f"{V}/1/pickle-exception")
    assert r.status_code == 200 and r.json()["pickle_exception"] is None
    assert client.get(f"{V}/1").json()["pickle_exception"] is None
    events = client.get("/api/v1/events?types=version.*").json()["events"]
    assert [e["type"] for e in events if "pickle" in e["type"]] == [
        "version.pickle_exception_recorded",
        "version.pickle_exception_revoked",
    ]


def test_errors_come_in_the_one_body(client: TestClient) -> None:
    push(client, "legacy", {"model.pkl": PICKLE}, framework="sklearn")
    push(client, "legacy", {"notes.txt": b"no pickle"}, create=False)
    assert_error(
        client.put(f"{V}/2/pickle-exception", json={"reason": "x"}), 409, "NO_PICKLE_FILES"
    )
    assert_error(
        client.put(f"{V}/7/pickle-exception", json={"reason": "x"}), 404, "VERSION_NOT_FOUND"
    )
    assert_error(client.delete(f"{V}/1/pickle-exception"), 404, "PICKLE_EXCEPTION_NOT_FOUND")
    for body in ({}, {"reason": ""}, {"reason": 3}, {"reason": "x", "extra": 1}):
        r = client.put(f"{V}/1/pickle-exception", json=body)
        assert r.status_code == 422, (body, r.text)
        assert set(r.json()) == {"error"}
    assert client.get(f"{V}/1").json()["pickle_exception"] is None
