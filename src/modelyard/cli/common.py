"""What every command shares: output, the registry handle, error reporting.

Errors are reported in one place, :class:`CliGroup` (the app's group): a
command just calls the SDK, and any registry error, local file error or
interrupt becomes one clean line on stderr (or, with ``--json``, the REST
error body ``{"error": {"code", "message", "details"}}``) and an exit code.
No user mistake shows a traceback.

Exit codes: 0 success; 1 the operation failed (a registry error with its
code, a local file error, ``policy check`` finding violations); 2 the
command line is wrong (unknown command or option, bad value); 130
interrupted.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

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
from typer.core import TyperGroup

from modelyard.domain.errors import ModelyardError

T = TypeVar("T")
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_JSON_KEY = "modelyard.json"

err = Console(stderr=True, highlight=False)


def out() -> Console:
    """Standard output console, made per call so it sees the current terminal.

    Piped or redirected, lines are never cut or wrapped to a guessed width
    (rich assumes 80 columns): a script reading a table gets every cell whole.
    """
    if sys.stdout.isatty():
        return Console()
    return Console(width=1_000_000, soft_wrap=True)


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def report_error(code: str, message: str, details: Mapping[str, Any], as_json: bool) -> None:
    """One error on stderr: the REST error body with ``--json``, else a line."""
    if as_json:
        body = {"error": {"code": code, "message": message, "details": dict(details)}}
        sys.stderr.write(json.dumps(body, default=str) + "\n")
        return
    err.print(f"[red]error[/red] {code}: {message}", soft_wrap=True, markup=True)
    if details:
        err.print(json.dumps(dict(details), default=str), soft_wrap=True, markup=False)


def _os_error(exc: OSError) -> tuple[str, str, dict[str, Any]]:
    """A local file error as (code, message, details): the user's disk, not ours."""
    name = errno.errorcode.get(exc.errno or 0, "")
    details: dict[str, Any] = {"errno": name} if name else {}
    if exc.filename is not None:
        details["path"] = str(exc.filename)
    where = f": {exc.filename}" if exc.filename is not None else ""
    return "LOCAL_IO_ERROR", f"{exc.strerror or exc}{where}", details


class CliGroup(TyperGroup):
    """The ``modelyard`` group: reports every command's errors in one place.

    Whether the command line asked for ``--json`` is read from the arguments
    before anything is parsed, so usage errors of a ``--json`` command are
    JSON too.
    """

    # Contexts are typed ``Any``: typer carries its own copy of click, whose
    # ``Context`` is not public.
    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: Any = None,
        **extra: Any,
    ) -> Any:
        """Remember ``--json`` (``meta`` is shared with every nested context)."""
        as_json = "--json" in args
        ctx = super().make_context(info_name, args, parent=parent, **extra)
        ctx.meta[_JSON_KEY] = as_json
        return ctx

    def invoke(self, ctx: Any) -> Any:
        """Run the command; turn its errors into a message and an exit code."""
        as_json = bool(ctx.meta.get(_JSON_KEY))
        try:
            return super().invoke(ctx)
        except ModelyardError as exc:
            report_error(exc.code, exc.message, exc.details or {}, as_json)
            raise typer.Exit(EXIT_FAILED) from None
        except typer.TyperException as exc:  # click's UsageError, BadParameter, ...
            if not as_json:
                raise  # printed with the usage by click; exit 2 for usage errors
            code = getattr(exc, "exit_code", EXIT_FAILED)
            report_error(
                "USAGE_ERROR" if code == EXIT_USAGE else "ERROR", exc.format_message(), {}, True
            )
            raise typer.Exit(code) from None
        except OSError as exc:
            report_error(*_os_error(exc), as_json=as_json)
            raise typer.Exit(EXIT_FAILED) from None
        except KeyboardInterrupt:
            report_error("INTERRUPTED", "interrupted", {}, as_json)
            raise typer.Exit(EXIT_INTERRUPTED) from None


@contextmanager
def connect(target: str, token: str | None = None) -> Iterator[Any]:
    """The registry for one command, closed when the command ends (the token:
    the command's ``--token``, else ``MODELYARD_TOKEN``, read by the SDK)."""
    from modelyard.client import Registry
    from modelyard.settings import Settings

    reg = Registry(target, token=token, upload_concurrency=Settings().upload_concurrency)
    try:
        yield reg
    finally:
        reg.close()


def run(
    registry: str,
    token: str | None,
    as_json: bool,
    call: Callable[[Any], T],
    show: Callable[[T], Any],
    *,
    to_json: Callable[[T], Any] | None = None,
) -> T:
    """The shape of most commands: ``call(registry)``, then print the answer
    as JSON (``to_json(answer)``, default the answer itself) or ``show(answer)``
    (a string or a rich renderable). Errors are :class:`CliGroup`'s."""
    with connect(registry, token) as reg:
        answer = call(reg)
    if as_json:
        print_json(to_json(answer) if to_json else answer)
    else:
        out().print(show(answer), highlight=False)
    return answer


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Any]:
    """Transfer callbacks drawing a progress bar on stderr (none when disabled,
    or when stderr is not a terminal: a log gets no bar frames)."""
    from modelyard.client.registry import PushCallbacks

    if not enabled or not err.is_terminal:
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


def key_values(items: list[str] | None, what: str) -> dict[str, str]:
    """``["a=1", "b=2"]`` as a dict; a usage error names the bad item."""
    result: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"{what} must look like key=value: {item!r}")
        k, _, v = item.partition("=")
        result[k] = v
    return result


def metrics(items: list[str] | None) -> dict[str, float]:
    """``-m key=number`` options as floats."""
    try:
        return {k: float(v) for k, v in key_values(items, "metric").items()}
    except ValueError as exc:
        raise typer.BadParameter(f"metric values must be numbers: {exc}") from None


def human(value: Any) -> str:
    """A value as a person reads it: ``-`` for nothing, ``k=v`` pairs for a
    mapping, commas for a list, ``%g`` for a float; never a Python repr."""
    if value is None or value == {} or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        shown = [f"{k}={human(v)}" for k, v in sorted(value.items()) if v not in (None, [], {})]
        return " ".join(shown) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(human(v) for v in value)
    return str(value)


def first(stream: Iterator[T]) -> Iterator[T]:
    """Start ``stream`` now, so its first error (a bad filter, an unreachable
    server) is raised before anything is printed."""
    try:
        head = next(stream)
    except StopIteration:
        return iter(())

    def chain() -> Iterator[T]:
        yield head
        yield from stream

    return chain()
