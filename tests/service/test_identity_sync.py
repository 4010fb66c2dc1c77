"""Two processes' identity caches on one database (issue 13, many replicas):
a change made through one reaches the other's cache through the outbox,
however long the cache would otherwise keep it; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import PermissionDenied, Unauthenticated
from modelyard.domain.identity import Permission, Principal, require
from modelyard.settings import Settings

ADMIN = Principal.local("t")


@pytest.fixture
def pair(tmp_path: Path, db_url: str) -> Iterator[tuple[Services, Services]]:
    """Two object graphs on one database, as two replicas build them, each
    caching token lookups for an hour."""
    built = [
        build_services(Settings(data_dir=tmp_path / f"r{i}", db=db_url, auth_cache_seconds=3600))
        for i in range(2)
    ]
    try:
        yield built[0], built[1]
    finally:
        for s in built:
            s.close()


def test_a_revocation_through_one_reaches_the_others_cache(
    pair: tuple[Services, Services],
) -> None:
    one, other = pair[0].identity, pair[1].identity
    assert other.sync_with_outbox()  # the first read drops what came before
    one.create_user("ann", actor=ADMIN)
    one.grant_role("ann", "writer", namespace="default", actor=ADMIN)
    _, token = one.create_token("ci", user="ann", actor=ADMIN)
    _, kept = one.create_token("other", user="ann", actor=ADMIN)
    assert other.sync_with_outbox()  # the grant: a cached ann would lack the role
    principal = other.authenticate(token)
    require(principal, Permission.WRITE, "default")
    assert other.authenticate_cached(token) == principal  # cached now
    # Creations take nothing away: the cache stays.
    one.create_user("bob", actor=ADMIN)
    assert not other.sync_with_outbox()
    assert other.authenticate_cached(token) == principal

    token_id = next(t.id for t in one.list_tokens(user="ann", actor=ADMIN) if t.name == "ci")
    one.revoke_token(token_id, actor=ADMIN)
    # Without the outbox the other process would go on trusting it for an hour.
    assert other.authenticate_cached(token) == principal
    assert other.sync_with_outbox()
    assert other.authenticate_cached(token) is None
    with pytest.raises(Unauthenticated):
        other.authenticate(token)

    require(other.authenticate(kept), Permission.WRITE, "default")
    one.revoke_role("ann", "writer", namespace="default", actor=ADMIN)
    assert other.sync_with_outbox()
    with pytest.raises(PermissionDenied):
        require(other.authenticate(kept), Permission.WRITE, "default")
    assert not other.sync_with_outbox()  # nothing new since
