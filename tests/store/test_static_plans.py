"""Page queries built once per filter shape (issue 9, Performance): a plan
``_static_plan`` calls static must never need the data, or a kept statement
would carry one moment's counts (or, on PostgreSQL, fetched ids) forever."""

from __future__ import annotations

import itertools

import pytest

from modelyard.domain.filters import flatten, parse_filter, parse_order_by
from modelyard.store.metadata import search

FILTERS = [
    None,
    "tags.env = 'prod'",
    "tags.env = 'prod' AND framework = 'onnx'",
    "tags.env = 'prod' AND metrics.acc >= 0.5",
    "tags.env IN ('a', 'b')",
    "metrics.acc >= 0.999",
    "metrics.acc = 0.5",
    "params.lr = '0.1' AND state != 'draft'",
    "meta.owner = 'x'",
    "meta.size > 3",
    "name = 'fraud'",
    "name LIKE 'fr%' AND tags.team = 'a'",
    "namespace = 'lab' AND state = 'ready'",
    "framework = 'onnx' OR tags.env = 'prod'",
    "NOT tags.env = 'prod'",
    "tags.env EXISTS",
    "description ILIKE '%x%'",
]
ORDERS = [None, "created ASC", "updated DESC", "number", "name", "metrics.acc DESC"]


@pytest.mark.parametrize("sqlite", [True, False], ids=["sqlite", "postgresql"])
@pytest.mark.parametrize(("text", "order"), list(itertools.product(FILTERS, ORDERS)))
def test_a_static_plan_reads_nothing(text: str | None, order: str | None, sqlite: bool) -> None:
    node = flatten(parse_filter(text, "versions"))
    sort = parse_order_by(order, "versions")
    static = search._static_plan(node, sort, sqlite=sqlite)
    for with_cursor in (False, True):
        try:
            # No connection: planning that reads the data fails its assertion.
            query = search._versions_query(None, node, sort, None, 10, with_cursor, sqlite=sqlite)
        except AssertionError:
            assert not static, "a static plan read the data"
            return
        assert query.kinds
    # (A plan that reads nothing but is not called static only misses the cache.)


def test_the_common_shapes_are_static() -> None:
    created = parse_order_by(None, "versions")
    for text in (None, "tags.env = 'prod'", "tags.env = 'prod' AND framework = 'onnx'"):
        for sqlite in (True, False):
            assert search._static_plan(
                flatten(parse_filter(text, "versions")), created, sqlite=sqlite
            )
    # Two indexed terms: the rarer is found by counting, every time.
    two = flatten(parse_filter("tags.env = 'prod' AND metrics.acc >= 0.5", "versions"))
    assert not search._static_plan(two, created, sqlite=True)
