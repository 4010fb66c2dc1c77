"""Group commit for SQLite writes: many callers' operations, one transaction.

Why: on SQLite a created version dirties ~25 B-tree pages (the versions row
and its 8 indexes, the tag / metric / param / metadata tables with theirs, the
event and its indexes), ~100 KiB of WAL, and committing that was a quarter of a
create's CPU. Most of those pages are the right-most leaves of time-ordered
indexes, the same for consecutive creates: committing several creates in one
transaction writes each such page once. There is one writer at a time anyway,
so writers that would have queued on the writer lock lose nothing by sharing a
transaction.

How (leader / follower): a caller of :meth:`GroupCommitter.run` queues its
operation. If no batch is being run, it becomes the leader: it takes the
writer lock, then takes every queued operation (its own first, up to
``max_batch``), opens one ``BEGIN IMMEDIATE`` transaction, runs each operation
in its own SAVEPOINT, commits once, and hands every caller its result or
exception. Callers that queued meanwhile wait; when the batch is done the
leader wakes the oldest of them to lead the next batch. A batch of one (no
contention) runs without a savepoint, exactly like a plain transaction.

:meth:`GroupCommitter.run_ops` takes a list of operations at once, from the
API's event loop: there a service call runs as a cooperative call
(``modelyard/cooperative.py``) and :meth:`GroupCommitter.run` does not run its
operation but suspends the call, handing the operation to the loop's driver,
which gathers the operations of every request that reached its transaction in
one loop turn, with no thread per request. Only the operation is batched: the
call's prepare step (validation, blob checks, DNS) ran before, outside the
writer lock, and what it does after its transaction runs after the commit.

Measured (2 shared cores, in-process, 3,000 creates over 20 models, against
one transaction per create on the same machine in the same minute): 8
threads ~2,760-4,100 creates/s with batches of ~5-6 (one transaction each:
~1,800-2,700/s); 1 thread unchanged (~1,900-2,200/s). Savepoints cost little
only with their statement journal in memory (see ``_run_several``).
Over HTTP (bench/point_reads.py --workers 2, wrk -c16, server pinned to one
core, load average ~1.5), with the API gathering the writes of one event-loop
turn (api/deps.py ``GroupedWrites``) and startup objects frozen out of the
cyclic collector (api/app.py): creates 2,436 and 2,407 req/s, p99 23.8 and
23.9 ms; the same without group commit: 1,578 req/s, p99 26.1 ms.
Batching only the transaction step (cooperative calls, instead of whole calls
inside the batch) showed no cost: measured A/B, alternating, on a machine at
load average 13-21 (so absolute figures are low): in-process 3,000 creates
from 16 coroutines, 496-651 µs CPU a create against 564-653 µs before, batches
the same size; over HTTP (creates only, wrk -c16 10 s, 6 runs each) 180-400
req/s against 197-416, 1.3-1.8 ms server CPU a create against 1.1-2.0 ms.

Isolation between the operations of a batch:

- an operation that raises is rolled back to its savepoint and gets its
  exception; the others go on and commit;
- an operation that fails with an ``IntegrityError`` (a unique-key race, e.g.
  two creators of one idempotency key) is run once more in a fresh savepoint,
  which sees the rows the others wrote; a second ``IntegrityError`` goes to
  its caller;
- if the transaction itself fails (``BEGIN``, a savepoint that cannot be
  rolled back, ``COMMIT``), every operation that had not failed on its own gets
  that exception: nothing of the batch was committed. Transient lock failures
  ("database is locked", from a writer that does not take our writer lock)
  re-run the whole batch with a backoff instead, as single transactions were.

Operations run in the order they queued, inside one transaction, so anything
they allocate in order (version numbers, event ids) is in commit order. An
operation must therefore touch only the database: side effects outside it
(blob deletes, HTTP calls) belong after the call returns, when the data is
committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy.exc import IntegrityError, OperationalError

from modelyard import cooperative
from modelyard.cooperative import Outcome
from modelyard.store.metadata.engine import is_retryable, write_options

if TYPE_CHECKING:
    from modelyard.store.metadata.repository import MetadataStore, Tx

T = TypeVar("T")

MAX_BATCH = 64
"""Operations per transaction at most: bounds the latency of the last one."""

BATCH_ATTEMPTS = 8
"""Runs of a batch whose transaction hit a transient lock failure."""


class _Pending(Generic[T]):
    """One queued operation and, once its batch is done, its outcome."""

    __slots__ = ("done", "error", "fn", "ok", "result", "wake")

    def __init__(self, fn: Callable[[Tx], T]) -> None:
        self.fn = fn
        self.ok = False
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None
        # Created held; the waiting caller blocks acquiring it until a leader
        # releases it (a plain lock is the cheapest wake-up Python has).
        self.wake: threading.Lock | None = None


class _OperationFailed(Exception):
    """Rolls back the transaction of a lone operation that raised."""


class GroupCommitStats:
    """Counters of a committer (written by the leader only; read for tests and ops).

    ``batches`` counts every batch run, ``failed`` those whose transaction
    failed; ``largest`` is the most operations one batch carried.
    """

    __slots__ = ("batches", "failed", "largest", "operations")

    def __init__(self) -> None:
        self.batches = 0
        self.failed = 0
        self.operations = 0
        self.largest = 0


class GroupCommitter:
    """Runs write operations of one SQLite store in shared transactions.

    See the module docstring for the protocol and its guarantees.
    """

    def __init__(
        self, store: MetadataStore, *, max_batch: int = MAX_BATCH, retry_delay: float = 0.01
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._retry_delay = retry_delay
        self._mutex = threading.Lock()
        self._queue: list[_Pending[Any]] = []
        self._leading = False
        self._local = threading.local()
        self.stats = GroupCommitStats()

    def joined(self) -> Tx | None:
        """The batch transaction of the operation this thread is running, if any
        (reads and writes the operation opens through the store join it)."""
        tx: Tx | None = getattr(self._local, "joined", None)
        return tx

    def queued(self) -> int:
        """Operations waiting for a batch (not counting one being run)."""
        with self._mutex:
            return len(self._queue)

    def run(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a write transaction shared with concurrent callers.

        Returns what ``fn`` returned once the transaction has committed, or
        raises what ``fn`` raised (its changes rolled back), or the exception
        that failed the transaction. In a cooperative call on an event loop
        (see ``modelyard/cooperative.py``) the call suspends instead, and the
        loop's driver runs ``fn`` with the other requests' operations through
        :meth:`run_ops`.
        """
        if getattr(self._local, "in_op", False):
            # An operation calling a write: it would wait for its own batch.
            raise RuntimeError("a write operation cannot start another write")
        if cooperative.in_call():
            result: T = cooperative.suspend(cooperative.Transaction(fn, self.run_ops))
            return result
        pending: _Pending[T] = _Pending(fn)
        self._submit([pending])
        self._wait(pending)
        if pending.ok:
            return pending.result  # type: ignore[return-value]
        assert pending.error is not None
        raise pending.error

    def run_ops(self, ops: Sequence[Callable[[Tx], Any]]) -> list[Outcome]:
        """Run several operations as batch members; each one's outcome, in order,
        once their transaction has committed (or failed).

        Each operation runs in its own savepoint, as if each had called
        :meth:`run` from a thread of its own. Lets one thread (the event loop)
        gather the operations of many requests without a thread per request.
        """
        pendings: list[_Pending[Any]] = [_Pending(op) for op in ops]
        self._submit(pendings)
        for p in pendings:
            self._wait(p)
        return [Outcome(p.ok, p.result, p.error) for p in pendings]

    def _submit(self, pendings: list[_Pending[Any]]) -> None:
        with self._mutex:
            self._queue.extend(pendings)
            lead_now = not self._leading
            self._leading = True
            for i, p in enumerate(pendings):
                if not (lead_now and i == 0):
                    wake = p.wake = threading.Lock()
                    wake.acquire()

    def _wait(self, p: _Pending[Any]) -> None:
        if p.wake is not None:
            p.wake.acquire()  # released when its batch is done, or to make it lead
        if not p.done:
            self._lead(p)

    # -- leader ----------------------------------------------------------

    def _lead(self, me: _Pending[Any]) -> None:
        """Run one batch (``me`` is first in the queue), then pass the lead on."""
        store = self._store
        batch: list[_Pending[Any]] = []
        try:
            lock = store.writer_lock
            assert lock is not None
            with lock.hold():
                # Taken after the lock: callers that queued while we waited
                # for it (a checkpoint, another process) join this batch.
                with self._mutex:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: len(batch)]
                self._run_batch(batch)
        except BaseException as exc:
            self.stats.failed += 1
            if not batch:  # failed before taking the batch (the writer lock)
                with self._mutex:
                    self._queue.remove(me)
                batch = [me]
            # The transaction failed: nothing of the batch committed.
            for p in batch:
                if not p.done and p.error is None:
                    p.ok = False
                    p.error = exc
        finally:
            stats = self.stats
            stats.batches += 1
            stats.operations += len(batch)
            stats.largest = max(stats.largest, len(batch))
            self._finish(me, batch)
        if store.checkpointer is not None:
            store.checkpointer.nudge()

    def _run_batch(self, batch: list[_Pending[Any]]) -> None:
        store = self._store
        alone = len(batch) == 1
        retried_alone = False
        for attempt in range(BATCH_ATTEMPTS):
            for p in batch:
                p.ok, p.result, p.error = False, None, None
            try:
                with store.engine.connect().execution_options(**write_options()) as conn:
                    if alone:
                        with conn.begin():
                            self._run_alone(store.tx(conn), batch[0])
                    else:
                        self._run_several(conn, store.tx(conn), batch)
            except _OperationFailed:
                # A lone operation raised; its transaction is rolled back.
                if isinstance(batch[0].error, IntegrityError) and not retried_alone:
                    retried_alone = True
                    continue
                return
            except OperationalError as exc:
                if not is_retryable(exc) or attempt == BATCH_ATTEMPTS - 1:
                    raise
                time.sleep(min(0.5, self._retry_delay * 2**attempt))
                continue
            return

    def _run_several(self, conn: Any, tx: Tx, batch: list[_Pending[Any]]) -> None:
        """Run the operations of a batch in one transaction, each in a savepoint."""
        raw = conn.connection.driver_connection
        # A savepoint keeps the original of every page it changes in a
        # statement journal, which spills to a temporary file past 64 KiB
        # (one create changes ~100 KiB): in memory it costs a copy, in a file
        # it made each create's inserts 3x slower. Set before BEGIN, which is
        # when SQLite picks the journal's place; only for this transaction,
        # so large sorts elsewhere keep spilling to disk.
        raw.execute("PRAGMA temp_store=MEMORY")
        try:
            with conn.begin():
                for p in batch:
                    self._run_one(raw, tx, p)
        finally:
            try:
                raw.execute("PRAGMA temp_store=DEFAULT")
            except Exception:
                # Not back to default (a failed COMMIT can leave the
                # transaction open): drop this connection from the pool.
                conn.invalidate()

    def _run_alone(self, tx: Tx, p: _Pending[Any]) -> None:
        """Run the only operation of a batch: no savepoint needed (and none
        paid for: a savepoint keeps a copy of every page it changes), the
        transaction is the operation's own."""
        local = self._local
        local.in_op, local.joined = True, tx
        try:
            p.result = p.fn(tx)
        except Exception as exc:
            if isinstance(exc, OperationalError) and is_retryable(exc):
                raise  # the batch is retried
            p.error = exc
            raise _OperationFailed from exc
        finally:
            local.in_op, local.joined = False, None
        p.ok = True

    def _run_one(self, raw: Any, tx: Tx, p: _Pending[Any]) -> None:
        """Run one operation of a batch in a savepoint; errors of the
        transaction propagate.

        The savepoint is set on the driver's connection: through SQLAlchemy's
        ``begin_nested`` it cost ~50 µs an operation in Python. SQLAlchemy does
        not need to know of it; savepoints the operation opens itself nest
        inside.
        """
        local = self._local
        for attempt in range(2):
            raw.execute("SAVEPOINT group_op")
            local.in_op, local.joined = True, tx
            try:
                result = p.fn(tx)
            except Exception as exc:
                # If this fails the transaction is broken: the batch fails.
                raw.execute("ROLLBACK TO group_op")
                raw.execute("RELEASE group_op")
                if isinstance(exc, OperationalError) and is_retryable(exc):
                    raise  # the whole batch is retried
                if isinstance(exc, IntegrityError) and attempt == 0:
                    continue  # a fresh savepoint sees the rows that won
                p.error = exc
                return
            finally:
                local.in_op, local.joined = False, None
            raw.execute("RELEASE group_op")
            p.ok, p.result = True, result
            return

    def _finish(self, me: _Pending[Any], batch: list[_Pending[Any]]) -> None:
        """Hand out the outcomes, then wake the next leader or stand down."""
        for p in batch:
            p.done = True
            if p is not me and p.wake is not None:
                p.wake.release()
        with self._mutex:
            if self._queue:
                nxt = self._queue[0]
                assert nxt.wake is not None
                nxt.wake.release()  # it leads; _leading stays set
            else:
                self._leading = False
