"""The hashing writer behind uploads and downloads (``modelyard.hashio``)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard import hashio
from modelyard.hashio import BLOCK, BlockReader, HashingSink

SHM = Path("/dev/shm")


def chunks_of(data: bytes, seed: int) -> Iterator[bytes]:
    """``data`` cut at random places: tiny, odd, and larger than a buffer."""
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 7, 4095, 65_536, 262_144, BLOCK - 3, BLOCK + 5_000])
        yield data[pos : pos + n]
        pos += n


def sink_into(path: Path, data: bytes, *, pipelined: bool, seed: int = 0) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        sink = HashingSink(fd, pipelined=pipelined)
        for chunk in chunks_of(data, seed):
            sink.write(chunk)
        assert sink.size == len(data)
        return sink.finish()
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "size",
    [0, 1, 4095, 4096, BLOCK, 3 * BLOCK, 3 * BLOCK + 1, 5 * BLOCK + 12_345],
)
@pytest.mark.parametrize("pipelined", [True, False])
def test_bytes_and_digest_survive_any_chunking(tmp_path: Path, size: int, pipelined: bool) -> None:
    data = os.urandom(size)
    out = tmp_path / "blob"
    assert sink_into(out, data, pipelined=pipelined, seed=size) == hashlib.sha256(data).hexdigest()
    assert out.read_bytes() == data


@pytest.mark.skipif(not SHM.is_dir(), reason="needs a tmpfs at /dev/shm")
def test_filesystem_without_direct_io_falls_back_to_buffered_writes() -> None:
    """tmpfs refuses O_DIRECT; the stream is written all the same."""
    data = os.urandom(2 * BLOCK + 99)
    out = SHM / f"modelyard-hashio-{os.getpid()}"
    try:
        assert sink_into(out, data, pipelined=True) == hashlib.sha256(data).hexdigest()
        assert out.read_bytes() == data
    finally:
        out.unlink(missing_ok=True)


def test_without_o_direct_on_the_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashio, "_O_DIRECT", 0)
    data = os.urandom(BLOCK + 1)
    assert sink_into(tmp_path / "b", data, pipelined=True) == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "b").read_bytes() == data


def test_a_write_error_on_the_worker_reaches_the_caller(tmp_path: Path) -> None:
    """A failing write (here: a read-only descriptor) is raised, not lost in a thread."""
    path = tmp_path / "ro"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        sink = HashingSink(fd, pipelined=True)
        with pytest.raises(OSError):
            for _ in range(4):
                sink.write(os.urandom(BLOCK))
            sink.finish()
        sink.abort()
    finally:
        os.close(fd)
    assert path.read_bytes() == b""


def test_abort_stops_the_workers(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "x", os.O_WRONLY | os.O_CREAT)
    try:
        sink = HashingSink(fd, pipelined=True)
        sink.write(os.urandom(2 * BLOCK + 1))
        sink.abort()
    finally:
        os.close(fd)
    assert not any(t.startswith("modelyard-") for t in _thread_names())


def test_an_event_loop_waits_on_ready_instead_of_blocking(tmp_path: Path) -> None:
    """The server's receive loop: await ``ready()`` before each write."""
    data = os.urandom(6 * BLOCK + 3)

    async def feed(sink: HashingSink) -> None:
        waited = 0
        for chunk in chunks_of(data, 3):
            while (backlog := sink.ready()) is not None:
                waited += 1
                await asyncio.wrap_future(backlog)
            sink.write(chunk)

    fd = os.open(tmp_path / "y", os.O_WRONLY | os.O_CREAT)
    try:
        sink = HashingSink(fd, pipelined=True)
        asyncio.run(feed(sink))
        assert sink.finish() == hashlib.sha256(data).hexdigest()
    finally:
        os.close(fd)
    assert (tmp_path / "y").read_bytes() == data


def _thread_names() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate()]


@pytest.mark.parametrize("size", [0, 1, BLOCK, BLOCK + 1, 2 * BLOCK + 4097])
def test_block_reader_reads_everything_in_blocks(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    got = []
    with BlockReader(path) as reader:
        while block := reader.read():
            assert len(block) <= BLOCK
            got.append(block)
        assert reader.read() == b""
    assert b"".join(got) == data
    assert all(len(b) == BLOCK for b in got[:-1])


def test_block_reader_leaves_the_page_cache_as_it_found_it(tmp_path: Path) -> None:
    """An uncached file is not left in the cache after a read; a cached one is
    still cached (on a filesystem whose cache can be dropped)."""
    path = tmp_path / "f"
    path.write_bytes(os.urandom(2 * BLOCK))
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        if hashio._cached(fd, size):
            pytest.skip("this filesystem keeps its pages (tmpfs?) or cannot be probed")
        with BlockReader(path) as reader:
            while reader.read():
                pass
        assert not hashio._cached(fd, size)
        with open(path, "rb") as f:  # an ordinary read caches it
            f.read()
        assert hashio._cached(fd, size)
        with BlockReader(path) as reader:
            while reader.read():
                pass
        assert hashio._cached(fd, size)
    finally:
        os.close(fd)


def test_pipelines_are_bounded_and_fall_back_inline(tmp_path: Path) -> None:
    """Past ``MAX_PIPELINES`` concurrent big streams, a sink works inline and a
    reader uses small blocks, so memory stays bounded; slots come back."""
    fds = [os.open(tmp_path / f"s{i}", os.O_WRONLY | os.O_CREAT) for i in range(9)]
    sinks = [HashingSink(fd, pipelined=True) for fd in fds[:8]]
    try:
        assert all(s.pipelined for s in sinks)
        extra = HashingSink(fds[8], pipelined=True)
        assert not extra.pipelined
        extra.write(b"still works")
        assert extra.finish() == hashlib.sha256(b"still works").hexdigest()
        (tmp_path / "r").write_bytes(os.urandom(BLOCK + 1))
        with BlockReader(tmp_path / "r") as reader:
            assert len(reader.read()) == 1 << 20
        sinks.pop().abort()
        again = HashingSink(fds[8], pipelined=True)
        assert again.pipelined
        sinks.append(again)
    finally:
        for s in sinks:
            s.finish()
        for fd in fds:
            os.close(fd)
    with BlockReader(tmp_path / "r") as reader:
        assert len(reader.read()) == BLOCK
