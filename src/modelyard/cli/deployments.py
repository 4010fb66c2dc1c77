"""Deployments (issue 12): ``deploy ls|show|history|set|rm``: what runs where,
and whether it is what its reference names now (drift)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from modelyard.cli.common import run
from modelyard.cli.options import DEFAULT_URL, JsonOpt, RegistryOpt, TokenOpt

deploy_app = typer.Typer(
    help="Deployments: which reference runs in which environment, on which version, "
    "and whether its model servers are alive.",
    no_args_is_help=True,
)
EnvArg = Annotated[str, typer.Argument(help="Environment, e.g. prod-eu.")]
RefArg = Annotated[str, typer.Argument(help="Reference followed: fraud@production, ns/fraud/7.")]


def _replicas(d: dict[str, Any]) -> str:
    live = sum(1 for r in d["instances"] if not r["stale"])
    return f"{live}/{d['replicas']}"


def _desired(d: dict[str, Any]) -> str:
    """The version the reference names now, marked when what runs differs."""
    want = str(d["desired_version"] or "-")
    return f"{want} (drift)" if d["drift"] else want


@deploy_app.command("ls")
def ls(
    env: Annotated[str | None, typer.Option("--env", help="Only this environment.")] = None,
    follows: Annotated[
        str | None,
        typer.Option(
            "--follows",
            help="fraud@production: deployments following that alias; fraud: any of the "
            "model; fraud/7: those running version 7.",
        ),
    ] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List deployments: environment, reference, the version running, the version
    the reference names now (marked "drift" when they differ), status, live replicas."""

    def show(found: list[dict[str, Any]]) -> Table | str:
        if not found:
            return "no deployments"
        table = Table(
            "environment", "reference", "version", "desired", "status", "replicas", "endpoint"
        )
        for d in found:
            table.add_row(
                d["environment"],
                d["reference"],
                str(d["version"] or "-"),
                _desired(d),
                d["status"],
                _replicas(d),
                d["endpoint"] or "-",
            )
        return table

    run(
        registry,
        token,
        as_json,
        lambda reg: reg.deployments(environment=env, follows=follows),
        show,
    )


@deploy_app.command("show")
def show(
    env: EnvArg,
    ref: RefArg,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one deployment with every replica's last heartbeat (stale ones marked),
    the version running and the version its reference names now."""

    def table(d: dict[str, Any]) -> Table:
        t = Table(
            "replica",
            "status",
            "version",
            "heartbeat",
            "endpoint",
            "error",
            title=f"{d['environment']}: {d['reference']} -> {d['resolved'] or '-'} "
            f"(desired {d['desired'] or '-'}{', DRIFT' if d['drift'] else ''}; "
            f"{d['status']}, {_replicas(d)} replicas)",
            caption=_monitoring(d.get("monitoring")),
        )
        for r in d["instances"]:
            t.add_row(
                r["replica"],
                r["status"],
                str(r["version"] or "-"),
                r["heartbeat_at"],
                r["endpoint"] or "-",
                (r["error"] or "").splitlines()[-1:][0] if r["error"] else "",
            )
        return t

    run(registry, token, as_json, lambda reg: reg.deployment(env, ref), table)


@deploy_app.command("history")
def history(
    env: EnvArg,
    ref: Annotated[
        str | None, typer.Option("--ref", help="Only this deployment's reference.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Entries to show.")] = 50,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """An environment's deployment history, newest first: creations, swaps,
    load failures, replica status changes; who and when."""

    def table(page: dict[str, Any]) -> Table | str:
        if not page["history"]:
            return f"no history in {env}"
        t = Table("at", "reference", "change", "version", "replica", "by")
        for h in page["history"]:
            change = h["kind"]
            if h["kind"] == "swapped":
                change = f"swapped from {h['previous_version']}"
            elif h["kind"] == "deleted" and h["detail"].get("forced"):
                change = "deleted (forced)"
            elif h["kind"] == "replica":
                change = f"replica {h['detail'].get('status')}"
            t.add_row(
                h["at"],
                h["reference"],
                change,
                str(h["version"] or "-"),
                h["replica"] or "-",
                h["actor"],
            )
        return t

    run(
        registry,
        token,
        as_json,
        lambda reg: reg.deployment_history(env, reference=ref, limit=limit),
        table,
    )


@deploy_app.command("set")
def set_(
    env: EnvArg,
    ref: RefArg,
    replicas: Annotated[int | None, typer.Option(min=0, help="Desired replicas.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Public endpoint URL.")] = None,
    monitor: Annotated[
        list[str] | None,
        typer.Option(
            "--monitor",
            help="A monitoring setting KEY=VALUE (repeatable; the settings are replaced "
            "whole): window_seconds, psi, ks, error_rate, latency_p99_ms, min_requests, "
            "rollback (true: roll the alias back automatically), rollback_after_seconds.",
        ),
    ] = None,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record (or update) a deployment: desired replicas, endpoint and monitoring
    settings (needs write). `--monitor rollback=true --monitor error_rate=0.1
    --monitor rollback_after_seconds=120` opts in to the automatic rollback."""
    settings = None if not monitor else _monitor_settings(monitor)
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.put_deployment(
            env, ref, replicas=replicas, endpoint=endpoint, monitoring=settings
        ),
        lambda d: (
            f"deployment {d['environment']}: {d['reference']} "
            f"(replicas {d['replicas']}, {d['status']})"
        ),
    )


def _monitoring(m: dict[str, Any] | None) -> str | None:
    """One line on the deployment's monitoring settings."""
    if not m:
        return None
    rollback = (
        f"automatic rollback after {m['rollback_after_seconds']:g} s degraded"
        if m["rollback"]
        else "no automatic rollback"
    )
    latency = m["latency_p99_ms"]
    return (
        f"monitoring: window {m['window_seconds']:g} s, error rate > {m['error_rate']:g}"
        + (f", p99 > {latency:g} ms" if latency is not None else "")
        + f"; {rollback}"
    )


def _monitor_settings(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a settings object; values are JSON scalars
    (``true``, ``0.1``, ``null``). The registry checks keys and ranges."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--monitor takes KEY=VALUE, not {pair!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            raise typer.BadParameter(
                f"--monitor {key}: {raw!r} is not a number, true, false or null"
            ) from None
        if isinstance(value, dict | list):
            raise typer.BadParameter(f"--monitor {key}: a number, true, false or null")
        out[key] = value
    return out


@deploy_app.command("rm")
def rm(
    env: EnvArg,
    ref: RefArg,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete even while replicas still send heartbeats (they would "
            "record it again at their next heartbeat).",
        ),
    ] = False,
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a deployment (needs write); its history stays. Refused while its
    model servers are alive (stop them first) unless --force."""
    run(
        registry,
        token,
        as_json,
        lambda reg: reg.delete_deployment(env, ref, force=force),
        lambda d: f"deleted deployment {d['environment']}: {d['reference']}",
    )


def register(app: typer.Typer) -> None:
    """Add the ``deploy`` group to the ``modelyard`` app."""
    app.add_typer(deploy_app, name="deploy")
