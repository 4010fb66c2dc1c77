"""Events and webhooks against real server processes: SSE resume, SDK, CLI, kill -9,
two processes on one PostgreSQL database, clean shutdown of open streams."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.domain.webhooks import DestinationRefused
from modelyard.webhooks import verify
from tests.conftest_server import start_server, stop_server
from tests.pgcluster import fresh_database
from tests.receiver import Received, Reply, receiver, wait_for

ENV = {
    "MODELYARD_WEBHOOK_ALLOW": "127.0.0.1",
    "MODELYARD_DISPATCHER_INTERVAL": "0.05",
    "MODELYARD_WEBHOOK_RETRY_BASE": "0.1",
    "MODELYARD_WEBHOOK_RETRY_CAP": "0.5",
    "MODELYARD_WEBHOOK_TIMEOUT": "1",
    "MODELYARD_WEBHOOK_LEASE": "2.5",
    "MODELYARD_EVENTS_POLL_INTERVAL": "0.05",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_server(tmp_path_factory.mktemp("events-server"), extra_env=ENV)
    try:
        yield url
    finally:
        stop_server(proc)


def read_sse(
    url: str, *, n: int, headers: dict[str, str] | None = None, **params: Any
) -> list[dict[str, Any]]:
    """Read ``n`` events from the stream, then disconnect."""
    got: list[dict[str, Any]] = []
    with httpx.stream(
        "GET", f"{url}/api/v1/events/stream", params=params, headers=headers or {}, timeout=30
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        ev_id = None
        for line in resp.iter_lines():
            if line.startswith("id:"):
                ev_id = int(line[3:])
            elif line.startswith("data:"):
                ev = json.loads(line[5:])
                assert ev["id"] == ev_id
                got.append(ev)
                if len(got) == n:
                    break
    return got


def test_sse_resumes_with_last_event_id_without_gaps_or_duplicates(server: str) -> None:
    reg = Registry(server)
    name = "sse" + os.urandom(3).hex()
    start = reg.list_events(after=0, limit=1000)
    after = start[-1].id if start else 0
    for i in range(4):
        reg.create_model(f"{name}{i}")
    first = read_sse(server, n=3, after=after, types="model.created")
    for i in range(4, 7):
        reg.create_model(f"{name}{i}")
    rest = read_sse(
        server, n=4, headers={"Last-Event-ID": str(first[-1]["id"])}, types="model.created"
    )
    names = [e["payload"]["name"] for e in first + rest]
    assert names == [f"{name}{i}" for i in range(7)]
    expected = [e.id for e in reg.list_events(after=after, limit=1000, types=["model.created"])]
    assert [e["id"] for e in first + rest] == expected
    r = httpx.get(f"{server}/api/v1/events/stream", headers={"Last-Event-ID": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_CURSOR"
    reg.close()


def test_sdk_watch_remote_and_embedded(server: str, tmp_path: Path) -> None:
    for reg in (Registry(server), Registry(tmp_path / "embedded")):
        name = "w" + os.urandom(3).hex()
        before = reg.list_events(after=0, limit=1000)
        after = before[-1].id if before else 0
        reg.create_model(name)
        reg.update_model(name, description="d")
        seen = list(reg.watch(after=after, model=name, idle_timeout=0.5))
        assert [(e.type, e.subject) for e in seen] == [
            ("model.created", f"default/{name}"),
            ("model.updated", f"default/{name}"),
        ]
        # Resuming from the last seen id gives only what came later.
        reg.update_model(name, description="e")
        later = list(reg.watch(after=seen[-1].id, model=name, idle_timeout=0.5))
        assert [e.payload["after"]["description"] for e in later] == ["e"]
        reg.close()


def test_sdk_webhook_crud_embedded(tmp_path: Path) -> None:
    """The embedded SDK reaches the same service: deliveries queue for a server."""
    reg = Registry(tmp_path / "emb")
    hook = reg.create_webhook("http://93.184.215.14/in", event_types=["model.*"])
    assert hook.secret and hook.secret.startswith("whsec_")
    assert [h.id for h in reg.list_webhooks()] == [hook.id]
    assert reg.get_webhook(hook.id).secret is None
    reg.create_model("m")
    assert reg.update_webhook(hook.id, model="m").model == "m"
    rotated = reg.rotate_webhook_secret(hook.id, overlap_seconds=0)
    assert rotated.secret not in (None, hook.secret)
    test = reg.test_webhook(hook.id)
    assert test.status == "pending" and test.event_type == "webhook.test"
    assert [d.id for d in reg.webhook_deliveries(hook.id)] == [test.id]
    assert reg.redeliver(hook.id, test.id).status == "pending"
    with pytest.raises(DestinationRefused):
        reg.create_webhook("http://127.0.0.1/")
    reg.delete_webhook(hook.id)
    assert reg.list_webhooks() == []
    reg.close()


def test_done_when_scenario_with_sdk_and_cli(server: str, tmp_path: Path) -> None:
    """Register a webhook, push, verify the signed delivery; stop the receiver, push
    again, restart it: the retried event arrives; `webhooks deliveries` shows it all."""
    runner = CliRunner()
    env = {"MODELYARD_URL": server}
    name = "dw" + os.urandom(3).hex()
    src = tmp_path / "model"
    src.mkdir()
    (src / "w.bin").write_bytes(b"weights")
    with receiver() as rec:
        port = int(rec.url.rsplit(":", 1)[1])
        r = runner.invoke(
            app,
            [
                "webhooks",
                "create",
                rec.url + "/in",
                "-e",
                "version.created",
                "--model",
                name,
                "--json",
            ],
            env=env,
        )
        assert r.exit_code == 0, r.output
        hook = json.loads(r.stdout)
        secret = hook["secret"]
        r = runner.invoke(app, ["push", name, str(src), "--json"], env=env)
        assert r.exit_code == 0, r.output
        req = wait_for(lambda: rec.snapshot())[0]
        assert verify(req.headers, req.body, secret)["data"]["version"] == 1
    # The receiver is down: the next push's delivery fails and is retried.
    reg = Registry(server)
    reg.push(name, src)

    def second_failed() -> bool:
        ds = list(reg.webhook_deliveries(hook["id"]))  # newest first
        return len(ds) == 2 and bool(ds[0].attempts) and ds[0].attempts[0]["status"] == "failed"

    wait_for(second_failed, what="a failed attempt")

    with receiver(port=port) as rec:
        req = wait_for(lambda: rec.snapshot())[0]
        body = verify(req.headers, req.body, secret)
        assert body["data"]["version"] == 2
        wait_for(lambda: all(d.status == "succeeded" for d in reg.webhook_deliveries(hook["id"])))
    r = runner.invoke(app, ["webhooks", "deliveries", str(hook["id"])], env=env)
    assert r.exit_code == 0, r.output
    assert "version.created" in r.stdout and "succeeded" in r.stdout
    assert "connect error" in r.stdout  # the failed attempts, with their error
    r = runner.invoke(app, ["webhooks", "deliveries", str(hook["id"]), "--json"], env=env)
    deliveries = json.loads(r.stdout)
    assert [d["status"] for d in deliveries] == ["succeeded", "succeeded"]
    retried = deliveries[0]["attempts"]
    assert retried[0]["status"] == "failed" and retried[-1]["status"] == "succeeded"
    assert retried[-1]["response_code"] == 200
    # The rest of the CLI surface, briefly.
    r = runner.invoke(app, ["webhooks", "list"], env=env)
    assert r.exit_code == 0 and f"{name}" in r.stdout
    r = runner.invoke(app, ["webhooks", "show", str(hook["id"])], env=env)
    assert r.exit_code == 0 and "secret" not in r.stdout
    r = runner.invoke(app, ["webhooks", "update", str(hook["id"]), "--inactive"], env=env)
    assert r.exit_code == 0 and "disabled" in r.stdout
    r = runner.invoke(app, ["webhooks", "test", str(hook["id"])], env=env)
    assert r.exit_code == 1 and "WEBHOOK_DISABLED" in r.stderr
    r = runner.invoke(app, ["webhooks", "update", str(hook["id"]), "--active"], env=env)
    assert r.exit_code == 0
    r = runner.invoke(app, ["webhooks", "rotate-secret", str(hook["id"]), "--json"], env=env)
    assert json.loads(r.stdout)["secret"] != secret
    r = runner.invoke(
        app, ["webhooks", "redeliver", str(hook["id"]), str(deliveries[0]["id"])], env=env
    )
    assert r.exit_code == 0 and "queued again" in r.stdout
    r = runner.invoke(app, ["events", "--model", name, "-e", "version.*", "--json"], env=env)
    assert [e["type"] for e in json.loads(r.stdout)] == ["version.created"] * 2
    r = runner.invoke(
        app, ["events", "--model", name, "--follow", "--after", "0", "--idle-timeout", "1"], env=env
    )
    assert r.exit_code == 0 and r.stdout.count("version.created") == 2
    r = runner.invoke(app, ["webhooks", "create", "http://10.0.0.1/"], env=env)
    assert r.exit_code == 1 and "WEBHOOK_URL_REFUSED" in r.stderr
    with pytest.raises(DestinationRefused):
        reg.create_webhook("http://169.254.169.254/")
    r = runner.invoke(app, ["webhooks", "delete", str(hook["id"])], env=env)
    assert r.exit_code == 0
    reg.close()


def test_kill_9_mid_delivery_then_restart_delivers_every_event(tmp_path: Path) -> None:
    hung = threading.Event()
    release = threading.Event()

    def hang_first(_: Received, i: int) -> Reply:
        if i == 0:
            hung.set()
            release.wait(30)
        return 200, {}, b""

    data = tmp_path / "data"
    with receiver(hang_first) as rec:
        proc, url = start_server(data, extra_env=ENV)
        try:
            reg = Registry(url)
            hook = reg.create_webhook(rec.url, event_types=["model.created"])
            for i in range(6):
                reg.create_model(f"k{i}")
            committed = [e.id for e in reg.list_events(types=["model.created"])]
            reg.close()
            wait_for(hung.is_set, what="the first delivery in flight")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            stop_server(proc)
            release.set()
        hung_id = rec.snapshot()[0].headers["webhook-id"]
        proc, url = start_server(data, extra_env=ENV)
        try:
            reg = Registry(url)

            def all_acked() -> bool:
                ds = list(reg.webhook_deliveries(hook.id))
                return len(ds) == len(committed) and all(d.status == "succeeded" for d in ds)

            wait_for(all_acked, what="every delivery after the restart")
            got = rec.snapshot()
            assert sorted({r.json["id"] for r in got}) == committed
            # Ids are stable: one webhook-id per event, including the interrupted one.
            by_event: dict[int, set[str]] = {}
            for r in got:
                by_event.setdefault(r.json["id"], set()).add(r.headers["webhook-id"])
            assert all(len(ids) == 1 for ids in by_event.values())
            assert sum(1 for r in got if r.headers["webhook-id"] == hung_id) >= 2
            reg.close()
        finally:
            stop_server(proc)


@pytest.mark.postgres
def test_two_processes_on_postgres_send_each_delivery_once(tmp_path: Path, pg_url: str) -> None:
    with fresh_database(pg_url) as db, receiver() as rec:
        servers = [
            start_server(tmp_path / f"s{i}", extra_env=ENV, args=("--db", db)) for i in range(2)
        ]
        try:
            regs = [Registry(url) for _, url in servers]
            hook = regs[0].create_webhook(rec.url, event_types=["model.created"])
            n = 30
            for i in range(n):
                regs[i % 2].create_model(f"p{i}")

            def done() -> list[Any]:
                ds = list(regs[1].webhook_deliveries(hook.id))
                ok = len(ds) == n and all(d.status == "succeeded" for d in ds)
                return ds if ok else []

            ds = wait_for(done, what="all deliveries")
            assert all(len(d.attempts) == 1 for d in ds)
            got = rec.snapshot()
            assert len(got) == n
            assert len({r.headers["webhook-id"] for r in got}) == n
            for r in regs:
                r.close()
        finally:
            for proc, _ in servers:
                stop_server(proc)


def test_open_streams_end_cleanly_on_shutdown(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, url = start_server(data, extra_env=ENV)
    ended = threading.Event()
    lines: list[str] = []

    def follow() -> None:
        try:
            with httpx.stream("GET", f"{url}/api/v1/events/stream?after=0", timeout=30) as r:
                for line in r.iter_lines():
                    lines.append(line)
        except httpx.HTTPError:
            pass
        ended.set()

    t = threading.Thread(target=follow)
    t.start()
    try:
        wait_for(lambda: any(line.startswith("data:") for line in lines), what="stream")
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the SIGTERM it handled once it has shut down.
        assert proc.wait(20) in (0, -signal.SIGTERM)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    finally:
        stop_server(proc)
    t.join(10)
    assert ended.is_set()
    log = (data / "server.log").read_text()
    assert "Application shutdown complete" in log
    assert "graceful shutdown exceeded" not in log and "Traceback" not in log


def test_one_shared_poller_feeds_every_open_stream(tmp_path: Path) -> None:
    """Issue 9: N open streams, one outbox reader. Every read of the outbox
    while the streams are open is the hub's, and each stream still gets exactly
    the events its filter (and resume position) selects."""
    import socket
    import time

    import sqlalchemy as sa
    import uvicorn

    from modelyard.api.app import create_app
    from modelyard.settings import Settings

    settings = Settings(data_dir=tmp_path, auth="off", dispatcher=False, events_poll_interval=0.05)
    app = create_app(settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: server.started, what="server start")
    reads: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if "FROM events" in statement:
            reads.append(statement)

    engine = app.state.registry.db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        c = httpx.Client(base_url=url, timeout=30)
        assert c.post("/api/v1/namespaces", json={"name": "other"}).status_code == 201
        c.post("/api/v1/models", json={"name": "old"})
        filters: dict[str, dict[str, Any]] = {
            "all": {},
            "created": {"types": "model.created"},
            "other": {"namespace": "other"},
            "m1": {"model": "default/m1"},
            "resumed": {"after": 0, "types": "model.*"},
        }
        got: dict[str, list[dict[str, Any]]] = {k: [] for k in filters}
        opened = {k: threading.Event() for k in filters}
        done = threading.Event()

        def follow(key: str) -> None:
            with httpx.stream(
                "GET", f"{url}/api/v1/events/stream", params=filters[key], timeout=30
            ) as resp:
                for line in resp.iter_lines():
                    opened[key].set()
                    if line.startswith("data:"):
                        got[key].append(json.loads(line[5:]))
                    if done.is_set():
                        return

        threads = [threading.Thread(target=follow, args=(k,), daemon=True) for k in filters]
        for t in threads:
            t.start()
        for e in opened.values():
            assert e.wait(30)
        wait_for(lambda: len(got["resumed"]) == 1, what="catch-up of the resumed stream")
        hub = app.state.event_hub
        reads.clear()
        polls = hub.reads
        c.post("/api/v1/models", json={"name": "m1"})
        c.post("/api/v1/models", json={"name": "m2", "namespace": "other"})
        c.patch("/api/v1/models/default/m1", json={"description": "d"})
        c.post("/api/v1/models", json={"name": "m3"})
        wait_for(lambda: len(got["all"]) == 4 and len(got["resumed"]) == 5, what="events")
        time.sleep(0.5)  # idle streams: only the hub polls
        polled = hub.reads - polls
        assert polled > 0
        assert len(reads) == polled, reads[:5]
        done.set()
        c.post("/api/v1/models", json={"name": "wake"})  # lets the readers see `done`
        for t in threads:
            t.join(10)

        def seen(key: str) -> list[tuple[str, str]]:
            return [(e["type"], e["subject"]) for e in got[key] if e["subject"] != "default/wake"]

        assert seen("all") == [
            ("model.created", "default/m1"),
            ("model.created", "other/m2"),
            ("model.updated", "default/m1"),
            ("model.created", "default/m3"),
        ]
        assert seen("created") == [s for s in seen("all") if s[0] == "model.created"]
        assert seen("other") == [("model.created", "other/m2")]
        assert seen("m1") == [("model.created", "default/m1"), ("model.updated", "default/m1")]
        assert seen("resumed") == [("model.created", "default/old"), *seen("all")]
        ids = [e["id"] for e in got["resumed"]]
        assert ids == sorted(set(ids))
        c.close()
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
        server.should_exit = True
        thread.join(15)
