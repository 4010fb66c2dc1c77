"""A real S3-compatible server process for the tests: moto in server mode,
spoken to over HTTP on a free 127.0.0.1 port, exactly as boto3 speaks to AWS
S3 or MinIO. Started once per test session (per xdist worker) by the
``s3_server`` fixture (``tests/conftest_s3.py``) and stopped by its PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.pgcluster import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "modelyard-test",
    "AWS_SECRET_ACCESS_KEY": "modelyard-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""What every client of the test server uses (moto accepts any credentials);
given to boto3 through the standard AWS environment variables."""


@dataclass
class S3Server:
    """A running moto server: its endpoint and process."""

    endpoint: str
    proc: subprocess.Popen[bytes]
    log: Path
    """The server's request log: one line per HTTP request it answered."""

    @classmethod
    def start(cls, log_dir: Path) -> S3Server:
        """Start ``moto.server`` on a free port; wait until it answers."""
        port = free_port()
        log = open(log_dir / "moto.log", "ab")  # noqa: SIM115 - the child keeps its copy
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, **CREDENTIALS},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        endpoint = f"http://127.0.0.1:{port}"
        server = cls(endpoint, proc, log_dir / "moto.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"moto server exited with {proc.returncode}: "
                    + (log_dir / "moto.log").read_text(errors="replace")
                )
            try:
                if httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code < 500:
                    return server
            except httpx.TransportError:
                time.sleep(0.05)
        server.stop()
        raise RuntimeError("moto server did not start in 60 s")

    def stop(self) -> None:
        """Stop the server we started, by its PID."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def client(self) -> Any:
        """A boto3 S3 client on this server."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        ).client("s3", endpoint_url=self.endpoint)

    def new_bucket(self) -> str:
        """Create an empty bucket with a fresh name; return the name."""
        name = f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        """The standard AWS environment of a process that uses this store."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": self.endpoint}
