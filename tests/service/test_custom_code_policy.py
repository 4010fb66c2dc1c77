"""The custom-code permission (issue 12): only a namespace policy grants
``allow_custom_code``, a model policy can withdraw it; a consumer (the model
server's token) reads it for versions it can see; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.errors import InvalidInput, NotFound
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.settings import Settings

ROOT = Principal.local("ops")
ADMIN = Principal("a", roles={"default": frozenset({Role.ADMIN})})
WRITER = Principal("w", roles={"default": frozenset({Role.WRITER})})
CONSUMER = Principal("server", roles={"default": frozenset({Role.CONSUMER})})
OUTSIDER = Principal("x", roles={"other": frozenset({Role.ADMIN})})


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, db=db_url))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def svc(services: Services) -> RegistryService:
    """m/1 published, m/2 ready (outside the production view)."""
    registry = services.registry
    registry.create_model("m", actor=ROOT)
    for _ in (1, 2):
        registry.create_version("m", VersionSpec(), actor=ROOT)
    registry.transition_version("m/1", "published", actor=ROOT)
    return registry


@pytest.mark.parametrize(
    ("namespace", "model", "allowed"),
    [
        (None, None, False),
        (True, None, True),
        (True, False, False),
        (None, True, False),  # a model policy cannot grant it
        (False, True, False),
    ],
)
def test_custom_code_is_the_namespace_policys_to_allow(
    svc: RegistryService,
    services: Services,
    namespace: bool | None,
    model: bool | None,
    allowed: bool,
) -> None:
    gov = services.governance
    if namespace is not None:
        gov.set_policy("default", {"allow_custom_code": namespace}, actor=ADMIN)
    if model is not None:
        gov.set_policy("default", {"allow_custom_code": model}, model="m", actor=ADMIN)
    assert svc.custom_code_allowed("m/1", actor=CONSUMER) is allowed
    with pytest.raises(NotFound):
        svc.custom_code_allowed("m/2", actor=CONSUMER)  # outside the production view


def test_custom_code_knob_must_be_a_boolean(services: Services) -> None:
    with pytest.raises(InvalidInput) as bad:
        services.governance.set_policy("default", {"allow_custom_code": "yes"}, actor=ADMIN)
    assert bad.value.code == "INVALID_POLICY"


def test_drift_thresholds_merge_per_key_and_reach_consumers(
    svc: RegistryService, services: Services
) -> None:
    """``drift_thresholds``: the model's value for a key replaces the
    namespace's; a consumer reads the merged pair for versions it can see."""
    gov = services.governance
    assert svc.serving_policy("m/1", actor=CONSUMER).drift_thresholds is None
    gov.set_policy("default", {"drift_thresholds": {"psi": 0.3, "ks": 0.25}}, actor=ADMIN)
    gov.set_policy("default", {"drift_thresholds": {"psi": 0.05}}, model="m", actor=ADMIN)
    assert svc.serving_policy("m/1", actor=CONSUMER).drift_thresholds == {"psi": 0.05, "ks": 0.25}
    stored = gov.get_policy("default", model="m", actor=ADMIN)
    assert stored.policy.to_dict()["drift_thresholds"] == {"psi": 0.05}  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        svc.serving_policy("m/2", actor=CONSUMER)


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"psi": 0},
        {"psi": -1},
        {"ks": 1.5},
        {"ks": True},
        {"psi": "0.1"},
        {"psi": float("inf")},
        {"drift": 0.1},
        [0.1, 0.2],
    ],
)
def test_drift_thresholds_are_checked(services: Services, value: object) -> None:
    with pytest.raises(InvalidInput) as bad:
        services.governance.set_policy("default", {"drift_thresholds": value}, actor=ADMIN)
    assert bad.value.code == "INVALID_POLICY"
    assert bad.value.details["rule"] == "drift_thresholds"
