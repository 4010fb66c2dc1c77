"""Versions and their files: ``push``, ``pull``, ``ls``, ``show``, ``search``,
``tag``, ``alias set|show|history`` and ``version allow-pickle``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from modelyard.cli.common import (
    connect,
    human,
    key_values,
    metrics,
    out,
    print_json,
    progress_bar,
    run,
)
from modelyard.cli.families import WithVariantsOpt, promote, variant_formats
from modelyard.cli.options import DEFAULT_URL, JsonOpt, RegistryOpt, TokenOpt

RefArg = Annotated[str, typer.Argument(help="name/3, name@alias, ns/name@latest")]


def push(
    name: Annotated[str, typer.Argument(help="Model name, optionally namespace/name.")],
    path: Annotated[Path, typer.Argument(help="A file or a directory to push.")],
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    framework: Annotated[str | None, typer.Option(help="e.g. pytorch, onnx, sklearn")] = None,
    format: Annotated[str | None, typer.Option("--format", help="e.g. onnx, tflite")] = None,
    description: Annotated[str, typer.Option(help="Version description.")] = "",
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="key=value, repeatable")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value, repeatable")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="key=value, repeatable")
    ] = None,
    parent: Annotated[str | None, typer.Option(help="Reference of the parent version.")] = None,
    relation: Annotated[str | None, typer.Option(help="converted, quantized, ...")] = None,
    source_run: Annotated[str | None, typer.Option(help="Training run id.")] = None,
    allow_empty: Annotated[
        bool,
        typer.Option("--allow-empty", help="Create the version even if PATH holds no files."),
    ] = False,
    reference_data: Annotated[
        Path | None,
        typer.Option(
            "--reference-data",
            help="CSV sample of the inputs (header row = feature names, in the input's "
            "column order): stored as the version's reference statistics for drift.",
        ),
    ] = None,
    reference_input: Annotated[
        str,
        typer.Option(help="The input tensor the --reference-data columns belong to."),
    ] = "input",
    categorical: Annotated[
        list[str] | None,
        typer.Option(help="A --reference-data column holding category codes (repeatable)."),
    ] = None,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait",
            help="Return the version at once, draft while the registry still verifies "
            "files sent straight to its object store (default: wait until it is ready).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Push a file or directory as a new version of NAME.

    With --reference-data the version also gets reference statistics of its
    inputs (quantile bins per numeric column, frequencies per categorical one)
    that `modelyard serve` compares live traffic against.
    """
    namespace, _, model = name.rpartition("/")
    stats = None
    if reference_data is not None:
        from modelyard.client.reference_stats import compute_reference_stats, read_csv_sample

        stats = compute_reference_stats(
            read_csv_sample(reference_data),
            input=reference_input,
            categorical=categorical or (),
        )
    with connect(registry, token) as reg, progress_bar(not as_json) as cb:
        v = reg.push(
            model,
            path,
            namespace=namespace or "default",
            framework=framework,
            format=format,
            description=description,
            metrics=metrics(metric),
            params=key_values(param, "param"),
            tags=key_values(tag, "tag"),
            parent=parent,
            relation=relation,
            lineage={"source_run": source_run} if source_run else None,
            allow_empty=allow_empty,
            callbacks=cb,
            reference_stats=stats,
            wait=not no_wait,
        )
    if as_json:
        print_json(v.raw)
    else:
        waiting = f", {len(v.pending_files)} being verified" if v.pending_files else ""
        out().print(
            f"pushed [bold]{v.ref}[/bold] ({len(v.files or [])} files, "
            f"{v.total_size} bytes, state {v.state}{waiting})"
        )


def pull(
    ref: RefArg,
    dest: Annotated[Path, typer.Argument(help="Destination directory.")] = Path("."),
    link: Annotated[
        bool,
        typer.Option(
            "--link",
            help="Hard-link the files from the download cache instead of copying them "
            "(no second copy on disk, but the files are the cache's, read-only).",
        ),
    ] = False,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download a version's files into DEST (digest-verified, cached; each file a copy)."""
    with connect(registry, token) as reg, progress_bar(not as_json) as cb:
        v, target = reg.pull_version(ref, dest, link=link, callbacks=cb)
    if as_json:
        print_json({"ref": v.ref, "dest": str(target), "files": v.files})
    else:
        out().print(f"pulled [bold]{v.ref}[/bold] into {target}")


def version_table(versions: list[Any]) -> Table:
    """Versions as a table, one row each."""
    table = Table("ref", "state", "framework", "format", "aliases", "metrics", "size", "created")
    for v in versions:
        table.add_row(
            v.ref,
            v.state,
            v.framework or "",
            v.format or "",
            ",".join(v.aliases),
            " ".join(f"{k}={val:g}" for k, val in sorted(v.metrics.items())),
            str(v.total_size),
            v.created_at,
        )
    return table


def _model_table(models: list[Any]) -> Table:
    table = Table("model", "latest", "tags", "description", "updated")
    for m in models:
        table.add_row(
            f"{m.namespace}/{m.name}",
            str(m.latest_version or ""),
            " ".join(f"{k}={v}" for k, v in sorted(m.tags.items())),
            m.description,
            m.updated_at,
        )
    return table


def _raw(items: list[Any]) -> list[Any]:
    return [i.raw for i in items]


def ls(
    name: Annotated[str | None, typer.Argument(help="List this model's versions.")] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
) -> None:
    """List models, or the versions of NAME."""
    if name is None:
        run(
            registry,
            token,
            as_json,
            lambda reg: list(reg.search_models(limit=limit)),
            _model_table,
            to_json=_raw,
        )
        return
    namespace, _, model = name.rpartition("/")
    run(
        registry,
        token,
        as_json,
        lambda reg: [
            v
            for _, v in zip(
                range(limit),
                reg.list_versions(model, namespace=namespace or "default"),
                strict=False,
            )
        ],
        version_table,
        to_json=_raw,
    )


def show(
    ref: RefArg,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one version with its files, metrics and lineage."""
    with connect(registry, token) as reg:
        v = reg.get_version(ref)
    if as_json:
        print_json(v.raw)
        return
    console = out()
    console.print(
        f"[bold]{v.ref}[/bold]  state {v.state}  framework {human(v.framework)}  "
        f"format {human(v.format)}  aliases {human(v.aliases)}",
        highlight=False,
    )
    for label, value in (
        ("metrics", v.metrics),
        ("params", v.params),
        ("tags", v.tags),
        ("lineage", v.lineage),
    ):
        console.print(f"{label}: {human(value)}", highlight=False, markup=False)
    found = v.pickle_exception
    if found is not None:
        console.print(
            f"pickle exception: by {found['by']} at {found['at']}: {found['reason']}",
            highlight=False,
            markup=False,
        )
    table = Table("path", "size", "sha256", "media type", title="files")
    for f in v.model_files:
        table.add_row(f["path"], str(f["size"]), f["digest"][:16], f["media_type"])
    console.print(table)
    if v.resources:
        # Listed apart from the weights (issue 14): files under resources/.
        res = Table("name", "size", "sha256", "media type", title="resources")
        for f in v.resources:
            res.add_row(f["name"], str(f["size"]), f["digest"][:16], f["media_type"])
        console.print(res)
    if v.pending_files:
        # A draft waiting for the registry to verify direct uploads (issue 13).
        pend = Table("path", "sha256", "verification", "error", title="waiting for verification")
        for p in v.pending_files:
            err = p.get("error") or {}
            pend.add_row(p["path"], p["digest"][:16], p["state"], str(err.get("code") or ""))
        console.print(pend)


def search(
    filter: Annotated[
        str | None, typer.Argument(help="Filter, e.g. \"tags.team = 'x' AND metrics.acc >= 0.9\"")
    ] = None,
    models: Annotated[bool, typer.Option("--models", help="Search models, not versions.")] = False,
    order_by: Annotated[str | None, typer.Option(help="e.g. 'metrics.acc DESC'")] = None,
    limit: Annotated[int, typer.Option(help="At most this many results.")] = 100,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search versions (or models) with the filter language."""
    if models:
        run(
            registry,
            token,
            as_json,
            lambda reg: list(reg.search_models(filter, order_by=order_by, limit=limit)),
            lambda found: "\n".join(f"{m.namespace}/{m.name}" for m in found),
            to_json=_raw,
        )
        return
    run(
        registry,
        token,
        as_json,
        lambda reg: list(reg.search_versions(filter, order_by=order_by, limit=limit)),
        version_table,
        to_json=_raw,
    )


def tag(
    ref: Annotated[str, typer.Argument(help="Version reference.")],
    tags: Annotated[list[str] | None, typer.Argument(help="key=value to set")] = None,
    delete: Annotated[
        list[str] | None, typer.Option("--delete", "-d", help="Tag key to remove, repeatable")
    ] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set or delete tags on a version."""
    changes = key_values(tags, "tag")
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.tag(ref, changes, delete=delete or []),
        lambda v: f"{v.ref} tags: {human(v.tags)}",
        to_json=lambda v: v.raw,
    )


class AliasGroup(TyperGroup):
    """``alias REF NAME`` stays the short form of ``alias set REF NAME``:
    anything that is not a subcommand's name is ``set``'s first argument (a
    reference is never a bare ``set`` or ``show``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Insert ``set`` before a reference given without a subcommand."""
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["set", *args]
        return super().parse_args(ctx, args)


alias_app = typer.Typer(
    cls=AliasGroup,
    help="Aliases: set (also `alias REF NAME`), show and history.",
    no_args_is_help=True,
)


@alias_app.command("set")
def alias_set(
    ref: Annotated[str, typer.Argument(help="Version reference, e.g. fraud/3")],
    name: Annotated[str, typer.Argument(help="Alias name, e.g. production")],
    reason: Annotated[str, typer.Option(help="Why (kept in the alias history).")] = "",
    with_variants: WithVariantsOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Move even if it breaks a bundle following the alias (admins)."
        ),
    ] = False,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point alias NAME at the version REF; with --with-variants, each chosen
    variant's model's NAME at that variant too, in one change."""
    formats = variant_formats(with_variants)
    if formats and force:
        raise typer.BadParameter("--force moves one alias; it is not combined with --with-variants")
    if formats:
        promote(ref, "alias", formats, registry, token, as_json, alias=name, reason=reason)
        return
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.set_alias(ref, name, reason=reason, force=force),
        lambda v: f"{v.namespace}/{v.model}@{name} -> {v.ref}",
        to_json=lambda v: v.raw,
    )


@alias_app.command("show")
def alias_show(
    ref: Annotated[str, typer.Argument(help="name@alias, e.g. fraud@production")],
    at: Annotated[
        str | None, typer.Option(help="The time to look at (RFC 3339 or µs); default now.")
    ] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where an alias points (now, or --at a past time) and who moved it there."""
    from modelyard.cli import governance

    with connect(registry, token) as reg:
        governance.show_alias(reg, ref, at, as_json)


@alias_app.command("history")
def alias_history(
    model: Annotated[
        str, typer.Argument(help="NAME or ns/NAME (NAME@ALIAS: only that alias's moves)")
    ],
    alias: Annotated[str | None, typer.Option(help="Only this alias.")] = None,
    newest_first: Annotated[
        bool, typer.Option("--newest-first", help="Newest move first (default: oldest).")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most this many moves (default: all).")
    ] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The recorded moves of a model's aliases: who moved which alias from
    which version to which, when and why (fetched page by page)."""

    def table(moves: list[dict[str, Any]]) -> Table:
        t = Table("alias", "from", "to", "actor", "at", "reason")
        for m in moves:
            t.add_row(
                m["alias"],
                str(m["from_version"] or "-"),
                str(m["to_version"] or "-"),
                m["actor"],
                m["at"],
                m["reason"],
            )
        return t

    run(
        registry,
        token,
        as_json,
        lambda reg: list(
            reg.alias_history(model, alias=alias, newest_first=newest_first, limit=limit)
        ),
        table,
    )


version_app = typer.Typer(help="One version's admin settings: allow-pickle.", no_args_is_help=True)


@version_app.command("allow-pickle")
def allow_pickle(
    ref: Annotated[str, typer.Argument(help="Version reference, e.g. fraud/3")],
    reason: Annotated[
        str | None,
        typer.Option(help="Why these pickle files may be unpickled (required to record)."),
    ] = None,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Revoke the version's exception instead.")
    ] = False,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record (or --revoke) an admin's audited exception letting `modelyard
    serve` unpickle the version's pickle files.

    The exception is bound to the pickle files' sha256 now: it never covers
    other bytes. Admin only; recording and revoking are in the audit log
    (version.pickle_exception_recorded / _revoked). A server already serving
    the version keeps it until its next load of it (a swap or a restart),
    which a revoked exception refuses.
    """
    if revoke == (reason is not None):
        raise typer.BadParameter("give --reason TEXT to record, or --revoke (not both)")

    def call(reg: Any) -> Any:
        return reg.revoke_pickle(ref) if revoke else reg.allow_pickle(ref, reason or "")

    def text(v: Any) -> Text:
        # Text, not markup: the reason is the admin's own words.
        found = v.pickle_exception
        if found is None:
            return Text(f"{v.ref}: no pickle exception (model servers refuse its pickles)")
        files = ", ".join(sorted(found["digests"]))
        return Text(
            f"{v.ref}: pickle exception by {found['by']} at {found['at']} for {files}: "
            f"{found['reason']}"
        )

    run(registry, token, as_json, call, text, to_json=lambda v: v.raw)


def register(app: typer.Typer) -> None:
    """Add these commands to the ``modelyard`` app."""
    for fn in (push, pull, ls, show, search, tag):
        app.command()(fn)
    app.add_typer(alias_app, name="alias")
    app.add_typer(version_app, name="version")
