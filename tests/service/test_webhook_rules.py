"""verify() for receivers, the SSRF guard, and the pure retry and matching rules."""

from __future__ import annotations

import base64
import random
import shutil
import socket
import ssl
import subprocess
import threading
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from modelyard.domain.webhooks import (
    AttemptOutcome,
    DestinationRefused,
    Webhook,
    backoff_delay,
    matches,
    parse_retry_after,
)
from modelyard.events.sender import WebhookSender
from modelyard.service.destinations import DestinationGuard
from modelyard.service.webhooks import Claim
from modelyard.webhooks import (
    WebhookVerificationError,
    generate_secret,
    secret_key,
    sign,
    signature_header,
    verify,
)
from tests.receiver import receiver

BODY = b'{"type":"version.created","data":{"version":1}}'


def headers(secret: str, *, ts: int | None = None, msg: str = "msg_1", body: bytes = BODY) -> dict:
    stamp = int(time.time()) if ts is None else ts
    return {
        "Webhook-Id": msg,
        "Webhook-Timestamp": str(stamp),
        "Webhook-Signature": sign(msg, stamp, body, secret),
    }


def test_secret_shape() -> None:
    s = generate_secret()
    assert s.startswith("whsec_") and len(secret_key(s)) >= 24
    assert generate_secret() != s
    for bad in ("abc", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            secret_key(bad)


def test_verify_accepts_a_good_signature_case_blind() -> None:
    secret = generate_secret()
    assert verify(headers(secret), BODY, secret)["data"] == {"version": 1}
    assert verify(headers(secret), BODY.decode(), secret)["type"] == "version.created"


def test_verify_rejects_tampering_and_wrong_secrets() -> None:
    secret = generate_secret()
    h = headers(secret)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(h, BODY.replace(b"1", b"2"), secret)
    with pytest.raises(WebhookVerificationError):
        verify(h, BODY, generate_secret())
    with pytest.raises(WebhookVerificationError):
        verify({**h, "Webhook-Id": "msg_2"}, BODY, secret)
    with pytest.raises(WebhookVerificationError, match="missing header webhook-signature"):
        verify({k: v for k, v in h.items() if k != "Webhook-Signature"}, BODY, secret)
    with pytest.raises(WebhookVerificationError, match="not an integer"):
        verify({**h, "Webhook-Timestamp": "soon"}, BODY, secret)
    with pytest.raises(WebhookVerificationError, match="unusable secret"):
        verify(h, BODY, "not-a-secret")


def test_verify_rejects_replays_and_future_timestamps() -> None:
    secret = generate_secret()
    now = time.time()
    old = headers(secret, ts=int(now) - 301)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(old, BODY, secret, now=now)
    assert verify(old, BODY, secret, tolerance=600, now=now)
    future = headers(secret, ts=int(now) + 301)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify(future, BODY, secret, now=now)


def test_any_of_several_signatures_matches() -> None:
    old, new = generate_secret(), generate_secret()
    stamp = int(time.time())
    h = {
        "webhook-id": "msg_9",
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature_header("msg_9", stamp, BODY, [new, old]),
    }
    assert verify(h, BODY, old) and verify(h, BODY, new)
    with pytest.raises(WebhookVerificationError):
        verify(h, BODY, generate_secret())


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    rng = random.Random(7)
    for n in range(1, 30):
        ceiling = min(3600.0, 5.0 * 2 ** (n - 1))
        samples = [backoff_delay(n, base=5.0, cap=3600.0, rng=rng) for _ in range(50)]
        assert all(0.5 <= s <= max(ceiling, 0.5) for s in samples)
    late = [backoff_delay(20, base=5.0, cap=3600.0, rng=rng) for _ in range(200)]
    assert max(late) > 1800 and min(late) < 1800  # spread over the whole range


def test_retry_after_forms() -> None:
    now = time.time()
    assert parse_retry_after("120", now=now) == 120
    date = parse_retry_after(formatdate(now + 60, usegmt=True), now=now)
    assert date is not None and 58 <= date <= 61
    assert parse_retry_after(formatdate(now - 60, usegmt=True), now=now) == 0
    for bad in (None, "", "soon", "-5", "1.5", "\u00b2"):
        assert parse_retry_after(bad, now=now) is None


def hook(**kw: Any) -> Webhook:
    base: dict[str, Any] = {
        "id": 1,
        "url": "http://x",
        "description": "",
        "event_types": ["*"],
        "namespace": None,
        "model": None,
        "active": True,
        "disabled_reason": None,
        "failing_since": None,
        "previous_secret_expires_at": None,
        "since_event_id": 10,
        "created_by": "",
        "created_at": 0,
        "updated_at": 0,
    }
    return Webhook(**{**base, **kw})


def test_matching_rules() -> None:
    def m(h: Webhook, type_: str, ns: str = "default", subject: str = "default/m/1") -> bool:
        return matches(h, event_id=11, event_type=type_, namespace=ns, subject=subject)

    assert m(hook(), "version.created")
    assert not m(hook(), "webhook.disabled")  # "*" leaves out webhook admin events
    assert m(hook(event_types=["webhook.*"]), "webhook.disabled")
    assert not m(hook(event_types=["webhook.*"]), "webhook.test")  # addressed, never fanned out
    assert not matches(hook(), event_id=10, event_type="x.y", namespace="a", subject="b")
    assert m(hook(event_types=["version.*"]), "version.published")
    assert not m(hook(event_types=["version.*"]), "versions.x")
    assert not m(hook(event_types=["alias.moved"]), "alias.deleted")
    assert not m(hook(namespace="team"), "version.created")
    h = hook(namespace="default", model="m")
    assert m(h, "model.created", subject="default/m")
    assert m(h, "alias.moved", subject="default/m@prod")
    assert not m(h, "model.created", subject="default/mm")


def test_guard_checks_every_resolved_address() -> None:
    def resolver(addrs: list[str]) -> Any:
        def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addrs]

        return resolve

    public = DestinationGuard("", resolver=resolver(["93.184.215.14"]))
    dest = public.check("https://hooks.example.com/x?y=1")
    assert dest.addresses == ["93.184.215.14"] and dest.host_header == "hooks.example.com"
    rebinding = DestinationGuard("", resolver=resolver(["93.184.215.14", "127.0.0.1"]))
    with pytest.raises(DestinationRefused) as info:
        rebinding.check("https://hooks.example.com/x")
    assert info.value.details["addresses"] == ["127.0.0.1"]
    named = DestinationGuard("hooks.example.com", resolver=resolver(["10.1.2.3"]))
    assert named.check("http://hooks.example.com:8080/").host_header == "hooks.example.com:8080"
    cidr = DestinationGuard(" 10.0.0.0/8 , ", resolver=resolver(["10.1.2.3"]))
    assert cidr.check("http://internal/").addresses == ["10.1.2.3"]
    with pytest.raises(DestinationRefused):
        cidr.check("http://192.168.0.1/")

    def broken(*_: Any, **__: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror("no such host")

    with pytest.raises(DestinationRefused) as info:
        DestinationGuard("", resolver=broken).check("http://nowhere.invalid/")
    assert info.value.code == "WEBHOOK_URL_UNRESOLVABLE"


def claim(url: str) -> Claim:
    return Claim(
        delivery_id=5,
        webhook_id=1,
        event_id=9,
        attempt=1,
        url=url,
        secrets=[generate_secret()],
        body=BODY,
        worker="w",
    )


def test_sender_checks_the_destination_at_delivery_time() -> None:
    with receiver() as rec:
        refused = WebhookSender(DestinationGuard(""), timeout=2).send(claim(rec.url))
        assert refused.response_code is None and refused.error is not None
        assert refused.error.startswith("WEBHOOK_URL_REFUSED")
        assert rec.snapshot() == []
        sender = WebhookSender(DestinationGuard("127.0.0.1"), timeout=2)
        ok: AttemptOutcome = sender.send(claim(rec.url + "/in"))
        sender.close()
        assert ok.succeeded and rec.snapshot()[0].path == "/in"


def test_sender_connects_to_the_checked_ip_with_the_original_host() -> None:
    # "localhost" may resolve to ::1 too: both are allowed; the receiver listens
    # on 127.0.0.1 only, so a refused ::1 connection falls through to it.
    with receiver() as rec:
        port = rec.url.rsplit(":", 1)[1]
        sender = WebhookSender(DestinationGuard("127.0.0.1,::1"), timeout=2)
        out = sender.send(claim(f"http://localhost:{port}/h"))
        sender.close()
        assert out.succeeded, out
        got = rec.snapshot()[0]
        assert got.headers["host"] == f"localhost:{port}"
        assert got.headers["webhook-id"] == "msg_5"
        assert got.headers["content-type"] == "application/json"


def test_sender_reports_connection_failures_and_timeouts() -> None:
    with receiver() as rec:
        port = rec.url.rsplit(":", 1)[1]
    sender = WebhookSender(DestinationGuard("127.0.0.1"), timeout=0.5)
    out = sender.send(claim(f"http://127.0.0.1:{port}/"))
    assert out.response_code is None and out.error and "connect" in out.error

    def slow(*_: Any) -> tuple[int, dict[str, str], bytes]:
        time.sleep(2)
        return 200, {}, b""

    with receiver(slow) as rec:
        out = sender.send(claim(rec.url))
    sender.close()
    assert out.response_code is None and out.error and out.error.startswith("timeout")


def make_certs(root: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for ``localhost`` signed by it (openssl CLI)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=modelyard test CA",
    )
    run("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost")
    (root / "ext.cnf").write_text("subjectAltName=DNS:localhost\n")
    run(
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    )
    return root / "ca.pem", root / "leaf.pem", root / "leaf.key"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_https_checks_the_certificate_for_the_url_host_while_connecting_by_ip(
    tmp_path: Path,
) -> None:
    ca, cert, key = make_certs(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    guard = DestinationGuard("127.0.0.1,::1")
    with receiver(tls=tls) as rec:
        port = rec.url.rsplit(":", 1)[1]
        trusted = WebhookSender(guard, timeout=2, ca_bundle=ca)
        ok = trusted.send(claim(f"https://localhost:{port}/secure"))
        # By address, the certificate (for "localhost") does not match "127.0.0.1".
        wrong_name = trusted.send(claim(f"https://127.0.0.1:{port}/secure"))
        trusted.close()
        untrusted = WebhookSender(guard, timeout=2)
        unknown_ca = untrusted.send(claim(f"https://localhost:{port}/secure"))
        untrusted.close()
    assert ok.succeeded, ok
    assert rec.snapshot()[0].headers["host"] == f"localhost:{port}"
    assert wrong_name.response_code is None and "CERTIFICATE_VERIFY_FAILED" in str(wrong_name.error)
    assert unknown_ca.response_code is None and "CERTIFICATE_VERIFY_FAILED" in str(unknown_ca.error)


def test_an_attempt_has_one_deadline_even_against_a_trickling_endpoint() -> None:
    """Each byte comes well within the read timeout, but the whole answer would take
    about 8 s: the attempt is cut at the 1 s deadline instead of succeeding late."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    sender = WebhookSender(DestinationGuard("127.0.0.1"), timeout=1)
    try:
        out = sender.send(claim(f"http://127.0.0.1:{port}/"))
    finally:
        stop.set()
        sender.close()
        t.join(5)
        listener.close()
    assert out.response_code is None, out
    assert out.error == "timeout: no complete answer within 1 s"


@pytest.mark.parametrize(
    "host",
    [
        "[::127.0.0.1]",  # IPv4-compatible
        "[::ffff:127.0.0.1]",  # IPv4-mapped
        "[::ffff:0:7f00:1]",  # SIIT IPv4-translated
        "[64:ff9b::7f00:1]",  # NAT64 well-known prefix -> loopback
        "[64:ff9b::a9fe:a9fe]",  # NAT64 -> the cloud metadata service
        "[64:ff9b::a00:1]",  # NAT64 -> 10.0.0.1
        "[64:ff9b:1::808:808]",  # local-use NAT64: no fixed embedding, refused whole
        "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
        "[2002:a9fe:a9fe::1]",  # 6to4 of 169.254.169.254
        "[2001:0:7f00:1::]",  # Teredo with a loopback server
        "[2606:4700::5efe:7f00:1]",  # ISATAP interface identifier
        "[::1]",
    ],
)
def test_guard_judges_the_ipv4_inside_ipv6_forms(host: str) -> None:
    """Python calls most of these global; each leads to a refused IPv4 address."""
    with pytest.raises(DestinationRefused) as info:
        DestinationGuard("").check(f"http://{host}/hook")
    assert info.value.code == "WEBHOOK_URL_REFUSED"


def test_guard_judges_embedded_ipv4_in_resolved_answers_and_honours_the_allowlist() -> None:
    def aaaa(*_: Any, **__: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("64:ff9b::7f00:1", 80, 0, 0))]

    with pytest.raises(DestinationRefused):
        DestinationGuard("", resolver=aaaa).check("http://nat64.example/")
    # The admin's allowlist speaks IPv4: it covers the address inside too.
    allowed = DestinationGuard("127.0.0.1", resolver=aaaa).check("http://nat64.example/")
    assert allowed.addresses == ["64:ff9b::7f00:1"]


@pytest.mark.parametrize(
    "host", ["[64:ff9b::808:808]", "[2002:808:808::1]", "[2001:4860:4860::8888]", "8.8.8.8"]
)
def test_guard_keeps_public_ipv4_behind_ipv6_forms(host: str) -> None:
    assert DestinationGuard("").check(f"http://{host}/hook").scheme == "http"
