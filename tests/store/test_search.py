"""Search SQL: filters give exactly the expected rows, keyset paging, cursors.

Expected results come from a small reference evaluator over the same data kept
in Python, so every filter is checked against the language's documented
semantics, not against what the SQL happens to do.
"""

from __future__ import annotations

import base64
import contextlib
import json
import operator
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.domain import filters
from modelyard.domain.errors import InvalidInput
from modelyard.domain.filters import (
    And,
    Comparison,
    Field,
    Node,
    Not,
    Or,
    OrderBy,
    parse_filter,
    parse_order_by,
)
from modelyard.domain.identity import Principal, Role, combine, visibility_filter
from modelyard.store.metadata import search as search_module
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.engine import create_engine
from modelyard.store.metadata.prepared import Prepared
from modelyard.store.metadata.search import like_to_glob, search_models, search_versions
from modelyard.wire.render import iso
from tests.pgcluster import fresh_database

# -- fixtures and data -----------------------------------------------------------


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sa.Engine]:
    """The database under test, with the schema; one per module and backend.

    Module-scoped because ``data`` is: the data is loaded once and tests only
    read it (the one writer cleans up).
    """
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("search") / "search.db"
        eng = create_engine("sqlite:///" + str(path))
        t.metadata.create_all(eng)
        try:
            yield eng
        finally:
            eng.dispose()
        return
    with fresh_database(request.getfixturevalue("pg_url")) as url:
        eng = create_engine(url)
        t.metadata.create_all(eng)
        try:
            yield eng
        finally:
            eng.dispose()


@dataclass
class ModelRow:
    id: int
    namespace: str
    name: str
    description: str
    archived: bool
    created: int
    updated: int
    tags: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class VersionRow:
    id: int
    model: ModelRow
    number: int
    state: str
    framework: str | None
    format: str | None
    description: str
    created: int
    updated: int
    run_id: str | None
    relation: str | None
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Data:
    models: list[ModelRow]
    versions: list[VersionRow]


# Tag values chosen to exercise case and the wildcard characters of LIKE and GLOB.
TEAMS = ["Fraud", "fraud", "FRAUD-x", "risk", "a_b", "axb", "50%", "50x", "a*b", "a?c", "[x]", "]"]
BASE = 1_767_312_000_000_000  # 2026-01-02T00:00:00Z in microseconds


def _meta_rows(owner: str, owner_id: int, meta: dict[str, Any]) -> list[dict[str, Any]]:
    # Same flattening as the repository: text in value, numbers also in num.
    rows = []
    for key, value in meta.items():
        if isinstance(value, bool):
            text, num = str(value).lower(), None
        elif isinstance(value, int | float):
            text, num = str(value), float(value)
        else:
            text, num = value, None
        rows.append({owner: owner_id, "key": key, "value": text, "num": num})
    return rows


@pytest.fixture(scope="module")
def data(engine: sa.Engine) -> Data:
    """Two namespaces, six models (one name in both), 60 versions with varied fields."""
    rnd = random.Random(20260102)
    models: list[ModelRow] = []
    versions: list[VersionRow] = []
    with engine.begin() as conn:
        for ns_id, ns in enumerate(["ns-a", "ns-b"], start=1):
            conn.execute(t.namespaces.insert().values(id=ns_id, name=ns, created_at=0))
        specs = [
            ("ns-a", "fraud", False),
            ("ns-a", "Fraud-Detector", False),
            ("ns-a", "churn", True),
            ("ns-a", "vision", False),
            ("ns-b", "fraud", False),
            ("ns-b", "zeta", False),
        ]
        for i, (ns, name, archived) in enumerate(specs, start=1):
            m = ModelRow(
                id=i,
                namespace=ns,
                name=name,
                description=f"{name} model" if i % 2 else "",
                archived=archived,
                # Two models share a creation time: the id must break the tie.
                created=BASE + (i // 2) * 1_000_000,
                updated=BASE + (7 - i) * 1_000_000,
                tags={"team": TEAMS[i % 4]} if i != 4 else {},
                meta={"owner": ["ann", "bob"][i % 2], "tier": i % 3} if i != 6 else {},
            )
            models.append(m)
            conn.execute(
                t.models.insert().values(
                    id=m.id,
                    namespace_id=1 if ns == "ns-a" else 2,
                    name=m.name,
                    description=m.description,
                    meta=m.meta,
                    archived=m.archived,
                    created_at=m.created,
                    updated_at=m.updated,
                )
            )
            if m.tags:
                conn.execute(
                    t.model_tags.insert(),
                    [{"model_id": m.id, "key": k, "value": val} for k, val in m.tags.items()],
                )
            if m.meta:
                conn.execute(t.model_meta.insert(), _meta_rows("model_id", m.id, m.meta))

        numbers = dict.fromkeys(range(1, 7), 0)
        for vid in range(1, 61):
            model = models[rnd.randrange(6)]
            numbers[model.id] += 1
            ver = VersionRow(
                id=vid,
                model=model,
                number=numbers[model.id],
                state=["draft", "ready", "published", "archived"][vid % 4],
                framework=[None, "pytorch", "onnx", "tflite", "ONNX"][vid % 5],
                format=None if vid % 7 == 0 else ["pt", "onnx", "tflite"][vid % 3],
                description=["", "first try", "Better", "best"][vid % 4],
                # Groups of three share created: ties broken by id.
                created=BASE + (vid // 3) * 1_000_000,
                updated=BASE + rnd.randrange(20) * 1_000_000,
                run_id=None if vid % 3 == 0 else f"run-{vid % 5}",
                relation=None if vid % 4 else "converted",
                tags={"team": TEAMS[vid % len(TEAMS)]},
                metrics={},
                params={"lr": ["0.1", "0.01", "1e-3"][vid % 3]},
                meta={},
            )
            if vid % 3:
                ver.tags["env"] = ["dev", "prod"][vid % 2]
            if vid % 11 == 0:
                ver.tags["my key"] = "spaced"
            if vid % 6:
                # Rounded so that equal values (and so ties) happen.
                ver.metrics["acc"] = round(rnd.random(), 1)
            if vid % 2:
                ver.metrics["loss"] = round(rnd.uniform(-1, 1), 3)
            meta_choices: list[Any] = [None, True, False, 3, 2.5, "x", "10"]
            ver.meta = {"size": meta_choices[vid % 7], "owner": ["ann", "bob", "Ann"][vid % 3]}
            if vid % 5 == 0:
                del ver.meta["owner"]
            versions.append(ver)
            conn.execute(
                t.versions.insert().values(
                    id=ver.id,
                    model_id=model.id,
                    number=ver.number,
                    state=ver.state,
                    description=ver.description,
                    framework=ver.framework,
                    format=ver.format,
                    meta=ver.meta,
                    datasets=[],
                    source_run=ver.run_id,
                    relation=ver.relation,
                    created_at=ver.created,
                    updated_at=ver.updated,
                )
            )
            for table, values in (
                (t.version_tags, ver.tags),
                (t.version_metrics, ver.metrics),
                (t.version_params, ver.params),
            ):
                if values:
                    conn.execute(
                        table.insert(),
                        [
                            {"version_id": vid, "key": k, "value": val, "created_at": ver.created}
                            for k, val in values.items()
                        ],
                    )
            conn.execute(
                t.version_meta.insert(),
                [
                    {**row, "created_at": ver.created}
                    for row in _meta_rows("version_id", vid, ver.meta)
                ],
            )
    return Data(models, versions)


# -- reference evaluator -----------------------------------------------------------

_ORDERED: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def like(value: str, pattern: str, *, fold: bool) -> bool:
    """LIKE with % and _ wildcards and backslash escapes; ``fold`` = ASCII case-insensitive."""
    if fold:
        value, pattern = value.translate(_ASCII_LOWER), pattern.translate(_ASCII_LOWER)
    regex, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            regex.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        regex.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.fullmatch("".join(regex), value, re.DOTALL) is not None


def compare(actual: Any, op: str, expected: Any) -> bool:
    if actual is None:
        return False
    if op == "IN":
        return bool(actual in expected)
    if op == "NOT IN":
        return bool(actual not in expected)
    if op == "LIKE":
        return like(actual, expected, fold=False)
    if op == "ILIKE":
        return like(actual, expected, fold=True)
    return _ORDERED[op](actual, expected)


def meta_value(meta: dict[str, Any], key: str, expected: Any) -> Any:
    """What the meta index holds for ``key``: the number, or the text form."""
    if key not in meta:
        return None
    value = meta[key]
    numeric = isinstance(expected, float) or (
        isinstance(expected, tuple) and isinstance(expected[0], float)
    )
    if numeric:
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
    if isinstance(value, bool):
        return str(value).lower()
    return None if value is None else str(value)


def version_field(row: VersionRow, cmp: Comparison) -> Any:
    key = cmp.field.key
    match cmp.field.kind:
        case "tag":
            return row.tags.get(key)
        case "metric":
            return row.metrics.get(key)
        case "param":
            return row.params.get(key)
        case "meta":
            return meta_value(row.meta, key, cmp.value)
    return {
        "name": row.model.name,
        "namespace": row.model.namespace,
        "number": row.number,
        "state": row.state,
        "framework": row.framework,
        "format": row.format,
        "description": row.description,
        "created": row.created,
        "updated": row.updated,
        "run_id": row.run_id,
        "relation": row.relation,
    }[key]


def model_field(row: ModelRow, cmp: Comparison) -> Any:
    key = cmp.field.key
    if cmp.field.kind == "tag":
        return row.tags.get(key)
    if cmp.field.kind == "meta":
        return meta_value(row.meta, key, cmp.value)
    return {
        "name": row.name,
        "namespace": row.namespace,
        "description": row.description,
        "archived": row.archived,
        "created": row.created,
        "updated": row.updated,
    }[key]


def holds(node: Node | None, get: Callable[[Comparison], Any]) -> bool:
    if node is None:
        return True
    if isinstance(node, Comparison):
        return compare(get(node), node.op, node.value)
    if isinstance(node, And):
        return all(holds(item, get) for item in node.items)
    if isinstance(node, Or):
        return any(holds(item, get) for item in node.items)
    assert isinstance(node, Not)
    return not holds(node.item, get)


def expected_versions(data: Data, text: str, namespace: str | None = None) -> list[VersionRow]:
    node = parse_filter(text, "versions")
    return [
        row
        for row in data.versions
        if holds(node, lambda c, row=row: version_field(row, c))  # type: ignore[misc]
        and (namespace is None or row.model.namespace == namespace)
    ]


def version_sort_key(order: OrderBy) -> Callable[[VersionRow], tuple[Any, ...]]:
    key = order.field.key
    if order.field.kind == "metric":
        return lambda r: (r.metrics[key], r.id)
    if key == "name":
        return lambda r: (r.model.name, r.model.id, r.number)
    return lambda r: ({"created": r.created, "updated": r.updated, "number": r.number}[key], r.id)


def expected_version_order(data: Data, text: str, order_text: str | None) -> list[int]:
    order = parse_order_by(order_text, "versions")
    rows = expected_versions(data, text)
    if order.field.kind == "metric":
        rows = [r for r in rows if order.field.key in r.metrics]
    rows.sort(key=version_sort_key(order), reverse=order.descending)
    return [r.id for r in rows]


def all_version_ids(
    engine: sa.Engine,
    text: str,
    *,
    order: str | None = None,
    namespace: str | None = None,
    limit: int = 1000,
) -> list[int]:
    """Every page of a search, concatenated."""
    node = parse_filter(text, "versions")
    order_by = parse_order_by(order, "versions")
    ids: list[int] = []
    cursor: str | None = None
    with engine.connect() as conn:
        for _ in range(1000):
            page, cursor = search_versions(
                conn, node=node, order=order_by, limit=limit, cursor=cursor, namespace=namespace
            )
            assert len(page) <= limit
            ids += page
            if cursor is None:
                return ids
            assert len(page) == limit
    raise AssertionError("paging did not end")


def all_model_ids(
    engine: sa.Engine,
    text: str,
    *,
    order: str | None = None,
    namespace: str | None = None,
    include_archived: bool = True,
    limit: int = 1000,
) -> list[int]:
    node = parse_filter(text, "models")
    order_by = parse_order_by(order, "models")
    ids: list[int] = []
    cursor: str | None = None
    with engine.connect() as conn:
        while True:
            page, cursor = search_models(
                conn,
                node=node,
                order=order_by,
                limit=limit,
                cursor=cursor,
                namespace=namespace,
                include_archived=include_archived,
            )
            ids += page
            if cursor is None:
                return ids


# -- filters ---------------------------------------------------------------------------

VERSION_FILTERS = [
    "tags.team = 'fraud'",
    "tags.team == 'Fraud'",
    "tags.team != 'fraud'",
    "tags.team <> 'risk'",
    "tags.team < 'a'",
    "tags.team >= 'a_b'",
    "tags.team IN ('fraud', 'risk', 'nope')",
    "tags.team NOT IN ('fraud', 'risk')",
    "NOT tags.team = 'fraud'",
    "tags.env = 'dev'",
    "NOT tags.env = 'dev'",
    "tags.env != 'dev'",
    "tags.`my key` = 'spaced'",
    "tags.\"my key\" LIKE 'sp%'",
    "tags.missing = 'x'",
    "NOT tags.missing = 'x'",
    "metrics.acc > 0.5",
    "metrics.acc >= 0.5 AND metrics.acc <= 0.7",
    "metrics.acc = 0.3",
    "metrics.acc != 0.3",
    "metrics.acc IN (0.1, 0.2, 1)",
    "metrics.acc NOT IN (0.1, 0.2)",
    "metrics.loss < 0",
    "metrics.loss < -0.5 OR metrics.acc > 0.8",
    "NOT metrics.acc > 0.5",
    "params.lr = '0.1'",
    "params.lr > '0.05'",
    "params.lr LIKE '%e%'",
    "meta.size = 3",
    "meta.size > 2",
    "meta.size IN (2.5, 3)",
    "meta.size = '3'",
    "meta.size = 'x'",
    "meta.size = true",
    "meta.size = false",
    "meta.size != true",
    "meta.size LIKE '1%'",
    "meta.owner = 'ann'",
    "meta.owner ILIKE 'ANN'",
    "meta.owner LIKE 'A%'",
    "NOT meta.owner = 'ann'",
    "name = 'fraud'",
    "name != 'fraud'",
    "name IN ('fraud', 'zeta')",
    "name LIKE 'fraud%'",
    "name ILIKE 'fraud%'",
    "name > 'f'",
    "NOT name = 'fraud'",
    "namespace = 'ns-b'",
    "namespace != 'ns-b'",
    "namespace LIKE '%b'",
    "NOT namespace = 'ns-a' AND tags.team ILIKE 'f%'",
    "number = 1",
    "version <= 3",
    "number IN (2, 4, 6)",
    "number NOT IN (1)",
    "state = 'published'",
    "state != 'draft'",
    "state IN ('ready', 'published')",
    "NOT state IN ('ready', 'published')",
    "framework = 'onnx'",
    "framework != 'onnx'",
    "NOT framework = 'onnx'",
    "framework IN ('onnx', 'tflite')",
    "framework NOT IN ('onnx')",
    "framework LIKE 'onnx'",
    "framework ILIKE 'onnx'",
    "framework LIKE '%o%'",
    "NOT framework LIKE '%o%'",
    "format = 'pt' OR format = 'onnx'",
    "NOT format = 'pt'",
    "description = ''",
    "description LIKE 'b%'",
    "description ILIKE 'b%'",
    "description > 'B'",
    "run_id = 'run-1'",
    "NOT run_id = 'run-1'",
    "run_id LIKE 'run-%'",
    "relation = 'converted'",
    "NOT relation = 'converted'",
    "created = '2026-01-02T00:00:05Z'",
    "created > '2026-01-02T00:00:10'",
    "created >= 1767312010 AND created < '2026-01-02T00:00:15+00:00'",
    "created IN (1767312001, 1767312003)",
    "updated <= '2026-01-02T00:00:04Z'",
    "created > 1767312005.5",
    "tags.team ILIKE 'fraud%' AND metrics.acc > 0.3 AND state != 'draft'",
    "(tags.env = 'dev' OR framework = 'onnx') AND NOT (metrics.acc < 0.5 OR params.lr = '0.1')",
    "NOT (NOT (tags.env = 'prod'))",
]


@pytest.mark.parametrize("text", VERSION_FILTERS)
def test_version_filter_matches_reference(engine: sa.Engine, data: Data, text: str) -> None:
    expected = expected_version_order(data, text, None)
    assert all_version_ids(engine, text) == expected


def test_reference_data_is_varied(data: Data) -> None:
    # Guards the guard: filters above must not all be trivially empty or full.
    sizes = {text: len(expected_versions(data, text)) for text in VERSION_FILTERS}
    trivial = [text for text, n in sizes.items() if n in (0, len(data.versions))]
    assert trivial == ["tags.missing = 'x'", "NOT tags.missing = 'x'"]


def test_hand_checked_results(engine: sa.Engine, data: Data) -> None:
    """A few results checked by hand against the data, not via the evaluator."""
    fraud_teams = {v.id for v in data.versions if v.tags["team"] == "fraud"}
    assert set(all_version_ids(engine, "tags.team = 'fraud'")) == fraud_teams
    assert fraud_teams  # TEAMS[1]
    no_framework = {v.id for v in data.versions if v.framework is None}
    assert no_framework <= set(all_version_ids(engine, "NOT framework = 'onnx'"))
    assert not no_framework & set(all_version_ids(engine, "framework != 'onnx'"))
    without_env = {v.id for v in data.versions if "env" not in v.tags}
    assert without_env <= set(all_version_ids(engine, "NOT tags.env = 'dev'"))
    assert not without_env & set(all_version_ids(engine, "tags.env != 'dev'"))
    assert set(all_version_ids(engine, "namespace = 'ns-b'")) == {
        v.id for v in data.versions if v.model.id in (5, 6)
    }


@pytest.mark.parametrize(
    ("pattern", "like_matches", "ilike_matches"),
    [
        ("fraud", {"fraud"}, {"Fraud", "fraud"}),
        ("FRAUD%", {"FRAUD-x"}, {"Fraud", "fraud", "FRAUD-x"}),
        ("%raud", {"Fraud", "fraud"}, {"Fraud", "fraud"}),
        ("_raud", {"Fraud", "fraud"}, {"Fraud", "fraud"}),
        ("a_b", {"a_b", "axb", "a*b"}, {"a_b", "axb", "a*b"}),
        ("a\\_b", {"a_b"}, {"a_b"}),
        ("50%", {"50%", "50x"}, {"50%", "50x"}),
        ("50\\%", {"50%"}, {"50%"}),
        ("a*b", {"a*b"}, {"a*b"}),
        ("a?c", {"a?c"}, {"a?c"}),
        ("[x]", {"[x]"}, {"[x]"}),
        ("]", {"]"}, {"]"}),
        ("%]", {"[x]", "]"}, {"[x]", "]"}),
        ("[%", {"[x]"}, {"[x]"}),
        ("\\\\%", set(), set()),
    ],
)
def test_like_is_case_sensitive_and_ilike_is_not(
    engine: sa.Engine, data: Data, pattern: str, like_matches: set[str], ilike_matches: set[str]
) -> None:
    quoted = pattern.replace("'", "\\'")
    for op, matches in (("LIKE", like_matches), ("ILIKE", ilike_matches)):
        ids = all_version_ids(engine, f"tags.team {op} '{quoted}'")
        assert {data.versions[i - 1].tags["team"] for i in ids} == matches, op
        assert len(ids) == sum(1 for v in data.versions if v.tags["team"] in matches)


def test_like_to_glob() -> None:
    assert like_to_glob("a%b_c") == "a*b?c"
    assert like_to_glob("*?[]") == "[*][?][[]]"
    assert like_to_glob("50\\%\\_\\\\") == "50%_\\"


# -- paging ------------------------------------------------------------------------------

ORDERS = [
    None,
    "created DESC",
    "created ASC",
    "updated",
    "updated DESC",
    "name",
    "name DESC",
    "number",
    "number DESC",
    "metrics.acc DESC",
    "metrics.acc ASC",
    "metrics.loss",
]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(
    "text",
    ["", "tags.env = 'dev' OR metrics.loss > 0", "NOT name = 'zeta' AND state != 'archived'"],
)
def test_paging_yields_every_match_once_in_order(
    engine: sa.Engine, data: Data, order: str | None, text: str
) -> None:
    expected = expected_version_order(data, text, order)
    assert len(expected) > 7
    ids = all_version_ids(engine, text, order=order, limit=7)
    assert ids == expected
    assert len(set(ids)) == len(ids)


def test_default_order_is_created_desc_then_id_desc(engine: sa.Engine, data: Data) -> None:
    ids = all_version_ids(engine, "", limit=5)
    assert ids == sorted(
        (v.id for v in data.versions),
        key=lambda i: (data.versions[i - 1].created, i),
        reverse=True,
    )
    # The data has ties on created, so the id tiebreak is exercised.
    assert len({v.created for v in data.versions}) < len(data.versions)


def test_metric_sort_only_returns_versions_with_the_metric(engine: sa.Engine, data: Data) -> None:
    ids = all_version_ids(engine, "", order="metrics.acc DESC", limit=7)
    assert set(ids) == {v.id for v in data.versions if "acc" in v.metrics}
    assert len(ids) < len(data.versions)
    assert all_version_ids(engine, "", order="metrics.nope") == []


def test_name_sort_separates_models_with_the_same_name(engine: sa.Engine, data: Data) -> None:
    ids = all_version_ids(engine, "name = 'fraud'", order="name", limit=3)
    models = [data.versions[i - 1].model.id for i in ids]
    assert models == sorted(models)
    assert set(models) == {1, 5}


def test_namespace_argument(engine: sa.Engine, data: Data) -> None:
    for ns in ("ns-a", "ns-b", "nope"):
        for order in (None, "name", "metrics.acc DESC"):
            expected = [
                i
                for i in expected_version_order(data, "", order)
                if data.versions[i - 1].model.namespace == ns
            ]
            assert all_version_ids(engine, "", order=order, namespace=ns, limit=4) == expected
    combined = all_version_ids(engine, "tags.env = 'dev'", namespace="ns-a", limit=4)
    assert combined == [
        i
        for i in expected_version_order(data, "tags.env = 'dev'", None)
        if data.versions[i - 1].model.namespace == "ns-a"
    ]


def test_rows_added_between_pages_do_not_shift_the_walk(engine: sa.Engine, data: Data) -> None:
    node = parse_filter("", "versions")
    order = parse_order_by(None, "versions")
    with engine.connect() as conn:
        first, cursor = search_versions(conn, node=node, order=order, limit=10, cursor=None)
    try:
        with engine.begin() as conn:
            # Newer than everything: with OFFSET paging this would shift page two.
            conn.execute(
                t.versions.insert().values(
                    id=1000,
                    model_id=1,
                    number=999,
                    state="ready",
                    meta={},
                    datasets=[],
                    created_at=BASE * 2,
                    updated_at=BASE * 2,
                )
            )
        with engine.connect() as conn:
            second, _ = search_versions(conn, node=node, order=order, limit=10, cursor=cursor)
    finally:
        with engine.begin() as conn:
            conn.execute(t.versions.delete().where(t.versions.c.id == 1000))
    everything = expected_version_order(data, "", None)
    assert first + second == everything[:20]


# -- models ------------------------------------------------------------------------------

MODEL_FILTERS = [
    "",
    "name = 'fraud'",
    "name ILIKE 'FRAUD%'",
    "name LIKE 'Fraud%'",
    "namespace = 'ns-b'",
    "NOT namespace = 'ns-b'",
    "archived = true",
    "archived != true",
    "archived = 'false'",
    "description = ''",
    "description LIKE '%model'",
    "tags.team = 'fraud'",
    "NOT tags.team = 'fraud'",
    "tags.team != 'fraud'",
    "tags.team IN ('risk', 'FRAUD-x')",
    "meta.owner = 'bob'",
    "meta.tier > 0",
    "meta.tier IN (0, 2)",
    "created > '2026-01-02T00:00:01Z'",
    "updated <= 1767312003",
    "name = 'fraud' OR (tags.team ILIKE 'f%' AND NOT archived = true)",
]


@pytest.mark.parametrize("order", [None, "created", "updated DESC", "name", "name DESC"])
@pytest.mark.parametrize("text", MODEL_FILTERS)
def test_model_filters_and_paging(
    engine: sa.Engine, data: Data, text: str, order: str | None
) -> None:
    node = parse_filter(text, "models")
    order_by = parse_order_by(order, "models")
    rows = [m for m in data.models if holds(node, lambda c, m=m: model_field(m, c))]  # type: ignore[misc]
    columns: dict[str, Callable[[ModelRow], Any]] = {
        "created": lambda m: m.created,
        "updated": lambda m: m.updated,
        "name": lambda m: m.name,
    }
    sort_value = columns[order_by.field.key]
    rows.sort(key=lambda m: (sort_value(m), m.id), reverse=order_by.descending)
    assert all_model_ids(engine, text, order=order, limit=2) == [m.id for m in rows]


def test_models_include_archived_and_namespace(engine: sa.Engine, data: Data) -> None:
    all_ids = all_model_ids(engine, "", order="name")
    assert len(all_ids) == 6
    live = all_model_ids(engine, "", order="name", include_archived=False, limit=1)
    assert live == [i for i in all_ids if not data.models[i - 1].archived]
    assert all_model_ids(engine, "", namespace="ns-b", order="name") == [5, 6]
    assert all_model_ids(engine, "tags.team = 'fraud'", namespace="ns-a") == [
        m.id
        for m in sorted(data.models, key=lambda m: (m.created, m.id), reverse=True)
        if m.namespace == "ns-a" and m.tags.get("team") == "fraud"
    ]


# -- cursors -------------------------------------------------------------------------


def _first_cursor(engine: sa.Engine, text: str = "", order: str | None = None) -> str:
    with engine.connect() as conn:
        _, cursor = search_versions(
            conn,
            node=parse_filter(text, "versions"),
            order=parse_order_by(order, "versions"),
            limit=3,
            cursor=None,
        )
    assert cursor is not None
    return cursor


def _encode(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def _search_with(engine: sa.Engine, cursor: str, text: str = "", order: str | None = None) -> None:
    with engine.connect() as conn:
        search_versions(
            conn,
            node=parse_filter(text, "versions"),
            order=parse_order_by(order, "versions"),
            limit=3,
            cursor=cursor,
        )


def test_cursor_is_opaque_urlsafe_text(engine: sa.Engine, data: Data) -> None:
    cursor = _first_cursor(engine)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)


def test_cursor_survives_respelling_of_the_same_filter(engine: sa.Engine, data: Data) -> None:
    cursor = _first_cursor(engine, "tags.env = 'dev' and metrics.acc > 0.1")
    _search_with(engine, cursor, "tags.env=='dev'   AND metrics.acc > .1")


@pytest.mark.parametrize(
    ("text", "order", "namespace"),
    [
        ("tags.env = 'prod'", None, None),
        ("", "created ASC", None),
        ("", "name", None),
        ("", None, "ns-a"),
    ],
)
def test_cursor_from_another_query_is_refused(
    engine: sa.Engine, data: Data, text: str, order: str | None, namespace: str | None
) -> None:
    cursor = _first_cursor(engine)
    with engine.connect() as conn, pytest.raises(InvalidInput) as info:
        search_versions(
            conn,
            node=parse_filter(text, "versions"),
            order=parse_order_by(order, "versions"),
            limit=3,
            cursor=cursor,
            namespace=namespace,
        )
    assert info.value.code == "INVALID_CURSOR"


def test_version_cursor_is_refused_by_model_search(engine: sa.Engine, data: Data) -> None:
    cursor = _first_cursor(engine)
    with engine.connect() as conn, pytest.raises(InvalidInput) as info:
        search_models(conn, node=None, order=parse_order_by(None, "models"), limit=3, cursor=cursor)
    assert info.value.code == "INVALID_CURSOR"


def _garbage(engine: sa.Engine) -> list[str]:
    good = _first_cursor(engine)
    payload = json.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    h = payload["h"]
    return [
        "",
        "!!!!",
        "abc",
        "é",
        good[:-3],
        good + "x",
        "A" * 5000,
        _encode("not a dict"),
        _encode([1, 2]),
        _encode({"h": h}),
        _encode({"h": h, "k": [1, 2], "extra": 1}),
        _encode({"h": h, "k": [1]}),
        _encode({"h": h, "k": [1, 2, 3]}),
        _encode({"h": h, "k": ["1", 2]}),
        _encode({"h": h, "k": [1.5, 2]}),
        _encode({"h": h, "k": [True, 2]}),
        _encode({"h": h, "k": [None, 2]}),
        _encode({"h": h, "k": [2**70, 2]}),
        _encode({"h": h, "k": [1, [2]]}),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b"[" * 1000).decode(),
    ]


def test_garbage_cursors_are_invalid_cursor(engine: sa.Engine, data: Data) -> None:
    for cursor in _garbage(engine):
        with pytest.raises(InvalidInput) as info:
            _search_with(engine, cursor)
        assert info.value.code == "INVALID_CURSOR", cursor


def test_forged_but_well_formed_cursor_just_moves_the_start(engine: sa.Engine, data: Data) -> None:
    good = _first_cursor(engine, order="name")
    payload = json.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    for name in ["", "zzz", "\U0001f600", "x" * 1000]:
        payload["k"] = [name, 0, 0]
        _search_with(engine, _encode(payload), order="name")
    payload["k"] = ["bad\udc80", 0, 0]
    with pytest.raises(InvalidInput):
        _search_with(engine, _encode(payload), order="name")


@settings(deadline=None, max_examples=100)
@given(cursor=st.text(max_size=200))
def test_fuzz_cursors(engine: sa.Engine, data: Data, cursor: str) -> None:
    try:
        _search_with(engine, cursor)
    except InvalidInput as exc:
        assert exc.code == "INVALID_CURSOR"


def test_limit_must_be_positive(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        for bad in (0, -1):
            with pytest.raises(InvalidInput):
                search_versions(
                    conn, node=None, order=parse_order_by(None, "versions"), limit=bad, cursor=None
                )


# -- random filters against the reference -------------------------------------------------

_ATOMS = [
    "tags.team = 'fraud'",
    "tags.team ILIKE 'fr%'",
    "tags.team LIKE 'F%'",
    "tags.team IN ('risk', 'a_b', '50%')",
    "tags.env != 'dev'",
    "tags.env NOT IN ('prod')",
    "metrics.acc > 0.4",
    "metrics.acc <= 0.2",
    "metrics.loss IN (0.1)",
    "params.lr != '0.1'",
    "meta.size >= 2.5",
    "meta.size = 'x'",
    "meta.size = true",
    "meta.owner ILIKE 'ann'",
    "name = 'fraud'",
    "name LIKE '%r%'",
    "namespace = 'ns-a'",
    "number < 4",
    "state IN ('draft', 'ready')",
    "framework = 'onnx'",
    "framework ILIKE 'ONNX'",
    "format != 'pt'",
    "description LIKE '%t%'",
    "created >= 1767312010",
    "updated < '2026-01-02T00:00:09Z'",
    "run_id = 'run-2'",
    "relation = 'converted'",
]


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda a, b: f"({a} AND {b})", children, children),
        st.builds(lambda a, b: f"({a} OR {b})", children, children),
        st.builds(lambda a: f"NOT {a}", children),
    )


@settings(deadline=None, max_examples=150)
@given(
    text=st.recursive(st.sampled_from(_ATOMS), _combine, max_leaves=8),
    order=st.sampled_from(ORDERS),
)
def test_random_filters_match_reference(
    engine: sa.Engine, data: Data, text: str, order: str | None
) -> None:
    assert all_version_ids(engine, text, order=order, limit=9) == expected_version_order(
        data, text, order
    )


# -- query plans (SQLite) ----------------------------------------------------------------


def _page_statement(conn: sa.Connection, **query: Any) -> tuple[str, Any]:
    """The SQL and parameters of the page query ``search_versions(conn, **query)`` ran."""
    statements: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, stmt: str, params: Any, _ctx: Any, _many: bool) -> None:
        statements.append((stmt, params))

    # Page queries of static plans run on the driver (``Prepared``), past
    # SQLAlchemy's events: record those as they go by too.
    run = Prepared.all

    def spy(prepared: Prepared, c: sa.Connection, values: Any) -> list[Any]:
        statements.append((prepared.sql, prepared.params(values)))
        return run(prepared, c, values)

    sa.event.listen(conn, "before_cursor_execute", capture)
    try:
        with mock.patch.object(Prepared, "all", spy):
            search_versions(conn, limit=10, cursor=None, **query)
    finally:
        sa.event.remove(conn, "before_cursor_execute", capture)
    return statements[-1]


def _plan(
    engine: sa.Engine, text: str, order: str | None = None, namespace: str | None = None
) -> str:
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
        stmt, params = _page_statement(
            conn,
            node=parse_filter(text, "versions"),
            order=parse_order_by(order, "versions"),
            namespace=namespace,
        )
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + stmt, params).all()
    return "\n".join(str(r[3]) for r in rows)


@pytest.mark.parametrize(
    ("text", "namespace", "walked"),
    [
        # A common ``key = value`` term walks its own index, in created order.
        ("tags.team = 'fraud' AND metrics.acc > 0.5", None, "ix_version_tags_key_value"),
        ("tags.team = 'fraud' AND metrics.acc > 0.5", "ns-a", "ix_version_tags_key_value"),
        ("params.lr = '0.1' AND framework = 'onnx'", None, "ix_version_params_key_value"),
        # Otherwise the created index of all versions is walked.
        ("metrics.acc > 0.5 AND framework = 'onnx'", None, "ix_versions_created_at_id"),
        ("state = 'ready' AND framework = 'onnx'", None, "ix_versions_created_at_id"),
        ("namespace = 'ns-a' AND name LIKE 'f%'", None, "ix_versions_created_at_id"),
    ],
)
def test_default_order_walks_an_index_in_sort_order(
    engine: sa.Engine,
    data: Data,
    text: str,
    namespace: str | None,
    walked: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In this small data set every tag is "rare"; a cap of 1 makes them common.
    monkeypatch.setattr(search_module, "RARE_CAP", 1)
    monkeypatch.setattr(search_module, "NAME_CAP", 1)
    plan = _plan(engine, text, namespace=namespace)
    assert walked in plan.splitlines()[0], plan
    assert "TEMP B-TREE" not in plan, plan


def test_rare_tag_drives_from_the_key_value_index(engine: sa.Engine, data: Data) -> None:
    plan = _plan(engine, "tags.team = 'fraud' AND metrics.acc > 0.5")
    assert "ix_version_tags_key_value" in plan, plan
    assert "SCAN versions" not in plan, plan


@pytest.mark.parametrize("order_by", [None, "metrics.acc DESC", "metrics.acc"])
@pytest.mark.parametrize(
    "text",
    [
        "tags.team = 'fraud' AND metrics.acc > 0.2",
        "metrics.acc >= 0.3 AND framework != 'x'",
        "name LIKE 'fr%' AND metrics.acc > 0.1",
        "name ILIKE 'FRAUD%'",
    ],
)
def test_rare_and_common_modes_return_the_same_pages(
    engine: sa.Engine,
    data: Data,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    order_by: str | None,
) -> None:
    node = parse_filter(text, "versions")
    order = parse_order_by(order_by, "versions")

    def walk() -> list[int]:
        ids: list[int] = []
        cursor = None
        with engine.connect() as conn:
            while True:
                page, cursor = search_versions(conn, node=node, order=order, limit=3, cursor=cursor)
                ids += page
                if cursor is None:
                    return ids

    rare = walk()
    monkeypatch.setattr(search_module, "RARE_CAP", 1)
    monkeypatch.setattr(search_module, "NAME_CAP", 1)
    assert walk() == rare and rare


@pytest.mark.parametrize("order", [None, "created", "created DESC"])
@pytest.mark.parametrize(
    "text",
    [
        "metrics.acc >= 0.3",
        "metrics.acc >= 0.3 AND state = 'published'",
        "metrics.loss > -0.5 AND format != 'pt'",
        "tags.team IN ('fraud', 'risk', 'a_b', '50%') AND tags.env = 'dev' AND number > 1",
    ],
)
def test_pages_tried_on_the_first_matches_equal_the_reference(
    engine: sa.Engine,
    data: Data,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    order: str | None,
) -> None:
    """On PostgreSQL a rare key/value term drives a created-order page with
    the first few of its matches, then more (``_page_from_ids``): every page
    of every size still equals the reference, ties in created_at included,
    and a page needing more than one try does occur."""
    tries: list[int] = []
    page = search_module._page

    def counted(*args: Any, **kwargs: Any) -> tuple[list[int], str | None]:
        tries.append(1)
        return page(*args, **kwargs)

    monkeypatch.setattr(search_module, "_page", counted)
    expected = expected_version_order(data, text, order)
    assert len(expected) > 3
    pages = 0
    for limit in (1, 2, 5):
        assert all_version_ids(engine, text, order=order, limit=limit) == expected
        pages += len(expected) // limit + 1
    if engine.dialect.name == "postgresql" and "state" in text:
        # The other terms drop most of the first matches: a try came up short.
        assert len(tries) > pages


def test_metric_and_name_orders_need_no_sort(
    engine: sa.Engine, data: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rare term drives: its few versions are fetched and sorted by the metric.
    plan = _plan(engine, "tags.team = 'fraud'", order="metrics.acc DESC")
    assert "ix_version_tags_key_value" in plan, plan
    assert "SCAN" not in plan, plan
    # A common one walks the metric's index, which is already in order.
    monkeypatch.setattr(search_module, "RARE_CAP", 1)
    plan = _plan(engine, "tags.team = 'fraud'", order="metrics.acc DESC")
    assert "ix_version_metrics_key_value" in plan.splitlines()[0], plan
    assert "TEMP B-TREE" not in plan, plan
    plan = _plan(engine, "tags.team = 'fraud'", order="name")
    assert "ix_models_name" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


# -- a reader's filter keeps the admin's plans (issue 9, Structure 8) --------------

READER = Principal("rita", roles={"ns-a": frozenset({Role.READER})})
PRODUCTION = Comparison(Field("attr", "state"), "=", "published")


def _reader_node(text: str) -> Node | None:
    view = visibility_filter(
        READER, "versions", namespaces=["ns-a", "ns-b"], production=lambda _ns: PRODUCTION
    )
    return combine(parse_filter(text, "versions"), view)


def _ids(engine: sa.Engine, node: Node | None, order: str | None = None) -> list[int]:
    out: list[int] = []
    cursor = None
    with engine.connect() as conn:
        while True:
            page, cursor = search_versions(
                conn,
                node=node,
                order=filters.parse_order_by(order, "versions"),
                limit=4,
                cursor=cursor,
            )
            out += page
            if cursor is None:
                return out


def test_combine_keeps_one_flat_conjunction() -> None:
    a, b, c, d = (Comparison(Field("tag", k), "=", "x") for k in "abcd")
    assert combine(And((a, b)), c) == And((a, b, c))
    assert combine(And((a, b)), And((c, d))) == And((a, b, c, d))
    assert combine(a, None) == a
    assert combine(None, None) is None
    # An OR stays one term of the conjunction; its own ANDs are left alone.
    either = Or((And((a, b)), c))
    assert combine(And((a, b)), either) == And((a, b, either))


def test_flatten_merges_nested_and_and_or() -> None:
    a, b, c, d = (Comparison(Field("tag", k), "=", "x") for k in "abcd")
    assert filters.flatten(And((And((a, b)), And((c, d))))) == And((a, b, c, d))
    assert filters.flatten(Or((a, Or((b, c))))) == Or((a, b, c))
    nested = filters.Not(And((a, And((b, c)))))
    assert filters.flatten(nested) == filters.Not(And((a, b, c)))
    assert filters.flatten(a) is a


@pytest.mark.parametrize(
    "text",
    [
        "tags.team = 'fraud' AND metrics.acc > 0.5",
        "params.lr = '0.1' AND framework = 'onnx'",
    ],
)
def test_reader_walks_the_index_an_admin_walks(
    engine: sa.Engine, data: Data, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In this small data set every tag is "rare"; a cap of 1 makes them common,
    # so the admin's plan walks the term's (key, value, created) index.
    monkeypatch.setattr(search_module, "RARE_CAP", 1)
    monkeypatch.setattr(search_module, "NAME_CAP", 1)
    admin = _plan(engine, text)
    node = _reader_node(text)
    assert isinstance(node, And) and not any(isinstance(x, And) for x in node.items)
    reader = _plan_of(engine, node)
    walked = admin.splitlines()[0]
    assert "_key_value" in walked, admin
    assert reader.splitlines()[0] == walked, reader
    assert "TEMP B-TREE" not in reader, reader


def test_rare_term_drives_for_a_reader_too(engine: sa.Engine, data: Data) -> None:
    text = "tags.team = 'fraud' AND metrics.acc > 0.5"
    assert "SCAN versions" not in _plan(engine, text)
    reader = _plan_of(engine, _reader_node(text))
    assert "SCAN versions" not in reader, reader
    assert "ix_version_tags_key_value" in reader, reader


@pytest.mark.parametrize("order", [None, "metrics.acc DESC", "number"])
@pytest.mark.parametrize(
    "text",
    [
        "tags.team = 'fraud' AND metrics.acc > 0.2",
        "metrics.acc >= 0.3 AND framework != 'x'",
        "name LIKE 'fr%' AND metrics.acc > 0.1",
        "",
    ],
)
def test_reader_sees_the_admins_results_in_its_namespaces(
    engine: sa.Engine,
    data: Data,
    text: str,
    order: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = parse_filter(text, "versions")
    in_a = combine(admin, Comparison(Field("attr", "namespace"), "=", "ns-a"))
    expected = _ids(engine, in_a, order)
    assert _ids(engine, _reader_node(text), order) == expected
    monkeypatch.setattr(search_module, "RARE_CAP", 1)
    monkeypatch.setattr(search_module, "NAME_CAP", 1)
    assert _ids(engine, _reader_node(text), order) == expected


def _plan_of(engine: sa.Engine, node: Node | None) -> str:
    """``_plan`` for an AST built by hand (the reader's)."""
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
        stmt, params = _page_statement(
            conn, node=node, order=filters.parse_order_by(None, "versions")
        )
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + stmt, params).all()
    return "\n".join(str(r[3]) for r in rows)


@given(st.integers(min_value=-(10**16), max_value=10**17))
def test_iso_is_the_exact_isoformat(us: int) -> None:
    exact = (datetime(1970, 1, 1) + timedelta(microseconds=us)).isoformat() + "Z"
    assert iso(us) == exact


@given(st.integers(min_value=0, max_value=4 * 10**15))
def test_iso_is_what_it_was_for_real_times(us: int) -> None:
    # The former fromtimestamp(us / 1e6) form, for times from 1970 to 2096.
    assert iso(us) == datetime.fromtimestamp(us / 1_000_000, UTC).isoformat().replace("+00:00", "Z")


def test_common_tag_under_a_metric_order_is_an_in_memory_list(
    engine: sa.Engine, data: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Too common to drive (cap 1), so the metric's index is walked; the tag is
    # tested against a list built once, not probed per walked entry.
    monkeypatch.setattr(search_module, "RARE_CAP", 1)
    plan = _plan(engine, "tags.team = 'fraud' AND metrics.acc > 0.1", order="metrics.acc DESC")
    lines = plan.splitlines()
    assert "ix_version_metrics_key_value" in lines[0], plan
    assert "LIST SUBQUERY" in plan, plan
    assert not any("version_tags" in x and "version_id=?" in x for x in lines), plan
    assert "TEMP B-TREE" not in plan, plan
    # Past the bound (here: a list of every version would cost more than the
    # walk it saves), the term stays a per-row probe.
    monkeypatch.setattr(search_module, "LIST_CAP", 1)
    plan = _plan(engine, "tags.team = 'fraud'", order="metrics.acc DESC")
    assert "LIST SUBQUERY" not in plan, plan


@contextlib.contextmanager
def _statements(engine: sa.Engine) -> Iterator[list[str]]:
    """Every statement ``engine`` runs meanwhile, whitespace collapsed."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _counts(statements: list[str]) -> list[str]:
    return [s for s in statements if "count(" in s.lower()]


def _planning_fetches(
    engine: sa.Engine, data: Data, text: str, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The statements a created-order search of ``text`` ran that fetched a
    key/value term's matches with their created_at (``_rare_driver``), with
    RARE_CAP = 5; the pages still equal the reference."""
    monkeypatch.setattr(search_module, "RARE_CAP", 5)
    with _statements(engine) as seen:
        ids = all_version_ids(engine, text, order="created DESC", limit=2)
    assert ids == expected_version_order(data, text, "created DESC")
    fetch = re.compile(r"SELECT version_(tags|metrics)\.version_id, version_\w+\.created_at")
    return [s for s in seen if fetch.search(s)]


def test_terms_are_counted_and_only_the_driver_is_fetched(
    engine: sa.Engine, data: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Choosing how a created-order page starts counts every key/value term
    and fetches (with created_at) only the one that drives: fetching every
    term's matches sent ~10,000 rows to Python per page of ``tags.team =
    'team-7' AND metrics.acc >= 0.9`` at 1M versions, only to walk the tag."""
    # Both terms over the cap: the tag is walked, nothing is fetched.
    both_common = "tags.team = 'fraud' AND metrics.acc > 0.1"
    assert _planning_fetches(engine, data, both_common, monkeypatch) == []
    assert sum(1 for v in data.versions if v.tags.get("team") == "fraud") >= 5
    # One rare term (fewer than 5 versions at 1.0): fetched once a page.
    one_rare = "tags.team = 'fraud' AND metrics.acc >= 1.0"
    assert sum(1 for v in data.versions if v.metrics.get("acc", 0) >= 1.0) < 5
    fetched = _planning_fetches(engine, data, one_rare, monkeypatch)
    assert fetched and all("version_metrics" in s for s in fetched), fetched
    # The only term: fetched at once, never counted first.
    with _statements(engine) as seen:
        assert _planning_fetches(engine, data, "metrics.acc >= 1.0", monkeypatch)
    assert _counts(seen) == []


def test_postgresql_counts_no_lone_name_term(engine: sa.Engine, data: Data) -> None:
    """PostgreSQL plans a model-name term by itself (it never drives there),
    so a filter whose only indexable term is one is not counted: ``name LIKE
    'm12%'`` counted 11,100 of 1M versions a page for nothing. SQLite counts
    it to choose between walking and driving."""
    text = "name LIKE 'fr%' AND state != 'draft'"
    with _statements(engine) as seen:
        ids = all_version_ids(engine, text, limit=2)
    assert ids == expected_version_order(data, text, None) and ids
    counts = _counts(seen)
    if engine.dialect.name == "postgresql":
        assert counts == []
    else:
        assert counts


@pytest.mark.parametrize("order", [None, "metrics.acc DESC", "name", "number"])
@pytest.mark.parametrize("cap", [5_000, 0])
def test_postgresql_lists_a_name_terms_models(
    engine: sa.Engine, data: Data, monkeypatch: pytest.MonkeyPatch, order: str | None, cap: int
) -> None:
    """On PostgreSQL a model-name term is looked up in ``models`` first and
    tested as ``versions.model_id = ANY(ids)`` (``_names_listed``): as ``IN
    (subquery)`` the planner probed ``models`` for each version it walked
    (``name LIKE 'm12%'`` at 1M versions: 29,883 buffers, 40 ms, against 270
    and 2 ms). Past NAME_MODELS_CAP models the subquery stays. Same pages."""
    monkeypatch.setattr(search_module, "NAME_MODELS_CAP", cap)
    text = "name LIKE 'fr%' AND metrics.acc > 0.1"
    with _statements(engine) as seen:
        ids = all_version_ids(engine, text, order=order, limit=2)
    assert ids == expected_version_order(data, text, order) and ids
    pages = [s for s in seen if "LIMIT" in s and "versions.id" in s]
    listed = [p for p in pages if "model_id = ANY" in p]
    if engine.dialect.name == "postgresql" and cap:
        assert listed and all("LIKE" not in p for p in listed), pages
    else:
        assert not listed, pages
