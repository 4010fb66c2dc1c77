"""``GET/POST /api/v1/search/versions`` served from the rendered-version cache
(issue 9, Performance): the same document as rendering every version, and
every write through the API shows on the next page."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.testclient import TestClient

from modelyard.api.access import ANONYMOUS
from modelyard.wire import render

V = "/api/v1/models/default/m/versions"
SEARCH = "/api/v1/search/versions"
PROD = {"filter": "tags.env = 'prod'", "page_size": 50}


def _seed(client: TestClient) -> None:
    client.post("/api/v1/models", json={"name": "m"}).raise_for_status()
    for i in range(3):
        client.post(
            V, json={"tags": {"env": "prod", "i": str(i)}, "metrics": {"acc": 0.5 + i / 10}}
        ).raise_for_status()


def _expected(client: TestClient, params: dict[str, Any]) -> bytes:
    """The page as the route wrote it before the cache: every version read
    and rendered, the whole document encoded at once."""
    reg = client.app.state.registry  # type: ignore[attr-defined]
    page = reg.search_versions(params.get("filter"), page_size=params["page_size"], actor=ANONYMOUS)
    return orjson.dumps(
        {
            "versions": [render.version(v) for v in page.items],
            "next_page_token": page.next_page_token,
        },
        option=orjson.OPT_NON_STR_KEYS,
    )


def test_page_is_the_document_rendering_writes(client: TestClient) -> None:
    _seed(client)
    for _ in range(2):  # cold, then from the cache
        r = client.get(SEARCH, params=PROD)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.content == _expected(client, PROD)
    paged = client.get(SEARCH, params={**PROD, "page_size": 2}).json()
    assert [v["version"] for v in paged["versions"]] == [3, 2]
    assert paged["next_page_token"]
    rest = client.get(
        SEARCH, params={**PROD, "page_size": 2, "page_token": paged["next_page_token"]}
    ).json()
    assert [v["version"] for v in rest["versions"]] == [1] and rest["next_page_token"] is None
    posted = client.post(SEARCH, json=PROD)
    assert posted.status_code == 200 and posted.content == _expected(client, PROD)


def test_writes_through_the_api_show_on_the_next_page(client: TestClient) -> None:
    _seed(client)

    def page() -> dict[int, dict[str, Any]]:
        body = client.get(SEARCH, params=PROD).json()
        return {v["version"]: v for v in body["versions"]}

    page()
    assert client.patch(f"{V}/2", json={"tags": {"team": "x"}}).status_code == 200
    assert page()[2]["tags"]["team"] == "x"
    assert client.put("/api/v1/models/default/m/aliases/prod", json={"version": "2"}).is_success
    assert page()[2]["aliases"] == ["prod"]
    assert client.put("/api/v1/models/default/m/aliases/prod", json={"version": "3"}).is_success
    shown = page()
    assert shown[2]["aliases"] == [] and shown[3]["aliases"] == ["prod"]
    assert client.delete(f"{V}/1").status_code == 204
    assert sorted(page()) == [2, 3]
    assert client.get(SEARCH, params=PROD).content == _expected(client, PROD)


def test_bad_requests_answer_as_before(client: TestClient) -> None:
    _seed(client)
    bad = client.get(SEARCH, params={"filter": "tags.env = "})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_FILTER"
    cursor = client.get(SEARCH, params={"page_token": "x" * 10})
    assert cursor.status_code == 400 and cursor.json()["error"]["code"] == "INVALID_CURSOR"
    other = client.get(
        SEARCH,
        params={
            "page_token": client.get(SEARCH, params={**PROD, "page_size": 1}).json()[
                "next_page_token"
            ]
        },
    )
    assert other.status_code == 400 and other.json()["error"]["code"] == "INVALID_CURSOR"
    # Query parameters are read by the route itself: FastAPI's 422 all the same.
    for value, kind in (("0", "greater_than_equal"), ("abc", "int_parsing"), ("", "int_parsing")):
        r = client.get(SEARCH, params={"page_size": value})
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "VALIDATION_ERROR"
        (problem,) = r.json()["error"]["details"]["errors"]
        assert problem["loc"] == ["query", "page_size"] and problem["type"] == kind
    # The last of repeated values counts; unknown parameters are ignored.
    r = client.get(f"{SEARCH}?page_size=5&page_size=1&unknown=1")
    assert r.status_code == 200 and len(r.json()["versions"]) == 1
