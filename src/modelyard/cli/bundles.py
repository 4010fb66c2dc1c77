"""Bundles (issue 14): ``bundle create|edit|list|show|pin|pull|status`` and
``bundle alias set|delete|history``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from modelyard.cli.common import connect, out, print_json, progress_bar, run
from modelyard.cli.options import DEFAULT_URL, JsonOpt, RegistryOpt, TokenOpt

if TYPE_CHECKING:
    from modelyard.client.bundles import Readiness
    from modelyard.client.registry import Registry

bundle_app = typer.Typer(
    help="Bundles: pipelines of models (roles bound to references) that must fit together.",
    no_args_is_help=True,
)
BundleArg = Annotated[str, typer.Argument(help="NAME or ns/NAME, optionally @N or @latest")]
DestOpt = Annotated[Path, typer.Option("--dest", help="Directory: one subdirectory per role.")]


def _split(name: str) -> tuple[str, str]:
    namespace, _, bare = name.rpartition("/")
    return namespace or "default", bare


def _edges(specs: list[str]) -> list[dict[str, Any]]:
    """``from.out->to.in`` items, merged per (from, to) pair."""
    merged: dict[tuple[str, str], dict[str, str]] = {}
    for spec in specs:
        left, arrow, right = spec.partition("->")
        src, dot1, out_field = left.strip().partition(".")
        dst, dot2, in_field = right.strip().partition(".")
        if not (arrow and dot1 and dot2 and src and dst and out_field and in_field):
            raise typer.BadParameter(f"{spec!r}: expected ROLE.OUTPUT->ROLE.INPUT")
        merged.setdefault((src, dst), {})[out_field] = in_field
    return [{"from": s, "to": d, "mapping": m} for (s, d), m in merged.items()]


def _roles(items: list[str]) -> dict[str, str]:
    """``ROLE=REF`` items."""
    roles: dict[str, str] = {}
    for item in items:
        key, sep, ref = item.partition("=")
        if not sep or not key or not ref:
            raise typer.BadParameter(f"{item!r}: expected ROLE=REF")
        roles[key] = ref
    return roles


def _pinned(bv: dict[str, Any]) -> str:
    return f"pinned {bv['ref']}: " + ", ".join(f"{r}={m['ref']}" for r, m in bv["members"].items())


@bundle_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="NAME or ns/NAME")],
    role: Annotated[
        list[str], typer.Option("--role", help="ROLE=REF, e.g. detector=det@production")
    ],
    edge: Annotated[
        list[str] | None,
        typer.Option(
            "--edge", help="ROLE.OUTPUT->ROLE.INPUT, e.g. detector.boxes->classifier.rois"
        ),
    ] = None,
    description: Annotated[str, typer.Option(help="Bundle description.")] = "",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a bundle from roles bound to references and declared edges."""
    roles = _roles(role)
    namespace, bare = _split(name)
    edges = _edges(edge or [])
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.create_bundle(
            bare, roles, edges=edges, namespace=namespace, description=description
        ),
        lambda b: f"created bundle {b['namespace']}/{b['name']} ({len(b['roles'])} roles)",
    )


@bundle_app.command("list")
def list_(
    namespace: Annotated[str, typer.Option(help="Namespace.")] = "default",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a namespace's bundles."""

    def show(found: list[dict[str, Any]]) -> Table:
        table = Table("bundle", "roles", "latest version")
        for b in found:
            roles = ", ".join(f"{k}={v}" for k, v in b["roles"].items())
            table.add_row(f"{b['namespace']}/{b['name']}", roles, str(b["latest_version"]))
        return table

    run(registry, token, as_json, lambda reg: reg.list_bundles(namespace=namespace), show)


@bundle_app.command("show")
def show(
    ref: BundleArg,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a bundle version: the version each role pinned, and what alias
    moves broke in the bundle since its newest pin (``incompatible``)."""

    def fetch(reg: Registry) -> dict[str, Any]:
        handle = reg.bundle(ref)
        bv = handle.version()
        flags = reg.get_bundle(handle.name, namespace=handle.namespace)["incompatible"]
        return {**bv, "incompatible": flags}

    def table(bv: dict[str, Any]) -> Table:
        t = Table("role", "version", "format", "files", title=bv["ref"])
        for role, m in bv["members"].items():
            t.add_row(role, m["ref"], str(m["format"] or "-"), str(m["file_count"]))
        if bv["incompatible"]:
            # Flagged (namespace policy bundle_breaks: flag) or forced moves.
            t.caption = "INCOMPATIBLE since the newest pin: " + " | ".join(
                f"{f['alias']} -> {f['ref']} by {f['actor']}"
                + (" (forced)" if f["forced"] else "")
                + ": "
                + "; ".join(m["problem"] for r in f["roles"] for m in r["mismatches"])
                for f in bv["incompatible"]
            )
        return t

    run(registry, token, as_json, fetch, table)


@bundle_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="NAME or ns/NAME")],
    force: Annotated[
        bool, typer.Option("--force", help="Delete even while aliases name its versions.")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a bundle with its versions and aliases (admin); the member
    versions stay. Refused while an alias names one of its versions unless --force."""

    def go(reg: Registry) -> dict[str, Any]:
        reg.delete_bundle(name, force=force, reason=reason)
        return {"deleted": name}

    run(registry, token, as_json, go, lambda d: f"deleted bundle {d['deleted']}")


@bundle_app.command("pin")
def pin(
    ref: BundleArg,
    accept_breaking: Annotated[
        bool,
        typer.Option("--accept-breaking", help="Let a breaking signature change through."),
    ] = False,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a bundle version pinning what every role names now (checked)."""
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.pin_bundle(ref, accept_breaking=accept_breaking),
        _pinned,
    )


@bundle_app.command("edit")
def edit(
    name: Annotated[str, typer.Argument(help="NAME or ns/NAME")],
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="ROLE=REF; the given roles replace all of them"),
    ] = None,
    edge: Annotated[
        list[str] | None,
        typer.Option("--edge", help="ROLE.OUTPUT->ROLE.INPUT; the given edges replace all"),
    ] = None,
    no_edges: Annotated[bool, typer.Option("--no-edges", help="Remove every edge.")] = False,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    accept_breaking: Annotated[
        bool,
        typer.Option("--accept-breaking", help="Let a breaking signature change through."),
    ] = False,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace a bundle's roles and/or edges and pin its next version with them
    (checked; earlier versions stay as they were)."""
    if no_edges and edge:
        raise typer.BadParameter("--edge and --no-edges exclude each other")
    edges = [] if no_edges else (_edges(edge) if edge else None)
    roles = _roles(role) if role else None
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.update_bundle(
            name,
            roles=roles,
            edges=edges,
            description=description,
            accept_breaking=accept_breaking,
        ),
        _pinned,
    )


alias_app = typer.Typer(
    help="Bundle aliases: pipe@production names a bundle version.", no_args_is_help=True
)
bundle_app.add_typer(alias_app, name="alias")


@alias_app.command("set")
def alias_set(
    ref: Annotated[str, typer.Argument(help="Bundle version: NAME@N, NAME/N or NAME@ALIAS")],
    alias: Annotated[str, typer.Argument(help="Alias name, e.g. production")],
    reason: Annotated[str, typer.Option(help="Why (kept in the alias history).")] = "",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point bundle alias ALIAS at the bundle version REF."""
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.set_bundle_alias(ref, alias, reason=reason),
        lambda bv: f"{bv['namespace']}/{bv['name']}@{alias} -> {bv['ref']}",
    )


@alias_app.command("delete")
def alias_delete(
    name: Annotated[str, typer.Argument(help="NAME or ns/NAME")],
    alias: Annotated[str, typer.Argument(help="Alias name")],
    reason: Annotated[str, typer.Option(help="Why (kept in the alias history).")] = "",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Remove a bundle alias (refused if the production policy protects it)."""
    with connect(registry, token) as reg:
        reg.delete_bundle_alias(name, alias, reason=reason)
    out().print(f"removed {name}@{alias}", highlight=False)


@alias_app.command("history")
def alias_history(
    name: Annotated[str, typer.Argument(help="NAME or ns/NAME")],
    alias: Annotated[str | None, typer.Option(help="Only this alias.")] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every move of a bundle's aliases, oldest first."""

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

    run(registry, token, as_json, lambda reg: reg.bundle_alias_history(name, alias=alias), table)


def _report(r: Readiness, as_json: bool) -> None:
    if as_json:
        print_json(r.to_dict())
    else:
        console = out()
        if r.loaded:
            console.print(f"{r.bundle}: loaded ({r.files} files verified in {r.dest})")
        else:
            console.print(
                f"{r.bundle}: NOT loaded in {r.dest} "
                f"({len(r.missing)} missing, {len(r.damaged)} damaged of {r.files} files)",
                highlight=False,
            )
            for m in r.missing:
                console.print(f"  missing  {m['role']}/{m['path']}  ({m['ref']})", highlight=False)
            for d in r.damaged:
                console.print(
                    f"  damaged  {d['role']}/{d['path']}  ({d['ref']}): {d['problem']}",
                    highlight=False,
                )
    if not r.loaded:
        raise typer.Exit(1)


@bundle_app.command("pull")
def pull(
    ref: BundleArg,
    dest: DestOpt,
    link: Annotated[bool, typer.Option("--link", help="Hard-link from the cache.")] = False,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download every member of a bundle version into DEST/<role>/, then verify."""
    from modelyard.client.registry import Registry

    with connect(registry, token) as reg, progress_bar(not as_json) as cb:
        assert isinstance(reg, Registry)
        report = reg.bundle(ref).pull(dest, link=link, callbacks=cb)
    _report(report, as_json)


@bundle_app.command("status")
def status(
    ref: BundleArg,
    dest: DestOpt,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Is the bundle version fully present and intact in DEST? (exit 1 if not)"""
    with connect(registry, token) as reg:
        report = reg.bundle(ref).ready(dest)
    _report(report, as_json)


def register(app: typer.Typer) -> None:
    """Add the ``bundle`` group to the ``modelyard`` app."""
    app.add_typer(bundle_app, name="bundle")


approval_app = typer.Typer(
    help="Approval requests to move a (protected) bundle alias.", no_args_is_help=True
)
bundle_app.add_typer(approval_app, name="approval")
NameArg = Annotated[str, typer.Argument(help="NAME or ns/NAME")]
IdArg = Annotated[int, typer.Argument(help="Request id")]
CommentOpt = Annotated[str, typer.Option(help="Comment kept with the review.")]


def _request_line(a: dict[str, Any]) -> str:
    return (
        f"request #{a['id']}: {a['namespace']}/{a['bundle']}@{a['alias']} -> {a['ref']} "
        f"{a['state']} (approvals: {', '.join(a['approvals']) or 'none'})"
    )


@approval_app.command("request")
def approval_request(
    ref: Annotated[str, typer.Argument(help="Bundle version: NAME@N or NAME/N")],
    alias: Annotated[str, typer.Argument(help="Alias to move, e.g. production")],
    comment: CommentOpt = "",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask reviewers to move bundle alias ALIAS to the bundle version REF."""
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.request_bundle_approval(ref, alias, comment=comment),
        _request_line,
    )


@approval_app.command("approve")
def approval_approve(
    name: NameArg,
    approval_id: IdArg,
    comment: CommentOpt = "",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a request; the move applies at the N-th distinct approval."""
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.approve_bundle_approval(name, approval_id, comment=comment),
        _request_line,
    )


@approval_app.command("reject")
def approval_reject(
    name: NameArg,
    approval_id: IdArg,
    comment: CommentOpt = "",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject a request (final)."""
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.reject_bundle_approval(name, approval_id, comment=comment),
        _request_line,
    )


@approval_app.command("cancel")
def approval_cancel(
    name: NameArg,
    approval_id: IdArg,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Withdraw one's own pending request."""
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.cancel_bundle_approval(name, approval_id),
        _request_line,
    )


@approval_app.command("list")
def approval_list(
    name: NameArg,
    state: Annotated[
        str, typer.Option(help="pending, applied, rejected, cancelled or all")
    ] = "pending",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A bundle's approval requests, newest first."""

    def table(found: list[dict[str, Any]]) -> Table:
        t = Table("id", "alias", "to", "from", "state", "requested by", "approvals")
        for a in found:
            t.add_row(
                str(a["id"]),
                a["alias"],
                a["ref"],
                str(a["alias_from"] or "-"),
                a["state"],
                a["requested_by"],
                ", ".join(a["approvals"]) or "-",
            )
        return t

    run(registry, token, as_json, lambda reg: reg.list_bundle_approvals(name, state=state), table)
