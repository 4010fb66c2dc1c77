"""``/health/live`` and ``/health/ready`` of a real server whose PostgreSQL and
S3 store go away and come back (issue 13, "/health tells ready from live")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard import __version__
from tests.conftest_server import start_server, stop_server
from tests.pgcluster import PgCluster, unavailable_reason
from tests.receiver import wait_for
from tests.s3server import S3Server

pytestmark = pytest.mark.postgres


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    """A cluster of this test's own: the test stops it, which the shared one must not."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"PostgreSQL unavailable: {reason}")
    pg = PgCluster.start()
    try:
        yield pg
    finally:
        pg.stop()


def _failed(r: httpx.Response) -> list[str]:
    """The dependencies a 503 ``NOT_READY`` names, after checking the one error body."""
    assert r.status_code == 503, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    err: dict[str, Any] = body["error"]
    assert err["code"] == "NOT_READY"
    failed: list[str] = err["details"]["failed"]
    for name, check in err["details"]["checks"].items():
        assert (check == "ok") == (name not in failed), err
        # Public: it names no host, port or bucket.
        assert "127.0.0.1" not in str(check)
    return sorted(failed)


def test_ready_follows_the_database_and_the_store_live_does_not(
    tmp_path: Path, cluster: PgCluster
) -> None:
    s3 = S3Server.start(tmp_path)
    try:
        bucket = s3.new_bucket()
        proc, url = start_server(
            tmp_path / "server",
            extra_env=s3.env(),
            args=("--db", cluster.url, "--store", f"s3://{bucket}/reg"),
        )
    except BaseException:
        s3.stop()
        raise
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            live = c.get("/health/live")
            assert live.status_code == 200
            assert live.json() == {"status": "ok", "version": __version__}
            for path in ("/health/ready", "/health"):
                r = c.get(path)
                assert r.status_code == 200, r.text
                assert r.json() == {
                    "status": "ok",
                    "version": __version__,
                    "checks": {"database": "ok", "blob_store": "ok"},
                }
            assert c.post("/api/v1/models", json={"name": "m"}).status_code == 201

            s3.stop()
            assert _failed(c.get("/health/ready")) == ["blob_store"]
            assert c.get("/health/live").status_code == 200

            cluster.halt()
            assert _failed(c.get("/health/ready")) == ["blob_store", "database"]
            assert _failed(c.get("/health")) == ["blob_store", "database"]
            assert c.get("/health/live").status_code == 200
            # Any other request: the same 503 body, never a 500.
            r = c.get("/api/v1/models/default/m")
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
            assert "127.0.0.1" not in r.text

            cluster.resume()
            # The pool reconnects by itself: ready again as far as the database goes.
            wait_for(
                lambda: _failed(c.get("/health/ready")) == ["blob_store"],
                what="the database check to pass again",
            )
            assert c.get("/api/v1/models/default/m").status_code == 200
        assert proc.poll() is None
    finally:
        stop_server(proc)
        s3.stop()
    log = (tmp_path / "server" / "server.log").read_text()
    # Every failure was a known one (a domain error), none unexpected.
    assert "readiness check failed" not in log, log[-3000:]
