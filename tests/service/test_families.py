"""Model families (issue 14): lineage rules at creation, the family, variant
and ancestry queries, lineage filters, and the consumer's view of a family;
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import InvalidInput, ModelyardError, NotFound
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("t")
# Consumes "shop" only: sees its production view, nothing of "lab".
CONSUMER = Principal("c", roles={"shop": frozenset({Role.CONSUMER})})


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, db=db_url))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def svc(services: Services) -> RegistryService:
    return services.registry


def add(
    svc: RegistryService,
    name: str,
    *,
    namespace: str = "shop",
    publish: bool = False,
    **spec: Any,
) -> str:
    """Create a version of ``namespace/name`` (the model too); its reference."""
    try:
        svc.create_model(name, namespace=namespace, actor=ADMIN)
    except ModelyardError as exc:
        assert exc.code == "MODEL_ALREADY_EXISTS"
    ver = svc.create_version(name, VersionSpec(**spec), namespace=namespace, actor=ADMIN)
    if publish:
        svc.transition_version(ver.ref, "published", actor=ADMIN)
    return ver.ref


@pytest.fixture
def fraud(svc: RegistryService) -> dict[str, str]:
    """shop/fraud/1 (pytorch) -> onnx (converted) -> int8 (quantized);
    fraud/1 -> tflite (converted); fraud/1 -> fraud/2 (finetuned)."""
    svc.create_namespace("shop", actor=ADMIN)
    refs = {"root": add(svc, "fraud", format="pytorch", metrics={"auc": 0.90, "f1": 0.8})}
    refs["onnx"] = add(
        svc,
        "fraud-onnx",
        format="onnx",
        parent=refs["root"],
        relation="converted",
        recipe={"tool": "skl2onnx", "tool_version": "1.17.0", "options": {"opset": 17}},
        metrics={"auc": 0.88, "latency_ms": 3.0},
    )
    refs["int8"] = add(svc, "fraud-int8", format="onnx", parent=refs["onnx"], relation="quantized")
    refs["tflite"] = add(
        svc, "fraud-tflite", format="tflite", parent=refs["root"], relation="converted"
    )
    refs["tuned"] = add(svc, "fraud", format="pytorch", parent=refs["root"], relation="finetuned")
    return refs


# -- lineage rules at creation -------------------------------------------------


def test_original_is_always_the_root(svc: RegistryService, fraud: dict[str, str]) -> None:
    int8 = svc.get_version(fraud["int8"], actor=ADMIN)
    assert str(int8.original) == fraud["root"]
    assert str(int8.parent) == fraud["onnx"]
    # An original naming a variant is stored as that variant's root.
    ref = add(svc, "fraud-coreml", original=fraud["int8"], relation="converted")
    got = svc.get_version(ref, actor=ADMIN)
    assert str(got.original) == fraud["root"] and got.parent is None
    # The root itself has no original.
    assert svc.get_version(fraud["root"], actor=ADMIN).original is None


def test_recipe_and_metric_delta(svc: RegistryService, fraud: dict[str, str]) -> None:
    onnx = svc.get_version(fraud["onnx"], actor=ADMIN)
    assert onnx.recipe == {"tool": "skl2onnx", "tool_version": "1.17.0", "options": {"opset": 17}}
    # Computed from the metrics both report when not given.
    assert onnx.metric_delta is not None and set(onnx.metric_delta) == {"auc"}
    assert onnx.metric_delta["auc"] == pytest.approx(-0.02)
    given = add(svc, "fraud-x", parent=fraud["root"], relation="pruned", metric_delta={"auc": -1})
    assert svc.get_version(given, actor=ADMIN).metric_delta == {"auc": -1.0}
    # Nothing shared, nothing given: no delta, no recipe.
    int8 = svc.get_version(fraud["int8"], actor=ADMIN)
    assert int8.metric_delta is None and int8.recipe is None


BAD_LINEAGE: list[tuple[dict[str, Any], str]] = [
    ({"parent": "shop/fraud/1", "relation": "retrained"}, "INVALID_RELATION"),
    ({"relation": "converted"}, "INVALID_LINEAGE"),
    ({"recipe": {"tool": "x"}}, "INVALID_LINEAGE"),
    ({"metric_delta": {"auc": 1}}, "INVALID_LINEAGE"),
    ({"parent": "shop/fraud/1", "recipe": {"tool_version": "1"}}, "INVALID_RECIPE"),
    ({"parent": "shop/fraud/1", "recipe": {"tool": "a b"}}, "INVALID_RECIPE"),
    ({"parent": "shop/fraud/1", "recipe": {"tool": "x", "extra": 1}}, "INVALID_RECIPE"),
    ({"parent": "shop/fraud/1", "recipe": {"tool": "x", "options": []}}, "INVALID_RECIPE"),
    ({"parent": "shop/fraud/1", "metric_delta": {"auc": "up"}}, "INVALID_METRIC_DELTA"),
]


def test_bad_lineage_is_refused_with_a_stable_code(
    svc: RegistryService, fraud: dict[str, str]
) -> None:
    for spec, code in BAD_LINEAGE:
        with pytest.raises(InvalidInput) as err:
            svc.create_version("fraud", VersionSpec(**spec), namespace="shop", actor=ADMIN)
        assert err.value.code == code, spec


def test_parent_and_original_must_be_one_family(
    svc: RegistryService, fraud: dict[str, str]
) -> None:
    other = add(svc, "churn")
    with pytest.raises(InvalidInput) as err:
        add(svc, "mixed", parent=fraud["onnx"], original=other, relation="converted")
    assert err.value.code == "LINEAGE_MISMATCH"
    assert err.value.details["parent_original"] == fraud["root"]
    # Naming the family's root (or any member) as original is consistent.
    ok = add(svc, "mixed", parent=fraud["onnx"], original=fraud["tflite"], relation="pruned")
    assert str(svc.get_version(ok, actor=ADMIN).original) == fraud["root"]


def test_missing_lineage_names_the_field(svc: RegistryService, fraud: dict[str, str]) -> None:
    with pytest.raises(NotFound) as err:
        add(svc, "x", parent="shop/fraud/99", relation="converted")
    assert err.value.code == "VERSION_NOT_FOUND" and err.value.details["field"] == "parent"
    with pytest.raises(NotFound) as err:
        add(svc, "x", original="shop/nope/1")
    assert err.value.code == "MODEL_NOT_FOUND" and err.value.details["field"] == "original"


def test_created_event_carries_the_lineage(services: Services, fraud: dict[str, str]) -> None:
    with services.registry.db.read() as tx:
        events = tx.list_events(after=0, limit=100)
    created = [e for e in events if e["type"] == "version.created"]
    int8 = next(e for e in created if e["subject"] == fraud["int8"])
    assert int8["payload"]["lineage"] == {
        "original": fraud["root"],
        "parent": fraud["onnx"],
        "relation": "quantized",
    }


# -- queries -------------------------------------------------------------------


def _shape(svc: RegistryService, ref: str, actor: Principal = ADMIN) -> list[tuple[str, int]]:
    """The family tree as (ref, depth) in depth-first order."""
    out: list[tuple[str, int]] = []
    stack = [(n, 0) for n in reversed(svc.get_family(ref, actor=actor).trees)]
    while stack:
        node, depth = stack.pop()
        out.append((node.version.ref, depth))
        stack.extend((c, depth + 1) for c in reversed(node.children))
    return out


def test_family_is_one_tree_from_any_member(svc: RegistryService, fraud: dict[str, str]) -> None:
    expected = [
        (fraud["root"], 0),
        (fraud["onnx"], 1),
        (fraud["int8"], 2),
        (fraud["tflite"], 1),
        (fraud["tuned"], 1),
    ]
    for member in fraud.values():
        assert _shape(svc, member) == expected
    fam = svc.get_family(fraud["int8"], actor=ADMIN)
    assert fam.of == fraud["int8"] and fam.root == fraud["root"]
    # By alias too.
    svc.set_alias(fraud["root"], "production", actor=ADMIN)
    assert svc.get_family("shop/fraud@production", actor=ADMIN).of == fraud["root"]


def test_variants_latest_by_format(svc: RegistryService, fraud: dict[str, str]) -> None:
    svc.set_alias(fraud["root"], "production", actor=ADMIN)
    got = svc.list_variants("shop/fraud@production", format="onnx", latest=True, actor=ADMIN)
    assert [v.ref for v in got] == [fraud["int8"]]  # the newest ONNX descendant
    every = svc.list_variants(fraud["root"], actor=ADMIN)
    assert [v.ref for v in every] == [
        fraud["tuned"],
        fraud["tflite"],
        fraud["int8"],
        fraud["onnx"],
    ]
    converted = svc.list_variants(fraud["root"], relation="converted", actor=ADMIN)
    assert [v.ref for v in converted] == [fraud["tflite"], fraud["onnx"]]
    # Only descendants: the ONNX build has one variant, the quantized one.
    assert [v.ref for v in svc.list_variants(fraud["onnx"], actor=ADMIN)] == [fraud["int8"]]
    # A newer draft is not what "latest" names.
    add(svc, "fraud-int8", format="onnx", parent=fraud["onnx"], relation="quantized", draft=True)
    got = svc.list_variants(fraud["root"], format="onnx", latest=True, actor=ADMIN)
    assert [v.ref for v in got] == [fraud["int8"]]
    with pytest.raises(NotFound) as err:
        svc.list_variants(fraud["root"], format="coreml", latest=True, actor=ADMIN)
    assert err.value.code == "VARIANT_NOT_FOUND"
    with pytest.raises(InvalidInput) as bad:
        svc.list_variants(fraud["root"], relation="cooked", actor=ADMIN)
    assert bad.value.code == "INVALID_RELATION"


def test_ancestry_walks_up_to_the_original(svc: RegistryService, fraud: dict[str, str]) -> None:
    assert [v.ref for v in svc.get_ancestry(fraud["int8"], actor=ADMIN)] == [
        fraud["onnx"],
        fraud["root"],
    ]
    assert svc.get_ancestry(fraud["root"], actor=ADMIN) == []


LINEAGE_FILTERS: list[tuple[str, set[str]]] = [
    ("original = 'shop/fraud/1'", {"onnx", "int8", "tflite", "tuned"}),
    ("original = 'shop/fraud/1' AND format = 'onnx'", {"onnx", "int8"}),
    ("parent = 'shop/fraud-onnx/1'", {"int8"}),
    ("parent IN ('shop/fraud-onnx/1', 'shop/fraud/1')", {"onnx", "int8", "tflite", "tuned"}),
    ("relation = 'quantized'", {"int8"}),
    ("original EXISTS AND relation = 'converted'", {"onnx", "tflite"}),
    ("NOT original EXISTS", {"root"}),
    ("parent != 'shop/fraud/1'", {"int8"}),
    ("parent NOT IN ('shop/fraud/1')", {"int8"}),
    ("NOT parent = 'shop/fraud/1'", {"root", "int8"}),
    ("original = 'shop/nothing/1'", set()),
]


def test_lineage_filters(svc: RegistryService, fraud: dict[str, str]) -> None:
    by_ref = {ref: key for key, ref in fraud.items()}
    for text, want in LINEAGE_FILTERS:
        page = svc.search_versions(text, namespace="shop", actor=ADMIN)
        assert {by_ref[v.ref] for v in page.items} == want, text


def test_lineage_filters_need_a_full_reference(svc: RegistryService) -> None:
    for text in (
        "original = 'fraud/1'",
        "original = 'shop/fraud@prod'",
        "original = 3",
        "parent > 'a/b/1'",
    ):
        with pytest.raises(InvalidInput) as err:
            svc.search_versions(text, actor=ADMIN)
        assert err.value.code == "INVALID_FILTER", text


# -- the consumer's view -----------------------------------------------------------


@pytest.fixture
def shop(svc: RegistryService) -> dict[str, str]:
    """lab/base/1 (not visible to the consumer) -> shop/fraud/1 (published)
    -> shop/fraud-onnx/1 (ready: hidden) -> shop/fraud-int8/1 (published),
    and shop/fraud-tflite/1 (published) from fraud/1."""
    svc.create_namespace("shop", actor=ADMIN)
    svc.create_namespace("lab", actor=ADMIN)
    refs = {"base": add(svc, "base", namespace="lab", publish=True)}
    refs["root"] = add(svc, "fraud", parent=refs["base"], relation="distilled", publish=True)
    refs["onnx"] = add(svc, "fraud-onnx", format="onnx", parent=refs["root"], relation="converted")
    refs["int8"] = add(
        svc, "fraud-int8", format="onnx", parent=refs["onnx"], relation="quantized", publish=True
    )
    refs["tflite"] = add(
        svc,
        "fraud-tflite",
        format="tflite",
        parent=refs["root"],
        relation="converted",
        publish=True,
    )
    return refs


def test_consumer_sees_the_production_view_of_a_family(
    svc: RegistryService, shop: dict[str, str]
) -> None:
    assert _shape(svc, shop["int8"]) == [
        (shop["base"], 0),
        (shop["root"], 1),
        (shop["onnx"], 2),
        (shop["int8"], 3),
        (shop["tflite"], 2),
    ]
    # The hidden ONNX build is left out; its quantized child hangs under the
    # nearest visible ancestor; the root in "lab" is not shown.
    assert _shape(svc, shop["int8"], CONSUMER) == [
        (shop["root"], 0),
        (shop["int8"], 1),
        (shop["tflite"], 1),
    ]
    fam = svc.get_family(shop["root"], actor=CONSUMER)
    assert fam.root is None
    root = fam.trees[0].version
    assert root.parent is None and root.original is None  # links to hidden versions dropped
    got = svc.list_variants(shop["root"], format="onnx", latest=True, actor=CONSUMER)
    assert [v.ref for v in got] == [shop["int8"]]
    assert [v.ref for v in svc.get_ancestry(shop["int8"], actor=CONSUMER)] == [shop["root"]]
    # A hidden version answers as if it did not exist (its model holds no
    # other version, so the model is not found either).
    for call in (svc.get_family, svc.get_ancestry, svc.list_variants):
        with pytest.raises(NotFound) as err:
            call(shop["onnx"], actor=CONSUMER)
        assert err.value.code == "MODEL_NOT_FOUND"
    # Lineage searches stay inside the view too.
    page = svc.search_versions(f"original = '{shop['base']}'", actor=CONSUMER)
    assert {v.ref for v in page.items} == {shop["root"], shop["int8"], shop["tflite"]}


def test_deleting_the_root_model_gives_the_family_a_new_root(
    svc: RegistryService, fraud: dict[str, str]
) -> None:
    svc.delete_model("fraud", namespace="shop", force=True, actor=ADMIN)
    onnx = svc.get_version(fraud["onnx"], actor=ADMIN)
    assert onnx.parent is None and onnx.original is None  # now a root
    int8 = svc.get_version(fraud["int8"], actor=ADMIN)
    assert str(int8.original) == fraud["onnx"] and str(int8.parent) == fraud["onnx"]
    assert [v.ref for v in svc.get_ancestry(fraud["int8"], actor=ADMIN)] == [fraud["onnx"]]
    tflite = svc.get_version(fraud["tflite"], actor=ADMIN)
    assert tflite.original is None and tflite.parent is None
