"""Local side of transfers: hashing, the digest-verified cache, safe destinations."""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from modelyard.domain.errors import IntegrityError, InvalidInput
from modelyard.domain.names import validate_digest, validate_file_path

CHUNK = 1 << 20
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A file to push: where it is and what it will be called in the version."""

    source: Path
    path: str
    digest: str
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


def prepare(pairs: list[tuple[Path, str]], progress: Progress | None = None) -> list[LocalFile]:
    """Hash every file and guess its media type."""
    out = []
    for src, name in pairs:
        digest, size = hash_file(src, progress)
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        out.append(LocalFile(src, name, digest, size, media))
    return out


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

    def get(self, digest: str, size: int) -> Path | None:
        """The cached file if present with the right size."""
        p = self.path_for(digest)
        try:
            if p.stat().st_size == size:
                return p
        except FileNotFoundError:
            return None
        return None

    def put_stream(self, digest: str, chunks: Iterator[bytes]) -> Path:
        """Write a downloaded blob into the cache, verifying its digest first."""
        final = self.path_for(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".part-")
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    h.update(chunk)
                    f.write(chunk)
            if h.hexdigest() != digest:
                raise IntegrityError(
                    "downloaded bytes do not match their digest",
                    code="DIGEST_MISMATCH",
                    details={"expected": digest, "actual": h.hexdigest()},
                )
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return final


def copy_verified(src: Path, dst: Path, digest: str, progress: Progress | None = None) -> None:
    """Copy ``src`` to ``dst`` atomically, checking the digest of what was copied."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.part-")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in iter_file(src, progress):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != digest:
            # A corrupted cache entry is dropped so the next pull fetches it again.
            with contextlib.suppress(OSError):
                src.unlink()
            raise IntegrityError(
                "cached bytes do not match their digest; cache entry removed",
                code="DIGEST_MISMATCH",
                details={"digest": digest},
            )
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
