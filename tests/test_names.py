"""Property tests for the strings clients choose: paths and references."""

from __future__ import annotations

import contextlib
import posixpath
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.client.transfer import safe_destination
from modelyard.domain.errors import InvalidInput
from modelyard.domain.names import (
    validate_alias,
    validate_digest,
    validate_file_path,
    validate_key,
    validate_name,
)
from modelyard.domain.references import Reference, parse_reference

SEGMENT_CHARS = st.sampled_from([*list("ab.-_%2e5cfF/\\:"), "..", "%2f", "%25", "\x00", " "])


@settings(max_examples=600, deadline=None)
@given(st.lists(SEGMENT_CHARS, min_size=1, max_size=12).map("".join))
def test_accepted_paths_never_escape(raw: str) -> None:
    try:
        path = validate_file_path(raw)
    except InvalidInput as exc:
        assert exc.code == "INVALID_PATH"
        return
    assert not path.startswith("/") and "\\" not in path
    norm = posixpath.normpath(path)
    assert norm == path, "accepted paths are already normal"
    assert norm != ".." and not norm.startswith("../")
    assert ".." not in path.split("/")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_validate_file_path_only_raises_invalid_input(raw: str) -> None:
    with contextlib.suppress(InvalidInput):
        validate_file_path(raw)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_safe_destination_stays_inside(raw: str) -> None:
    root = Path("/tmp/modelyard-dest-check")
    try:
        target = safe_destination(root, raw)
    except InvalidInput:
        return
    assert root.resolve() in target.parents


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fraud", Reference("default", "fraud")),
        ("fraud/3", Reference("default", "fraud", version=3)),
        ("fraud@production", Reference("default", "fraud", alias="production")),
        ("fraud@latest", Reference("default", "fraud", alias="latest")),
        ("risk/fraud", Reference("risk", "fraud")),
        ("risk/fraud/12", Reference("risk", "fraud", version=12)),
        ("risk/fraud@champion", Reference("risk", "fraud", alias="champion")),
    ],
)
def test_parse_reference(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/",
        "a/",
        "a//1",
        "a/0",
        "a@",
        "a@1x!",
        "1abc",
        "a/b/c/1",
        "a/b/c",
        "a@b@c",
        "a/1234567890",
        "../a",
        "a/1/2",
    ],
)
def test_bad_references(text: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_reference(text)
    assert exc.value.code == "INVALID_REFERENCE"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_parse_reference_only_raises_invalid_input(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidInput:
        return
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize("value", ["abc\n", "a\n"])
def test_a_trailing_newline_is_not_part_of_a_valid_name(value: str) -> None:
    # re.match lets "$" match before a final newline; the OpenAPI patterns
    # (ECMA-262) do not, and neither may the app.
    for check in (validate_name, validate_alias, validate_key):
        with pytest.raises(InvalidInput):
            check(value)
    with pytest.raises(InvalidInput):
        validate_digest("0" * 64 + "\n")
