"""Stream a version's files as a tar archive without buffering whole files."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator, Sequence
from typing import Protocol

from modelyard.domain.entities import FileEntry

_BLOCK = 512


class BlobReader(Protocol):
    """Where the bytes come from (the blob store, as the service exposes it)."""

    def iter_range(self, digest: str) -> Iterator[bytes]:
        """The blob's bytes in chunks."""
        ...


def _header(f: FileEntry, mtime: int) -> bytes:
    info = tarfile.TarInfo(name=f.path)
    info.size = f.size
    info.mtime = mtime
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def tar_size(files: Sequence[FileEntry], *, mtime: int) -> int:
    """The exact length of :func:`tar_stream`'s output, from the manifest alone."""
    return sum(len(_header(f, mtime)) + f.size + (-f.size) % _BLOCK for f in files) + 2 * _BLOCK


def tar_stream(files: Sequence[FileEntry], blobs: BlobReader, *, mtime: int) -> Iterator[bytes]:
    """Yield a POSIX (pax) tar of ``files``, reading each blob in chunks."""
    for f in files:
        yield _header(f, mtime)
        sent = 0
        for chunk in blobs.iter_range(f.digest):
            sent += len(chunk)
            yield chunk
        if sent != f.size:
            # The manifest and the blob disagree: fail loudly rather than emit a
            # tar whose members are shifted.
            raise RuntimeError(f"blob {f.digest} is {sent} bytes, manifest says {f.size}")
        pad = (-f.size) % _BLOCK
        if pad:
            yield b"\0" * pad
    yield b"\0" * (2 * _BLOCK)
