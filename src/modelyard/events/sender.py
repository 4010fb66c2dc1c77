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

import contextlib
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard import __version__
from modelyard.domain.webhooks import AttemptOutcome, DestinationRefused
from modelyard.service.destinations import DestinationGuard
from modelyard.service.webhooks import MAX_RESPONSE_BODY, Claim
from modelyard.webhooks import mlflow_signature, signature_header

if TYPE_CHECKING:
    import httpx

# MLflow 3's delivery headers (``mlflow.webhooks.constants``).
MLFLOW_DELIVERY_ID = "X-MLflow-Delivery-Id"
MLFLOW_TIMESTAMP = "X-MLflow-Timestamp"
MLFLOW_SIGNATURE = "X-MLflow-Signature"


def _elapsed_us(start: float) -> int:
    return int((time.perf_counter() - start) * 1e6)


class WebhookSender:
    """An HTTP client for deliveries (one per dispatcher; thread-safe)."""

    def __init__(
        self, guard: DestinationGuard, *, timeout: float, ca_bundle: Path | None = None
    ) -> None:
        self.guard = guard
        self.timeout = timeout
        self._ca_bundle = ca_bundle
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()
        if ca_bundle is not None:
            # An admin's bundle that does not load fails at start-up, as it
            # always did, not at the first delivery.
            self._client()

    def _client(self) -> httpx.Client:
        """The HTTP client, made at the first delivery.

        Importing httpx and loading the public CAs into a TLS context cost
        about 30 ms of CPU, paid by every server start before its first
        ``/health`` although most servers send no webhook for a while
        (issue 9, cold start).
        """
        with self._lock:
            if self._http is None:
                import certifi
                import httpx

                tls = ssl.create_default_context(cafile=certifi.where())
                if self._ca_bundle is not None:
                    tls.load_verify_locations(cafile=str(self._ca_bundle))
                self._http = httpx.Client(
                    verify=tls,
                    follow_redirects=False,
                    trust_env=False,
                    timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
                    headers={"User-Agent": f"modelyard-webhooks/{__version__}"},
                    # No pooled connections: a pool is keyed by IP address, so a
                    # TLS connection verified for one host name could be reused
                    # for another name on the same address. Deliveries are few; a
                    # fresh connection (and certificate check) each time is the
                    # safe trade.
                    limits=httpx.Limits(max_keepalive_connections=0),
                )
            return self._http

    def send(self, claim: Claim) -> AttemptOutcome:
        """POST the claim's body once and report what happened (never raises)."""
        import httpx

        # Made before the attempt's clock starts: the first delivery's
        # client set-up must not eat into its deadline.
        http = self._client()
        start = time.perf_counter()
        try:
            dest = self.guard.check(claim.url)
        except DestinationRefused as exc:
            return AttemptOutcome(None, "", f"{exc.code}: {exc.message}", _elapsed_us(start))
        stamp = int(time.time())
        headers = {"Host": dest.host_header, "Content-Type": "application/json"}
        if claim.mlflow:
            # MLflow's headers: a receiver written for an MLflow server runs
            # unchanged. The delivery id stays the same across retries (MLflow
            # makes one per request), which only helps a receiver that dedupes.
            headers[MLFLOW_DELIVERY_ID] = claim.message_id
            headers[MLFLOW_TIMESTAMP] = str(stamp)
            if claim.secrets and claim.secrets[0]:
                headers[MLFLOW_SIGNATURE] = mlflow_signature(
                    claim.secrets[0], claim.message_id, stamp, claim.body
                )
        else:
            headers["webhook-id"] = claim.message_id
            headers["webhook-timestamp"] = str(stamp)
            headers["webhook-signature"] = signature_header(
                claim.message_id, stamp, claim.body, claim.secrets
            )
        target = httpx.URL(claim.url)
        error = "no address to connect to"
        # One deadline for the whole attempt (connect, TLS, headers, body):
        # httpx's timeouts apply per read, so an endpoint trickling bytes could
        # otherwise hold an attempt past its lease.
        watchdog = _Watchdog(max(0.0, self.timeout - (time.perf_counter() - start)))
        extensions: dict[str, Any] = {"trace": watchdog.trace}
        if dest.scheme == "https":
            extensions["sni_hostname"] = dest.host
        try:
            for address in dest.addresses:
                try:
                    with http.stream(
                        "POST",
                        target.copy_with(host=address),
                        content=claim.body,
                        headers=headers,
                        extensions=extensions,
                    ) as resp:
                        body = bytearray()
                        try:
                            for chunk in resp.iter_bytes():
                                body += chunk
                                if len(body) >= MAX_RESPONSE_BODY:
                                    break
                        except httpx.HTTPError:
                            pass  # cut off while reading the body: the status counts
                        return AttemptOutcome(
                            resp.status_code,
                            bytes(body[:MAX_RESPONSE_BODY]).decode("utf-8", "replace"),
                            None,
                            _elapsed_us(start),
                            resp.headers.get("retry-after"),
                        )
                except httpx.ConnectError as exc:
                    if watchdog.fired:
                        break
                    # Try the next checked address of the same name.
                    error = f"connect error ({address}): {exc}"
                except httpx.TimeoutException as exc:
                    return AttemptOutcome(
                        None, "", f"timeout: {type(exc).__name__}", _elapsed_us(start)
                    )
                except httpx.HTTPError as exc:
                    if watchdog.fired:
                        break
                    return AttemptOutcome(
                        None, "", f"{type(exc).__name__}: {exc}", _elapsed_us(start)
                    )
        finally:
            watchdog.cancel()
        if watchdog.fired:
            error = f"timeout: no complete answer within {self.timeout:g} s"
        return AttemptOutcome(None, "", error, _elapsed_us(start))

    def close(self) -> None:
        """Close the client, if one was made."""
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()


class _Watchdog:
    """Shuts the attempt's socket down when its deadline passes.

    httpcore reports each new connection through the ``trace`` extension; a
    timer then shuts that socket down, which wakes a read blocked on it.
    """

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def trace(self, name: str, info: dict[str, Any]) -> None:
        """httpcore trace hook: remember the socket of each connection made."""
        if name in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            with self._lock:
                self._socket = sock
                late = self.fired
            if late:
                self._shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sock = self._socket
        self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket | None) -> None:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        """The attempt is over."""
        self._timer.cancel()
