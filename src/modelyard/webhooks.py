"""Standard Webhooks signing, and :func:`verify` for receivers of modelyard webhooks.

Every delivery carries three headers (https://www.standardwebhooks.com/):

- ``webhook-id``: the message id, the same on every retry of one delivery
  (deduplicate on it);
- ``webhook-timestamp``: Unix seconds when this attempt was signed;
- ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` over
  ``"{id}.{timestamp}.{body}"``, keyed with the base64-decoded part of the
  secret after ``whsec_``. During a secret rotation's overlap window there are
  two signatures, one per secret; a receiver accepts if any matches.

A receiver needs only this module (standard library only)::

    from modelyard.webhooks import verify, WebhookVerificationError

    try:
        event = verify(request.headers, request.body, "whsec_...")
    except WebhookVerificationError:
        return 400
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24
DEFAULT_TOLERANCE = 300


class WebhookVerificationError(Exception):
    """The request is not a valid, fresh modelyard webhook for this secret."""


def generate_secret() -> str:
    """A new signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (at least 24 bytes)."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret holds at least {MIN_SECRET_BYTES} bytes")
    return key


def sign(msg_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """One ``v1,<base64>`` signature of a message with one secret."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(msg_id: str, timestamp: int, body: bytes, secrets_: list[str]) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    return " ".join(sign(msg_id, timestamp, body, s) for s in secrets_)


def mlflow_signature(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """``X-MLflow-Signature`` of a delivery made for an MLflow-style webhook.

    MLflow 3 keys HMAC-SHA256 with the UTF-8 bytes of the secret as given (no
    ``whsec_`` decoding) over ``"{delivery id}.{timestamp}.{body}"`` and sends
    ``v1,<base64 digest>``; receivers written for MLflow check exactly that.
    """
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing header {name}")


def verify(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str,
    tolerance: int = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> Any:
    """Check a delivery's signature and timestamp and return its parsed JSON body.

    Raises :class:`WebhookVerificationError` when a header is missing, the
    timestamp is older or newer than ``tolerance`` seconds (replay protection),
    or no signature matches ``secret``. Header names are matched case-blind.
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        ts = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if ts < current - tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old (possible replay)")
    if ts > current + tolerance:
        raise WebhookVerificationError("webhook-timestamp is in the future")
    try:
        expected = sign(msg_id, ts, raw, secret).encode()
    except ValueError as exc:
        raise WebhookVerificationError(f"unusable secret: {exc}") from None
    for candidate in signatures.split():
        if hmac.compare_digest(candidate.encode(), expected):
            try:
                return json.loads(raw)
            except ValueError:
                raise WebhookVerificationError("the body is not JSON") from None
    raise WebhookVerificationError("no matching signature")


__all__ = [
    "WebhookVerificationError",
    "generate_secret",
    "mlflow_signature",
    "secret_key",
    "sign",
    "signature_header",
    "verify",
]
