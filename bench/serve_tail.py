"""Where the model server's latency tail comes from, measured without the noise
of a shared machine (issue 12: p99 under 10 ms at 16 connections).

``bench/serve.py`` measures p99 with wrk against a pinned server; on a loaded
machine that figure mostly measures the other processes on the core. This
builds the same application ``modelyard serve`` runs (an embedded registry,
the iris-like ONNX model of ``bench/serve.py``, the monitor, the watcher
thread and the metrics) in this process and drives its ASGI callable
directly with ``--concurrency`` requests in flight on one event loop, then
reports per request:

- the thread CPU time (``time.thread_time``): what the request cost the
  server's core, blind to preemption by other processes;
- each garbage collection during the run (generation, pause), from
  ``gc.callbacks``: the stop-the-world pauses every in-flight request waits
  out; and what one full collection costs after loading (what the next
  automatic one would).

With ``--concurrency 1`` the thread CPU time is each request's own; with
more in flight it includes the work of the requests it interleaved with.

Run once as the server runs by default (``gc.freeze()`` after loading), and
once with ``--no-freeze`` (the interpreter's defaults) to compare.

    .venv/bin/python bench/serve_tail.py [--requests 100000] [--concurrency 16] [--no-freeze]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import percentile

BODY = b'{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}'


def _build(tmp: Path, freeze: bool) -> Any:
    from serve import make_model

    from modelyard.client import Registry
    from modelyard.serving import heap
    from modelyard.serving.runner import ServeOptions, build

    model = tmp / "iris.onnx"
    make_model(model)
    registry = Registry(str(tmp / "registry"), cache_dir=tmp / "cache")
    registry.push("iris", [model], framework="onnx", format="onnx")
    registry.set_alias("iris/1", "production")
    options = ServeOptions(refs=["iris@production"], registry=str(tmp / "registry"), follow=False)
    app, _served, _reporter = build(options, registry)
    if freeze:
        heap.settle()
    return app, registry


async def _drive(app: Any, total: int, concurrency: int) -> tuple[list[float], list[float]]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v2/models/iris/infer",
        "headers": [(b"content-length", str(len(BODY)).encode())],
    }
    cpu: list[float] = []
    wall: list[float] = []
    remaining = total

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def worker() -> None:
        nonlocal remaining
        status: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await asyncio.sleep(0)  # a socket write yields to the loop

        while remaining > 0:
            remaining -= 1
            c0, w0 = time.thread_time(), time.perf_counter()
            await app(scope, receive, send)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
        assert set(status) == {200}, set(status)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--no-freeze", action="store_true", help="leave the collector as it is")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory(prefix="modelyard-tail-") as d:
        app, registry = _build(Path(d), not args.no_freeze)
        pauses: list[tuple[int, float]] = []
        started: list[float] = []

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started.append(time.perf_counter())
            elif started:
                pauses.append((info["generation"], time.perf_counter() - started.pop()))

        t0 = time.perf_counter()
        gc.collect()
        full_ms = (time.perf_counter() - t0) * 1000
        tracked = len(gc.get_objects())
        gc.callbacks.append(on_gc)
        app.on_startup()  # the watcher thread runs beside the requests, as in serve
        try:
            asyncio.run(_drive(app, 2_000, args.concurrency))  # warm-up
            pauses.clear()
            t0 = time.perf_counter()
            cpu, wall = asyncio.run(_drive(app, args.requests, args.concurrency))
            elapsed = time.perf_counter() - t0
        finally:
            app.on_shutdown()
            gc.callbacks.remove(on_gc)
            registry.close()
    print(f"gc: {'defaults' if args.no_freeze else 'frozen after load'}; objects it walks "
          f"after loading: {tracked:,}; one full collection then: {full_ms:.1f} ms")  # fmt: skip
    print(f"{args.requests:,} requests, {args.concurrency} in flight, one loop: "
          f"{args.requests / elapsed:,.0f} req/s in this process")  # fmt: skip
    print(f"{'per request':<24} {'p50':>9} {'p99':>9} {'p99.9':>9} {'max':>9}")
    for label, values in (("thread CPU time (ms)", cpu), ("wall, in process (ms)", wall)):
        figures = [percentile(values, q) * 1000 for q in (50, 99, 99.9)] + [max(values) * 1000]
        print(f"{label:<24} " + " ".join(f"{f:>9.3f}" for f in figures))
    for generation in (0, 1, 2):
        mine = [p for g, p in pauses if g == generation]
        if mine:
            p50, top = percentile(mine, 50) * 1000, max(mine) * 1000
            print(f"gc generation {generation}: {len(mine):>6} collections, "
                  f"p50 {p50:.3f} ms, max {top:.3f} ms")  # fmt: skip
        else:
            print(f"gc generation {generation}: {0:>6} collections")
    print(f"load average: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
