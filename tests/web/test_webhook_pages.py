"""Webhook pages in-process: create (secret shown once), deliveries with their
attempts against a real receiver, test event, redeliver, rotate, pause,
delete; refusals with the API's code; CSRF; escaping."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.api.app import create_app
from modelyard.webhooks import verify
from tests.auth_helpers import ADMIN_TOKEN, auth_settings, bearer, make_user
from tests.helpers import push
from tests.receiver import receiver, wait_for
from tests.web.conftest import csrf_of, sign_in
from tests.web.html_checks import page_text, unsafe_markup

FAST = {
    "webhook_allow": "127.0.0.1",
    "dispatcher_interval": 0.05,
    "webhook_retry_base": 0.05,
    "webhook_retry_cap": 0.2,
    "webhook_timeout": 2.0,
}


@pytest.fixture
def wclient(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    """Auth on, signed in as the admin, delivering fast to 127.0.0.1."""
    app = create_app(auth_settings(tmp_path, db_url, **FAST))
    with TestClient(app, raise_server_exceptions=False) as c:
        sign_in(c, ADMIN_TOKEN)
        yield c


def _secret_of(html: str) -> str:
    found = re.search(r'id="secret" class="secret" value="([^"]+)"', html)
    assert found, "no secret on the page"
    return found.group(1)


def test_create_deliver_test_redeliver_rotate_and_delete(wclient: TestClient) -> None:
    c = wclient
    with receiver() as rec:
        listing = c.get("/webhooks")
        assert listing.status_code == 200 and "No webhooks" in listing.text
        token = csrf_of(listing.text)
        # A refused URL: the form again with the service's code, filled in.
        r = c.post(
            "/webhooks",
            data={"csrf_token": token, "url": "ftp://x", "namespace": "default"},
        )
        assert r.status_code == 422 or r.status_code == 400, r.status_code
        assert "WEBHOOK_URL_REFUSED" in r.text and 'value="ftp://x"' in r.text
        # Without the CSRF token nothing is made.
        r = c.post("/webhooks", data={"url": rec.url, "namespace": "default"})
        assert r.status_code == 403 and "CSRF_FAILED" in r.text
        r = c.post(
            "/webhooks",
            data={
                "csrf_token": token,
                "url": rec.url + "/hook",
                "event_types": "version.*, alias.moved",
                "namespace": "default",
                "description": "<script>alert(1)</script>",
            },
        )
        assert r.status_code == 200, r.text
        secret = _secret_of(r.text)
        assert secret.startswith("whsec_") and "shown only this once" in r.text
        hooks = c.get("/api/v1/webhooks", headers=bearer(ADMIN_TOKEN)).json()["webhooks"]
        assert len(hooks) == 1 and hooks[0]["event_types"] == ["alias.moved", "version.*"]
        hid = hooks[0]["id"]
        page = c.get(f"/webhooks/{hid}")
        assert secret not in page.text  # never shown again
        assert unsafe_markup(page.text) == []
        assert "<script>alert(1)</script>" in page_text(page.text)

        # An event it subscribes to is delivered, signed, and listed with its attempt.
        c.headers.update(bearer(ADMIN_TOKEN))
        push(c, "fraud", {"m": b"1"})
        del c.headers["Authorization"]
        got = wait_for(lambda: rec.snapshot(), what="a delivery")
        verify(got[0].headers, got[0].body, secret)
        shown = wait_for(
            lambda: (
                '"badge badge-published">succeeded' in (t := c.get(f"/webhooks/{hid}").text) and t
            ),
            what="the delivery's outcome on the page",
        )
        assert "version.created" in shown and "HTTP 200" in shown
        delivery = c.get(f"/api/v1/webhooks/{hid}/deliveries", headers=bearer(ADMIN_TOKEN))
        first = delivery.json()["deliveries"][0]["id"]

        # Redeliver: the same message again.
        r = c.post(
            f"/webhooks/{hid}/deliveries/{first}/redeliver",
            data={"csrf_token": token},
            follow_redirects=False,
        )
        assert r.status_code == 303 and f"delivery+%23{first}+queued+again" in r.headers["location"]
        again = wait_for(lambda: len(rec.snapshot()) >= 2 and rec.snapshot(), what="redelivery")
        assert again[1].headers["webhook-id"] == got[0].headers["webhook-id"]

        # A test event goes to this webhook only.
        r = c.post(f"/webhooks/{hid}/test", data={"csrf_token": token})
        assert r.status_code == 200 and "test event queued" in r.text
        tested = wait_for(lambda: len(rec.snapshot()) >= 3 and rec.snapshot(), what="test")
        assert tested[2].json["type"] == "webhook.test"

        # Rotate: a new secret shown once; the next delivery verifies with it.
        r = c.post(f"/webhooks/{hid}/rotate-secret", data={"csrf_token": token})
        assert r.status_code == 200
        rotated = _secret_of(r.text)
        assert rotated != secret and "previous secret also signs" in r.text
        c.post(f"/webhooks/{hid}/test", data={"csrf_token": token})
        fourth = wait_for(lambda: len(rec.snapshot()) >= 4 and rec.snapshot(), what="4th")
        verify(fourth[3].headers, fourth[3].body, rotated)

        # Pause: a paused webhook refuses a test event with the API's code.
        r = c.post(f"/webhooks/{hid}/active", data={"csrf_token": token, "active": "false"})
        assert r.status_code == 200 and "webhook paused" in r.text
        r = c.post(f"/webhooks/{hid}/test", data={"csrf_token": token})
        api = c.post(f"/api/v1/webhooks/{hid}/test", headers=bearer(ADMIN_TOKEN)).json()
        assert r.status_code == 409 and api["error"]["code"] == "WEBHOOK_DISABLED"
        assert api["error"]["message"] in page_text(r.text)

        r = c.post(f"/webhooks/{hid}/delete", data={"csrf_token": token})
        assert r.status_code == 200 and f"webhook #{hid} deleted" in r.text
        assert c.get(f"/webhooks/{hid}").status_code == 404


def test_webhook_pages_refuse_non_admins_as_the_api_does(wclient: TestClient) -> None:
    c = wclient
    r = c.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/x", "namespace": "default"},
        headers=bearer(ADMIN_TOKEN),
    )
    hid = r.json()["id"]
    writer = make_user(c, "wes", {"default": "writer"})
    as_writer = bearer(writer)
    listing = c.get("/webhooks", headers=as_writer)
    assert listing.status_code == 200 and "/webhooks/" + str(hid) not in listing.text
    assert "Create webhook" not in listing.text  # no namespace to administer
    page = c.get(f"/webhooks/{hid}", headers=as_writer)
    api = c.get(f"/api/v1/webhooks/{hid}", headers=as_writer).json()["error"]
    assert page.status_code == 403 and api["code"] == "PERMISSION_DENIED"
    assert api["message"] in page_text(page.text)
    token = csrf_of(listing.text)
    r = c.post(f"/webhooks/{hid}/delete", data={"csrf_token": token}, headers=as_writer)
    assert r.status_code == 403 and "PERMISSION_DENIED" in r.text
    r = c.post(
        "/webhooks",
        data={"csrf_token": token, "url": "http://127.0.0.1:9/y", "namespace": "*"},
        headers=as_writer,
    )
    assert r.status_code == 403 and "PERMISSION_DENIED" in r.text
    assert c.get("/webhooks/x1").status_code == 400
