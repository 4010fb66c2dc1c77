"""Blob store on a local directory.

Layout: ``ROOT/sha256/ab/cd/<digest>`` for blobs and ``ROOT/tmp/`` for uploads in
flight, on the same filesystem so that publishing is one atomic ``rename``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import tempfile
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path

from modelyard.domain.errors import IntegrityError, StorageFull, StorageUnavailable
from modelyard.domain.names import validate_digest
from modelyard.hashio import PIPELINE_MIN, HashingSink
from modelyard.store.blobs.base import BlobInfo

log = logging.getLogger(__name__)


class LocalWriter:
    """Streams into a temp file, hashing on the way; publishes by rename.

    Big (or unsized) uploads are hashed and written off the caller's thread,
    with direct I/O where the filesystem allows (``modelyard.hashio``).
    """

    def __init__(self, store: LocalBlobStore, size_hint: int | None = None) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix=UPLOAD_PREFIX)
        self._fd: int | None = fd
        self._tmp = Path(name)
        try:
            # Held until the file is renamed or removed: the sweep leaves
            # alone every temp file someone holds (see ``clean_stale_uploads``).
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            pipelined = size_hint is None or size_hint >= PIPELINE_MIN
            self._sink = HashingSink(fd, pipelined=pipelined)
        except BaseException:
            self._close()
            self._tmp.unlink(missing_ok=True)
            raise
        self._done = False

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._sink.size

    def write(self, chunk: bytes) -> None:
        """Append bytes, hashing them."""
        with _out_of_space():
            self._sink.write(chunk)

    def ready(self) -> Future[None] | None:
        """None if :meth:`write` can take a chunk now, else a future for when it
        can. Raises what an earlier write met (``STORAGE_FULL``, say)."""
        with _out_of_space():
            return self._sink.ready()

    def commit(self, expected_digest: str | None = None, expected_size: int | None = None) -> str:
        """Verify digest and size, fsync, and rename into place."""
        if self._done:
            raise RuntimeError("writer already finished")
        try:
            with _out_of_space():
                digest = self._sink.finish()
            size = self._sink.size
            if expected_digest is not None and digest != expected_digest:
                raise IntegrityError(
                    "uploaded bytes do not match the digest they were sent under",
                    code="DIGEST_MISMATCH",
                    details={"expected": expected_digest, "actual": digest, "size": size},
                )
            if expected_size is not None and size != expected_size:
                raise IntegrityError(
                    "uploaded size does not match the declared size",
                    code="SIZE_MISMATCH",
                    details={"expected": expected_size, "actual": size},
                )
            assert self._fd is not None
            with _out_of_space():
                os.fsync(self._fd)
            # The temp file is renamed or removed before its descriptor (and
            # so its lock) is let go: unlocked, a sweep could take it.
            final = self._store.path_for(digest)
            if final.exists():
                # Identical bytes are stored once: the existing blob stays,
                # its age renewed so that garbage collection's grace period
                # covers this upload as it would a new blob.
                self._tmp.unlink(missing_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    os.utime(final)
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(self._tmp, 0o444)
                os.replace(self._tmp, final)
                _fsync_dir(final.parent)
            self._close()
            self._done = True
            return digest
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Discard the temp file."""
        self._done = True
        self._sink.abort()
        self._tmp.unlink(missing_ok=True)
        self._close()

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def _out_of_space() -> Iterator[None]:
    """A full disk or an exceeded quota as the domain's ``STORAGE_FULL``."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull("the blob store has no room left for this upload") from exc
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


UPLOAD_PREFIX = "upload-"
SWEEP_INTERVAL = 60.0
"""Seconds between sweeps of dead uploads' temp files, at most."""
SWEEP_GRACE = 60.0
"""A temp file younger than this is never swept (a writer takes its lock
right after creating it)."""


class LocalBlobStore:
    """Content-addressed blobs in a directory.

    Temp files of uploads cut short by a killed process (``kill -9``, OOM)
    are swept while the server runs, not only at start-up: starting an
    upload sweeps, at most every ``sweep_interval`` seconds, on a thread of
    its own. Every live upload holds an ``flock`` on its temp file, in
    whatever process it runs, so the sweep removes exactly the files nobody
    holds (older than ``SWEEP_GRACE``), however long a live upload stalls.
    """

    def __init__(self, root: Path, *, sweep_interval: float = SWEEP_INTERVAL) -> None:
        self.root = root
        self.blob_dir = root / "sha256"
        self.tmp_dir = root / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.sweep_interval = sweep_interval
        self._next_sweep = 0.0
        self._sweep_lock = threading.Lock()

    def check(self) -> None:
        """``STORAGE_UNAVAILABLE`` unless both directories exist and can be written
        (a volume that went away or was remounted read-only)."""
        for path in (self.blob_dir, self.tmp_dir):
            if not (path.is_dir() and os.access(path, os.W_OK | os.X_OK)):
                raise StorageUnavailable(
                    "the blob directory is missing or cannot be written",
                    details={"operation": "check"},
                )

    def path_for(self, digest: str) -> Path:
        """Where a blob lives. Only ever called with a validated digest."""
        validate_digest(digest)
        return self.blob_dir / digest[:2] / digest[2:4] / digest

    def exists(self, digest: str) -> bool:
        """True if the blob is stored."""
        return self.path_for(digest).is_file()

    def size_of(self, digest: str) -> int | None:
        """The blob's size, or None."""
        try:
            return self.path_for(digest).stat().st_size
        except FileNotFoundError:
            return None

    def missing(self, digests: Iterable[str]) -> list[str]:
        """Digests not stored, in order, without repeats."""
        seen: set[str] = set()
        out: list[str] = []
        for d in digests:
            if d in seen:
                continue
            seen.add(d)
            if not self.exists(d):
                out.append(d)
        return out

    def writer(self, size_hint: int | None = None) -> LocalWriter:
        """Start an upload of about ``size_hint`` bytes (None: not known)."""
        writer = LocalWriter(self, size_hint)
        self._maybe_sweep()
        return writer

    def _maybe_sweep(self) -> None:
        """Start a sweep on its own thread if the last one is old enough: an
        unlink of a big file can take milliseconds, not for the event loop."""
        now = time.monotonic()
        with self._sweep_lock:
            if now < self._next_sweep:
                return
            self._next_sweep = now + self.sweep_interval
        threading.Thread(target=self._sweep_quietly, name="upload-sweep", daemon=True).start()

    def _sweep_quietly(self) -> None:
        try:
            n = self.clean_stale_uploads()
        except Exception:  # a failed sweep is retried by a later upload
            log.warning("sweeping upload temp files failed", exc_info=True)
            return
        if n:
            log.info("removed %d temp file(s) of uploads no process holds", n)

    def local_path(self, digest: str) -> Path | None:
        """The blob's file if present."""
        p = self.path_for(digest)
        return p if p.is_file() else None

    def iter_range(
        self, digest: str, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        """Yield ``[start, end)`` of the blob."""
        with open(self.path_for(digest), "rb") as f:
            f.seek(start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                n = chunk_size if remaining is None else min(chunk_size, remaining)
                chunk = f.read(n)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob, with its size and modification time."""
        for path in self.blob_dir.glob("*/*/*"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue  # deleted meanwhile
            if len(path.name) == 64 and path.is_file():
                yield BlobInfo(path.name, st.st_size, st.st_mtime)

    def delete(self, digest: str) -> None:
        """Remove a blob."""
        self.path_for(digest).unlink(missing_ok=True)

    def clean_stale_uploads(
        self, max_age_s: float = SWEEP_GRACE, keep: Collection[str] = ()
    ) -> int:
        """Remove the temp files no live upload holds (left by a killed
        process) and not written to for ``max_age_s`` seconds; returns how many.

        A live upload, in this process or another sharing the directory,
        holds an ``flock`` on its file until the file is renamed or removed,
        so a held file stays however old it is. ``keep`` names direct uploads,
        which this store does not take.
        """
        cutoff = time.time() - max_age_s
        n = 0
        for p in self.tmp_dir.glob(f"{UPLOAD_PREFIX}*"):
            try:
                if p.stat().st_mtime >= cutoff:
                    continue
                fd = os.open(p, os.O_RDONLY)
            except OSError:
                continue  # gone meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # held: a live upload
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    n += 1
            finally:
                os.close(fd)
        return n
