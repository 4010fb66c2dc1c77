"""Big sequential file I/O for transfers: writing a stream while computing its
SHA-256 (:class:`HashingSink`), and reading a file in large blocks
(:class:`BlockReader`).

Both ends of a transfer do this: the server when it receives a blob, the SDK
when it downloads one into its cache. For big files the caller's thread only
copies each chunk into one of a few page-aligned buffers; full buffers are
hashed on one thread and written on another, so receiving, hashing and disk
I/O overlap (``hashlib`` and ``os.pwrite`` release the GIL). Where the
filesystem allows it the buffers are written with ``O_DIRECT``: bytes go from
the buffer to the disk without first being copied into the page cache and
later flushed by ``fsync``. This VM's page cache fills new pages at a few
hundred MiB/s while its disk takes about 2 GiB/s (bench/transfer.py). A
filesystem that refuses ``O_DIRECT`` (tmpfs, some network filesystems) gets
ordinary buffered writes.

Reads of big blobs the server sends borrow the page cache only briefly, for
the same reason: a blob just uploaded is not cached (it was written around the
cache), and reading 1 GiB of it into fresh cache pages cost 1.2-2.6 s of
system time here, against 0.1 s when each block is dropped once read and its
pages recycled.

Leaf module: imports nothing of ours.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import mmap
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

PIPELINE_MIN = 16 << 20
"""Streams expected to be at least this big (or of unknown size) take the
pipelined path; smaller ones are hashed and written inline, which costs no
threads."""

BLOCK = 4 << 20
"""Bytes per buffer: large enough that per-call overheads vanish, small enough
that a few of them are a modest, fixed amount of memory per transfer."""

BUFFERS = 3
"""Buffers per pipelined stream: one filling, up to two being hashed/written."""

_SPARE = 1 << 20
"""Bytes of the buffer an unpipelined sink lends to ``readinto`` callers."""

_ALIGN = 4096
"""``O_DIRECT`` alignment of offsets and lengths: a multiple of every logical
block size in use (512 or 4096)."""

MAX_PIPELINES = 8
"""Big streams (sinks and readers) one process runs the fast way at once. More
are served the simple way, so the buffers stay under ``MAX_PIPELINES *
BUFFERS * BLOCK`` (96 MiB) however many transfers are in flight."""

_SMALL_BLOCK = 1 << 20
"""Block size of a :class:`BlockReader` that found every pipeline slot taken."""

_O_DIRECT: int = getattr(os, "O_DIRECT", 0)
_slots = threading.BoundedSemaphore(MAX_PIPELINES)


class HashingSink:
    """Writes a stream of chunks to the open file ``fd`` and computes its SHA-256.

    ``pipelined=False`` hashes and writes each chunk in the caller's thread.
    ``pipelined=True`` uses the buffers and two worker threads described in the
    module docstring; memory stays at ``BUFFERS * BLOCK`` whatever the size.
    That takes one of ``MAX_PIPELINES`` slots; without a free one the sink
    works inline (:attr:`pipelined` says which).

    Call :meth:`finish` once (the hex digest; ``fd`` stays open for the caller
    to fsync and close), or :meth:`abort`. The sink never closes ``fd``.
    """

    def __init__(self, fd: int, *, pipelined: bool) -> None:
        self._fd = fd
        self._hash = hashlib.sha256()
        self._size = 0
        self._pipe: _Pipeline | None = None
        if pipelined and _slots.acquire(blocking=False):
            try:
                self._pipe = _Pipeline(fd, self._hash)
            except BaseException:
                _slots.release()
                raise
        self._spare: bytearray | None = None
        self._released = False

    @property
    def pipelined(self) -> bool:
        """True if hashing and writing run on worker threads."""
        return self._pipe is not None

    @property
    def size(self) -> int:
        """Bytes taken so far."""
        return self._size

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Take ``chunk``. Pipelined, this blocks only while every buffer is
        busy; an event loop avoids that by awaiting :meth:`ready` first."""
        self._size += len(chunk)
        if self._pipe is not None:
            self._pipe.take(memoryview(chunk))
            return
        self._hash.update(chunk)
        _write_all(self._fd, memoryview(chunk), None)

    def buffer(self) -> memoryview:
        """Free space to read into directly (``readinto``), saving the copy
        :meth:`write` makes; report what was read with :meth:`filled`. Never
        empty. The view must not be used after the next call on the sink."""
        if self._pipe is not None:
            return self._pipe.space()
        if self._spare is None:
            self._spare = bytearray(_SPARE)
        return memoryview(self._spare)

    def filled(self, n: int) -> None:
        """The first ``n`` bytes of the last :meth:`buffer` hold the stream's next bytes."""
        self._size += n
        if self._pipe is not None:
            self._pipe.advance(n)
            return
        assert self._spare is not None
        view = memoryview(self._spare)[:n]
        self._hash.update(view)
        _write_all(self._fd, view, None)

    def ready(self) -> Future[None] | None:
        """None if a chunk of up to ``BLOCK`` bytes can be taken without
        blocking; otherwise a future that completes when it can."""
        return self._pipe.ready() if self._pipe is not None else None

    def finish(self) -> str:
        """Write what is buffered, wait for the workers, return the hex digest.
        Raises the first error a worker met (a full disk, say)."""
        if self._pipe is not None:
            try:
                self._pipe.finish()
            finally:
                self._release()
        return self._hash.hexdigest()

    def abort(self) -> None:
        """Stop the workers (waiting for any write in progress); the caller
        removes the file."""
        if self._pipe is not None:
            self._pipe.abort()
            self._release()

    def _release(self) -> None:
        # Once per sink: finish and abort may both run (abort after a failed
        # finish); the pipeline stays referenced for the digest's sake.
        if not self._released:
            self._released = True
            _slots.release()


class _Pipeline:
    """Page-aligned buffers cycled through a hashing thread and a writing thread.

    A full buffer is submitted to both threads at once (they only read it). The
    writer's job waits for that buffer's hash before it returns, so "write
    done" means the buffer is free again. Each thread runs its jobs in order,
    which keeps the hash over the bytes in stream order; writes go to explicit
    offsets.
    """

    def __init__(self, fd: int, hasher: hashlib._Hash) -> None:
        self._fd = fd
        self._hasher = hasher
        self._direct = _enable_direct(fd)
        self._bufs = [mmap.mmap(-1, BLOCK) for _ in range(BUFFERS)]
        self._free = deque(range(1, BUFFERS))
        self._inflight: deque[tuple[int, Future[None]]] = deque()
        self._cur = 0
        self._pos = 0
        self._offset = 0
        self._hashing = ThreadPoolExecutor(1, thread_name_prefix="modelyard-hash")
        self._writing = ThreadPoolExecutor(1, thread_name_prefix="modelyard-write")

    def take(self, data: memoryview) -> None:
        while data:
            n = min(len(data), BLOCK - self._pos)
            self._bufs[self._cur][self._pos : self._pos + n] = data[:n]
            data = data[n:]
            self.advance(n)

    def space(self) -> memoryview:
        return memoryview(self._bufs[self._cur])[self._pos :]

    def advance(self, n: int) -> None:
        self._pos += n
        if self._pos == BLOCK:
            self._submit(BLOCK)
            self._cur = self._next_free()
            self._pos = 0

    def ready(self) -> Future[None] | None:
        self._reap()
        if self._free or not self._inflight:
            return None
        return self._inflight[0][1]

    def finish(self) -> None:
        try:
            if self._pos:
                self._submit(self._pos)
                self._pos = 0
            while self._inflight:
                self._inflight.popleft()[1].result()
        finally:
            self._shutdown()

    def abort(self) -> None:
        self._shutdown()

    def _submit(self, length: int) -> None:
        view = memoryview(self._bufs[self._cur])[:length]
        hashed = self._hashing.submit(self._hasher.update, view)
        written = self._writing.submit(self._write, view, self._offset, hashed)
        self._inflight.append((self._cur, written))
        self._offset += length

    def _write(self, view: memoryview, offset: int, hashed: Future[None]) -> None:
        try:
            whole = len(view) - len(view) % _ALIGN if self._direct else len(view)
            if whole:
                offset = self._pwrite(view[:whole], offset)
            if whole < len(view):
                # The tail of the stream: O_DIRECT wants whole blocks, so the
                # last few bytes go through the page cache.
                self._direct = _disable_direct(self._fd)
                _write_all(self._fd, view[whole:], offset)
        finally:
            hashed.result()

    def _pwrite(self, view: memoryview, offset: int) -> int:
        if self._direct:
            try:
                return _write_all(self._fd, view, offset)
            except OSError as exc:
                # Refused at the first write by filesystems that accept the
                # flag but not the I/O: carry on buffered.
                if exc.errno != errno.EINVAL:
                    raise
                self._direct = _disable_direct(self._fd)
        return _write_all(self._fd, view, offset)

    def _next_free(self) -> int:
        self._reap()
        if not self._free:
            idx, done = self._inflight.popleft()
            done.result()
            self._free.append(idx)
        return self._free.popleft()

    def _reap(self) -> None:
        while self._inflight and self._inflight[0][1].done():
            idx, done = self._inflight.popleft()
            done.result()
            self._free.append(idx)

    def _shutdown(self) -> None:
        # Waits for running jobs: a buffer must not be unmapped under a write.
        self._hashing.shutdown(wait=True, cancel_futures=True)
        self._writing.shutdown(wait=True, cancel_futures=True)
        for done in (f for _, f in self._inflight):
            done.cancel()
        self._inflight.clear()
        for buf in self._bufs:
            # A view a caller still holds keeps its buffer; GC unmaps it later.
            with contextlib.suppress(BufferError):
                buf.close()


def _write_all(fd: int, view: memoryview, offset: int | None) -> int:
    """Write all of ``view`` at ``offset`` (or the file position); the offset after."""
    pos = offset or 0
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, pos)
        view = view[n:]
        pos += n
    return pos


def _enable_direct(fd: int) -> bool:
    """Switch ``fd`` to ``O_DIRECT``; False where the platform or filesystem refuses."""
    if not _O_DIRECT:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT)
    except OSError:
        return False
    return True


def _disable_direct(fd: int) -> bool:
    """Back to buffered writes on ``fd``; always False (the new mode)."""
    if _O_DIRECT:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~_O_DIRECT)
    return False


class BlockReader:
    """Reads a file front to back in ``BLOCK``-sized ``bytes``, leaving the
    page cache as it found it.

    A file that is cached (probed with ``RWF_NOWAIT`` reads at its start,
    middle and end) is read normally. One that is not, such as a blob just
    uploaded around the cache, is read with the kernel's readahead and each
    block is dropped from the cache once read, so a 1 GiB download does not
    push 1 GiB of other files out of memory, and the cache pages it borrows
    are recycled, warm. Blocks are ``BLOCK`` bytes while a pipeline slot is
    free (see ``MAX_PIPELINES``), 1 MiB otherwise. A context manager; not
    thread-safe, but each :meth:`read` may run on a different worker thread.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            self._borrow = not _cached(self._fd, os.fstat(self._fd).st_size)
            if self._borrow:
                os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except BaseException:
            os.close(self._fd)
            raise
        self._slot = _slots.acquire(blocking=False)
        self._buf = mmap.mmap(-1, BLOCK if self._slot else _SMALL_BLOCK)
        self._offset = 0

    def read(self) -> bytes:
        """The next block (shorter at the end of the file); ``b""`` after it."""
        n = os.preadv(self._fd, [self._buf], self._offset)
        if self._borrow and n:
            os.posix_fadvise(self._fd, self._offset, n, os.POSIX_FADV_DONTNEED)
        self._offset += n
        with memoryview(self._buf) as view:
            return bytes(view[:n])

    def close(self) -> None:
        """Release the file, the buffer and the slot."""
        os.close(self._fd)
        self._buf.close()
        if self._slot:
            self._slot = False
            _slots.release()

    def __enter__(self) -> BlockReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cached(fd: int, size: int) -> bool:
    """True if the file's first, middle and last pages are in the page cache
    (or the kernel cannot tell us: then it is treated like any file)."""
    nowait = getattr(os, "RWF_NOWAIT", 0)
    if not nowait or size == 0:
        return True
    probe = bytearray(1)
    for at in {0, size // 2, size - 1}:
        try:
            if os.preadv(fd, [probe], at, nowait) != 1:
                return False
        except BlockingIOError:
            return False
        except OSError:
            return True
    return True
