"""Webhook use cases: subscriptions, the fan-out from the outbox, claims and attempts.

Every mutation here writes its event in its own transaction, like the
registry's. The dispatcher (``modelyard.events``) only drives the loop and the
HTTP; what a response means (retry when, give up, disable the endpoint) is
decided here.

Delivery life cycle::

    event committed ──fan_out──▶ delivery pending ──claim_due──▶ claimed (lease)
        ──record_attempt──▶ succeeded | pending (retry at next_attempt_at) | failed
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson

from modelyard.domain import identity as auth
from modelyard.domain.errors import Conflict, InvalidInput, NotFound
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.names import validate_name
from modelyard.domain.references import DEFAULT_NAMESPACE
from modelyard.domain.webhooks import (
    CONSUMER_EVENT_TYPES,
    TEST_EVENT,
    Attempt,
    AttemptOutcome,
    Delivery,
    DeliveryStatus,
    EventFilter,
    Webhook,
    backoff_delay,
    event_for,
    matches,
    message_id,
    parse_retry_after,
    validate_patterns,
)
from modelyard.service import mlflow_webhooks as mw
from modelyard.service import validation as v
from modelyard.service.destinations import DestinationGuard
from modelyard.service.registry import MAX_PAGE_SIZE, Page
from modelyard.settings import Settings
from modelyard.store.metadata.ports import MetadataStore, RegistryTx, now_us
from modelyard.webhooks import generate_secret

T = TypeVar("T")
FANOUT_CURSOR = "webhooks"
MAX_RESPONSE_BODY = 2048
_UPDATABLE = frozenset({"url", "event_types", "namespace", "model", "description", "active"})


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    """Retry, disable and rotation rules (from settings; tests shrink them)."""

    retry_base: float = 5.0
    retry_cap: float = 6 * 3600.0
    max_attempts: int = 16
    retry_after_cap: float = 3600.0
    disable_after: float = 5 * 86400.0
    secret_overlap: float = 86400.0
    lease: float = 120.0
    # Seconds a finished delivery (and its attempts) is kept; 0: forever.
    delivery_retention: float = 30 * 86400.0

    @classmethod
    def from_settings(cls, s: Settings) -> WebhookPolicy:
        """The policy the settings describe."""
        return cls(
            retry_base=s.webhook_retry_base,
            retry_cap=s.webhook_retry_cap,
            max_attempts=s.webhook_max_attempts,
            retry_after_cap=s.webhook_retry_after_cap,
            disable_after=s.webhook_disable_after,
            secret_overlap=s.webhook_secret_overlap,
            lease=s.webhook_lease,
            delivery_retention=s.delivery_retention_days * 86400.0,
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery reserved by one dispatcher: everything needed to send it once."""

    delivery_id: int
    webhook_id: int
    event_id: int
    attempt: int
    url: str
    secrets: list[str]
    body: bytes
    worker: str
    # An MLflow-style webhook: MLflow's headers (the body is MLflow's already).
    mlflow: bool = False
    # Set for a one-off test send that has no delivery row.
    test_id: str | None = None

    @property
    def message_id(self) -> str:
        """The ``webhook-id`` header (stable across retries)."""
        return self.test_id or message_id(self.delivery_id)


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat().replace("+00:00", "Z")


def redact_url(url: str) -> str:
    """``scheme://host:port`` of a URL: paths and queries often hold tokens, events must not."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _webhook(row: Any) -> Webhook:
    return Webhook(
        id=row.id,
        url=row.url,
        description=row.description,
        event_types=list(row.event_types),
        namespace=row.namespace,
        model=row.model,
        active=bool(row.active),
        disabled_reason=row.disabled_reason,
        failing_since=row.failing_since,
        previous_secret_expires_at=row.previous_secret_expires_at,
        since_event_id=int(row.since_event_id),
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        mlflow=dict(row.mlflow) if row.mlflow is not None else None,
    )


def _attempt(row: Any) -> Attempt:
    return Attempt(
        attempt=row.attempt,
        at=row.at,
        status=row.status,
        latency_us=row.latency_us,
        response_code=row.response_code,
        response_body=row.response_body,
        error=row.error,
    )


def _delivery(row: Any, attempts: list[Any]) -> Delivery:
    return Delivery(
        id=row.id,
        webhook_id=row.webhook_id,
        event_id=row.event_id,
        event_type=row.event_type,
        status=DeliveryStatus(row.status),
        attempts=[_attempt(a) for a in attempts],
        failures=row.failures,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _hook_payload(h: Webhook) -> dict[str, Any]:
    return {
        "webhook_id": h.id,
        "url": redact_url(h.url),
        "event_types": h.event_types,
        "namespace": h.namespace,
        "model": h.model,
        "active": h.active,
    }


def event_body(ev: Mapping[str, Any]) -> bytes:
    """The JSON body POSTed for an event (documented in docs/events.md)."""
    return orjson.dumps(
        {
            "id": ev["id"],
            "type": ev["type"],
            "timestamp": _iso(ev["at"]),
            "actor": ev["actor"],
            "namespace": ev["namespace"],
            "subject": ev["subject"],
            "data": ev["payload"],
        }
    )


def _body_for(hook: Any, ev: Mapping[str, Any], part: int = 0) -> bytes:
    """The body of one delivery: MLflow's shape (part ``part`` of what the
    event makes, see ``mlflow_webhooks.mlflow_events``) for a webhook made
    through the MLflow door, modelyard's otherwise. The fan-out queues only
    parts an MLflow-style webhook asked for; the one other delivery it can
    get, a ``webhook.test`` queued through REST v1, carries a made-up payload
    of its first MLflow event, as MLflow's own test does."""
    if hook.mlflow is None:
        return event_body(ev)
    body = mw.event_body(ev, part)
    if body is None:
        first = next(iter(hook.mlflow.get("events") or ["registered_model.created"]))
        body = mw.render(first, mw.example_data(first), ev["at"])
    return body


def _parts(hook: Webhook, ev: Mapping[str, Any]) -> list[int]:
    """The deliveries ``ev`` (which ``hook``'s patterns match) makes for
    ``hook``, each a part number: one for a REST v1 webhook; for an MLflow
    one, one per MLflow event it makes that the webhook asked for. A type the
    webhook's MLflow events do not name got there through REST v1's patterns
    (``*``), which ask for every MLflow event of that type."""
    if hook.mlflow is None:
        return [0]
    wanted = set(hook.mlflow.get("events") or ())
    asked_types = set(mw.modelyard_types([e for e in wanted if e in mw.TO_MODELYARD]))
    return [
        i
        for i, (name, _) in enumerate(mw.mlflow_events(ev))
        if name in wanted or ev["type"] not in asked_types
    ]


def _int_id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise InvalidInput(f"invalid {what} id", code="INVALID_ID", details={"value": str(value)})
    return value


class WebhookService:
    """Webhook subscriptions, deliveries and the outbox stream reads."""

    def __init__(
        self,
        db: MetadataStore,
        guard: DestinationGuard,
        policy: WebhookPolicy | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.guard = guard
        self.policy = policy or WebhookPolicy()
        self.rng = rng or random.Random()

    def _write(self, fn: Callable[[RegistryTx], T], *, attempts: int = 8) -> T:
        """Run ``fn`` in a write transaction (group committed on SQLite, see
        ``RegistryService._write``); retries transient lock failures."""
        return self.db.transact(fn, attempts=attempts)

    # -- subscriptions ----------------------------------------------------

    def _row(self, tx: RegistryTx, webhook_id: int, *, for_update: bool = False) -> Any:
        row = tx.outbox.webhook_row(_int_id(webhook_id, "webhook"), for_update=for_update)
        if row is None:
            raise NotFound(
                f"webhook {webhook_id} not found",
                code="WEBHOOK_NOT_FOUND",
                details={"webhook_id": webhook_id},
            )
        return row

    @staticmethod
    def _scope(namespace: Any, model: Any) -> tuple[str | None, str | None]:
        if namespace is not None:
            validate_name(namespace, kind="namespace")
        if model is not None:
            validate_name(model)
            namespace = namespace or DEFAULT_NAMESPACE
        return namespace, model

    @staticmethod
    def _authorize(actor: Principal, namespace: str | None) -> None:
        """Webhook admin: admin of the webhook's namespace; instance admin for
        webhooks of every namespace (``namespace`` None)."""
        if namespace is None:
            auth.require_instance_admin(actor)
        else:
            auth.require(actor, Permission.ADMIN, namespace)

    def _hook_for(
        self, tx: RegistryTx, webhook_id: int, actor: Principal, *, for_update: bool = False
    ) -> Any:
        """The webhook row if ``actor`` administers it. One in a namespace the
        actor cannot read answers ``WEBHOOK_NOT_FOUND``, as if it did not exist."""
        row = self._row(tx, webhook_id, for_update=for_update)
        if row.namespace is not None and not actor.can(Permission.READ, row.namespace):
            raise NotFound(
                f"webhook {webhook_id} not found",
                code="WEBHOOK_NOT_FOUND",
                details={"webhook_id": webhook_id},
            )
        self._authorize(actor, row.namespace)
        return row

    @staticmethod
    def _namespace_exists(tx: RegistryTx, namespace: str | None) -> None:
        if namespace is not None and tx.get_namespace(namespace) is None:
            raise NotFound(
                f"namespace {namespace!r} not found",
                code="NAMESPACE_NOT_FOUND",
                details={"namespace": namespace},
            )

    def create_webhook(
        self,
        url: str,
        *,
        event_types: list[str] | None = None,
        namespace: str | None = None,
        model: str | None = None,
        description: str = "",
        active: bool = True,
        actor: Principal,
    ) -> tuple[Webhook, str]:
        """Subscribe ``url`` to events; return the webhook and its secret (shown only here).

        ``event_types`` are patterns (``*``, ``version.*``, ``alias.moved``);
        ``namespace`` and ``model`` narrow the events further. The URL must
        pass the SSRF guard now and again at every delivery.
        Requires: admin of the namespace; instance admin for a webhook of
        every namespace.
        """
        namespace, model = self._scope(namespace, model)
        self._authorize(actor, namespace)
        self.guard.check(url)
        patterns = validate_patterns(event_types)
        description = v.check_description(description)
        secret = generate_secret()
        hook = self._insert(
            url, patterns, namespace, model, description, active, secret, None, actor=actor
        )
        return hook, secret

    def _insert(
        self,
        url: str,
        patterns: list[str],
        namespace: str | None,
        model: str | None,
        description: str,
        active: bool,
        secret: str,
        mlflow: dict[str, Any] | None,
        *,
        actor: Principal,
    ) -> Webhook:
        """Write a checked subscription and its ``webhook.created`` event."""

        def op(tx: RegistryTx) -> Webhook:
            self._namespace_exists(tx, namespace)
            at = now_us()
            wid = tx.outbox.insert_webhook(
                {
                    "url": url,
                    "description": description,
                    "event_types": patterns,
                    "namespace": namespace,
                    "model": model,
                    "secret": secret,
                    "active": bool(active),
                    "since_event_id": 0,
                    "created_by": actor.name,
                    "created_at": at,
                    "updated_at": at,
                    "mlflow": mlflow,
                },
            )
            hook = _webhook(self._row(tx, wid))
            eid = tx.append_event(
                "webhook.created",
                actor=actor.name,
                namespace=namespace or "",
                subject=f"webhooks/{wid}",
                payload=_hook_payload(hook),
            )
            # Deliveries start after the subscription's own creation event.
            tx.outbox.update_webhook(wid, {"since_event_id": eid})
            return replace(hook, since_event_id=eid)

        return self._write(op)

    def list_webhooks(self, *, actor: Principal) -> list[Webhook]:
        """The subscriptions the caller administers, oldest first (never with secrets).

        Requires: nothing (the list holds webhooks of namespaces the caller is
        admin of; all of them for the instance admin).
        """
        with self.db.read() as tx:
            hooks = [_webhook(r) for r in tx.outbox.webhook_rows()]
        if actor.is_instance_admin:
            return hooks
        return [
            h for h in hooks if h.namespace is not None and actor.can(Permission.ADMIN, h.namespace)
        ]

    def get_webhook(self, webhook_id: int, *, actor: Principal) -> Webhook:
        """One subscription (never with its secret).

        Requires: admin (of the webhook's namespace).
        """
        with self.db.read() as tx:
            return _webhook(self._hook_for(tx, webhook_id, actor))

    def update_webhook(
        self, webhook_id: int, changes: Mapping[str, Any], *, actor: Principal
    ) -> Webhook:
        """Change a subscription. Keys: url, event_types, namespace, model, description,
        active (a key present with ``None`` clears namespace or model). Re-activating
        clears the disabled reason and the failure run.

        Requires: admin (of the webhook's namespace).
        """
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise InvalidInput(f"cannot change {sorted(unknown)}", code="INVALID_INPUT", details={})
        values: dict[str, Any] = {}
        if changes.get("url") is not None:
            self.guard.check(changes["url"])
            values["url"] = changes["url"]
        if changes.get("event_types") is not None:
            values["event_types"] = validate_patterns(changes["event_types"])
        if changes.get("description") is not None:
            values["description"] = v.check_description(changes["description"])
        if changes.get("active") is not None:
            if not isinstance(changes["active"], bool):
                raise InvalidInput("active must be true or false", code="INVALID_INPUT")
            values["active"] = changes["active"]

        def op(tx: RegistryTx) -> Webhook:
            row = self._hook_for(tx, webhook_id, actor, for_update=True)
            before = _webhook(row)
            ns = changes.get("namespace", row.namespace)
            model = changes.get("model", row.model)
            ns, model = self._scope(ns, model)
            self._authorize(actor, ns)
            self._namespace_exists(tx, ns)
            vals = {**values, "namespace": ns, "model": model, "updated_at": now_us()}
            if vals.get("active") and not row.active:
                vals.update(disabled_reason=None, failing_since=None)
            elif vals.get("active") is False and row.active:
                vals["disabled_reason"] = f"disabled by {actor.name}"
            tx.outbox.update_webhook(row.id, vals)
            after = _webhook(self._row(tx, row.id))
            tx.append_event(
                "webhook.updated",
                actor=actor.name,
                namespace=after.namespace or "",
                subject=f"webhooks/{row.id}",
                payload={"before": _hook_payload(before), "after": _hook_payload(after)},
            )
            return after

        return self._write(op)

    def delete_webhook(self, webhook_id: int, *, actor: Principal) -> None:
        """Delete a subscription with its delivery history.

        Requires: admin (of the webhook's namespace).
        """

        def op(tx: RegistryTx) -> None:
            hook = _webhook(self._hook_for(tx, webhook_id, actor, for_update=True))
            tx.outbox.delete_webhook(hook.id)
            tx.append_event(
                "webhook.deleted",
                actor=actor.name,
                namespace=hook.namespace or "",
                subject=f"webhooks/{hook.id}",
                payload=_hook_payload(hook),
            )

        self._write(op)

    # -- MLflow-style webhooks (the MLflow door) ---------------------------

    def _mlflow_row(
        self, tx: RegistryTx, webhook_id: Any, actor: Principal, *, for_update: bool = False
    ) -> Any:
        """A webhook made through the MLflow door that ``actor`` administers. Ids
        are MLflow's strings; others (and REST v1's webhooks, which MLflow's
        client could not represent) are ``WEBHOOK_NOT_FOUND``."""
        wid = webhook_id
        if isinstance(wid, str) and wid.isascii() and wid.isdigit() and len(wid) <= 18:
            wid = int(wid)
        if not isinstance(wid, int) or isinstance(wid, bool) or wid < 1:
            raise NotFound(
                f"webhook {webhook_id!r} not found",
                code="WEBHOOK_NOT_FOUND",
                details={"webhook_id": str(webhook_id)},
            )
        row = self._hook_for(tx, wid, actor, for_update=for_update)
        if row.mlflow is None:
            raise NotFound(
                f"webhook {webhook_id} not found",
                code="WEBHOOK_NOT_FOUND",
                details={"webhook_id": str(webhook_id)},
            )
        return row

    def create_mlflow_webhook(
        self,
        *,
        name: Any,
        url: Any,
        events: Any,
        namespace: str,
        description: Any = None,
        secret: Any = None,
        active: bool = True,
        actor: Principal,
    ) -> Webhook:
        """Subscribe ``url`` to MLflow events (``registered_model.created``, ...)
        of the models in ``namespace``; deliveries use MLflow's wire format.

        ``secret`` (optional, any text) keys ``X-MLflow-Signature`` as MLflow
        does; without one deliveries are unsigned, as in MLflow. The URL passes
        the same SSRF guard as every webhook's, now and at every delivery.
        Requires: admin of ``namespace``.
        """
        name = mw.check_name(name)
        names = mw.check_events(events)
        key = mw.check_secret(secret)
        if not isinstance(url, str) or not url.strip():
            raise mw.invalid("Webhook URL must be a non-empty string.", parameter="url")
        ns, _ = self._scope(namespace, None)
        self._authorize(actor, ns)
        self.guard.check(url)
        text = v.check_description(description or "")
        meta = {"name": name, "events": names}
        return self._insert(
            url, mw.modelyard_types(names), ns, None, text, bool(active), key, meta, actor=actor
        )

    def list_mlflow_webhooks(self, *, actor: Principal) -> list[Webhook]:
        """The MLflow-style webhooks the caller administers, oldest first."""
        return [h for h in self.list_webhooks(actor=actor) if h.mlflow is not None]

    def get_mlflow_webhook(self, webhook_id: Any, *, actor: Principal) -> Webhook:
        """One MLflow-style webhook.

        Requires: admin (of the webhook's namespace).
        """
        with self.db.read() as tx:
            return _webhook(self._mlflow_row(tx, webhook_id, actor))

    def update_mlflow_webhook(
        self, webhook_id: Any, changes: Mapping[str, Any], *, actor: Principal
    ) -> Webhook:
        """Change an MLflow-style webhook. Keys (all optional): name, description,
        url, events (MLflow names), secret ('' removes it), active.

        Requires: admin (of the webhook's namespace).
        """
        values: dict[str, Any] = {}
        if changes.get("name") is not None:
            values["name"] = mw.check_name(changes["name"])
        if changes.get("events") is not None:
            values["events"] = mw.check_events(changes["events"])
        if "secret" in changes and changes["secret"] is not None:
            values["secret"] = mw.check_secret(changes["secret"])
        if changes.get("url") is not None:
            self.guard.check(changes["url"])
        plain = {k: changes[k] for k in ("url", "description", "active") if k in changes}
        if "events" in values:
            plain["event_types"] = mw.modelyard_types(values["events"])
        with self.db.read() as tx:
            wid = self._mlflow_row(tx, webhook_id, actor).id
        hook = self.update_webhook(wid, plain, actor=actor) if plain else None

        def op(tx: RegistryTx) -> Webhook:
            row = self._mlflow_row(tx, wid, actor, for_update=True)
            meta = dict(row.mlflow)
            meta.update({k: values[k] for k in ("name", "events") if k in values})
            update: dict[str, Any] = {"mlflow": meta, "updated_at": now_us()}
            if "secret" in values:
                update.update(
                    secret=values["secret"], previous_secret=None, previous_secret_expires_at=None
                )
            tx.outbox.update_webhook(row.id, update)
            after = _webhook(self._row(tx, row.id))
            if hook is None:
                # No field REST v1 knows changed: still one event for the change.
                tx.append_event(
                    "webhook.updated",
                    actor=actor.name,
                    namespace=after.namespace or "",
                    subject=f"webhooks/{row.id}",
                    payload={"before": _hook_payload(after), "after": _hook_payload(after)},
                )
            return after

        return self._write(op)

    def delete_mlflow_webhook(self, webhook_id: Any, *, actor: Principal) -> None:
        """Delete an MLflow-style webhook with its delivery history.

        Requires: admin (of the webhook's namespace).
        """
        with self.db.read() as tx:
            wid = self._mlflow_row(tx, webhook_id, actor).id
        self.delete_webhook(wid, actor=actor)

    def mlflow_test_claim(
        self, webhook_id: Any, *, event: str | None = None, actor: Principal
    ) -> Claim:
        """A one-off send of a made-up ``event`` (default: the webhook's first)
        to an MLflow-style webhook, as ``MlflowClient.test_webhook`` asks; the
        caller sends it through the same sender and SSRF guard as deliveries.
        Nothing is queued or recorded (MLflow's test is synchronous and
        leaves no trace either).

        Requires: admin (of the webhook's namespace).
        """
        with self.db.read() as tx:
            row = self._mlflow_row(tx, webhook_id, actor)
        names = list(row.mlflow.get("events") or [])
        name = names[0] if event is None else mw.check_events([event])[0]
        body = mw.render(name, mw.example_data(name), now_us())
        return Claim(
            delivery_id=0,
            webhook_id=row.id,
            event_id=0,
            attempt=1,
            url=row.url,
            secrets=[row.secret],
            body=body,
            worker="test",
            mlflow=True,
            test_id=f"test_{uuid.uuid4()}",
        )

    def rotate_secret(
        self, webhook_id: int, *, overlap: float | None = None, actor: Principal
    ) -> tuple[Webhook, str]:
        """Replace the signing secret; return the new one (shown only here).

        For ``overlap`` seconds (default from settings) deliveries carry a
        signature with the old secret too, so receivers can switch without
        dropping a delivery.
        Requires: admin (of the webhook's namespace).
        """
        window = self.policy.secret_overlap if overlap is None else overlap
        if isinstance(window, bool) or not isinstance(window, int | float):
            raise InvalidInput("overlap must be a number of seconds", code="INVALID_INPUT")
        if not 0 <= window <= 30 * 86400:
            raise InvalidInput("overlap must be 0-2592000 seconds", code="INVALID_INPUT")
        secret = generate_secret()

        def op(tx: RegistryTx) -> Webhook:
            row = self._hook_for(tx, webhook_id, actor, for_update=True)
            at = now_us()
            tx.outbox.update_webhook(
                row.id,
                {
                    "secret": secret,
                    "previous_secret": row.secret if window > 0 else None,
                    "previous_secret_expires_at": at + int(window * 1e6) if window > 0 else None,
                    "updated_at": at,
                },
            )
            hook = _webhook(self._row(tx, row.id))
            tx.append_event(
                "webhook.secret_rotated",
                actor=actor.name,
                namespace=hook.namespace or "",
                subject=f"webhooks/{hook.id}",
                payload={"webhook_id": hook.id, "overlap_seconds": window},
            )
            return hook

        return self._write(op), secret

    # -- deliveries -------------------------------------------------------

    def list_deliveries(
        self,
        webhook_id: int,
        *,
        status: str | None = None,
        page_size: int = 50,
        page_token: str | None = None,
        actor: Principal,
    ) -> Page[Delivery]:
        """A webhook's deliveries, newest first, each with all its attempts.

        Requires: admin (of the webhook's namespace).
        """
        if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidInput(f"page_size must be 1..{MAX_PAGE_SIZE}", code="INVALID_PAGE_SIZE")
        if status is not None and status not in {s.value for s in DeliveryStatus}:
            raise InvalidInput(
                f"unknown delivery status {status!r}",
                code="INVALID_STATUS",
                details={"allowed": [s.value for s in DeliveryStatus]},
            )
        before = None
        if page_token:
            if not (page_token.isascii() and page_token.isdigit()) or len(page_token) > 19:
                raise InvalidInput("invalid page token", code="INVALID_CURSOR")
            before = int(page_token)
        with self.db.read() as tx:
            hook = self._hook_for(tx, webhook_id, actor)
            rows = tx.outbox.delivery_rows(
                hook.id, limit=page_size + 1, before=before, status=status
            )
            attempts = tx.outbox.attempt_rows([r.id for r in rows[:page_size]])
        items = [_delivery(r, attempts.get(r.id, [])) for r in rows[:page_size]]
        token = str(items[-1].id) if len(rows) > page_size else None
        return Page(items, token)

    def get_delivery(self, webhook_id: int, delivery_id: int, *, actor: Principal) -> Delivery:
        """One delivery of a webhook with its attempts.

        Requires: admin (of the webhook's namespace).
        """
        with self.db.read() as tx:
            self._hook_for(tx, webhook_id, actor)
            row = self._delivery_row(tx, webhook_id, delivery_id)
            return _delivery(row, tx.outbox.attempt_rows([row.id]).get(row.id, []))

    def _delivery_row(
        self, tx: RegistryTx, webhook_id: int, delivery_id: int, *, for_update: bool = False
    ) -> Any:
        hook = self._row(tx, webhook_id)
        row = tx.outbox.delivery_row(_int_id(delivery_id, "delivery"), for_update=for_update)
        if row is None or row.webhook_id != hook.id:
            raise NotFound(
                f"delivery {delivery_id} of webhook {webhook_id} not found",
                code="DELIVERY_NOT_FOUND",
                details={"webhook_id": webhook_id, "delivery_id": delivery_id},
            )
        return row

    @staticmethod
    def _require_active(row: Any) -> None:
        if not row.active:
            raise Conflict(
                f"webhook {row.id} is disabled ({row.disabled_reason or 'inactive'}); "
                "re-activate it first",
                code="WEBHOOK_DISABLED",
                details={"webhook_id": row.id},
            )

    def redeliver(self, webhook_id: int, delivery_id: int, *, actor: Principal) -> Delivery:
        """Queue a delivery again now, with a fresh retry schedule (same ``webhook-id``).

        Requires: admin (of the webhook's namespace).
        """

        def op(tx: RegistryTx) -> Delivery:
            self._require_active(self._hook_for(tx, webhook_id, actor, for_update=True))
            row = self._delivery_row(tx, webhook_id, delivery_id, for_update=True)
            at = now_us()
            tx.outbox.update_delivery(
                row.id,
                {"status": "pending", "failures": 0, "next_attempt_at": at, "updated_at": at},
            )
            hook = _webhook(self._row(tx, webhook_id))
            tx.append_event(
                "webhook.redelivered",
                actor=actor.name,
                namespace=hook.namespace or "",
                subject=f"webhooks/{hook.id}",
                payload={
                    "webhook_id": hook.id,
                    "delivery_id": row.id,
                    "event_id": row.event_id,
                },
            )
            fresh = tx.outbox.delivery_row(row.id)
            return _delivery(fresh, tx.outbox.attempt_rows([row.id]).get(row.id, []))

        return self._write(op)

    def send_test(self, webhook_id: int, *, actor: Principal) -> Delivery:
        """Write a ``webhook.test`` event and queue it to this webhook only.

        Requires: admin (of the webhook's namespace).
        """

        def op(tx: RegistryTx) -> Delivery:
            row = self._hook_for(tx, webhook_id, actor, for_update=True)
            self._require_active(row)
            eid = tx.append_event(
                TEST_EVENT,
                actor=actor.name,
                namespace=row.namespace or "",
                subject=f"webhooks/{row.id}",
                payload={"webhook_id": row.id, "message": "a test event from modelyard"},
            )
            at = now_us()
            did = tx.outbox.insert_delivery(
                {
                    "webhook_id": row.id,
                    "event_id": eid,
                    "event_type": TEST_EVENT,
                    "status": "pending",
                    "next_attempt_at": at,
                    "created_at": at,
                    "updated_at": at,
                },
            )
            return _delivery(tx.outbox.delivery_row(did), [])

        return self._write(op)

    # -- the dispatcher's side --------------------------------------------

    def prune_deliveries(self, *, now: int | None = None, batch: int = 1000) -> int:
        """Delete finished deliveries (succeeded or failed, with their attempts)
        last updated longer ago than the retention; pending ones stay until done.
        Returns how many went. Run by every dispatcher now and then: the delete
        is idempotent, so replicas need not agree who does it. Bookkeeping, not
        a governed change: no event.
        """
        if self.policy.delivery_retention <= 0:
            return 0
        before = (now_us() if now is None else now) - int(self.policy.delivery_retention * 1e6)
        total = 0
        while True:
            # One short transaction per batch: the SQLite writer lock is shared.
            gone = self._write(lambda tx: tx.outbox.prune_deliveries(before=before, limit=batch))
            total += gone
            if gone < batch:
                return total

    def fan_out(self, *, batch: int = 500) -> int:
        """Advance the outbox cursor over new events, queueing matching deliveries.

        Returns how many events were consumed (0 when idle or when another
        replica holds the cursor).
        """
        with self.db.read() as tx:
            if tx.outbox.max_event_id() <= tx.outbox.read_cursor(FANOUT_CURSOR):
                return 0

        def op(tx: RegistryTx) -> int:
            cursor = tx.outbox.lock_cursor(FANOUT_CURSOR)
            if cursor is None:
                return 0
            events = tx.outbox.list_events(after=cursor, limit=batch)
            if not events:
                return 0
            # Subscriptions are read after the events, and on PostgreSQL each
            # statement sees what has committed by then: a webhook's creation
            # event commits with it, so any event newer than its creation that
            # we hold is from after the webhook became visible, and it is here.
            hooks = [_webhook(r) for r in tx.outbox.webhook_rows(active_only=True)]
            at = now_us()
            rows = [
                {
                    "webhook_id": h.id,
                    "event_id": ev["id"],
                    "event_type": ev["type"],
                    "part": part,
                    "status": "pending",
                    "next_attempt_at": at,
                    "created_at": at,
                    "updated_at": at,
                }
                for ev in events
                for h in hooks
                if matches(
                    h,
                    event_id=ev["id"],
                    event_type=ev["type"],
                    namespace=ev["namespace"],
                    subject=ev["subject"],
                )
                # An MLflow-style webhook gets only the MLflow events it asked
                # for, whatever patterns REST v1 may have set on it since.
                for part in _parts(h, ev)
            ]
            tx.outbox.insert_deliveries(rows)
            tx.outbox.set_cursor(FANOUT_CURSOR, events[-1]["id"], at)
            return len(events)

        return self._write(op)

    def claim_due(self, *, worker: str, limit: int) -> list[Claim]:
        """Reserve up to ``limit`` due deliveries for ``worker`` for one lease."""
        now = now_us()
        with self.db.read() as tx:
            if not tx.outbox.has_due(now):
                return []

        def op(tx: RegistryTx) -> list[Claim]:
            rows = tx.outbox.claim_due(
                now=now,
                lease_until=now + int(self.policy.lease * 1e6),
                worker=worker,
                limit=limit,
            )
            if not rows:
                return []
            events = tx.outbox.events_by_id([r.event_id for r in rows])
            hooks = {r.webhook_id: tx.outbox.webhook_row(r.webhook_id) for r in rows}
            claims = []
            for r in rows:
                hook = hooks[r.webhook_id]
                secrets = [hook.secret]
                if hook.previous_secret and (hook.previous_secret_expires_at or 0) > now:
                    secrets.append(hook.previous_secret)
                claims.append(
                    Claim(
                        delivery_id=r.id,
                        webhook_id=r.webhook_id,
                        event_id=r.event_id,
                        attempt=r.attempt_count + 1,
                        url=hook.url,
                        secrets=secrets,
                        body=_body_for(hook, events[r.event_id], r.part),
                        worker=worker,
                        mlflow=hook.mlflow is not None,
                    )
                )
            return claims

        return self._write(op)

    def record_attempt(self, claim: Claim, outcome: AttemptOutcome) -> None:
        """Record one attempt and decide what follows: done, retry when, or give up.

        2xx: delivered. 410: the endpoint is gone; the webhook is disabled.
        429/503 with ``Retry-After``: retry then (capped). Anything else:
        exponential backoff with full jitter, up to the attempt limit. A webhook
        failing without a success for longer than the disable threshold is
        disabled, with a ``webhook.disabled`` event.
        """
        body = outcome.response_body[:MAX_RESPONSE_BODY]
        outcome = replace(outcome, response_body=body, error=(outcome.error or None))
        wall = time.time()

        def op(tx: RegistryTx) -> None:
            # Webhook row first, then the delivery: the order every writer of
            # both uses (delete, test), so they cannot deadlock.
            hook = tx.outbox.webhook_row(claim.webhook_id, for_update=True)
            row = tx.outbox.delivery_row(claim.delivery_id, for_update=True)
            if hook is None or row is None:
                return  # the webhook was deleted meanwhile
            at = now_us()
            count = row.attempt_count + 1
            tx.outbox.insert_attempt(
                {
                    "delivery_id": row.id,
                    "attempt": count,
                    "at": at,
                    "status": "succeeded" if outcome.succeeded else "failed",
                    "latency_us": outcome.latency_us,
                    "response_code": outcome.response_code,
                    "response_body": outcome.response_body,
                    "error": outcome.error,
                },
            )
            values: dict[str, Any] = {"attempt_count": count, "updated_at": at}
            if row.claimed_by == claim.worker:
                values.update(claimed_until=None, claimed_by=None)
            disable: str | None = None
            if outcome.succeeded:
                values.update(status="succeeded", next_attempt_at=None)
                if hook.failing_since is not None:
                    tx.outbox.update_webhook(hook.id, {"failing_since": None})
            elif row.status == "pending":
                failures = row.failures + 1
                values["failures"] = failures
                if outcome.response_code == 410:
                    values.update(status="failed", next_attempt_at=None)
                    disable = "the endpoint answered 410 Gone"
                else:
                    if failures >= self.policy.max_attempts:
                        values.update(status="failed", next_attempt_at=None)
                    else:
                        values["next_attempt_at"] = at + int(self._delay(failures, outcome, wall))
                    if hook.failing_since is None:
                        tx.outbox.update_webhook(hook.id, {"failing_since": at})
                    elif at - hook.failing_since >= self.policy.disable_after * 1e6:
                        disable = (
                            "failing without a success since "
                            f"{_iso(hook.failing_since)} (attempt {count})"
                        )
            tx.outbox.update_delivery(row.id, values)
            if disable is not None and hook.active:
                tx.outbox.update_webhook(
                    hook.id, {"active": False, "disabled_reason": disable, "updated_at": at}
                )
                tx.append_event(
                    "webhook.disabled",
                    actor="system",
                    namespace=hook.namespace or "",
                    subject=f"webhooks/{hook.id}",
                    payload={
                        "webhook_id": hook.id,
                        "url": redact_url(hook.url),
                        "reason": disable,
                    },
                )

        self._write(op)

    def _delay(self, failures: int, outcome: AttemptOutcome, wall: float) -> float:
        """Microseconds until the next try."""
        p = self.policy
        if outcome.response_code in (429, 503):
            asked = parse_retry_after(outcome.retry_after, now=wall)
            if asked is not None:
                return max(p.retry_base / 10, min(asked, p.retry_after_cap)) * 1e6
        return backoff_delay(failures, base=p.retry_base, cap=p.retry_cap, rng=self.rng) * 1e6

    # -- the event stream -------------------------------------------------

    def event_filter(
        self,
        *,
        types: list[str] | None = None,
        namespace: str | None = None,
        model: str | None = None,
        subject: str | None = None,
        actor: Principal,
    ) -> EventFilter:
        """Validate a reader's filter. ``model`` is ``ns/name`` or ``name`` (in
        ``namespace``, default ``default``).

        Requires: read or consume on ``namespace`` (and the model's
        namespace) if given: a consumer narrows its alias moves the same way
        (the trimming rule below applies inside the narrowed scope). The
        filter keeps only events of namespaces the caller reads;
        instance-wide events (users, tokens, global webhooks) need the
        instance admin or a global read role. In namespaces the caller only
        consumes it keeps the alias moves the production view shows (see
        :func:`~modelyard.domain.webhooks.event_for`): a model server with a
        consumer token follows its alias by them. A stream keeps the scope it
        was opened with (the API re-checks its token at every heartbeat).
        """
        patterns = tuple(validate_patterns(types)) if types else ()
        if namespace is not None:
            validate_name(namespace, kind="namespace")
            auth.require_readable(actor, namespace)
        full_model = None
        if model is not None:
            ns, _, name = model.rpartition("/") if isinstance(model, str) else ("", "", model)
            ns = ns or namespace or DEFAULT_NAMESPACE
            validate_name(ns, kind="namespace")
            validate_name(name)
            auth.require_readable(actor, ns)
            full_model = f"{ns}/{name}"
        if subject is not None and (not isinstance(subject, str) or len(subject) > 512):
            raise InvalidInput("subject is at most 512 characters", code="INVALID_INPUT")
        readable = None if actor.reads_everything else actor.namespaces_with(Permission.READ)
        consumed: tuple[str, ...] | None = ()
        if readable is not None:
            if actor.can(Permission.CONSUME, auth.GLOBAL_SCOPE):
                consumed = None  # a global consumer: every namespace not read whole
            else:
                consumed = tuple(sorted(actor.namespaces_with(Permission.CONSUME) - readable))
        return EventFilter(
            patterns,
            namespace,
            full_model,
            subject,
            None if readable is None else tuple(sorted(readable)),
            consumed,
        )

    def last_event_id(self) -> int:
        """The newest committed event id (0 if none): where a new live stream starts."""
        with self.db.read() as tx:
            return tx.outbox.max_event_id()

    def list_events(
        self, flt: EventFilter | None = None, *, after: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Events with id > ``after`` that match ``flt``, oldest first (commit order).

        Requires: nothing here; ``flt`` (from :meth:`event_filter`) limits the
        events to the namespaces the caller reads, and the alias moves the
        production view shows where it only consumes (trimmed: ``event_for``).
        Without a filter: every event (internal callers only).
        """
        if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < 2**63:
            raise InvalidInput("after must be an event id >= 0", code="INVALID_CURSOR")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidInput("limit must be 1..1000", code="INVALID_PAGE_SIZE")
        f = flt or EventFilter()
        judged = f.namespaces is not None and (f.consumed is None or bool(f.consumed))
        out: list[dict[str, Any]] = []
        with self.db.read() as tx:
            while True:
                rows = tx.outbox.list_events(
                    after=after,
                    limit=limit,
                    types=f.types,
                    namespace=f.namespace,
                    model=f.model,
                    subject=f.subject,
                    namespaces=f.namespaces,
                    consumed=f.consumed,
                    consumer_types=CONSUMER_EVENT_TYPES if judged else (),
                )
                if not judged:
                    return rows
                # Consumer candidates are judged by their payload here; keep
                # reading while some were dropped, so a short page still
                # means "nothing more yet" (the event stream relies on it).
                for row in rows:
                    seen = event_for(f, row)
                    if seen is not None:
                        out.append(seen)
                        if len(out) == limit:
                            return out
                if len(rows) < limit:
                    return out
                after = rows[-1]["id"]
