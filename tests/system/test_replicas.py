"""Two ``modelyard server`` processes on one PostgreSQL database and one blob
directory behave as one registry (issue 13, "Many replicas").

One pair of replicas serves the module (auth on, one admin token); a replica
a kill -9 test took down is started again before the next test. Every test
works on models of its own, so their order does not matter. The last test
runs the main promises again on an S3 store (moto over HTTP) with a pair of
its own.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from modelyard.store.blobs.local import LocalBlobStore
from tests.conftest_server import start_server, stop_server
from tests.helpers import verified_upload
from tests.pgcluster import fresh_database
from tests.receiver import Received, Reply, receiver, wait_for
from tests.s3server import S3Server

pytestmark = pytest.mark.postgres

ADMIN_TOKEN = "myd-replicas-admin-" + "x" * 24

ENV = {
    "MODELYARD_ADMIN_TOKEN": ADMIN_TOKEN,
    "MODELYARD_WEBHOOK_ALLOW": "127.0.0.1",
    "MODELYARD_DISPATCHER_INTERVAL": "0.05",
    "MODELYARD_WEBHOOK_RETRY_BASE": "0.1",
    "MODELYARD_WEBHOOK_RETRY_CAP": "0.5",
    # A held delivery must outlast the moment the test needs to kill its sender.
    "MODELYARD_WEBHOOK_TIMEOUT": "3",
    "MODELYARD_WEBHOOK_LEASE": "4.5",
    "MODELYARD_EVENTS_POLL_INTERVAL": "0.05",
    # An hour: a token or role change made through one replica can reach the
    # other only through the outbox, never by its cache entry running out.
    "MODELYARD_AUTH_CACHE_SECONDS": "3600",
    "MODELYARD_AUTH_SYNC_INTERVAL": "0.1",
}


@dataclass
class Replicas:
    """Two server processes on one database URL and one shared blob directory."""

    root: Path
    db: str
    store: Path
    store_url: str = ""  # default: the directory ``store``
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    urls: dict[int, str] = field(default_factory=dict)

    def start(self, *which: int) -> None:
        """Start replicas side by side (a start takes seconds on a loaded machine)."""
        store = self.store_url or f"file://{self.store}"

        def one(i: int) -> None:
            self.procs[i], self.urls[i] = start_server(
                self.root / f"replica{i}",
                extra_env={**ENV, **self.env},
                args=("--db", self.db, "--store", store, "--auth", "on"),
            )

        with ThreadPoolExecutor(len(which)) as pool:
            list(pool.map(one, which))

    def client(self, i: int, token: str = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(
            base_url=self.urls[i], headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def kill(self, i: int) -> None:
        """kill -9: no shutdown code runs, open requests are cut off."""
        os.kill(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_server(proc)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("replicas")
    with fresh_database(pg_url) as db:
        replicas = Replicas(root, db, root / "shared-blobs")
        try:
            replicas.start(0, 1)
            yield replicas
        finally:
            replicas.stop()


@pytest.fixture
def pair(running: Replicas) -> Replicas:
    """The module's replicas, both up: one a kill -9 test took down is started
    again here, not at the end of that test, so the last test pays for none."""
    dead = [i for i, proc in running.procs.items() if proc.poll() is not None]
    if dead:
        running.start(*dead)
    return running


def _name(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8]


def _upload(c: httpx.Client, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    r = c.put(f"/api/v1/blobs/{digest}", content=data)
    assert r.status_code in (200, 201), r.text
    return {"digest": digest, "size": len(data)}


def test_concurrent_writers_on_one_model_get_versions_1_to_n(pair: Replicas) -> None:
    """Writers on both replicas at once: numbers 1..N without gaps or repeats;
    each version's files (shared bytes stored once, own bytes) read back
    through the other replica."""
    name = _name("cw")
    with pair.client(0) as c:
        assert c.post("/api/v1/models", json={"name": name}).status_code == 201
    shared = b"shared weights " * 1000
    n = 40

    def create(i: int) -> tuple[int, int]:
        side = i % 2
        with pair.client(side) as c:
            own = f"version payload {i}".encode()
            files = [
                {"path": "shared.bin", **_upload(c, shared)},
                {"path": "own.txt", **_upload(c, own)},
            ]
            r = c.post(
                f"/api/v1/models/default/{name}/versions",
                json={"files": files, "tags": {"i": str(i)}},
            )
            assert r.status_code == 201, r.text
            return int(r.json()["version"]), i

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(create, range(n)))
    assert sorted(number for number, _ in made) == list(range(1, n + 1))
    for side in (0, 1):
        with pair.client(side) as c:
            r = c.get(f"/api/v1/models/default/{name}/versions", params={"limit": 100})
            assert r.status_code == 200, r.text
            assert sorted(v["version"] for v in r.json()["versions"]) == list(range(1, n + 1))
    with pair.client(1) as c:
        for number, i in made:
            base = f"/api/v1/models/default/{name}/versions/{number}"
            assert c.get(f"{base}/files/own.txt").content == f"version payload {i}".encode()
        assert c.get(f"/api/v1/models/default/{name}/versions/7/files/shared.bin").content == shared


def test_one_idempotency_key_sent_to_both_replicas_makes_one_version(pair: Replicas) -> None:
    """A client retrying a create through the load balancer (the same key on
    both replicas at once) gets the one version every time."""
    name = _name("ik")
    with pair.client(0) as c:
        assert c.post("/api/v1/models", json={"name": name}).status_code == 201

    def create(i: int) -> int:
        with pair.client(i % 2) as c:
            r = c.post(
                f"/api/v1/models/default/{name}/versions",
                json={"tags": {"run": "42"}},
                headers={"Idempotency-Key": "retry-42"},
            )
            assert r.status_code == 201, r.text
            return int(r.json()["version"])

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(create, range(16))) == {1}
    with pair.client(1) as c:
        r = c.get(f"/api/v1/models/default/{name}/versions")
        assert [v["version"] for v in r.json()["versions"]] == [1]


def test_concurrent_alias_moves_lose_no_update(pair: Replicas) -> None:
    """Movers on both replicas, half of them compare-and-set: every accepted
    move is in the history exactly once, the history is one chain (each move
    starts where the one before it ended) and ends where the alias points."""
    name = _name("al")
    versions = 6
    with pair.client(0) as c:
        assert c.post("/api/v1/models", json={"name": name}).status_code == 201
        for _ in range(versions):
            assert c.post(f"/api/v1/models/default/{name}/versions", json={}).status_code == 201
    accepted: list[dict[str, Any]] = []
    lock = threading.Lock()

    def mover(worker: int) -> int:
        refused = 0
        with pair.client(worker % 2) as c:
            for step in range(12):
                target = (worker * 7 + step) % versions + 1
                body: dict[str, Any] = {"version": str(target), "reason": f"w{worker}s{step}"}
                if worker % 2 == 0:
                    r = c.get(f"/api/v1/models/default/{name}/versions/prod")
                    body["expected_version"] = r.json()["version"] if r.status_code == 200 else None
                    if body["expected_version"] is None:
                        del body["expected_version"]
                r = c.put(f"/api/v1/models/default/{name}/aliases/prod", json=body)
                if r.status_code == 409:
                    assert r.json()["error"]["code"] == "ALIAS_CHANGED", r.text
                    refused += 1
                    continue
                assert r.status_code == 200, r.text
                with lock:
                    accepted.append(body)
        return refused

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(mover, range(6)))
    with pair.client(1) as c:
        r = c.get(f"/api/v1/models/default/{name}/aliases/history", params={"alias": "prod"})
        assert r.status_code == 200, r.text
        history = r.json()["history"]
        now = c.get(f"/api/v1/models/default/{name}/versions/prod").json()["version"]
    assert sorted(h["reason"] for h in history) == sorted(b["reason"] for b in accepted)
    assert history[0]["from_version"] is None
    for before, after in itertools.pairwise(history):
        assert after["from_version"] == before["to_version"], (before, after)
    assert history[-1]["to_version"] == now
    by_reason = {h["reason"]: h for h in history}
    for body in accepted:
        if "expected_version" in body:
            assert by_reason[body["reason"]]["from_version"] == body["expected_version"]


def _read_sse(
    url: str, token: str, n: int, ready: threading.Event, **params: Any
) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    with httpx.stream(
        "GET",
        f"{url}/api/v1/events/stream",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as resp:
        assert resp.status_code == 200
        ready.set()
        for line in resp.iter_lines():
            if line.startswith("data:"):
                got.append(json.loads(line[5:]))
                if len(got) == n:
                    break
    return got


def test_event_stream_of_either_replica_sees_writes_through_the_other(pair: Replicas) -> None:
    for reader, writer in ((0, 1), (1, 0)):
        ns = _name("ns")
        with pair.client(writer) as c:
            assert c.post("/api/v1/namespaces", json={"name": ns}).status_code == 201
        ready = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            stream = pool.submit(_read_sse, pair.urls[reader], ADMIN_TOKEN, 4, ready, namespace=ns)
            assert ready.wait(30)
            with pair.client(writer) as c:
                for i in range(4):
                    r = c.post("/api/v1/models", json={"name": f"m{i}", "namespace": ns})
                    assert r.status_code == 201
            got = stream.result(timeout=30)
        assert [(e["type"], e["subject"]) for e in got] == [
            ("model.created", f"{ns}/m{i}") for i in range(4)
        ]
        assert [e["id"] for e in got] == sorted({e["id"] for e in got})


def test_token_and_role_changes_through_one_replica_apply_on_the_other(pair: Replicas) -> None:
    """The other replica caches the token (for an hour in this module): the
    revocation reaches it through the outbox, not by the entry running out."""
    user = _name("u")
    ns = _name("tok")
    with pair.client(0) as admin:
        assert admin.post("/api/v1/users", json={"name": user}).status_code == 201
        assert admin.post("/api/v1/namespaces", json={"name": ns}).status_code == 201
        r = admin.put(f"/api/v1/roles/{ns}/{user}/reader")
        assert r.status_code == 201, r.text
        made = [admin.post("/api/v1/tokens", json={"name": f"t{i}", "user": user}) for i in (1, 2)]
        assert all(r.status_code == 201 for r in made), made
        tokens = [r.json() for r in made]
    with pair.client(1, tokens[0]["token"]) as one, pair.client(1, tokens[1]["token"]) as two:
        assert one.get("/api/v1/whoami").status_code == 200
        assert two.get("/api/v1/models", params={"namespace": ns}).status_code == 200
        with pair.client(0) as admin:
            assert admin.delete(f"/api/v1/tokens/{tokens[0]['id']}").status_code == 200
        wait_for(lambda: one.get("/api/v1/whoami").status_code == 401, what="revoked on 1")
        assert two.get("/api/v1/whoami").status_code == 200
        with pair.client(0) as admin:
            assert admin.delete(f"/api/v1/roles/{ns}/{user}/reader").status_code == 204
        wait_for(
            lambda: two.get(f"/api/v1/models/{ns}/any").status_code == 403,
            what="the role revocation on replica 1",
        )
        with pair.client(0) as admin:
            assert admin.post(f"/api/v1/users/{user}/disable").status_code == 200
        wait_for(lambda: two.get("/api/v1/whoami").status_code == 401, what="disabled on 1")


def test_each_webhook_delivery_is_sent_once_by_two_dispatching_replicas(pair: Replicas) -> None:
    name = _name("wh")
    with receiver() as rec:
        with pair.client(0) as c:
            assert c.post("/api/v1/models", json={"name": name}).status_code == 201
            r = c.post(
                "/api/v1/webhooks",
                json={"url": rec.url, "event_types": ["version.created"], "model": name},
            )
            assert r.status_code == 201, r.text
            hook = r.json()["id"]
        n = 24

        def create(i: int) -> None:
            with pair.client(i % 2) as c:
                r = c.post(f"/api/v1/models/default/{name}/versions", json={})
                assert r.status_code == 201, r.text

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(create, range(n)))

        def done() -> list[dict[str, Any]]:
            with pair.client(1) as c:
                ds = c.get(f"/api/v1/webhooks/{hook}/deliveries", params={"limit": 100})
            got = ds.json()["deliveries"]
            return got if len(got) == n and all(d["status"] == "succeeded" for d in got) else []

        deliveries = wait_for(done, what="every delivery")
        assert all(len(d["attempts"]) == 1 for d in deliveries)
        got = rec.snapshot()
        assert len(got) == n
        assert len({r.headers["webhook-id"] for r in got}) == n
        assert sorted(r.json["data"]["version"] for r in got) == list(range(1, n + 1))


def _sender_pid(peer_port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the TCP socket bound to 127.0.0.1:``peer_port``.

    Every line of that local port is tried: an earlier connection from the
    same ephemeral port can still be listed (TIME_WAIT, inode 0) before the
    live one, and taking the first line made this flaky under load."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if int(parts[1].rsplit(":", 1)[1], 16) == peer_port and parts[9] != "0":
            inodes.add(f"socket:[{parts[9]}]")
    if not inodes:
        return None
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) in inodes:
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


def test_kill_9_mid_delivery_the_other_replica_redoes_its_claims(pair: Replicas) -> None:
    """Deliveries sent by replica 0 are held open; replica 0 is killed; its
    claims run out and replica 1 sends them. Replica 1 never sends one twice,
    and every delivery ends succeeded with the same webhook-id."""
    name = _name("kd")
    victim, survivor = pair.procs[0].pid, pair.procs[1].pid
    held = threading.Event()
    release = threading.Event()
    senders: dict[int, int | None] = {}

    killing = threading.Event()

    def script(req: Received, index: int) -> Reply:
        pid = _sender_pid(req.peer[1], [victim, survivor])
        if pid is None and killing.is_set():
            # Its socket went before this handler ran (a loaded machine runs
            # it late): only the killed replica's sockets go while a request
            # is unanswered, the survivor waits for every answer.
            pid = victim
        senders[index] = pid
        if pid == victim:
            held.set()
            release.wait(30)
        return 200, {}, b""

    with receiver(script) as rec:
        with pair.client(1) as c:
            assert c.post("/api/v1/models", json={"name": name}).status_code == 201
            r = c.post(
                "/api/v1/webhooks",
                json={"url": rec.url, "event_types": ["version.created"], "model": name},
            )
            hook = r.json()["id"]
            for _ in range(12):
                assert c.post(f"/api/v1/models/default/{name}/versions", json={}).status_code == 201
        try:
            wait_for(held.is_set, what="a delivery held open by replica 0")
            killing.set()
            pair.kill(0)
        finally:
            release.set()
        with pair.client(1) as c:
            # The survivor serves at once, before the claims run out.
            assert c.post(f"/api/v1/models/default/{name}/versions", json={}).status_code == 201

            def done() -> list[dict[str, Any]]:
                ds = c.get(f"/api/v1/webhooks/{hook}/deliveries", params={"limit": 100})
                got = ds.json()["deliveries"]
                ok = len(got) == 13 and all(d["status"] == "succeeded" for d in got)
                return got if ok else []

            wait_for(done, timeout=60, what="every delivery, the killed replica's redone")
        got = rec.snapshot()
        by_victim = {r.headers["webhook-id"] for i, r in enumerate(got) if senders[i] == victim}
        by_survivor = [r.headers["webhook-id"] for i, r in enumerate(got) if senders[i] == survivor]
        assert all(senders[i] in (victim, survivor) for i in range(len(got))), senders
        assert by_victim, "replica 0 sent nothing before it was killed"
        assert len(by_survivor) == len(set(by_survivor)) == 13
        assert by_victim <= set(by_survivor)
        assert {r.json["data"]["version"] for r in got} == set(range(1, 14))


def _partial_put(url: str, digest: str, total: int, sent: bytes) -> socket.socket:
    u = urlparse(url)
    s = socket.create_connection((u.hostname, u.port))
    head = (
        f"PUT /api/v1/blobs/{digest} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()
    s.sendall(head + sent)
    return s


def test_kill_9_mid_upload_leaves_nothing_visible_and_the_other_keeps_serving(
    pair: Replicas,
) -> None:
    """Uploads in flight on both replicas; replica 0 is killed. Its bytes are
    never visible, its temp file is nobody's any more (a sweep takes it) while
    replica 1's upload, still held, is left alone and completes."""
    tmp_dir = pair.store / "tmp"
    killed_data, live_data = os.urandom(3_000_000), os.urandom(3_000_000)
    killed = hashlib.sha256(killed_data).hexdigest()
    live = hashlib.sha256(live_data).hexdigest()
    before = set(tmp_dir.iterdir())
    s0 = _partial_put(pair.urls[0], killed, len(killed_data), killed_data[:1_000_000])
    s1 = _partial_put(pair.urls[1], live, len(live_data), live_data[:1_000_000])
    try:
        wait_for(lambda: len(set(tmp_dir.iterdir()) - before) == 2, what="two temp files")
        pair.kill(0)
        with pair.client(1) as c:
            assert c.head(f"/api/v1/blobs/{killed}").status_code == 404
            name = _name("ku")
            assert c.post("/api/v1/models", json={"name": name}).status_code == 201
            files = [{"path": "w.bin", **_upload(c, b"after the kill")}]
            r = c.post(f"/api/v1/models/default/{name}/versions", json={"files": files})
            assert r.status_code == 201 and r.json()["version"] == 1
            r = c.post(
                f"/api/v1/models/default/{name}/versions",
                json={"files": [{"path": "x.bin", "digest": killed, "size": len(killed_data)}]},
            )
            assert r.status_code == 422 and r.json()["error"]["code"] == "BLOB_MISSING"
        # The killed replica's temp file is held by no one now: a sweep (any
        # replica's, here one run directly) removes it and nothing else.
        assert LocalBlobStore(pair.store).clean_stale_uploads(max_age_s=0) == 1
        assert len(set(tmp_dir.iterdir()) - before) == 1
        s1.sendall(live_data[1_000_000:])
        reply = s1.recv(4096)
        assert reply.startswith(b"HTTP/1.1 201"), reply[:200]
        with pair.client(1) as c:
            assert c.head(f"/api/v1/blobs/{live}").status_code == 200
            assert c.head(f"/api/v1/blobs/{killed}").status_code == 404
            assert c.put(f"/api/v1/blobs/{killed}", content=killed_data).status_code == 201
    finally:
        s0.close()
        s1.close()


@pytest.mark.s3
def test_two_replicas_on_one_s3_store(tmp_path: Path, pg_url: str, s3_server: S3Server) -> None:
    """The same promises on an S3 store (moto over HTTP): writers on both
    replicas, a direct upload offered by one and verified by the other, and a
    replica killed mid-upload whose multipart upload never becomes a blob."""
    bucket = s3_server.new_bucket()
    part = 5 << 20
    with fresh_database(pg_url) as db:
        replicas = Replicas(
            tmp_path,
            db,
            tmp_path / "unused",
            store_url=f"s3://{bucket}/reg",
            env={"MODELYARD_S3_PART_SIZE": str(part)},
        )
        try:
            replicas.start(0, 1)
            name = _name("s3")
            with replicas.client(0) as c:
                assert c.post("/api/v1/models", json={"name": name}).status_code == 201
            shared = b"shared on s3 " * 500

            def create(i: int) -> int:
                with replicas.client(i % 2) as c:
                    files = [
                        {"path": "shared.bin", **_upload(c, shared)},
                        {"path": "own.txt", **_upload(c, f"s3 payload {i}".encode())},
                    ]
                    r = c.post(f"/api/v1/models/default/{name}/versions", json={"files": files})
                    assert r.status_code == 201, r.text
                    return int(r.json()["version"])

            with ThreadPoolExecutor(6) as pool:
                assert sorted(pool.map(create, range(12))) == list(range(1, 13))

            # Offered by replica 0, sent straight to the store, verified by replica 1.
            data = os.urandom(100_000)
            digest = hashlib.sha256(data).hexdigest()
            with replicas.client(0) as c:
                r = c.post("/api/v1/blobs/uploads", json={"size": len(data), "digest": digest})
                assert r.status_code == 200 and r.json()["mode"] == "direct", r.text
                offer = r.json()
            put = httpx.put(offer["url"], content=data, headers=offer["headers"], timeout=60)
            assert put.status_code == 200, put.text
            with replicas.client(1) as c:
                r = c.post(
                    f"/api/v1/blobs/uploads/{offer['upload_id']}/complete",
                    json={"digest": digest, "size": len(data)},
                )
                assert r.status_code == 202, r.text
                # Read back by whichever replica's verifier claims it first.
                assert verified_upload(c, str(offer["upload_id"]))["state"] == "verified"
            with replicas.client(0) as c:
                assert c.head(f"/api/v1/blobs/{digest}").status_code == 200

            # A multipart upload in flight on replica 0 when it is killed.
            big = os.urandom(3 * part)
            big_digest = hashlib.sha256(big).hexdigest()
            s3 = s3_server.client()

            def in_flight() -> bool:
                listed = s3.list_multipart_uploads(Bucket=bucket, Prefix="reg/uploads/")
                return bool(listed.get("Uploads"))

            sock = _partial_put(replicas.urls[0], big_digest, len(big), big[: 2 * part])
            try:
                wait_for(in_flight, timeout=60, what="a multipart upload under way")
                replicas.kill(0)
            finally:
                sock.close()
            with replicas.client(1) as c:
                assert c.head(f"/api/v1/blobs/{big_digest}").status_code == 404
                assert c.get(f"/api/v1/models/default/{name}/versions/12").status_code == 200
                assert c.put(f"/api/v1/blobs/{big_digest}", content=big).status_code == 201
                body = {"files": [{"path": "big.bin", "digest": big_digest, "size": len(big)}]}
                r = c.post(f"/api/v1/models/default/{name}/versions", json=body)
                assert r.status_code == 201 and r.json()["version"] == 13, r.text
                got = c.get(f"/api/v1/models/default/{name}/versions/13/files/big.bin")
                assert hashlib.sha256(got.content).hexdigest() == big_digest
        finally:
            replicas.stop()
