"""A real HTTP webhook receiver on 127.0.0.1 for the tests, and a poll-until helper."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int] = ("", 0)
    """The sender's address and port (which process sent it, when that matters)."""

    @property
    def json(self) -> Any:
        return json.loads(self.body)


# A reply: (status, headers, body). A callable gets the request and its index.
Reply = tuple[int, dict[str, str], bytes]
Script = Callable[[Received, int], Reply]


def ok(_: Received, __: int) -> Reply:
    return 200, {}, b"ok"


@dataclass
class Receiver:
    """Records every request; answers per ``script``."""

    script: Script = ok
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.requests)


def wait_for(predicate: Callable[[], T], *, timeout: float = 30.0, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


@contextmanager
def receiver(
    script: Script = ok, *, port: int = 0, tls: ssl.SSLContext | None = None
) -> Iterator[Receiver]:
    """Run a threaded HTTP(S) server on 127.0.0.1 until the block ends."""
    rec = Receiver(script)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            got = Received(
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                b"",
                (str(self.client_address[0]), int(self.client_address[1])),
            )
            got.body = self.rfile.read(length)
            if len(got.body) < length:
                # The sender died between the headers and the end of the body
                # (kill -9 mid-delivery): no real receiver would act on half a
                # request, so it is not recorded.
                self.close_connection = True
                return
            with rec.lock:
                index = len(rec.requests)
                rec.requests.append(got)
            status, headers, body = rec.script(got, index)
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the sender gave up (timeout) or died

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    rec.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
