"""The write path on SQLite: only transaction steps are batched under the writer lock.

A real uvicorn server runs the app in a thread of this process (so the test
can reach the app's objects, e.g. the webhook guard's resolver), on a real
SQLite file; requests go over HTTP on 127.0.0.1. Assertions are on order and
completion, never on durations.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from modelyard.api.app import create_app
from modelyard.settings import Settings
from modelyard.store.metadata.engine import writer_lock_for
from tests.conftest_server import free_port

HELD_FOR = 10.0
"""How long a blocked step waits before giving up on its own (a failing run)."""


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port in a thread; stop it afterwards."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "server did not start"
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


def app_on(tmp_path: Path) -> FastAPI:
    return create_app(
        Settings(data_dir=tmp_path / "data", dispatcher=False, webhook_allow="hooks.example.com")
    )


def test_slow_webhook_dns_does_not_hold_up_version_creates(tmp_path: Path) -> None:
    """A webhook create resolves its URL in its prepare step, off the event loop
    and outside the writer lock: while that lookup hangs, other requests'
    version creates are served and committed."""
    app = app_on(tmp_path)
    entered, release = threading.Event(), threading.Event()

    def slow_resolver(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        entered.set()
        release.wait(HELD_FOR)  # a DNS server taking its time
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))]

    app.state.webhooks.guard.resolver = slow_resolver
    with (
        serving(app) as url,
        httpx.Client(base_url=url, timeout=60) as c,
        httpx.Client(base_url=url, timeout=60) as hook_client,
        ThreadPoolExecutor(1) as pool,
    ):
        assert c.post("/api/v1/models", json={"name": "m"}).status_code == 201
        hook = pool.submit(
            hook_client.post, "/api/v1/webhooks", json={"url": "http://hooks.example.com/in"}
        )
        assert entered.wait(HELD_FOR), "the webhook create never resolved its URL"
        numbers = []
        for i in range(8):
            r = c.post("/api/v1/models/default/m/versions", json={"tags": {"i": str(i)}})
            assert r.status_code == 201, r.text
            numbers.append(r.json()["version"])
        # Every create committed while the webhook create still waits on DNS.
        assert not hook.done()
        assert not release.is_set()
        release.set()
        created = hook.result(timeout=60)
        assert created.status_code == 201, created.text
        assert numbers == list(range(1, 9))
        assert [h["url"] for h in c.get("/api/v1/webhooks").json()["webhooks"]] == [
            "http://hooks.example.com/in"
        ]


def test_read_only_posts_do_not_take_the_writer_lock(tmp_path: Path) -> None:
    """``POST /blobs/missing`` and a search by POST answer while another
    process holds the database's writer lock (a second lock on the same file,
    as another server worker would hold it)."""
    app = app_on(tmp_path)
    other_process = writer_lock_for(app.state.registry.db.engine)
    assert other_process is not None
    digest = "ab" * 32
    with serving(app) as url, httpx.Client(base_url=url, timeout=HELD_FOR) as c:
        assert c.post("/api/v1/models", json={"name": "m"}).status_code == 201
        with other_process.hold():
            missing = c.post("/api/v1/blobs/missing", json={"digests": [digest]})
            found = c.post("/api/v1/search/versions", json={"filter": "name = 'm'"})
        assert missing.status_code == 200, missing.text
        assert missing.json() == {"missing": [digest]}
        assert found.status_code == 200, found.text
        # Writes still take it, and work once it is free.
        assert c.post("/api/v1/models/default/m/versions", json={}).status_code == 201


def test_concurrent_searches_are_bounded_by_the_connection_pool(tmp_path: Path) -> None:
    """Searches run in worker threads, each holding a pooled connection: no
    more of them run at once than the pool holds (the rest queue), so a burst
    of searches neither opens overflow connections nor crowds the GIL."""
    app = create_app(Settings(data_dir=tmp_path / "data", dispatcher=False, db_pool_size=2))
    registry = app.state.registry
    # The GET route's search (its versions rendered, from the page cache).
    search = registry.search_versions_rendered
    lock = threading.Lock()
    running, most = [0], [0]
    two_in, release = threading.Event(), threading.Event()

    def held_search(*args: Any, **kwargs: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            if running[0] >= 2:
                two_in.set()
        try:
            release.wait(HELD_FOR)  # a slow search, until the test lets go
            return search(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    registry.search_versions_rendered = held_search
    with serving(app) as url, ThreadPoolExecutor(6) as pool:
        with httpx.Client(base_url=url, timeout=60) as c:
            assert c.post("/api/v1/models", json={"name": "m"}).status_code == 201

        def one() -> int:
            with httpx.Client(base_url=url, timeout=60) as c:
                return c.get("/api/v1/search/versions", params={"page_size": 5}).status_code

        answers = [pool.submit(one) for _ in range(6)]
        assert two_in.wait(HELD_FOR)
        # Four more are in flight; none may start while two hold the pool.
        threading.Event().wait(0.5)
        assert most[0] == 2
        release.set()
        assert [a.result() for a in answers] == [200] * 6
    assert most[0] == 2
