"""Search pages from the cache of rendered versions (issue 9, Performance):
never stale after any kind of write, on either backend, across replicas, and
never used for a caller who sees versions trimmed by the production view."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.entities import Version
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.service.rendered import RevisionCache
from modelyard.settings import Settings
from modelyard.wire import render

ADMIN = Principal.local("t")
READER = Principal("r", roles={"default": frozenset({Role.READER})})
CONSUMER = Principal("c", roles={"default": frozenset({Role.CONSUMER})})
POISON = b'"poison"'
# A static plan (one walked tag), one that counts its terms, and no filter.
FILTERS = ("tags.env = 'prod'", "tags.env = 'prod' AND metrics.acc >= 0.6", None)


def as_json(ver: Version) -> bytes:
    """What the API caches for a version."""
    return orjson.dumps(render.version(ver), option=orjson.OPT_NON_STR_KEYS)


def cached_page(
    reg: RegistryService,
    cache: RevisionCache[bytes],
    text: str | None = FILTERS[0],
    actor: Principal = ADMIN,
) -> list[bytes]:
    return reg.search_versions_rendered(
        text, actor=actor, render=as_json, cache=cache, page_size=50
    ).items


def fresh_page(
    reg: RegistryService, text: str | None = FILTERS[0], actor: Principal = ADMIN
) -> list[bytes]:
    return [as_json(v) for v in reg.search_versions(text, actor=actor, page_size=50).items]


def blob_files(svc: Services, data: bytes) -> list[dict[str, object]]:
    svc.blob_service.upload([data], actor=ADMIN, size=len(data))
    return [{"path": "w.bin", "digest": hashlib.sha256(data).hexdigest(), "size": len(data)}]


@pytest.fixture
def svc(tmp_path: Path, db_url: str) -> Iterator[Services]:
    with build_services(Settings(data_dir=tmp_path / "data", db=db_url)) as services:
        reg = services.registry
        reg.create_namespace("lab", actor=ADMIN)
        reg.create_model("base", namespace="lab", actor=ADMIN)
        reg.create_version("base", VersionSpec(), namespace="lab", actor=ADMIN)
        reg.create_model("m", actor=ADMIN)
        for i in range(4):
            reg.create_version(
                "m",
                VersionSpec(
                    tags={"env": "prod", "i": str(i)},
                    metrics={"acc": 0.5 + i / 10},
                    parent="lab/base/1",
                    original="lab/base/1",
                    relation="converted",
                ),
                actor=ADMIN,
            )
        yield services


def test_cache_serves_entries_while_nothing_changes(svc: Services) -> None:
    """The cache is really used (so the staleness tests below can fail): an
    entry planted at the current revision is what the page shows."""
    reg, cache = svc.registry, RevisionCache[bytes]()
    first = cached_page(reg, cache)
    assert first == fresh_page(reg) and len(first) == 4
    assert len(cache) == 4
    vid = reg.get_version("m/2", actor=ADMIN).id
    cache.put_many(cache.revision, {vid: POISON})
    assert POISON in cached_page(reg, cache)
    # A reader of the namespace sees whole versions: it shares the entries.
    assert POISON in cached_page(reg, cache, actor=READER)


def _publish(reg: RegistryService) -> None:
    reg.transition_version("m/2", "published", actor=ADMIN)


def _alias(reg: RegistryService) -> None:
    reg.set_alias("m/2", "prod", actor=ADMIN)


# Each kind of write that changes how a version renders: (setup before the
# cache is warmed, the write).
WRITES: dict[str, tuple[Callable[[Services], object] | None, Callable[[Services], object]]] = {
    "tags set": (
        None,
        lambda s: s.registry.update_version("m/2", set_tags={"team": "x"}, actor=ADMIN),
    ),
    "tag deleted": (
        None,
        lambda s: s.registry.update_version("m/2", delete_tags=["i"], actor=ADMIN),
    ),
    "metadata": (None, lambda s: s.registry.update_version("m/2", metadata={"k": 1}, actor=ADMIN)),
    "description": (None, lambda s: s.registry.update_version("m/2", description="d", actor=ADMIN)),
    "state": (None, lambda s: _publish(s.registry)),
    "alias set": (None, lambda s: _alias(s.registry)),
    "alias moved": (
        lambda s: _alias(s.registry),
        lambda s: s.registry.set_alias("m/3", "prod", actor=ADMIN),
    ),
    "alias deleted": (
        lambda s: _alias(s.registry),
        lambda s: s.registry.delete_alias("m", "prod", actor=ADMIN),
    ),
    "files committed": (
        lambda s: s.registry.create_version(
            "m", VersionSpec(tags={"env": "prod"}, metrics={"acc": 0.9}, draft=True), actor=ADMIN
        ),
        lambda s: s.registry.commit_files("m/5", blob_files(s, b"weights"), actor=ADMIN),
    ),
    "version deleted": (None, lambda s: s.registry.delete_version("m/2", actor=ADMIN)),
    "version created": (
        None,
        lambda s: s.registry.create_version(
            "m", VersionSpec(tags={"env": "prod"}, metrics={"acc": 0.9}), actor=ADMIN
        ),
    ),
    "model renamed": (None, lambda s: s.registry.rename_model("m", "m2", actor=ADMIN)),
    # Renders in every version of ``m`` as its lineage (``lab/base/1``).
    "lineage model renamed": (
        None,
        lambda s: s.registry.rename_model("base", "base2", namespace="lab", actor=ADMIN),
    ),
}


@pytest.mark.parametrize("kind", list(WRITES))
@pytest.mark.parametrize("text", FILTERS)
def test_no_write_leaves_a_stale_entry(svc: Services, kind: str, text: str | None) -> None:
    reg, cache = svc.registry, RevisionCache[bytes]()
    setup, write = WRITES[kind]
    if setup is not None:
        setup(svc)
    before = cached_page(reg, cache, text)
    assert cached_page(reg, cache, text) == before == fresh_page(reg, text)
    assert len(cache) == len(before)
    write(svc)
    after = fresh_page(reg, text)
    assert after != before, "the write should change the page"
    assert cached_page(reg, cache, text) == after
    assert cached_page(reg, cache, text) == after


def test_a_write_through_another_replica_is_seen(tmp_path: Path, svc: Services) -> None:
    """Two processes' worth of services on one database, each with its own
    cache: a write through one is never hidden by the other's cache."""
    other = build_services(svc.settings)
    try:
        cache = RevisionCache[bytes]()
        before = cached_page(svc.registry, cache)
        other.registry.update_version("m/2", set_tags={"team": "y"}, actor=ADMIN)
        after = cached_page(svc.registry, cache)
        assert after != before
        assert after == fresh_page(svc.registry) == fresh_page(other.registry)
    finally:
        other.close()


def test_a_consumer_never_gets_cached_versions(svc: Services) -> None:
    """A consumer sees lineage trimmed to what it may see; the cache holds
    whole versions, so a consumer's page is rendered afresh."""
    reg, cache = svc.registry, RevisionCache[bytes]()
    _publish(reg)
    cached_page(reg, cache)  # warm with the whole versions
    vid = reg.get_version("m/2", actor=ADMIN).id
    cache.put_many(cache.revision, {vid: POISON})
    page = cached_page(reg, cache, actor=CONSUMER)
    assert page == fresh_page(reg, actor=CONSUMER)
    assert len(page) == 1 and POISON not in page
    shown = orjson.loads(page[0])
    # lab/base/1 is outside the consumer's reach: the link is dropped.
    assert shown["lineage"]["parent"] is None and shown["lineage"]["original"] is None


def test_pages_and_cursors_match_the_uncached_search(svc: Services) -> None:
    reg, cache = svc.registry, RevisionCache[bytes]()
    for text in FILTERS:
        token: str | None = None
        while True:
            got = reg.search_versions_rendered(
                text, actor=ADMIN, render=as_json, cache=cache, page_size=2, page_token=token
            )
            want = reg.search_versions(text, actor=ADMIN, page_size=2, page_token=token)
            assert got.items == [as_json(v) for v in want.items]
            assert got.next_page_token == want.next_page_token
            token = got.next_page_token
            if token is None:
                break


# -- the cache itself ----------------------------------------------------------


def test_revision_cache_keeps_one_revision() -> None:
    cache = RevisionCache[str](capacity=3)
    cache.put_many(5, {1: "a", 2: "b"})
    assert cache.get_many(5, [1, 2, 3]) == {1: "a", 2: "b"}
    assert cache.get_many(4, [1]) == {} and cache.get_many(6, [1]) == {}
    cache.put_many(4, {3: "old"})  # an older snapshot's: not stored
    assert cache.get_many(5, [3]) == {} and cache.revision == 5
    cache.put_many(6, {3: "c"})  # a newer revision drops the older entries
    assert cache.get_many(6, [1, 2, 3]) == {3: "c"} and len(cache) == 1
    cache.put_many(6, {4: "d", 5: "e", 6: "f"})  # over capacity: oldest go
    assert cache.get_many(6, [3, 4, 5, 6]) == {4: "d", 5: "e", 6: "f"}
    with pytest.raises(ValueError):
        RevisionCache[str](capacity=0)


# -- answers kept per revision (answer_at_revision, the MLflow door's searches) --


def test_an_answer_is_kept_until_the_next_write_and_per_view(svc: Services) -> None:
    """The same key at the same revision gives back the kept answer (not a
    new computation); any write computes it again; callers of different
    roles never share answers; a consumer is never served from the cache."""
    reg = svc.registry
    cache: RevisionCache[dict[str, int]] = RevisionCache()
    calls: list[str] = []

    def compute(tag: str) -> Callable[[], dict[str, int]]:
        def run() -> dict[str, int]:
            calls.append(tag)
            return {"n": len(reg.search_versions(None, actor=ADMIN, page_size=1000).items)}

        return run

    first = reg.answer_at_revision(cache, "k", compute("a"), actor=ADMIN)
    again = reg.answer_at_revision(cache, "k", compute("b"), actor=ADMIN)
    assert again is first and calls == ["a"]
    # Another key, and another view of the same key: computed on their own.
    reg.answer_at_revision(cache, "other", compute("c"), actor=ADMIN)
    reader = reg.answer_at_revision(cache, "k", compute("d"), actor=READER)
    assert reader is not first and calls == ["a", "c", "d"]
    assert reg.answer_at_revision(cache, "k", compute("e"), actor=READER) is reader
    # A consumer: computed every time, never stored.
    for tag in ("f", "g"):
        reg.answer_at_revision(cache, "k", compute(tag), actor=CONSUMER)
    assert calls == ["a", "c", "d", "f", "g"]
    # Any write moves the revision on: computed again, and the new count shows.
    reg.create_version("m", VersionSpec(), actor=ADMIN)
    after = reg.answer_at_revision(cache, "k", compute("h"), actor=ADMIN)
    assert calls[-1] == "h" and after["n"] == first["n"] + 1


def test_an_answer_computed_across_a_write_is_not_kept(svc: Services) -> None:
    """A write committed while the answer was computed: the answer may mix
    the two revisions, so it is returned but not kept."""
    reg = svc.registry
    cache: RevisionCache[int] = RevisionCache()
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        if len(calls) == 1:
            reg.create_version("m", VersionSpec(), actor=ADMIN)
        return len(calls)

    assert reg.answer_at_revision(cache, "k", compute, actor=ADMIN) == 1
    assert reg.answer_at_revision(cache, "k", compute, actor=ADMIN) == 2
    assert reg.answer_at_revision(cache, "k", compute, actor=ADMIN) == 2
    assert len(calls) == 2
