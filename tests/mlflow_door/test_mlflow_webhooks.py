"""MLflow 3 webhooks through the door: the real ``MlflowClient`` manages them,
and a real receiver on 127.0.0.1 gets MLflow's events, body and signed headers
through modelyard's outbox and dispatcher (on SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.entities.webhook import WebhookStatus
from mlflow.exceptions import MlflowException

from tests.auth_helpers import ADMIN_TOKEN, bearer
from tests.receiver import Received, Receiver, receiver, wait_for

SECRET = "a-secret-an-mlflow-user-chose"


@pytest.fixture
def admin(mlflow_auth_server: str, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """``MlflowClient`` as the instance admin on the server that may reach 127.0.0.1."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ADMIN_TOKEN)
    return MlflowClient(tracking_uri=mlflow_auth_server, registry_uri=mlflow_auth_server)


@pytest.fixture
def rec() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


def verify_like_mlflow_docs(got: Received, secret: str) -> dict[str, Any]:
    """What MLflow's documentation tells a receiver to do: check the timestamp is
    fresh, recompute ``v1,`` + base64 HMAC-SHA256 (key: the secret's UTF-8 bytes)
    over ``"{delivery id}.{timestamp}.{raw body}"`` and compare in constant time."""
    delivery_id = got.headers["x-mlflow-delivery-id"]
    stamp = got.headers["x-mlflow-timestamp"]
    signature = got.headers["x-mlflow-signature"]
    assert abs(time.time() - int(stamp)) < 300
    assert signature.startswith("v1,")
    signed = f"{delivery_id}.{stamp}.{got.body.decode()}"
    expected = base64.b64encode(
        hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()
    ).decode()
    assert hmac.compare_digest(signature.removeprefix("v1,"), expected)
    body: dict[str, Any] = got.json
    return body


def test_client_manages_webhooks_and_rest_v1_sees_them(
    admin: MlflowClient, mlflow_auth_server: str, rec: Receiver, model_name: str
) -> None:
    hook = admin.create_webhook(
        name=f"hook-{model_name}",
        url=f"{rec.url}/mlflow",
        events=["registered_model.created", "model_version_alias.created"],
        description="tell CI",
        secret=SECRET,
    )
    assert hook.name == f"hook-{model_name}"
    assert [str(e) for e in hook.events] == [
        "registered_model.created",
        "model_version_alias.created",
    ]
    assert hook.status == WebhookStatus.ACTIVE and hook.description == "tell CI"
    assert hook.secret is None  # never sent back

    got = admin.get_webhook(hook.webhook_id)
    assert (got.url, got.name, got.creation_timestamp) == (
        hook.url,
        hook.name,
        hook.creation_timestamp,
    )
    assert hook.webhook_id in [w.webhook_id for w in admin.list_webhooks(max_results=1000)]

    # REST v1 lists it as an ordinary subscription of the door's namespace.
    with httpx.Client(base_url=mlflow_auth_server, headers=bearer(ADMIN_TOKEN)) as v1:
        r = v1.get(f"/api/v1/webhooks/{hook.webhook_id}")
        assert r.status_code == 200, r.text
        assert r.json()["event_types"] == ["model.created", "alias.moved"]
        assert r.json()["namespace"] == "default"
        listed = v1.get("/api/v1/webhooks").json()
        rows = listed if isinstance(listed, list) else listed["webhooks"]
        assert int(hook.webhook_id) in [w["id"] for w in rows]

    changed = admin.update_webhook(
        hook.webhook_id,
        name=f"renamed-{model_name}",
        events=["model_version.created"],
        status="DISABLED",
    )
    assert changed.name == f"renamed-{model_name}"
    assert [str(e) for e in changed.events] == ["model_version.created"]
    assert changed.status == WebhookStatus.DISABLED
    assert changed.description == "tell CI"  # untouched fields stay
    assert changed.last_updated_timestamp >= hook.last_updated_timestamp

    admin.delete_webhook(hook.webhook_id)
    with pytest.raises(MlflowException) as gone:
        admin.get_webhook(hook.webhook_id)
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_receiver_gets_mlflow_events_signed_as_mlflow_signs(
    admin: MlflowClient, rec: Receiver, model_name: str
) -> None:
    hook = admin.create_webhook(
        name=f"ci-{model_name}",
        url=f"{rec.url}/hook",
        events=["registered_model.created", "model_version.created"],
        secret=SECRET,
    )
    try:
        admin.create_registered_model(model_name, tags={"team": "risk"}, description="d")
        admin.create_model_version(model_name, "models:/m-abc123", tags={"k": "v"})
        admin.set_registered_model_alias(model_name, "champion", "1")  # not subscribed

        def mine() -> list[Received]:
            return [
                g
                for g in rec.snapshot()
                if g.path == "/hook" and g.json.get("data", {}).get("name") == model_name
            ]

        got = wait_for(lambda: len(mine()) >= 2 and mine(), what="two MLflow deliveries")
        bodies = sorted(
            (verify_like_mlflow_docs(g, SECRET) for g in got), key=lambda b: b["entity"]
        )
        assert [(b["entity"], b["action"]) for b in bodies] == [
            ("model_version", "created"),
            ("registered_model", "created"),
        ]
        version, model = bodies
        assert model["data"] == {"name": model_name, "tags": {"team": "risk"}, "description": "d"}
        assert version["data"] == {
            "name": model_name,
            "version": "1",
            "source": "models:/m-abc123",
            "run_id": None,
            "tags": {"k": "v"},
            "description": None,
        }
        assert set(model) == {"entity", "action", "timestamp", "data"}
        assert all(g.headers["content-type"] == "application/json" for g in got)
        assert len({g.headers["x-mlflow-delivery-id"] for g in got}) == 2

        # test_webhook: one made-up event, sent now through the same guard.
        result = admin.test_webhook(hook.webhook_id)
        assert result.success and result.response_status == 200
        tests = [g for g in rec.snapshot() if g.json["data"].get("name") == "example-model"]
        assert tests and verify_like_mlflow_docs(tests[-1], SECRET)["entity"] == (
            "registered_model"
        )
    finally:
        admin.delete_webhook(hook.webhook_id)


def test_unsigned_without_a_secret(admin: MlflowClient, rec: Receiver, model_name: str) -> None:
    hook = admin.create_webhook(
        name=f"plain-{model_name}", url=f"{rec.url}/plain", events=["registered_model.created"]
    )
    try:
        admin.create_registered_model(model_name)
        got = wait_for(
            lambda: [g for g in rec.snapshot() if g.json["data"]["name"] == model_name],
            what="an unsigned delivery",
        )
        assert "x-mlflow-signature" not in got[0].headers
        assert got[0].headers["x-mlflow-delivery-id"]
    finally:
        admin.delete_webhook(hook.webhook_id)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"events": ["prompt.created"]}, "not delivered"),
        ({"events": ["prompt_tag.set"]}, "not delivered"),
        ({"url": "ftp://example.com/hook"}, "http and https"),
        ({"url": "http://10.1.2.3/hook"}, "[webhook_"),
        ({"name": "-bad name-"}, "name"),
    ],
)
def test_bad_input_is_invalid_parameter_value(
    admin: MlflowClient, fields: dict[str, Any], words: str
) -> None:
    args: dict[str, Any] = {
        "name": "ok-name",
        "url": "https://example.com/hook",
        "events": ["registered_model.created"],
        **fields,
    }
    with pytest.raises(MlflowException) as bad:
        admin.create_webhook(**args)
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"
    assert words in str(bad.value).lower()


def test_unknown_event_over_raw_rest(mlflow_auth_server: str) -> None:
    with httpx.Client(base_url=mlflow_auth_server, headers=bearer(ADMIN_TOKEN)) as c:
        for events in ([{"entity": "NOPE", "action": "CREATED"}], [{"entity": 1}], "x", []):
            r = c.post(
                "/api/2.0/mlflow/webhooks",
                json={"name": "n", "url": "https://example.com/", "events": events},
            )
            assert r.status_code == 400, r.text
            assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        r = c.get("/api/2.0/mlflow/webhooks/not-a-number")
        assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_private_address_refused_without_allow_listing(mlflow_client: MlflowClient) -> None:
    # The auth-off server allows no private targets: 127.0.0.1 is refused.
    with pytest.raises(MlflowException) as bad:
        mlflow_client.create_webhook(
            name="local", url="http://127.0.0.1:9/hook", events=["model_version.created"]
        )
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"


def test_alias_events_map_to_mlflow_alias_events(
    admin: MlflowClient, rec: Receiver, model_name: str
) -> None:
    hook = admin.create_webhook(
        name=f"alias-{model_name}",
        url=f"{rec.url}/alias",
        events=["model_version_alias.created", "model_version_alias.deleted"],
        secret=SECRET,
    )
    try:
        admin.create_registered_model(model_name)  # not subscribed: not sent
        admin.create_model_version(model_name, "models:/m-abc123")
        admin.set_registered_model_alias(model_name, "champion", "1")
        admin.delete_registered_model_alias(model_name, "champion")

        def mine() -> list[dict[str, Any]]:
            return [
                verify_like_mlflow_docs(g, SECRET)
                for g in rec.snapshot()
                if g.path == "/alias" and g.json["data"]["name"] == model_name
            ]

        got = wait_for(lambda: len(mine()) >= 2 and mine(), what="two alias deliveries")
        by_action = {b["action"]: b for b in got}
        assert {b["entity"] for b in got} == {"model_version_alias"}
        assert by_action["created"]["data"] == {
            "name": model_name,
            "alias": "champion",
            "version": "1",
        }
        assert by_action["deleted"]["data"] == {"name": model_name, "alias": "champion"}
        assert len(got) == 2
    finally:
        admin.delete_webhook(hook.webhook_id)


def test_rest_v1_changes_keep_mlflow_wire_format(
    admin: MlflowClient, mlflow_auth_server: str, rec: Receiver, model_name: str
) -> None:
    hook = admin.create_webhook(
        name=f"v1-{model_name}",
        url=f"{rec.url}/v1",
        events=["registered_model.created"],
        secret=SECRET,
    )
    v1 = httpx.Client(base_url=mlflow_auth_server, headers=bearer(ADMIN_TOKEN))
    try:
        # Widened on REST v1: still only events MLflow has names for are sent.
        r = v1.patch(f"/api/v1/webhooks/{hook.webhook_id}", json={"event_types": ["*"]})
        assert r.status_code == 200, r.text
        admin.create_registered_model(model_name)
        admin.update_registered_model(model_name, description="model.updated: no MLflow name")
        admin.create_model_version(model_name, "models:/m-abc123")

        def sent(path: str) -> list[Received]:
            return [
                g
                for g in rec.snapshot()
                if g.path == path and g.json["data"].get("name") == model_name
            ]

        wait_for(
            lambda: any(g.json["entity"] == "model_version" for g in sent("/v1")),
            what="the version's delivery",
        )
        # Events are fanned out in commit order: model.updated was decided on.
        deliveries = v1.get(f"/api/v1/webhooks/{hook.webhook_id}/deliveries").json()
        types = {d["event_type"] for d in deliveries["deliveries"]}
        assert types == {"model.created", "version.created"}

        # REST v1's test event reaches it in MLflow's format, signed.
        assert v1.post(f"/api/v1/webhooks/{hook.webhook_id}/test").status_code < 300
        got = wait_for(
            lambda: [g for g in rec.snapshot() if g.json["data"].get("name") == "example-model"],
            what="the REST v1 test delivery",
        )
        body = verify_like_mlflow_docs(got[0], SECRET)
        assert (body["entity"], body["action"]) == ("registered_model", "created")
    finally:
        v1.close()
        admin.delete_webhook(hook.webhook_id)


def test_tag_events_one_delivery_per_key(
    admin: MlflowClient, mlflow_auth_server: str, rec: Receiver, model_name: str
) -> None:
    """MLflow sends one tag webhook per key set or deleted (same value or not);
    a REST v1 update touching three keys makes three MLflow deliveries, each
    with its own delivery id and signature."""
    hook = admin.create_webhook(
        name=f"tags-{model_name}",
        url=f"{rec.url}/tags",
        events=["model_version_tag.set", "model_version_tag.deleted"],
        secret=SECRET,
    )
    v1 = httpx.Client(base_url=mlflow_auth_server, headers=bearer(ADMIN_TOKEN))
    try:
        admin.create_registered_model(model_name)
        admin.create_model_version(model_name, "models:/m-abc123", tags={"old": "x"})
        admin.set_model_version_tag(model_name, "1", "stage", "qa")
        admin.set_model_version_tag(model_name, "1", "stage", "qa")  # unchanged: still sent
        admin.delete_model_version_tag(model_name, "1", "stage")
        r = v1.patch(
            f"/api/v1/models/default/{model_name}/versions/1",
            json={"tags": {"a": "1", "b": "2"}, "delete_tags": ["old"]},
        )
        assert r.status_code == 200, r.text
        admin.update_model_version(model_name, "1", description="no tag change: nothing sent")

        def mine() -> list[Received]:
            return [g for g in rec.snapshot() if g.path == "/tags"]

        got = wait_for(lambda: len(mine()) >= 6 and mine(), what="six tag deliveries")
        bodies = [verify_like_mlflow_docs(g, SECRET) for g in got]
        assert all(b["entity"] == "model_version_tag" for b in bodies)
        seen = sorted(
            (b["action"], b["data"]["key"], b["data"].get("value"))
            for b in bodies
            if b["data"]["name"] == model_name
        )
        assert seen == [
            ("deleted", "old", None),
            ("deleted", "stage", None),
            ("set", "a", "1"),
            ("set", "b", "2"),
            ("set", "stage", "qa"),
            ("set", "stage", "qa"),
        ]
        deleted = next(b for b in bodies if b["action"] == "deleted")
        assert deleted["data"] == {
            "name": model_name,
            "version": "1",
            "key": deleted["data"]["key"],
        }
        assert len({g.headers["x-mlflow-delivery-id"] for g in got}) == 6

        # REST v1 sees the PATCH's three deliveries of one event, as separate rows.
        rows = v1.get(f"/api/v1/webhooks/{hook.webhook_id}/deliveries").json()["deliveries"]
        assert len(rows) == 6
        by_event: dict[int, int] = {}
        for row in rows:
            by_event[row["event_id"]] = by_event.get(row["event_id"], 0) + 1
        assert sorted(by_event.values()) == [1, 1, 1, 3]

        # test_webhook with a tag event sends MLflow's example of it.
        result = admin.test_webhook(hook.webhook_id, event="model_version_tag.deleted")
        assert result.success
        example = wait_for(
            lambda: [g for g in mine() if g.json["data"]["name"] == "example-model"],
            what="the test delivery",
        )
        body = verify_like_mlflow_docs(example[-1], SECRET)
        assert (body["entity"], body["action"]) == ("model_version_tag", "deleted")
        assert set(body["data"]) == {"name", "version", "key"}
    finally:
        v1.close()
        admin.delete_webhook(hook.webhook_id)
