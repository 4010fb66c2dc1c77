"""The production view is computed once per call, inside the call's own read
transaction (issue 9, Structure 6): a consumer's search returning versions with
lineage used to open a read transaction per lineage link (22 for 10 versions),
each nested inside the search's and holding a second pooled connection."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modelyard.composition import build_services
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("t")
CONSUMER = Principal(
    "c", roles={"team": frozenset({Role.CONSUMER}), "lab": frozenset({Role.CONSUMER})}
)


@dataclass
class Transactions:
    """BEGINs on the engine, and the most connections the calling thread held
    at once (SQLite's checkpoint thread takes connections of its own)."""

    begins: int = 0
    open_now: int = 0
    most_open: int = 0


@pytest.fixture
def svc(tmp_path: Path, db_url: str) -> Iterator[RegistryService]:
    services = build_services(Settings(data_dir=tmp_path, db=db_url))
    service = services.registry
    try:
        service.create_namespace("team", actor=ADMIN)
        service.create_namespace("lab", actor=ADMIN)
        service.create_model("base", namespace="lab", actor=ADMIN)
        base = service.create_version("base", VersionSpec(), namespace="lab", actor=ADMIN)
        service.transition_version(base.ref, "published", actor=ADMIN)
        service.create_model("m", namespace="team", actor=ADMIN)
        for i in range(12):
            v = service.create_version(
                "m",
                VersionSpec(
                    tags={"encrypted": "true" if i % 6 else "false"},
                    parent="lab/base/1",
                    original="lab/base/1",
                    relation="converted",
                ),
                namespace="team",
                actor=ADMIN,
            )
            service.transition_version(v.ref, "published", actor=ADMIN)
        services.governance.set_policy(
            "team", {"required_tags": {"encrypted": "true"}}, actor=ADMIN
        )
        yield service
    finally:
        services.close()


@pytest.fixture
def counted(svc: RegistryService) -> Iterator[Transactions]:
    engine: sa.Engine = svc.db.engine  # type: ignore[attr-defined]
    seen = Transactions()
    caller = threading.get_ident()

    def on_begin(_conn: Any) -> None:
        if threading.get_ident() == caller:
            seen.begins += 1

    def on_checkout(*_args: Any) -> None:
        if threading.get_ident() == caller:
            seen.open_now += 1
            seen.most_open = max(seen.most_open, seen.open_now)

    def on_checkin(*_args: Any) -> None:
        if threading.get_ident() == caller:
            seen.open_now -= 1

    sa.event.listen(engine, "begin", on_begin)
    sa.event.listen(engine.pool, "checkout", on_checkout)
    sa.event.listen(engine.pool, "checkin", on_checkin)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "begin", on_begin)
        sa.event.remove(engine.pool, "checkout", on_checkout)
        sa.event.remove(engine.pool, "checkin", on_checkin)


def test_consumer_search_with_lineage_is_one_read_transaction(
    svc: RegistryService, counted: Transactions
) -> None:
    page = svc.search_versions(namespace="team", page_size=10, actor=CONSUMER)
    assert counted.begins == 1
    assert counted.most_open == 1
    # The view held: 10 of the 10 compliant versions, lineage to the
    # published base kept (the consumer may see it).
    assert len(page.items) == 10
    assert all(v.tags["encrypted"] == "true" for v in page.items)
    assert all(v.parent is not None and v.parent.number == 1 for v in page.items)


def test_consumer_search_across_namespaces_is_one_read_transaction(
    svc: RegistryService, counted: Transactions
) -> None:
    page = svc.search_versions(page_size=20, actor=CONSUMER)
    assert (counted.begins, counted.most_open) == (1, 1)
    assert {v.namespace for v in page.items} == {"team", "lab"}


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_version("team/m@latest", actor=CONSUMER),
        lambda s: s.list_versions("m", namespace="team", actor=CONSUMER),
        lambda s: s.get_model("m", namespace="team", actor=CONSUMER),
        lambda s: s.search_models(namespace="team", actor=CONSUMER),
    ],
    ids=["get_version", "list_versions", "get_model", "search_models"],
)
def test_consumer_reads_are_one_read_transaction(
    svc: RegistryService, counted: Transactions, call: Any
) -> None:
    call(svc)
    assert (counted.begins, counted.most_open) == (1, 1)
