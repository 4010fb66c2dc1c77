"""The SDK's direct download path (``client/rawhttp.py``) against real servers."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.client.errors import ServerError
from modelyard.client.rawhttp import BodyFetcher
from modelyard.domain.errors import NotFound
from modelyard.hashio import HashingSink


class OneShotServer:
    """Answers one HTTP request on 127.0.0.1 with canned bytes, then closes;
    keeps the request it read. With ``tls``, speaks HTTPS with that context."""

    def __init__(self, answer: bytes, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.request = b""
        self.tls = tls
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                conn.close()  # the client refused our certificate
                return
        with conn:
            while b"\r\n\r\n" not in self.request:
                data = conn.recv(65536)
                if not data:
                    break
                self.request += data
            conn.sendall(self.answer)

    def close(self) -> None:
        self.thread.join(timeout=10)
        self.sock.close()


@contextlib.contextmanager
def one_shot(answer: bytes, tls: ssl.SSLContext | None = None) -> Iterator[OneShotServer]:
    server = OneShotServer(answer, tls)
    try:
        yield server
    finally:
        server.close()


def fetcher_for(url: str, headers: dict[str, str] | None = None) -> BodyFetcher:
    fetcher = BodyFetcher.for_url(url, headers or {}, 10.0)
    assert fetcher is not None
    return fetcher


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[HashingSink]:
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    s = HashingSink(fd, pipelined=False)
    yield s
    os.close(fd)


def test_error_answers_raise_the_typed_error(live_server: str, sink: HashingSink) -> None:
    missing = "/api/v1/models/default/nope/versions/1/files/x.bin"
    with pytest.raises(NotFound) as info:
        fetcher_for(live_server).fetch(missing, sink, None)
    assert info.value.code == "MODEL_NOT_FOUND"


def test_a_short_body_is_an_interrupted_download(sink: HashingSink) -> None:
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10
    with one_shot(short) as server, pytest.raises(ServerError) as info:
        fetcher_for(server.url).fetch("/f", sink, None)
    assert info.value.code == "UNREACHABLE"


def test_base_path_headers_and_no_redirects(sink: HashingSink) -> None:
    redirect = b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
    with one_shot(redirect) as server, pytest.raises(ServerError) as info:
        auth = {"Authorization": "Bearer t"}
        fetcher_for(server.url + "/registry/", auth).fetch("/api/v1/x", sink, None)
    assert info.value.details == {"status": 302}
    head = server.request.decode("latin-1")
    assert head.startswith("GET /registry/api/v1/x HTTP/1.1\r\n")
    assert "Authorization: Bearer t\r\n" in head
    assert "Accept-Encoding: identity\r\n" in head


def test_an_environment_proxy_keeps_downloads_on_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert BodyFetcher.for_url("http://registry.invalid:8080", {}, 10.0) is None
    monkeypatch.setenv("no_proxy", "registry.invalid")
    assert BodyFetcher.for_url("http://registry.invalid:8080", {}, 10.0) is not None
    assert BodyFetcher.for_url("ftp://registry.invalid", {}, 10.0) is None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_downloads_verify_the_certificate(
    tmp_path: Path, sink: HashingSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS is verified as httpx would (``SSL_CERT_FILE`` honoured): an unknown
    certificate is refused, a trusted one works."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_cert = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
    san = "subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [*make_cert.split(), "-addext", san, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

    with one_shot(answer, tls) as server, pytest.raises(ServerError) as info:
        fetcher_for(server.url).fetch("/f", sink, None)
    assert info.value.code == "UNREACHABLE"
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.message

    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with one_shot(answer, tls) as server:
        fetcher_for(server.url).fetch("/f", sink, None)
    assert sink.size == 5
