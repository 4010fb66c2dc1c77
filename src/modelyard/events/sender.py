"""Sends one signed delivery over HTTP, only to addresses the SSRF guard allowed.

The URL is resolved and checked once per attempt; the request then goes to a
checked IP address while carrying the original ``Host`` header and TLS server
name (SNI, certificate check), so DNS cannot swap the address in between.
The certificate is checked against the URL's host name (SNI), with the public
CAs plus an optional admin-provided bundle. Redirects are never followed (a
3xx is a failed attempt); proxies from the environment are ignored (they
would connect on our behalf, unchecked).
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import certifi
import httpx

from modelyard import __version__
from modelyard.domain.webhooks import AttemptOutcome, DestinationRefused
from modelyard.service.destinations import DestinationGuard
from modelyard.service.webhooks import MAX_RESPONSE_BODY, Claim
from modelyard.webhooks import signature_header


def _elapsed_us(start: float) -> int:
    return int((time.perf_counter() - start) * 1e6)


class WebhookSender:
    """An HTTP client for deliveries (one per dispatcher; thread-safe)."""

    def __init__(
        self, guard: DestinationGuard, *, timeout: float, ca_bundle: Path | None = None
    ) -> None:
        self.guard = guard
        self.timeout = timeout
        tls = ssl.create_default_context(cafile=certifi.where())
        if ca_bundle is not None:
            tls.load_verify_locations(cafile=str(ca_bundle))
        self.http = httpx.Client(
            verify=tls,
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"User-Agent": f"modelyard-webhooks/{__version__}"},
            # No pooled connections: a pool is keyed by IP address, so a TLS
            # connection verified for one host name could be reused for another
            # name on the same address. Deliveries are few; a fresh connection
            # (and certificate check) each time is the safe trade.
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def send(self, claim: Claim) -> AttemptOutcome:
        """POST the claim's body once and report what happened (never raises)."""
        start = time.perf_counter()
        try:
            dest = self.guard.check(claim.url)
        except DestinationRefused as exc:
            return AttemptOutcome(None, "", f"{exc.code}: {exc.message}", _elapsed_us(start))
        stamp = int(time.time())
        headers = {
            "Host": dest.host_header,
            "Content-Type": "application/json",
            "webhook-id": claim.message_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": signature_header(
                claim.message_id, stamp, claim.body, claim.secrets
            ),
        }
        extensions = {"sni_hostname": dest.host} if dest.scheme == "https" else {}
        target = httpx.URL(claim.url)
        error = "no address to connect to"
        for address in dest.addresses:
            try:
                with self.http.stream(
                    "POST",
                    target.copy_with(host=address),
                    content=claim.body,
                    headers=headers,
                    extensions=extensions,
                ) as resp:
                    body = bytearray()
                    for chunk in resp.iter_bytes():
                        body += chunk
                        # Enough to record, or a body trickling in for longer
                        # than the timeout: the status is what counts.
                        if len(body) >= MAX_RESPONSE_BODY or (
                            time.perf_counter() - start > self.timeout
                        ):
                            break
                    return AttemptOutcome(
                        resp.status_code,
                        bytes(body[:MAX_RESPONSE_BODY]).decode("utf-8", "replace"),
                        None,
                        _elapsed_us(start),
                        resp.headers.get("retry-after"),
                    )
            except httpx.ConnectError as exc:
                # Try the next checked address of the same name.
                error = f"connect error ({address}): {exc}"
            except httpx.TimeoutException as exc:
                return AttemptOutcome(
                    None, "", f"timeout: {type(exc).__name__}", _elapsed_us(start)
                )
            except httpx.HTTPError as exc:
                return AttemptOutcome(None, "", f"{type(exc).__name__}: {exc}", _elapsed_us(start))
        return AttemptOutcome(None, "", error, _elapsed_us(start))

    def close(self) -> None:
        """Close pooled connections."""
        self.http.close()
