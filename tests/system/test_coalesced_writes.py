"""The server's transport sends a response's head and body in one write
(``modelyard/coalesce.py``), keeps their order, and holds nothing large.

The transport under the wrapper is a recording one (what asyncio hands a
protocol); the live server's own answers go through the wrapper in every
HTTP test of the suite, and this file also checks one on the wire."""

from __future__ import annotations

import asyncio
import socket
from typing import Any
from urllib.parse import urlsplit

from modelyard.coalesce import HOLD_LIMIT, CoalescingTransport


class Recording:
    """The parts of an asyncio transport the wrapper calls, recorded."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def run(body: Any) -> None:
    asyncio.run(body())


def test_the_writes_of_one_loop_turn_leave_as_one() -> None:
    async def body() -> None:
        raw = Recording()
        tr = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        tr.write(b"HTTP/1.1 200 OK\r\n\r\n")
        tr.write(b'{"a": 1}')
        assert raw.writes == []  # held until the turn ends
        await asyncio.sleep(0)
        assert raw.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"a": 1}']
        tr.write(b"next")
        await asyncio.sleep(0)
        assert raw.writes[1:] == [b"next"]
        # Not the wrapper's: asked of the transport it wraps.
        assert tr.get_extra_info("peername") == ("127.0.0.1", 1)

    run(body)


def test_a_large_write_goes_at_once_after_what_was_held() -> None:
    async def body() -> None:
        raw = Recording()
        tr = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        block = b"x" * HOLD_LIMIT
        tr.write(b"head")
        tr.write(block)
        assert raw.writes == [b"head", block]  # in order, nothing waits for the turn
        await asyncio.sleep(0)
        assert raw.writes == [b"head", block]

    run(body)


def test_close_sends_what_is_held_and_abort_drops_it() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        raw = Recording()
        tr = CoalescingTransport(raw, loop)  # type: ignore[arg-type]
        tr.write(b"last words")
        tr.close()
        assert raw.writes == [b"last words"] and raw.closed
        await asyncio.sleep(0)  # the scheduled flush finds nothing left
        assert raw.writes == [b"last words"]

        raw = Recording()
        tr = CoalescingTransport(raw, loop)  # type: ignore[arg-type]
        tr.write(b"never sent")
        tr.abort()
        await asyncio.sleep(0)
        assert raw.writes == [] and raw.aborted

        raw = Recording()
        tr = CoalescingTransport(raw, loop)  # type: ignore[arg-type]
        tr.write(b"peer went away")
        raw.closed = True  # closed under the wrapper (the peer reset)
        await asyncio.sleep(0)
        assert raw.writes == []

    run(body)


def test_the_live_server_answers_in_one_segment(live_server: str) -> None:
    """The first ``recv`` of each answer returns its head and its whole body.
    Sent in two writes, the client may wake on the head's segment alone:
    before this change 22 of 200 first reads here returned only the head."""
    url = urlsplit(live_server)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(200):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            first = sock.recv(65536)
            head, _, rest = first.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            assert len(rest) == length, (head, rest)
