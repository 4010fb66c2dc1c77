"""Governance commands (issue 3): ``publish``, ``archive``, ``restore``,
``rollback``, ``policy set|show|check|delete``, ``approval
request|approve|reject|cancel|list|show`` and ``audit``.

``register(app)`` adds them to the main Typer app; connecting, printing and
error reporting are ``cli/common.py``'s, as for every other command group.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table
from rich.text import Text

from modelyard.cli.common import connect, out, print_json
from modelyard.cli.families import WithVariantsOpt, promote, variant_formats
from modelyard.cli.options import DEFAULT_URL, JsonOpt, RegistryOpt, TokenOpt

NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace.")]

policy_app = typer.Typer(
    help="Production policies: set, show, check, delete.", no_args_is_help=True
)
approval_app = typer.Typer(
    help="Approval requests: request, approve, reject, cancel, list, show.", no_args_is_help=True
)


def _lifecycle(
    action: str, ref: str, registry: str, token: str | None, as_json: bool, **kw: Any
) -> None:
    with connect(registry, token) as reg:
        v = getattr(reg, action)(ref, **kw)
        if as_json:
            print_json(v.raw)
        else:
            out().print(f"{v.ref} is now {v.state}")


def publish(
    ref: Annotated[str, typer.Argument(help="Version reference, e.g. fraud/3")],
    archive_previous: Annotated[
        bool, typer.Option("--archive-previous", help="Archive the other published versions.")
    ] = False,
    with_variants: WithVariantsOpt = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Publish a version (gated by the production policy); with --with-variants,
    the newest ready or published variant of each format too, in one change."""
    formats = variant_formats(with_variants)
    if formats:
        promote(
            ref,
            "publish",
            formats,
            registry,
            token,
            as_json,
            archive_previous=archive_previous,
        )
        return
    _lifecycle("publish", ref, registry, token, as_json, archive_previous=archive_previous)


def archive(
    ref: Annotated[str, typer.Argument(help="Version reference.")],
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Archive a version."""
    _lifecycle("archive", ref, registry, token, as_json)


def restore(
    ref: Annotated[str, typer.Argument(help="Version reference.")],
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore an archived (or unpublish a published) version to ready."""
    _lifecycle("restore", ref, registry, token, as_json)


def rollback(
    ref: Annotated[str, typer.Argument(help="name@alias, e.g. fraud@production")],
    reason: Annotated[str, typer.Option(help="Why (kept in the alias history).")] = "",
    expected: Annotated[
        int | None, typer.Option(help="Only if the alias points at this version now.")
    ] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move an alias back to its previous target."""
    with connect(registry, token) as reg:
        v = reg.rollback(ref, reason=reason, expected_version=expected)
        if as_json:
            print_json(v)
        else:
            out().print(f"{ref} -> {v['ref']}")


def show_alias(reg: Any, ref: str, at: str | None, as_json: bool) -> None:
    """``modelyard alias show name@alias [--at T]`` (called from ``alias``)."""
    found = reg.alias_at(ref, at)
    if as_json:
        print_json(found)
        return
    target = found["version"]
    move = found["move"]
    where = f"{found['namespace']}/{found['model']}@{found['alias']}"
    if target is None:
        out().print(f"{where} pointed at nothing at {found['at']}")
    else:
        out().print(
            f"{where} -> {target} at {found['at']} "
            f"(moved {move['at']} by {move['actor']}: {move['reason'] or '-'})"
        )


# -- policy -------------------------------------------------------------------


def _policy_from_options(
    file: Path | None,
    tag: list[str] | None,
    metadata: list[str] | None,
    signature: bool | None,
    metric: list[str] | None,
    fmt: list[str] | None,
    approvals: int | None,
    protect: list[str] | None,
    drift: list[str] | None = None,
) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"cannot read policy file: {exc}") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter("the policy file must hold a JSON object")
        rules.update(loaded)
    if tag:
        rules["required_tags"] = list(tag)
    if metadata:
        rules["required_metadata"] = list(metadata)
    if signature is not None:
        rules["require_signature"] = signature
    if metric:
        rules["metric_thresholds"] = list(metric)
    if fmt:
        rules["allowed_formats"] = list(fmt)
    if approvals is not None:
        rules["required_approvals"] = approvals
    if protect:
        rules["protected_aliases"] = list(protect)
    if drift:
        rules["drift_thresholds"] = _drift_option(drift)
    return rules


def _drift_option(items: list[str]) -> dict[str, Any]:
    """``["psi=0.1", "ks=0.15"]`` as ``{"psi": 0.1, "ks": 0.15}`` (the
    registry checks the keys and ranges)."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq:
            raise typer.BadParameter(f"--drift takes psi=NUMBER or ks=NUMBER, not {item!r}")
    return out


def _print_policy(p: dict[str, Any] | None) -> None:
    if p is None:
        out().print("no policy")
        return
    table = Table("rule", "value")
    for key, value in p.items():
        if value is None:
            continue
        if key == "metric_thresholds":
            value = ", ".join(t["text"] for t in value)
        elif key == "required_tags":
            value = ", ".join(k if v is None else f"{k}={v}" for k, v in value.items())
        elif key == "drift_thresholds":
            value = ", ".join(f"{k}={v:g}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        table.add_row(key, str(value))
    out().print(table)


@policy_app.command("set")
def policy_set(
    namespace: NamespaceOpt = "default",
    model: Annotated[str | None, typer.Option(help="Set the model's own policy.")] = None,
    file: Annotated[Path | None, typer.Option(help="JSON file with the rules.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="key=value or key, repeatable")
    ] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", help="Required metadata key, repeatable")
    ] = None,
    signature: Annotated[
        bool | None, typer.Option("--signature/--no-signature", help="Require a signature.")
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="e.g. 'accuracy >= 0.9', repeatable"),
    ] = None,
    fmt: Annotated[
        list[str] | None, typer.Option("--format", help="Allowed format, repeatable")
    ] = None,
    approvals: Annotated[int | None, typer.Option(help="Required approvals.")] = None,
    protect: Annotated[
        list[str] | None, typer.Option("--protect", help="Protected alias, repeatable")
    ] = None,
    compatible: Annotated[
        bool | None,
        typer.Option(
            "--compatible-signature/--any-signature",
            help="A protected alias moves only to a version whose signature is compatible "
            "with its current target's.",
        ),
    ] = None,
    bundle_breaks: Annotated[
        str | None,
        typer.Option(
            "--bundle-breaks",
            help="Namespace policy: a model alias move that breaks one of the namespace's "
            "bundles is refused ('refuse', the default) or applied and flagged ('flag').",
        ),
    ] = None,
    drift: Annotated[
        list[str] | None,
        typer.Option(
            "--drift",
            help="Model servers' drift threshold, psi=NUMBER or ks=NUMBER, repeatable "
            "(used when a version's statistics file sets none).",
        ),
    ] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace the production policy of a namespace (or of one model with --model)."""
    rules = _policy_from_options(
        file, tag, metadata, signature, metric, fmt, approvals, protect, drift
    )
    if compatible is not None:
        rules["compatible_signature"] = compatible
    if bundle_breaks is not None:
        rules["bundle_breaks"] = bundle_breaks
    with connect(registry, token) as reg:
        rec = reg.set_policy(rules, namespace=namespace, model=model)
        if as_json:
            print_json(rec)
        else:
            scope = namespace if model is None else f"{namespace}/{model}"
            out().print(f"policy of {scope} set")
            _print_policy(rec["policy"])


@policy_app.command("show")
def policy_show(
    namespace: NamespaceOpt = "default",
    model: Annotated[str | None, typer.Option(help="Show a model's policies.")] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a namespace's policy, or a model's own, its namespace's and the effective one."""
    with connect(registry, token) as reg:
        rec = reg.get_policy(namespace=namespace, model=model)
        if as_json:
            print_json(rec)
        elif model is None:
            _print_policy(rec["policy"])
        else:
            out().print("[bold]effective[/bold] (namespace policy extended by the model's)")
            _print_policy(rec["effective"])


@policy_app.command("check")
def policy_check(
    ref: Annotated[str, typer.Argument(help="Version reference, e.g. fraud/3")],
    alias: Annotated[
        str | None, typer.Option(help="Check a move of this alias instead of publishing.")
    ] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What a version still lacks to be published (or to receive --alias). Exit 1 if anything."""
    action = "alias" if alias else "publish"
    with connect(registry, token) as reg:
        result = reg.check_policy(ref, action=action, alias=alias)
    if as_json:
        print_json(result)
    elif result["ok"]:
        what = f"@{alias}" if alias else "publish"
        out().print(
            f"{result['ref']}: ready for {what}" + ("" if result["gated"] else " (not gated)")
        )
    else:
        table = Table("rule", "missing")
        for v in result["violations"]:
            table.add_row(v["rule"], v["message"])
        out().print(table)
    if not as_json and result.get("signature_diff"):
        out().print(Text("\n".join(signature_diff_lines(result["signature_diff"]))))
    if not result["ok"]:
        raise typer.Exit(1)


def _tensor_text(t: dict[str, Any]) -> str:
    shape = "?" if t.get("shape") is None else str(t["shape"])
    optional = ", optional" if t.get("optional") else ""
    return f"{t.get('dtype') or '?'} {shape}{optional}"


def signature_diff_lines(diff: dict[str, Any]) -> list[str]:
    """A policy check's signature diff as lines: each added, removed and
    changed input and output, then the changes that break consumers."""
    checked = "checked by the policy" if diff.get("checked") else "not a policy rule here"
    lines = [f"signature against {diff['against']} ({checked}):"]
    for part in ("inputs", "outputs"):
        kind = part[:-1]
        d = diff[part]
        lines += [f"  + {kind} {t['name']}: {_tensor_text(t)}" for t in d["added"]]
        lines += [f"  - {kind} {t['name']}: {_tensor_text(t)}" for t in d["removed"]]
        lines += [
            f"  ~ {kind} {c['name']}: {_tensor_text(c['before'])} -> {_tensor_text(c['after'])}"
            for c in d["changed"]
        ]
    if len(lines) == 1:
        lines.append("  no difference")
    lines += [f"  breaking: {b['problem']}" for b in diff["breaking"]]
    return lines


@policy_app.command("delete")
def policy_delete(
    namespace: NamespaceOpt = "default",
    model: Annotated[str | None, typer.Option(help="Delete the model's own policy.")] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Remove a namespace's (or model's own) policy."""
    with connect(registry, token) as reg:
        reg.delete_policy(namespace=namespace, model=model)
    out().print("policy removed")


# -- approvals ----------------------------------------------------------------


def _print_approval(a: dict[str, Any]) -> None:
    what = a["action"] + (f" @{a['alias']}" if a["alias"] else "")
    out().print(
        f"#{a['id']} {what} {a['ref']} [{a['state']}] requested by {a['requested_by']}; "
        f"approvals: {', '.join(a['approvals']) or '-'}"
    )


@approval_app.command("request")
def approval_request(
    ref: Annotated[str, typer.Argument(help="Version reference, e.g. fraud/3")],
    alias: Annotated[str | None, typer.Option(help="Point this alias at it once approved.")] = None,
    move_only: Annotated[
        bool, typer.Option("--move-only", help="Only move --alias (version already published).")
    ] = False,
    archive_previous: Annotated[bool, typer.Option("--archive-previous")] = False,
    comment: Annotated[str, typer.Option(help="Why.")] = "",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Request approval to publish REF (and/or move --alias to it)."""
    action = "alias" if move_only else "publish"
    _approval_call(
        registry,
        token,
        as_json,
        lambda reg: reg.request_approval(
            ref,
            action=action,
            alias=alias,
            archive_previous=archive_previous,
            comment=comment,
        ),
    )


def _approval_call(
    registry: str, token: str | None, as_json: bool, call: Callable[[Any], Any]
) -> None:
    """Run ``call(registry)`` and print the approval request it returns."""
    with connect(registry, token) as reg:
        a = call(reg)
    print_json(a) if as_json else _print_approval(a)


def _decide(
    decision: str,
    approval_id: int,
    comment: str,
    registry: str,
    token: str | None,
    as_json: bool,
) -> None:
    if decision == "cancel":
        _approval_call(registry, token, as_json, lambda reg: reg.cancel_approval(approval_id))
    else:
        _approval_call(
            registry,
            token,
            as_json,
            lambda reg: getattr(reg, decision)(approval_id, comment=comment),
        )


@approval_app.command("approve")
def approval_approve(
    approval_id: Annotated[int, typer.Argument(help="Request id.")],
    comment: Annotated[str, typer.Option(help="Review comment.")] = "",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a request (it applies at the required number of approvals)."""
    _decide("approve", approval_id, comment, registry, token, as_json)


@approval_app.command("reject")
def approval_reject(
    approval_id: Annotated[int, typer.Argument(help="Request id.")],
    comment: Annotated[str, typer.Option(help="Review comment.")] = "",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject a request."""
    _decide("reject", approval_id, comment, registry, token, as_json)


@approval_app.command("cancel")
def approval_cancel(
    approval_id: Annotated[int, typer.Argument(help="Request id.")],
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel one's own pending request."""
    _decide("cancel", approval_id, "", registry, token, as_json)


@approval_app.command("show")
def approval_show(
    approval_id: Annotated[int, typer.Argument(help="Request id.")],
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one request with its reviews."""
    _approval_call(registry, token, as_json, lambda reg: reg.get_approval(approval_id))


@approval_app.command("list")
def approval_list(
    namespace: NamespaceOpt = "default",
    state: Annotated[str, typer.Option(help="pending, applied, rejected, cancelled, all")] = (
        "pending"
    ),
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a namespace's requests (pending by default)."""
    with connect(registry, token) as reg:
        items = list(reg.list_approvals(namespace=namespace, state=state))
    if as_json:
        print_json(items)
        return
    table = Table("id", "action", "ref", "state", "requested by", "approvals", "comment")
    for a in items:
        table.add_row(
            str(a["id"]),
            a["action"] + (f" @{a['alias']}" if a["alias"] else ""),
            a["ref"],
            a["state"],
            a["requested_by"],
            ", ".join(a["approvals"]),
            a["comment"][:60],
        )
    out().print(table)


# -- audit --------------------------------------------------------------------


def audit(
    actor: Annotated[str | None, typer.Option(help="Who acted.")] = None,
    model: Annotated[str | None, typer.Option(help="name or namespace/name")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
    action: Annotated[
        str | None, typer.Option(help="Event type (alias.moved) or prefix (alias.*)")
    ] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339 or µs, inclusive")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339 or µs, exclusive")] = None,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 100,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log, newest first: who did what to which target, and when."""
    with connect(registry, token) as reg:
        entries = list(
            reg.audit(
                actor=actor,
                model=model,
                namespace=namespace,
                action=action,
                since=since,
                until=until,
                limit=limit,
            )
        )
    if as_json:
        print_json(entries)
        return
    table = Table("at", "actor", "action", "target", "change")
    for e in entries:
        change = ""
        if e["before"] is not None or e["after"] is not None:
            change = f"{json.dumps(e['before'])[:40]} -> {json.dumps(e['after'])[:40]}"
        table.add_row(e["at"], e["actor"], e["action"], e["target"], change)
    out().print(table)


def _user_state(
    action: Literal["disable", "enable", "delete"],
    name: str,
    registry: str,
    token: str | None,
    as_json: bool,
) -> None:
    with connect(registry, token) as reg:
        change = {
            "disable": reg.disable_user,
            "enable": reg.enable_user,
            "delete": reg.delete_user,
        }[action]
        done = change(name)
        if as_json:
            print_json(done or {"name": name, "state": "deleted"})
        else:
            out().print(f"user {name} is now {action}d")


UserArg = Annotated[str, typer.Argument(help="User name.")]


def user_disable(
    name: UserArg,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Disable a user: their tokens stop working at once (roles are kept)."""
    _user_state("disable", name, registry, token, as_json)


def user_enable(
    name: UserArg,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enable a disabled user again."""
    _user_state("enable", name, registry, token, as_json)


def user_delete(
    name: UserArg,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a user: tokens revoked, roles removed; history keeps the name."""
    _user_state("delete", name, registry, token, as_json)


def register_users(user_app: typer.Typer) -> None:
    """Add ``user disable|enable|delete`` to the ``user`` command group."""
    user_app.command("disable")(user_disable)
    user_app.command("enable")(user_enable)
    user_app.command("delete")(user_delete)


def register(app: typer.Typer) -> None:
    """Add the governance commands to the ``modelyard`` app."""
    for fn in (publish, archive, restore, rollback, audit):
        app.command()(fn)
    app.add_typer(policy_app, name="policy")
    app.add_typer(approval_app, name="approval")
