"""A model's alias history in keyset pages, newest first (the model page
reads one page, never every move), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import InvalidInput, NotFound, PermissionDenied
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("a")
CONSUMER = Principal("c", roles={"default": frozenset({Role.CONSUMER})})


@pytest.fixture
def svc(tmp_path: Path, db_url: str) -> Iterator[RegistryService]:
    built: Services = build_services(Settings(data_dir=tmp_path, db=db_url, dispatcher=False))
    try:
        reg = built.registry
        reg.create_model("m", actor=ADMIN)
        reg.create_model("other", actor=ADMIN)
        for _ in range(3):
            reg.create_version("m", VersionSpec(), actor=ADMIN)
        reg.create_version("other", VersionSpec(), actor=ADMIN)
        yield reg
    finally:
        built.close()


def test_pages_newest_first_match_the_full_history(svc: RegistryService) -> None:
    for i, (alias, number) in enumerate(
        [("prod", 1), ("canary", 2), ("prod", 2), ("canary", 3), ("prod", 3), ("prod", 1)]
    ):
        svc.set_alias(f"m/{number}", alias, actor=ADMIN, reason=f"move {i}")
    svc.set_alias("other/1", "prod", actor=ADMIN)  # another model's move stays out
    full = svc.alias_history("m", actor=ADMIN)
    seen = []
    token = None
    sizes = []
    while True:
        page = svc.alias_moves("m", page_size=4, page_token=token, actor=ADMIN)
        seen.extend(page.items)
        sizes.append(len(page.items))
        token = page.next_page_token
        if token is None:
            break
    assert sizes == [4, 2]
    assert seen == list(reversed(full)) and seen[0].reason == "move 5"
    # One alias only, paged the same way.
    prod = svc.alias_moves("m", alias="prod", page_size=3, actor=ADMIN)
    assert [m.reason for m in prod.items] == ["move 5", "move 4", "move 2"]
    rest = svc.alias_moves(
        "m", alias="prod", page_size=3, page_token=prod.next_page_token, actor=ADMIN
    )
    assert [m.reason for m in rest.items] == ["move 0"] and rest.next_page_token is None
    # Exactly one page: no token.
    assert svc.alias_moves("m", page_size=6, actor=ADMIN).next_page_token is None


def test_pages_oldest_first_match_the_full_history(svc: RegistryService) -> None:
    for i, (alias, number) in enumerate([("prod", 1), ("canary", 2), ("prod", 2), ("prod", 3)]):
        svc.set_alias(f"m/{number}", alias, actor=ADMIN, reason=f"move {i}")
    full = svc.alias_history("m", actor=ADMIN)
    first = svc.alias_moves("m", page_size=3, newest_first=False, actor=ADMIN)
    assert first.next_page_token is not None
    rest = svc.alias_moves(
        "m", page_size=3, page_token=first.next_page_token, newest_first=False, actor=ADMIN
    )
    assert [*first.items, *rest.items] == full and rest.next_page_token is None
    assert [m.reason for m in first.items] == ["move 0", "move 1", "move 2"]
    prod = svc.alias_moves("m", alias="prod", page_size=2, newest_first=False, actor=ADMIN)
    assert [m.reason for m in prod.items] == ["move 0", "move 2"]
    tail = svc.alias_moves(
        "m",
        alias="prod",
        page_size=2,
        page_token=prod.next_page_token,
        newest_first=False,
        actor=ADMIN,
    )
    assert [m.reason for m in tail.items] == ["move 3"] and tail.next_page_token is None


def test_refusals(svc: RegistryService) -> None:
    assert svc.alias_moves("m", actor=ADMIN).items == []
    for bad in ("x", "1", "1.x", "-1.2", "9" * 20 + ".1"):
        with pytest.raises(InvalidInput) as err:
            svc.alias_moves("m", page_token=bad, actor=ADMIN)
        assert err.value.code == "INVALID_CURSOR", bad
    for size in (0, 1001, True):
        with pytest.raises(InvalidInput):
            svc.alias_moves("m", page_size=size, actor=ADMIN)
    with pytest.raises(PermissionDenied):
        svc.alias_moves("m", actor=CONSUMER)
    with pytest.raises(NotFound):
        svc.alias_moves("ghost", actor=ADMIN)
