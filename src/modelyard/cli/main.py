"""``modelyard``: server, push, pull, ls, show, search, tag, alias, events, webhooks,
whoami, db, token, user, role, and the governance commands of ``cli/governance.py``
(publish, archive, restore, rollback, policy, approval, audit).

Exit codes: 0 success, 1 a registry error (its code is printed), 2 usage errors.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from modelyard.cli import governance as governance_cli
from modelyard.cli.options import JsonOpt as JsonOpt
from modelyard.cli.options import RegistryOpt as RegistryOpt
from modelyard.cli.options import TokenOpt as TokenOpt
from modelyard.domain.errors import ModelyardError

app = typer.Typer(
    help="modelyard: a self-hosted model registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
token_app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")
user_app = typer.Typer(help="Users (instance admin).", no_args_is_help=True)
app.add_typer(user_app, name="user")
role_app = typer.Typer(
    help="Role bindings per namespace: reader, writer, reviewer, admin, consumer.",
    no_args_is_help=True,
)
app.add_typer(role_app, name="role")
webhooks_app = typer.Typer(help="Webhook subscriptions and their deliveries.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


def out() -> Console:
    """Standard output console (made per call so it sees the terminal's current width)."""
    return Console()


err = Console(stderr=True)
T = TypeVar("T")


@contextmanager
def _registry(target: str, token: str | None = None) -> Iterator[Any]:
    """The registry for one command, closed when the command ends (the token:
    the command's ``--token``, else ``MODELYARD_TOKEN``, read by the SDK)."""
    from modelyard.client import Registry

    reg = Registry(target, token=token)
    try:
        yield reg
    finally:
        reg.close()


def _run(fn: Callable[[], T]) -> T:
    """Run an SDK call, turning registry errors into exit code 1 with the code printed."""
    try:
        return fn()
    except ModelyardError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}")
        if exc.details:
            err.print(json.dumps(exc.details, default=str))
        raise typer.Exit(1) from None


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _call(
    registry: str,
    token: str | None,
    as_json: bool,
    call: Callable[[Any], T],
    show: Callable[[T], Any],
) -> None:
    """Run ``call(registry)``; print its answer as JSON, or ``show(answer)``."""
    with _registry(registry, token) as reg:
        answer = _run(lambda: call(reg))
    if as_json:
        _print_json(answer)
    else:
        out().print(show(answer))


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    from modelyard.client.registry import PushCallbacks

    if not enabled:
        yield PushCallbacks()
        return
    with Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as bar:
        state: dict[str, Any] = {"task": None}

        def start(phase: str, total: int) -> None:
            state["task"] = bar.add_task(phase, total=total or 1, completed=0 if total else 1)

        def advance(n: int) -> None:
            if state["task"] is not None:
                bar.advance(state["task"], n)

        yield PushCallbacks(start=start, advance=advance)


def _kv(items: list[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"{what} must look like key=value: {item!r}")
        k, _, v = item.partition("=")
        result[k] = v
    return result


def _metrics(items: list[str] | None) -> dict[str, float]:
    try:
        return {k: float(v) for k, v in _kv(items, "metric").items()}
    except ValueError as exc:
        raise typer.BadParameter(f"metric values must be numbers: {exc}") from None


@app.command()
def server(
    host: Annotated[str | None, typer.Option(help="Bind address [env MODELYARD_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env MODELYARD_PORT].")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data directory [env MODELYARD_DATA_DIR].")
    ] = None,
    db: Annotated[str | None, typer.Option(help="Database URL [env MODELYARD_DB].")] = None,
    store: Annotated[str | None, typer.Option(help="Blob store URL [env MODELYARD_STORE].")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes [env MODELYARD_WORKERS].")
    ] = None,
    auth: Annotated[
        str | None,
        typer.Option(
            help="Require API tokens: auto (on beyond loopback), on, off [env MODELYARD_AUTH]."
        ),
    ] = None,
) -> None:
    """Run the registry server (REST API, /docs, /health, /metrics)."""
    from modelyard.server import run_server
    from modelyard.settings import Settings

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "data_dir": data_dir,
            "db": db,
            "store": store,
            "workers": workers,
            "auth": auth,
        }.items()
        if v is not None
    }
    if auth is not None and auth not in ("auto", "on", "off"):
        raise typer.BadParameter("--auth must be auto, on or off")
    _run(lambda: run_server(Settings(**overrides)))


@app.command()
def push(
    name: Annotated[str, typer.Argument(help="Model name, optionally namespace/name.")],
    path: Annotated[Path, typer.Argument(help="A file or a directory to push.")],
    registry: RegistryOpt = "http://127.0.0.1:8080",
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
    as_json: JsonOpt = False,
) -> None:
    """Push a file or directory as a new version of NAME."""
    namespace, _, model = name.rpartition("/")
    with _registry(registry, token) as reg:
        with _progress(not as_json) as cb:
            v = _run(
                lambda: reg.push(
                    model,
                    path,
                    namespace=namespace or "default",
                    framework=framework,
                    format=format,
                    description=description,
                    metrics=_metrics(metric),
                    params=_kv(param, "param"),
                    tags=_kv(tag, "tag"),
                    parent=parent,
                    relation=relation,
                    lineage={"source_run": source_run} if source_run else None,
                    callbacks=cb,
                )
            )
        if as_json:
            _print_json(v.raw)
        else:
            out().print(
                f"pushed [bold]{v.ref}[/bold] ({len(v.files or [])} files, "
                f"{v.total_size} bytes, state {v.state})"
            )


@app.command()
def pull(
    ref: Annotated[str, typer.Argument(help="name/3, name@alias, ns/name@latest")],
    dest: Annotated[Path, typer.Argument(help="Destination directory.")] = Path("."),
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download a version's files into DEST (digest-verified, cached)."""
    with _registry(registry, token) as reg:
        with _progress(not as_json) as cb:
            v, target = _run(lambda: reg.pull_version(ref, dest, callbacks=cb))
        if as_json:
            _print_json({"ref": v.ref, "dest": str(target), "files": v.files})
        else:
            out().print(f"pulled [bold]{v.ref}[/bold] into {target}")


def _version_rows(versions: list[Any]) -> Table:
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


@app.command()
def ls(
    name: Annotated[str | None, typer.Argument(help="List this model's versions.")] = None,
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
) -> None:
    """List models, or the versions of NAME."""
    with _registry(registry, token) as reg:
        if name is None:
            models = _run(lambda: list(reg.search_models(limit=limit)))
            if as_json:
                _print_json([m.raw for m in models])
                return
            table = Table("model", "latest", "tags", "description", "updated")
            for m in models:
                table.add_row(
                    f"{m.namespace}/{m.name}",
                    str(m.latest_version or ""),
                    " ".join(f"{k}={v}" for k, v in sorted(m.tags.items())),
                    m.description[:60],
                    m.updated_at,
                )
            out().print(table)
            return
        namespace, _, model = name.rpartition("/")
        versions = _run(
            lambda: [
                v
                for _, v in zip(
                    range(limit),
                    reg.list_versions(model, namespace=namespace or "default"),
                    strict=False,
                )
            ]
        )
        if as_json:
            _print_json([v.raw for v in versions])
        else:
            out().print(_version_rows(versions))


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="name/3, name@alias, ns/name@latest")],
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one version with its files, metrics and lineage."""
    with _registry(registry, token) as reg:
        v = _run(lambda: reg.get_version(ref))
        if as_json:
            _print_json(v.raw)
            return
        out().print(
            f"[bold]{v.ref}[/bold]  state={v.state}  framework={v.framework}  "
            f"format={v.format}  aliases={','.join(v.aliases) or '-'}"
        )
        out().print(
            f"metrics: {v.metrics}\nparams: {v.params}\ntags: {v.tags}\nlineage: {v.lineage}"
        )
        table = Table("path", "size", "sha256", "media type")
        for f in v.files or []:
            table.add_row(f["path"], str(f["size"]), f["digest"][:16], f["media_type"])
        out().print(table)


@app.command()
def search(
    filter: Annotated[
        str | None, typer.Argument(help="Filter, e.g. \"tags.team = 'x' AND metrics.acc >= 0.9\"")
    ] = None,
    models: Annotated[bool, typer.Option("--models", help="Search models, not versions.")] = False,
    order_by: Annotated[str | None, typer.Option(help="e.g. 'metrics.acc DESC'")] = None,
    limit: Annotated[int, typer.Option(help="At most this many results.")] = 100,
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search versions (or models) with the filter language."""
    with _registry(registry, token) as reg:
        if models:
            found = _run(lambda: list(reg.search_models(filter, order_by=order_by, limit=limit)))
            if as_json:
                _print_json([m.raw for m in found])
            else:
                for m in found:
                    out().print(f"{m.namespace}/{m.name}")
            return
        versions = _run(lambda: list(reg.search_versions(filter, order_by=order_by, limit=limit)))
        if as_json:
            _print_json([v.raw for v in versions])
        else:
            out().print(_version_rows(versions))


@app.command()
def tag(
    ref: Annotated[str, typer.Argument(help="Version reference.")],
    tags: Annotated[list[str] | None, typer.Argument(help="key=value to set")] = None,
    delete: Annotated[
        list[str] | None, typer.Option("--delete", "-d", help="Tag key to remove, repeatable")
    ] = None,
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set or delete tags on a version."""
    with _registry(registry, token) as reg:
        v = _run(lambda: reg.tag(ref, _kv(tags, "tag"), delete=delete or []))
        if as_json:
            _print_json(v.raw)
        else:
            out().print(f"{v.ref} tags: {v.tags}")


@app.command()
def alias(
    ref: Annotated[str, typer.Argument(help="Version reference, e.g. fraud/3 (or: show)")],
    name: Annotated[str, typer.Argument(help="Alias name, e.g. production (or: name@alias)")],
    reason: Annotated[str, typer.Option(help="Why (kept in the alias history).")] = "",
    at: Annotated[
        str | None, typer.Option(help="With show: the time to look at (RFC 3339 or µs).")
    ] = None,
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point an alias at a version, or show one: alias show NAME@ALIAS [--at TIME]."""
    with _registry(registry, token) as reg:
        if ref == "show" and "@" in name:
            governance_cli.show_alias(reg, name, at, as_json)
            return
        v = _run(lambda: reg.set_alias(ref, name, reason=reason))
        if as_json:
            _print_json(v.raw)
        else:
            out().print(f"{v.namespace}/{v.model}@{name} -> {v.ref}")


# -- events and webhooks -------------------------------------------------------

TypesOpt = Annotated[
    list[str] | None,
    typer.Option("--type", "-e", help="Event type pattern ('version.*'), repeatable."),
]
NamespaceOpt = Annotated[str | None, typer.Option(help="Only this namespace.")]
ModelOpt = Annotated[str | None, typer.Option(help="Only this model ('ns/name' or 'name').")]


def _event_line(e: Any) -> str:
    return f"{e.id:>8}  {e.at}  {e.type:<24} {e.subject}  by {e.actor}"


@app.command()
def events(
    registry: RegistryOpt = "http://127.0.0.1:8080",
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
    with _registry(registry, token) as reg:
        if follow:
            stream = reg.watch(
                types=type_,
                namespace=namespace,
                model=model,
                after=after,
                idle_timeout=idle_timeout,
            )
            try:
                for e in _run(lambda: _first(stream)):
                    if as_json:
                        sys.stdout.write(json.dumps(e.raw, default=str) + "\n")
                    else:
                        out().print(_event_line(e), highlight=False)
                    sys.stdout.flush()
            except KeyboardInterrupt:
                pass
            return
        found = _run(
            lambda: reg.list_events(
                after=after or 0, limit=limit, types=type_, namespace=namespace, model=model
            )
        )
        if as_json:
            _print_json([e.raw for e in found])
            return
        for e in found:
            out().print(_event_line(e), highlight=False)


def _first(stream: Iterator[Any]) -> Iterator[Any]:
    """Surface the stream's first error (bad filter, unreachable) through ``_run``."""
    try:
        head = next(stream)
    except StopIteration:
        return iter(())

    def chain() -> Iterator[Any]:
        yield head
        yield from stream

    return chain()


def _webhook_out(h: Any, as_json: bool) -> None:
    if as_json:
        _print_json(h.raw)
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
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Subscribe URL to events; prints the signing secret once."""
    with _registry(registry, token) as reg:
        h = _run(
            lambda: reg.create_webhook(
                url,
                event_types=type_,
                namespace=namespace,
                model=model,
                description=description,
                active=not inactive,
            )
        )
        _webhook_out(h, as_json)


@webhooks_app.command("list")
def webhooks_list(
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List webhooks."""
    with _registry(registry, token) as reg:
        hooks = _run(reg.list_webhooks)
        if as_json:
            _print_json([h.raw for h in hooks])
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
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one webhook."""
    with _registry(registry, token) as reg:
        _webhook_out(_run(lambda: reg.get_webhook(webhook_id)), as_json)


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
    registry: RegistryOpt = "http://127.0.0.1:8080",
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
    with _registry(registry, token) as reg:
        _webhook_out(_run(lambda: reg.update_webhook(webhook_id, **changes)), as_json)


@webhooks_app.command("delete")
def webhooks_delete(
    webhook_id: Annotated[int, typer.Argument(help="Webhook id.")],
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a webhook and its delivery history."""
    with _registry(registry, token) as reg:
        _run(lambda: reg.delete_webhook(webhook_id))
        if as_json:
            _print_json({"deleted": webhook_id})
        else:
            out().print(f"deleted webhook {webhook_id}")


@webhooks_app.command("rotate-secret")
def webhooks_rotate_secret(
    webhook_id: Annotated[int, typer.Argument(help="Webhook id.")],
    overlap: Annotated[
        float | None, typer.Option(help="Seconds the old secret keeps signing too.")
    ] = None,
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace the signing secret; prints the new one once."""
    with _registry(registry, token) as reg:
        h = _run(lambda: reg.rotate_webhook_secret(webhook_id, overlap_seconds=overlap))
        _webhook_out(h, as_json)


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    webhook_id: Annotated[int, typer.Argument(help="Webhook id.")],
    status: Annotated[str | None, typer.Option(help="pending, succeeded or failed.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many deliveries.")] = 20,
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a webhook's deliveries, newest first, with every attempt."""
    with _registry(registry, token) as reg:
        found = _run(lambda: list(reg.webhook_deliveries(webhook_id, status=status, limit=limit)))
        if as_json:
            _print_json([d.raw for d in found])
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
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send one delivery again now (same webhook-id)."""
    with _registry(registry, token) as reg:
        d = _run(lambda: reg.redeliver(webhook_id, delivery_id))
        if as_json:
            _print_json(d.raw)
        else:
            out().print(f"delivery {d.id} queued again ({d.message_id})")


@webhooks_app.command("test")
def webhooks_test(
    webhook_id: Annotated[int, typer.Argument(help="Webhook id.")],
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a webhook.test event to this webhook only."""
    with _registry(registry, token) as reg:
        d = _run(lambda: reg.test_webhook(webhook_id))
        if as_json:
            _print_json(d.raw)
        else:
            out().print(f"test event {d.event_id} queued as delivery {d.id} ({d.message_id})")


@db_app.command("upgrade")
def db_upgrade(
    db: Annotated[str | None, typer.Option(help="Database URL [env MODELYARD_DB].")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Apply schema migrations to the database."""
    from modelyard.settings import Settings
    from modelyard.store.metadata import migrate
    from modelyard.store.metadata.engine import create_engine

    overrides: dict[str, Any] = {
        k: v for k, v in {"db": db, "data_dir": data_dir}.items() if v is not None
    }
    settings = Settings(**overrides)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url())
    try:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine)
        after = migrate.current_revision(engine)
    finally:
        engine.dispose()
    out().print(f"database at revision {after} (was {before or 'empty'})")


# -- identity -----------------------------------------------------------------


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


@app.command()
def whoami(
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show who the token belongs to and its roles."""

    def show(me: Any) -> str:
        admin = " (instance admin)" if me["instance_admin"] else ""
        lines = [f"[bold]{me['name']}[/bold]{admin}"]
        lines += [f"  {ns}: {', '.join(roles)}" for ns, roles in sorted(me["roles"].items())]
        return "\n".join(lines)

    _call(registry, token, as_json, lambda reg: reg.whoami(), show)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="What the token is for, e.g. ci-pipeline.")],
    user: Annotated[
        str | None, typer.Option(help="Owner (default: yourself; others need instance admin).")
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime: 3600, 12h, 30d, 52w.")
    ] = None,
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token. The secret is printed now and never again."""
    seconds = _parse_duration(expires_in)
    with _registry(registry, token) as reg:
        made = _run(lambda: reg.create_token(name, user=user, expires_in=seconds))
        if as_json:
            _print_json(made)
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
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List API tokens (your own by default); secrets are never shown."""
    _call(
        registry,
        token,
        as_json,
        lambda reg: reg.list_tokens(user=user, all_users=all_users),
        _token_table,
    )


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `token list`).")],
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API token at once."""
    _call(
        registry,
        token,
        as_json,
        lambda reg: reg.revoke_token(token_id),
        lambda done: f"revoked token {done['id']} ({done['user']}/{done['name']})",
    )


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="User name.")],
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a user (then grant roles and create a token for it)."""
    _call(
        registry,
        token,
        as_json,
        lambda reg: reg.create_user(name),
        lambda made: f"created user {made['name']}",
    )


@user_app.command("list")
def user_list(
    registry: RegistryOpt = "http://127.0.0.1:8080",
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

    _call(registry, token, as_json, lambda reg: reg.list_users(), show)


RoleNamespaceOpt = Annotated[
    str, typer.Option("--namespace", "-n", help="Namespace, or * for every namespace.")
]


@role_app.command("grant")
def role_grant(
    user: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Argument(help="reader, writer, reviewer, admin or consumer.")],
    namespace: RoleNamespaceOpt = "default",
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Grant USER the ROLE in a namespace."""
    _call(
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
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take ROLE in a namespace back from USER."""
    with _registry(registry, token) as reg:
        _run(lambda: reg.revoke_role(user, role, namespace=namespace))
        if as_json:
            _print_json({"user": user, "role": role, "namespace": namespace, "revoked": True})
        else:
            out().print(f"{user} is no longer {role} in {namespace}")


@role_app.command("list")
def role_list(
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Only this namespace (* = global).")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Only this user.")] = None,
    registry: RegistryOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List role bindings (your own, a namespace's as its admin, all as instance admin)."""

    def show(found: Any) -> Table:
        table = Table("namespace", "user", "role", "granted by", "granted")
        for b in found:
            table.add_row(b["namespace"], b["user"], b["role"], b["granted_by"], b["granted_at"])
        return table

    _call(
        registry, token, as_json, lambda reg: reg.list_roles(namespace=namespace, user=user), show
    )


governance_cli.register(app)
governance_cli.register_users(user_app)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
