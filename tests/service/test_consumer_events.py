"""A consumer's event log (issue 12): in a namespace it only consumes, a reader
gets the alias moves the production view shows (a protected alias moved onto a
published version meeting the policy), trimmed, and nothing else; on SQLite
and PostgreSQL, through the outbox query and the in-memory rule alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.composition import Services, build_services
from modelyard.domain.identity import Principal, Role
from modelyard.domain.webhooks import CONSUMER_VISIBLE, event_for
from modelyard.service.registry import VersionSpec
from modelyard.settings import Settings

ROOT = Principal.local("ops")
CONSUMER = Principal("server", roles={"default": frozenset({Role.CONSUMER})})
GLOBAL_CONSUMER = Principal("any", roles={"*": frozenset({Role.CONSUMER})})
READER = Principal("r", roles={"default": frozenset({Role.READER})})
ELSEWHERE = Principal("x", roles={"other": frozenset({Role.CONSUMER})})


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, db=db_url))
    try:
        reg = built.registry
        reg.create_namespace("other", actor=ROOT)
        reg.create_model("m", actor=ROOT)
        for _ in (1, 2, 3):
            reg.create_version("m", VersionSpec(tags={"encrypted": "true"}), actor=ROOT)
        reg.transition_version("m/1", "published", actor=ROOT)
        reg.transition_version("m/2", "published", actor=ROOT)
        built.governance.set_policy(
            "default",
            {"required_tags": {"encrypted": "true"}, "protected_aliases": ["production"]},
            actor=ROOT,
        )
        yield built
    finally:
        built.close()


def _moves(services: Services, actor: Principal, after: int = 0) -> list[dict[str, object]]:
    flt = services.webhooks.event_filter(types=["alias.moved"], actor=actor)
    return services.webhooks.list_events(flt, after=after, limit=1000)


def test_a_consumer_gets_protected_moves_onto_visible_versions_only(services: Services) -> None:
    reg = services.registry
    start = services.webhooks.last_event_id()
    reg.set_alias("m/1", "production", actor=ROOT)
    reg.set_alias("m/3", "staging", actor=ROOT)  # not protected: not the consumer's
    reg.set_alias("m/2", "production", actor=ROOT, reason="better")
    everything = _moves(services, READER, start)
    assert [e["payload"]["to_version"] for e in everything] == [1, 3, 2]
    assert everything[2]["payload"]["reason"] == "better" and everything[2]["actor"] == "ops"
    assert everything[0]["payload"][CONSUMER_VISIBLE] is True
    assert CONSUMER_VISIBLE not in everything[1]["payload"]

    for who in (CONSUMER, GLOBAL_CONSUMER):
        seen = _moves(services, who, start)
        assert [e["subject"] for e in seen] == ["default/m@production"] * 2
        assert [e["payload"] for e in seen] == [
            {"alias": "production", "to_version": 1, "after": {"version": 1}},
            {"alias": "production", "to_version": 2, "after": {"version": 2}},
        ]
        assert all(e["actor"] == "" for e in seen)
        # Other event types of the namespace stay hidden, even asked for by "*".
        flt = services.webhooks.event_filter(types=["*"], actor=who)
        assert {e["type"] for e in services.webhooks.list_events(flt, after=0)} == {"alias.moved"}
    assert _moves(services, ELSEWHERE, start) == []


def test_paging_skips_hidden_moves_without_ending_early(services: Services) -> None:
    """A page of limit N holds N visible events even when hidden candidates
    sit between them (a short page means "nothing newer yet")."""
    reg = services.registry
    start = services.webhooks.last_event_id()
    for _ in range(3):
        reg.set_alias("m/3", "staging", actor=ROOT)
        reg.delete_alias("m", "staging", actor=ROOT)
        reg.set_alias("m/1", "production", actor=ROOT)
        reg.set_alias("m/2", "production", actor=ROOT)
    flt = services.webhooks.event_filter(types=["alias.moved"], actor=CONSUMER)
    first = services.webhooks.list_events(flt, after=start, limit=4)
    assert [e["payload"]["to_version"] for e in first] == [1, 2, 1, 2]
    rest = services.webhooks.list_events(flt, after=first[-1]["id"], limit=4)
    assert [e["payload"]["to_version"] for e in rest] == [1, 2]


def test_the_in_memory_rule_agrees_with_the_query(services: Services) -> None:
    """The event stream's hub applies ``event_for`` to unfiltered rows: the
    same events, the same trimming, as the consumer's query."""
    reg = services.registry
    start = services.webhooks.last_event_id()
    reg.set_alias("m/1", "production", actor=ROOT)
    reg.set_alias("m/3", "staging", actor=ROOT)
    reg.transition_version("m/3", "published", actor=ROOT)
    raw = services.webhooks.list_events(None, after=start, limit=1000)
    for who in (CONSUMER, READER, ELSEWHERE):
        flt = services.webhooks.event_filter(actor=who)
        in_memory = [seen for ev in raw if (seen := event_for(flt, ev)) is not None]
        assert in_memory == services.webhooks.list_events(flt, after=start, limit=1000)
