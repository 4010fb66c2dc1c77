"""The CLI as a newcomer meets it (issue 9): mistakes give one clean error and
an exit code, never a traceback; ``--json`` errors are JSON; output is whole
and readable; ``alias show``, ``cache ls|clear`` and ``--version`` exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from modelyard import __version__
from modelyard.cli.main import app
from modelyard.client import Registry
from tests.conftest_server import free_port


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An embedded registry and a cache of the test's own."""
    return {
        "MODELYARD_URL": str(tmp_path / "data"),
        "MODELYARD_CACHE_DIR": str(tmp_path / "cache"),
        "MODELYARD_TOKEN": "",
    }


def invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(app, args, env=env)


def assert_clean_failure(r: Result, exit_code: int, code: str | None = None) -> None:
    """Failed with ``exit_code``, through our error path (no exception escaped)."""
    assert r.exit_code == exit_code, (r.stdout, r.stderr, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    if code is not None:
        assert code in r.stderr, r.stderr


def test_bad_invocations_fail_cleanly(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "model.onnx").write_bytes(b"weights")
    (tmp_path / "demo" / "config").mkdir()
    (tmp_path / "demo" / "config" / "labels.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / "config").write_text("a file where a directory goes")
    assert invoke(["push", "fraud", str(tmp_path / "demo")], env).exit_code == 0
    closed = f"127.0.0.1:{free_port()}"
    failures: list[tuple[list[str], int, str | None]] = [
        (["pull", "fraud/1", str(tmp_path / "afile")], 1, "INVALID_DESTINATION"),
        (["pull", "fraud/1", str(tmp_path / "afile" / "sub")], 1, "INVALID_DESTINATION"),
        (["pull", "fraud/1", str(tmp_path / "blocked")], 1, "INVALID_DESTINATION"),
        (["pull", "fraud/9", str(tmp_path / "out")], 1, "VERSION_NOT_FOUND"),
        (["pull", "not a ref!", str(tmp_path / "out")], 1, None),
        (["push", "fraud", str(tmp_path / "missing")], 1, "INVALID_INPUT"),
        (["push", "fraud", str(tmp_path / "empty")], 1, "EMPTY_VERSION"),
        (["push", "bad name!", str(tmp_path / "demo")], 1, None),
        (["push", "fraud", str(tmp_path / "demo"), "-m", "acc=high"], 2, None),
        (["tag", "fraud/1", "novalue"], 2, None),
        (["search", "metrics.acc >>> 1"], 1, "INVALID_FILTER"),
        (["ls", "-r", closed], 1, "UNREACHABLE"),
        (["events", "--follow", "-r", closed], 1, "UNREACHABLE"),
        (["ls", "-r", "ftp://127.0.0.1:21"], 1, "INVALID_REGISTRY"),
        (["show", "fraud/1", "--no-such-option"], 2, None),
        (["no-such-command"], 2, None),
        (["alias", "show", "fraud/1"], 1, None),
        (["cache", "ls", "--cache-dir", str(tmp_path / "afile")], 0, None),
    ]
    for args, exit_code, code in failures:
        assert_clean_failure(invoke(args, env), exit_code, code)
    assert (tmp_path / "afile").read_text() == "mine"
    assert not (tmp_path / closed).exists()


def test_a_real_process_prints_no_traceback(tmp_path: Path, env: dict[str, str]) -> None:
    """The console entry point itself, outside CliRunner."""
    (tmp_path / "m.bin").write_bytes(b"x")
    (tmp_path / "afile").write_text("mine")
    cmd = [sys.executable, "-m", "modelyard.cli.main"]
    full_env = {**os.environ, **env}
    done = subprocess.run(
        [*cmd, "push", "fraud", str(tmp_path / "m.bin")], env=full_env, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [*cmd, "pull", "fraud/1", str(tmp_path / "afile")],
        env=full_env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error INVALID_DESTINATION: cannot pull into")


def test_json_errors_are_json_on_stderr(tmp_path: Path, env: dict[str, str]) -> None:
    r = invoke(["show", "fraud/1", "--json"], env)
    assert_clean_failure(r, 1)
    body = json.loads(r.stderr)
    assert body["error"]["code"] == "MODEL_NOT_FOUND"
    assert set(body["error"]) == {"code", "message", "details"}
    assert r.stdout == ""
    r = invoke(["ls", "-r", f"127.0.0.1:{free_port()}", "--json"], env)
    body = json.loads(r.stderr)
    assert body["error"]["code"] == "UNREACHABLE" and body["error"]["details"]["url"]
    r = invoke(["push", "fraud", str(tmp_path), "-m", "acc=x", "--json"], env)
    assert_clean_failure(r, 2)
    assert json.loads(r.stderr)["error"]["code"] == "USAGE_ERROR"


def test_output_is_whole_and_human_when_piped(tmp_path: Path, env: dict[str, str]) -> None:
    description = "a fraud model " + "with a long description " * 8 + "END"
    with Registry(tmp_path / "data", cache_dir=tmp_path / "cache") as reg:
        reg.create_model("fraud", description=description, tags={"team": "risk" * 20})
    (tmp_path / "m.onnx").write_bytes(b"w")
    assert invoke(["push", "fraud", str(tmp_path / "m.onnx")], env).exit_code == 0
    r = invoke(["ls"], {**env, "COLUMNS": "80"})
    assert r.exit_code == 0
    assert description in r.stdout and "…" not in r.stdout
    r = invoke(["show", "fraud/1"], env)
    assert r.exit_code == 0
    assert "None" not in r.stdout and "{'" not in r.stdout and "{}" not in r.stdout
    assert "format -" in r.stdout and "metrics: -" in r.stdout


def test_alias_set_show_and_the_short_form(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"w")
    for _ in range(2):
        assert invoke(["push", "fraud", str(tmp_path / "m.onnx")], env).exit_code == 0
    r = invoke(["alias", "fraud/1", "production"], env)
    assert r.exit_code == 0 and "default/fraud@production -> default/fraud/1" in r.stdout
    r = invoke(["alias", "set", "fraud/2", "production", "--reason", "better"], env)
    assert r.exit_code == 0, r.output
    r = invoke(["alias", "show", "fraud@production", "--json"], env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["version"] == 2
    r = invoke(["alias", "--help"], env)
    assert r.exit_code == 0 and "set" in r.stdout and "show" in r.stdout


def test_push_allow_empty(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = invoke(["push", "fraud", str(tmp_path / "empty"), "--allow-empty", "--json"], env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["files"] == []


def test_every_command_has_working_help() -> None:
    """``--help`` of every command and group renders (a help text is Rich
    markup: ``NAME[/versions/V]`` in one was read as a closing tag and
    ``modelyard serve --help`` crashed)."""
    import typer.main

    def walk(cmd: object, path: list[str]) -> list[list[str]]:
        out = [path]
        for name, sub in getattr(cmd, "commands", {}).items():
            out += walk(sub, [*path, name])
        return out

    paths = walk(typer.main.get_command(app), [])
    assert len(paths) > 30
    for path in paths:
        r = CliRunner().invoke(app, [*path, "--help"])
        assert r.exit_code == 0, (path, r.output, r.exception)
        assert "Usage" in r.stdout, path


def test_version_flag() -> None:
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"modelyard {__version__}"


def test_pull_copies_by_default_and_links_on_request(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"weights")
    assert invoke(["push", "fraud", str(tmp_path / "m.onnx")], env).exit_code == 0
    assert invoke(["pull", "fraud/1", str(tmp_path / "a")], env).exit_code == 0
    assert invoke(["pull", "fraud/1", str(tmp_path / "b"), "--link"], env).exit_code == 0
    assert (tmp_path / "a" / "m.onnx").stat().st_nlink == 1
    assert (tmp_path / "b" / "m.onnx").stat().st_nlink == 2  # the cache's file


def test_cache_ls_and_clear(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"weights")
    assert invoke(["push", "fraud", str(tmp_path / "m.onnx")], env).exit_code == 0
    assert invoke(["pull", "fraud/1", str(tmp_path / "out")], env).exit_code == 0
    r = invoke(["cache", "ls", "--json"], env)
    assert r.exit_code == 0, r.output
    listed = json.loads(r.stdout)
    assert listed["path"] == env["MODELYARD_CACHE_DIR"]
    assert listed["blobs"] == 1 and listed["bytes"] == len(b"weights")
    r = invoke(["cache", "ls", "--all"], env)
    assert r.exit_code == 0 and "1 blobs" in r.stdout and listed["entries"][0]["digest"] in r.stdout
    r = invoke(["cache", "clear"], env)
    assert r.exit_code == 0 and "removed" in r.stdout
    assert json.loads(invoke(["cache", "ls", "--json"], env).stdout)["blobs"] == 0
    assert (tmp_path / "out" / "m.onnx").read_bytes() == b"weights"
    # A pull after clearing fetches again.
    assert invoke(["pull", "fraud/1", str(tmp_path / "out2")], env).exit_code == 0
    assert json.loads(invoke(["cache", "ls", "--json"], env).stdout)["blobs"] == 1


def test_host_port_registry_is_http(live_server: str, tmp_path: Path) -> None:
    host_port = live_server.removeprefix("http://")
    name = "hp" + uuid.uuid4().hex[:8]
    (tmp_path / "m.onnx").write_bytes(b"w")
    env = {"MODELYARD_CACHE_DIR": str(tmp_path / "cache")}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        r = invoke(["push", name, "m.onnx", "-r", host_port], env)
        assert r.exit_code == 0, r.output
        r = invoke(["ls", "-r", host_port, "--json"], env)
        assert r.exit_code == 0 and name in {m["name"] for m in json.loads(r.stdout)}
    finally:
        os.chdir(cwd)
    assert not (tmp_path / host_port).exists()


def test_help_names_the_environment_variables() -> None:
    """Option help names the variable that sets it. Written as ``[env X]``,
    Rich took the brackets for markup and printed nothing of it."""
    r = CliRunner().invoke(app, ["server", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    for name in ("MODELYARD_HOST", "MODELYARD_PORT", "MODELYARD_DB", "MODELYARD_STORE"):
        assert name in r.stdout, (name, r.stdout)
