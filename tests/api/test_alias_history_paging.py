"""REST v1 alias history in keyset pages (``page_size``, ``page_token``,
``order``), on SQLite and PostgreSQL: oldest first by default as before
paging, newest first on request, tokens continuing in the same order."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.helpers import assert_error, push

M = "/api/v1/models/default/m"
MOVES = [("prod", "1"), ("canary", "2"), ("prod", "2"), ("canary", "3"), ("prod", "3")]


def _moves(client: TestClient) -> None:
    for _ in range(3):
        push(client, "m", {"w": b"x"})
    for i, (alias, version) in enumerate(MOVES):
        r = client.put(f"{M}/aliases/{alias}", json={"version": version, "reason": f"move {i}"})
        assert r.status_code == 200, r.text


def _walk(client: TestClient, **params: Any) -> tuple[list[str], list[int]]:
    reasons: list[str] = []
    sizes: list[int] = []
    token = None
    while True:
        query = {**params, **({"page_token": token} if token else {})}
        body = client.get(f"{M}/aliases/history", params=query).json()
        assert set(body) == {"history", "next_page_token"}
        reasons += [h["reason"] for h in body["history"]]
        sizes.append(len(body["history"]))
        token = body["next_page_token"]
        if token is None:
            return reasons, sizes


def test_default_is_oldest_first_and_pages_follow(client: TestClient) -> None:
    _moves(client)
    everything = [f"move {i}" for i in range(len(MOVES))]
    body = client.get(f"{M}/aliases/history").json()
    assert [h["reason"] for h in body["history"]] == everything
    assert body["next_page_token"] is None
    assert _walk(client, page_size=2) == (everything, [2, 2, 1])
    assert _walk(client, page_size=2, order="desc") == (list(reversed(everything)), [2, 2, 1])
    assert _walk(client, page_size=2, alias="prod") == (["move 0", "move 2", "move 4"], [2, 1])
    assert _walk(client, page_size=1, alias="canary", order="desc") == (
        ["move 3", "move 1"],
        [1, 1],
    )
    assert _walk(client, page_size=5) == (everything, [5])  # exactly one page: no token


def test_bad_paging_parameters_are_refused(client: TestClient) -> None:
    _moves(client)
    for bad in ("x", "1.", ".1", "-1.2", "9" * 20 + ".1"):
        assert_error(
            client.get(f"{M}/aliases/history", params={"page_token": bad}), 400, "INVALID_CURSOR"
        )
    for query in ({"page_size": "0"}, {"page_size": "1001"}, {"order": "sideways"}):
        r = client.get(f"{M}/aliases/history", params=query)
        assert_error(r, 422, "VALIDATION_ERROR")
    assert_error(client.get("/api/v1/models/default/ghost/aliases/history"), 404, "MODEL_NOT_FOUND")
