"""schemathesis against a live server: no server error, no conformance failure.

The examples, fuzzing and stateful phases in ``--mode all`` with
every check but ``unsupported_method``; ``tests/system/schemathesis.toml`` lists the
few rules the document cannot state, and why. Bounded and seeded so that a
run is reproducible and short.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest_server import start_server, stop_server

CONFIG = Path(__file__).with_name("schemathesis.toml")
TOKEN = "schemathesis-admin-token-0123456789abcdef"
SEED = "20261130"


def _run_schemathesis(url: str, report: Path, *extra: str, max_examples: int) -> None:
    command = [
        sys.executable,
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "--config-file",
        str(CONFIG),
        "run",
        f"{url}/openapi.json",
        "--mode",
        "all",
        # Every check but that one (see tests/system/schemathesis.toml for why).
        "--exclude-checks",
        "unsupported_method",
        "--max-examples",
        str(max_examples),
        "--seed",
        SEED,
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        "--report",
        "json",
        "--report-dir",
        str(report),
        *extra,
    ]
    # Generous: the run takes about a minute on an idle 2-core machine, and
    # several times that when other suites share the cores.
    # In the report's directory: schemathesis keeps a crash cache in its cwd.
    report.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, cwd=report
    )
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_schemathesis_auth_off(tmp_path: Path) -> None:
    proc, url = start_server(tmp_path / "data")
    try:
        # The coverage phase (every boundary of every schema, ~2,600 cases)
        # takes minutes; run it by hand with the command in schemathesis.toml.
        _run_schemathesis(
            url, tmp_path / "report", "--phases", "examples,fuzzing,stateful", max_examples=8
        )
    finally:
        stop_server(proc)


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_schemathesis_auth_on_with_a_token(tmp_path: Path) -> None:
    # The same document plus bearer security (and the ignored_auth check: a
    # request without the token must be refused).
    env = {"MODELYARD_AUTH": "on", "MODELYARD_ADMIN_TOKEN": TOKEN}
    proc, url = start_server(tmp_path / "data", extra_env=env)
    try:
        _run_schemathesis(
            url,
            tmp_path / "report",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--phases",
            "fuzzing,stateful",
            max_examples=3,
        )
    finally:
        stop_server(proc)
