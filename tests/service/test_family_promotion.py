"""Promoting a family together (issue 14): publish or alias an original with
chosen variants in one transaction, each part gated by the production policy,
all-or-nothing, one audit change with its parts; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import ModelyardError
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("t")
# Writes "shop" but only reads "lab".
WRITER = Principal("w", roles={"shop": frozenset({Role.WRITER}), "lab": frozenset({Role.READER})})


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


def add(svc: RegistryService, name: str, *, namespace: str = "shop", **spec: Any) -> str:
    try:
        svc.create_model(name, namespace=namespace, actor=ADMIN)
    except ModelyardError as exc:
        assert exc.code == "MODEL_ALREADY_EXISTS"
    return svc.create_version(name, VersionSpec(**spec), namespace=namespace, actor=ADMIN).ref


@pytest.fixture
def fam(svc: RegistryService) -> dict[str, str]:
    """shop/fraud/1 -> fraud-onnx/1 (onnx) -> fraud-int8/1 (onnx, newest onnx);
    fraud/1 -> fraud-tflite/1; fraud/1 -> fraud/2 (pytorch, same model);
    fraud/1 -> fraud-draft/1 (coreml, archived: never chosen)."""
    svc.create_namespace("shop", actor=ADMIN)
    tags = {"reviewed": "yes"}
    r = {"root": add(svc, "fraud", format="pytorch", tags=tags)}
    r["onnx"] = add(
        svc, "fraud-onnx", format="onnx", parent=r["root"], relation="converted", tags=tags
    )
    r["int8"] = add(
        svc, "fraud-int8", format="ONNX", parent=r["onnx"], relation="quantized", tags=tags
    )
    r["tflite"] = add(svc, "fraud-tflite", format="tflite", parent=r["root"], relation="converted")
    r["tuned"] = add(svc, "fraud", format="pytorch", parent=r["root"], relation="finetuned")
    r["coreml"] = add(svc, "fraud-coreml", format="coreml", parent=r["root"], relation="converted")
    svc.transition_version(r["coreml"], "archived", actor=ADMIN)
    return r


def state(svc: RegistryService, ref: str) -> str:
    return svc.get_version(ref, actor=ADMIN).state.value


def family_events(services: Services) -> list[dict[str, Any]]:
    return services.governance.audit(actor=ADMIN, action="family.*").items


def test_publish_with_variants_is_one_change(services: Services, fam: dict[str, str]) -> None:
    svc = services.registry
    done = svc.promote_family(
        fam["root"], action="publish", formats=["onnx", "tflite"], actor=ADMIN
    )
    # The newest ready or published variant of each format: int8 is newer than onnx.
    assert [(p.version.ref, p.format, p.changed) for p in done.parts] == [
        (fam["root"], None, True),
        (fam["int8"], "onnx", True),
        (fam["tflite"], "tflite", True),
    ]
    assert [p.before for p in done.parts] == ["ready"] * 3
    for key in ("root", "int8", "tflite"):
        assert state(svc, fam[key]) == "published"
    assert state(svc, fam["onnx"]) == "ready"
    (entry,) = family_events(services)
    assert entry["type"] == "family.promoted" and entry["subject"] == fam["root"]
    payload = entry["payload"]
    assert payload["change_id"] == done.change_id and payload["action"] == "publish"
    assert [(p["ref"], p["format"], p["after"]) for p in payload["parts"]] == [
        (fam["root"], None, "published"),
        (fam["int8"], "onnx", "published"),
        (fam["tflite"], "tflite", "published"),
    ]
    parts = services.governance.audit(actor=ADMIN, action="version.published").items
    marked = {e["subject"] for e in parts if e["payload"].get("change", {}).get("id")}
    assert marked == {fam["root"], fam["int8"], fam["tflite"]}
    assert all(e["id"] < entry["id"] for e in parts)  # the change is written last

    # Again, with a newer tflite build: published parts are left as they are.
    newer = add(svc, "fraud-tflite", format="tflite", parent=fam["root"], relation="converted")
    again = svc.promote_family(fam["root"], action="publish", formats=["tflite"], actor=ADMIN)
    assert [(p.version.ref, p.changed) for p in again.parts] == [
        (fam["root"], False),
        (newer, True),
    ]


def test_one_policy_refusal_refuses_all(services: Services, fam: dict[str, str]) -> None:
    svc = services.registry
    services.governance.set_policy("shop", {"required_tags": ["reviewed"]}, actor=ADMIN)
    before = services.governance.audit(actor=ADMIN).items[0]["id"]
    with pytest.raises(ModelyardError) as err:
        svc.promote_family(fam["root"], action="publish", formats=["onnx", "tflite"], actor=ADMIN)
    assert err.value.code == "POLICY_VIOLATION"
    refused = err.value.details["refused"]
    assert [r["ref"] for r in refused] == [fam["tflite"]]
    assert refused[0]["details"]["violations"][0]["key"] == "reviewed"
    assert "nothing was changed" in err.value.message
    for key in ("root", "int8", "tflite"):
        assert state(svc, fam[key]) == "ready"
    assert services.governance.audit(actor=ADMIN).items[0]["id"] == before  # no event


def test_alias_with_variants(services: Services, fam: dict[str, str]) -> None:
    svc = services.registry
    gov = services.governance
    for model in ("fraud", "fraud-int8"):
        gov.set_policy("shop", {"protected_aliases": ["production"]}, model=model, actor=ADMIN)
    svc.transition_version(fam["root"], "published", actor=ADMIN)
    # The chosen onnx variant (int8) is ready, not published: the protected
    # alias refuses it, so fraud@production does not move either.
    with pytest.raises(ModelyardError) as err:
        svc.promote_family(
            fam["root"], action="alias", alias="production", formats=["onnx"], actor=ADMIN
        )
    assert err.value.code == "POLICY_VIOLATION"
    assert [r["ref"] for r in err.value.details["refused"]] == [fam["int8"]]
    assert svc.model_aliases("fraud", namespace="shop", actor=ADMIN) == {}

    svc.transition_version(fam["int8"], "published", actor=ADMIN)
    done = svc.promote_family(
        fam["root"],
        action="alias",
        alias="production",
        formats=["onnx", "tflite"],
        reason="release 7",
        actor=ADMIN,
    )
    assert [(p.version.ref, p.before, p.changed) for p in done.parts] == [
        (fam["root"], None, True),
        (fam["int8"], None, True),
        (fam["tflite"], None, True),
    ]
    assert svc.model_aliases("fraud", namespace="shop", actor=ADMIN) == {"production": 1}
    assert svc.model_aliases("fraud-int8", namespace="shop", actor=ADMIN) == {"production": 1}
    assert svc.model_aliases("fraud-tflite", namespace="shop", actor=ADMIN) == {"production": 1}
    (entry,) = family_events(services)
    assert entry["payload"]["alias"] == "production" and entry["payload"]["reason"] == "release 7"
    moves = gov.audit(actor=ADMIN, action="alias.moved").items
    assert {m["payload"]["change"]["id"] for m in moves} == {done.change_id}


def test_refusals_before_anything_moves(services: Services, fam: dict[str, str]) -> None:
    svc = services.registry
    with pytest.raises(ModelyardError) as err:
        svc.promote_family(fam["root"], action="publish", formats=["onnx", "coreml"], actor=ADMIN)
    assert err.value.code == "VARIANT_NOT_FOUND"  # the archived coreml build is never chosen
    assert err.value.details["formats"] == ["coreml"]
    with pytest.raises(ModelyardError) as err:
        svc.promote_family(
            fam["root"], action="alias", alias="staging", formats=["pytorch"], actor=ADMIN
        )
    assert err.value.code == "FAMILY_MODEL_CLASH"  # fraud/2 and fraud/1: one fraud@staging
    with pytest.raises(ModelyardError) as err:
        svc.promote_family(fam["root"], action="alias", formats=["onnx"], actor=ADMIN)
    assert err.value.code == "INVALID_ALIAS"
    with pytest.raises(ModelyardError) as err:
        svc.promote_family(fam["root"], action="deploy", formats=["onnx"], actor=ADMIN)
    assert err.value.code == "INVALID_ACTION"
    with pytest.raises(ModelyardError) as err:
        svc.promote_family(fam["root"], action="publish", formats=[], actor=ADMIN)
    assert err.value.code == "INVALID_INPUT"
    assert state(svc, fam["root"]) == "ready" and state(svc, fam["int8"]) == "ready"
    assert family_events(services) == []


def test_write_is_needed_on_every_part(services: Services, svc: RegistryService) -> None:
    svc.create_namespace("shop", actor=ADMIN)
    svc.create_namespace("lab", actor=ADMIN)
    root = add(svc, "m", format="pytorch")
    elsewhere = add(
        svc, "m-onnx", namespace="lab", format="onnx", parent=root, relation="converted"
    )
    with pytest.raises(ModelyardError) as err:
        svc.promote_family(root, action="publish", formats=["onnx"], actor=WRITER)
    assert err.value.code == "PERMISSION_DENIED"
    assert [r["ref"] for r in err.value.details["refused"]] == [elsewhere]
    assert state(svc, root) == "ready"


def test_concurrent_promotions_of_one_family(services: Services, fam: dict[str, str]) -> None:
    """Two promotions naming the formats in opposite orders: both commit (no
    crosswise locks), and each part is published exactly once."""
    from concurrent.futures import ThreadPoolExecutor

    svc = services.registry
    orders = (["onnx", "tflite"], ["tflite", "onnx"])
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(
                lambda f: svc.promote_family(fam["root"], action="publish", formats=f, actor=ADMIN),
                orders,
            )
        )
    changed = [p.version.ref for r in results for p in r.parts if p.changed]
    assert sorted(changed) == sorted([fam["root"], fam["int8"], fam["tflite"]])
    published = services.governance.audit(actor=ADMIN, action="version.published").items
    assert len(published) == 3 and len(family_events(services)) == 2
