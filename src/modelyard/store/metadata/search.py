"""Search: compile a filter AST (``domain/filters.py``) to SQL and page it by keyset.

SQLAlchemy Core only; the same statements run on SQLite and PostgreSQL.

Shape of a versions query (default order)::

    SELECT versions.id, versions.created_at FROM versions
    WHERE EXISTS (SELECT 1 FROM version_tags AS t
                  WHERE t.version_id = versions.id AND t.key = :k AND t.value = :v)
      AND EXISTS (SELECT 1 FROM version_metrics AS m
                  WHERE m.version_id = versions.id AND m.key = :k2 AND m.value >= :v2)
      AND versions.created_at <= :c AND (versions.created_at < :c OR versions.id < :id)
    ORDER BY versions.created_at DESC, versions.id DESC
    LIMIT :limit + 1

Pages are keyset pages, never OFFSET: the cursor holds the last row's sort
values and id, and the next page starts strictly after them. We fetch one row
more than asked to learn whether another page exists.

Query plans, as measured (SQLite 3.40.1 ``EXPLAIN QUERY PLAN``, no ANALYZE
statistics; 1,000,000 versions of 1,000 models, 2 tags and 2 metrics each; pages
of 100):

- ``tags.team = 'team3' AND metrics.accuracy >= 0.5``, default order:
  ``SCAN versions USING COVERING INDEX ix_versions_created_at_id`` (backwards,
  no temp B-tree) with two ``CORRELATED SCALAR SUBQUERY`` probes, each ``SEARCH
  ... USING INDEX sqlite_autoindex_version_tags_1 (version_id=? AND key=?)``:
  one primary-key lookup per candidate row (for a per-row probe the
  ``(version_id, key)`` primary key beats the ``(key, value, version_id)``
  index; the latter drives ``ORDER BY metrics.KEY`` below and PostgreSQL's
  semi-joins). Later pages start with ``SEARCH versions USING COVERING INDEX
  ix_versions_created_at_id (created_at<?)``. 5-10 ms a page, first or 20th.
  The walk stops after ``limit + 1`` matches, so a page costs about
  ``limit / selectivity`` probes; the price is paid by filters matching almost
  nothing (10 rows in 1M: the walk covers the whole index, 0.5-1 s). We accept
  that over driving from the key/value index and sorting every match, which
  costs time proportional to all matches on *every* page.
- Without statistics SQLite takes any equality on an indexed column as
  selective: ``state = 'ready'`` became ``SEARCH versions USING INDEX
  ix_versions_state_id`` + ``USE TEMP B-TREE FOR ORDER BY`` (0.6 s a page) and
  the ``namespace`` argument, as a join, drove from the namespace (5-8 s a
  page). Hence ``walk_only`` and the ``model_id IN (subquery)`` form: now both
  walk the created index (2-7 ms a page), the subquery built once per query
  (``LIST SUBQUERY``). Only ``name = / IN`` may drive (one model's versions,
  then a small sort: ~5 ms).
- A ``key = value`` term on a version tag, param, metric or text metadata
  that matches too many versions to fetch and sort (see ``_rare_driver``):
  ``SEARCH walk USING COVERING INDEX ix_version_tags_key_value (key=? AND
  value=?)`` (the index is ``(key, value, created_at, version_id)``, so its
  entries for one value are already in the default order), then ``SEARCH
  versions USING INTEGER PRIMARY KEY`` and the other terms' probes. Only that
  value's versions are visited: ``tags.team = 'team-7' AND metrics.accuracy
  >= 0.9`` (0.1% of 1M) no longer walks ~100,000 versions for a page.
- ``ORDER BY metrics.KEY``: ``SEARCH sort_metric USING COVERING INDEX
  ix_version_metrics_key_value (key=?)`` drives in sort order, no temp
  B-tree; ~10 ms a page. A key/value term too common to drive but matching
  at most ~sqrt(10 * page * versions) versions (a 1% tag at 1M) is tested on
  each walked entry as ``+sort_metric.version_id IN (LIST SUBQUERY)``, an
  in-memory B-tree built once, instead of a correlated probe plus a fetch of
  the version row: ``tags.team = 'team-7' ORDER BY metrics.accuracy DESC``
  walks ~10,000 entries a page for 1% hits (93 ms -> 7 ms CPU at 250k
  versions). See ``_listable``.
- ``ORDER BY name``: ``SCAN models USING COVERING INDEX ix_models_name`` then
  ``SEARCH versions USING COVERING INDEX sqlite_autoindex_versions_1
  (model_id=?)``, no temp B-tree (the sort is name, model id, number for that
  reason); 5-30 ms a page.
- Not indexed today, so sorting all matches: versions by ``updated`` or
  ``number``, models by ``created``/``updated`` (models are few).

PostgreSQL 15 on the same data, after ANALYZE, plans the ``EXISTS`` as
(semi-)joins and mostly chooses well by itself, but not for a ``key = value``
term matching many versions under the created order: it read all of the
value's rows and sorted them (``tags.env = 'prod'``, 33%: 690 ms a page; with
a metric condition at 0.1%: 160 ms). It gets the same in-order walk as SQLite
(26 ms and 44 ms), without the rare-term driver, which measured no better
there (4x worse for a model-name term).

Two PostgreSQL shapes needed more (EXPLAIN ANALYZE at 200,000 versions):
``metrics.accuracy >= 0.999`` alone is estimated from the histogram of every
metric's values together (half the rows, not 0.1%), so it hashed every
version (825 ms); its ids are now fetched while counting and the query drives
from ``versions.id = ANY(:ids)`` (2 ms). At 1M versions that still looked up,
probed and sorted all 1,000 matches (7,970 buffers a page, p95 28-50 ms), so
the matches come with their ``created_at`` (the same index) and a page tries
the first ``2 * (limit + 1)`` of them in its own order (1,609 buffers; see
``_page_from_ids``); SQLite does the same with ``versions.id IN (...)``
(CPU p50 13-15 -> 10-13 ms, in-process, loaded machine). ``tags.team = 'team-7' ORDER BY
metrics.accuracy DESC`` fetched the tag's versions and sorted them (84 ms at
200k, 274 ms p95 at 1M); the tag is now ``(version_id IN (...)) IS TRUE``, a
hashed subplan the metric's index walk checks in order (3-10 ms). Search
transactions run without parallel workers (see ``_no_parallel_workers``).
Neither needed a new index: the ``(key, value, created_at, version_id)``
indexes of migration 0005 serve both.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import json
import math
import operator
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import operators
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.selectable import NamedFromClause

from modelyard.domain.errors import InvalidInput
from modelyard.domain.filters import (
    And,
    AnyVersion,
    Comparison,
    Field,
    Node,
    Not,
    Or,
    OrderBy,
    flatten,
)
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.prepared import Prepared

CURSOR_CODE = "INVALID_CURSOR"
MAX_CURSOR_LENGTH = 2048
# Bump when the cursor layout or the meaning of a sort changes: old cursors
# then fail cleanly with INVALID_CURSOR instead of landing somewhere odd.
_CURSOR_FORMAT = 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

Target = Literal["models", "versions"]
_SortKind = Literal["int", "str", "float"]

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

# Attribute -> column, per target. Nullable ones get an IS NOT NULL guard (see
# _Compiler.attr) so that every comparison is two-valued.
_VERSION_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "number": t.versions.c.number,
    "state": t.versions.c.state,
    "framework": t.versions.c.framework,
    "format": t.versions.c.format,
    "description": t.versions.c.description,
    "created": t.versions.c.created_at,
    "updated": t.versions.c.updated_at,
    "run_id": t.versions.c.source_run,
    "relation": t.versions.c.relation,
    # Only for EXISTS; comparisons take a reference (see _Compiler.lineage).
    "original": t.versions.c.original_id,
    "parent": t.versions.c.parent_id,
}
_MODEL_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "name": t.models.c.name,
    "description": t.models.c.description,
    "archived": t.models.c.archived,
    "created": t.models.c.created_at,
    "updated": t.models.c.updated_at,
}
_NULLABLE = frozenset({"framework", "format", "run_id", "relation", "original", "parent"})
# Versions columns with an index but few distinct values (see walk_only).
_LOW_CARDINALITY = frozenset({"state", "framework", "relation"})
_KV_TABLES: dict[Target, dict[str, sa.Table]] = {
    "versions": {
        "tag": t.version_tags,
        "metric": t.version_metrics,
        "param": t.version_params,
        "meta": t.version_meta,
    },
    "models": {"tag": t.model_tags, "meta": t.model_meta},
}


# -- filter compilation -------------------------------------------------------


@functools.cache
def _alias(table: sa.Table, name: str) -> NamedFromClause:
    """The alias ``name`` of ``table``, built once per process.

    Building an alias builds a proxy for each of its columns: two fresh
    aliases a search were a third of a search page's Python time (py-spy
    under wrk). Alias objects are immutable, so statements can share them as
    long as no statement uses one name twice (see :meth:`_Compiler.alias`).
    """
    return table.alias(name)


class _Compiler:
    """Turns a filter AST into one WHERE clause for the versions or models query."""

    def __init__(
        self, target: Target, *, sqlite: bool, counts: dict[str, int] | None = None
    ) -> None:
        self.target: Target = target
        self.sqlite = sqlite
        # Aliases used so far in this statement, per table; shared with the
        # compilers of nested parts (AnyVersion) so every name is unique.
        self.counts: dict[str, int] = {} if counts is None else counts
        if target == "versions":
            self.owner_id: sa.ColumnElement[Any] = t.versions.c.id
            self.owner_fk = "version_id"
        else:
            self.owner_id = t.models.c.id
            self.owner_fk = "model_id"

    def sort_only(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """``column`` as a sort key no index may deliver, for a query driven by
        a short list of ids: those few rows are fetched and sorted.

        On SQLite this is :meth:`walk_only`. On PostgreSQL the driver is
        ``versions.id = ANY(ids)`` and, even with ``ANALYZE`` done, the planner
        preferred walking ``ix_versions_created_at_id`` backwards testing each
        entry against the array (1M versions, 1,000 ids: p50 35 ms, p95 112 ms
        on a loaded machine) to a thousand primary-key lookups and a sort;
        ``+ 0`` leaves it the lookups.
        """
        if self.sqlite:
            return self.walk_only(column)
        return column + 0

    def walk_only(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """``column`` as a term SQLite may test but not drive the query with.

        Without ``ANALYZE`` statistics SQLite believes any equality on an
        indexed column is selective, so ``state = 'ready'`` or a namespace
        (through its unique indexes) would become the outer loop, followed by
        a sort of every match: 0.6 s to 8 s per page at 1M versions. The unary
        ``+`` (a no-op on the value) takes the term off the table for index
        use, so the query walks the sort index and stops after one page. Not
        applied on PostgreSQL, whose planner has statistics.
        """
        if not self.sqlite:
            return column
        return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)

    def alias(self, table: sa.Table) -> NamedFromClause:
        """A cached alias of ``table`` not used yet in this statement."""
        n = self.counts.get(table.name, 0)
        self.counts[table.name] = n + 1
        return _alias(table, f"{table.name}_{n}")

    def compile(self, node: Node) -> sa.ColumnElement[bool]:
        # Recursion depth is bounded by the parser (MAX_DEPTH nesting, And/Or
        # flattened), so this cannot hit Python's recursion limit.
        if isinstance(node, Comparison):
            return self.comparison(node)
        if isinstance(node, And):
            return sa.and_(*(self.compile(item) for item in node.items))
        if isinstance(node, Or):
            return sa.or_(*(self.compile(item) for item in node.items))
        if isinstance(node, Not):
            return sa.not_(self.compile(node.item))
        if isinstance(node, AnyVersion) and self.target == "models":
            inner = _Compiler("versions", sqlite=self.sqlite, counts=self.counts).compile(node.item)
            return (
                sa.select(sa.literal_column("1"))
                .select_from(t.versions)
                .where(t.versions.c.model_id == t.models.c.id, inner)
                .exists()
            )
        raise TypeError(f"not a filter node: {node!r}")

    def comparison(self, cmp: Comparison) -> sa.ColumnElement[bool]:
        if cmp.field.kind == "attr":
            return self.attr(cmp)
        table = _KV_TABLES[self.target].get(cmp.field.kind)
        if table is None:  # the parser refuses these; never trust a hand-made AST blindly
            raise InvalidInput(
                f"{cmp.field.kind} fields cannot be used to search {self.target}",
                code="INVALID_FILTER",
                details={"position": 0},
            )
        kv = self.alias(table)
        if cmp.op == "EXISTS":
            return (
                sa.select(sa.literal_column("1"))
                .select_from(kv)
                .where(kv.c[self.owner_fk] == self.owner_id, kv.c.key == cmp.field.key)
                .exists()
            )
        first = cmp.value[0] if isinstance(cmp.value, tuple) else cmp.value
        # Metadata keeps text in ``value`` and numbers in ``num``; the parser
        # made every number a float and every boolean the text "true"/"false".
        column = kv.c.num if cmp.field.kind == "meta" and isinstance(first, float) else kv.c.value
        # One correlated probe per candidate row: (owner, key) is the primary
        # key, (key, value, owner) the secondary index; the planner picks.
        return (
            sa.select(sa.literal_column("1"))
            .select_from(kv)
            .where(
                kv.c[self.owner_fk] == self.owner_id,
                kv.c.key == cmp.field.key,
                self.apply(column, cmp.op, cmp.value),
            )
            .exists()
        )

    def attr(self, cmp: Comparison) -> sa.ColumnElement[bool]:
        key = cmp.field.key
        if self.target == "versions" and key in ("name", "namespace"):
            return self.model_ids(cmp)
        if self.target == "models" and key == "namespace":
            ns = self.alias(t.namespaces)
            inner = sa.select(ns.c.id).where(self.apply(ns.c.name, cmp.op, cmp.value))
            return t.models.c.namespace_id.in_(inner)
        if self.target == "versions" and cmp.op == "EXISTS":
            return self.present(key)
        if self.target == "versions" and key in ("original", "parent"):
            return self.lineage(cmp)
        columns = _VERSION_COLUMNS if self.target == "versions" else _MODEL_COLUMNS
        column = columns.get(key)
        if column is None:
            raise InvalidInput(
                f"{key!r} cannot be used to search {self.target}",
                code="INVALID_FILTER",
                details={"position": 0},
            )
        if self.target == "versions" and key in _LOW_CARDINALITY:
            column = self.walk_only(column)
        clause = self.apply(column, cmp.op, cmp.value)
        if key in _NULLABLE:
            # NULL = 'x' is unknown, and NOT unknown is unknown: without the
            # guard, NOT framework = 'onnx' would drop versions with no framework.
            return sa.and_(column.is_not(None), clause)
        return clause

    def present(self, key: str) -> sa.ColumnElement[bool]:
        """``attr EXISTS``: the attribute is set (a signature: a non-empty object)."""
        if key == "signature":
            # JSON columns hold the text the service wrote (compact, so an
            # empty object is exactly '{}'); an absent signature is SQL NULL
            # or JSON null depending on the write path. Compared as text,
            # which works for SQLite's text and PostgreSQL's json alike.
            text = sa.cast(t.versions.c.signature, sa.Text)
            return sa.and_(t.versions.c.signature.is_not(None), text.not_in(["null", "{}"]))
        column = _VERSION_COLUMNS.get(key)
        if column is None or key not in _NULLABLE:
            raise InvalidInput(
                f"EXISTS cannot be used with {key!r}",
                code="INVALID_FILTER",
                details={"position": 0},
            )
        return column.is_not(None)

    def lineage(self, cmp: Comparison) -> sa.ColumnElement[bool]:
        """``original``/``parent`` against version references (issue 14).

        The references become one ``id IN (subquery)`` over the unique
        ``(namespace, name, number)`` path, so the term stays one indexed
        probe of ``ix_versions_original_created`` / ``..._parent_created``
        and composes under OR/NOT like any other. A reference naming no
        version adds nothing to the list.
        """
        column = _VERSION_COLUMNS[cmp.field.key]
        refs = cmp.value if isinstance(cmp.value, tuple) else (cmp.value,)
        v, m, ns = self.alias(t.versions), self.alias(t.models), self.alias(t.namespaces)
        wanted: list[sa.ColumnElement[bool]] = []
        for ref in refs:
            namespace, name, number = str(ref).split("/")
            wanted.append(
                sa.and_(ns.c.name == namespace, m.c.name == name, v.c.number == int(number))
            )
        inner = (
            sa.select(v.c.id)
            .select_from(v.join(m, m.c.id == v.c.model_id).join(ns, ns.c.id == m.c.namespace_id))
            .where(sa.or_(*wanted))
        )
        # The IS NOT NULL guard keeps comparisons two-valued (see attr): NOT
        # parent = 'x' must match the roots too; "!=" needs the link set.
        if cmp.op in ("=", "IN"):
            return sa.and_(column.is_not(None), column.in_(inner))
        return sa.and_(column.is_not(None), column.not_in(inner))

    def model_ids(self, cmp: Comparison) -> sa.ColumnElement[bool]:
        """A version's model name or namespace, as ``model_id IN (subquery)``.

        A subquery rather than a join, so each comparison composes under
        OR/NOT like any other. Aliases keep it from correlating with the
        ``models`` join of the name sort.
        """
        if cmp.field.key == "name":
            inner = self.models_named(cmp)
        else:
            m = self.alias(t.models)
            ns = self.alias(t.namespaces)
            inner = (
                sa.select(m.c.id)
                .select_from(m.join(ns, ns.c.id == m.c.namespace_id))
                .where(self.apply(ns.c.name, cmp.op, cmp.value))
            )
        # name = 'x' picks a handful of models (names are unique per
        # namespace): there, driving from the models is the best plan, and
        # sorting one model's versions is cheap. Anything else may match most
        # models and must not drive (see walk_only).
        selective = cmp.field.key == "name" and cmp.op in ("=", "IN")
        model_id = t.versions.c.model_id
        return (model_id if selective else self.walk_only(model_id)).in_(inner)

    def models_named(self, cmp: Comparison) -> sa.Select[tuple[Any]]:
        """The ids of the models whose name satisfies ``cmp`` (a ``name`` term)."""
        m = self.alias(t.models)
        return sa.select(m.c.id).where(self.apply(m.c.name, cmp.op, cmp.value))

    def namespace(self, name: str) -> sa.ColumnElement[bool]:
        """The ``namespace=`` argument: the same as the filter ``namespace = name``."""
        return self.attr(Comparison(Field("attr", "namespace"), "=", name))

    def apply(self, column: sa.ColumnElement[Any], op: str, value: Any) -> sa.ColumnElement[bool]:
        if op == "IN":
            return column.in_(list(value))
        if op == "NOT IN":
            return column.not_in(list(value))
        if op == "ILIKE":
            # lower() on both sides rather than ILIKE, which SQLite lacks: the
            # same SQL then means the same thing on both backends.
            pattern = sa.literal(str(value), sa.Text())
            return sa.func.lower(column).like(sa.func.lower(pattern), escape="\\")
        if op == "LIKE":
            if self.sqlite:
                # SQLite's LIKE ignores ASCII case (and PRAGMA case_sensitive_like
                # is per connection, global and deprecated), so a case-sensitive
                # LIKE becomes the equivalent GLOB, which is case-sensitive.
                glob = sa.literal(like_to_glob(str(value)), sa.Text())
                return column.op("GLOB", is_comparison=True)(glob)
            return column.like(str(value), escape="\\")
        compare = _COMPARE.get(op)
        if compare is None:
            raise InvalidInput(
                f"unknown operator {op!r}", code="INVALID_FILTER", details={"position": 0}
            )
        result: sa.ColumnElement[bool] = compare(column, value)
        return result


def like_to_glob(pattern: str) -> str:
    """Translate a LIKE pattern (``%``, ``_``, backslash escape) to SQLite GLOB.

    GLOB's own wildcards ``*``, ``?`` and ``[`` become one-character classes so
    they match themselves.
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(_glob_literal(pattern[i + 1]))
            i += 2
            continue
        if c == "%":
            out.append("*")
        elif c == "_":
            out.append("?")
        else:
            out.append(_glob_literal(c))
        i += 1
    return "".join(out)


def _glob_literal(c: str) -> str:
    return f"[{c}]" if c in "*?[" else c


# -- sort and cursor ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sort:
    """Keyset columns (together unique), all in one direction, plus the id to return."""

    id_column: sa.ColumnElement[Any]
    columns: tuple[sa.ColumnElement[Any], ...]
    kinds: tuple[_SortKind, ...]
    descending: bool


def _after(sort: _Sort, values: Sequence[Any]) -> sa.ColumnElement[bool]:
    """Rows strictly after ``values`` in sort order.

    Written as ``a <= x AND (a < x OR (a = x AND (b < y OR ...)))`` rather
    than a row-value comparison: the leading ``a <= x`` is a plain range any
    planner turns into an index range start, and the rest refines it.
    """
    beyond = operator.lt if sort.descending else operator.gt
    reached = operator.le if sort.descending else operator.ge
    pairs = list(zip(sort.columns, values, strict=True))
    column, value = pairs[-1]
    clause: sa.ColumnElement[bool] = beyond(column, value)
    for column, value in reversed(pairs[:-1]):
        clause = sa.or_(beyond(column, value), sa.and_(column == value, clause))
    first_column, first_value = pairs[0]
    return sa.and_(reached(first_column, first_value), clause)


def _fingerprint(target: Target, node: Node | None, order: OrderBy, *extra: object) -> str:
    # The AST is frozen dataclasses with deterministic reprs (floats included),
    # so repr() is a canonical form of the parsed filter, independent of the
    # spelling (white space, keyword case, == vs =) of the text.
    text = repr((_CURSOR_FORMAT, target, node, order, *extra))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _encode_cursor(fingerprint: str, values: Sequence[Any]) -> str:
    payload = json.dumps({"h": fingerprint, "k": list(values)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode("ascii")


def _bad_cursor(reason: str) -> InvalidInput:
    return InvalidInput(
        f"invalid page token: {reason}; start again without one",
        code=CURSOR_CODE,
        details={"reason": reason},
    )


def _decode_cursor(cursor: str, fingerprint: str, kinds: Sequence[_SortKind]) -> list[Any]:
    """The sort values in ``cursor``, checked; ``INVALID_CURSOR`` if anything is off.

    Cursors are not secret and not signed: forging one only moves the start of
    the caller's own query, so we check shape and types, not authenticity.
    """
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise _bad_cursor("malformed")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (ValueError, binascii.Error, RecursionError):
        raise _bad_cursor("malformed") from None
    if not isinstance(data, dict) or set(data) != {"h", "k"}:
        raise _bad_cursor("malformed")
    if data["h"] != fingerprint:
        raise _bad_cursor("it belongs to a different filter, order or namespace")
    values = data["k"]
    if not isinstance(values, list) or len(values) != len(kinds):
        raise _bad_cursor("malformed")
    return [_cursor_value(v, kind) for v, kind in zip(values, kinds, strict=True)]


def _cursor_value(value: Any, kind: _SortKind) -> Any:
    # Values go to the database as bound parameters: refuse anything that
    # would make the driver fail (huge ints, NaN, lone surrogates, NUL).
    if kind == "int":
        if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
            return value
    elif kind == "float":
        if type(value) in (int, float) and math.isfinite(value):
            return float(value)
    elif (
        isinstance(value, str)
        and len(value) <= 1024
        and not any(c == "\x00" or unicodedata.category(c) == "Cs" for c in value)
    ):
        return value
    raise _bad_cursor("malformed")


def _check_limit(limit: int) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidInput("limit must be a positive integer", code="INVALID_PAGE_SIZE")


def _page(
    conn: sa.Connection,
    from_: sa.FromClause,
    where: list[sa.ColumnElement[bool]],
    sort: _Sort,
    fingerprint: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[int], str | None]:
    if cursor is not None:
        where.append(_after(sort, _decode_cursor(cursor, fingerprint, sort.kinds)))
    ordering = [c.desc() if sort.descending else c.asc() for c in sort.columns]
    query = (
        sa.select(sort.id_column, *sort.columns)
        .select_from(from_)
        .where(*where)
        .order_by(*ordering)
        .limit(limit + 1)
    )
    rows = conn.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    ids = [int(row[0]) for row in rows]
    next_cursor = _encode_cursor(fingerprint, list(rows[-1])[1:]) if more else None
    return ids, next_cursor


def _page_from_ids(
    conn: sa.Connection,
    where: list[sa.ColumnElement[bool]],
    sort: _Sort,
    fingerprint: str,
    limit: int,
    cursor: str | None,
    ids: Sequence[int],
) -> tuple[list[int], str | None]:
    """:func:`_page` over versions driven by ``versions.id = ANY(ids)``, where
    ``ids`` are every version the rarest term matches, in the page's order
    (created order on PostgreSQL; see :func:`_rare_driver`).

    The first ``2 * (limit + 1)`` ids are tried first, then 8 times as many,
    and so on up to all of them: a match left out of a try comes after every
    id in it, so once a try fills a page (``limit + 1`` rows) that page is
    the page over all ids. ``metrics.accuracy >= 0.999`` (1,000 of 1M
    versions) looked up and sorted all 1,000 versions and probed their
    metric, about 8,000 buffers a page (p95 28-50 ms); now 202 and about
    1,600 buffers, and one try whenever the other terms keep half of the
    matches. Later pages, whose first matches are before the cursor, take
    a try or two more.
    """
    size = 2 * (limit + 1)
    while True:
        chunk = list(ids[:size])
        if conn.dialect.name == "sqlite":
            driven = [*where, t.versions.c.id.in_(chunk)]
        else:
            array = sa.literal(chunk, sa.ARRAY(sa.BigInteger()))
            driven = [*where, t.versions.c.id == sa.any_(array)]
        page, next_cursor = _page(conn, t.versions, driven, sort, fingerprint, limit, cursor)
        if next_cursor is not None or size >= len(ids):
            return page, next_cursor
        size *= 8


# -- public API ---------------------------------------------------------------


def search_versions(
    conn: sa.Connection,
    *,
    node: Node | None,
    order: OrderBy,
    limit: int,
    cursor: str | None,
    namespace: str | None = None,
) -> tuple[list[int], str | None]:
    """Ids of the versions matching ``node``, in ``order``, one keyset page at a time.

    Returns at most ``limit`` ``versions.id`` values and the cursor of the next
    page (``None`` on the last page). Every order is total and shares one
    direction: ``created``/``updated``/``number`` then version id; ``name``
    sorts by model name, then model id (two namespaces can hold the same
    name), then version number; ``metrics.KEY`` by the metric value, then
    creation time and version id, and returns **only versions that have that
    metric**.

    A cursor is only valid with the filter, order and namespace it came from;
    otherwise, or if it is garbage, :class:`InvalidInput` with code
    ``INVALID_CURSOR`` is raised.
    """
    _check_limit(limit)
    # One flat conjunction: _rare_driver plans from its top-level terms, and a
    # filter ANDed by hand (or by authorization) may nest them.
    node = flatten(node)
    sqlite = conn.dialect.name == "sqlite"
    if not sqlite:
        _no_parallel_workers(conn)
    with_cursor = cursor is not None
    if _static_plan(node, order, sqlite=sqlite):
        query = _static_query(conn.dialect, node, order, namespace, limit, with_cursor)
    else:
        query = _versions_query(conn, node, order, namespace, limit, with_cursor)
    if query.from_ids is not None:
        f = query.from_ids
        return _page_from_ids(conn, f.where, f.sort, query.fingerprint, limit, cursor, f.ids)
    params: dict[str, Any] = {}
    if cursor is not None:
        values = _decode_cursor(cursor, query.fingerprint, query.kinds)
        params = {f"cursor_{i}": v for i, v in enumerate(values)}
    if query.prepared is not None:
        rows: Sequence[Any] = query.prepared.all(conn, params)
    else:
        assert query.stmt is not None
        rows = conn.execute(query.stmt, params).all()
    more = len(rows) > limit
    rows = rows[:limit]
    ids = [int(row[0]) for row in rows]
    next_cursor = _encode_cursor(query.fingerprint, list(rows[-1])[1:]) if more else None
    return ids, next_cursor


@dataclass(frozen=True, slots=True)
class _Query:
    """A versions page query, its cursor's fingerprint and sort value kinds.

    The cursor's values are the bound parameters ``cursor_0``, ``cursor_1``,
    ... of ``stmt`` (present if it was built for a cursor), so one statement
    serves every page of a query.
    """

    stmt: sa.Select[Any] | None
    fingerprint: str
    kinds: tuple[_SortKind, ...]
    # ``stmt`` compiled once, run on the driver (static plans only).
    prepared: Prepared | None = None
    # Instead of ``stmt`` (None then): the page is found among these ids by
    # :func:`_page_from_ids` (never a static plan: the ids are data).
    from_ids: _FromIds | None = None


@dataclass(frozen=True, slots=True)
class _FromIds:
    """A page driven by the ids of the rarest term, in page order."""

    where: list[sa.ColumnElement[bool]]
    sort: _Sort
    ids: list[int]


def _static_plan(node: Node | None, order: OrderBy, *, sqlite: bool) -> bool:
    """True if the plan of a versions query depends on ``node``, ``order`` and
    the backend only, never on the data: no term is counted or fetched by
    :func:`_rare_driver` (so the query can be built once and kept).

    Mirrors :func:`_rare_driver`'s early exits: no filter; no term that can
    drive; one that can drive and is walked under the created order; or
    PostgreSQL under an order that neither walks, drives nor joins. On
    PostgreSQL a model-name term is never static: its models are looked up
    (:func:`_names_listed`).
    """
    if node is None:
        return True
    terms = node.items if isinstance(node, And) else (node,)
    if not sqlite and any(_is_name(term) for term in terms):
        return False  # its models are looked up first (_names_listed)
    if order.field.kind == "attr" and order.field.key == "name":
        return True
    candidates = [term for term in terms if _can_drive(term)]
    if not candidates:
        return True
    if order.field.kind != "attr":
        return False
    key = order.field.key
    if key == "created":
        return len(candidates) == 1 and _walkable(candidates[0]) is not None
    # updated / number: SQLite counts to drive; PostgreSQL plans by itself.
    return not sqlite


# Built page queries of static plans (see _static_plan), by their canonical
# form: a statement built and cache-keyed per request was 45% of a search
# page's CPU time (cProfile, page of 50 with every version cached).
_STATIC_QUERIES = 512


def _static_query(
    dialect: Dialect,
    node: Node | None,
    order: OrderBy,
    namespace: str | None,
    limit: int,
    with_cursor: bool,
) -> _Query:
    """The page query of a static plan, built and compiled once (then run on
    the driver, as the point reads' statements are: ``prepared.py``)."""
    # repr, not the nodes themselves, in the key: 1 == 1.0 == True as dict
    # keys, but they are different filters (the cursor fingerprint's rule).
    key = (repr((node, order, namespace)), dialect.name, dialect.driver, limit, with_cursor)
    found = _static_cache.get(key)
    if found is None:
        sqlite = dialect.name == "sqlite"
        found = _versions_query(None, node, order, namespace, limit, with_cursor, sqlite=sqlite)
        # A value that needs SQLAlchemy's conversion (ValueError) leaves the
        # statement to SQLAlchemy's execution.
        with contextlib.suppress(ValueError):
            assert found.stmt is not None  # a static plan is one statement
            found = replace(found, prepared=Prepared(found.stmt, dialect, literals=True))
        with _static_lock:
            if len(_static_cache) >= _STATIC_QUERIES:
                _static_cache.pop(next(iter(_static_cache)), None)
            _static_cache[key] = found
    return found


_static_cache: dict[tuple[str, str, str, int, bool], _Query] = {}
_static_lock = threading.Lock()


def _versions_query(
    conn: sa.Connection | None,
    node: Node | None,
    order: OrderBy,
    namespace: str | None,
    limit: int,
    with_cursor: bool,
    *,
    sqlite: bool | None = None,
) -> _Query:
    """Build the page query (see :func:`search_versions`). ``conn`` is None
    for a static plan (:func:`_static_plan`): nothing is read to plan it."""
    if sqlite is None:
        assert conn is not None
        sqlite = conn.dialect.name == "sqlite"
    compiler = _Compiler("versions", sqlite=sqlite)
    # The filter's WHERE; a plan below may take terms out of it (a walked
    # term becomes the join, listed terms become IN lists).
    rest: Node | None = node
    where: list[sa.ColumnElement[bool]] = []
    if namespace is not None:
        where.append(compiler.namespace(namespace))

    v = t.versions
    from_: sa.FromClause = v
    key, desc = order.field.key, order.descending
    if order.field.kind == "metric":
        sort_metric = _alias(t.version_metrics, "sort_metric")
        # sort_metric's copies of created_at and the version id rather than
        # versions' own: the same values, but then ix_version_metrics_key_value
        # (key, value, created_at, version_id) delivers the whole order.
        columns: tuple[sa.ColumnElement[Any], ...] = (
            sort_metric.c.value,
            sort_metric.c.created_at,
            sort_metric.c.version_id,
        )
        metric_key: sa.ColumnElement[Any] = sort_metric.c.key
        plan = _rare_driver(
            conn, compiler, node, can_walk=False, can_drive=compiler.sqlite, can_list=True
        )
        if plan.driver is not None:
            # Walking the metric's index probes every version that has the
            # metric until a page matches: for a term matching 55 versions of
            # 1M that walk took 3.1 s; fetching them and sorting them by the
            # metric takes 3 ms.
            where.append(plan.driver)
            columns = tuple(compiler.walk_only(c) for c in columns)
            metric_key = compiler.walk_only(metric_key)
        else:
            listed = _listable(conn, plan, limit)
            rest = _listed(compiler, rest, listed, sort_metric.c.version_id, where)
        from_ = v.join(sort_metric, sa.and_(sort_metric.c.version_id == v.c.id, metric_key == key))
        sort = _Sort(v.c.id, columns, ("float", "int", "int"), desc)
    elif order.field.kind == "attr" and key == "name":
        from_ = v.join(t.models, t.models.c.id == v.c.model_id)
        # (name, model id, number) is unique and matches ix_models_name (whose
        # entries carry the row id on SQLite) followed by the (model_id,
        # number) unique index, so no sort is needed. Ordering by version id
        # after the number would force one.
        sort = _Sort(
            v.c.id, (t.models.c.name, t.models.c.id, v.c.number), ("str", "int", "int"), desc
        )
    elif order.field.kind == "attr" and key in ("created", "updated", "number"):
        column: sa.ColumnElement[Any] = {
            "created": v.c.created_at,
            "updated": v.c.updated_at,
            "number": v.c.number,
        }[key]
        id_column: sa.ColumnElement[Any] = v.c.id
        plan = _rare_driver(
            conn,
            compiler,
            node,
            can_walk=key == "created",
            can_drive=compiler.sqlite,
            can_join=key == "created",
        )
        walker = plan.walker
        if plan.matches is not None:
            # The few versions of the rarest term, in the page's order: see
            # _page_from_ids.
            column, id_column = compiler.sort_only(column), compiler.sort_only(v.c.id)
            ordered = sorted(plan.matches, reverse=desc)
            sort = _Sort(v.c.id, (column, id_column), ("int", "int"), desc)
            rest = _names_listed(conn, compiler, rest, where)
            if rest is not None:
                where.insert(0, compiler.compile(rest))
            fingerprint = _fingerprint("versions", node, order, namespace)
            ids = [i for _, i in ordered]
            return _Query(None, fingerprint, sort.kinds, from_ids=_FromIds(where, sort, ids))
        if plan.driver is not None:
            # Few rows match: fetch them through the key/value index and sort
            # them, instead of walking the sort index past a million misses.
            where.append(plan.driver)
            column, id_column = compiler.sort_only(column), compiler.sort_only(v.c.id)
        elif walker is not None:
            # Many rows match one value: walk that value's index entries, which
            # are in (created_at, version_id) order, and probe the other terms
            # per entry; only that value's versions are visited, not all. The
            # join is the walked term, so its EXISTS goes: PostgreSQL planned
            # the two as a hash join over all of the value's rows plus a sort
            # (150-900 ms at 1M versions) instead of walking in order.
            assert rest is not None
            rest = _without(rest, walker)
            kv = _alias(_KV_TABLES["versions"][walker.field.kind], "walk")
            from_ = v.join(
                kv,
                sa.and_(
                    kv.c.version_id == v.c.id,
                    kv.c.key == walker.field.key,
                    compiler.apply(kv.c.value, walker.op, walker.value),
                ),
            )
            column, id_column = kv.c.created_at, kv.c.version_id
        sort = _Sort(v.c.id, (column, id_column), ("int", "int"), desc)
    else:
        raise InvalidInput(
            f"cannot sort versions by {key!r}", code="INVALID_ORDER_BY", details={"position": 0}
        )
    rest = _names_listed(conn, compiler, rest, where)
    if rest is not None:
        where.insert(0, compiler.compile(rest))
    fingerprint = _fingerprint("versions", node, order, namespace)
    if with_cursor:
        # Bound at execution (see _Query); typed as their columns.
        values = [
            sa.bindparam(f"cursor_{i}", None, type_=column.type)
            for i, column in enumerate(sort.columns)
        ]
        where.append(_after(sort, values))
    ordering = [c.desc() if sort.descending else c.asc() for c in sort.columns]
    stmt = (
        sa.select(sort.id_column, *sort.columns)
        .select_from(from_)
        .where(*where)
        .order_by(*ordering)
        .limit(limit + 1)
    )
    return _Query(stmt, fingerprint, sort.kinds)


def _no_parallel_workers(conn: sa.Connection) -> None:
    """No parallel workers for the rest of this (read) transaction.

    PostgreSQL estimates a metric range from the histogram of every metric's
    values together (``value >= 0.999`` looks like half the rows when other
    metrics are large numbers), so the fetch-and-sort of a rare range was
    planned as a parallel scan behind a Gather Merge: starting two workers
    took 20-45 ms of a 47 ms page whose scan read 200 index entries. A page
    query never reads enough to gain from workers, and concurrent searches
    would only compete for them.
    """
    # SQLAlchemy begins the transaction on first use, so this holds for the
    # statements that follow on ``conn`` until its commit or rollback.
    conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")


def _listed(
    compiler: _Compiler,
    rest: Node | None,
    listed: Sequence[tuple[Node, sa.Select[tuple[Any]]]],
    version_id: sa.ColumnElement[Any],
    where: list[sa.ColumnElement[bool]],
) -> Node | None:
    """Move the ``listed`` terms out of ``rest`` into ``where`` as
    ``version_id IN (their ids)``, tested on the walked index's own
    ``version_id``; returns what is left of ``rest``.

    SQLite runs such an uncorrelated ``IN`` once into an in-memory B-tree
    (``LIST SUBQUERY``), so each row walked costs a lookup there instead of
    a correlated probe of the key/value table and, tested on the walked
    entry rather than on ``versions.id``, no fetch of the version row either:
    ``tags.team = 'team-7' ORDER BY metrics.accuracy DESC`` (1%) walks about
    10,000 metric entries a page, 108 ms probing each one and 6 ms against
    the list (250,000 versions, CPU time). ``walk_only``: the list must
    filter the walk, never drive it.
    """
    for term, ids in listed:
        if rest is None:
            break
        items = rest.items if isinstance(rest, And) else (rest,)
        if not any(x is term for x in items):
            continue
        rest = _without(rest, term)
        if compiler.sqlite:
            where.append(compiler.walk_only(version_id).in_(ids))
        else:
            # PostgreSQL turns a top-level IN (subquery) into a semi-join,
            # planned as a probe per walked row or a hash join that loses the
            # order (tag by accuracy at 200k versions: 2,000 fetches and a
            # sort, 174 ms). Under IS TRUE it stays a subplan, run once into
            # a hash table ("hashed SubPlan"): the metric's index is walked
            # in order, index-only, each entry checked against the hash.
            where.append(version_id.in_(ids).is_(sa.true()))
    return rest


# A condition matching fewer versions than this drives a SQLite query. Driving
# costs ~9 µs a candidate (fetch, probe the other terms, sort); the walk ~2 µs a
# row walked. Measured at 1M versions: a 10,000-row tag drove in ~105 ms and
# walked in ~135 ms, a 10,000-row metric range drove in ~90 ms and walked in
# ~55 ms; so key/value terms drive only below 5,000 rows. A model-name term
# drives up to 20,000 versions: a model's versions sit together in creation
# order, so walking to old models' versions can cross most of the index
# (``name LIKE 'm12%'``: 525 ms walking, 26 ms driving).
RARE_CAP = 5_000
NAME_CAP = 20_000
# The most ids a key/value term may put in an in-memory list (see _listable).
LIST_CAP = 50_000
_DRIVER_OPS = {
    "tag": frozenset({"=", "IN"}),
    "param": frozenset({"=", "IN"}),
    "meta": frozenset({"=", "IN"}),
    "metric": frozenset({"=", "IN", "<", "<=", ">", ">="}),
}
_NAME_OPS = frozenset({"=", "IN", "LIKE", "ILIKE"})


def _can_drive(term: Node) -> bool:
    """True if ``term`` matches versions through an index of its own (see
    :func:`_driver_candidate`)."""
    if not isinstance(term, Comparison):
        return False
    kind, op = term.field.kind, term.op
    if kind in _DRIVER_OPS and op in _DRIVER_OPS[kind]:
        values = term.value if isinstance(term.value, tuple) else (term.value,)
        # Numeric metadata lives in ``num``: leave it to the walk.
        return kind != "meta" or all(isinstance(x, str) for x in values)
    return kind == "attr" and term.field.key == "name" and op in _NAME_OPS


def _driver_candidate(compiler: _Compiler, term: Node) -> tuple[sa.Select[tuple[Any]], int] | None:
    """The ids of versions matching ``term`` through an index, and the most
    rows for which driving from them pays, if the term can drive at all."""
    if not _can_drive(term):
        return None
    assert isinstance(term, Comparison)
    kind, op = term.field.kind, term.op
    if kind in _DRIVER_OPS:
        table = _KV_TABLES["versions"][kind]
        ids = sa.select(table.c.version_id).where(
            table.c.key == term.field.key, compiler.apply(table.c.value, op, term.value)
        )
        return ids, RARE_CAP
    v = compiler.alias(t.versions)
    return sa.select(v.c.id).where(v.c.model_id.in_(compiler.models_named(term))), NAME_CAP


def _without(node: Node, term: Node) -> Node | None:
    """``node``'s top-level AND without ``term`` (None if nothing is left)."""
    if not isinstance(node, And):
        return None if node is term else node
    rest = tuple(x for x in node.items if x is not term)
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else And(rest)


def _walkable(term: Node) -> Comparison | None:
    """``term`` if it is ``key = value`` on a version tag, param, metric or
    text metadata, whose index entries are in creation order."""
    if not isinstance(term, Comparison) or term.op != "=":
        return None
    kind, value = term.field.kind, term.value
    if kind in ("tag", "param") or (kind == "meta" and isinstance(value, str)):
        return term
    if kind == "metric" and isinstance(value, int | float) and not isinstance(value, bool):
        return term
    return None


@dataclass(frozen=True, slots=True)
class _Plan:
    """How a versions query starts (see :func:`_rare_driver`)."""

    driver: sa.ColumnElement[bool] | None = None
    walker: Comparison | None = None
    # PostgreSQL, created order: every version the rarest key/value term
    # matches, as (created_at, version id), for _page_from_ids.
    matches: tuple[tuple[int, int], ...] | None = None
    # Every key/value term with the query of its version ids and how many
    # it matched, counted up to the cap (so a count of the cap means "at
    # least"), for _listable.
    counted: tuple[tuple[Node, sa.Select[tuple[Any]], int, int], ...] = ()


def _rare_driver(
    conn: sa.Connection | None,
    compiler: _Compiler,
    node: Node | None,
    *,
    can_walk: bool,
    can_drive: bool,
    can_join: bool = False,
    can_list: bool = False,
) -> _Plan:
    """How a query over versions should start, from the filter's top-level
    AND terms: ``versions.id IN (...)`` for the rarest indexable term if it
    matches few enough versions (:data:`RARE_CAP`, :data:`NAME_CAP`), else
    an equality term to walk in creation order if ``can_walk``. Without
    ``can_drive`` the counting is the same but no driver is returned (so a
    walk is left out when a rarer term exists).

    SQLite has no statistics, so it walks the sort index and probes each row;
    for a condition matching 0.1% of a million versions (or versions created
    long ago) that walk covers most of the index (0.1-1 s). Counting up to the
    cap through the condition's own index costs a few milliseconds and tells
    the cases apart; the few matches are then fetched and sorted. When the
    order is ``created`` and the rarest term is ``key = value`` (rare or not),
    that term is walked through its ``(key, value, created_at, version_id)``
    index instead: already in order, so a page costs about ``limit /
    (share of that value's versions the other terms keep)`` probes and never
    more than fetching all of them.

    PostgreSQL picks most plans well from its statistics, and driving
    measured no better there (4x worse for a model-name term), so it is
    called with ``can_drive=False``; the walk it does need (see the module
    docstring). With ``can_join`` (created order, both databases) the
    matches of the rarest key/value term below the cap, fetched with their
    ``created_at`` (at once when it is the only term that can drive, after
    counting every term otherwise), drive the page
    (:func:`_page_from_ids`, ``matches``): PostgreSQL estimates a
    metric range from every metric's values together (``value >= 0.999``
    looked like half the rows, not 0.1%), walked the created index or hashed
    every version (162-825 ms a page), while with the ids in hand it plans
    that many primary-key lookups and a sort. With ``can_list`` and no
    driver, the counted key/value terms come back for :func:`_listable`.
    """
    if node is None or not (can_walk or can_drive or can_join or can_list):
        return _Plan()
    terms = node.items if isinstance(node, And) else (node,)
    if can_walk:
        candidates = [term for term in terms if _can_drive(term)]
        if len(candidates) == 1 and (only := _walkable(candidates[0])) is not None:
            # One indexable term, and it can be walked: the walk wins whatever
            # the count (see below), so do not count (0.1 ms of SQLite and as
            # much again to build the statement, for a term matching 1,000).
            return _Plan(walker=only)
    best: tuple[int, sa.Select[tuple[Any]], Node] | None = None
    walker: tuple[int, Comparison] | None = None
    counted: list[tuple[Node, sa.Select[tuple[Any]], int, int]] = []
    fetched: list[tuple[int, int]] | None = None  # what ``best`` matched, if fetched
    drivers: list[tuple[Node, tuple[sa.Select[tuple[Any]], int]]] = []
    for term in terms:
        candidate = _driver_candidate(compiler, term)
        if candidate is not None:
            drivers.append((term, candidate))
    if not can_drive and len(drivers) == 1 and not _is_kv(drivers[0][0]):
        # PostgreSQL and one model-name term: its count could only choose
        # between terms, and there is no other (``name LIKE 'm12%'`` at 1M
        # versions counted 11,100 of them a page for nothing, ~10 ms).
        return _Plan()
    for term, (ids, cap) in drivers:
        assert conn is not None, "a static plan (_static_plan) counts a term"
        is_kv = _is_kv(term)
        if can_join and is_kv and len(drivers) == 1:
            # The only term: its matches are fetched at once if few, counted
            # and fetched otherwise (one statement instead of two).
            found = _fetch_created(conn, ids, cap)
            count = len(found)
            if count < cap:
                best, fetched = (count, ids, term), found
        else:
            count = _count_upto(conn, ids, cap, kv=is_kv)
            if count < cap and (best is None or count < best[0]):
                best = (count, ids, term)
        if is_kv:
            counted.append((term, ids, count, cap))
        walkable = _walkable(term) if can_walk else None
        if walkable is not None and (walker is None or count < walker[0]):
            walker = (count, walkable)
    if walker is not None and (best is None or walker[0] <= best[0]):
        # Walking a value's entries in order reads about one page of them
        # when the other terms match often, and never more than fetching and
        # sorting all of them would.
        return _Plan(walker=walker[1])
    if best is not None and fetched is not None:
        return _Plan(matches=tuple(fetched))
    if best is not None and can_join and _is_kv(best[2]):
        # Counted first and fetched only now, for the one term that drives:
        # fetching every term's matches to choose (up to RARE_CAP rows each)
        # sent ~10,000 rows to Python per page of ``tags.team = 'team-7' AND
        # metrics.accuracy >= 0.9`` at 1M versions, only to walk the tag.
        assert conn is not None
        return _Plan(matches=tuple(_fetch_created(conn, best[1], RARE_CAP)))
    if best is not None and can_drive:
        return _Plan(driver=t.versions.c.id.in_(best[1]))
    return _Plan(counted=tuple(counted) if can_list else ())


# The most models a name term may list as ids on PostgreSQL (_names_listed).
NAME_MODELS_CAP = 5_000


def _is_name(term: Node) -> bool:
    """True if ``term`` compares the versions' model name."""
    return isinstance(term, Comparison) and term.field == Field("attr", "name")


def _names_listed(
    conn: sa.Connection | None,
    compiler: _Compiler,
    rest: Node | None,
    where: list[sa.ColumnElement[bool]],
) -> Node | None:
    """On PostgreSQL, move each top-level model-name term of ``rest`` into
    ``where`` as ``versions.model_id = ANY(ids of its models)``, the models
    looked up first (if at most :data:`NAME_MODELS_CAP`); returns what is
    left of ``rest``.

    As ``model_id IN (SELECT ... WHERE name LIKE ...)`` the planner joined
    the models per version walked: ``name LIKE 'm12%'`` (111 models, 1.1%
    of 1M versions) walked the created index probing ``models`` for each of
    9,871 versions, 29,883 buffers and 40 ms. With the ids in hand it tests
    a hashed list per version, 270 buffers and 2 ms, and a name matching one
    model's versions is fetched and sorted (100 rows) as before.
    """
    if rest is None or compiler.sqlite:
        return rest
    for term in rest.items if isinstance(rest, And) else (rest,):
        if not _is_name(term):
            continue
        assert conn is not None, "a static plan (_static_plan) has no name term here"
        assert isinstance(term, Comparison)
        found = conn.execute(compiler.models_named(term).limit(NAME_MODELS_CAP + 1)).scalars()
        ids = [int(i) for i in found]
        if len(ids) > NAME_MODELS_CAP:
            continue
        array = sa.literal(ids, sa.ARRAY(sa.BigInteger()))
        where.append(t.versions.c.model_id == sa.any_(array))
        rest = _without(rest, term)
        if rest is None:
            break
    return rest


def _is_kv(term: Node) -> bool:
    """True if ``term`` compares a version tag, param, metric or metadata."""
    return isinstance(term, Comparison) and term.field.kind in _DRIVER_OPS


def _count_upto(conn: sa.Connection, ids: sa.Select[tuple[Any]], cap: int, *, kv: bool) -> int:
    """How many rows ``ids`` selects, counted up to ``cap``.

    A key/value term is counted in its index's own order, so the count reads
    that index whatever the estimate: PostgreSQL estimates a metric range
    from every metric's values together (``value >= 0.999`` looked like half
    the rows), and on a table whose visibility map was not yet set a plain
    count was planned as a heap scan, 495 ms at 1M versions against 0.5 ms
    through the index.
    """
    if kv:
        table = ids.selected_columns.version_id.table
        ids = ids.order_by(table.c.key, table.c.value)
    probe = ids.limit(cap).subquery()
    return int(conn.execute(sa.select(sa.func.count()).select_from(probe)).scalar_one())


def _fetch_created(
    conn: sa.Connection, ids: sa.Select[tuple[Any]], cap: int
) -> list[tuple[int, int]]:
    """Up to ``cap`` of a key/value term's matches as ``(created_at, version
    id)``: created_at is copied into the key/value row and read from the
    same index, so the page can try the first matches in its own order
    (see :func:`_page_from_ids`)."""
    table = ids.selected_columns.version_id.table
    rows = conn.execute(ids.add_columns(table.c.created_at).limit(cap))
    return [(int(c), int(i)) for i, c in rows]


def _listable(
    conn: sa.Connection | None, plan: _Plan, limit: int
) -> list[tuple[Node, sa.Select[tuple[Any]]]]:
    """The key/value terms of a walk over all versions worth testing as an
    in-memory list (see :func:`_listed`), rarest first.

    A term matching ``c`` of ``n`` versions makes the walk visit about
    ``(limit + 1) * n / c`` rows; the list costs ~0.8 µs per id to build and
    saves ~8 µs per row visited (1M versions, SQLite 3.40), so it pays while
    ``c`` is below ``sqrt(10 * (limit + 1) * n)``: 31,800 at a million
    versions and pages of 100, which takes a 1% tag and leaves a 10% range.
    Terms were counted up to the driver's cap; only those at the cap (too
    common to drive) are counted again, up to that bound (an index-only
    count, ~0.2 µs an entry).
    """
    if not plan.counted:
        return []
    assert conn is not None, "a static plan (_static_plan) counted terms"
    newest = conn.execute(sa.select(sa.func.max(t.versions.c.id))).scalar_one_or_none() or 0
    bound = min(LIST_CAP, math.isqrt(10 * (limit + 1) * int(newest)))
    found: list[tuple[int, Node, sa.Select[tuple[Any]]]] = []
    for term, ids, count, cap in plan.counted:
        if count < cap or bound <= cap:
            # A rare term is a driver's to use (PostgreSQL plans it as one by
            # itself): walking the whole metric for its few versions is not.
            continue
        count = _count_upto(conn, ids, bound, kv=True)
        if count < bound:
            found.append((count, term, ids))
    found.sort(key=lambda x: x[0])
    return [(term, ids) for _, term, ids in found]


def search_models(
    conn: sa.Connection,
    *,
    node: Node | None,
    order: OrderBy,
    limit: int,
    cursor: str | None,
    namespace: str | None = None,
    include_archived: bool = True,
) -> tuple[list[int], str | None]:
    """Ids of the models matching ``node``, in ``order``, one keyset page at a time.

    Like :func:`search_versions` over ``models.id``: orders are ``created``,
    ``updated`` and ``name``, each followed by the model id.
    ``include_archived=False`` leaves out archived models.
    """
    _check_limit(limit)
    node = flatten(node)
    compiler = _Compiler("models", sqlite=conn.dialect.name == "sqlite")
    where: list[sa.ColumnElement[bool]] = []
    if node is not None:
        where.append(compiler.compile(node))
    if namespace is not None:
        where.append(compiler.namespace(namespace))
    if not include_archived:
        where.append(t.models.c.archived.is_(sa.false()))

    m = t.models
    columns = {"created": m.c.created_at, "updated": m.c.updated_at, "name": m.c.name}
    if order.field.kind != "attr" or order.field.key not in columns:
        raise InvalidInput(
            f"cannot sort models by {order.field.key!r}",
            code="INVALID_ORDER_BY",
            details={"position": 0},
        )
    kind: _SortKind = "str" if order.field.key == "name" else "int"
    sort = _Sort(m.c.id, (columns[order.field.key], m.c.id), (kind, "int"), order.descending)
    fingerprint = _fingerprint("models", node, order, namespace, include_archived)
    return _page(conn, m, where, sort, fingerprint, limit, cursor)


# -- point checks (the production view) --------------------------------------


def version_condition(conn: sa.Connection, node: Node) -> sa.ColumnElement[bool]:
    """``node`` compiled as a condition on ``versions`` (for queries over that table)."""
    return _Compiler("versions", sqlite=conn.dialect.name == "sqlite").compile(node)


def version_matches(conn: sa.Connection, version_id: int, node: Node) -> bool:
    """True if the version with this id satisfies ``node`` (the same SQL as a search)."""
    q = sa.select(t.versions.c.id).where(
        t.versions.c.id == version_id, version_condition(conn, node)
    )
    return conn.execute(q).first() is not None


def versions_matching(conn: sa.Connection, version_ids: Sequence[int], node: Node) -> set[int]:
    """Which of ``version_ids`` satisfy ``node``, in one query."""
    if not version_ids:
        return set()
    q = sa.select(t.versions.c.id).where(
        t.versions.c.id.in_(list(version_ids)), version_condition(conn, node)
    )
    return {int(v) for v in conn.execute(q).scalars()}


def model_matches(conn: sa.Connection, model_id: int, node: Node) -> bool:
    """True if the model with this id satisfies the models-target ``node``."""
    compiler = _Compiler("models", sqlite=conn.dialect.name == "sqlite")
    q = sa.select(t.models.c.id).where(t.models.c.id == model_id, compiler.compile(node))
    return conn.execute(q).first() is not None


def digest_visible(conn: sa.Connection, digest: str, node: Node | None) -> bool:
    """True if some version satisfying ``node`` (any version if None) lists ``digest``."""
    q = (
        sa.select(t.files.c.version_id)
        .select_from(t.files.join(t.versions, t.versions.c.id == t.files.c.version_id))
        .where(t.files.c.digest == digest)
        # A file still waiting for its blob's verification proves nothing
        # (issue 13): the version names bytes its creator has not shown yet.
        .where(
            ~sa.exists().where(
                t.version_blob_waits.c.version_id == t.files.c.version_id,
                t.version_blob_waits.c.path == t.files.c.path,
            )
        )
    )
    if node is not None:
        q = q.where(version_condition(conn, node))
    return conn.execute(q.limit(1)).first() is not None
