"""Deleting for good, and collecting what that frees: ``modelyard delete`` (a
version or a whole model, through the registry like any command) and
``modelyard gc`` (an operator command run where the database and the blob
store are reachable, like ``db upgrade``; safe beside live servers).

The same kind of operator commands keep a registry intact and bring it back:
``modelyard fsck`` (check, and repair blobs from a backup), ``modelyard
backup DEST`` and ``modelyard restore-backup SRC`` (onto a fresh machine, possibly
another database or blob store backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelyard.cli.common import EXIT_FAILED, connect, out, print_json
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
        Path | None, typer.Option("--data-dir", help="Data directory (env MODELYARD_DATA_DIR).")
    ] = None,
    db: Annotated[str | None, typer.Option(help="Database URL (env MODELYARD_DB).")] = None,
    store: Annotated[str | None, typer.Option(help="Blob store URL (env MODELYARD_STORE).")] = None,
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


DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (env MODELYARD_DATA_DIR).")
]
DbOpt = Annotated[str | None, typer.Option(help="Database URL (env MODELYARD_DB).")]
StoreOpt = Annotated[str | None, typer.Option(help="Blob store URL (env MODELYARD_STORE).")]


def _settings(data_dir: Path | None, db: str | None, store: str | None) -> Any:
    from modelyard.settings import Settings

    overrides: dict[str, Any] = {
        k: v for k, v in {"data_dir": data_dir, "db": db, "store": store}.items() if v is not None
    }
    return Settings(**overrides)


def fsck(
    repair_from: Annotated[
        str | None,
        typer.Option(
            "--repair-from",
            metavar="BACKUP",
            help="A backup (directory or s3://bucket/prefix) to copy damaged blobs from.",
        ),
    ] = None,
    no_hash: Annotated[
        bool, typer.Option("--no-hash", help="Check presence and sizes only (no reading).")
    ] = False,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the registry: every listed blob is stored and hashes to its digest,
    every alias and manifest points at something real. Exits 1 while damage
    remains; with --repair-from, damaged blobs are copied back from a backup."""
    from modelyard.composition import build_services, open_backup
    from modelyard.domain.identity import Principal

    settings = _settings(data_dir, db, store)
    with build_services(settings) as services:
        source = open_backup(settings, repair_from, create=False) if repair_from else None
        report = services.fsck.check(
            actor=Principal.local("fsck"),
            repair_from=source.blobs if source is not None else None,
            repair_source=source.url if source is not None else None,
            verify_bytes=not no_hash,
        )
    if as_json:
        print_json(report.to_dict())
    else:
        console = out()
        console.print(
            f"{report.listed} blob(s) listed, {report.stored} stored "
            f"({report.unlisted} unlisted), {report.hashed} hashed "
            f"({_size(report.bytes_hashed)})",
            highlight=False,
        )
        for d in report.blobs:
            state = (
                "repaired"
                if d.repaired
                else f"NOT repaired: {d.repair_error}"
                if d.repair_error
                else "damaged"
            )
            console.print(f"{d.problem:8} {d.digest}  {state}", highlight=False)
            for user in d.used_by:
                console.print(f"         used by {user}", highlight=False)
        for p in report.pointers:
            console.print(f"broken   {p['kind']} {p['subject']}: {p['detail']}", highlight=False)
        console.print("ok" if report.ok else "DAMAGED", highlight=False)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def backup(
    dest: Annotated[str, typer.Argument(help="A directory or s3://bucket/prefix.")],
    hold: Annotated[
        float,
        typer.Option(
            "--hold",
            min=1,
            help="Seconds garbage collection is held off at most (if the backup dies).",
        ),
    ] = 86400.0,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Back up the metadata (a consistent snapshot) and the blobs (only digests
    DEST lacks) into DEST. Safe beside live servers; gc waits for it."""
    from modelyard.composition import build_services, open_backup
    from modelyard.domain.identity import Principal

    settings = _settings(data_dir, db, store)
    with build_services(settings) as services:
        area = open_backup(settings, dest)
        report = services.backup.backup(
            area, actor=Principal.local("backup"), pg_bin=settings.pg_bin, hold_s=hold
        )
    if as_json:
        print_json(report.to_dict())
    else:
        out().print(
            f"backup {report.stamp} of {report.database} at revision {report.revision} "
            f"into {report.destination}: {report.blobs_copied} new blob(s) "
            f"({_size(report.bytes_copied)}) of {report.blobs_stored}",
            highlight=False,
        )
        for digest, code in report.blobs_failed.items():
            out().print(f"could not copy {digest}: {code} (run modelyard fsck)", highlight=False)
    if report.blobs_failed:
        raise typer.Exit(EXIT_FAILED)


def restore_backup(
    src: Annotated[str, typer.Argument(help="A backup: directory or s3://bucket/prefix.")],
    stamp: Annotated[
        str | None, typer.Option("--snapshot", help="Which backup (default: the latest).")
    ] = None,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore a backup into an empty database and a blob store (any backend:
    SQLite to PostgreSQL and a directory to S3 included)."""
    from modelyard.composition import restore_registry

    settings = _settings(data_dir, db, store)
    report = restore_registry(settings, src, stamp=stamp)
    if as_json:
        print_json(report.to_dict())
    else:
        out().print(
            f"restored {report.stamp} ({report.database_from}) into {report.database}: "
            f"{report.blobs.copied} blob(s) copied ({_size(report.blobs.bytes)}) "
            f"of {report.blobs.considered} listed",
            highlight=False,
        )
        for digest, code in report.blobs.failed.items():
            out().print(f"could not copy {digest}: {code}", highlight=False)
    if report.blobs.failed:
        raise typer.Exit(EXIT_FAILED)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def register(app: typer.Typer) -> None:
    """Add ``delete``, ``gc``, ``fsck``, ``backup`` and ``restore-backup`` to the app."""
    app.command()(delete)
    app.command()(gc)
    app.command()(fsck)
    app.command()(backup)
    # ``restore`` is the lifecycle command (an archived version back to ready).
    app.command("restore-backup")(restore_backup)
