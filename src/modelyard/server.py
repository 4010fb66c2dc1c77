"""Run the HTTP server for ``modelyard server`` and ``make serve``.

One worker is one uvicorn process. With ``workers > 1`` the parent binds the
socket once and forks the workers, which all accept on it (pre-fork): the
settings object is inherited as it is, with no re-parsing in the children, and
each child builds its own app, engine and pools after the fork. Throughput on
2 cores measured 1,450 req/s with one worker and 2,530 with two (point reads,
wrk with 16 connections on the same machine).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

from modelyard.settings import Settings, is_loopback

__all__ = ["is_loopback", "run_server"]

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

log = logging.getLogger("modelyard.server")


def _announce(settings: Settings) -> None:
    base = f"http://{settings.host}:{settings.port}"
    print(
        f"modelyard serving {base}  (API docs {base}/docs, health {base}/health)\n"
        f"  database: {settings.database_url()}\n  blobs:    {settings.blob_store_url()}\n"
        f"  workers:  {settings.workers}",
        file=sys.stderr,
    )
    why = {"auto": "auto: ", "on": "", "off": ""}[settings.auth]
    if settings.auth_enabled():
        scope = "binding beyond loopback" if not is_loopback(settings.host) else "--auth on"
        print(f"  auth:     on ({why}{scope}); send Authorization: Bearer <token>", file=sys.stderr)
        return
    print(
        f"  auth:     OFF ({why}{'local default, loopback only' if why else '--auth off'})",
        file=sys.stderr,
    )
    print(
        f"WARNING: authentication is off: every request to {base} acts as an all-powerful "
        "'anonymous' user. Bind beyond loopback or pass --auth on to require API tokens.",
        file=sys.stderr,
        flush=True,
    )
    if not is_loopback(settings.host):
        log.warning(
            "binding beyond loopback without authentication: anyone who can reach %s can "
            "change the registry",
            base,
        )


def _uvicorn_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        # No ``server: uvicorn`` line: it tells a caller nothing it needs and
        # names the server's software to anyone scanning for it.
        server_header=False,
        timeout_graceful_shutdown=5,
    )


def _server(app: ASGIApp, settings: Settings) -> uvicorn.Server:
    """A uvicorn server that tells the app as soon as a shutdown begins.

    uvicorn waits for open responses before running the lifespan shutdown, so
    endless responses (the event stream) must learn of the shutdown earlier:
    the signal handler sets ``app.state.stopping`` and the streams end.
    """
    import uvicorn

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            stopping = getattr(getattr(app, "state", None), "stopping", None)
            if stopping is not None:
                stopping.set()
            super().handle_exit(sig, frame)

    return _Server(_uvicorn_config(app, settings))


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc() -> bool:
    """Keep glibc from mapping and unmapping memory for every large buffer.

    Receiving a body, uvloop and uvicorn allocate a fresh 64-320 KiB ``bytes``
    per read; a download sends 4 MiB blocks. Above glibc's default 128 KiB
    ``mmap`` threshold each is a new mapping whose pages fault in zeroed, and
    freeing it unmaps them again; glibc raises the threshold itself only once
    something larger has been freed, so a server's behaviour depended on what
    it happened to allocate at start-up. Measured on a 1 GiB upload: 1.0 s of
    system time in the server without this, 0.3 s with it. Allocations up to
    8 MiB now come from the heap, which keeps up to 16 MiB free before giving
    memory back. False (nothing changed) where the C library is not glibc.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, 8 << 20) and mallopt(_M_TRIM_THRESHOLD, 16 << 20))


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Import and build the app without the cyclic garbage collector.

    Start-up creates about 120,000 objects that live as long as the process
    (modules, FastAPI routes with their pydantic validators, SQLAlchemy
    tables and compiled statements) and almost no garbage: the collector ran
    ~290 times meanwhile, twice over everything, and collected ~1,000 objects.
    That was about a tenth of the CPU to the first ``/health`` (issue 9, cold
    start). What was built is then frozen, never to be scanned again, as the
    app's lifespan does with whatever exists when it starts.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        if enabled:
            gc.enable()


def run_server(settings: Settings) -> None:
    """Build the app(s) from ``settings`` and serve until SIGTERM / Ctrl-C."""
    tune_malloc()
    if settings.workers <= 1:
        with collector_paused():
            from modelyard.api.app import create_app

            app = create_app(settings)
        _announce(settings)
        _server(app, settings).run()
        return
    _run_prefork(settings)


def _run_prefork(settings: Settings) -> None:
    with collector_paused():
        from modelyard.api.app import bootstrap_admin, create_app
        from modelyard.composition import build_services

    # Migrate, create the default namespace and bootstrap the admin once,
    # before any worker starts (workers then find users and skip it).
    with build_services(settings) as services:
        if settings.auth_enabled():
            bootstrap_admin(services.identity, settings)
    sock = socket.create_server((settings.host, settings.port), backlog=2048)
    sock.set_inheritable(True)
    _announce(settings)
    children: dict[int, int] = {}
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            with collector_paused():
                app = create_app(settings)
            _server(app, settings).run(sockets=[sock])
            os._exit(0)
        children[pid] = slot

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(settings.workers):
        spawn(slot)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        slot = children.pop(pid)
        if not stopping:
            # A worker died (crash, OOM kill): replace it, briefly throttled.
            log.error("worker %d exited with status %d; restarting", pid, status)
            time.sleep(0.5)
            spawn(slot)
    sock.close()
