"""MLflow's run search grammar, parsed into plain clauses the store compiles.

A filter is clauses joined by ``AND`` (MLflow has no ``OR`` for runs)::

    metrics.rmse < 0.5 AND params.model = 'tree' AND tags.`team name` != 'x'
    attributes.status = 'FINISHED' AND attributes.run_id IN ('ab..', 'cd..')
    tags."mlflow.runName" LIKE 'lr-%'  AND  attributes.start_time >= 1700000000000

An identifier is ``<entity>.<key>``: the entity ``metrics`` / ``metric``,
``params`` / ``param`` / ``parameters`` / ``parameter``, ``tags`` / ``tag``,
``attributes`` / ``attribute`` / ``attr`` / ``run``; the key is the rest
(dots included) or one backticked or double-quoted name. Strings are in
single or double quotes; numbers compare metrics and time attributes.

Order strings: ``metrics.rmse DESC``, ``params.p``, ``attributes.start_time
ASC``, ``tags.t`` (ascending by default).

Anything else is ``INVALID_FILTER`` naming what is wrong: never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

from modelyard.domain.errors import InvalidInput

Entity = Literal["metric", "param", "tag", "attribute"]

_ENTITIES: Final[dict[str, Entity]] = {
    "metrics": "metric",
    "metric": "metric",
    "params": "param",
    "param": "param",
    "parameters": "param",
    "parameter": "param",
    "tags": "tag",
    "tag": "tag",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "run": "attribute",
}

# Run attributes that filters and orders may name, with their kind.
STRING_ATTRIBUTES: Final = frozenset({"run_id", "run_name", "status", "user_id", "artifact_uri"})
NUMERIC_ATTRIBUTES: Final = frozenset({"start_time", "end_time"})
_ATTRIBUTE_ALIASES: Final = {"created": "start_time", "Created": "start_time", "run_uuid": "run_id"}

# Experiments: attributes may be named bare (``name LIKE 'x%'``), as MLflow allows.
EXPERIMENT_STRING_ATTRIBUTES: Final = frozenset({"name"})
EXPERIMENT_NUMERIC_ATTRIBUTES: Final = frozenset(
    {"creation_time", "last_update_time", "experiment_id"}
)

_COMPARE: Final = frozenset({"=", "!=", ">", ">=", "<", "<="})
_STRING_OPS: Final = frozenset({"=", "!=", "LIKE", "ILIKE"})
_LIST_OPS: Final = frozenset({"IN", "NOT IN"})

Value = str | float | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Clause:
    """``<entity>.<key> <op> <value>``; ``value`` is a float for numeric
    comparisons, a string, or a tuple of strings for ``IN`` / ``NOT IN``."""

    entity: Entity
    key: str
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class RunOrder:
    """One ``order_by`` term."""

    entity: Entity
    key: str
    ascending: bool


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<op><>|!=|>=|<=|=|>|<)
  | (?P<lp>\()
  | (?P<rp>\))
  | (?P<comma>,)
  | (?P<str>'[^']*'|"[^"]*")
  | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<ident>[A-Za-z_]\w*(?:\.(?:`[^`]*`|"[^"]*"|[\w.\-:/]+))?)
    """,
    re.VERBOSE,
)


def _fail(message: str, text: str) -> NoReturn:
    raise InvalidInput(
        f"invalid run filter: {message}", code="INVALID_FILTER", details={"filter": text[:1000]}
    )


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            _fail(f"unexpected character {text[pos]!r} at {pos}", text)
        pos = m.end()
        kind = m.lastgroup or ""
        if kind == "ws":
            continue
        out.append(_Tok(kind, m.group(0)))
    return out


def _known(experiments: bool) -> tuple[frozenset[str], frozenset[str]]:
    if experiments:
        return EXPERIMENT_STRING_ATTRIBUTES, EXPERIMENT_NUMERIC_ATTRIBUTES
    return STRING_ATTRIBUTES, NUMERIC_ATTRIBUTES


def _identifier(raw: str, text: str, experiments: bool = False) -> tuple[Entity, str]:
    strings, numbers = _known(experiments)
    if experiments and raw in strings | numbers:
        return "attribute", raw
    head, dot, rest = raw.partition(".")
    entity = _ENTITIES.get(head)
    if experiments and entity in ("metric", "param"):
        entity = None
    if entity is None or not dot or not rest:
        _fail(
            f"{raw!r} is not <metrics|params|tags|attributes>.<key> "
            "(quote keys with backticks or double quotes)",
            text,
        )
    if len(rest) >= 2 and rest[0] == rest[-1] and rest[0] in '`"':
        key = rest[1:-1]
    elif "`" in rest or '"' in rest:
        _fail(f"badly quoted key in {raw!r}", text)
    else:
        key = rest
    if not key:
        _fail(f"empty key in {raw!r}", text)
    if entity == "attribute":
        if not experiments:
            key = _ATTRIBUTE_ALIASES.get(key, key)
        if key not in strings | numbers:
            _fail(
                f"unknown attribute {key!r}; known: " + ", ".join(sorted(strings | numbers)), text
            )
    return entity, key


def _unquote(tok: _Tok) -> str:
    return tok.text[1:-1]


def parse_run_filter(text: str | None, *, experiments: bool = False) -> list[Clause]:
    """The clauses of an MLflow run filter (all must hold); ``[]`` for none.

    Time attributes are written in milliseconds (MLflow's unit) and come out
    in microseconds (ours). With ``experiments``: the experiment search
    grammar (attributes ``name``, ``creation_time``, ``last_update_time``,
    ``experiment_id``; tags).
    """
    if text is None or not text.strip():
        return []
    if len(text) > 10_000:
        _fail("longer than 10000 characters", text)
    toks = _tokens(text)
    clauses: list[Clause] = []
    i = 0
    while True:
        if i >= len(toks) or toks[i].kind != "ident":
            _fail("expected <entity>.<key> at the start of a clause", text)
        entity, key = _identifier(toks[i].text, text, experiments)
        i += 1
        if i >= len(toks):
            _fail(f"missing operator after {key!r}", text)
        tok = toks[i]
        word = tok.text.upper()
        if tok.kind == "op":
            op = "!=" if tok.text == "<>" else tok.text
            i += 1
        elif tok.kind == "ident" and word in ("LIKE", "ILIKE", "IN"):
            op = word
            i += 1
        elif tok.kind == "ident" and word == "NOT":
            if i + 1 < len(toks) and toks[i + 1].text.upper() == "IN":
                op = "NOT IN"
                i += 2
            else:
                _fail("NOT must be followed by IN", text)
        else:
            _fail(f"unknown operator {tok.text!r}", text)
        value: Value
        if op in _LIST_OPS:
            if i >= len(toks) or toks[i].kind != "lp":
                _fail(f"{op} needs a parenthesized list of strings", text)
            i += 1
            items: list[str] = []
            while True:
                if i >= len(toks) or toks[i].kind != "str":
                    _fail(f"{op} lists hold quoted strings", text)
                items.append(_unquote(toks[i]))
                i += 1
                if i < len(toks) and toks[i].kind == "comma":
                    i += 1
                    continue
                if i < len(toks) and toks[i].kind == "rp":
                    i += 1
                    break
                _fail(f"unclosed {op} list", text)
            value = tuple(items)
        else:
            if i >= len(toks) or toks[i].kind not in ("str", "num"):
                _fail(f"missing value after {key!r} {op}", text)
            vt = toks[i]
            i += 1
            value = _unquote(vt) if vt.kind == "str" else float(vt.text)
        clauses.append(_checked(entity, key, op, value, text, experiments))
        if i == len(toks):
            return clauses
        if toks[i].kind == "ident" and toks[i].text.upper() == "AND":
            i += 1
            continue
        if toks[i].kind == "ident" and toks[i].text.upper() == "OR":
            _fail("OR is not supported in run searches (MLflow neither)", text)
        _fail(f"expected AND, got {toks[i].text!r}", text)


def _checked(
    entity: Entity, key: str, op: str, value: Value, text: str, experiments: bool
) -> Clause:
    numbers = _known(experiments)[1]
    numeric = entity == "metric" or (entity == "attribute" and key in numbers)
    if numeric:
        if op not in _COMPARE:
            _fail(f"{op} does not apply to the number {key!r}", text)
        if not isinstance(value, float):
            _fail(f"{key!r} compares with a number, not {value!r}", text)
        if entity == "attribute" and key.endswith("_time"):
            value = value * 1000.0  # ms (MLflow) -> µs (modelyard)
        return Clause(entity, key, op, value)
    if op in _LIST_OPS:
        if not (entity == "attribute" and key == "run_id"):
            _fail(f"{op} applies to attributes.run_id only", text)
        return Clause(entity, key, op, value)
    if op not in _STRING_OPS:
        _fail(f"{op} does not apply to the string {key!r} (use =, !=, LIKE, ILIKE)", text)
    if not isinstance(value, str):
        _fail(f"{key!r} compares with a quoted string, not {value!r}", text)
    return Clause(entity, key, op, value)


_ORDER_RE = re.compile(r"^\s*(?P<ident>.+?)(?:\s+(?P<dir>ASC|DESC))?\s*$", re.IGNORECASE)


def parse_run_order(terms: list[str] | None, *, experiments: bool = False) -> list[RunOrder]:
    """The ``order_by`` strings of a run (or experiment) search, in precedence order."""
    out: list[RunOrder] = []
    for term in terms or []:
        if not isinstance(term, str) or len(term) > 1000:
            _fail(f"invalid order_by {term!r}", str(term))
        m = _ORDER_RE.match(term)
        if m is None:
            _fail(f"invalid order_by {term!r}", term)
        entity, key = _identifier(m.group("ident").strip(), term, experiments)
        direction = (m.group("dir") or "ASC").upper()
        out.append(RunOrder(entity, key, direction == "ASC"))
    return out
