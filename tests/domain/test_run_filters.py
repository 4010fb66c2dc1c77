"""MLflow's run and experiment filter grammar (issue 10): what parses, into
which clauses, and what is refused with INVALID_FILTER."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelyard.domain.errors import InvalidInput
from modelyard.domain.run_filters import Clause, RunOrder, parse_run_filter, parse_run_order


def test_clauses() -> None:
    assert parse_run_filter(
        "metrics.rmse < 0.5 and params.model = 'tree' AND tags.`team name` != \"x\" "
        "AND attributes.run_id NOT IN ('a', 'b') AND tags.\"mlflow.runName\" LIKE 'lr-%' "
        "AND tags.mlflow.user ILIKE 'ANN' AND attributes.start_time >= 17 AND run.status = 'X'"
        " AND attributes.created < 2"
    ) == [
        Clause("metric", "rmse", "<", 0.5),
        Clause("param", "model", "=", "tree"),
        Clause("tag", "team name", "!=", "x"),
        Clause("attribute", "run_id", "NOT IN", ("a", "b")),
        Clause("tag", "mlflow.runName", "LIKE", "lr-%"),
        Clause("tag", "mlflow.user", "ILIKE", "ANN"),
        Clause("attribute", "start_time", ">=", 17000.0),  # ms in, µs out
        Clause("attribute", "status", "=", "X"),
        Clause("attribute", "start_time", "<", 2000.0),
    ]
    assert parse_run_filter(None) == [] and parse_run_filter("  ") == []
    assert parse_run_filter("metric.a <> -1e3") == [Clause("metric", "a", "!=", -1000.0)]


def test_experiment_grammar() -> None:
    assert parse_run_filter("name LIKE 'x%' AND tags.k = 'v'", experiments=True) == [
        Clause("attribute", "name", "LIKE", "x%"),
        Clause("tag", "k", "=", "v"),
    ]
    with pytest.raises(InvalidInput):
        parse_run_filter("metrics.a > 1", experiments=True)
    assert parse_run_order(["name DESC", "creation_time"], experiments=True) == [
        RunOrder("attribute", "name", False),
        RunOrder("attribute", "creation_time", True),
    ]


def test_orders() -> None:
    assert parse_run_order(["metrics.rmse DESC", "params.p", "tags.`a b` asc"]) == [
        RunOrder("metric", "rmse", False),
        RunOrder("param", "p", True),
        RunOrder("tag", "a b", True),
    ]
    with pytest.raises(InvalidInput):
        parse_run_order(["rmse"])


@pytest.mark.parametrize(
    "bad",
    [
        "metrics.a > 'x'",
        "params.p > 1",
        "a > 1",
        "metrics.a > 1 OR metrics.b < 2",
        "attributes.nope = 'x'",
        "tags.t = 'open",
        "params.p IN ('a')",
        "attributes.run_id IN 'a'",
        "attributes.run_id IN ('a'",
        "metrics.a >",
        "metrics.a 1",
        "metrics.a > 1 AND",
        "metrics.a > 1 metrics.b > 2",
        "tags.`x = 'y'",
        "metrics. > 1",
        "NOT metrics.a > 1",
        "metrics.a LIKE 'x'",
    ],
)
def test_refused(bad: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_run_filter(bad)
    assert exc.value.code == "INVALID_FILTER"


@given(st.text(max_size=60))
def test_any_text_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        parse_run_filter(text)
    except InvalidInput as exc:
        assert exc.code == "INVALID_FILTER"
