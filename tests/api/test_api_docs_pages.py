"""``/docs`` and ``/redoc`` work offline: every asset they load comes from this server."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.api.app import create_app
from modelyard.settings import Settings
from tests.auth_helpers import auth_settings

PAGES = ("/docs", "/redoc")
MEDIA_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


class _Urls(HTMLParser):
    """Every URL a page loads: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (tag, name) in {("script", "src"), ("link", "href"), ("img", "src")}:
                self.urls.append(value)


def _loaded_urls(html: str) -> list[str]:
    parser = _Urls()
    parser.feed(html)
    # Inline scripts name URLs too (the OpenAPI document, the OAuth redirect).
    parser.urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", html)
    parser.urls += re.findall(r"""spec-url=['"]([^'"]+)['"]""", html)
    return parser.urls


def _same_origin(url: str) -> bool:
    return url.startswith("/") and not url.startswith("//")


def _check_pages(client: TestClient) -> None:
    for page in PAGES:
        r = client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), page
        urls = _loaded_urls(r.text)
        assert urls, page
        assert "http://" not in r.text and "https://" not in r.text, page
        for url in urls:
            assert _same_origin(url), (page, url)
            got = client.get(url)
            assert got.status_code == 200, (page, url, got.status_code)
            suffix = Path(url).suffix
            if suffix:
                assert got.headers["content-type"].startswith(MEDIA_TYPES[suffix]), (url, got)
            assert got.content, url
    scripts = {Path(u).name for u in _loaded_urls(client.get("/docs").text)}
    assert {"swagger-ui-bundle.js", "swagger-ui.css"} <= scripts
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
    assert "Redoc" in client.get("/docs/assets/redoc.standalone.js").text


def test_docs_pages_load_only_same_origin_assets(tmp_path: Path, sqlite_url: str) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, db=sqlite_url))) as client:
        _check_pages(client)
        oauth = client.get("/docs/oauth2-redirect")
        assert oauth.status_code == 200 and "https://" not in oauth.text


def test_docs_pages_stay_public_with_auth_on(tmp_path: Path, sqlite_url: str) -> None:
    with TestClient(create_app(auth_settings(tmp_path, sqlite_url))) as client:
        assert client.get("/api/v1/whoami").status_code == 401
        assert client.get("/openapi.json").status_code == 200
        _check_pages(client)  # no token anywhere


@pytest.mark.parametrize("name", ["nope.js", "..%2F__init__.py", "%2E%2E", "__init__.py"])
def test_only_the_listed_assets_are_served(tmp_path: Path, sqlite_url: str, name: str) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, db=sqlite_url))) as client:
        r = client.get(f"/docs/assets/{name}")
        assert r.status_code == 404
        assert set(r.json()["error"]) == {"code", "message", "details"}
