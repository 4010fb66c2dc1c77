"""Identity: ``whoami``, ``token create|list|revoke``, ``user create|list``,
``role grant|revoke|list``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from modelyard.cli.common import connect, err, out, print_json, run
from modelyard.cli.options import DEFAULT_URL, JsonOpt, RegistryOpt, TokenOpt

token_app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)
user_app = typer.Typer(help="Users (instance admin).", no_args_is_help=True)
role_app = typer.Typer(
    help="Role bindings per namespace: reader, writer, reviewer, admin, consumer.",
    no_args_is_help=True,
)


def _parse_duration(text: str | None) -> int | None:
    """``90`` (seconds), ``30m``, ``12h``, ``30d`` or ``52w`` as seconds."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    if not number.isdigit() or int(number) < 1:
        raise typer.BadParameter(f"not a duration: {text!r} (e.g. 3600, 12h, 30d)")
    return int(number) * units[unit]


def _token_table(tokens: list[dict[str, Any]]) -> Table:
    table = Table("id", "user", "name", "state", "expires", "last used", "created")
    for t in tokens:
        table.add_row(
            t["id"],
            t["user"],
            t["name"],
            t["state"],
            t["expires_at"] or "never",
            t["last_used_at"] or "-",
            t["created_at"],
        )
    return table


def whoami(
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show who the token belongs to and its roles."""

    def show(me: Any) -> str:
        admin = " (instance admin)" if me["instance_admin"] else ""
        lines = [f"[bold]{me['name']}[/bold]{admin}"]
        lines += [f"  {ns}: {', '.join(roles)}" for ns, roles in sorted(me["roles"].items())]
        return "\n".join(lines)

    run(registry, token, as_json, lambda reg: reg.whoami(), show)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="What the token is for, e.g. ci-pipeline.")],
    user: Annotated[
        str | None, typer.Option(help="Owner (default: yourself; others need instance admin).")
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime: 3600, 12h, 30d, 52w.")
    ] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token. The secret is printed now and never again."""
    seconds = _parse_duration(expires_in)
    with connect(registry, token) as reg:
        made = reg.create_token(name, user=user, expires_in=seconds)
        if as_json:
            print_json(made)
            return
        err.print(
            f"created token {made['id']} for {made['user']} "
            f"(expires {made['expires_at'] or 'never'}); store it now, it is not shown again:"
        )
        sys.stdout.write(made["token"] + "\n")


@token_app.command("list")
def token_list(
    user: Annotated[str | None, typer.Option(help="This user's tokens (instance admin).")] = None,
    all_users: Annotated[
        bool, typer.Option("--all", help="Every user's tokens (instance admin).")
    ] = False,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List API tokens (your own by default); secrets are never shown."""
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.list_tokens(user=user, all_users=all_users),
        _token_table,
    )


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `token list`).")],
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API token at once."""
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.revoke_token(token_id),
        lambda done: f"revoked token {done['id']} ({done['user']}/{done['name']})",
    )


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="User name.")],
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a user (then grant roles and create a token for it)."""
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.create_user(name),
        lambda made: f"created user {made['name']}",
    )


@user_app.command("list")
def user_list(
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List users with their roles."""

    def show(users: Any) -> Table:
        table = Table("user", "roles", "created")
        for u in users:
            roles = " ".join(f"{b['namespace']}:{b['role']}" for b in u["roles"])
            table.add_row(u["name"], roles, u["created_at"])
        return table

    run(registry, token, as_json, lambda reg: reg.list_users(), show)


RoleNamespaceOpt = Annotated[
    str, typer.Option("--namespace", "-n", help="Namespace, or * for every namespace.")
]


@role_app.command("grant")
def role_grant(
    user: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Argument(help="reader, writer, reviewer, admin or consumer.")],
    namespace: RoleNamespaceOpt = "default",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Grant USER the ROLE in a namespace."""
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.grant_role(user, role, namespace=namespace),
        lambda b: f"{b['user']} is {b['role']} in {b['namespace']}",
    )


@role_app.command("revoke")
def role_revoke(
    user: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Argument(help="The role to take back.")],
    namespace: RoleNamespaceOpt = "default",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take ROLE in a namespace back from USER."""
    with connect(registry, token) as reg:
        reg.revoke_role(user, role, namespace=namespace)
        if as_json:
            print_json({"user": user, "role": role, "namespace": namespace, "revoked": True})
        else:
            out().print(f"{user} is no longer {role} in {namespace}")


@role_app.command("list")
def role_list(
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Only this namespace (* = global).")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Only this user.")] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List role bindings (your own, a namespace's as its admin, all as instance admin)."""

    def show(found: Any) -> Table:
        table = Table("namespace", "user", "role", "granted by", "granted")
        for b in found:
            table.add_row(b["namespace"], b["user"], b["role"], b["granted_by"], b["granted_at"])
        return table

    run(registry, token, as_json, lambda reg: reg.list_roles(namespace=namespace, user=user), show)


def register(app: typer.Typer) -> None:
    """Add these commands to the ``modelyard`` app."""
    app.command()(whoami)
    app.add_typer(token_app, name="token")
    app.add_typer(user_app, name="user")
    app.add_typer(role_app, name="role")
