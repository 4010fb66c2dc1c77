"""Group commit on SQLite: concurrent writes share one transaction, each in a savepoint.

Batches are formed deterministically: the test thread holds the store's writer
lock while the writers queue (the first of them, the leader, waits for that
lock and takes every queued operation once it has it), then lets go.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modelyard.api.deps import GroupedWrites, ServiceCall
from modelyard.composition import build_services
from modelyard.cooperative import off_loop
from modelyard.domain.errors import Conflict, NotFound
from modelyard.domain.identity import Principal
from modelyard.service.blobs import BlobService
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.groupcommit import GroupCommitter
from modelyard.store.metadata.repository import Tx, now_us

LOCAL = Principal.local("t")


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[RegistryService]:
    service = build_services(Settings(data_dir=tmp_path / "data")).registry
    service.create_model("m", actor=LOCAL)
    yield service
    service.db.dispose()


def committer(svc: RegistryService) -> GroupCommitter:
    assert svc.db.group is not None
    return svc.db.group


def in_one_batch(svc: RegistryService, calls: list[Callable[[], Any]]) -> list[Future[Any]]:
    """Start ``calls`` on threads while holding the writer lock, so that they
    all queue and then run as one batch."""
    group = committer(svc)
    lock = svc.db.writer_lock
    assert lock is not None
    batches_before = group.stats.batches
    pool = ThreadPoolExecutor(len(calls))
    with lock.hold():
        futures = [pool.submit(c) for c in calls]
        deadline = time.monotonic() + 30
        while group.queued() < len(calls):
            assert time.monotonic() < deadline, f"only {group.queued()} queued"
            time.sleep(0.005)
    pool.shutdown(wait=True)
    assert group.stats.batches == batches_before + 1
    return futures


def create(svc: RegistryService, i: int, **kw: Any) -> Callable[[], Any]:
    return lambda: svc.create_version("m", VersionSpec(tags={"i": str(i)}), actor=LOCAL, **kw)


def outcome(f: Future[Any]) -> Any:
    exc = f.exception()
    return exc if exc is not None else f.result()


def created_events(svc: RegistryService) -> list[dict[str, Any]]:
    return [e for e in svc.list_events(limit=1000, actor=LOCAL) if e["type"] == "version.created"]


def test_concurrent_creates_share_a_transaction_gapless_in_commit_order(
    svc: RegistryService,
) -> None:
    futures = in_one_batch(svc, [create(svc, i) for i in range(24)])
    versions = [f.result() for f in futures]
    assert sorted(v.number for v in versions) == list(range(1, 25))
    assert committer(svc).stats.largest == 24
    # One event each, in the order the numbers were allocated (commit order).
    events = created_events(svc)
    assert [e["subject"] for e in events] == [f"default/m/{n}" for n in range(1, 25)]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    # Tags of each caller landed on that caller's version.
    for i, v in enumerate(versions):
        assert svc.get_version(v.ref, actor=LOCAL).tags == {"i": str(i)}


def test_failing_operations_leave_the_rest_of_the_batch_intact(svc: RegistryService) -> None:
    def half_done_then_fails(tx: Tx) -> None:
        tx.insert_namespace("half-done")
        raise ValueError("boom")

    def duplicate_namespace(tx: Tx) -> None:
        # A raw unique violation on every try: retried once, then a conflict.
        tx.conn.execute(t.namespaces.insert().values(name="default", created_at=now_us()))

    calls: list[Callable[[], Any]] = [
        create(svc, 0),
        lambda: svc.create_version("missing", VersionSpec(), actor=LOCAL),
        create(svc, 1),
        lambda: svc.run_in_transaction(half_done_then_fails),
        create(svc, 2),
        lambda: svc.run_in_transaction(duplicate_namespace),
        create(svc, 3),
    ]
    results = [outcome(f) for f in in_one_batch(svc, calls)]
    assert isinstance(results[1], NotFound) and results[1].code == "MODEL_NOT_FOUND"
    assert isinstance(results[3], ValueError)
    assert isinstance(results[5], Conflict) and results[5].code == "CONCURRENT_UPDATE"
    good = [results[i] for i in (0, 2, 4, 6)]
    assert [v.number for v in good] == [1, 2, 3, 4]
    assert [svc.get_version(v.ref, actor=LOCAL).tags for v in good] == [
        {"i": str(i)} for i in range(4)
    ]
    assert [n.name for n in svc.list_namespaces(actor=LOCAL)] == ["default"]
    assert len(created_events(svc)) == 4


def test_integrity_error_is_retried_once_in_the_same_transaction(svc: RegistryService) -> None:
    tries: list[int] = []

    def flaky(tx: Tx) -> int:
        tries.append(1)
        if len(tries) == 1:
            tx.insert_namespace("kept-out")  # rolled back with the failed try
            tx.conn.execute(t.namespaces.insert().values(name="default", created_at=now_us()))
        return tx.insert_namespace("second-try").id

    results = [
        outcome(f)
        for f in in_one_batch(svc, [create(svc, 0), lambda: svc.run_in_transaction(flaky)])
    ]
    assert results[0].number == 1
    assert isinstance(results[1], int)
    assert len(tries) == 2
    assert [n.name for n in svc.list_namespaces(actor=LOCAL)] == ["default", "second-try"]


def test_same_idempotency_key_in_one_batch_creates_one_version(svc: RegistryService) -> None:
    calls = [create(svc, 0, idempotency_key="same") for _ in range(8)]
    versions = [f.result() for f in in_one_batch(svc, calls)]
    assert {v.number for v in versions} == {1}
    assert len(svc.list_versions("m", actor=LOCAL).items) == 1
    assert len(created_events(svc)) == 1


def test_a_failed_commit_reaches_every_caller(svc: RegistryService) -> None:
    def poison(tx: Tx) -> None:
        # A deferred foreign key is checked only by COMMIT, so the operation
        # itself succeeds and the transaction fails.
        tx.conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
        tx.conn.execute(t.version_tags.insert().values(version_id=999_999, key="k", value="v"))

    calls = [create(svc, 0), create(svc, 1), lambda: svc.run_in_transaction(poison), create(svc, 2)]
    failed_before = committer(svc).stats.failed
    results = [outcome(f) for f in in_one_batch(svc, calls)]
    for r in results:
        assert isinstance(r, Conflict) and r.code == "CONCURRENT_UPDATE", r
    assert committer(svc).stats.failed == failed_before + 1
    assert svc.list_versions("m", actor=LOCAL).items == []
    assert created_events(svc) == []
    # The store is usable afterwards, and numbering starts at 1.
    assert svc.create_version("m", VersionSpec(), actor=LOCAL).number == 1


def test_a_write_inside_a_write_is_refused(svc: RegistryService) -> None:
    def nested(tx: Tx) -> None:
        svc.run_in_transaction(lambda inner: None)

    with pytest.raises(RuntimeError, match="cannot start another write"):
        svc.run_in_transaction(nested)
    assert svc.create_version("m", VersionSpec(), actor=LOCAL).number == 1


def test_unbatched_writes_still_work_one_by_one(svc: RegistryService) -> None:
    before = committer(svc).stats.batches
    for i in range(3):
        assert svc.create_version("m", VersionSpec(tags={"i": str(i)}), actor=LOCAL).number == i + 1
    stats = committer(svc).stats
    assert stats.batches == before + 3
    with svc.db.read() as tx:
        assert tx.conn.execute(sa.select(sa.func.count()).select_from(t.versions)).scalar() == 3


def test_requests_writes_in_one_loop_turn_share_a_transaction(svc: RegistryService) -> None:
    """What the API does on SQLite: the write calls of concurrent requests are
    gathered on the event loop and run as one batch, each with its own outcome."""
    grouped = GroupedWrites(ServiceCall(inline=True, heavy_limit=8))
    before = committer(svc).stats.batches

    async def main() -> list[Any]:
        calls = [
            grouped(svc.create_version, "m", VersionSpec(tags={"i": str(i)}), actor=LOCAL)
            for i in range(10)
        ]
        calls.insert(3, grouped(svc.create_version, "missing", VersionSpec(), actor=LOCAL))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert committer(svc).stats.batches == before + 1
    assert committer(svc).stats.largest == 11
    assert isinstance(results[3], NotFound)
    good = results[:3] + results[4:]
    assert [v.number for v in good] == list(range(1, 11))
    assert [svc.get_version(v.ref, actor=LOCAL).tags for v in good] == [
        {"i": str(i)} for i in range(10)
    ]
    assert len(created_events(svc)) == 10


def test_a_batched_call_reads_its_own_writes(svc: RegistryService) -> None:
    """Only a call's transaction step is batched; the call resumes after the
    commit: reads it makes after its write (through the store, on another code
    path) see that write, and a direct ``db.write()`` afterwards is a
    transaction of its own, not a wait on a lock the batch holds."""
    grouped = GroupedWrites(ServiceCall(inline=True, heavy_limit=8))

    def create_then_read(i: int) -> tuple[int, int]:
        v = svc.create_version("m", VersionSpec(tags={"i": str(i)}), actor=LOCAL)
        again = svc.get_version(v.ref, actor=LOCAL)  # a separate read after the write
        with svc.db.write() as tx:  # a direct write inside the batched call
            tx.append_event(
                "test.touched", actor="t", namespace="default", subject=v.ref, payload={}
            )
        return v.number, again.number

    async def main() -> list[Any]:
        return await asyncio.gather(*(grouped(create_then_read, i) for i in range(5)))

    started = time.monotonic()
    results = asyncio.run(main())
    assert time.monotonic() - started < 10  # not a busy-timeout wait
    assert results == [(n, n) for n in range(1, 6)]
    events = [e for e in svc.list_events(limit=1000, actor=LOCAL) if e["type"] == "test.touched"]
    assert len(events) == 5


def test_a_slow_prepare_step_runs_off_the_loop_and_outside_the_batch(
    svc: RegistryService,
) -> None:
    """A call that suspends on a slow step (``off_loop``) lets the loop go on:
    other calls' transactions are batched and committed while it waits, and
    its own transaction runs once the step is done."""
    grouped = GroupedWrites(ServiceCall(inline=True, heavy_limit=8))
    started, release = threading.Event(), threading.Event()

    def slow_step() -> str:
        started.set()
        release.wait(30)
        return "looked up"

    def slow_then_write() -> tuple[str, int]:
        found = off_loop(slow_step)
        return found, svc.create_version("m", VersionSpec(), actor=LOCAL).number

    async def main() -> tuple[tuple[str, int], list[int]]:
        slow = asyncio.ensure_future(grouped(slow_then_write))
        while not started.is_set():
            await asyncio.sleep(0.01)
        fast = [
            (await grouped(svc.create_version, "m", VersionSpec(), actor=LOCAL)).number
            for _ in range(3)
        ]
        assert not slow.done()
        release.set()
        return await slow, fast

    (found, number), fast = asyncio.run(main())
    assert fast == [1, 2, 3]
    assert (found, number) == ("looked up", 4)


def test_a_call_that_never_writes_takes_no_lock(svc: RegistryService) -> None:
    """A read-only call through the write path never reaches a transaction, so
    it never waits for the writer lock (held here by another thread)."""
    grouped = GroupedWrites(ServiceCall(inline=True, heavy_limit=8))
    lock = svc.db.writer_lock
    assert lock is not None
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock.hold():
            held.set()
            done.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        batches = committer(svc).stats.batches
        blobs = BlobService(svc, max_blob_size=1 << 20)
        missing = asyncio.run(grouped(blobs.missing, ["ab" * 32], actor=LOCAL))
        assert missing == ["ab" * 32]
        assert committer(svc).stats.batches == batches
    finally:
        done.set()
        holder.join()
