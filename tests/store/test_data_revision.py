"""``Tx.data_revision``: the database revision a read transaction sees (the
newest event id), which keys the API's cache of rendered versions (issue 9)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelyard.store.metadata import migrate
from modelyard.store.metadata.engine import create_engine
from modelyard.store.metadata.repository import MetadataStore, Tx


@pytest.fixture
def store(db_url: str) -> Iterator[MetadataStore]:
    engine = create_engine(db_url)
    migrate.upgrade(engine)
    db = MetadataStore(engine)
    try:
        yield db
    finally:
        db.dispose()


def _event(tx: Tx) -> int:
    return tx.append_event("test.write", actor="t", namespace="default", subject="x", payload={})


def _revision(store: MetadataStore) -> int | None:
    with store.read() as tx:
        return tx.data_revision()


def test_every_committed_event_moves_the_revision(store: MetadataStore) -> None:
    start = _revision(store)
    assert isinstance(start, int)
    assert _revision(store) == start  # nothing written: the same revision
    written = store.transact(_event)
    assert _revision(store) == written > start
    second = store.transact(_event)
    assert _revision(store) == second > written


def test_a_write_transaction_has_no_revision(store: MetadataStore) -> None:
    """Inside a write, events are uncommitted (their ids could be handed out
    again after a rollback): nothing may be cached against them."""
    assert store.transact(lambda tx: tx.data_revision()) is None
    with store.write() as tx:
        _event(tx)
        assert tx.data_revision() is None


def test_a_rolled_back_write_leaves_the_revision(store: MetadataStore) -> None:
    before = _revision(store)

    def fail(tx: Tx) -> None:
        _event(tx)
        raise RuntimeError("abandon")

    with pytest.raises(RuntimeError):
        store.transact(fail)
    assert _revision(store) == before
