"""``check_source_uri``: what a version may record as its MLflow source."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelyard.domain.errors import InvalidInput
from modelyard.service.validation import MAX_SOURCE_URI, check_source_uri


@pytest.mark.parametrize(
    "value",
    [
        "",
        "relative/path",
        "/abs",
        "file:///etc/passwd",
        "local:/x",
        "c:/x",
        "runs:/a/../b",
        "runs:/a/%2E%2E/b",
        "runs:/a/%252E%252E/b",
        "runs:/a#/../b",
        "s3://b/k\\x",
        "runs:/a\x7f",
        "runs:/" + "a" * MAX_SOURCE_URI,
    ],
)
def test_refused(value: str) -> None:
    with pytest.raises(InvalidInput):
        check_source_uri(value)


@pytest.mark.parametrize(
    "value",
    ["runs:/abc/model", "models:/m-1", "s3://b/k..x/a..b", "gs://b/k?x=..", "dbfs:/x/y"],
)
def test_recorded(value: str) -> None:
    assert check_source_uri(value) == value


@given(st.text(max_size=60))
def test_never_anything_but_invalid_input(value: str) -> None:
    try:
        accepted = check_source_uri(value)
    except InvalidInput:
        return
    # Whatever passes has a scheme and no climbing segment at any decoding depth.
    assert accepted == value and ":" in value and "\\" not in value
