"""Local side of transfers: hashing, the digest-verified cache, safe destinations."""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from modelyard.domain.errors import IntegrityError, InvalidInput
from modelyard.domain.names import validate_digest, validate_file_path
from modelyard.hashio import PIPELINE_MIN, HashingSink

CHUNK = 1 << 20
Progress = Callable[[int], None]
Fill = Callable[[HashingSink], None]
"""Writes a stream of bytes into the sink it is given."""


STREAM_HASH_MIN = 16 << 20
"""Files at least this big whose digest is not known yet are hashed while they
upload (one read pass) instead of before; smaller ones are hashed first so that
the server is asked whether it already holds them."""

RACY_WINDOW_NS = 2_000_000_000
"""A digest is not remembered for a file modified this recently: a write in the
same timestamp tick could change the bytes without changing the stat."""


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A file to push: where it is, what it will be called in the version, and
    its digest when known before the upload (None: learned while uploading)."""

    source: Path
    path: str
    digest: str | None
    size: int
    media_type: str


def hash_file(path: Path, progress: Progress | None = None) -> tuple[str, int]:
    """sha256 and size of a file, streaming."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
            if progress:
                progress(len(chunk))
    return h.hexdigest(), size


def collect(
    files_or_dir: str | Path | list[str | Path] | dict[str, str | Path],
) -> list[tuple[Path, str]]:
    """(source, logical path) pairs for a directory, a file, a list or a mapping.

    A directory contributes its files with paths relative to it (symlinks are
    not followed out of it); a list takes each file's base name; a mapping names
    each file explicitly.
    """
    pairs: list[tuple[Path, str]] = []
    if isinstance(files_or_dir, dict):
        pairs = [(Path(src), name) for name, src in files_or_dir.items()]
    elif isinstance(files_or_dir, list | tuple):
        for item in files_or_dir:
            p = Path(item)
            if p.is_dir():
                pairs.extend(collect(p))
            else:
                pairs.append((p, p.name))
    else:
        root = Path(files_or_dir)
        if root.is_file():
            return [(root, root.name)]
        if not root.is_dir():
            raise InvalidInput(f"{root} is neither a file nor a directory", code="INVALID_INPUT")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for fn in sorted(filenames):
                full = Path(dirpath) / fn
                if full.is_symlink() or not full.is_file():
                    continue
                pairs.append((full, full.relative_to(root).as_posix()))
    for src, name in pairs:
        validate_file_path(name)
        if not src.is_file():
            raise InvalidInput(f"{src} is not a file", code="INVALID_INPUT")
    return pairs


class HashCache:
    """Digests of local files computed before, keyed by what ``stat`` says.

    A file whose path, device, inode, size, mtime and ctime (nanoseconds) are
    unchanged has unchanged bytes for all practical purposes (git's index and
    DVC rely on the same), so re-pushing it reads nothing. Entries are small
    files written atomically, safe for concurrent pushes. The server still
    verifies every uploaded byte against its digest; this cache only decides
    what to ask the server for.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def _key(path: Path, st: os.stat_result) -> str:
        raw = (
            f"{path.resolve()}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}"
            f"\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
        )
        return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()

    def _entry(self, key: str) -> Path:
        return self.root / "hashes" / key[:2] / key

    def get(self, path: Path, st: os.stat_result) -> str | None:
        """The remembered digest of ``path`` if its stat still matches."""
        try:
            digest = self._entry(self._key(path, st)).read_text("ascii").strip()
            return validate_digest(digest)
        except (OSError, ValueError, InvalidInput):
            return None

    def put(self, path: Path, st: os.stat_result, digest: str) -> None:
        """Remember ``digest`` for ``path`` as it was when ``st`` was taken."""
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_WINDOW_NS:
            return
        entry = self._entry(self._key(path, st))
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".part-")
            with _removed_on_error(tmp):
                with os.fdopen(fd, "w", encoding="ascii") as f:
                    f.write(digest)
                os.replace(tmp, entry)
        except OSError:
            # The cache is an optimisation: a read-only or full cache directory
            # must not fail a push.
            return


def prepare(
    pairs: list[tuple[Path, str]],
    progress: Progress | None = None,
    hashes: HashCache | None = None,
) -> list[LocalFile]:
    """Digest (from ``hashes``, or by reading) and media type of every file.

    Big files with no remembered digest are left unhashed (``digest=None``):
    they are hashed during their upload, which reads them only once.
    """
    out = []
    for src, name in pairs:
        st = src.stat()
        digest = hashes.get(src, st) if hashes else None
        size = st.st_size
        if digest is not None:
            if progress:
                progress(size)
        elif size < STREAM_HASH_MIN or hashes is None:
            digest, size = hash_file(src, progress)
            if hashes:
                hashes.put(src, st, digest)
        elif progress:
            progress(size)
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        out.append(LocalFile(src, name, digest, size, media))
    return out


def check_stored_digest(stored: str, local: str) -> str:
    """``stored`` if it equals the digest computed locally, else DIGEST_MISMATCH
    (the bytes changed on the way; the server keeps them only under their own
    digest, so nothing wrong became visible)."""
    if stored != local:
        raise IntegrityError(
            "the server stored different bytes than were read here",
            code="DIGEST_MISMATCH",
            details={"expected": local, "actual": stored},
        )
    return stored


def iter_file(path: Path, progress: Progress | None = None) -> Iterator[bytes]:
    """Stream a file's bytes."""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            if progress:
                progress(len(chunk))
            yield chunk


def safe_destination(dest: Path, logical: str) -> Path:
    """Where a logical path lands under ``dest``; never outside it."""
    validate_file_path(logical)
    root = dest.resolve()
    target = (root / logical).resolve()
    if root != target and root not in target.parents:
        raise InvalidInput(f"path {logical!r} escapes the destination", code="INVALID_PATH")
    return target


class BlobCache:
    """Blobs pulled before, kept by digest and verified on the way in."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, digest: str) -> Path:
        """Where a cached blob lives."""
        validate_digest(digest)
        return self.root / "sha256" / digest[:2] / digest

    def entries(self) -> list[tuple[str, int, float]]:
        """Every cached blob as (digest, size, mtime), newest first."""
        found = []
        for p in (self.root / "sha256").glob("*/*"):
            if p.name.startswith("."):
                continue  # a download in progress
            with contextlib.suppress(OSError):
                st = p.stat()
                found.append((p.name, st.st_size, st.st_mtime))
        return sorted(found, key=lambda e: e[2], reverse=True)

    def clear(self) -> tuple[int, int]:
        """Remove every cached blob and remembered digest; (files, bytes) removed.

        Pulled copies are unaffected; pulls made with ``link=True`` keep their
        bytes too (only the cache's name for them goes).
        """
        files = size = 0
        for sub in ("sha256", "hashes"):
            for p in sorted((self.root / sub).glob("**/*"), reverse=True):
                with contextlib.suppress(OSError):
                    if p.is_dir() and not p.is_symlink():
                        p.rmdir()
                        continue
                    n = p.stat().st_size
                    p.unlink()
                    files += 1
                    size += n
            with contextlib.suppress(OSError):
                (self.root / sub).rmdir()
        return files, size

    def get(self, digest: str, size: int) -> Path | None:
        """The cached file if present with the right size."""
        p = self.path_for(digest)
        try:
            if p.stat().st_size == size:
                return p
        except FileNotFoundError:
            return None
        return None

    def put(self, digest: str, size: int, fill: Fill) -> Path:
        """Add a blob of ``size`` bytes to the cache: ``fill`` writes them into
        the sink it is given (a download, say); the digest is verified before
        the entry becomes visible."""
        final = self.path_for(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".part-")
        with _removed_on_error(tmp):
            actual = _write_hashed(fd, size, fill)
            if actual != digest:
                raise IntegrityError(
                    "downloaded bytes do not match their digest",
                    code="DIGEST_MISMATCH",
                    details={"expected": digest, "actual": actual},
                )
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        return final


def verify_file(path: Path, digest: str, progress: Progress | None = None) -> bool:
    """True if ``path``'s bytes hash to ``digest`` (read only, nothing written)."""
    return hash_file(path, progress)[0] == digest


def link_into(cached: Path, dst: Path) -> bool:
    """Place ``cached`` at ``dst`` as a hard link, atomically; False if the
    filesystem cannot (another device, no link support), so the caller copies.

    Only for ``pull(..., link=True)``: the destination then shares the cache's
    read-only inode, so it costs no space, but whoever may write it anyway
    (root) changes the cache and every other linked pull with it.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.link-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.link(cached, tmp)
    except OSError:
        return False
    with _removed_on_error(tmp):
        os.replace(tmp, dst)
    # rename(2) does nothing when both names are links to one inode (a second
    # pull of the same file): the temporary name is then still there.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    return True


FICLONE = 0x40049409
"""``ioctl`` request that makes a file share another's extents, copy-on-write
(Btrfs, XFS, bcachefs, ZFS 2.2+, APFS-like filesystems; Linux only)."""


def copy_into(cached: Path, dst: Path) -> None:
    """Place an independent copy of ``cached`` at ``dst``, atomically.

    A reflink (``FICLONE``) where the filesystem supports it, which shares the
    blocks until either side is written and so costs neither time nor space;
    otherwise the kernel copies (``copy_file_range``, falling back to reads
    and writes). The copy is the user's own file (mode from the umask), so
    editing it never touches the cache or another pull. The caller verified
    ``cached`` just before.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.part-{os.getpid()}-{time.monotonic_ns()}"
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with _removed_on_error(tmp):
        try:
            with open(cached, "rb", buffering=0) as src:
                if not _reflink(src.fileno(), out):
                    _kernel_copy(src.fileno(), out, os.fstat(src.fileno()).st_size)
        finally:
            os.close(out)
        os.replace(tmp, dst)


def copy_checked_into(cached: Path, dst: Path, digest: str, progress: Progress | None) -> bool:
    """Like :func:`copy_into`, hashing what is placed: False (``dst``
    untouched) if those bytes do not hash to ``digest``. One read of the
    cache entry serves both the check and the copy, where verifying first and
    then copying would read it twice."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.part-{os.getpid()}-{time.monotonic_ns()}"
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with _removed_on_error(tmp):
        with open(cached, "rb", buffering=0) as src:
            if _reflink(src.fileno(), out):
                os.close(out)
                ok = hash_file(tmp, progress)[0] == digest
            else:
                size = os.fstat(src.fileno()).st_size
                ok = (
                    _write_hashed(out, size, lambda sink: read_into(sink, src.readinto, progress))
                    == digest
                )
        if not ok:
            os.unlink(tmp)
            return False
        os.replace(tmp, dst)
    return True


def _reflink(src: int, dst: int) -> bool:
    try:
        import fcntl

        fcntl.ioctl(dst, FICLONE, src)
    except (ImportError, OSError):
        return False  # not Linux, another filesystem, or one without reflinks
    return True


def _kernel_copy(src: int, dst: int, size: int) -> None:
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(src, dst, size - done)
            if n == 0:
                break
            done += n
        return
    except (AttributeError, OSError):
        pass  # no copy_file_range here (old kernel, another OS, some filesystems)
    os.lseek(src, done, os.SEEK_SET)
    os.lseek(dst, done, os.SEEK_SET)
    while chunk := os.read(src, CHUNK):
        os.write(dst, chunk)


@contextlib.contextmanager
def _removed_on_error(tmp: str | Path) -> Iterator[None]:
    """Delete the temporary file ``tmp`` if the block raises anything
    (interrupts too), then let the exception go on."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def feed(sink: HashingSink, path: Path, progress: Progress | None = None) -> None:
    """Read a file into ``sink``, straight into its buffers."""
    with open(path, "rb", buffering=0) as f:
        read_into(sink, f.readinto, progress)


def read_into(
    sink: HashingSink, readinto: Callable[[memoryview], int | None], progress: Progress | None
) -> None:
    """Call ``readinto`` on the sink's free buffer space until it returns 0
    (end of stream), reporting each read to ``progress``."""
    while n := readinto(sink.buffer()):
        sink.filled(n)
        if progress:
            progress(n)


def pour(sink: HashingSink, chunks: Iterable[bytes], progress: Progress | None) -> None:
    """Write every chunk into ``sink``, reporting each to ``progress``."""
    for chunk in chunks:
        sink.write(chunk)
        if progress:
            progress(len(chunk))


def _write_hashed(fd: int, size: int, fill: Fill) -> str:
    """Let ``fill`` write about ``size`` bytes to the open file ``fd``, then
    close it; the SHA-256 hex digest of what was written. Big files are hashed
    and written off this thread, with direct I/O where possible
    (``modelyard.hashio``)."""
    try:
        sink = HashingSink(fd, pipelined=size >= PIPELINE_MIN)
        try:
            fill(sink)
            return sink.finish()
        except BaseException:
            sink.abort()
            raise
    finally:
        os.close(fd)
