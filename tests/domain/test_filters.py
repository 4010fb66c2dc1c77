"""The filter language parser: grammar, typing of values, errors, limits, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.domain.errors import InvalidInput
from modelyard.domain.filters import (
    DEFAULT_ORDER,
    MAX_COMPARISONS,
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    And,
    Comparison,
    Field,
    Node,
    Not,
    Or,
    OrderBy,
    parse_filter,
    parse_order_by,
)


def tag(key: str, op: str, value: object) -> Comparison:
    return Comparison(Field("tag", key), op, value)  # type: ignore[arg-type]


def attr(key: str, op: str, value: object) -> Comparison:
    return Comparison(Field("attr", key), op, value)  # type: ignore[arg-type]


def v(text: str) -> Node | None:
    return parse_filter(text, "versions")


def error(text: str, target: str = "versions") -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse_filter(text, target)  # type: ignore[arg-type]
    assert info.value.code == "INVALID_FILTER"
    assert isinstance(info.value.details["position"], int)
    return info.value


# -- structure -----------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t "])
def test_empty_is_no_filter(text: str | None) -> None:
    assert parse_filter(text, "versions") is None
    assert parse_filter(text, "models") is None


def test_single_comparison() -> None:
    assert v("tags.team = 'fraud'") == tag("team", "=", "fraud")


def test_and_binds_tighter_than_or() -> None:
    a, b, c = (tag(k, "=", "x") for k in "abc")
    assert v("tags.a = 'x' OR tags.b = 'x' AND tags.c = 'x'") == Or((a, And((b, c))))
    assert v("tags.a = 'x' AND tags.b = 'x' OR tags.c = 'x'") == Or((And((a, b)), c))


def test_not_binds_tighter_than_and() -> None:
    a, b = tag("a", "=", "x"), tag("b", "=", "x")
    assert v("NOT tags.a = 'x' AND tags.b = 'x'") == And((Not(a), b))
    assert v("NOT (tags.a = 'x' AND tags.b = 'x')") == Not(And((a, b)))
    assert v("NOT NOT tags.a = 'x'") == Not(Not(a))
    assert v("not(tags.a='x')") == Not(a)


def test_parentheses_override_precedence() -> None:
    a, b, c = (tag(k, "=", "x") for k in "abc")
    assert v("(tags.a = 'x' OR tags.b = 'x') AND tags.c = 'x'") == And((Or((a, b)), c))
    assert v("((((tags.a = 'x'))))") == a


def test_and_or_chains_are_flat() -> None:
    a, b, c, d = (tag(k, "=", "x") for k in "abcd")
    assert v("tags.a='x' AND tags.b='x' AND (tags.c='x' AND tags.d='x')") == And((a, b, c, d))
    assert v("(tags.a='x' OR tags.b='x') OR tags.c='x' OR tags.d='x'") == Or((a, b, c, d))


def test_keywords_are_case_insensitive() -> None:
    assert v("tags.a = 'x' and not tags.b in ('y') Or tags.c like 'z%'") == Or(
        (And((tag("a", "=", "x"), Not(tag("b", "IN", ("y",))))), tag("c", "LIKE", "z%"))
    )


def test_ast_is_immutable_and_hashable() -> None:
    node = v("tags.a = 'x' AND metrics.f1 IN (1, 2)")
    assert node is not None
    with pytest.raises(AttributeError):
        node.items = ()  # type: ignore[misc, union-attr]
    assert hash(node) == hash(v("tags.a='x'  and  metrics.f1 in (1,2)"))


# -- operators -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("=", "="),
        ("==", "="),
        ("!=", "!="),
        ("<>", "!="),
        ("<", "<"),
        ("<=", "<="),
        (">", ">"),
        (">=", ">="),
        ("LIKE", "LIKE"),
        ("like", "LIKE"),
        ("ILIKE", "ILIKE"),
        ("iLike", "ILIKE"),
    ],
)
def test_every_scalar_operator(written: str, canonical: str) -> None:
    assert v(f"tags.team {written} 'fr%'") == tag("team", canonical, "fr%")


def test_in_and_not_in() -> None:
    assert v("framework IN ('onnx', 'tflite')") == attr("framework", "IN", ("onnx", "tflite"))
    assert v("framework not in ('onnx')") == attr("framework", "NOT IN", ("onnx",))
    assert v("metrics.acc IN (1, 0.5, -2e3)") == Comparison(
        Field("metric", "acc"), "IN", (1.0, 0.5, -2000.0)
    )


def test_operators_need_no_spaces() -> None:
    assert v("tags.a!='x'AND(number>=3)") == And((tag("a", "!=", "x"), attr("number", ">=", 3)))


# -- fields ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "kind"),
    [
        ("tags", "tag"),
        ("tag", "tag"),
        ("TAGS", "tag"),
        ("metrics", "metric"),
        ("metric", "metric"),
        ("params", "param"),
        ("param", "param"),
        ("metadata", "meta"),
        ("meta", "meta"),
    ],
)
def test_field_prefixes(prefix: str, kind: str) -> None:
    value = "1" if kind == "metric" else "'1'"
    node = v(f"{prefix}.key = {value}")
    assert isinstance(node, Comparison)
    assert node.field == Field(kind, "key")  # type: ignore[arg-type]


def test_bare_keys_take_key_characters() -> None:
    assert v("tags.team/sub:x.y-z_1 = 'a'") == tag("team/sub:x.y-z_1", "=", "a")
    assert v("tags.1st = 'a'") == tag("1st", "=", "a")


def test_quoted_keys() -> None:
    assert v("tags.`my key` = 'a'") == tag("my key", "=", "a")
    assert v("tags.\"my key\" = 'a'") == tag("my key", "=", "a")
    assert v('tags."it\\"s" = \'a\'') == tag('it"s', "=", "a")
    assert v("metrics.`f1 score` > 0.5") == Comparison(Field("metric", "f1 score"), ">", 0.5)


def test_attributes_and_aliases() -> None:
    assert v("version = 3") == attr("number", "=", 3)
    assert v("Number = 3") == attr("number", "=", 3)
    assert v("run_id = 'abc'") == attr("run_id", "=", "abc")
    assert v("state = 'READY'") == attr("state", "=", "ready")
    models = parse_filter("archived = true AND namespace = 'team'", "models")
    assert models == And((attr("archived", "=", True), attr("namespace", "=", "team")))


@pytest.mark.parametrize(
    "text",
    [
        "name = 'a'",
        "namespace = 'a'",
        "number = 1",
        "state = 'draft'",
        "framework = 'a'",
        "format = 'a'",
        "description = 'a'",
        "created > 0",
        "updated > 0",
        "run_id = 'a'",
        "relation = 'converted'",
        "tags.a = 'a'",
        "metrics.a = 1",
        "params.a = 'a'",
        "meta.a = 'a'",
    ],
)
def test_version_fields(text: str) -> None:
    assert v(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "name = 'a'",
        "namespace = 'a'",
        "description = 'a'",
        "archived = false",
        "created > 0",
        "updated > 0",
        "tags.a = 'a'",
        "meta.a = 'a'",
    ],
)
def test_model_fields(text: str) -> None:
    assert parse_filter(text, "models") is not None


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("metrics.a = 1", "models"),
        ("params.a = 'x'", "models"),
        ("state = 'ready'", "models"),
        ("number = 1", "models"),
        ("framework = 'onnx'", "models"),
        ("archived = true", "versions"),
        ("bogus = 1", "versions"),
        ("attributes.name = 'x'", "versions"),
        ("tags = 'x'", "versions"),
    ],
)
def test_fields_not_allowed_for_target(text: str, target: str) -> None:
    err = error(text, target)
    assert err.details["position"] == 0


@pytest.mark.parametrize(
    "text",
    [
        "tags. = 'x'",
        "tags.-x = 'x'",
        "tags.`` = 'x'",
        "tags. `x` = 'x'",
        f"tags.`{'k' * 256}` = 'x'",
    ],
)
def test_bad_keys(text: str) -> None:
    error(text)


# -- values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("'plain'", "plain"),
        ('"double"', "double"),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'back\\\\slash'", "back\\slash"),
        ("'mixed \"quotes\"'", 'mixed "quotes"'),
        ("'50\\%'", "50\\%"),
        ("'a\\_b'", "a\\_b"),
        ("''", ""),
        ("'unicode ✓ é'", "unicode ✓ é"),
    ],
)
def test_string_values(written: str, value: str) -> None:
    assert v(f"tags.t = {written}") == tag("t", "=", value)


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("3", 3.0),
        ("-3", -3.0),
        ("+3", 3.0),
        ("0.25", 0.25),
        ("-0.25", -0.25),
        (".5", 0.5),
        ("5.", 5.0),
        ("1e3", 1000.0),
        ("-1.5E-2", -0.015),
    ],
)
def test_number_values(written: str, value: float) -> None:
    assert v(f"metrics.m = {written}") == Comparison(Field("metric", "m"), "=", value)


def test_number_attribute_is_an_int() -> None:
    node = v("number >= 10")
    assert isinstance(node, Comparison)
    assert node.value == 10
    assert type(node.value) is int


@pytest.mark.parametrize(
    ("written", "micros"),
    [
        ("'2026-01-02'", 1_767_312_000_000_000),
        ("'2026-01-02T03:04:05Z'", 1_767_312_000_000_000 + (3 * 3600 + 4 * 60 + 5) * 1_000_000),
        ("'2026-01-02T03:04:05'", 1_767_312_000_000_000 + (3 * 3600 + 4 * 60 + 5) * 1_000_000),
        ("'2026-01-02T03:04:05.123456+00:00'", 1_767_323_045_123_456),
        ("'2026-01-02T05:04:05+02:00'", 1_767_323_045_000_000),
        ("1767312000", 1_767_312_000_000_000),
        ("1767312000.5", 1_767_312_000_500_000),
        ("0", 0),
        ("-1", -1_000_000),
    ],
)
def test_times_become_microseconds(written: str, micros: int) -> None:
    assert v(f"created >= {written}") == attr("created", ">=", micros)
    assert parse_filter(f"updated < {written}", "models") == attr("updated", "<", micros)


def test_meta_values_pick_text_or_number() -> None:
    meta = Field("meta", "size")
    assert v("meta.size > 3") == Comparison(meta, ">", 3.0)
    assert v("meta.size = '3'") == Comparison(meta, "=", "3")
    assert v("meta.size = TRUE") == Comparison(meta, "=", "true")
    assert v("meta.size IN (1, 2)") == Comparison(meta, "IN", (1.0, 2.0))
    assert v("meta.size LIKE 'a%'") == Comparison(meta, "LIKE", "a%")


def test_archived_values() -> None:
    for written, value in [("true", True), ("FALSE", False), ("'true'", True), ("'False'", False)]:
        node = parse_filter(f"archived = {written}", "models")
        assert node == attr("archived", "=", value)


# -- type and syntax errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("metrics.acc = 'high'", 14),
        ("metrics.acc LIKE 'x'", 12),
        ("metrics.acc IN (1, 'x')", 19),
        ("tags.team = 3", 12),
        ("tags.team = true", 12),
        ("tags.team LIKE 3", 15),
        ("name ILIKE 3", 11),
        ("meta.x LIKE 3", 12),
        ("meta.x < true", 9),
        ("meta.x IN (1, 'a')", 11),
        ("number = 1.5", 9),
        ("number = '1'", 9),
        ("number = 99999999999", 9),
        ("number LIKE 1", 7),
        ("state = 'shipped'", 8),
        ("state < 'ready'", 6),
        ("state = 3", 8),
        ("created = 'yesterday'", 10),
        ("created = '2026-13-01'", 10),
        ("created LIKE '2026%'", 8),
        ("created = true", 10),
        ("created > 99999999999999", 10),
    ],
)
def test_type_errors_point_at_the_value_or_operator(text: str, position: int) -> None:
    assert error(text).details["position"] == position


@pytest.mark.parametrize(
    ("text", "target"),
    [("archived = 'yes'", "models"), ("archived < true", "models"), ("archived = 1", "models")],
)
def test_archived_errors(text: str, target: str) -> None:
    error(text, target)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("tags.a", 6),
        ("tags.a =", 8),
        ("tags.a = 'x' AND", 16),
        ("tags.a = 'x' tags.b = 'y'", 13),
        ("(tags.a = 'x'", 13),
        ("tags.a = 'x')", 12),
        ("()", 1),
        ("AND tags.a = 'x'", 0),
        ("tags.a = 'x' OR OR tags.b = 'y'", 16),
        ("tags.a IN 'x'", 10),
        ("tags.a IN ()", 11),
        ("tags.a IN ('x',)", 15),
        ("tags.a IN ('x' 'y')", 15),
        ("tags.a NOT 'x'", 7),
        ("tags.a = ('x')", 9),
        ("tags.a = 'unterminated", 9),
        ('tags.a = "unterminated', 9),
        ("tags.`unterminated = 'x'", 5),
        ("tags.a = 'bad \\n escape'", 14),
        ("tags.a = 'trailing\\", 9),
        ("tags.a = 'x' ; drop table versions", 13),
        ("tags.a = 1.2.3", 9),
        ("tags.a = 5abc", 9),
        ("tags.a = 'nul\x00'", 13),
        ("tags.a ~ 'x'", 7),
        ("tags.a LIKE 'x\\\\'", 12),
        ("tags.a LIKE 'x\\\\y'", 12),
        ("name = 'é' AND tags.a === 'x'", 24),
        ("tags.a = x", 9),
    ],
)
def test_syntax_errors(text: str, position: int) -> None:
    err = error(text)
    assert err.details["position"] == position, err.message
    assert "position" in err.message


def test_error_shape() -> None:
    err = error("metrics.acc = 'x'")
    body = err.to_dict()
    assert body["code"] == "INVALID_FILTER"
    assert "metrics.acc needs a number" in body["message"]
    assert body["details"]["position"] == 14


# -- limits -----------------------------------------------------------------------


def test_length_limit() -> None:
    padded = "tags.a = 'x'" + " " * (MAX_FILTER_LENGTH - len("tags.a = 'x'"))
    assert v(padded) is not None
    err = error(padded + " ")
    assert err.details["position"] == MAX_FILTER_LENGTH


def test_comparison_limit() -> None:
    ok = " OR ".join(f"number = {i}" for i in range(MAX_COMPARISONS))
    node = v(ok)
    assert isinstance(node, Or)
    assert len(node.items) == MAX_COMPARISONS
    assert "comparisons" in error(ok + " OR number = 0").message


def test_depth_limit() -> None:
    inner = "tags.a = 'x'"
    assert v("(" * MAX_DEPTH + inner + ")" * MAX_DEPTH) == tag("a", "=", "x")
    assert "deeper" in error("(" * (MAX_DEPTH + 1) + inner + ")" * (MAX_DEPTH + 1)).message
    nots = v("NOT " * MAX_DEPTH + inner)
    for _ in range(MAX_DEPTH):
        assert isinstance(nots, Not)
        nots = nots.item
    assert "deeper" in error("NOT " * (MAX_DEPTH + 1) + inner).message
    mixed = "NOT (" * 16 + inner + ")" * 16
    assert v(mixed) is not None
    assert "deeper" in error("NOT (" * 17 + inner + ")" * 17).message


@pytest.mark.parametrize("opener", ["(", "NOT ", "NOT("])
def test_pathological_nesting_never_recurses_out(opener: str) -> None:
    text = (opener * 5000)[:MAX_FILTER_LENGTH]
    err = error(text)
    assert "deeper" in err.message


def test_huge_numbers_are_refused_not_crashing() -> None:
    error("metrics.a = " + "9" * 5000)
    error("metrics.a = 1e999")
    error("created > 1e300")
    error("number = -" + "1" * 30)


# -- order by ------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "  "])
def test_order_by_default(text: str | None) -> None:
    assert parse_order_by(text, "versions") == DEFAULT_ORDER
    assert parse_order_by(text, "models") == OrderBy(Field("attr", "created"), True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("created DESC", OrderBy(Field("attr", "created"), True)),
        ("created", OrderBy(Field("attr", "created"), False)),
        ("created asc", OrderBy(Field("attr", "created"), False)),
        ("updated Desc", OrderBy(Field("attr", "updated"), True)),
        ("name", OrderBy(Field("attr", "name"), False)),
        ("NAME DESC", OrderBy(Field("attr", "name"), True)),
        ("number desc", OrderBy(Field("attr", "number"), True)),
        ("version", OrderBy(Field("attr", "number"), False)),
        ("metrics.accuracy DESC", OrderBy(Field("metric", "accuracy"), True)),
        ("metric.f1", OrderBy(Field("metric", "f1"), False)),
        ("metrics.`f1 score` desc", OrderBy(Field("metric", "f1 score"), True)),
    ],
)
def test_order_by_versions(text: str, expected: OrderBy) -> None:
    assert parse_order_by(text, "versions") == expected


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("number", "models"),
        ("metrics.acc", "models"),
        ("state", "versions"),
        ("tags.team", "versions"),
        ("created sideways", "versions"),
        ("created DESC, name", "versions"),
        ("created DESC DESC", "versions"),
        ("DESC", "versions"),
        ("metrics.", "versions"),
        ("'created'", "versions"),
        ("(created)", "versions"),
        ("created 'x", "versions"),
        ("x" * 2000, "versions"),
    ],
)
def test_order_by_errors(text: str, target: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_order_by(text, target)  # type: ignore[arg-type]
    assert info.value.code == "INVALID_ORDER_BY"
    assert isinstance(info.value.details["position"], int)


# -- fuzzing -----------------------------------------------------------------------

_FRAGMENTS = [
    "tags.",
    "metrics.",
    "params.",
    "meta.",
    "name",
    "state",
    "number",
    "created",
    "archived",
    "a",
    "`k y`",
    '"k"',
    " ",
    "=",
    "==",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    " LIKE ",
    " ILIKE ",
    " IN ",
    " NOT ",
    " AND ",
    " OR ",
    "(",
    ")",
    ",",
    "'x'",
    "'2026-01-02'",
    "'ready'",
    "'a\\'b'",
    "'\\",
    "'",
    '"',
    "`",
    "1",
    "-2.5e3",
    "1e999",
    "true",
    "\\",
    "\x00",
    ".",
    "%",
]


def _outcome(text: str, target: str) -> None:
    try:
        result = parse_filter(text, target)  # type: ignore[arg-type]
    except InvalidInput as exc:
        assert exc.code == "INVALID_FILTER"
        assert isinstance(exc.details.get("position"), int)
        assert 0 <= exc.details["position"] <= max(len(text), MAX_FILTER_LENGTH)
    else:
        assert result is None or isinstance(result, Comparison | And | Or | Not)


@settings(deadline=None, max_examples=300)
@given(text=st.text(max_size=300), target=st.sampled_from(["models", "versions"]))
def test_fuzz_arbitrary_text(text: str, target: str) -> None:
    _outcome(text, target)


@settings(deadline=None, max_examples=300)
@given(
    parts=st.lists(st.sampled_from(_FRAGMENTS), max_size=40),
    target=st.sampled_from(["models", "versions"]),
)
def test_fuzz_filter_like_text(parts: list[str], target: str) -> None:
    _outcome("".join(parts), target)


@settings(deadline=None, max_examples=300)
@given(text=st.text(max_size=80), target=st.sampled_from(["models", "versions"]))
def test_fuzz_order_by(text: str, target: str) -> None:
    try:
        result = parse_order_by(text, target)  # type: ignore[arg-type]
    except InvalidInput as exc:
        assert exc.code == "INVALID_ORDER_BY"
    else:
        assert isinstance(result, OrderBy)
