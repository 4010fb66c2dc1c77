"""A version read racing a write that makes its reference resolve (issue 13:
two replicas on PostgreSQL): the read answers what the database holds, never
a 500."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import NotFound
from modelyard.domain.identity import Principal
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings
from modelyard.store.metadata.repository import Tx

ADMIN = Principal.local("a")


@pytest.fixture
def svc(tmp_path: Path, db_url: str) -> Iterator[RegistryService]:
    built: Services = build_services(Settings(data_dir=tmp_path, db=db_url, dispatcher=False))
    try:
        built.registry.create_model("m", actor=ADMIN)
        built.registry.create_version("m", VersionSpec(), actor=ADMIN)
        yield built.registry
    finally:
        built.close()


def test_an_alias_set_between_the_two_lookups_of_a_read(
    svc: RegistryService, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read's first statement finds no ``prod``; another transaction sets
    it and commits before the second. PostgreSQL (read committed) then sees
    the alias, SQLite (one snapshot per read) does not: the answer is that
    version or ALIAS_NOT_FOUND, as the backend's isolation says."""
    original = Tx.get_version_by_ref
    raced = threading.Event()

    def racing(self: Tx, *args: Any, **kwargs: Any) -> Any:
        found = original(self, *args, **kwargs)
        if found is None and not raced.is_set():
            raced.set()
            writer = threading.Thread(
                target=svc.set_alias, args=("m/1", "prod"), kwargs={"actor": ADMIN}
            )
            writer.start()
            writer.join(30)
        return found

    monkeypatch.setattr(Tx, "get_version_by_ref", racing)
    if db_url.startswith("postgresql"):
        got = svc.get_version("m@prod", actor=ADMIN)
        assert (got.number, got.aliases) == (1, ["prod"])
    else:
        with pytest.raises(NotFound):
            svc.get_version("m@prod", actor=ADMIN)
    assert raced.is_set()
    assert svc.get_version("m@prod", actor=ADMIN).number == 1
