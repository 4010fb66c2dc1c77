"""The SDK's direct download path (``client/rawhttp.py``) against real servers."""

from __future__ import annotations

import os
import socket
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
    keeps the request it read."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.request = b""
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
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


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[HashingSink]:
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    s = HashingSink(fd, pipelined=False)
    yield s
    os.close(fd)


def test_error_answers_raise_the_typed_error(live_server: str, sink: HashingSink) -> None:
    fetcher = BodyFetcher.for_url(live_server, {}, 10.0)
    assert fetcher is not None
    with pytest.raises(NotFound) as info:
        fetcher.fetch("/api/v1/models/default/nope/versions/1/files/x.bin", sink, None)
    assert info.value.code == "MODEL_NOT_FOUND"


def test_a_short_body_is_an_interrupted_download(sink: HashingSink) -> None:
    server = OneShotServer(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    try:
        fetcher = BodyFetcher.for_url(server.url, {}, 10.0)
        assert fetcher is not None
        with pytest.raises(ServerError) as info:
            fetcher.fetch("/f", sink, None)
        assert info.value.code == "UNREACHABLE"
    finally:
        server.close()


def test_base_path_headers_and_no_redirects(sink: HashingSink) -> None:
    redirect = b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
    server = OneShotServer(redirect)
    try:
        auth = {"Authorization": "Bearer t"}
        fetcher = BodyFetcher.for_url(server.url + "/registry/", auth, 10.0)
        assert fetcher is not None
        with pytest.raises(ServerError) as info:
            fetcher.fetch("/api/v1/x", sink, None)
        assert info.value.details == {"status": 302}
    finally:
        server.close()
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
