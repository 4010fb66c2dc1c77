"""The search filter language: a tokenizer, a recursive-descent parser and its AST.

Pure domain code: no SQL here. ``store/metadata/search.py`` compiles the AST.

Grammar (keywords are case-insensitive; white space is free between tokens)::

    filter     := or_expr EOF                      (empty text -> no filter)
    or_expr    := and_expr ( OR and_expr )*
    and_expr   := not_expr ( AND not_expr )*
    not_expr   := NOT not_expr | primary           (so NOT binds tighter than AND, AND than OR)
    primary    := "(" or_expr ")" | comparison
    comparison := field op value
                | field [NOT] IN "(" value ( "," value )* ")"
                | field EXISTS                     key present / attribute set
    op         := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=" | LIKE | ILIKE
    field      := attr                             name, state, created, ...
                | prefix "." key                   tags.team, metrics.f1, meta.owner
                | prefix "." "`" any "`"           tags.`my key`
                | prefix "." '"' any '"'           tags."my key"
    prefix     := tags | tag | metrics | metric | params | param | metadata | meta
    value      := 'string' | "string" | number | TRUE | FALSE

Strings take backslash escapes for quotes (``\\'``, ``\\"``) and backslash
(``\\\\``). ``\\%`` and ``\\_`` are kept as written (backslash included), as in
MySQL, so a LIKE pattern can say "a literal percent sign" as ``'50\\%'``. LIKE
patterns use ``%`` (any run) and ``_`` (one character) with ``\\`` as escape.

Semantics the compiler implements (documented here because they are part of the
language, not of SQL):

- ``tags.k != 'v'`` means "has tag ``k`` with a value other than ``v``";
  likewise every tag/metric/param/meta comparison needs the key to be present.
  ``NOT tags.k = 'v'`` also matches things without the tag.
- Comparisons are two-valued: a missing value (no framework, no tag) makes a
  comparison false, never "unknown", so ``NOT x`` is exactly "everything but x".
- ``created``/``updated`` take an ISO-8601 string (naive means UTC) or epoch
  seconds; the AST holds integer microseconds since the epoch.
- ``meta.k`` compares numerically with a number and as text with a string;
  ``true``/``false`` match JSON booleans (indexed as the text "true"/"false").
- ``tags.k EXISTS`` (likewise metrics, params, meta) holds when the key is
  present, whatever its value (a metadata key holding JSON null or a nested
  object counts as present). On attributes it means "is set": ``framework``,
  ``format``, ``run_id``, ``relation``, ``original``, ``parent`` and
  ``signature`` (a non-empty signature object), which has no other operator.
  Governance uses it to express production policies as filters (issue 3,
  ``domain/policies.py``).
- ``original`` and ``parent`` (issue 14) take a full version reference
  ``'namespace/name/number'`` with ``=``, ``!=``, ``IN`` and ``NOT IN``:
  ``original = 'vision/detector/1'`` is that root's family without the root;
  a reference naming no version matches nothing.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, NoReturn, TypeAlias

from modelyard.domain.errors import InvalidInput
from modelyard.domain.names import validate_key
from modelyard.domain.references import parse_reference

Target = Literal["models", "versions"]
FieldKind = Literal["attr", "tag", "metric", "param", "meta"]
Scalar: TypeAlias = str | int | float | bool
Value: TypeAlias = Scalar | tuple[Scalar, ...]

MAX_FILTER_LENGTH: Final = 10_000
MAX_ORDER_BY_LENGTH: Final = 1_000
MAX_COMPARISONS: Final = 200
MAX_DEPTH: Final = 32
MAX_QUOTED_KEY_LENGTH: Final = 255
# Version numbers are an INTEGER column (int4 on PostgreSQL).
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
# Microsecond timestamps are BIGINT.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

VERSION_STATES: Final = frozenset({"draft", "ready", "published", "archived"})
COMPARISON_OPS: Final = (
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "LIKE",
    "ILIKE",
    "IN",
    "NOT IN",
    "EXISTS",
)

FILTER_CODE: Final = "INVALID_FILTER"
ORDER_BY_CODE: Final = "INVALID_ORDER_BY"


# -- AST ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """What a comparison looks at: an attribute, or a key of tags/metrics/params/meta."""

    kind: FieldKind
    key: str


@dataclass(frozen=True, slots=True)
class Comparison:
    """``field op value``; ``value`` is a tuple for ``IN`` / ``NOT IN``.

    ``op`` is one of :data:`COMPARISON_OPS` (canonical spelling). Values are
    already typed for the field: integer microseconds for ``created``/``updated``,
    floats for metrics, bools for ``archived``, lowercase names for ``state``.
    """

    field: Field
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class And:
    """All items hold (at least two items)."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one item holds (at least two items)."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """The item does not hold."""

    item: Node


@dataclass(frozen=True, slots=True)
class AnyVersion:
    """(Models only) the model has at least one version matching ``item``.

    Never produced by the parser: the service builds it, e.g. for the
    production view, where a model is visible only through a visible version.
    """

    item: Node


Node: TypeAlias = Comparison | And | Or | Not | AnyVersion


@dataclass(frozen=True, slots=True)
class OrderBy:
    """Sort key of a search; the row id is always the final tiebreaker."""

    field: Field
    descending: bool


DEFAULT_ORDER: Final = OrderBy(Field("attr", "created"), descending=True)

# -- fields allowed per target -----------------------------------------------

_MODEL_ATTRS: Final = frozenset(
    ["name", "description", "namespace", "archived", "created", "updated"]
)
_VERSION_ATTRS: Final = frozenset(
    [
        "name",
        "namespace",
        "number",
        "state",
        "framework",
        "format",
        "description",
        "created",
        "updated",
        "run_id",
        "relation",
        "signature",
        "original",
        "parent",
    ]
)
# Attributes that may be unset, so ``EXISTS`` means something for them.
PRESENCE_ATTRS: Final = frozenset(
    {"framework", "format", "run_id", "relation", "signature", "original", "parent"}
)
# Lineage links, compared with a full version reference ``ns/name/number``.
LINEAGE_ATTRS: Final = frozenset({"original", "parent"})
_ATTR_ALIASES: Final = {"version": "number"}
_KINDS_BY_TARGET: Final[dict[str, frozenset[str]]] = {
    "models": frozenset({"attr", "tag", "meta"}),
    "versions": frozenset({"attr", "tag", "metric", "param", "meta"}),
}
_PREFIXES: Final[dict[str, FieldKind]] = {
    "tags": "tag",
    "tag": "tag",
    "metrics": "metric",
    "metric": "metric",
    "params": "param",
    "param": "param",
    "metadata": "meta",
    "meta": "meta",
}
_TEXT_ATTRS: Final = frozenset(
    ["name", "namespace", "description", "framework", "format", "run_id", "relation"]
)
_TIME_ATTRS: Final = frozenset({"created", "updated"})
_ORDERED_OPS: Final = frozenset({"=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN"})
_EQUALITY_OPS: Final = frozenset({"=", "!=", "IN", "NOT IN"})
_KEYWORDS: Final = frozenset({"AND", "OR", "NOT", "IN", "LIKE", "ILIKE", "TRUE", "FALSE", "EXISTS"})

# -- tokenizer ---------------------------------------------------------------

TokenKind = Literal["word", "string", "bquote", "number", "op", "(", ")", ",", "eof"]

# Words run over key characters so that ``tags.team/sub:x`` is one token, split
# at its first dot by the parser. They must start with a letter or underscore so
# numbers and words never overlap.
_WORD_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]*")
_NUMBER_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_OP_RE: Final = re.compile(r"==|!=|<>|<=|>=|=|<|>")
_OP_CANON: Final = {"==": "=", "<>": "!="}
_PUNCT: Final[dict[str, TokenKind]] = {"(": "(", ")": ")", ",": ","}
_NUMBER_TAIL: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.")
# Longest integer literal we turn into an int; beyond this it cannot fit in 64
# bits anyway, and Python's int() refuses very long digit strings.
_MAX_INT_DIGITS: Final = 20


@dataclass(frozen=True, slots=True)
class _Token:
    kind: TokenKind
    text: str  # as written
    value: str | int | float  # decoded (strings unescaped, numbers parsed)
    pos: int
    end: int


def _fail(code: str, message: str, pos: int, **details: object) -> NoReturn:
    raise InvalidInput(
        f"{message} (at position {pos})", code=code, details={"position": pos, **details}
    )


def _short(value: object) -> str:
    """repr() cut to a readable length for error messages (values can be 10,000 chars)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bad_char(c: str) -> bool:
    # NUL is refused by PostgreSQL text and lone surrogates cannot be encoded to
    # UTF-8 for the database: refuse both up front instead of failing in SQL.
    return c == "\x00" or unicodedata.category(c) == "Cs"


def _tokenize(text: str, code: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if _bad_char(c):
            _fail(code, "NUL and surrogate characters are not allowed", i)
        if c in _PUNCT:
            tokens.append(_Token(_PUNCT[c], c, c, i, i + 1))
            i += 1
            continue
        if c in "'\"":
            tokens.append(_string(text, i, code))
            i = tokens[-1].end
            continue
        if c == "`":
            close = text.find("`", i + 1)
            if close < 0:
                _fail(code, "unterminated back-quoted key", i)
            body = text[i + 1 : close]
            if any(_bad_char(ch) for ch in body):
                _fail(code, "NUL and surrogate characters are not allowed", i)
            tokens.append(_Token("bquote", text[i : close + 1], body, i, close + 1))
            i = close + 1
            continue
        m = _OP_RE.match(text, i)
        if m:
            op = _OP_CANON.get(m.group(), m.group())
            tokens.append(_Token("op", m.group(), op, i, m.end()))
            i = m.end()
            continue
        m = _WORD_RE.match(text, i)
        if m:
            tokens.append(_Token("word", m.group(), m.group(), i, m.end()))
            i = m.end()
            continue
        m = _NUMBER_RE.match(text, i)
        if m:
            tokens.append(_number(m.group(), i, code))
            i = m.end()
            if i < n and text[i] in _NUMBER_TAIL:
                _fail(code, f"malformed number {_short(text[m.start() : i + 1])}", m.start())
            continue
        _fail(code, f"unexpected character {c!r}", i, found=c)
    tokens.append(_Token("eof", "", "", n, n))
    return tokens


def _string(text: str, start: int, code: str) -> _Token:
    quote = text[start]
    out: list[str] = []
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == quote:
            return _Token("string", text[start : i + 1], "".join(out), start, i + 1)
        if c == "\\":
            if i + 1 >= n:
                break
            nxt = text[i + 1]
            if nxt in "'\"\\":
                out.append(nxt)
            elif nxt in "%_":
                out.append("\\" + nxt)  # kept for LIKE, see the module docstring
            else:
                _fail(code, f"invalid escape \\{nxt} in string; write \\\\ for a backslash", i)
            i += 2
            continue
        if _bad_char(c):
            _fail(code, "NUL and surrogate characters are not allowed", i)
        out.append(c)
        i += 1
    _fail(code, "unterminated string", start)


def _number(lexeme: str, pos: int, code: str) -> _Token:
    end = pos + len(lexeme)
    if not any(ch in lexeme for ch in ".eE"):
        if len(lexeme.lstrip("+-")) > _MAX_INT_DIGITS:
            _fail(code, f"number {lexeme[:30]!r} is out of range", pos)
        value = int(lexeme)
        if not _INT64_MIN <= value <= _INT64_MAX:
            _fail(code, f"number {lexeme!r} is out of range", pos)
        return _Token("number", lexeme, value, pos, end)
    f = float(lexeme)
    if not math.isfinite(f):
        _fail(code, f"number {lexeme[:30]!r} is out of range", pos)
    return _Token("number", lexeme, f, pos, end)


# -- parser ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Lit:
    """A literal as written, before the field decides what it means."""

    kind: Literal["string", "number", "bool"]
    value: str | int | float | bool
    pos: int


class _Parser:
    def __init__(self, text: str, target: Target, code: str) -> None:
        if target not in _KINDS_BY_TARGET:
            raise ValueError(f"unknown search target {target!r}")
        self.target: Target = target
        self.code = code
        self.tokens = _tokenize(text, code)
        self.i = 0
        self.depth = 0
        self.comparisons = 0

    # token helpers

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def is_keyword(self, word: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind == "word" and tok.text.upper() == word

    def fail(self, message: str, pos: int, **details: object) -> NoReturn:
        _fail(self.code, message, pos, **details)

    def unexpected(self, expected: str) -> NoReturn:
        tok = self.peek()
        found = "end of filter" if tok.kind == "eof" else _short(tok.text)
        self.fail(f"expected {expected}, found {found}", tok.pos, found=tok.text[:80])

    def enter(self, pos: int) -> None:
        # Bounded here, long before Python's recursion limit (each level costs
        # four frames), so no RecursionError can escape.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"filter nests deeper than {MAX_DEPTH} levels", pos)

    # grammar

    def parse(self) -> Node:
        node = self.parse_or()
        if self.peek().kind != "eof":
            self.unexpected("AND, OR or the end of the filter")
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.is_keyword("OR"):
            self.advance()
            items.append(self.parse_and())
        return _join(Or, items)

    def parse_and(self) -> Node:
        items = [self.parse_not()]
        while self.is_keyword("AND"):
            self.advance()
            items.append(self.parse_not())
        return _join(And, items)

    def parse_not(self) -> Node:
        if self.is_keyword("NOT"):
            tok = self.advance()
            self.enter(tok.pos)
            item = self.parse_not()
            self.depth -= 1
            return Not(item)
        return self.parse_primary()

    def parse_primary(self) -> Node:
        tok = self.peek()
        if tok.kind == "(":
            self.advance()
            self.enter(tok.pos)
            node = self.parse_or()
            if self.peek().kind != ")":
                self.unexpected("')'")
            self.advance()
            self.depth -= 1
            return node
        return self.parse_comparison()

    def parse_comparison(self) -> Comparison:
        field, field_pos = self.parse_field()
        op_tok = self.peek()
        op: str
        if self.is_keyword("EXISTS"):
            self.advance()
            self.comparisons += 1
            if self.comparisons > MAX_COMPARISONS:
                self.fail(f"filter has more than {MAX_COMPARISONS} comparisons", field_pos)
            if field.kind == "attr" and field.key not in PRESENCE_ATTRS:
                self.fail(
                    f"EXISTS cannot be used with {field.key}; it applies to tags.*, "
                    "metrics.*, params.*, meta.* and " + ", ".join(sorted(PRESENCE_ATTRS)),
                    op_tok.pos,
                    field=field.key,
                )
            return Comparison(field, "EXISTS", True)
        if op_tok.kind == "op":
            op = str(self.advance().value)
        elif self.is_keyword("LIKE") or self.is_keyword("ILIKE") or self.is_keyword("IN"):
            op = self.advance().text.upper()
        elif self.is_keyword("NOT") and self.is_keyword("IN", 1):
            self.advance()
            self.advance()
            op = "NOT IN"
        else:
            self.unexpected(
                "a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, EXISTS)"
            )
        lits = self.parse_list() if op in ("IN", "NOT IN") else [self.parse_value()]
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            self.fail(f"filter has more than {MAX_COMPARISONS} comparisons", field_pos)
        value = _typed(field, op, lits, op_tok.pos, self.code)
        return Comparison(field, op, value)

    def parse_field(self) -> tuple[Field, int]:
        tok = self.peek()
        if tok.kind != "word" or tok.text.upper() in _KEYWORDS:
            self.unexpected("a field name")
        self.advance()
        head, dot, rest = tok.text.partition(".")
        if not dot:
            attr = _ATTR_ALIASES.get(head.lower(), head.lower())
            allowed = _MODEL_ATTRS if self.target == "models" else _VERSION_ATTRS
            if attr not in allowed:
                self.fail(
                    f"unknown field {_short(tok.text)} for {self.target}; fields are "
                    + ", ".join(sorted(allowed))
                    + (
                        ", tags.*, meta.*"
                        if self.target == "models"
                        else ", tags.*, metrics.*, params.*, meta.*"
                    ),
                    tok.pos,
                    field=tok.text[:80],
                )
            return Field("attr", attr), tok.pos
        kind = _PREFIXES.get(head.lower())
        if kind is None:
            self.fail(f"unknown field prefix {_short(head)}", tok.pos, field=tok.text[:80])
        if kind not in _KINDS_BY_TARGET[self.target]:
            self.fail(
                f"{head}.* cannot be used to search {self.target}", tok.pos, field=tok.text[:80]
            )
        key = self.parse_key(tok, rest, kind)
        return Field(kind, key), tok.pos

    def parse_key(self, tok: _Token, rest: str, kind: FieldKind) -> str:
        nxt = self.peek()
        quoted = nxt.kind == "bquote" or (nxt.kind == "string" and nxt.text.startswith('"'))
        if rest == "" and quoted and nxt.pos == tok.end:
            self.advance()
            key = str(nxt.value)
            if not key or len(key) > MAX_QUOTED_KEY_LENGTH:
                self.fail(
                    f"quoted {kind} key must be 1-{MAX_QUOTED_KEY_LENGTH} characters", nxt.pos
                )
            return key
        try:
            return validate_key(rest, kind=kind)
        except InvalidInput:
            self.fail(
                f"invalid {kind} key {_short(rest)}: use letters, digits, '_', '.', ':', '/', '-' "
                "or quote it with back-quotes",
                tok.pos + len(tok.text) - len(rest),
                field=tok.text[:80],
            )

    def parse_list(self) -> list[_Lit]:
        if self.peek().kind != "(":
            self.unexpected("'(' to start the IN list")
        self.advance()
        items = [self.parse_value()]
        while self.peek().kind == ",":
            self.advance()
            items.append(self.parse_value())
        if self.peek().kind != ")":
            self.unexpected("',' or ')' in the IN list")
        self.advance()
        return items

    def parse_value(self) -> _Lit:
        tok = self.peek()
        if tok.kind == "string":
            self.advance()
            return _Lit("string", str(tok.value), tok.pos)
        if tok.kind == "number":
            self.advance()
            return _Lit("number", tok.value, tok.pos)
        if self.is_keyword("TRUE") or self.is_keyword("FALSE"):
            self.advance()
            return _Lit("bool", tok.text.upper() == "TRUE", tok.pos)
        self.unexpected("a value (a quoted string, a number, true or false)")


def _join(cls: type[And] | type[Or], items: list[Node]) -> Node:
    if len(items) == 1:
        return items[0]
    flat: list[Node] = []
    for item in items:
        # (a AND b) AND c is a AND b AND c: keep the tree shallow for the compiler.
        flat.extend(item.items if isinstance(item, cls) else (item,))
    return cls(tuple(flat))


# -- typing of values --------------------------------------------------------


def _describe(field: Field) -> str:
    return field.key if field.kind == "attr" else f"{field.kind}s.{field.key}"


def _typed(field: Field, op: str, lits: list[_Lit], op_pos: int, code: str) -> Value:
    """Check ``op`` and the literals against the field and convert them."""
    name = _describe(field)
    key = field.key

    def need(ops: frozenset[str]) -> None:
        if op not in ops:
            _fail(code, f"operator {op} cannot be used with {name}", op_pos, field=name)

    def bad(lit: _Lit, what: str) -> NoReturn:
        _fail(code, f"{name} needs {what}, got {lit.kind} {_short(lit.value)}", lit.pos, field=name)

    if field.kind in ("tag", "param") or (field.kind == "attr" and key in _TEXT_ATTRS):

        def convert(lit: _Lit) -> Scalar:
            if lit.kind != "string":
                bad(lit, "a quoted string")
            return _like_checked(str(lit.value), op, lit.pos, code)

    elif field.kind == "metric":
        need(_ORDERED_OPS)

        def convert(lit: _Lit) -> Scalar:
            if lit.kind != "number":
                bad(lit, "a number")
            return float(lit.value)

    elif field.kind == "meta":

        def convert(lit: _Lit) -> Scalar:
            if op in ("LIKE", "ILIKE") and lit.kind != "string":
                bad(lit, f"a quoted string for {op}")
            if lit.kind == "bool":
                if op not in _EQUALITY_OPS:
                    bad(lit, f"a string or a number for {op}")
                return "true" if lit.value else "false"
            if lit.kind == "number":
                return float(lit.value)
            return _like_checked(str(lit.value), op, lit.pos, code)

    elif key in _TIME_ATTRS:
        need(_ORDERED_OPS)

        def convert(lit: _Lit) -> Scalar:
            return _timestamp(lit, name, code)

    elif key == "number":
        need(_ORDERED_OPS)

        def convert(lit: _Lit) -> Scalar:
            if (
                lit.kind != "number"
                or not isinstance(lit.value, int)
                or isinstance(lit.value, bool)
            ):
                bad(lit, "an integer")
            if not _INT32_MIN <= lit.value <= _INT32_MAX:
                _fail(code, f"version number {lit.value} is out of range", lit.pos)
            return lit.value

    elif key == "state":
        need(_EQUALITY_OPS)

        def convert(lit: _Lit) -> Scalar:
            state = str(lit.value).lower()
            if lit.kind != "string" or state not in VERSION_STATES:
                bad(lit, "one of " + ", ".join(sorted(VERSION_STATES)))
            return state

    elif key == "signature":
        _fail(code, "signature can only be tested with EXISTS", op_pos, field=name)

    elif key in LINEAGE_ATTRS:
        need(_EQUALITY_OPS)

        def convert(lit: _Lit) -> Scalar:
            if lit.kind != "string":
                bad(lit, "a quoted version reference 'namespace/name/number'")
            return _version_ref(str(lit.value), name, lit.pos, code)

    elif key == "archived":
        need(frozenset({"=", "!="}))

        def convert(lit: _Lit) -> Scalar:
            if lit.kind == "bool":
                return bool(lit.value)
            if lit.kind == "string" and str(lit.value).lower() in ("true", "false"):
                return str(lit.value).lower() == "true"
            bad(lit, "true or false")

    else:  # pragma: no cover - every allowed attribute is handled above
        raise AssertionError(f"unhandled field {field!r}")

    values = tuple(convert(lit) for lit in lits)
    if field.kind == "meta" and len({isinstance(v, str) for v in values}) > 1:
        _fail(code, f"{name} IN list mixes strings and numbers", lits[0].pos, field=name)
    return values if op in ("IN", "NOT IN") else values[0]


def _version_ref(text: str, name: str, pos: int, code: str) -> str:
    """A lineage value: exactly ``namespace/name/number`` (canonical spelling)."""
    try:
        ref = parse_reference(text)
    except InvalidInput as exc:
        _fail(code, f"{name} needs a version reference: {exc.message}", pos, field=name)
    if ref.version is None or text.count("/") != 2:
        _fail(
            code,
            f"{name} needs a full version reference 'namespace/name/number', got {_short(text)}",
            pos,
            field=name,
        )
    return str(ref)


def _like_checked(value: str, op: str, pos: int, code: str) -> str:
    """Refuse LIKE patterns whose escapes the databases would read differently."""
    if op in ("LIKE", "ILIKE"):
        i = 0
        while i < len(value):
            if value[i] == "\\":
                if i + 1 >= len(value) or value[i + 1] not in "%_\\":
                    _fail(
                        code,
                        "in a LIKE pattern a backslash must be followed by %, _ or a backslash",
                        pos,
                    )
                i += 2
            else:
                i += 1
    return value


def _timestamp(lit: _Lit, name: str, code: str) -> int:
    """ISO-8601 text (naive = UTC) or epoch seconds -> integer microseconds."""
    if lit.kind == "number":
        seconds = lit.value
        # Integers stay exact; floats are rounded to the microsecond.
        micros = (
            seconds * 1_000_000 if isinstance(seconds, int) else round(float(seconds) * 1_000_000)
        )
    elif lit.kind == "string":
        try:
            dt = datetime.fromisoformat(str(lit.value).strip())
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            delta = dt.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        except (ValueError, OverflowError):
            _fail(
                code,
                f"{name} needs an ISO-8601 time such as '2026-01-02' or "
                f"'2026-01-02T03:04:05Z', or epoch seconds; got {_short(lit.value)}",
                lit.pos,
                field=name,
            )
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    else:
        _fail(code, f"{name} needs a time, got {_short(lit.value)}", lit.pos, field=name)
    if not _INT64_MIN <= micros <= _INT64_MAX:
        _fail(code, f"{name} time is out of range", lit.pos, field=name)
    return micros


# -- public entry points -----------------------------------------------------


def parse_filter(text: str | None, target: Target) -> Node | None:
    """Parse a filter for ``target`` ("models" or "versions"); empty text gives ``None``.

    Raises :class:`InvalidInput` with code ``INVALID_FILTER`` and
    ``details["position"]`` (0-based character offset) for every problem, and
    never anything else, whatever the text.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidInput("filter must be a string", code=FILTER_CODE, details={"position": 0})
    if len(text) > MAX_FILTER_LENGTH:
        _fail(
            FILTER_CODE, f"filter is longer than {MAX_FILTER_LENGTH} characters", MAX_FILTER_LENGTH
        )
    if not text.strip():
        return None
    return _parse_cached(text, target)


@functools.lru_cache(maxsize=512)
def _parse_cached(text: str, target: Target) -> Node | None:
    # Nodes are frozen, so one parse can serve every request with the same
    # text: parsing was a seventh of a cached search page's CPU time
    # (cProfile). Errors are raised, never cached.
    return _Parser(text, target, FILTER_CODE).parse()


def all_of(*nodes: Node | None) -> Node | None:
    """AND of ``nodes`` as one flat conjunction, skipping None (None if nothing is left).

    ``all_of(a AND b, c)`` is ``a AND b AND c``, never ``(a AND b) AND c``:
    the store chooses its plan from the top-level terms of a conjunction
    (the rarest indexed one drives), so a filter narrowed by authorization
    must keep the user's terms at the top, where an admin's are.
    """
    items = [n for n in nodes if n is not None]
    if not items:
        return None
    return flatten(_join(And, items))


def flatten(node: Node | None) -> Node | None:
    """``node`` with every AND directly inside an AND (and OR inside OR) merged
    into its parent; the same meaning, the shape the store plans from."""
    if node is None or isinstance(node, Comparison):
        return node
    if isinstance(node, And | Or):
        items: list[Node] = []
        for item in node.items:
            flat = flatten(item)
            assert flat is not None
            items.append(flat)
        return _join(type(node), items)
    if isinstance(node, Not):
        inner = flatten(node.item)
        assert inner is not None
        return node if inner is node.item else Not(inner)
    inner = flatten(node.item)
    assert inner is not None
    return node if inner is node.item else AnyVersion(inner)


def parse_order_by(text: str | None, target: Target) -> OrderBy:
    """Parse ``field [ASC|DESC]``; ``None`` or blank gives ``created DESC``.

    Fields: ``created``, ``updated``, ``name`` and, for versions, ``number``
    (alias ``version``) and ``metrics.KEY``. Without a direction the sort is
    ascending, as in SQL. Errors are :class:`InvalidInput` with code
    ``INVALID_ORDER_BY``.
    """
    if text is None:
        return DEFAULT_ORDER
    if not isinstance(text, str):
        raise InvalidInput("order_by must be a string", code=ORDER_BY_CODE, details={"position": 0})
    if len(text) > MAX_ORDER_BY_LENGTH:
        _fail(ORDER_BY_CODE, "order_by is too long", MAX_ORDER_BY_LENGTH)
    if not text.strip():
        return DEFAULT_ORDER
    p = _Parser(text, target, ORDER_BY_CODE)
    tok = p.peek()
    allowed = ["created", "updated", "name"]
    if target == "versions":
        allowed += ["number", "metrics.KEY"]
    hint = "order_by must be one of " + ", ".join(allowed) + ", optionally followed by ASC or DESC"
    if tok.kind != "word":
        p.fail(hint, tok.pos)
    head, dot, rest = tok.text.partition(".")
    field: Field
    if not dot:
        attr = _ATTR_ALIASES.get(head.lower(), head.lower())
        if attr not in ("created", "updated", "name") and not (
            target == "versions" and attr == "number"
        ):
            p.fail(f"cannot sort by {_short(tok.text)}: {hint}", tok.pos, field=tok.text[:80])
        p.advance()
        field = Field("attr", attr)
    else:
        if target != "versions" or _PREFIXES.get(head.lower()) != "metric":
            p.fail(f"cannot sort by {_short(tok.text)}: {hint}", tok.pos, field=tok.text[:80])
        p.advance()
        field = Field("metric", p.parse_key(tok, rest, "metric"))
    descending = False
    if p.is_keyword("DESC") or p.is_keyword("ASC"):
        descending = p.advance().text.upper() == "DESC"
    if p.peek().kind != "eof":
        p.unexpected("ASC, DESC or the end of order_by")
    return OrderBy(field, descending)
