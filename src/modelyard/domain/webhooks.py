"""Webhook subscriptions and deliveries: entities and the pure rules (no I/O).

- Event-type patterns: an exact type (``version.created``), a subject wildcard
  (``version.*``) or ``*`` for everything.
- A subscription matches an event by type pattern, namespace and model.
- Retry timing: exponential backoff with full jitter, and ``Retry-After``.
- What a reader of the event log sees (:func:`event_for`): every event of the
  namespaces it reads, and in namespaces it only *consumes*, the alias moves
  the production view shows (:data:`CONSUMER_VISIBLE`), trimmed to what a
  consumer may know.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from modelyard.domain.errors import InvalidInput

_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}\.[a-z][a-z0-9_]{0,31}$")
_PATTERN_RE = re.compile(r"^(\*|[a-z][a-z0-9_]{0,31}\.(\*|[a-z][a-z0-9_]{0,31}))$")
MAX_PATTERNS = 50
TEST_EVENT = "webhook.test"
CONSUMER_EVENT_TYPES: tuple[str, ...] = ("alias.moved",)
"""Event types a consumer-only reader may get (model servers follow aliases by them)."""
CONSUMER_VISIBLE = "consumer_visible"
"""Payload key set (true) on an ``alias.moved`` event when the move is one the
production view shows: a protected alias moved onto a published version that
meets its model's production policy, judged when the move committed."""
# What of an alias move's payload a consumer gets: enough to follow it, not
# who asked, why, nor which version it left (that one may be hidden now).
_CONSUMER_PAYLOAD = ("alias", "to_version", "after", "rollback")


class DestinationRefused(InvalidInput):
    """A webhook URL the server may not call (scheme, unresolvable, or a refused address).

    The API answers 422: the request is well-formed but names a destination
    the server's SSRF rules forbid.
    """

    default_code = "WEBHOOK_URL_REFUSED"


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a reader wants: type patterns, namespace, model, exact subject."""

    types: tuple[str, ...] = ()
    namespace: str | None = None
    model: str | None = None
    subject: str | None = None
    # Only events of these namespaces (what the reader may read); None: any.
    namespaces: tuple[str, ...] | None = None
    # Namespaces the reader only consumes, where it gets the alias moves the
    # production view shows (None: every namespace it does not read).
    consumed: tuple[str, ...] | None = ()


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What happened when one delivery was sent once."""

    response_code: int | None
    response_body: str
    error: str | None
    latency_us: int
    retry_after: str | None = None

    @property
    def succeeded(self) -> bool:
        """Only a 2xx answer counts as delivered."""
        return self.response_code is not None and 200 <= self.response_code < 300


class DeliveryStatus(StrEnum):
    """Where a delivery stands."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Webhook:
    """A subscription: where to POST which events. The secret is never in here."""

    id: int
    url: str
    description: str
    event_types: list[str]
    namespace: str | None
    model: str | None
    active: bool
    disabled_reason: str | None
    failing_since: int | None
    previous_secret_expires_at: int | None
    since_event_id: int
    created_by: str
    created_at: int
    updated_at: int
    # Made through the MLflow door: {"name": str, "events": [MLflow event names]};
    # such a webhook is delivered in MLflow's wire format. None: REST v1's.
    mlflow: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of one delivery."""

    attempt: int
    at: int
    status: str
    latency_us: int
    response_code: int | None
    response_body: str
    error: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to one webhook, with every attempt so far."""

    id: int
    webhook_id: int
    event_id: int
    event_type: str
    status: DeliveryStatus
    attempts: list[Attempt]
    failures: int
    next_attempt_at: int | None
    created_at: int
    updated_at: int

    @property
    def message_id(self) -> str:
        """The ``webhook-id`` header: the same for every attempt of this delivery."""
        return message_id(self.id)


def message_id(delivery_id: int) -> str:
    """The Standard Webhooks message id of a delivery."""
    return f"msg_{delivery_id}"


def validate_event_type(value: str) -> str:
    """An event type is ``<subject>.<verb>`` in lowercase."""
    if not isinstance(value, str) or not _TYPE_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid event type {value!r}: use '<subject>.<verb>'",
            code="INVALID_EVENT_TYPE",
            details={"value": value if isinstance(value, str) else None},
        )
    return value


def validate_patterns(values: Any) -> list[str]:
    """Event-type patterns: ``*``, ``subject.*`` or an exact type; deduplicated, sorted."""
    if values is None:
        return ["*"]
    if not isinstance(values, list | tuple) or not values or len(values) > MAX_PATTERNS:
        raise InvalidInput(
            f"event_types must be a list of 1-{MAX_PATTERNS} patterns",
            code="INVALID_EVENT_TYPE",
        )
    for v in values:
        if not isinstance(v, str) or not _PATTERN_RE.fullmatch(v):
            raise InvalidInput(
                f"invalid event type pattern {v!r}: use '*', 'subject.*' or 'subject.verb'",
                code="INVALID_EVENT_TYPE",
                details={"value": v if isinstance(v, str) else None},
            )
    return sorted(set(values))


def type_matches(pattern: str, event_type: str) -> bool:
    """True if ``event_type`` is selected by ``pattern``."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def subject_in_model(subject: str, model: str) -> bool:
    """True if an event subject (``ns/name``, ``ns/name/3``, ``ns/name@alias``) is about
    the model ``ns/name``."""
    return subject == model or subject.startswith((model + "/", model + "@"))


def consumer_candidate(flt: EventFilter, *, event_type: str, namespace: str) -> bool:
    """True if the event is of a kind and namespace a consumer-only reader may
    get (then its payload decides: :func:`event_for`)."""
    return event_type in CONSUMER_EVENT_TYPES and (
        flt.consumed is None or namespace in flt.consumed
    )


def filter_matches(flt: EventFilter, *, event_type: str, namespace: str, subject: str) -> bool:
    """True if a reader's filter selects this event: the rule the outbox query
    (``store/metadata/outbox.list_events``) applies in SQL, for events already
    in memory (the shared stream poller). In a namespace the reader only
    consumes, this selects candidates; :func:`event_for` has the last word."""
    if (
        flt.types
        and "*" not in flt.types
        and not any(type_matches(p, event_type) for p in flt.types)
    ):
        return False
    if flt.namespace is not None and namespace != flt.namespace:
        return False
    if (
        flt.namespaces is not None
        and namespace not in flt.namespaces
        and not consumer_candidate(flt, event_type=event_type, namespace=namespace)
    ):
        return False
    if flt.model is not None and not subject_in_model(subject, flt.model):
        return False
    return flt.subject is None or subject == flt.subject


def event_for(flt: EventFilter, ev: dict[str, Any]) -> dict[str, Any] | None:
    """The event ``ev`` (an outbox row) as the reader of ``flt`` sees it, or None.

    A reader gets the events of the namespaces it reads whole. In a namespace
    it only consumes it gets the alias moves the production view shows
    (payload flag :data:`CONSUMER_VISIBLE`), without the actor and with only
    the payload's alias, new version and rollback flag.
    """
    namespace, event_type = ev["namespace"], ev["type"]
    if not filter_matches(flt, event_type=event_type, namespace=namespace, subject=ev["subject"]):
        return None
    if flt.namespaces is None or namespace in flt.namespaces:
        return ev
    payload = ev.get("payload") or {}
    if payload.get(CONSUMER_VISIBLE) is not True:
        return None
    trimmed = {k: payload[k] for k in _CONSUMER_PAYLOAD if k in payload}
    return {**ev, "actor": "", "payload": trimmed}


def matches(hook: Webhook, *, event_id: int, event_type: str, namespace: str, subject: str) -> bool:
    """True if a subscription wants this event.

    ``webhook.*`` events match only patterns that name them. Test events are
    addressed to one webhook and are never fanned out; events from before the
    subscription existed are not sent to it.
    """
    if event_type == TEST_EVENT or event_id <= hook.since_event_id:
        return False
    # "*" leaves out the webhooks' own administrative events (other endpoints'
    # creation, rotation, disabling): a subscriber gets those only by naming them.
    admin = event_type.startswith("webhook.")
    if not any(type_matches(p, event_type) and not (admin and p == "*") for p in hook.event_types):
        return False
    if hook.namespace is not None and namespace != hook.namespace:
        return False
    return hook.model is None or subject_in_model(subject, f"{namespace}/{hook.model}")


def backoff_delay(failures: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before the next try after ``failures`` consecutive failures (>= 1).

    Exponential backoff with full jitter: uniform in ``[0, min(cap, base * 2^(n-1))]``,
    which spreads a crowd of retries to one recovering endpoint. The floor of
    ``base / 10`` keeps a retry from firing in the same instant.
    """
    ceiling = min(cap, base * 2 ** min(failures - 1, 62))
    return max(base / 10, rng.uniform(0, ceiling))


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value[:12]))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)
