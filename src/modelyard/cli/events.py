"""Events and webhooks: ``events`` (``--follow``) and ``webhooks
create|list|show|update|delete|rotate-secret|deliveries|redeliver|test``."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from modelyard.cli.common import connect, first, out, print_json
from modelyard.cli.options import DEFAULT_URL, JsonOpt, RegistryOpt, TokenOpt

webhooks_app = typer.Typer(help="Webhook subscriptions and their deliveries.", no_args_is_help=True)

TypesOpt = Annotated[
    list[str] | None,
    typer.Option("--type", "-e", help="Event type pattern ('version.*'), repeatable."),
]
NamespaceOpt = Annotated[str | None, typer.Option(help="Only this namespace.")]
ModelOpt = Annotated[str | None, typer.Option(help="Only this model ('ns/name' or 'name').")]


def _event_line(e: Any) -> str:
    return f"{e.id:>8}  {e.at}  {e.type:<24} {e.subject}  by {e.actor}"


def events(
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    type_: TypesOpt = None,
    namespace: NamespaceOpt = None,
    model: ModelOpt = None,
    after: Annotated[
        int | None,
        typer.Option(help="Only events with a larger id (--follow default: only new ones)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many (without --follow).")] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events as they commit.")
    ] = False,
    idle_timeout: Annotated[
        float | None, typer.Option(help="With --follow: stop after this long without events.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List events (the outbox), or follow them live with --follow."""
    with connect(registry, token) as reg:
        if follow:
            stream = reg.watch(
                types=type_,
                namespace=namespace,
                model=model,
                after=after,
                idle_timeout=idle_timeout,
            )
            try:
                for e in first(stream):
                    if as_json:
                        sys.stdout.write(json.dumps(e.raw, default=str) + "\n")
                    else:
                        out().print(_event_line(e), highlight=False)
                    sys.stdout.flush()
            except KeyboardInterrupt:
                pass
            return
        found = reg.list_events(
            after=after or 0, limit=limit, types=type_, namespace=namespace, model=model
        )
        if as_json:
            print_json([e.raw for e in found])
            return
        for e in found:
            out().print(_event_line(e), highlight=False)


def _webhook_out(h: Any, as_json: bool) -> None:
    if as_json:
        print_json(h.raw)
        return
    state = "active" if h.active else f"disabled ({h.disabled_reason})"
    out().print(
        f"webhook [bold]{h.id}[/bold] {h.url}\n  events: {', '.join(h.event_types)}"
        f"  namespace: {h.namespace or '*'}  model: {h.model or '*'}  {state}",
        highlight=False,
    )
    if h.secret:
        out().print(f"  secret: {h.secret}  (shown only now; store it safely)", highlight=False)


@webhooks_app.command("create")
def webhooks_create(
    url: Annotated[str, typer.Argument(help="http(s) URL that receives the POSTs.")],
    type_: TypesOpt = None,
    namespace: NamespaceOpt = None,
    model: Annotated[str | None, typer.Option(help="Only this model (in --namespace).")] = None,
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    inactive: Annotated[bool, typer.Option("--inactive", help="Create it disabled.")] = False,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Subscribe URL to events; prints the signing secret once."""
    with connect(registry, token) as reg:
        h = reg.create_webhook(
            url,
            event_types=type_,
            namespace=namespace,
            model=model,
            description=description,
            active=not inactive,
        )
        _webhook_out(h, as_json)


@webhooks_app.command("list")
def webhooks_list(
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List webhooks."""
    with connect(registry, token) as reg:
        hooks = reg.list_webhooks()
        if as_json:
            print_json([h.raw for h in hooks])
            return
        table = Table("id", "url", "events", "namespace", "model", "state")
        for h in hooks:
            table.add_row(
                str(h.id),
                h.url,
                ",".join(h.event_types),
                h.namespace or "*",
                h.model or "*",
                "active" if h.active else f"disabled: {h.disabled_reason}",
            )
        out().print(table)


@webhooks_app.command("show")
def webhooks_show(
    webhook_id: Annotated[int, typer.Argument(help="Webhook id.")],
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one webhook."""
    with connect(registry, token) as reg:
        _webhook_out(reg.get_webhook(webhook_id), as_json)


@webhooks_app.command("update")
def webhooks_update(
    webhook_id: Annotated[int, typer.Argument(help="Webhook id.")],
    url: Annotated[str | None, typer.Option(help="New URL.")] = None,
    type_: TypesOpt = None,
    namespace: NamespaceOpt = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    active: Annotated[
        bool | None, typer.Option("--active/--inactive", help="Re-enable or disable.")
    ] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a webhook (only the options given)."""
    changes = {
        k: v
        for k, v in {
            "url": url,
            "event_types": type_,
            "namespace": namespace,
            "model": model,
            "description": description,
            "active": active,
        }.items()
        if v is not None
    }
    with connect(registry, token) as reg:
        _webhook_out(reg.update_webhook(webhook_id, **changes), as_json)


@webhooks_app.command("delete")
def webhooks_delete(
    webhook_id: Annotated[int, typer.Argument(help="Webhook id.")],
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a webhook and its delivery history."""
    with connect(registry, token) as reg:
        reg.delete_webhook(webhook_id)
        if as_json:
            print_json({"deleted": webhook_id})
        else:
            out().print(f"deleted webhook {webhook_id}")


@webhooks_app.command("rotate-secret")
def webhooks_rotate_secret(
    webhook_id: Annotated[int, typer.Argument(help="Webhook id.")],
    overlap: Annotated[
        float | None, typer.Option(help="Seconds the old secret keeps signing too.")
    ] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace the signing secret; prints the new one once."""
    with connect(registry, token) as reg:
        h = reg.rotate_webhook_secret(webhook_id, overlap_seconds=overlap)
        _webhook_out(h, as_json)


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    webhook_id: Annotated[int, typer.Argument(help="Webhook id.")],
    status: Annotated[str | None, typer.Option(help="pending, succeeded or failed.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many deliveries.")] = 20,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a webhook's deliveries, newest first, with every attempt."""
    with connect(registry, token) as reg:
        found = list(reg.webhook_deliveries(webhook_id, status=status, limit=limit))
        if as_json:
            print_json([d.raw for d in found])
            return
        for d in found:
            nxt = f"  next attempt {d.next_attempt_at}" if d.next_attempt_at else ""
            out().print(
                f"delivery {d.id}  event {d.event_id} {d.event_type}  {d.status}  "
                f"{d.message_id}{nxt}",
                highlight=False,
            )
            for a in d.attempts:
                detail = (a["error"] or a["response_body"] or "").replace("\n", " ")[:80]
                out().print(
                    f"  #{a['attempt']}  {a['at']}  {a['status']:<9}  "
                    f"{a['response_code'] or '-':>3}  {a['latency_ms']:.1f} ms  {detail}",
                    highlight=False,
                    soft_wrap=True,
                )


@webhooks_app.command("redeliver")
def webhooks_redeliver(
    webhook_id: Annotated[int, typer.Argument(help="Webhook id.")],
    delivery_id: Annotated[int, typer.Argument(help="Delivery id.")],
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send one delivery again now (same webhook-id)."""
    with connect(registry, token) as reg:
        d = reg.redeliver(webhook_id, delivery_id)
        if as_json:
            print_json(d.raw)
        else:
            out().print(f"delivery {d.id} queued again ({d.message_id})")


@webhooks_app.command("test")
def webhooks_test(
    webhook_id: Annotated[int, typer.Argument(help="Webhook id.")],
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a webhook.test event to this webhook only."""
    with connect(registry, token) as reg:
        d = reg.test_webhook(webhook_id)
        if as_json:
            print_json(d.raw)
        else:
            out().print(f"test event {d.event_id} queued as delivery {d.id} ({d.message_id})")


def register(app: typer.Typer) -> None:
    """Add these commands to the ``modelyard`` app."""
    app.command()(events)
    app.add_typer(webhooks_app, name="webhooks")
