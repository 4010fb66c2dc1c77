"""Deleting for good, and collecting what that frees: ``modelyard delete`` (a
version or a whole model, through the registry like any command) and
``modelyard gc`` (an operator command run where the database and the blob
store are reachable, like ``db upgrade``; safe beside live servers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelyard.cli.common import connect, out, print_json
from modelyard.cli.options import DEFAULT_URL, JsonOpt, RegistryOpt, TokenOpt
from modelyard.domain.errors import InvalidInput
from modelyard.domain.references import parse_reference


def delete(
    ref: Annotated[
        str, typer.Argument(help="A version (fraud/3, fraud@old) or, with --model, a model.")
    ],
    model: Annotated[
        bool, typer.Option("--model", help="Delete the whole model and all its versions.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Even if published (or with published versions).")
    ] = False,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a version (or a model) for good: admin only, audited. Its blobs
    are freed by the next `modelyard gc` when nothing else lists them."""
    r = parse_reference(ref)
    names_version = r.version is not None or r.alias is not None
    if model == names_version:
        raise InvalidInput(
            "name a version (name/3, name@alias), or a bare model name with --model",
            code="INVALID_REFERENCE",
            details={"ref": ref},
        )
    with connect(registry, token) as reg:
        if model:
            reg.delete_model(r.name, namespace=r.namespace, force=force)
        else:
            reg.delete_version(ref, force=force)
    what = f"{r.namespace}/{r.name}" if model else ref
    if as_json:
        print_json({"deleted": what, "model": model})
    else:
        out().print(f"deleted {what}", highlight=False)


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would be freed.")
    ] = False,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            min=0,
            help="Seconds a blob or upload is left alone after it was stored or started.",
        ),
    ] = 3600.0,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data directory [env MODELYARD_DATA_DIR].")
    ] = None,
    db: Annotated[str | None, typer.Option(help="Database URL [env MODELYARD_DB].")] = None,
    store: Annotated[str | None, typer.Option(help="Blob store URL [env MODELYARD_STORE].")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete blobs no version lists and uploads abandoned past the grace period.

    Runs against the database and blob store (as the server's settings name
    them), beside live servers: a version committed meanwhile keeps its blobs.
    """
    from modelyard.composition import build_services
    from modelyard.domain.identity import Principal
    from modelyard.settings import Settings

    overrides: dict[str, Any] = {
        k: v for k, v in {"data_dir": data_dir, "db": db, "store": store}.items() if v is not None
    }
    with build_services(Settings(**overrides)) as services:
        report = services.gc.collect(actor=Principal.local("gc"), grace_s=grace, dry_run=dry_run)
    if as_json:
        print_json(report.to_dict())
        return
    verb = "would free" if dry_run else "freed"
    line = f"{verb} {report.blobs} blob(s), {_size(report.bytes)} (of {report.scanned} stored)"
    if report.kept:
        line += f"; {report.kept} kept: a version listing them committed meanwhile"
    if report.uploads is not None:
        line += f"; {report.uploads} abandoned upload(s) swept"
    out().print(line, highlight=False)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def register(app: typer.Typer) -> None:
    """Add ``delete`` and ``gc`` to the ``modelyard`` app."""
    app.command()(delete)
    app.command()(gc)
