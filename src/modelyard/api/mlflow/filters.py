"""MLflow's registry search grammar, translated into modelyard's filter nodes.

MLflow's ``search_registered_models`` / ``search_model_versions`` take a
conjunction of comparisons (no OR, no parentheses except ``IN`` lists)::

    filter     := comparison ( AND comparison )*
    comparison := identifier op value | identifier [NOT] IN "(" value ("," value)* ")"
    identifier := [ (attribute|attributes|attr) "." ] key      an attribute
                | (tag|tags) "." key                           a tag
    key        := word | `any text` | "any text"
    value      := 'text' | "text" | integer

Attributes: models have ``name``; versions have ``name`` (the model's),
``version_number``, ``run_id`` and ``source_path`` (the version's recorded
MLflow source, kept in its metadata under ``mlflow.source``). Tags take
``=``, ``!=``, ``LIKE``, ``ILIKE``; text attributes those and ``IN`` /
``NOT IN``; ``version_number`` the ordered comparisons.

Each comparison becomes one :class:`~modelyard.domain.filters.Comparison`
on the field modelyard indexes for it, so an MLflow search runs the same
plans as a REST v1 one. Semantics follow MLflow's: ``tags.k != 'v'`` needs
the tag present, except for ``mlflow.prompt.is_prompt``, which MLflow's
client adds to every model search (``!= 'true'``) and which models without
the tag satisfy. Whatever MLflow would accept but modelyard cannot express
(``OR``, a tag ``IN`` list, a LIKE escape the databases read differently, a
sort order with another tie-break) is refused with ``INVALID_PARAMETER_VALUE``
and says so; nothing is silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from modelyard.domain import filters as f
from modelyard.domain.errors import InvalidInput

Target = Literal["models", "versions"]
SOURCE_KEY: Final = "mlflow.source"
"""The version metadata key holding an MLflow version's ``source``."""
PROMPT_TAG: Final = "mlflow.prompt.is_prompt"
MAX_FILTER_LENGTH: Final = 10_000

_TOKEN: Final = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<str>'[^']*'|"[^"]*")
  | (?P<tick>`[^`]*`)
  | (?P<num>[+-]?\d+(?:\.\d+)?)
  | (?P<op>!=|<>|<=|>=|==|=|<|>)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][A-Za-z0-9_.\-:/]*)
    """,
    re.VERBOSE,
)
_TEXT_OPS: Final = frozenset({"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"})
_TAG_OPS: Final = frozenset({"=", "!=", "LIKE", "ILIKE"})
_NUMBER_OPS: Final = frozenset({"=", "!=", "<", "<=", ">", ">="})
_ATTR_PREFIXES: Final = frozenset({"attribute", "attributes", "attr"})
_TAG_PREFIXES: Final = frozenset({"tag", "tags"})
_ATTRS: Final[dict[str, dict[str, f.Field]]] = {
    "models": {"name": f.Field("attr", "name")},
    "versions": {
        "name": f.Field("attr", "name"),
        "run_id": f.Field("attr", "run_id"),
        "source_path": f.Field("meta", SOURCE_KEY),
        "version_number": f.Field("attr", "number"),
    },
}


def _bad(message: str, **details: object) -> InvalidInput:
    return InvalidInput(message, code="INVALID_FILTER", details=dict(details))


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _bad(
                f"Invalid filter '{text}': unexpected character {text[pos]!r} at {pos}",
                position=pos,
            )
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    out.append(_Tok("eof", "", len(text)))
    return out


class _Parser:
    def __init__(self, text: str, target: Target) -> None:
        self.text = text
        self.target = target
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def word(self, value: str) -> bool:
        tok = self.peek()
        return tok.kind == "word" and tok.text.upper() == value

    def fail(self, what: str) -> InvalidInput:
        tok = self.peek()
        got = tok.text or "the end"
        return _bad(
            f"Invalid filter '{self.text}': expected {what} at {tok.pos}, got {got!r}",
            position=tok.pos,
        )

    def parse(self) -> f.Node:
        items = [self.comparison()]
        while self.word("AND"):
            self.take()
            items.append(self.comparison())
        if self.word("OR"):
            raise _bad(
                f"Invalid filter '{self.text}': MLflow's registry search joins comparisons "
                "with AND only; OR is not supported",
                position=self.peek().pos,
            )
        if self.peek().kind != "eof":
            raise self.fail("AND or the end of the filter")
        return items[0] if len(items) == 1 else f.all_of(*items) or items[0]

    def identifier(self) -> tuple[str, str]:
        """(``attr`` or ``tag``, key)."""
        tok = self.take()
        if tok.kind == "tick":
            return "attr", tok.text[1:-1]
        if tok.kind != "word":
            self.i -= 1
            raise self.fail("an attribute or tags.<key>")
        head, dot, rest = tok.text.partition(".")
        if dot and not rest:
            # tags.`my key` / tags."my key": the key is the quoted token that follows.
            nxt = self.take()
            if nxt.kind not in ("tick", "str"):
                self.i -= 1
                raise self.fail("a key after '.'")
            rest = nxt.text[1:-1]
        if not dot:
            return "attr", tok.text
        prefix = head.lower()
        if prefix in _TAG_PREFIXES:
            return "tag", rest
        if prefix in _ATTR_PREFIXES:
            return "attr", rest
        raise _bad(
            f"Invalid entity type '{head}' in filter '{self.text}'. Valid entity types are "
            "attribute and tag",
            position=tok.pos,
        )

    def operator(self) -> str:
        tok = self.take()
        if tok.kind == "op":
            return {"==": "=", "<>": "!="}.get(tok.text, tok.text)
        if tok.kind == "word":
            upper = tok.text.upper()
            if upper in ("LIKE", "ILIKE", "IN"):
                return upper
            if upper == "NOT" and self.word("IN"):
                self.take()
                return "NOT IN"
        self.i -= 1
        raise self.fail("a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN)")

    def value(self) -> str | int:
        tok = self.take()
        if tok.kind == "str":
            return tok.text[1:-1]
        if tok.kind == "num":
            if "." in tok.text:
                raise _bad(f"Invalid filter '{self.text}': {tok.text} is not an integer")
            return int(tok.text)
        self.i -= 1
        raise self.fail("a quoted string or a number")

    def values(self) -> tuple[str | int, ...]:
        tok = self.take()
        if tok.text != "(":
            self.i -= 1
            raise self.fail("'(' opening the IN list")
        items = [self.value()]
        while self.peek().text == ",":
            self.take()
            items.append(self.value())
        if self.take().text != ")":
            self.i -= 1
            raise self.fail("',' or ')' in the IN list")
        return tuple(items)

    def comparison(self) -> f.Node:
        kind, key = self.identifier()
        op = self.operator()
        raw: str | int | tuple[str | int, ...] = (
            self.values() if op in ("IN", "NOT IN") else self.value()
        )
        if kind == "tag":
            return _tag(self.text, key, op, raw)
        field = _ATTRS[self.target].get(key)
        if field is None:
            valid = ", ".join(sorted(_ATTRS[self.target]))
            raise _bad(
                f"Invalid attribute key '{key}' specified. Valid keys are {valid}",
                key=key[:100],
            )
        if field.key == "number":
            if op not in _NUMBER_OPS or not _all_ints(raw):
                raise _bad(
                    f"Invalid filter '{self.text}': version_number takes an integer and one "
                    "of =, !=, <, <=, >, >="
                )
            return f.Comparison(field, op, raw)
        if op not in _TEXT_OPS or not _all_strs(raw):
            raise _bad(
                f"Invalid filter '{self.text}': {key} takes a quoted string and one of "
                "=, !=, LIKE, ILIKE, IN, NOT IN"
            )
        _check_like(self.text, op, raw)
        return f.Comparison(field, op, raw)


def _all_ints(raw: object) -> bool:
    items = raw if isinstance(raw, tuple) else (raw,)
    return all(isinstance(x, int) for x in items)


def _all_strs(raw: object) -> bool:
    items = raw if isinstance(raw, tuple) else (raw,)
    return all(isinstance(x, str) for x in items)


def _check_like(text: str, op: str, raw: object) -> None:
    """Refuse LIKE escapes the two databases would read differently."""
    if op not in ("LIKE", "ILIKE") or not isinstance(raw, str):
        return
    i = 0
    while i < len(raw):
        if raw[i] == "\\":
            if i + 1 >= len(raw) or raw[i + 1] not in "%_\\":
                raise _bad(
                    f"Invalid filter '{text}': in a LIKE pattern a backslash must be "
                    "followed by %, _ or a backslash"
                )
            i += 2
        else:
            i += 1


def _tag(text: str, key: str, op: str, raw: object) -> f.Node:
    if op not in _TAG_OPS or not isinstance(raw, str):
        raise _bad(
            f"Invalid filter '{text}': tags take a quoted string and one of =, !=, LIKE, ILIKE"
        )
    if not key:
        raise _bad(f"Invalid filter '{text}': empty tag key")
    _check_like(text, op, raw)
    field = f.Field("tag", key)
    if key == PROMPT_TAG and op in ("=", "!=") and raw in ("true", "false"):
        # MLflow counts a model without this tag as "not a prompt".
        is_true = f.Comparison(field, "=", "true")
        if (op, raw) in (("!=", "true"), ("=", "false")):
            # != 'true': absent or any other value. = 'false': absent or 'false'.
            if op == "!=":
                return f.Not(is_true)
            return f.Or((f.Not(f.Comparison(field, "EXISTS", True)), f.Comparison(field, "=", raw)))
        if op == "!=":  # != 'false': present with another value
            return f.Comparison(field, "!=", raw)
        return is_true
    return f.Comparison(field, op, raw)


def translate_filter(text: str | None, target: Target) -> f.Node | None:
    """MLflow filter text as modelyard filter nodes (None for no filter).

    ``INVALID_FILTER`` (the door's ``INVALID_PARAMETER_VALUE``) for anything
    not in the grammar above."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_FILTER_LENGTH:
        raise _bad(f"filter is longer than {MAX_FILTER_LENGTH} characters")
    return _Parser(text, target).parse()


# -- order_by ----------------------------------------------------------------

_ORDER_KEYS: Final[dict[Target, dict[str, str]]] = {
    "models": {
        "name": "name",
        "creation_timestamp": "created",
        "timestamp": "created",
        "last_updated_timestamp": "updated",
    },
    "versions": {
        "name": "name",
        "version_number": "number",
        "creation_timestamp": "created",
        "last_updated_timestamp": "updated",
    },
}
DEFAULT_VERSION_ORDER: Final = ("last_updated_timestamp DESC",)
"""MLflow's default version order (then name ASC, version_number DESC)."""


def _order_item(text: str, target: Target) -> tuple[str, bool]:
    """(MLflow key, ascending) of one ``order_by`` entry."""
    parts = text.replace("`", " ").split()
    if not parts or len(parts) > 2:
        raise InvalidInput(
            f"Invalid order_by clause '{text}'. Could not be parsed.", code="INVALID_ORDER_BY"
        )
    key = parts[0]
    for prefix in ("attribute.", "attributes.", "attr."):
        if key.lower().startswith(prefix):
            key = key[len(prefix) :]
    if key not in _ORDER_KEYS[target]:
        valid = ", ".join(sorted(_ORDER_KEYS[target]))
        raise InvalidInput(
            f"Invalid order by key '{key}' specified. Valid keys are {valid}",
            code="INVALID_ORDER_BY",
        )
    ascending = True
    if len(parts) == 2:
        word = parts[1].upper()
        if word not in ("ASC", "DESC"):
            raise InvalidInput(
                f"Invalid ordering key in order_by clause '{text}'.", code="INVALID_ORDER_BY"
            )
        ascending = word == "ASC"
    return key, ascending


def _one_model(node: f.Node | None) -> bool:
    """True if the filter pins one model name (``name = '...'`` at its top level)."""
    items = node.items if isinstance(node, f.And) else (node,)
    return any(
        isinstance(x, f.Comparison) and x.field == f.Field("attr", "name") and x.op == "="
        for x in items
    )


def translate_order(order_by: list[str], target: Target, node: f.Node | None) -> str:
    """MLflow's ``order_by`` list as one modelyard sort key (``"updated DESC"``).

    MLflow sorts by the keys given, then by name ascending and (versions)
    version number descending. Modelyard sorts by one key, then by creation
    order in the same direction (by name: model, then version number). A list
    is accepted when both give the same order; rows whose timestamps are
    equal to the microsecond are the one exception (they follow creation
    order rather than name). Anything else is ``INVALID_PARAMETER_VALUE``
    naming an order that works.
    """
    items = [_order_item(x, target) for x in order_by]
    seen: set[str] = set()
    for key, _ in items:
        if key in seen:
            raise InvalidInput(
                f"`order_by` contains duplicate fields: {order_by}", code="INVALID_ORDER_BY"
            )
        seen.add(key)
    if not items:
        defaults = DEFAULT_VERSION_ORDER if target == "versions" else ()
        items = [_order_item(x, target) for x in defaults]
    if not items:
        return "name ASC"
    key, ascending = items[0]
    rest = items[1:]
    mapped = _ORDER_KEYS[target][key]
    direction = "ASC" if ascending else "DESC"
    if target == "versions":
        implied_version_asc = dict(rest).get("version_number", False)
        if key == "name" and implied_version_asc != ascending:
            raise _order_refused(
                order_by,
                "by name, modelyard orders a model's versions in the same direction as "
                "the names: use ['name ASC', 'version_number ASC'] or ['name DESC']",
            )
        if key == "name" and any(k not in ("version_number",) for k, _ in rest):
            raise _order_refused(order_by, "after name, only version_number may follow")
        if key == "version_number" and not _one_model(node):
            raise _order_refused(
                order_by,
                "versions of different models share numbers and MLflow breaks those ties "
                "by name; filter on one model (name = '...') or sort by name first",
            )
    # Model names are unique in the namespace: after name, later keys never apply.
    return f"{mapped} {direction}"


def _order_refused(order_by: list[str], why: str) -> InvalidInput:
    return InvalidInput(
        f"order_by {order_by} cannot be served as MLflow orders it: {why}",
        code="INVALID_ORDER_BY",
    )
