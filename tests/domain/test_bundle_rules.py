"""Bundle rules (issue 14): edges against signatures, signature change rules,
edge and reference parsing."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.domain.bundles import (
    Edge,
    check_edge,
    compare_signatures,
    parse_bundle_ref,
    parse_edges,
)
from modelyard.domain.errors import InvalidInput

DET: dict[str, Any] = {
    "inputs": [{"name": "image", "dtype": "uint8", "shape": [-1, 224, 224, 3]}],
    "outputs": [{"name": "boxes", "dtype": "float32", "shape": [-1, 4]}],
}
CLS: dict[str, Any] = {
    "inputs": {"rois": {"dtype": "float32", "shape": [-1, 4]}},
    "outputs": [{"name": "label", "dtype": "int64", "shape": [-1]}],
}


def test_edge_holds_when_fields_match() -> None:
    assert check_edge(Edge("det", "cls", {"boxes": "rois"}), DET, CLS) == []


def test_edge_mismatches_are_spelled_out() -> None:
    wrong = {"inputs": [{"name": "rois", "dtype": "float16", "shape": [-1, 5]}]}
    problems = check_edge(Edge("det", "cls", {"boxes": "rois", "scores": "x"}), DET, wrong)
    texts = [p.problem for p in problems]
    assert "det.boxes is float32 but cls.rois takes float16" in texts
    assert "det.boxes has shape [-1, 4] but cls.rois takes [-1, 5]" in texts
    assert any("det has no output 'scores'" in t for t in texts)
    assert any("cls has no input 'x'" in t for t in texts)
    assert {p.field for p in problems} == {"rois", "scores", "x"}
    assert [p.problem for p in check_edge(Edge("a", "b", {"o": "i"}), None, CLS)] == [
        "a declares no outputs"
    ]


@pytest.mark.parametrize(
    ("new", "breaking"),
    [
        (CLS, []),
        (
            {**CLS, "inputs": {**CLS["inputs"], "mask": {"dtype": "bool", "optional": True}}},
            [],
        ),
        ({**CLS, "inputs": {**CLS["inputs"], "mask": {"dtype": "bool"}}}, ["mask"]),
        ({**CLS, "inputs": {}}, ["rois"]),
        ({**CLS, "inputs": {"rois": {"dtype": "float64", "shape": [-1, 4]}}}, ["rois"]),
        ({**CLS, "outputs": [{"name": "label", "dtype": "int32", "shape": [-1]}]}, ["label"]),
        ({**CLS, "outputs": [{"name": "label", "dtype": "int64", "shape": [-1, 1]}]}, ["label"]),
        ({**CLS, "outputs": []}, ["label"]),
    ],
)
def test_signature_change_rules(new: dict[str, Any], breaking: list[str]) -> None:
    assert [p.field for p in compare_signatures("cls", CLS, new)] == breaking


def test_edges_are_checked_against_roles() -> None:
    roles = {"det": "d@prod", "cls": "c/1"}
    good = parse_edges([{"from": "det", "to": "cls", "mapping": {"boxes": "rois"}}], roles)
    assert good == [Edge("det", "cls", {"boxes": "rois"})]
    for bad in (
        [{"from": "det", "to": "nope", "mapping": {"a": "b"}}],
        [{"from": "det", "to": "det", "mapping": {"a": "b"}}],
        [{"from": "det", "to": "cls", "mapping": {}}],
        [{"from": "det", "to": "cls", "mapping": {"a b": "c"}}],
        [{"from": "det", "to": "cls", "mapping": {"a": "b"}}] * 2,
        "not a list",
    ):
        with pytest.raises(InvalidInput) as err:
            parse_edges(bad, roles)
        assert err.value.code == "INVALID_BUNDLE"


def test_bundle_references() -> None:
    assert parse_bundle_ref("pipe") == (parse_bundle_ref("default/pipe@latest")[0], None)
    r, n = parse_bundle_ref("shop/pipe@3")
    assert (r.namespace, r.name, n) == ("shop", "pipe", 3)
    assert parse_bundle_ref("pipe/2")[1] == 2
    r, n = parse_bundle_ref("shop/pipe@production")
    assert (r.namespace, r.name, r.alias, n) == ("shop", "pipe", "production", None)
    assert parse_bundle_ref("pipe@latest")[0].alias is None
    with pytest.raises(InvalidInput):
        parse_bundle_ref("pipe@bad alias!")
