"""The ``compatible_signature`` policy rule (issue 14) as a gate: a protected
alias moves only to a version whose signature is compatible with its current
target's, the dry run shows the diff; alias moves, rollback and family
promotion, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import ModelyardError
from modelyard.domain.identity import Principal
from modelyard.service.registry import VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("t")


def sig(
    inputs: list[dict[str, Any]], outputs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    label = [{"name": "label", "datatype": "INT64", "shape": [-1]}]
    return {"inputs": inputs, "outputs": label if outputs is None else outputs}


X = {"name": "x", "datatype": "FP32", "shape": [-1, 4]}
BASE = sig([X])


# -- the gate, on real stores ----------------------------------------------------------


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, db=db_url))
    try:
        yield built
    finally:
        built.close()


def push(services: Services, name: str, signature: dict[str, Any] | None, **kw: Any) -> str:
    svc = services.registry
    try:
        svc.create_model(name, actor=ADMIN)
    except ModelyardError as exc:
        assert exc.code == "MODEL_ALREADY_EXISTS"
    ref = svc.create_version(name, VersionSpec(signature=signature, **kw), actor=ADMIN).ref
    svc.transition_version(ref, "published", actor=ADMIN)
    return ref


def test_protected_alias_refuses_a_breaking_signature(services: Services) -> None:
    svc, gov = services.registry, services.governance
    v1 = push(services, "m", BASE)
    svc.set_alias(v1, "production", actor=ADMIN)
    gov.set_policy(
        "default",
        {"protected_aliases": ["production"], "compatible_signature": True},
        model="m",
        actor=ADMIN,
    )
    v2 = push(services, "m", sig([{**X, "datatype": "FP64"}]))
    with pytest.raises(ModelyardError) as err:
        svc.set_alias(v2, "production", actor=ADMIN)
    assert err.value.code == "POLICY_VIOLATION"
    (violation,) = err.value.details["violations"]
    assert violation["rule"] == "compatible_signature" and violation["key"] == "x"
    assert "changed dtype float32 -> float64" in violation["message"]
    assert svc.model_aliases("m", actor=ADMIN) == {"production": 1}

    # The dry run says the same and shows the diff.
    check = gov.check(v2, action="alias", alias="production", actor=ADMIN)
    assert not check.ok and check.violations[0]["key"] == "x"
    assert check.signature_diff is not None and check.signature_diff["against"] == v1
    assert check.signature_diff["checked"] is True
    assert check.signature_diff["inputs"]["changed"][0]["after"]["dtype"] == "float64"

    # An unprotected alias is not gated; an added optional input is compatible.
    svc.set_alias(v2, "candidate", actor=ADMIN)
    v3 = push(
        services, "m", sig([X, {"name": "m", "datatype": "BOOL", "shape": [-1], "optional": True}])
    )
    ok = gov.check(v3, action="alias", alias="production", actor=ADMIN)
    assert ok.ok and ok.signature_diff is not None and ok.signature_diff["breaking"] == []
    svc.set_alias(v3, "production", actor=ADMIN)
    assert svc.model_aliases("m", actor=ADMIN)["production"] == 3


def test_rollback_is_not_held_to_the_rule(services: Services) -> None:
    svc, gov = services.registry, services.governance
    v1 = push(services, "r", BASE)
    svc.set_alias(v1, "production", actor=ADMIN)
    v2 = push(services, "r", sig([X, {"name": "extra", "datatype": "FP32", "shape": [-1]}]))
    svc.set_alias(v2, "production", actor=ADMIN)  # not yet protected
    gov.set_policy(
        "default",
        {"protected_aliases": ["production"], "compatible_signature": True},
        model="r",
        actor=ADMIN,
    )
    # v2 -> v1 removes input "extra": a forward move would be refused ...
    with pytest.raises(ModelyardError) as err:
        svc.set_alias(v1, "production", actor=ADMIN)
    assert err.value.details["violations"][0]["key"] == "extra"
    # ... but the rollback, a way back in an incident, is not.
    assert gov.rollback_alias("r", "production", actor=ADMIN).ref == v1


def test_family_promotion_checks_each_variant_against_its_alias(services: Services) -> None:
    svc, gov = services.registry, services.governance
    root1 = push(services, "f", BASE, format="pytorch")
    onnx1 = push(services, "f-onnx", BASE, format="onnx", parent=root1, relation="converted")
    svc.promote_family(root1, action="alias", alias="production", formats=["onnx"], actor=ADMIN)
    gov.set_policy(
        "default", {"protected_aliases": ["production"], "compatible_signature": True}, actor=ADMIN
    )
    root2 = push(services, "f", BASE, format="pytorch")
    push(
        services,
        "f-onnx",
        sig([{**X, "shape": [-1, 3]}]),
        format="onnx",
        parent=root2,
        relation="converted",
    )
    with pytest.raises(ModelyardError) as err:
        svc.promote_family(root2, action="alias", alias="production", formats=["onnx"], actor=ADMIN)
    assert err.value.code == "POLICY_VIOLATION"
    (refused,) = err.value.details["refused"]
    assert refused["ref"] == "default/f-onnx/2"
    assert refused["details"]["violations"][0]["expected"] == onnx1
    assert svc.model_aliases("f", actor=ADMIN) == {"production": 1}  # nothing moved
