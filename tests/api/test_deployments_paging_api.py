"""``GET /api/v1/deployments`` in keyset pages (page_size, page_token,
next_page_token), with INVALID_CURSOR for a token it did not hand out."""

from __future__ import annotations

import base64

from starlette.testclient import TestClient

from tests.helpers import assert_error, push

D = "/api/v1/deployments"


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_deployments_come_in_pages(client: TestClient) -> None:
    push(client, "fraud", {"m": b"1"})
    client.put("/api/v1/models/default/fraud/aliases/production", json={"version": "1"})
    made = []
    for env in ("prod-eu", "prod-us", "staging"):
        for ref in ("fraud@production", "fraud/1"):
            r = client.put(D, json={"environment": env, "reference": ref, "replicas": 1})
            assert r.status_code == 200, r.text
            made.append((env, r.json()["reference"]))
    whole = client.get(D).json()
    assert whole["next_page_token"] is None
    everything = [(d["environment"], d["reference"]) for d in whole["deployments"]]
    assert sorted(everything) == sorted(made) and everything == sorted(everything)

    for size in (1, 2, 4):
        walked: list[tuple[str, str]] = []
        token = None
        pages = 0
        while True:
            params: dict[str, object] = {"page_size": size}
            if token:
                params["page_token"] = token
            page = client.get(D, params=params).json()
            assert len(page["deployments"]) <= size
            walked += [(d["environment"], d["reference"]) for d in page["deployments"]]
            pages += 1
            token = page["next_page_token"]
            if not token:
                break
        assert walked == everything and pages == -(-len(everything) // size)
    # Filters apply inside every page.
    first = client.get(D, params={"environment": "prod-us", "page_size": 1}).json()
    assert [d["environment"] for d in first["deployments"]] == ["prod-us"]
    rest = client.get(
        D,
        params={"environment": "prod-us", "page_size": 1, "page_token": first["next_page_token"]},
    ).json()
    assert [d["environment"] for d in rest["deployments"]] == ["prod-us"]
    assert rest["next_page_token"] is None


def test_a_bad_page_token_is_invalid_cursor(client: TestClient) -> None:
    for bad in (
        "not base64!",
        _token(b"not json"),
        _token(b'{"a": 1}'),
        _token(b'["prod"]'),
        _token(b'["bad env!", "default/fraud@production"]'),
        _token(b'["prod", "default/fraud\\u0000"]'),
        _token(b'["prod", ""]'),
        _token(b'["prod", 7]'),
    ):
        assert_error(client.get(D, params={"page_token": bad}), 400, "INVALID_CURSOR")
    assert client.get(D, params={"page_size": 0}).status_code == 422
