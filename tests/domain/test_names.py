"""Property tests for the strings clients choose: paths and references."""

from __future__ import annotations

import contextlib
import ntpath
import posixpath
import unicodedata
from pathlib import Path
from urllib.parse import unquote

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


# -- look-alike and platform-unsafe paths (issue 9) ------------------------------

LOOKALIKES = [
    "\uff0e\uff0e/etc/passwd",  # fullwidth dots
    "a/\uff0e\uff0e/b",
    "\ufeff../x",  # BOM before ..
    "a\u2215..\u2215b",  # division slash
    "a\u2044..\u2044b",  # fraction slash
    "a\uff0f..\uff0fb",  # fullwidth solidus
    "a\uff3cb",  # fullwidth backslash
    "..\u00a5x",  # yen sign: a backslash under Windows' Japanese code page
    "evil\u202etxt.exe",  # right-to-left override
    "a\u200bb",  # zero-width space
    "a\u2066b",  # bidi isolate
    "a\u2028b",  # line separator
    "a\ue000b",  # private use
    "a\U000e0001b",  # tag character (format)
    "\u2025/x",  # two dot leader (NFKC "..")
    "\u2024",  # one dot leader (NFKC ".")
    "CON",
    "con",
    "nul.txt",
    "dir/Aux.tar.gz",
    "COM1",
    "lpt9.log",
    "COM\u00b9",  # superscript one: NFKC "COM1", also a device on Windows
    "CONIN$",
    "nul .txt",
    "...",
    "a.",
    "dir./x",
    "a ",
    "a:b",
    "stream.bin:hidden",
    "a*b",
    "a?b",
    'a"b',
    "a<b",
    "a>b",
    "a|b",
    "x" * 256,
    "%EF%BC%8E%EF%BC%8E/x",  # percent-encoded fullwidth dots
    "%E2%80%AE",  # percent-encoded RLO
    "\ufb01le",  # ligature: not NFKC
]


@pytest.mark.parametrize("raw", LOOKALIKES)
def test_lookalike_and_platform_unsafe_paths_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_file_path(raw)
    assert info.value.code == "INVALID_PATH"


def test_non_nfkc_paths_name_their_nfkc_spelling() -> None:
    with pytest.raises(InvalidInput) as info:
        validate_file_path("\uff08\uff11\uff09.txt")
    assert info.value.details["nfkc"] == "(1).txt"


@pytest.mark.parametrize(
    "raw",
    [
        "model.onnx",
        "a/b/c.bin",
        ".gitattributes",
        "\u5831\u544a.txt",
        "\u00c4.bin",
        "a b",
        "x" * 255,
        "console.txt",
        "com10",
        "v1.0/w",
    ],
)
def test_ordinary_names_stay_accepted(raw: str) -> None:
    assert validate_file_path(raw) == raw


PATH_ALPHABET = st.sampled_from(
    [
        *"ab.-_ /%:\\",
        "..",
        "\uff0e",
        "\uff0f",
        "\u2215",
        "\ufeff",
        "\u202e",
        "\u00a0",
        "\u2025",
        "\u0301",
        "CON",
        "nul",
        "COM1",
        "\u00b9",
        "%2e",
        "%2f",
        "%EF%BC%8E",
        "\x00",
    ]
)
WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {
    f"{p}{n}" for p in ("COM", "LPT") for n in range(10)
}


def _assert_safe_everywhere(path: str) -> None:
    """What an accepted path must be, however it is read."""
    assert unicodedata.normalize("NFKC", path) == path
    for c in path:
        assert unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
        assert c not in '\\<>:"|?*\u2215\u2044\uff0f\uff3c'
    assert posixpath.normpath(path) == path
    assert not ntpath.isabs(path) and ntpath.splitdrive(path)[0] == ""
    assert ".." not in ntpath.normpath(path).split("\\")
    for segment in path.split("/"):
        assert segment not in ("", ".", "..")
        assert segment == segment.strip() and not segment.endswith(".")
        assert segment.split(".")[0].strip().upper() not in WINDOWS_DEVICES


@settings(max_examples=800, deadline=None)
@given(st.lists(PATH_ALPHABET, min_size=1, max_size=10).map("".join))
def test_accepted_paths_are_safe_on_every_platform(raw: str) -> None:
    try:
        path = validate_file_path(raw)
    except InvalidInput as exc:
        assert exc.code == "INVALID_PATH"
        return
    _assert_safe_everywhere(path)
    decoded = unquote(unquote(path))
    for form in (decoded, unicodedata.normalize("NFKC", decoded)):
        assert ".." not in form.split("/") and "\\" not in form


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30))
def test_any_accepted_text_is_safe_on_every_platform(raw: str) -> None:
    try:
        path = validate_file_path(raw)
    except InvalidInput as exc:
        assert exc.code == "INVALID_PATH"
        return
    _assert_safe_everywhere(path)


@pytest.mark.parametrize("value", ["abc\n", "a\n"])
def test_a_trailing_newline_is_not_part_of_a_valid_name(value: str) -> None:
    # re.match lets "$" match before a final newline; the OpenAPI patterns
    # (ECMA-262) do not, and neither may the app.
    for check in (validate_name, validate_alias, validate_key):
        with pytest.raises(InvalidInput):
            check(value)
    with pytest.raises(InvalidInput):
        validate_digest("0" * 64 + "\n")
