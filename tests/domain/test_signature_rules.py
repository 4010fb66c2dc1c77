"""The ``compatible_signature`` policy rule (issue 14) in the domain: parsing,
merging, evaluation by the bundle signature rules, and the signature diff."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.domain.bundles import canonical_dtype, signature_diff
from modelyard.domain.entities import Version, VersionState
from modelyard.domain.errors import InvalidInput
from modelyard.domain.policies import evaluate, merge_policies, parse_policy


def sig(
    inputs: list[dict[str, Any]], outputs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "inputs": inputs,
        "outputs": outputs
        if outputs is not None
        else [{"name": "label", "datatype": "INT64", "shape": [-1]}],
    }


X = {"name": "x", "datatype": "FP32", "shape": [-1, 4]}
BASE = sig([X])


def version(number: int, signature: dict[str, Any] | None) -> Version:
    return Version(
        id=number,
        namespace="default",
        model="m",
        number=number,
        state=VersionState.PUBLISHED,
        description="",
        framework=None,
        format=None,
        signature=signature,
        metrics={},
        params={},
        tags={},
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


# -- domain -------------------------------------------------------------------------


def test_rule_parses_merges_and_stays_out_of_visibility() -> None:
    p = parse_policy({"compatible_signature": True, "protected_aliases": ["production"]})
    assert p.compatible_signature is True and p.to_dict()["compatible_signature"] is True
    assert (
        merge_policies(p, parse_policy({"compatible_signature": False})).compatible_signature
        is False
    )
    assert merge_policies(p, parse_policy({})).compatible_signature is True
    with pytest.raises(InvalidInput) as err:
        parse_policy({"compatible_signature": "yes"})
    assert err.value.code == "INVALID_POLICY"
    # Without the version being replaced, the rule has nothing to compare.
    assert evaluate(p, version(2, None), approvals=None).ok


@pytest.mark.parametrize(
    ("new", "problems"),
    [
        (BASE, []),
        # OIP and NumPy names of one dtype are one dtype.
        (sig([{**X, "datatype": "float32"}]), []),
        (sig([X, {"name": "mask", "datatype": "BOOL", "shape": [-1], "optional": True}]), []),
        (sig([{**X, "shape": [8, 4]}]), []),  # a fixed size where any size was declared
        (sig([{**X, "datatype": "FP64"}]), ["x"]),
        (sig([{**X, "shape": [-1, 5]}]), ["x"]),
        (sig([{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]), ["x", "y"]),
        (sig([X, {"name": "mask", "datatype": "BOOL", "shape": [-1]}]), ["mask"]),
        (sig([X], [{"name": "label", "datatype": "FP32", "shape": [-1]}]), ["label"]),
        (sig([X], [{"name": "label", "datatype": "INT64", "shape": [-1, 1]}]), ["label"]),
        (sig([X], []), ["label"]),
        (None, [None]),
    ],
)
def test_compatibility_by_the_bundle_rules(new: dict[str, Any] | None, problems: list[Any]) -> None:
    p = parse_policy({"compatible_signature": True, "protected_aliases": ["production"]})
    ev = evaluate(
        p, version(2, new), approvals=None, replacing=version(1, BASE), alias="production"
    )
    assert [v.key for v in ev.violations] == problems
    assert all(
        v.rule == "compatible_signature" and v.expected == "default/m/1" for v in ev.violations
    )
    if problems:
        assert "@production default/m/1" in ev.violations[0].message


def test_signature_diff_lists_every_difference() -> None:
    assert canonical_dtype("FP64") == canonical_dtype("double") == "float64"
    new = sig(
        [
            {**X, "datatype": "FP16"},
            {"name": "mask", "datatype": "BOOL", "shape": [-1], "optional": True},
        ],
        [{"name": "score", "datatype": "FP32", "shape": [-1]}],
    )
    d = signature_diff("m@production", BASE, new)
    assert d["inputs"]["added"] == [
        {"name": "mask", "dtype": "bool", "shape": [-1], "optional": True}
    ]
    assert d["inputs"]["changed"] == [
        {
            "name": "x",
            "before": {"dtype": "float32", "shape": [-1, 4], "optional": False},
            "after": {"dtype": "float16", "shape": [-1, 4], "optional": False},
        }
    ]
    assert [o["name"] for o in d["outputs"]["removed"]] == ["label"]
    assert [o["name"] for o in d["outputs"]["added"]] == ["score"]
    assert [b["field"] for b in d["breaking"]] == ["x", "label"]
