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
