"""The admin's audited pickle exception (issue 12) on SQLite and PostgreSQL:
only an admin records or revokes it, it needs a reason and a pickle file, it
is bound to the pickle files' digests, each change is an event (the audit
log), and the version shows it (a consumer too: the model server's token)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from modelyard.domain.identity import Principal, Role
from modelyard.domain.pickles import covers
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings

ROOT = Principal.local("ops")
ADMIN = Principal("alice", roles={"default": frozenset({Role.ADMIN})})
WRITER = Principal("w", roles={"default": frozenset({Role.WRITER})})
CONSUMER = Principal("server", roles={"default": frozenset({Role.CONSUMER})})
OTHER_ADMIN = Principal("x", roles={"other": frozenset({Role.ADMIN})})

PICKLE = b"\x80\x04K\x01."
README = b"a readme"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, db=db_url))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def svc(services: Services) -> RegistryService:
    """m/1: a pickle and a readme, published; m/2: a readme only."""
    registry = services.registry
    registry.create_model("m", actor=ROOT)
    for data in (PICKLE, README):
        services.blob_service.upload([data], actor=ROOT, size=len(data))
    files = [
        {"path": "model.pkl", "digest": _sha(PICKLE), "size": len(PICKLE)},
        {"path": "README.md", "digest": _sha(README), "size": len(README)},
    ]
    registry.create_version("m", VersionSpec(files=files, framework="sklearn"), actor=ROOT)
    registry.create_version("m", VersionSpec(files=files[1:]), actor=ROOT)
    registry.transition_version("m/1", "published", actor=ROOT)
    return registry


def _events(svc: RegistryService, kind: str) -> list[dict[str, object]]:
    return [e for e in svc.list_events(actor=ROOT, limit=1000) if e["type"] == kind]


def test_an_admin_records_and_revokes_with_events(svc: RegistryService) -> None:
    ver = svc.record_pickle_exception("m/1", "  legacy model, source audited  ", actor=ADMIN)
    found = ver.pickle_exception
    assert found is not None
    assert found["by"] == "alice" and found["reason"] == "legacy model, source audited"
    assert found["digests"] == {"model.pkl": _sha(PICKLE)}  # the pickle only, by digest
    assert isinstance(found["at"], int) and found["at"] > 0
    # Visible wherever the version is read, also to the model server's consumer token.
    assert svc.get_version("m/1", actor=CONSUMER).pickle_exception == found
    assert svc.get_version("m/1", actor=WRITER).pickle_exception == found

    (recorded,) = _events(svc, "version.pickle_exception_recorded")
    assert recorded["actor"] == "alice" and recorded["subject"] == "default/m/1"
    payload = recorded["payload"]
    assert isinstance(payload, dict)
    assert payload["before"] is None and payload["after"] == found

    after = svc.revoke_pickle_exception("m/1", actor=ADMIN)
    assert after.pickle_exception is None
    assert svc.get_version("m/1", actor=CONSUMER).pickle_exception is None
    (revoked,) = _events(svc, "version.pickle_exception_revoked")
    payload = revoked["payload"]
    assert isinstance(payload, dict)
    assert payload["before"] == found and payload["after"] is None
    with pytest.raises(NotFound) as none:
        svc.revoke_pickle_exception("m/1", actor=ADMIN)
    assert none.value.code == "PICKLE_EXCEPTION_NOT_FOUND"


@pytest.mark.parametrize("who", [WRITER, CONSUMER, OTHER_ADMIN])
def test_only_an_admin_of_the_namespace_may(svc: RegistryService, who: Principal) -> None:
    with pytest.raises(PermissionDenied):
        svc.record_pickle_exception("m/1", "trust me", actor=who)
    svc.record_pickle_exception("m/1", "audited", actor=ADMIN)
    with pytest.raises(PermissionDenied):
        svc.revoke_pickle_exception("m/1", actor=who)
    assert svc.get_version("m/1", actor=ROOT).pickle_exception is not None
    assert len(_events(svc, "version.pickle_exception_recorded")) == 1
    assert _events(svc, "version.pickle_exception_revoked") == []


def test_refusals_have_stable_codes(svc: RegistryService) -> None:
    with pytest.raises(Conflict) as no_pickle:
        svc.record_pickle_exception("m/2", "why not", actor=ADMIN)
    assert no_pickle.value.code == "NO_PICKLE_FILES"
    with pytest.raises(NotFound) as missing:
        svc.record_pickle_exception("m/9", "why not", actor=ADMIN)
    assert missing.value.code == "VERSION_NOT_FOUND"
    for blank in ("", "   "):
        with pytest.raises(InvalidInput) as bad:
            svc.record_pickle_exception("m/1", blank, actor=ADMIN)
        assert bad.value.code == "INVALID_REASON"
    assert svc.get_version("m/1", actor=ROOT).pickle_exception is None
    assert _events(svc, "version.pickle_exception_recorded") == []


def test_the_exception_covers_only_the_bytes_it_names() -> None:
    pkl = _sha(PICKLE)
    manifest = [("model.pkl", pkl), ("README.md", _sha(README))]
    assert covers({"model.pkl": pkl}, manifest)
    assert not covers({"model.pkl": _sha(b"other bytes")}, manifest)
    assert not covers({"model.pkl": pkl}, [*manifest, ("extra.joblib", pkl)])
    assert not covers({"other.pkl": pkl}, manifest)
    assert not covers({}, manifest) and not covers(None, manifest)
