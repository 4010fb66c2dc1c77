"""Big downloads read straight from the socket into the writer's buffers.

httpx parses a response body in pure Python and hands it over in fresh 64 KiB
``bytes``, three copies per byte before it reaches the file; a large pull spent
more CPU there than on its SHA-256. ``http.client`` (the standard library's
HTTP/1.1, which urllib3 and requests build on) reads a ``Content-Length``
body with ``readinto``, so the bytes land once, in the page-aligned buffer
that is hashed and written from (``modelyard.hashio``): 1.0-1.2 GiB/s for a
pull here against 0.65-0.75 through httpx (``bench/transfer.py``).

Only the body of a file download takes this path, and only with the settings
httpx would have used: same base URL, headers, timeout and TLS verification,
no redirects. When an environment proxy applies, or a test hands the SDK its
own httpx transport, downloads stay on httpx.
"""

from __future__ import annotations

import http.client
import json
import urllib.request
from typing import Any

import httpx

from modelyard.client.errors import ServerError, error_from_response
from modelyard.client.transfer import Progress, read_into
from modelyard.hashio import HashingSink


class BodyFetcher:
    """GETs a path under the registry's base URL into a :class:`HashingSink`."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        url = httpx.URL(base_url)
        self._base = base_url.rstrip("/")
        self._https = url.scheme == "https"
        self._host = url.host
        self._port = url.port
        self._prefix = url.raw_path.decode("ascii").rstrip("/")
        self._headers = {**headers, "Accept-Encoding": "identity"}
        self._timeout = timeout

    @classmethod
    def for_url(cls, base_url: str, headers: dict[str, str], timeout: float) -> BodyFetcher | None:
        """A fetcher for ``base_url``, or None where httpx must carry the
        download (not http/https, or a proxy from the environment applies)."""
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            return None
        if url.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(url.host):
            return None
        return cls(base_url, headers, timeout)

    def fetch(self, path: str, sink: HashingSink, progress: Progress | None) -> None:
        """GET ``path`` (already quoted) and read its body into ``sink``.
        Error answers raise the typed SDK error; a broken connection raises
        ``UNREACHABLE`` (a short body also fails the caller's digest check)."""
        conn = self._connect()
        try:
            conn.request("GET", self._prefix + path, headers=self._headers)
            resp = conn.getresponse()
            if resp.status >= 400:
                raise error_from_response(resp.status, _json_or_none(resp.read()))
            if resp.status != 200:
                raise ServerError(f"HTTP {resp.status}", details={"status": resp.status})
            read_into(sink, resp.readinto, progress)
            if resp.length:
                # readinto reports a body cut short as a plain end of stream.
                raise http.client.IncompleteRead(b"", resp.length)
        except (OSError, http.client.HTTPException) as exc:
            raise ServerError(
                f"download from {self._base} interrupted: {exc!r}",
                code="UNREACHABLE",
                details={"url": self._base + path},
            ) from exc
        finally:
            conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=self._timeout,
                context=httpx.create_ssl_context(),
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
