"""The metadata store's one implementation of each version operation, run on
both backends: resolve a reference (number, alias, ``latest``), load versions
(one, several, in order, with and without files) and write a version's files,
tags and metadata index rows (at creation and on later edits)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from modelyard.domain.entities import FileEntry, VersionState
from modelyard.domain.lifecycle import LATEST_STATES, counts_as_latest
from modelyard.store.metadata import hotpath, migrate
from modelyard.store.metadata.engine import create_engine
from modelyard.store.metadata.repository import MetadataStore, Tx, now_us

DIGEST = "ab" * 32


@pytest.fixture
def store(db_url: str) -> Iterator[MetadataStore]:
    engine = create_engine(db_url)
    migrate.upgrade(engine)
    db = MetadataStore(engine)
    try:
        yield db
    finally:
        db.dispose()


def _add_version(tx: Tx, mid: int, state: VersionState, **items: Any) -> int:
    number = tx.allocate_version_number(mid)
    at = now_us()
    files = items.get("files", [])
    vid = tx.insert_version(
        {
            "model_id": mid,
            "number": number,
            "state": state.value,
            "description": "",
            "framework": None,
            "format": None,
            "signature": None,
            "meta": items.get("meta", {}),
            "source_run": None,
            "code_ref": None,
            "datasets": [],
            "original_id": None,
            "parent_id": None,
            "relation": None,
            "file_count": len(files),
            "total_size": sum(f.size for f in files),
            "created_by": "t",
            "created_at": at,
            "updated_at": at,
        }
    )
    tx.insert_version_items(
        vid,
        tags=items.get("tags", {}),
        metrics=items.get("metrics", {}),
        params=items.get("params", {}),
        meta=items.get("meta", {}),
        files=files,
        created_at=at,
    )
    return vid


def _seed(db: MetadataStore) -> dict[str, int]:
    """Model ``ns/m`` with versions 1 published, 2 ready, 3 archived, 4 draft;
    ``prod`` on 1."""

    def op(tx: Tx) -> dict[str, int]:
        nid = tx.insert_namespace("ns").id
        mid = tx.insert_model(nid, "m", description="", tags={}, meta={}, actor="t")
        ids = {}
        for state in (
            VersionState.PUBLISHED,
            VersionState.READY,
            VersionState.ARCHIVED,
            VersionState.DRAFT,
        ):
            ids[state.value] = _add_version(
                tx,
                mid,
                state,
                tags={"k": state.value},
                metrics={"acc": 0.5},
                params={"p": "1"},
                meta={"owner": "x", "n": 2},
                files=[
                    FileEntry("b.bin", DIGEST, 3, "application/octet-stream"),
                    FileEntry("a.txt", DIGEST, 3, "text/plain"),
                ],
            )
        tx.set_alias(
            mid, "prod", ids["published"], from_number=None, to_number=1, actor="t", reason=""
        )
        return ids

    return db.transact(op)


def test_latest_rule_is_the_domains() -> None:
    assert set(LATEST_STATES) == {VersionState.READY, VersionState.PUBLISHED}
    assert [s for s in VersionState if counts_as_latest(s)] == list(LATEST_STATES)


def test_resolve_reference(store: MetadataStore) -> None:
    ids = _seed(store)
    with store.read() as tx:
        assert tx.find_version_id("ns", "m", number=3) == ids["archived"]
        assert tx.find_version_id("ns", "m", alias="prod") == ids["published"]
        # latest: newest ready or published; the archived 3 and the draft 4 are skipped.
        assert tx.find_version_id("ns", "m") == ids["ready"]
        assert tx.find_version_id("ns", "m", alias="latest") == ids["ready"]
        assert tx.find_version_id("ns", "m", number=9) is None
        assert tx.find_version_id("ns", "m", alias="nope") is None
        assert tx.find_version_id("ns", "other") is None
        by_ref = tx.get_version_by_ref("ns", "m", alias="prod", with_files=True)
        assert by_ref is not None and by_ref.number == 1 and by_ref.aliases == ["prod"]
        latest = tx.get_version_by_ref("ns", "m")
        assert latest is not None and latest.number == 2 and latest.files is None


def test_load_versions(store: MetadataStore) -> None:
    ids = _seed(store)
    order = [ids["draft"], ids["published"], ids["ready"]]
    with store.read() as tx:
        many = tx.load_versions(order, with_files=True)
        one = tx.get_version_by_id(ids["published"], with_files=True)
        bare = tx.load_versions([ids["ready"], 999_999])
        twice = tx.load_versions([ids["ready"], ids["draft"], ids["ready"]])
    assert [x.number for x in many] == [4, 1, 2]
    # One load, one shape: a version loaded alone equals the same version in a batch.
    assert many[1] == one
    assert one.tags == {"k": "published"} and one.metrics == {"acc": 0.5}
    assert one.params == {"p": "1"} and one.aliases == ["prod"]
    assert one.metadata == {"owner": "x", "n": 2}
    assert one.files is not None and [f.path for f in one.files] == ["a.txt", "b.bin"]
    assert one.files[0] == FileEntry("a.txt", DIGEST, 3, "text/plain")
    assert [x.number for x in bare] == [2] and bare[0].files is None
    assert [x.number for x in twice] == [2, 4, 2] and twice[0] == twice[2] == bare[0]


def test_write_files_tags_and_metadata(store: MetadataStore) -> None:
    ids = _seed(store)
    vid = ids["draft"]

    def edit(tx: Tx) -> None:
        before = tx.get_version_by_id(vid)
        tx.replace_version_tags(vid, {"k2": "v2"}, created_at=before.created_at)
        tx.replace_version_meta(vid, {"n": 5}, created_at=before.created_at)
        tx.insert_files(vid, [FileEntry("c.onnx", DIGEST, 3, "application/octet-stream")])

    store.transact(edit)
    with store.read() as tx:
        after = tx.get_version_by_id(vid, with_files=True)
        meta_rows = tx.conn.exec_driver_sql(
            f"SELECT key, value, num FROM version_meta WHERE version_id = {vid}"
        ).all()
    assert after.tags == {"k2": "v2"}
    assert after.files is not None and [f.path for f in after.files] == [
        "a.txt",
        "b.bin",
        "c.onnx",
    ]
    # The metadata index was replaced, not appended to.
    assert [tuple(r) for r in meta_rows] == [("n", "5", 5.0)]


def test_newest_by_state_probes_each_model_and_state(store: MetadataStore) -> None:
    """Each model's two newest versions per state, 130 models x 4 states in
    one statement (it was a UNION ALL, which SQLite caps at 500 terms)."""
    cycle = [VersionState.READY, VersionState.READY, VersionState.READY, VersionState.ARCHIVED]

    def op(tx: Tx) -> tuple[list[int], dict[int, list[tuple[int, str]]]]:
        nid = tx.insert_namespace("many").id
        mids = []
        expected: dict[int, list[tuple[int, str]]] = {}
        for i in range(130):
            mid = tx.insert_model(nid, f"m{i}", description="", tags={}, meta={}, actor="t")
            mids.append(mid)
            made = [(_add_version(tx, mid, cycle[n % 4]), cycle[n % 4].value) for n in range(i % 6)]
            expected[mid] = [
                pair
                for state in {s for _, s in made}
                for pair in sorted((p for p in made if p[1] == state), reverse=True)[:2]
            ]
        return mids, expected

    mids, expected = store.transact(op)
    with store.read() as tx:
        got = set(tx.newest_by_state(mids, 2))
        assert tx.newest_by_state([], 2) == []
    want = {vid for pairs in expected.values() for vid, _ in pairs}
    assert got == want and len(want) > 0


def test_newest_by_state_compiles_nothing_per_page(
    store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of any number of models run the one statement compiled at start:
    it was compiled anew for each number of models, ~40 ms for a first page
    of 20 (issue 10)."""
    compiled: list[object] = []
    real = hotpath.Prepared

    def counting(*args: Any, **kwargs: Any) -> hotpath.Prepared:
        compiled.append(args[0])
        return real(*args, **kwargs)

    def op(tx: Tx) -> list[int]:
        nid = tx.insert_namespace("pages").id
        mids = []
        for i in range(7):
            mid = tx.insert_model(nid, f"p{i}", description="", tags={}, meta={}, actor="t")
            _add_version(tx, mid, VersionState.READY)
            mids.append(mid)
        return mids

    mids = store.transact(op)
    monkeypatch.setattr(hotpath, "Prepared", counting)
    with store.read() as tx:
        for n in range(1, len(mids) + 1):
            assert len(tx.newest_by_state(mids[:n], 2)) == n
    assert compiled == []
