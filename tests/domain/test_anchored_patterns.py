"""Names, event types, formats and token ids are matched whole: a pattern that
ends in ``$`` under ``re.match`` also accepts the same text plus a trailing
newline, which then reaches storage, filters and logs."""

from __future__ import annotations

import pytest

from modelyard.client.registry import registry_target
from modelyard.domain.errors import InvalidInput
from modelyard.domain.policies import parse_policy, parse_threshold
from modelyard.domain.webhooks import validate_event_type, validate_patterns
from modelyard.service.identity import TOKEN_PREFIX, hash_token, public_id_of


def test_event_type_and_patterns_refuse_a_trailing_newline() -> None:
    assert validate_event_type("version.created") == "version.created"
    with pytest.raises(InvalidInput):
        validate_event_type("version.created\n")
    assert validate_patterns(["version.*"]) == ["version.*"]
    with pytest.raises(InvalidInput):
        validate_patterns(["version.*\n"])


def test_policy_formats_and_thresholds_are_matched_whole() -> None:
    assert parse_policy({"allowed_formats": ["onnx"]}).allowed_formats == ("onnx",)
    with pytest.raises(InvalidInput):
        parse_policy({"allowed_formats": ["onnx\n"]})
    assert parse_threshold("metrics.acc >= 0.9").metric == "acc"
    with pytest.raises(InvalidInput):
        parse_threshold("metrics.acc >= 0.9 junk")


def test_token_public_id_needs_the_whole_id() -> None:
    good = f"{TOKEN_PREFIX}0123456789ab_secret"
    assert public_id_of(good) == "0123456789ab"
    # Not a public id: the token is named by its hash, like any foreign form.
    odd = f"{TOKEN_PREFIX}0123456789ab\n_secret"
    assert public_id_of(odd) == hash_token(odd)[:16]


def test_host_port_shorthand_is_matched_whole() -> None:
    assert registry_target("127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert registry_target("127.0.0.1:8080\n") == "127.0.0.1:8080\n"
