"""What a server start loads (issue 9, cold start).

``modelyard server`` on a local SQLite registry answers ``/health`` without
the modules only other setups or later requests need: the S3 client, the
numeric and model-format stacks, the SDK, the HTTP client of the webhook
sender, the PostgreSQL dialect, Alembic (the schema is created from the
snapshot or found at head), the web UI's template and Markdown engines. Each
is checked in a fresh interpreter that goes the way the command goes (the
CLI module, then the app built from settings), so a new eager import on that
path fails here instead of quietly adding to every start. No timing: which
modules, not how long.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

NOT_ON_START: tuple[str, ...] = (
    "boto3",
    "botocore",
    "numpy",
    "onnxruntime",
    "pandas",
    "scipy",
    "sklearn",
    "alembic",
    "jinja2",
    "markdown_it",
    "httpx",
    "certifi",
    "psycopg",
    "sqlalchemy.dialects.postgresql",
    "modelyard.client",
    "modelyard.serving",
    "modelyard.convert",
)
"""Modules a local server must not import before it answers."""

_PROBE = """
import json, sys
from pathlib import Path

from modelyard.cli.main import app_for
from modelyard.server import collector_paused
from modelyard.settings import Settings

app_for(["server"])
with collector_paused():
    from modelyard.api.app import create_app

    app = create_app(Settings(data_dir=Path(sys.argv[1])))
json.dump(sorted(sys.modules), sys.stdout)
"""


def _modules_after_start(data_dir: Path) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing"])
def test_server_start_leaves_unneeded_modules_unloaded(tmp_path: Path, existing: bool) -> None:
    data_dir = tmp_path / "data"
    if existing:
        _modules_after_start(data_dir)  # the database now exists and is at head
    loaded = _modules_after_start(data_dir)
    assert "modelyard.api.app" in loaded and "fastapi" in loaded  # the probe did build the app
    assert (data_dir / "registry.db").exists()
    unexpected = sorted(
        name
        for name in NOT_ON_START
        if name in loaded or any(m.startswith(name + ".") for m in loaded)
    )
    assert unexpected == []
