"""The UI's pages in-process: what they show, escaping, CSP, CSRF, sign-in,
the consumer's view, error pages, paging."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.auth_helpers import ADMIN_TOKEN, bearer, make_user, seed_models
from tests.helpers import push
from tests.web.conftest import csrf_of, sign_in
from tests.web.html_checks import page_text, unsafe_markup

HTML = {"accept": "text/html"}

# User text that would run script if any page printed it as markup.
XSS = [
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "'; background:url(javascript:alert(1)) '",
]
MARKDOWN_XSS = (
    "# Title\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n"
    "[click](javascript:alert(3)) [data](data:text/html;base64,PHNjcmlwdD4=) "
    '<a href="javascript:alert(4)">raw</a>\n\n**bold** and `code`'
)


def _seed_hostile(client: TestClient) -> None:
    """A model and two versions whose every free-text field is an attack."""
    r = client.post(
        "/api/v1/models",
        json={
            "name": "evil",
            "description": MARKDOWN_XSS,
            "tags": {f"t{i}": x for i, x in enumerate(XSS)},
            "metadata": {"html": XSS[0], "nested": {"k": XSS[1]}},
        },
    )
    assert r.status_code == 201, r.text
    extra: dict[str, Any] = {
        "description": MARKDOWN_XSS,
        "tags": {"note": XSS[1]},
        "metadata": {"m": XSS[0]},
        "params": {"p": XSS[0], "q": XSS[1]},
        "metrics": {"acc": 0.5},
        "framework": "onnx",
        "signature": {"inputs": [{"name": XSS[0], "dtype": "float32"}]},
        "lineage": {"source_run": XSS[1], "code_ref": XSS[2], "datasets": [XSS[0]]},
    }
    push(client, "evil", {"it's&amp;a.bin": b"1", "x/onerror=1.txt": b"2"}, create=False, **extra)
    extra["metrics"] = {"acc": 0.75}
    extra["signature"] = {"inputs": [{"name": XSS[1], "dtype": "int8"}]}
    push(client, "evil", {"it's&amp;a.bin": b"3"}, create=False, **extra)
    r = client.put(
        "/api/v1/models/default/evil/aliases/prod", json={"version": "1", "reason": XSS[0]}
    )
    assert r.status_code == 200, r.text


HOSTILE_PAGES = [
    "/",
    "/?q=tags.t0+EXISTS",
    "/?framework=onnx",
    f"/?q={XSS[1]}",
    "/models/default/evil?metric=acc&metric=%3Cscript%3E",
    "/models/default/evil?alias=prod&at=2099-01-01T00:00",
    "/models/default/evil/versions/1",
    "/models/default/evil/versions/prod",
    "/compare?v=default/evil/1&v=default/evil/2",
    "/models/default/%3Cscript%3E",
    "/compare?v=%3Cscript%3E&v=x",
    "/approvals?namespace=default&state=all",
    "/audit",
    f"/audit?actor={XSS[1]}&model=default/evil",
    "/namespaces/default/policy",
]


def test_every_page_escapes_user_text(client: TestClient) -> None:
    """The corpus goes through every page; no page holds script, handlers,
    inline style or script URLs, and the text is shown as text."""
    _seed_hostile(client)
    for url in HOSTILE_PAGES:
        r = client.get(url, headers=HTML)
        assert r.headers["content-type"].startswith("text/html"), url
        assert unsafe_markup(r.text) == [], (url, unsafe_markup(r.text))
        scripts = re.findall(r"<script[^>]*>", r.text, re.I)
        assert set(scripts) <= {'<script src="/static/live.js" defer>'}, (url, scripts)
    model = client.get("/models/default/evil").text
    text = page_text(model)
    # Shown, as text: the raw HTML of the description, tags, metadata, reason.
    assert "<script>alert(1)</script>" in text
    assert '"><img src=x onerror=alert(1)>' in text
    assert "<script>alert('x')</script>" in text
    # Markdown still renders (a heading, bold), without the links it refused.
    assert "<h1>Title</h1>" in model and "<strong>bold</strong>" in model
    assert 'href="javascript' not in model.lower() and 'href="data:' not in model.lower()
    version = client.get("/models/default/evil/versions/1").text
    assert "it's&amp;a.bin" in page_text(version)
    assert "it%27s%26amp%3Ba.bin" in version  # the download link encodes the path


def test_security_headers_on_every_answer_of_the_ui(client: TestClient) -> None:
    push(client, "m", {"a": b"1"})
    for url in [
        "/",
        "/models/default/m",
        "/models/default/m/versions/1",
        "/signin",
        "/static/style.css",
        "/models/default/nope",
        "/no/such/page",
    ]:
        r = client.get(url, headers=HTML)
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, url
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff", url
    # The REST API keeps its JSON errors and is not touched by the UI.
    r = client.get("/api/v1/models/default/nope")
    assert r.json()["error"]["code"] == "MODEL_NOT_FOUND"
    assert "content-security-policy" not in r.headers
    assert client.get("/docs").status_code == 200


def test_errors_render_as_pages_with_their_code(client: TestClient) -> None:
    push(client, "m", {"a": b"1"})
    cases = [
        ("/models/default/nope", 404, "MODEL_NOT_FOUND"),
        ("/models/default/m/versions/9", 404, "VERSION_NOT_FOUND"),
        ("/models/default/m/versions/ghost", 404, "ALIAS_NOT_FOUND"),
        ("/?namespace=Bad%20Name", 400, "INVALID_NAME"),
        ("/compare?v=default/m/1", 400, "INVALID_INPUT"),
        ("/models/default/m?page=xyz", 400, "INVALID_CURSOR"),
        ("/no/such/page", 404, "ROUTE_NOT_FOUND"),
    ]
    for url, status, code in cases:
        r = client.get(url, headers=HTML)
        assert r.status_code == status, (url, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("text/html"), url
        assert f"<code>{code}</code>" in r.text, (url, code)


def test_bad_filter_shows_where_it_goes_wrong(client: TestClient) -> None:
    r = client.get("/", params={"q": "name = 'a' AND tags.x >< 1"})
    assert r.status_code == 400
    assert "<code>INVALID_FILTER</code>" in r.text
    marked = re.search(r'<pre class="filter-echo"[^>]*>(.*?)<mark>(.*?)</mark>', r.text, re.S)
    assert marked is not None
    assert marked.group(1) == "name = &#39;a&#39; AND tags.x &gt;"  # before the fault
    r = client.get("/", params={"sort": "size DESC"})
    assert r.status_code == 400 and "INVALID_ORDER_BY" in r.text


def test_home_lists_models_with_latest_state_and_aliases_in_cursor_pages(
    client: TestClient,
) -> None:
    push(client, "alpha", {"a": b"1"}, framework="onnx")
    client.patch("/api/v1/models/default/alpha", json={"tags": {"team": "fraud"}})
    client.put("/api/v1/models/default/alpha/aliases/prod", json={"version": "1"})
    client.post("/api/v1/models/default/alpha/versions/1/publish")
    for i in range(26):
        assert client.post("/api/v1/models", json={"name": f"bulk{i:02d}"}).status_code == 201
    first = client.get("/", params={"sort": "name ASC"})
    assert first.status_code == 200
    assert first.text.count('<th scope="row">') == 25
    row = re.search(r"alpha</a>.*?</tr>", first.text, re.S)
    assert row is not None
    assert "v1" in row.group(0) and "published" in row.group(0) and "@prod" in row.group(0)
    nxt = re.search(r'rel="next" href="([^"]+)"', first.text)
    assert nxt is not None
    second = client.get(nxt.group(1).replace("&amp;", "&"))
    assert second.text.count('<th scope="row">') == 2 and "bulk25" in second.text
    assert 'rel="next"' not in second.text
    # Quick filters: tag, framework (lists versions), namespace.
    assert "alpha" in client.get("/", params={"tag": "team=fraud"}).text
    assert "bulk00" not in client.get("/", params={"tag": "team=fraud"}).text
    versions = client.get("/", params={"framework": "onnx", "state": "published"}).text
    assert "alpha <span" in versions and "bulk" not in versions


def test_model_page_versions_columns_and_alias_timeline(client: TestClient) -> None:
    for acc in (0.5, 0.7, 0.9):
        push(
            client, "m", {"a": str(acc).encode()}, create=acc == 0.5, metrics={"acc": acc, "f1": 1}
        )
    client.put("/api/v1/models/default/m/aliases/prod", json={"version": "1", "reason": "first"})
    t = client.get("/api/v1/models/default/m/aliases/prod").json()
    client.put("/api/v1/models/default/m/aliases/prod", json={"version": "3", "reason": "better"})
    r = client.get("/models/default/m", params={"metric": "acc"})
    assert r.status_code == 200
    assert '<th scope="col" class="num">acc</th>' in r.text and ">f1</th>" not in r.text
    assert "0.9" in r.text and "first" in r.text and "better" in r.text
    assert r.text.index("better") < r.text.index("first")  # newest move first
    # What was prod at the time between the two moves: version 1.
    r = client.get("/models/default/m", params={"alias": "prod", "at": t["at"]})
    answer = re.search(r'<p class="answer".*?</p>', r.text, re.S)
    assert answer is not None and ">v1</a>" in answer.group(0)
    r = client.get("/models/default/m", params={"alias": "prod", "at": "yesterday"})
    assert "INVALID_TIME" in r.text


def test_version_and_compare_pages(client: TestClient) -> None:
    push(client, "base", {"w": b"0"})
    push(
        client,
        "m",
        {"a": b"1", "same": b"s"},
        metrics={"acc": 0.5},
        params={"lr": "0.1"},
        signature={"inputs": [{"name": "x", "dtype": "float32"}]},
        # m/1 converted from base/1, so m/2's parent and original agree.
        lineage={"original": "base/1", "relation": "converted"},
    )
    push(
        client,
        "m",
        {"a": b"2", "same": b"s", "new": b"n"},
        create=False,
        metrics={"acc": 0.75},
        params={"lr": "0.01"},
        signature={"inputs": [{"name": "x", "dtype": "int8"}]},
        lineage={
            "parent": "m/1",
            "original": "base/1",
            "relation": "quantized",
            "source_run": "run-42",
            "code_ref": "git:abc",
            "datasets": ["ds@1"],
        },
    )
    v = client.get("/models/default/m/versions/2")
    assert v.status_code == 200
    text = page_text(v.text)
    for fact in ("run-42", "git:abc", "ds@1", "quantized", "default/m/1", "default/base/1", "0.75"):
        assert fact in text, fact
    assert '/api/v1/models/default/m/versions/2/files/new" download' in v.text
    assert "version.created" in text  # its event
    assert "Pickle exception" not in text
    push(client, "legacy", {"model.pkl": b"\x80\x04K\x01."})
    r = client.put(
        "/api/v1/models/default/legacy/versions/1/pickle-exception",
        json={"reason": "<b>audited</b> source"},
    )
    assert r.status_code == 200, r.text
    shown = client.get("/models/default/legacy/versions/1")
    assert "Pickle exception" in page_text(shown.text)
    assert "&lt;b&gt;audited&lt;/b&gt; source" in shown.text  # the reason, escaped
    c = client.get("/compare", params=[("v", "default/m/1"), ("v", "m/2")])
    assert c.status_code == 200
    assert "+0.25" in c.text
    files = page_text(c.text)
    assert "Added" in files and "new" in files and "Changed" in files
    assert "inputs[0].dtype" in files and "int8" in files


def test_sign_in_cookie_csrf_and_sign_out(auth_client: TestClient) -> None:
    seed_models(auth_client)
    r = auth_client.get("/", headers=HTML)
    assert r.status_code == 401 and "<code>UNAUTHENTICATED</code>" in r.text
    assert 'href="/signin?next=/"' in r.text
    cookie = r.headers["set-cookie"]  # the first page gives the browser its CSRF cookie
    assert cookie.startswith("modelyard_csrf=") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    form = auth_client.get("/signin")
    token = csrf_of(form.text)
    # No token in the form, a forged one, none at all: refused before anything runs.
    for data in (
        {"token": ADMIN_TOKEN},
        {"token": ADMIN_TOKEN, "csrf_token": "x" * 43},
        {"token": ADMIN_TOKEN, "csrf_token": ""},
    ):
        r = auth_client.post("/signin", data=data, follow_redirects=False)
        assert r.status_code == 403 and "CSRF_FAILED" in r.text
        assert "modelyard_session" not in r.headers.get("set-cookie", "")
    r = auth_client.post(
        "/signin", data={"token": "wrong", "csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 401 and "UNAUTHENTICATED" in r.text
    r = auth_client.post(
        "/signin",
        data={"token": ADMIN_TOKEN, "csrf_token": token, "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/"
    session = r.headers["set-cookie"]
    assert session.startswith("modelyard_session=") and "HttpOnly" in session
    assert "SameSite=Strict" in session and "Secure" not in session  # plain http here
    home = auth_client.get("/")
    assert home.status_code == 200 and "<strong>admin</strong>" in home.text
    # Sign out needs the CSRF token too.
    r = auth_client.post("/signout", data={}, follow_redirects=False)
    assert r.status_code == 403
    r = auth_client.post("/signout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and "Max-Age=0" in r.headers["set-cookie"]
    assert auth_client.get("/").status_code == 401


def test_session_cookie_is_secure_over_https(auth_client: TestClient) -> None:
    form = auth_client.get("https://testserver/signin")
    assert "Secure" in form.headers["set-cookie"]
    r = auth_client.post(
        "https://testserver/signin",
        data={"token": ADMIN_TOKEN, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


@pytest.mark.parametrize("role", ["consumer"])
def test_consumer_sees_the_production_view_page_by_page(auth_client: TestClient, role: str) -> None:
    """v1 ready (aliased staging), v2 published, v3 draft: a consumer sees v2 only."""
    seed_models(auth_client)
    token = make_user(auth_client, "carol", {"default": role})
    sign_in(auth_client, token)
    home = auth_client.get("/")
    assert home.status_code == 200 and "v2</a>" in home.text and "v3" not in home.text
    model = auth_client.get("/models/default/m")
    assert model.status_code == 200
    assert "/versions/2" in model.text
    assert "/versions/1" not in model.text and "/versions/3" not in model.text
    assert "staging" not in model.text  # no alias history in the production view
    assert auth_client.get("/models/default/m/versions/2").status_code == 200
    for url, code in [
        ("/models/default/m/versions/1", "VERSION_NOT_FOUND"),
        ("/models/default/m/versions/3", "VERSION_NOT_FOUND"),
        ("/models/default/m/versions/staging", "ALIAS_NOT_FOUND"),
        ("/compare?v=default/m/1&v=default/m/2", "VERSION_NOT_FOUND"),
        ("/?state=ready", None),
    ]:
        r = auth_client.get(url)
        if code is None:
            assert r.status_code == 200 and "/versions/1" not in r.text
        else:
            assert r.status_code == 404 and f"<code>{code}</code>" in r.text, url
    # The page's download link works with the session cookie (REST download).
    r = auth_client.get("/api/v1/models/default/m/versions/2/files/model.bin")
    assert r.status_code == 200 and r.content == b"file-1"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "attachment" in r.headers["content-disposition"]
    # ...but the cookie is no key to the rest of the API.
    assert auth_client.get("/api/v1/models/default/m").status_code == 401
    assert auth_client.get("/api/v1/models/default/m", headers=bearer(token)).status_code == 200
