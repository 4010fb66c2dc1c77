"""The local download cache: ``cache ls`` and ``cache clear``.

Every pull keeps each blob it fetched under ``CACHE/sha256/xx/DIGEST``
(read-only, verified on the way in and again before use), so pulling a file
again reads nothing over the wire; ``CACHE/hashes/`` remembers the digests of
pushed files by their stat, so pushing an unchanged file reads nothing. The
cache is ``--cache-dir`` / ``MODELYARD_CACHE_DIR``, else
``$XDG_CACHE_HOME/modelyard``, else ``~/.cache/modelyard``; it only grows
until cleared.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from modelyard.cli.common import out, print_json
from modelyard.cli.options import CacheDirOpt, JsonOpt

cache_app = typer.Typer(
    help="The local download cache: where it is, what it holds, clear it.", no_args_is_help=True
)


def _root(cache_dir: Path | None) -> Path:
    from modelyard.client.registry import default_cache_dir

    return cache_dir or default_cache_dir()


def _size(n: int) -> str:
    """Bytes for a person: ``512 B``, ``3.2 MiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


@cache_app.command("ls")
def cache_ls(
    cache_dir: CacheDirOpt = None,
    all_entries: Annotated[
        bool, typer.Option("--all", "-a", help="List every cached blob, not only the total.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Where the cache is, how many blobs it holds and their size."""
    from modelyard.client.transfer import BlobCache

    root = _root(cache_dir)
    entries = BlobCache(root).entries()
    total = sum(size for _, size, _ in entries)
    if as_json:
        print_json(
            {
                "path": str(root),
                "blobs": len(entries),
                "bytes": total,
                "entries": [{"digest": d, "size": s, "mtime": m} for d, s, m in entries],
            }
        )
        return
    console = out()
    console.print(
        f"{root}: {len(entries)} blobs, {_size(total)} ({total} bytes)",
        highlight=False,
        markup=False,
    )
    if all_entries and entries:
        table = Table("sha256", "size", "cached")
        for digest, size, mtime in entries:
            when = dt.datetime.fromtimestamp(mtime, dt.UTC).isoformat(timespec="seconds")
            table.add_row(digest, str(size), when)
        console.print(table)


@cache_app.command("clear")
def cache_clear(cache_dir: CacheDirOpt = None, as_json: JsonOpt = False) -> None:
    """Delete every cached blob and remembered digest (pulled files stay as they are)."""
    from modelyard.client.transfer import BlobCache

    root = _root(cache_dir)
    files, size = BlobCache(root).clear()
    if as_json:
        print_json({"path": str(root), "removed_files": files, "removed_bytes": size})
    else:
        out().print(f"{root}: removed {files} files, {_size(size)}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add ``cache`` to the ``modelyard`` app."""
    app.add_typer(cache_app, name="cache")
