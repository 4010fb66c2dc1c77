"""Monitoring rules (issue 12): reference statistics from a sample, their file
format, PSI and the binned KS statistic, and a deployment's settings."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.client.reference_stats import compute_reference_stats, read_csv_sample
from modelyard.domain.errors import InvalidInput
from modelyard.domain.monitoring import (
    MonitorSettings,
    NumericFeature,
    categorical_feature,
    category_key,
    ks_binned,
    numeric_feature,
    parse_monitor_settings,
    parse_reference_stats,
    psi,
)


def test_quantile_bins_hold_equal_shares_and_round_trip() -> None:
    values = list(range(1, 1001))
    f = numeric_feature("x", "X", 0, values, bins=10)
    assert len(f.edges) == 9 and f.probabilities == (0.1,) * 10
    assert f.summary["min"] == 1 and f.summary["max"] == 1000
    # The reference counted against its own bins has no drift.
    counts = [0] * 10
    for v in values:
        counts[f.bin_of(v)] += 1
    assert psi(f.probabilities, counts) == pytest.approx(0.0)
    assert ks_binned(f.probabilities, counts) == pytest.approx(0.0)
    doc = {"format": 1, "sample_size": 1000, "features": [f.to_dict()]}
    assert parse_reference_stats(doc).features == (f,)


def test_repeated_values_merge_edges() -> None:
    f = numeric_feature("flag", "X", 0, [0.0] * 90 + [1.0] * 10)
    # Eight of the nine deciles are 0.0: one edge, not eight empty bins.
    assert f.edges == pytest.approx((0.0, 0.1))
    assert f.probabilities == pytest.approx((0.9, 0.0, 0.1))
    assert f.bin_of(0.0) == 0 and f.bin_of(1.0) == 2


def test_a_shift_shows_in_psi_and_ks() -> None:
    rng = random.Random(1)
    ref = [rng.gauss(0, 1) for _ in range(2000)]
    f = numeric_feature("x", "X", 0, ref)
    same = [0] * len(f.probabilities)
    moved = [0] * len(f.probabilities)
    for _ in range(2000):
        same[f.bin_of(rng.gauss(0, 1))] += 1
        moved[f.bin_of(rng.gauss(1.5, 1))] += 1
    assert psi(f.probabilities, same) < 0.05 and ks_binned(f.probabilities, same) < 0.05
    assert psi(f.probabilities, moved) > 1.0 and ks_binned(f.probabilities, moved) > 0.4


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.01, 1.0), min_size=2, max_size=20).flatmap(
        lambda e: st.tuples(
            st.just(e), st.lists(st.integers(0, 1000), min_size=len(e), max_size=len(e))
        )
    )
)
def test_psi_and_ks_are_bounded(case: tuple[list[float], list[int]]) -> None:
    raw, counts = case
    expected = [x / math.fsum(raw) for x in raw]
    p, k = psi(expected, counts), ks_binned(expected, counts)
    assert p >= 0 and 0 <= k <= 1 + 1e-9
    if sum(counts) == 0:
        assert p == 0 and k == 0


def test_categories_are_named_alike_whatever_the_tensor_type() -> None:
    assert category_key(1) == category_key(1.0) == category_key(True) == "1"
    assert category_key(2.5) == "2.5" and category_key("fr") == "fr"
    f = categorical_feature("country", "X", 3, [1, 1, 2.0, 7])
    assert dict(f.categories) == {"1": 0.5, "2": 0.25, "7": 0.25}


def test_sdk_computes_features_from_a_table() -> None:
    sample = {"age": [20.0, 30.0, 40.0, 50.0], "plan": ["a", "b", "a", "a"], "code": [1, 2, 1, 1]}
    stats = compute_reference_stats(sample, input="X", categorical=["code"], bins=2)
    kinds = [(f.name, f.index, f.kind) for f in stats.features]
    assert kinds == [("age", 0, "numeric"), ("plan", 1, "categorical"), ("code", 2, "categorical")]
    rows = compute_reference_stats([[1.0, 2.0], [3.0, 4.0]], input="X", bins=2)
    assert [f.name for f in rows.features] == ["X[0]", "X[1]"]
    with pytest.raises(InvalidInput) as err:
        compute_reference_stats(sample, input="X", categorical=["nope"])
    assert err.value.code == "INVALID_REFERENCE_STATS"


def test_csv_sample(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("a,b\n1,x\n2,\n3.5,y\n")
    assert read_csv_sample(path) == {"a": [1.0, 2.0, 3.5], "b": ["x", None, "y"]}
    path.write_text("a,b\n1\n")
    with pytest.raises(InvalidInput):
        read_csv_sample(path)


@pytest.mark.parametrize(
    "doc",
    [
        None,
        {"format": 2, "sample_size": 1, "features": []},
        {"format": 1, "sample_size": 1, "features": []},
        {"format": 1, "sample_size": 0, "features": [{"name": "a"}]},
        {
            "format": 1,
            "sample_size": 1,
            "features": [
                {
                    "name": "a",
                    "input": "X",
                    "index": 0,
                    "kind": "numeric",
                    "edges": [2.0, 1.0],
                    "probabilities": [0.3, 0.3, 0.4],
                }
            ],
        },
        {
            "format": 1,
            "sample_size": 1,
            "features": [
                {
                    "name": "a",
                    "input": "X",
                    "index": 0,
                    "kind": "numeric",
                    "edges": [1.0],
                    "probabilities": [0.5, 0.6],
                }
            ],
        },
        {
            "format": 1,
            "sample_size": 1,
            "features": [
                {"name": "a", "input": "X", "index": -1, "kind": "categorical", "categories": {}}
            ],
        },
    ],
)
def test_malformed_statistics_are_refused(doc: object) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_reference_stats(doc)
    assert err.value.code == "INVALID_REFERENCE_STATS"


def test_monitor_settings() -> None:
    assert parse_monitor_settings({}) == MonitorSettings()
    s = parse_monitor_settings({"rollback": True, "window_seconds": 1, "latency_p99_ms": 50})
    assert s.rollback and s.window_seconds == 1.0 and s.latency_p99_ms == 50.0
    assert parse_monitor_settings(s.to_dict()) == s
    for bad in (
        {"window_seconds": 0.5},
        {"error_rate": 0},
        {"error_rate": 1.5},
        {"ks": 2},
        {"min_requests": 0},
        {"rollback": 1},
        {"psi": -1},
        {"extra": 1},
        [],
    ):
        with pytest.raises(InvalidInput) as err:
            parse_monitor_settings(bad)
        assert err.value.code == "INVALID_DEPLOYMENT", bad


def test_numeric_feature_needs_a_value() -> None:
    with pytest.raises(InvalidInput):
        numeric_feature("x", "X", 0, [float("nan")])
    assert isinstance(numeric_feature("x", "X", 0, [1.0]), NumericFeature)
