"""``modelyard serve`` as a real process on a free port, stopped by its PID."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest_server import free_port, stop_server


def start_serving(
    registry: str,
    refs: list[str],
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``modelyard serve REFS [ARGS]`` and wait until /v2/health/ready says ready."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "serve.log"
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps its copy
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelyard.cli.main",
            "serve",
            *refs,
            "--registry",
            registry,
            "--port",
            str(port),
            "--cache-dir",
            str(workdir / "cache"),
            *(args or []),
        ],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # generous: the test machines run loaded
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}: {log_path.read_text()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    stop_server(proc)
    raise RuntimeError(f"serve did not become ready in 120 s: {log_path.read_text()}")
