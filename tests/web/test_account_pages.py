"""Account and roles pages in-process: who am I, tokens (shown once, revoke,
revoking the session's own signs out), role bindings managed by admins only,
refused with the API's codes, CSRF on every form."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from tests.auth_helpers import ADMIN_TOKEN, bearer, make_user, token_id
from tests.web.conftest import csrf_of, sign_in
from tests.web.html_checks import page_text, unsafe_markup


def _shown_token(html: str) -> str:
    found = re.search(r'id="secret" class="secret" value="([^"]+)"', html)
    assert found, "no new token on the page"
    return found.group(1)


def test_account_tokens_shown_once_and_revoked(auth_client: TestClient) -> None:
    c = auth_client
    ana = make_user(c, "ana", {"default": "writer"})
    sign_in(c, ana)
    page = c.get("/account")
    assert page.status_code == 200
    text = page_text(page.text)
    assert "ana" in text and "writer" in text and token_id(ana) in text
    token = csrf_of(page.text)
    r = c.post("/account/tokens", data={"name": "ci"})
    assert r.status_code == 403 and "CSRF_FAILED" in r.text
    r = c.post("/account/tokens", data={"csrf_token": token, "name": "<b>ci</b>"})
    assert r.status_code == 200 and unsafe_markup(r.text) == []
    new = _shown_token(r.text)
    assert "shown only this once" in r.text and "<b>ci</b>" in page_text(r.text)
    # The new token works, and it is never on a page again.
    assert c.get("/api/v1/whoami", headers=bearer(new)).json()["name"] == "ana"
    assert new not in c.get("/account").text
    # Bad input: the service's refusal, on the form.
    r = c.post("/account/tokens", data={"csrf_token": token, "name": "x", "expires_days": "9999"})
    assert r.status_code == 400 and "INVALID_EXPIRY" in r.text
    # Revoke the new token from the page: it stops working at once.
    r = c.post(
        f"/account/tokens/{token_id(new)}/revoke",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "revoked" in r.headers["location"]
    assert c.get("/api/v1/whoami", headers=bearer(new)).status_code == 401
    # Someone else's token: as the API says, not found.
    other = token_id(make_user(c, "bob"))
    r = c.post(f"/account/tokens/{other}/revoke", data={"csrf_token": token})
    assert r.status_code == 404 and "TOKEN_NOT_FOUND" in r.text
    # Revoking this session's own token signs out.
    r = c.post(
        f"/account/tokens/{token_id(ana)}/revoke",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/signin" and "Max-Age=0" in r.headers["set-cookie"]
    assert c.get("/account").status_code == 401


def test_roles_page_admins_grant_and_revoke_others_see_their_own(
    auth_client: TestClient,
) -> None:
    c = auth_client
    rita = make_user(c, "rita", {"default": "reader"})
    make_user(c, "wes")
    sign_in(c, ADMIN_TOKEN)
    page = c.get("/roles?namespace=default")
    assert page.status_code == 200 and "Grant</button>" in page.text
    assert "rita" in page_text(page.text)
    token = csrf_of(page.text)
    r = c.post("/roles/grant", data={"namespace": "default", "user": "wes", "role": "writer"})
    assert r.status_code == 403 and "CSRF_FAILED" in r.text
    form = {"csrf_token": token, "namespace": "default", "user": "wes", "role": "writer"}
    r = c.post("/roles/grant", data=form)
    assert r.status_code == 200 and "wes is now writer in default" in page_text(r.text)
    roles = c.get("/api/v1/roles?namespace=default", headers=bearer(ADMIN_TOKEN)).json()
    assert any(b["user"] == "wes" and b["role"] == "writer" for b in roles["roles"])
    r = c.post("/roles/grant", data={**form, "role": "boss"})
    assert r.status_code == 400 and "INVALID" in r.text
    r = c.post("/roles/revoke", data=form)
    assert r.status_code == 200 and "wes is no longer writer" in page_text(r.text)
    r = c.post("/roles/revoke", data=form)
    assert r.status_code == 404 and "ROLE_BINDING_NOT_FOUND" in r.text
    # A reader sees only their own bindings, no form, and a grant is refused.
    sign_in(c, rita)
    page = c.get("/roles?namespace=default")
    shown = page_text(page.text)
    assert page.status_code == 200 and "Your roles in default" in shown
    assert "Grant</button>" not in page.text and "reader" in shown
    r = c.post("/roles/grant", data={**form, "csrf_token": csrf_of(page.text)})
    api = c.put("/api/v1/roles/default/wes/writer", headers=bearer(rita)).json()["error"]
    assert r.status_code == 403 and api["message"] in page_text(r.text)
