"""Policies in the domain (issue 3): parsing, merging, evaluation, and the
production policy as a search filter that answers exactly like evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.composition import build_services
from modelyard.domain.errors import InvalidInput
from modelyard.domain.filters import And, Comparison, Field, parse_filter
from modelyard.domain.identity import Principal
from modelyard.domain.policies import (
    MetricThreshold,
    Policy,
    evaluate,
    merge_policies,
    parse_policy,
    parse_threshold,
    policy_filter,
    visible,
)
from modelyard.service.registry import VersionSpec
from modelyard.settings import Settings
from modelyard.store.metadata import search as search_sql


def test_parse_thresholds_and_tags() -> None:
    assert parse_threshold("metrics.accuracy >= 0.92") == MetricThreshold("accuracy", ">=", 0.92)
    assert parse_threshold("f1==1") == MetricThreshold("f1", "=", 1.0)
    assert parse_threshold({"metric": "loss", "op": "<", "value": 2}) == MetricThreshold(
        "loss", "<", 2.0
    )
    for bad in (
        "accuracy",
        "accuracy => 1",
        "metrics.a >= x",
        "a > 1e999",
        {"metric": "a", "op": ">"},
        {"metric": "a", "op": ">", "value": 10**400},
        {"metric": "a", "op": "~", "value": 1},
        3,
    ):
        with pytest.raises(InvalidInput) as exc:
            parse_threshold(bad)
        assert exc.value.code == "INVALID_POLICY"
    p = parse_policy({"required_tags": ["encrypted=true", "team", "x=a=b"]})
    assert p.required_tags == {"encrypted": "true", "team": None, "x": "a=b"}
    assert parse_policy(p.to_dict()) == p
    with pytest.raises(InvalidInput, match="unknown policy rule"):
        parse_policy({"required_tag": {}})
    with pytest.raises(InvalidInput):
        parse_policy({"required_approvals": True})
    with pytest.raises(InvalidInput):
        parse_policy({"metric_thresholds": ["a > 1"] * 101})


def test_merge_rule() -> None:
    ns = parse_policy(
        {
            "required_tags": {"encrypted": "true", "team": None},
            "metric_thresholds": ["accuracy >= 0.9", "latency < 50"],
            "required_metadata": ["owner"],
            "protected_aliases": ["production"],
            "required_approvals": 2,
            "allowed_formats": ["onnx"],
        }
    )
    model = parse_policy(
        {
            "required_tags": {"team": "risk"},
            "metric_thresholds": ["accuracy >= 0.95"],
            "required_metadata": ["dataset"],
            "protected_aliases": ["champion"],
            "required_approvals": 1,
        }
    )
    eff = merge_policies(ns, model)
    assert eff.required_tags == {"encrypted": "true", "team": "risk"}
    assert [str(m) for m in eff.metric_thresholds or ()] == [
        "metrics.latency < 50",
        "metrics.accuracy >= 0.95",
    ]
    assert eff.required_metadata == ("owner", "dataset")
    assert eff.protected_aliases == ("production", "champion")
    assert eff.required_approvals == 1 and eff.allowed_formats == ("onnx",)
    assert merge_policies(None, None) == Policy()
    drift = merge_policies(
        parse_policy({"drift_thresholds": {"psi": 0.3, "ks": 0.25}}),
        parse_policy({"drift_thresholds": {"ks": 0.1}}),
    )
    assert drift.drift_thresholds == {"psi": 0.3, "ks": 0.1}
    assert merge_policies(ns, None) == ns
    assert merge_policies(None, model).required_tags == {"team": "risk"}


# Versions exercising every rule; evaluation and the filter must agree on each.
VERSIONS: list[dict[str, Any]] = [
    {},
    {"tags": {"encrypted": "true"}},
    {
        "tags": {"encrypted": "true", "team": "x"},
        "metrics": {"accuracy": 0.95},
        "format": "onnx",
        "metadata": {"owner": None},
        "signature": {"inputs": []},
    },
    {
        "tags": {"encrypted": "true", "team": ""},
        "metrics": {"accuracy": 0.9},
        "format": "ONNX",
        "metadata": {"owner": {"nested": [1]}},
        "signature": {"inputs": [{"name": "x"}]},
    },
    {
        "tags": {"encrypted": "false", "team": "x"},
        "metrics": {"accuracy": 0.99},
        "format": "onnx",
        "metadata": {"owner": "ana"},
        "signature": {"outputs": []},
    },
    {
        "tags": {"encrypted": "true", "team": "x"},
        "metrics": {"accuracy": 0.91},
        "format": "tflite",
        "metadata": {"owner": 3},
        "signature": {},
    },
    {
        "tags": {"encrypted": "true", "team": "y"},
        "metrics": {"accuracy": 0.89},
        "format": "onnx",
        "metadata": {"owner": True},
        "signature": {"inputs": []},
    },
    {
        "tags": {"encrypted": "true", "team": "z"},
        "metrics": {"accuracy": 0.97, "latency": 10},
        "format": "onnx",
        "metadata": {"owner": "bo", "other": 1},
        "signature": {"inputs": []},
    },
]
POLICIES: list[dict[str, Any]] = [
    {},
    {"required_tags": {"encrypted": "true"}},
    {"required_tags": {"team": None}, "required_metadata": ["owner"]},
    {"require_signature": True, "allowed_formats": ["onnx", "tflite"]},
    {"metric_thresholds": ["accuracy >= 0.9", "latency <= 10"]},
    {"metric_thresholds": ["accuracy > 0.9", "accuracy < 0.99"], "allowed_formats": ["onnx"]},
    {
        "required_tags": {"encrypted": "true", "team": None},
        "required_metadata": ["owner"],
        "require_signature": True,
        "metric_thresholds": ["accuracy >= 0.9"],
        "allowed_formats": ["onnx"],
        "required_approvals": 3,
        "protected_aliases": ["production"],
    },
]


def test_policy_filter_answers_like_evaluation(tmp_path: Path, db_url: str) -> None:
    svc = build_services(Settings(data_dir=tmp_path, db=db_url)).registry
    try:
        svc.create_model("m", actor=Principal.local("t"))
        svc.create_model("other", actor=Principal.local("t"))
        expected_pub = set()
        for i, spec in enumerate(VERSIONS):
            for model in ("m", "other"):
                v = svc.create_version(model, VersionSpec(**spec), actor=Principal.local("t"))
                # Publish all but one per model, so "published" is part of the test.
                if i != 2 or model == "other":
                    svc.transition_version(v.ref, "published", actor=Principal.local("t"))
                    expected_pub.add(v.ref)
        with svc.db.read() as tx:
            all_ids, _ = search_sql.search_versions(
                tx.conn,
                node=None,
                order=parse_order(),
                limit=1000,
                cursor=None,
            )
            versions = tx.load_versions(all_ids)
        assert {v.ref for v in versions if v.state.value == "published"} == expected_pub
        for raw in POLICIES:
            policy = parse_policy(raw)
            want = {v.ref for v in versions if visible(policy, v)}
            with svc.db.read() as tx:
                ids, _ = search_sql.search_versions(
                    tx.conn,
                    node=policy_filter(policy),
                    order=parse_order(),
                    limit=1000,
                    cursor=None,
                )
                got = {v.ref for v in tx.load_versions(ids)}
            assert got == want, raw
        # The richest policy lets exactly the compliant, published versions through.
        full = parse_policy(POLICIES[-1])
        assert sorted(v.ref for v in versions if visible(full, v)) == [
            "default/m/4",
            "default/m/8",
            "default/other/3",
            "default/other/4",
            "default/other/8",
        ]
    finally:
        svc.db.dispose()


def parse_order() -> Any:
    from modelyard.domain.filters import parse_order_by

    return parse_order_by(None, "versions")


def test_policy_filter_shape_and_text_syntax() -> None:
    node = policy_filter(parse_policy({"required_tags": {"k": None}, "require_signature": True}))
    assert node == And(
        (
            Comparison(Field("attr", "state"), "=", "published"),
            Comparison(Field("tag", "k"), "EXISTS", True),
            Comparison(Field("attr", "signature"), "EXISTS", True),
        )
    )
    # The same conditions can be written in the filter language.
    parsed = parse_filter("state = 'published' AND tags.k EXISTS AND signature EXISTS", "versions")
    assert parsed == node
    assert parse_filter("NOT meta.owner exists", "versions") is not None
    assert parse_filter("tags.k EXISTS", "models") is not None
    for bad in ("signature = 'x'", "number EXISTS", "state EXISTS", "signature EXISTS", "exists"):
        target = "models" if bad == "signature EXISTS" else "versions"
        with pytest.raises(InvalidInput) as exc:
            parse_filter(bad, target)  # type: ignore[arg-type]
        assert exc.value.code == "INVALID_FILTER"


def test_evaluate_orders_and_explains() -> None:
    from modelyard.domain.entities import Version, VersionState

    v = Version(
        id=1,
        namespace="default",
        model="m",
        number=1,
        state=VersionState.READY,
        description="",
        framework=None,
        format=None,
        signature=None,
        metrics={"accuracy": 0.5},
        params={},
        tags={"encrypted": "no"},
        metadata={},
        source_run=None,
        code_ref=None,
        datasets=[],
        original=None,
        parent=None,
        relation=None,
        file_count=0,
        total_size=0,
        created_by="t",
        created_at=0,
        updated_at=0,
    )
    policy = parse_policy(POLICIES[-1])
    ev = evaluate(policy, v, approvals=1, require_published=True)
    assert [x.rule for x in ev.violations] == [
        "published",
        "required_tag",
        "required_tag",
        "required_metadata",
        "signature",
        "metric",
        "format",
        "approvals",
    ]
    assert ev.violations[1].message == "tag 'encrypted' must be 'true' (it is 'no')"
    assert ev.violations[-1].to_dict()["expected"] == 3
    assert not ev.only_approvals_missing
    assert evaluate(Policy(required_approvals=1), v).only_approvals_missing
    assert evaluate(Policy(required_approvals=1), v, approvals=None).ok


def test_namespace_visibility_filter_matches_point_checks(tmp_path: Path, db_url: str) -> None:
    from modelyard.service.governance import GovernanceService

    svc = build_services(Settings(data_dir=tmp_path, db=db_url)).registry
    gs = GovernanceService(svc)
    try:
        svc.create_namespace("team", actor=Principal.local("t"))
        for name in ("plain", "strict", "loose"):
            svc.create_model(name, namespace="team", actor=Principal.local("t"))
        svc.create_model("elsewhere", actor=Principal.local("t"))  # default namespace, no policy
        specs = [
            {"tags": {"encrypted": "true"}, "metrics": {"accuracy": 0.95}},
            {"tags": {"encrypted": "true"}, "metrics": {"accuracy": 0.5}},
            {"tags": {"encrypted": "yes"}, "metrics": {"accuracy": 0.99}},
            {"metrics": {"accuracy": 0.99}},
        ]
        for ns, name in (
            ("team", "plain"),
            ("team", "strict"),
            ("team", "loose"),
            ("default", "elsewhere"),
        ):
            for spec in specs:
                v = svc.create_version(
                    name, VersionSpec(**spec), namespace=ns, actor=Principal.local("t")
                )
                svc.transition_version(v.ref, "published", actor=Principal.local("t"))
            svc.create_version(
                name, VersionSpec(**specs[0]), namespace=ns, actor=Principal.local("t")
            )  # ready
        # Policies set after publishing: the view applies today's policy.
        gs.set_policy("team", {"required_tags": {"encrypted": "true"}}, actor=Principal.local("a"))
        gs.set_policy(
            "team",
            {"metric_thresholds": ["accuracy >= 0.9"]},
            model="strict",
            actor=Principal.local("a"),
        )
        gs.set_policy(
            "team",
            {"required_tags": {"encrypted": None}},
            model="loose",
            actor=Principal.local("a"),
        )
        node = gs.visibility_filter("team")
        with svc.db.read() as tx:
            ids, _ = search_sql.search_versions(
                tx.conn, node=node, order=parse_order(), limit=1000, cursor=None
            )
            got = sorted(v.ref for v in tx.load_versions(ids))
            all_ids, _ = search_sql.search_versions(
                tx.conn, node=None, order=parse_order(), limit=1000, cursor=None
            )
            everything = tx.load_versions(all_ids)
        want = sorted(v.ref for v in everything if v.namespace == "team" and gs.is_visible(v))
        assert got == want
        assert got == [
            "team/loose/1",
            "team/loose/2",
            "team/loose/3",
            "team/plain/1",
            "team/plain/2",
            "team/strict/1",
        ]
    finally:
        svc.db.dispose()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_rules = st.dictionaries(
    st.sampled_from(
        [
            "required_tags",
            "required_metadata",
            "require_signature",
            "metric_thresholds",
            "allowed_formats",
            "required_approvals",
            "protected_aliases",
            "drift_thresholds",
        ]
    ),
    _json
    | st.dictionaries(st.sampled_from(["psi", "ks", "x"]), st.floats(-1, 2))
    | st.lists(st.sampled_from(["a >= 1", "metrics.b < 2", "k=v", "k", "onnx", "prod"])),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(_rules)
def test_any_json_is_a_policy_or_invalid_policy(data: dict[str, Any]) -> None:
    try:
        policy = parse_policy(data)
    except InvalidInput as exc:
        assert exc.code in ("INVALID_POLICY",), exc.code
        return
    # A valid policy survives its own wire shape and turns into a filter.
    assert parse_policy(policy.to_dict()) == policy
    policy_filter(policy)
