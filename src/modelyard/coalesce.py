"""uvicorn's httptools protocol, sending each small response in one write.

uvicorn writes a response's head when the app sends ``http.response.start``
and its body when the app sends ``http.response.body``: two ``send()`` calls,
two TCP segments, and on the client two reads, the second of which may have
to wait for the segment still in flight. For the registry's answers (a few
hundred bytes of JSON) that second system call and wake-up was a visible part
of the server's CPU: py-spy put 18% of a set-alias request's samples on those
two writes (issue 10's head-to-head), the one for the body the dearer.

:class:`CoalescingTransport` keeps the writes made during one turn of the
event loop and hands them to the real transport together at the end of that
turn (``call_soon``): a handler's head and body are sent in the same turn, so
they leave together. Large writes (a download's blocks) are not held: what is
buffered goes first, then the block, so order and back-pressure are the real
transport's.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HOLD_LIMIT: Final = 64 * 1024
"""Writes are held until this many bytes are waiting; beyond, they go at once."""


class CoalescingTransport:
    """A transport that sends the small writes of one loop turn together.

    Everything but :meth:`write`, :meth:`close` and :meth:`abort` is the
    wrapped transport's own.
    """

    __slots__ = ("_held", "_loop", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Hold ``data`` until the end of this loop turn, unless it is large."""
        if self._size + len(data) > HOLD_LIMIT:
            self.flush()
            self._transport.write(data)
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))
        self._size += len(data)

    def flush(self) -> None:
        """Send what is held, in one write."""
        if not self._held:
            return
        held, self._held, self._size = self._held, [], 0
        if not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        """Send what is held, then close (as a transport's ``close`` does)."""
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        """Close at once, dropping what is held (as ``abort`` does)."""
        self._held, self._size = [], 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        wrapped = CoalescingTransport(cast("asyncio.Transport", transport), self.loop)
        super().connection_made(cast("asyncio.Transport", wrapped))
