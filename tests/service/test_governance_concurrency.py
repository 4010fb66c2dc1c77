"""Concurrent approvals, alias moves and rollbacks: exactly one wins, the
others get a clear 409 code. Threads on one service, SQLite and PostgreSQL.
Also the append-only guard on ``events``."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from modelyard.composition import build_services
from modelyard.domain.errors import ModelyardError
from modelyard.domain.identity import Principal
from modelyard.service.approvals import ApprovalService
from modelyard.service.governance import GovernanceService
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings

THREADS = 6


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[tuple[RegistryService, GovernanceService]]:
    svc = build_services(Settings(data_dir=tmp_path, db=db_url)).registry
    try:
        yield svc, GovernanceService(svc)
    finally:
        svc.db.dispose()


def race(n: int, fn: Callable[[int], Any]) -> list[str]:
    """Run ``fn(i)`` in ``n`` threads released together; "ok" or the error code each."""
    barrier = threading.Barrier(n)

    def run(i: int) -> str:
        barrier.wait()
        try:
            fn(i)
        except ModelyardError as exc:
            return exc.code
        return "ok"

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_concurrent_approvals_apply_once(
    services: tuple[RegistryService, GovernanceService],
) -> None:
    svc, gs = services
    aps = ApprovalService(svc)
    gs.set_policy(
        "default",
        {"required_approvals": 1, "protected_aliases": ["prod"]},
        actor=Principal.local("a"),
    )
    svc.create_model("m", actor=Principal.local("t"))
    svc.create_version("m", VersionSpec(), actor=Principal.local("t"))
    req = aps.request_approval("m/1", alias="prod", actor=Principal.local("ana"))
    results = race(THREADS, lambda i: aps.approve(req.id, actor=Principal.local(f"reviewer{i}")))
    assert Counter(results) == {"ok": 1, "APPROVAL_NOT_PENDING": THREADS - 1}
    assert svc.get_version("m@prod", actor=Principal.local("t")).state.value == "published"
    final = aps.get_approval(req.id, actor=Principal.local("t"))
    assert final.state.value == "applied" and len(final.approvers) == 1
    applied = gs.audit(action="approval.applied", actor=Principal.local("t")).items
    assert len(applied) == 1 and applied[0]["actor"] == final.approvers[0]
    assert len(gs.audit(action="version.published", actor=Principal.local("t")).items) == 1


def test_concurrent_approvals_with_two_required(
    services: tuple[RegistryService, GovernanceService],
) -> None:
    svc, gs = services
    aps = ApprovalService(svc)
    gs.set_policy("default", {"required_approvals": 2}, actor=Principal.local("a"))
    svc.create_model("m", actor=Principal.local("t"))
    svc.create_version("m", VersionSpec(), actor=Principal.local("t"))
    req = aps.request_approval("m/1", actor=Principal.local("ana"))
    results = race(THREADS, lambda i: aps.approve(req.id, actor=Principal.local(f"reviewer{i}")))
    # Two distinct approvals land (the second applies); later ones find it closed.
    assert Counter(results) == {"ok": 2, "APPROVAL_NOT_PENDING": THREADS - 2}
    assert len(aps.get_approval(req.id, actor=Principal.local("t")).approvers) == 2
    assert svc.get_version("m/1", actor=Principal.local("t")).state.value == "published"


def test_concurrent_alias_moves_exactly_one_wins(
    services: tuple[RegistryService, GovernanceService],
) -> None:
    svc, _ = services
    svc.create_model("m", actor=Principal.local("t"))
    for _ in range(THREADS + 1):
        svc.create_version("m", VersionSpec(), actor=Principal.local("t"))
    svc.set_alias("m/1", "prod", actor=Principal.local("t"))
    results = race(
        THREADS,
        lambda i: svc.set_alias(
            f"m/{i + 2}", "prod", actor=Principal.local(f"op{i}"), expected_version=1
        ),
    )
    assert Counter(results) == {"ok": 1, "ALIAS_CHANGED": THREADS - 1}
    history = svc.alias_history("m", alias="prod", actor=Principal.local("t"))
    assert len(history) == 2 and history[1].from_version == 1
    assert svc.get_version("m@prod", actor=Principal.local("t")).number == history[1].to_version


def test_concurrent_rollbacks_exactly_one_wins(
    services: tuple[RegistryService, GovernanceService],
) -> None:
    svc, gs = services
    svc.create_model("m", actor=Principal.local("t"))
    for n in (1, 2):
        svc.create_version("m", VersionSpec(), actor=Principal.local("t"))
        svc.set_alias(f"m/{n}", "prod", actor=Principal.local("t"))
    results = race(
        THREADS,
        lambda i: gs.rollback_alias(
            "m", "prod", actor=Principal.local(f"op{i}"), expected_version=2
        ),
    )
    assert Counter(results) == {"ok": 1, "ALIAS_CHANGED": THREADS - 1}
    assert svc.get_version("m@prod", actor=Principal.local("t")).number == 1
    assert len(svc.alias_history("m", alias="prod", actor=Principal.local("t"))) == 3


def test_events_are_append_only(tmp_path: Path, db_url: str) -> None:
    svc = build_services(Settings(data_dir=tmp_path, db=db_url)).registry
    try:
        svc.create_model("m", actor=Principal.local("t"))
        engine = svc.db.engine
        statements = [
            "UPDATE events SET actor = 'mallory'",
            "UPDATE events SET payload = '{}'",
            "DELETE FROM events",
        ]
        if engine.dialect.name == "postgresql":
            # CASCADE: deliveries reference events; the guard must still refuse.
            statements.append("TRUNCATE events CASCADE")
        for sql in statements:
            with (
                pytest.raises(sa.exc.DBAPIError, match="append-only"),
                engine.begin() as conn,
            ):
                conn.exec_driver_sql(sql)
        with engine.connect() as conn:
            actors = conn.exec_driver_sql("SELECT actor FROM events").scalars().all()
        assert actors and "mallory" not in actors
        # Inserting stays possible: the service keeps writing events.
        svc.create_model("m2", actor=Principal.local("t"))
        assert len(svc.list_events(actor=Principal.local("t"))) == len(actors) + 1
    finally:
        svc.db.dispose()


def test_no_route_edits_or_deletes_events(client: TestClient) -> None:
    for path in ("/api/v1/audit", "/api/v1/events"):
        for method in ("DELETE", "PUT", "PATCH"):
            assert client.request(method, path).status_code == 405


def test_two_approved_moves_of_one_alias_apply_once(
    services: tuple[RegistryService, GovernanceService],
) -> None:
    svc, gs = services
    aps = ApprovalService(svc)
    svc.create_model("m", actor=Principal.local("t"))
    for _ in range(3):
        v = svc.create_version("m", VersionSpec(), actor=Principal.local("t"))
        svc.transition_version(v.ref, "published", actor=Principal.local("t"))
    svc.set_alias("m/1", "prod", actor=Principal.local("t"))
    gs.set_policy(
        "default",
        {"required_approvals": 1, "protected_aliases": ["prod"]},
        actor=Principal.local("a"),
    )
    reqs = [
        aps.request_approval(f"m/{n}", action="alias", alias="prod", actor=Principal.local("ana"))
        for n in (2, 3)
    ]
    assert [r.alias_from for r in reqs] == [1, 1]
    results = race(2, lambda i: aps.approve(reqs[i].id, actor=Principal.local(f"rev{i}")))
    assert sorted(results) == ["ALIAS_CHANGED", "ok"]
    states = sorted(aps.get_approval(r.id, actor=Principal.local("t")).state.value for r in reqs)
    assert states == ["applied", "pending"]
    assert len(svc.alias_history("m", alias="prod", actor=Principal.local("t"))) == 2
