"""Fixtures of the UI tests: an app with auth on, users and a seeded registry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.api.app import create_app
from tests.auth_helpers import auth_settings


@pytest.fixture
def auth_client(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    """An app with auth on, bootstrapped with ADMIN_TOKEN, on SQLite and PostgreSQL."""
    app = create_app(auth_settings(tmp_path, db_url))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(client: TestClient, token: str) -> None:
    """Sign the client's cookie jar in through the form, as a browser does."""
    form = client.get("/signin")
    r = client.post(
        "/signin",
        data={"token": token, "next": "/", "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
