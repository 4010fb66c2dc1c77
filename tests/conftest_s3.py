"""S3 fixtures (imported by conftest.py).

- ``s3_server`` (session): a moto server process on 127.0.0.1 (``tests/s3server.py``),
  the standard AWS variables (credentials, ``AWS_ENDPOINT_URL_S3``) set for this
  process while it runs, so every boto3 client here and in the processes it
  starts reaches it, as a deployment's would reach its store.
- ``store_url`` (function, params ``local`` / ``s3``): a fresh blob store URL,
  a directory or a new bucket; every test that takes it runs on both backends.
  The ``s3`` param carries the ``s3`` mark (``-m "not s3"`` deselects it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.s3server import S3Server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One moto server per session (per xdist worker), stopped by PID at the end."""
    server = S3Server.start(tmp_path_factory.mktemp("moto"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(
    params=[pytest.param("local", id="local"), pytest.param("s3", id="s3", marks=pytest.mark.s3)]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty blob store URL: a directory, or a new bucket with a prefix."""
    if request.param == "local":
        return f"file://{tmp_path / 'blobs'}"
    server: S3Server = request.getfixturevalue("s3_server")
    return f"s3://{server.new_bucket()}/reg"
