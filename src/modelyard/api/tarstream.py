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


def tar_stream(files: Sequence[FileEntry], blobs: BlobReader, *, mtime: int) -> Iterator[bytes]:
    """Yield a POSIX (pax) tar of ``files``, reading each blob in chunks."""
    for f in files:
        info = tarfile.TarInfo(name=f.path)
        info.size = f.size
        info.mtime = mtime
        info.mode = 0o644
        info.type = tarfile.REGTYPE
        yield info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")
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
