"""The SDK's presigned multipart upload sends parts in parallel (bounded by
``upload_concurrency``), reading the file once, in order, for its digest.

Against a real HTTP server on 127.0.0.1 standing in for the object store's
presigned part URLs: each PUT waits at a barrier for ``concurrency`` PUTs to be
in flight together, so a client sending one part at a time fails (the barrier
breaks after its timeout) instead of passing."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from modelyard.client.backends import RemoteBackend, _put_parts_in_parallel, _Slicer
from modelyard.domain.errors import StorageUnavailable

PART = 1000


@contextmanager
def part_store(
    together: int, fail: set[str] = frozenset()
) -> Iterator[tuple[str, dict[str, bytes]]]:  # type: ignore[assignment]
    """A PUT receiver: (base URL, received bodies by path)."""
    got: dict[str, bytes] = {}
    barrier = threading.Barrier(together, timeout=20)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            try:
                barrier.wait()
                status = 500 if self.path in fail else 200
            except threading.BrokenBarrierError:
                status = 599
            with lock:
                got[self.path] = body
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", got
    finally:
        server.shutdown()
        server.server_close()


def chunks_of(data: bytes, hasher: Any) -> Iterator[bytes]:
    for i in range(0, len(data), 300):  # chunk edges fall inside parts
        hasher.update(data[i : i + 300])
        yield data[i : i + 300]


def parts_for(base: str, size: int) -> list[dict[str, Any]]:
    return [
        {"number": n, "offset": off, "size": min(PART, size - off), "url": f"{base}/p{n}"}
        for n, off in enumerate(range(0, size, PART), start=1)
    ]


def test_parts_go_up_together_and_the_file_is_read_once_in_order() -> None:
    data = os.urandom(6 * PART - 17)
    hasher = hashlib.sha256()
    with part_store(together=3) as (base, got), httpx.Client(timeout=30) as client:
        slicer = _Slicer(chunks_of(data, hasher))
        _put_parts_in_parallel(client, parts_for(base, len(data)), slicer, 3)
        slicer.drain()
    assert b"".join(got[f"/p{n}"] for n in range(1, 7)) == data
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_refused_part_fails_the_upload() -> None:
    data = os.urandom(4 * PART)
    with (
        part_store(together=2, fail=frozenset({"/p2"})) as (base, _),
        httpx.Client(timeout=30) as client,
        pytest.raises(StorageUnavailable) as caught,
    ):
        slicer = _Slicer(chunks_of(data, hashlib.sha256()))
        _put_parts_in_parallel(client, parts_for(base, len(data)), slicer, 2)
    assert caught.value.details["status"] == 500


def test_upload_concurrency_is_bounded() -> None:
    for bad in (0, 65):
        with pytest.raises(ValueError):
            RemoteBackend("http://127.0.0.1:1", upload_concurrency=bad)
