"""Model families (issue 14): ``family``, ``variants``, ``ancestry`` and
``resource add|ls``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from modelyard.cli.common import connect, human, out, print_json, progress_bar, run
from modelyard.cli.options import DEFAULT_URL, JsonOpt, RegistryOpt, TokenOpt

if TYPE_CHECKING:
    from modelyard.client.families import FamilyInfo, FamilyPromotionInfo
    from modelyard.client.registry import Registry, VersionInfo

RefArg = Annotated[str, typer.Argument(help="name/3, name@alias, ns/name@latest")]


def family(
    ref: RefArg,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the family of REF as a tree: its original and every variant."""

    def show(f: FamilyInfo) -> Text:
        head = f"family of {f.of} (original {f.root or 'not visible'})"
        return Text("\n".join([head, *f.tree_lines()]))  # plain text: no markup in refs

    run(registry, token, as_json, lambda reg: reg.family(ref), show, to_json=lambda f: f.raw)


def _table(found: list[VersionInfo]) -> Table:
    table = Table("ref", "format", "relation", "parent", "state", "created")
    for v in found:
        table.add_row(
            v.ref,
            human(v.format),
            human(v.lineage.get("relation")),
            human(v.lineage.get("parent")),
            v.state,
            v.created_at,
        )
    return table


def variants(
    ref: RefArg,
    format: Annotated[str | None, typer.Option("--format", help="e.g. onnx, tflite")] = None,
    relation: Annotated[str | None, typer.Option(help="converted, quantized, pruned, ...")] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="Only the newest ready or published one.")
    ] = False,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the versions made from REF, newest first (e.g. its ONNX builds)."""

    def call(reg: Registry) -> list[VersionInfo]:
        if latest:
            return [reg.variant(ref, format=format, relation=relation)]
        return reg.variants(ref, format=format, relation=relation)

    run(registry, token, as_json, call, _table, to_json=lambda vs: [v.raw for v in vs])


def ancestry(
    ref: RefArg,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where REF comes from: its parent, the parent's parent, ... up to the original."""
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.ancestry(ref),
        _table,
        to_json=lambda vs: [v.raw for v in vs],
    )


WithVariantsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--with-variants",
        help="Formats (repeatable or comma-separated, e.g. onnx,tflite): the newest ready "
        "or published variant of each takes the same step, in one transaction.",
    ),
]


def variant_formats(items: list[str] | None) -> list[str]:
    """``--with-variants onnx,tflite --with-variants coreml`` as a list of formats."""
    return [f.strip() for item in items or [] for f in item.split(",") if f.strip()]


def promote(
    ref: str,
    action: str,
    formats: list[str],
    registry: str,
    token: str | None,
    as_json: bool,
    *,
    alias: str | None = None,
    reason: str = "",
    archive_previous: bool = False,
) -> None:
    """``publish``/``alias`` with ``--with-variants``: one family promotion,
    printed part by part."""

    def show(p: FamilyPromotionInfo) -> Text:
        lines = []
        for part in p.parts:
            v = part.version
            label = f" [{part.format}]" if part.format else ""
            if action == "publish":
                line = f"{v.ref}{label} is now {v.state}"
            else:
                line = f"{v.namespace}/{v.model}@{alias} -> {v.ref}{label}"
            lines.append(line + ("" if part.changed else " (unchanged)"))
        lines.append(f"one change: {p.change_id}")
        return Text("\n".join(lines))  # plain text: no markup in refs

    run(
        registry,
        token,
        as_json,
        lambda reg: reg.promote_family(
            ref,
            action=action,
            with_variants=formats,
            alias=alias,
            reason=reason,
            archive_previous=archive_previous,
        ),
        show,
        to_json=lambda p: p.raw,
    )


resource_app = typer.Typer(
    help="Resources of a version: components such as thresholds or label maps.",
    no_args_is_help=True,
)


@resource_app.command("add")
def resource_add(
    ref: RefArg,
    items: Annotated[list[str], typer.Argument(help="NAME=FILE, e.g. thresholds.json=./thr.json")],
    alias: Annotated[str | None, typer.Option(help="Move this alias to the new version.")] = None,
    reason: Annotated[str, typer.Option(help="Why (recorded with the alias move).")] = "",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Attach or replace resources of REF: creates the next version, sharing
    every other file (nothing else is uploaded)."""
    pairs: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"{item!r}: expected NAME=FILE")
        pairs[name] = Path(path)
    with connect(registry, token) as reg, progress_bar(not as_json) as cb:
        v = reg.add_resources(ref, pairs, alias=alias, reason=reason, callbacks=cb)
    if as_json:
        print_json(v.raw)
        return
    moved = f", {alias} -> it" if alias else ""
    out().print(
        f"created [bold]{v.ref}[/bold] (retuned from {v.lineage.get('parent')}, "
        f"{len(v.resources)} resources{moved})",
        highlight=False,
    )


@resource_app.command("ls")
def resource_ls(
    ref: RefArg,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the resources of REF."""

    def show(v: VersionInfo) -> Table:
        table = Table("name", "size", "sha256", "media type")
        for f in v.resources:
            table.add_row(f["name"], str(f["size"]), f["digest"][:16], f["media_type"])
        return table

    run(
        registry,
        token,
        as_json,
        lambda reg: reg.get_version(ref),
        show,
        to_json=lambda v: v.resources,
    )


def register(app: typer.Typer) -> None:
    """Add these commands to the ``modelyard`` app."""
    for fn in (family, variants, ancestry):
        app.command()(fn)
    app.add_typer(resource_app, name="resource")
