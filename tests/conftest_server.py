"""A real ``modelyard server`` process per test session, for SDK and CLI tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

START_TIMEOUT_S = 90


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    data_dir: Path, *, extra_env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``modelyard server`` on a free port and wait until /health answers."""
    port = free_port()
    env = {**os.environ, **(extra_env or {})}
    # A file, not a pipe: nobody drains a pipe while tests run, and a full pipe
    # would block the server's logging.
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / "server.log", "ab")  # noqa: SIM115 - the child keeps its copy
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelyard.cli.main",
            "server",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            *args,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    # A start takes ~2 s on an idle machine, but this one is shared: with the
    # suite on -n 2 beside other work, starts past 30 s were seen. Waiting
    # longer costs nothing when it starts; a server that dies is caught at once.
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = (data_dir / "server.log").read_text(errors="replace")
            stop_server(proc)
            raise RuntimeError(f"server exited with {proc.returncode}: {err}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    stop_server(proc)
    raise RuntimeError(f"server did not start in {START_TIMEOUT_S} s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server we started, by its PID."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real server on SQLite, shared by the session's SDK/CLI tests."""
    proc, url = start_server(tmp_path_factory.mktemp("server-data"))
    try:
        yield url
    finally:
        stop_server(proc)
