"""Live pages in-process: the model page names its event stream and loads the
package's script (CSP 'self', nothing inline); the stream takes the session
cookie as the token, with the API's refusals; a consumer's page is not live."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from starlette.testclient import TestClient

from tests.auth_helpers import ADMIN_TOKEN, bearer, make_user, seed_models
from tests.web.conftest import sign_in
from tests.web.html_checks import parse, unsafe_markup


def _stream_of(html: str) -> str | None:
    for _tag, attrs in parse(html).tags:
        if "data-live-stream" in attrs:
            return attrs["data-live-stream"]
    return None


def test_model_page_is_live_for_readers_only(auth_client: TestClient) -> None:
    c = auth_client
    seed_models(c)
    sign_in(c, ADMIN_TOKEN)
    page = c.get("/models/default/m")
    assert unsafe_markup(page.text) == []
    assert '<script src="/static/live.js" defer></script>' in page.text
    stream = _stream_of(page.text)
    assert stream is not None
    url = urlsplit(stream)
    assert url.path == "/api/v1/events/stream"
    assert parse_qs(url.query) == {
        "model": ["default/m"],
        "types": ["version.*,alias.*,model.updated"],
    }
    parts = [a["id"] for _, a in parse(page.text).tags if "data-live-part" in a]
    assert parts == ["live-aliases", "live-timeline", "live-versions"]
    script = c.get("/static/live.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in script.text and "data-live-part" in script.text
    # A consumer (production view, no history) gets a static page.
    consumer = make_user(c, "carl", {"default": "consumer"})
    sign_in(c, consumer)
    page = c.get("/models/default/m")
    assert page.status_code == 200 and _stream_of(page.text) is None
    assert "live.js" not in page.text
    # The page's filters work for a consumer too (issue 12): its list holds
    # only the alias moves its production view shows (none here).
    listed = c.get(
        "/api/v1/events",
        params={k: v[0] for k, v in parse_qs(url.query).items()},
        headers=bearer(consumer),
    )
    assert listed.status_code == 200 and listed.json()["events"] == []
    # The stream takes the session cookie: a user without a role in the
    # namespace is authenticated and then refused by the service, as with a
    # bearer token (403, not 401).
    sign_in(c, make_user(c, "nora"))
    r = c.get(stream)
    assert r.status_code == 403 and r.json()["error"]["code"] == "PERMISSION_DENIED"
    # Without a session the stream needs a token, like the rest of the API.
    c.cookies.delete("modelyard_session")
    r = c.get(stream)
    assert r.status_code == 401
