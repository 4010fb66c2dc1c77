"""Registry rules the MLflow door needed (issue 10): rename a model, delete a
version, stages over states and aliases, searches with a parsed filter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain import filters
from modelyard.domain.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PolicyViolation,
)
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import RegistryService, VersionSpec
from modelyard.service.stages import stage_of
from modelyard.settings import Settings

ADMIN = Principal.local("a")
WRITER = Principal("w", roles={"default": frozenset({Role.WRITER})})


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, db=db_url, dispatcher=False))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def svc(services: Services) -> RegistryService:
    svc = services.registry
    svc.create_model("m", actor=ADMIN)
    for _ in range(4):
        svc.create_version("m", VersionSpec(), actor=ADMIN)
    return svc


def _events(svc: RegistryService) -> list[str]:
    return [e["type"] for e in svc.list_events(limit=1000, actor=ADMIN)]


def test_rename_keeps_versions_and_aliases(svc: RegistryService) -> None:
    svc.set_alias("m/2", "champion", actor=ADMIN)
    svc.create_model("other", actor=ADMIN)
    with pytest.raises(AlreadyExists):
        svc.rename_model("m", "other", actor=ADMIN)
    with pytest.raises(InvalidInput):
        svc.rename_model("m", "bad name", actor=ADMIN)
    renamed = svc.rename_model("m", "n", actor=WRITER)
    assert renamed.name == "n" and renamed.latest_version == 4
    assert svc.get_version("n@champion", actor=ADMIN).number == 2
    with pytest.raises(NotFound):
        svc.get_model("m", actor=ADMIN)
    assert "model.renamed" in _events(svc)


def test_delete_version_rules(svc: RegistryService, services: Services) -> None:
    svc.set_alias("m/3", "champion", actor=ADMIN)
    with pytest.raises(PermissionDenied):
        svc.delete_version("m/3", actor=WRITER)
    svc.transition_version("m/1", "published", actor=ADMIN)
    with pytest.raises(Conflict) as published:
        svc.delete_version("m/1", actor=ADMIN)
    assert published.value.code == "VERSION_PUBLISHED"
    svc.delete_version("m/3", actor=ADMIN)
    with pytest.raises(NotFound):
        svc.get_version("m/3", actor=ADMIN)
    with pytest.raises(NotFound):
        svc.get_version("m@champion", actor=ADMIN)
    history = svc.alias_history("m", alias="champion", actor=ADMIN)
    assert history[-1].to_version is None and history[-1].from_version == 3
    # Numbers are never reused.
    assert svc.create_version("m", VersionSpec(), actor=ADMIN).number == 5
    assert {"alias.deleted", "version.deleted"} <= set(_events(svc))


def test_delete_version_refuses_a_protected_alias_target(
    svc: RegistryService, services: Services
) -> None:
    # The alias was set before the policy protected it.
    svc.set_alias("m/2", "prod", actor=ADMIN)
    services.governance.set_policy("default", {"protected_aliases": ["prod"]}, actor=ADMIN)
    with pytest.raises(Conflict) as refused:
        svc.delete_version("m/2", actor=ADMIN)
    assert refused.value.code == "ALIAS_PROTECTED"
    assert svc.get_version("m/2", actor=ADMIN).aliases == ["prod"]


def test_stages_map_onto_states_and_staging_alias(svc: RegistryService) -> None:
    assert stage_of(svc.get_version("m/1", actor=ADMIN)) == "None"
    v = svc.set_stage("m/1", "staging", actor=WRITER)
    assert stage_of(v) == "Staging" and v.aliases == ["staging"]
    # @staging names one version: the previous one leaves Staging.
    svc.set_stage("m/2", "Staging", actor=WRITER)
    assert stage_of(svc.get_version("m/1", actor=ADMIN)) == "None"
    # Production leaves Staging and publishes; archive_existing archives other published.
    svc.set_stage("m/3", "Production", actor=WRITER)
    p = svc.set_stage("m/2", "production", archive_existing=True, actor=WRITER)
    assert p.state.value == "published" and "staging" not in p.aliases
    assert stage_of(svc.get_version("m/3", actor=ADMIN)) == "Archived"
    latest = {stage_of(x): x.number for x in svc.latest_in_stages("m", actor=ADMIN)}
    assert latest == {"None": 4, "Production": 2, "Archived": 3}
    svc.set_stage("m/4", "Staging", archive_existing=True, actor=WRITER)
    latest = {stage_of(x): x.number for x in svc.latest_in_stages("m", actor=ADMIN)}
    assert latest == {"Staging": 4, "None": 1, "Production": 2, "Archived": 3}
    assert [x.number for x in svc.latest_in_stages("m", ["staging"], actor=ADMIN)] == [4]
    back = svc.set_stage("m/2", "None", actor=WRITER)
    assert back.state.value == "ready"
    with pytest.raises(InvalidInput):
        svc.set_stage("m/2", "Shipping", actor=WRITER)
    with pytest.raises(NotFound):
        svc.latest_in_stages("nope", actor=ADMIN)


def test_production_stage_is_gated_by_the_policy(svc: RegistryService, services: Services) -> None:
    services.governance.set_policy("default", {"required_tags": {"encrypted": "true"}}, actor=ADMIN)
    with pytest.raises(PolicyViolation):
        svc.set_stage("m/1", "Production", actor=WRITER)
    assert svc.get_version("m/1", actor=ADMIN).state.value == "ready"


def test_search_with_a_parsed_filter(svc: RegistryService) -> None:
    svc.update_version("m/2", set_tags={"k": "v"}, actor=ADMIN)
    where = filters.Comparison(filters.Field("tag", "k"), "=", "v")
    page = svc.search_versions("name = 'm'", where=where, actor=ADMIN)
    assert [x.number for x in page.items] == [2]
    assert svc.search_models(None, where=where, actor=ADMIN).items == []
    named = filters.Comparison(filters.Field("attr", "name"), "=", "m")
    assert [m.name for m in svc.search_models(None, where=named, actor=ADMIN).items] == ["m"]


def test_stage_summaries_agree_with_the_one_model_calls(svc: RegistryService) -> None:
    svc.create_model("n", actor=ADMIN)
    for _ in range(5):
        svc.create_version("n", VersionSpec(), actor=ADMIN)
    svc.set_stage("m/1", "Staging", actor=ADMIN)  # @staging on an old version
    svc.set_stage("m/3", "Production", actor=ADMIN)
    svc.set_stage("n/2", "Archived", actor=ADMIN)
    svc.set_stage("n/4", "Archived", actor=ADMIN)
    svc.set_alias("n/5", "champion", actor=ADMIN)
    models = [svc.get_model("m", actor=ADMIN), svc.get_model("n", actor=ADMIN)]
    consumer = Principal("c", roles={"default": frozenset({Role.CONSUMER})})
    # A consumer sees model m through its published version 3 (n has none).
    for who, seen in ((ADMIN, models), (consumer, models[:1])):
        summaries = svc.stage_summaries(seen, actor=who)
        for m, (aliases, latest) in zip(seen, summaries, strict=True):
            assert aliases == svc.model_aliases(m.name, actor=who)
            expected = svc.latest_in_stages(m.name, actor=who)
            assert [(stage_of(v), v.number) for v in latest] == [
                (stage_of(v), v.number) for v in expected
            ]
    admin_view = dict(zip(("m", "n"), svc.stage_summaries(models, actor=ADMIN), strict=True))
    assert [(stage_of(v), v.number) for v in admin_view["m"][1]] == [
        ("None", 4),
        ("Staging", 1),
        ("Production", 3),
    ]
    assert admin_view["n"][0] == {"champion": 5}


def test_model_summary_is_get_model_with_its_stage_summary(
    svc: RegistryService, services: Services
) -> None:
    """One read for MLflow's get: the same model, aliases and latest versions per
    stage as get_model + stage_summaries, for a reader and for a consumer."""
    svc.set_alias("m/3", "champion", actor=ADMIN)
    svc.set_stage("m/1", "Staging", actor=ADMIN)
    svc.set_stage("m/2", "Production", actor=ADMIN)
    consumer = Principal("c", roles={"default": frozenset({Role.CONSUMER})})
    for who in (ADMIN, WRITER, consumer):
        model, aliases, latest = svc.model_summary("m", actor=who)
        expected = svc.get_model("m", actor=who)
        ((want_aliases, want_latest),) = svc.stage_summaries([expected], actor=who)
        assert model == expected
        assert (aliases, latest) == (want_aliases, want_latest)
    _, aliases, latest = svc.model_summary("m", actor=ADMIN)
    assert aliases == {"champion": 3, "staging": 1}
    assert {stage_of(v): v.number for v in latest} == {"None": 4, "Staging": 1, "Production": 2}
    with pytest.raises(NotFound):
        svc.model_summary("nope", actor=ADMIN)
