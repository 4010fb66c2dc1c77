"""Queries over the outbox: filtered event pages, webhooks, deliveries, attempts, cursors.

Functions take the connection of a transaction opened by
:class:`modelyard.store.metadata.repository.MetadataStore`, so the service
decides what runs in one transaction.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from modelyard.store.metadata import tables as t

_LIKE_ESCAPE = "\\"


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching strings that start with ``prefix`` literally."""
    escaped = prefix.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2).replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


_NAME_END = re.compile(r"[/@]")
# An event as readers see it: model_key is an index key, not part of the event.
EVENT_COLUMNS = tuple(c for c in t.events.c if c.name != "model_key")


def model_key_of(namespace: str, subject: str) -> str | None:
    """``ns/name`` of the model an event subject is about, else None.

    Subjects about a model are ``ns/name`` (the model, its policy),
    ``ns/name/3`` (a version) and ``ns/name@alias``; names never hold ``/``
    or ``@``. Stored as ``events.model_key`` so the audit log's model filter
    is an index walk.
    """
    head = namespace + "/"
    if not subject.startswith(head):
        return None
    name = _NAME_END.split(subject[len(head) :], maxsplit=1)[0]
    return head + name if name else None


def _pg(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


# -- events -----------------------------------------------------------------


def list_events(
    conn: sa.Connection,
    *,
    after: int,
    limit: int,
    types: Sequence[str] = (),
    namespace: str | None = None,
    model: str | None = None,
    subject: str | None = None,
    namespaces: Sequence[str] | None = None,
    consumed: Sequence[str] | None = (),
    consumer_types: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Events with id > ``after`` matching the filters, oldest first.

    ``types`` are patterns (``*``, ``version.*``, ``alias.moved``); ``model``
    is ``ns/name`` and matches the model's own subject and those of its
    versions (``ns/name/3``) and aliases (``ns/name@prod``). Outside
    ``namespaces``, events of ``consumer_types`` in ``consumed`` (None: in
    any namespace) are candidates too; the service judges their payload.
    """
    e = t.events
    q = sa.select(*EVENT_COLUMNS).where(e.c.id > after)
    if types and "*" not in types:
        conds: list[sa.ColumnElement[bool]] = []
        for p in types:
            if p.endswith(".*"):
                conds.append(e.c.type.like(_like_prefix(p[:-1]), escape=_LIKE_ESCAPE))
            else:
                conds.append(e.c.type == p)
        q = q.where(sa.or_(*conds))
    if namespace is not None:
        q = q.where(e.c.namespace == namespace)
    if namespaces is not None:
        where: sa.ColumnElement[bool] = e.c.namespace.in_(list(namespaces))
        if consumer_types and (consumed is None or consumed):
            extra: sa.ColumnElement[bool] = e.c.type.in_(list(consumer_types))
            if consumed is not None:
                extra = sa.and_(extra, e.c.namespace.in_(list(consumed)))
            where = sa.or_(where, extra)
        q = q.where(where)
    if model is not None:
        q = q.where(
            sa.or_(
                e.c.subject == model,
                e.c.subject.like(_like_prefix(model + "/"), escape=_LIKE_ESCAPE),
                e.c.subject.like(_like_prefix(model + "@"), escape=_LIKE_ESCAPE),
            )
        )
    if subject is not None:
        q = q.where(e.c.subject == subject)
    rows = conn.execute(q.order_by(e.c.id).limit(limit))
    return [dict(r._mapping) for r in rows]


def events_by_id(conn: sa.Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Event rows by id."""
    if not ids:
        return {}
    rows = conn.execute(sa.select(*EVENT_COLUMNS).where(t.events.c.id.in_(list(ids))))
    return {r.id: dict(r._mapping) for r in rows}


def max_event_id(conn: sa.Connection) -> int:
    """The newest event id (0 when there are none)."""
    value = conn.execute(sa.select(sa.func.max(t.events.c.id))).scalar()
    return int(value or 0)


# -- cursors ----------------------------------------------------------------


def lock_cursor(conn: sa.Connection, name: str) -> int | None:
    """Read and lock a reader's cursor; None if another process holds it (PostgreSQL).

    The row lock (``FOR UPDATE SKIP LOCKED``) makes one replica at a time
    advance the cursor; the others skip the fan-out for that tick instead of
    queueing on it. On SQLite the write transaction already serializes.
    """
    c = t.event_cursors
    q = sa.select(c.c.last_event_id).where(c.c.name == name)
    if _pg(conn):
        q = q.with_for_update(skip_locked=True)
    value = conn.execute(q).scalar_one_or_none()
    if value is None:
        exists = conn.execute(sa.select(sa.func.count()).where(c.c.name == name)).scalar()
        if exists:
            return None  # locked by another replica
        conn.execute(c.insert().values(name=name, last_event_id=0, updated_at=0))
        return 0
    return int(value)


def set_cursor(conn: sa.Connection, name: str, value: int, at: int) -> None:
    """Advance a reader's cursor."""
    c = t.event_cursors
    conn.execute(c.update().where(c.c.name == name).values(last_event_id=value, updated_at=at))


def read_cursor(conn: sa.Connection, name: str) -> int:
    """A reader's cursor without locking (0 if unset)."""
    c = t.event_cursors
    value = conn.execute(sa.select(c.c.last_event_id).where(c.c.name == name)).scalar()
    return int(value or 0)


# -- webhooks ---------------------------------------------------------------


def insert_webhook(conn: sa.Connection, values: dict[str, Any]) -> int:
    """Insert a subscription; return its id."""
    return int(
        conn.execute(t.webhooks.insert().values(**values).returning(t.webhooks.c.id)).scalar_one()
    )


def webhook_row(conn: sa.Connection, webhook_id: int, *, for_update: bool = False) -> Any:
    """One subscription row (with its secrets) or None."""
    q = sa.select(t.webhooks).where(t.webhooks.c.id == webhook_id)
    if for_update and _pg(conn):
        q = q.with_for_update()
    return conn.execute(q).one_or_none()


def webhook_rows(conn: sa.Connection, *, active_only: bool = False) -> list[Any]:
    """Every subscription (or the active ones), by id."""
    q = sa.select(t.webhooks).order_by(t.webhooks.c.id)
    if active_only:
        q = q.where(t.webhooks.c.active.is_(True))
    return list(conn.execute(q))


def update_webhook(conn: sa.Connection, webhook_id: int, values: dict[str, Any]) -> None:
    """Update subscription columns."""
    conn.execute(t.webhooks.update().where(t.webhooks.c.id == webhook_id).values(**values))


def delete_webhook(conn: sa.Connection, webhook_id: int) -> None:
    """Delete a subscription with its deliveries and their attempts."""
    d = t.deliveries
    ids = sa.select(d.c.id).where(d.c.webhook_id == webhook_id)
    conn.execute(t.delivery_attempts.delete().where(t.delivery_attempts.c.delivery_id.in_(ids)))
    conn.execute(d.delete().where(d.c.webhook_id == webhook_id))
    conn.execute(t.webhooks.delete().where(t.webhooks.c.id == webhook_id))


# -- deliveries -------------------------------------------------------------


def prune_deliveries(conn: sa.Connection, *, before: int, limit: int) -> int:
    """Delete up to ``limit`` finished deliveries (not pending) last updated
    before ``before`` (µs), with their attempts; how many went.

    Found through ``(updated_at)``, oldest first, so repeated calls walk the
    backlog in short transactions.
    """
    d = t.deliveries
    ids = list(
        conn.execute(
            sa.select(d.c.id)
            .where(d.c.updated_at < before, d.c.status != "pending")
            .order_by(d.c.updated_at)
            .limit(limit)
        ).scalars()
    )
    if ids:
        conn.execute(t.delivery_attempts.delete().where(t.delivery_attempts.c.delivery_id.in_(ids)))
        conn.execute(d.delete().where(d.c.id.in_(ids)))
    return len(ids)


def insert_deliveries(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Queue deliveries (one per event and subscription)."""
    if rows:
        conn.execute(t.deliveries.insert(), rows)


def insert_delivery(conn: sa.Connection, values: dict[str, Any]) -> int:
    """Queue one delivery; return its id."""
    return int(
        conn.execute(
            t.deliveries.insert().values(**values).returning(t.deliveries.c.id)
        ).scalar_one()
    )


def has_due(conn: sa.Connection, now: int) -> bool:
    """True if some pending delivery is due and unclaimed (a cheap pre-check)."""
    return conn.execute(_due(now).limit(1)).first() is not None


def _due(now: int) -> sa.Select[tuple[int]]:
    """Ids of pending deliveries that are due, unclaimed (or whose lease ran
    out), of active subscriptions."""
    d = t.deliveries
    w = t.webhooks
    return (
        sa.select(d.c.id)
        .select_from(d.join(w, d.c.webhook_id == w.c.id))
        .where(
            d.c.status == "pending",
            d.c.next_attempt_at <= now,
            sa.or_(d.c.claimed_until.is_(None), d.c.claimed_until < now),
            w.c.active.is_(True),
        )
    )


def claim_due(
    conn: sa.Connection, *, now: int, lease_until: int, worker: str, limit: int
) -> list[Any]:
    """Claim up to ``limit`` due deliveries of active subscriptions, with a lease.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets replicas claim disjoint rows
    without waiting on each other; the ``claimed_until`` test keeps a row
    claimed by a live process out of everyone else's hands until its lease
    runs out (a killed process's lease simply expires).
    """
    d = t.deliveries
    q = _due(now).order_by(d.c.next_attempt_at, d.c.id).limit(limit)
    if _pg(conn):
        q = q.with_for_update(of=d, skip_locked=True)
    ids = list(conn.execute(q).scalars())
    if not ids:
        return []
    conn.execute(
        d.update().where(d.c.id.in_(ids)).values(claimed_until=lease_until, claimed_by=worker)
    )
    return list(conn.execute(sa.select(d).where(d.c.id.in_(ids)).order_by(d.c.id)))


def delivery_row(conn: sa.Connection, delivery_id: int, *, for_update: bool = False) -> Any:
    """One delivery row or None."""
    q = sa.select(t.deliveries).where(t.deliveries.c.id == delivery_id)
    if for_update and _pg(conn):
        q = q.with_for_update()
    return conn.execute(q).one_or_none()


def update_delivery(conn: sa.Connection, delivery_id: int, values: dict[str, Any]) -> None:
    """Update delivery columns."""
    conn.execute(t.deliveries.update().where(t.deliveries.c.id == delivery_id).values(**values))


def insert_attempt(conn: sa.Connection, values: dict[str, Any]) -> None:
    """Record one attempt."""
    conn.execute(t.delivery_attempts.insert().values(**values))


def delivery_rows(
    conn: sa.Connection,
    webhook_id: int,
    *,
    limit: int,
    before: int | None,
    status: str | None,
) -> list[Any]:
    """A subscription's deliveries, newest first, keyset-paged on id."""
    d = t.deliveries
    q = sa.select(d).where(d.c.webhook_id == webhook_id)
    if before is not None:
        q = q.where(d.c.id < before)
    if status is not None:
        q = q.where(d.c.status == status)
    return list(conn.execute(q.order_by(d.c.id.desc()).limit(limit)))


def attempt_rows(conn: sa.Connection, delivery_ids: Sequence[int]) -> dict[int, list[Any]]:
    """Attempts of each delivery, oldest first."""
    out: dict[int, list[Any]] = defaultdict(list)
    if not delivery_ids:
        return out
    a = t.delivery_attempts
    q = sa.select(a).where(a.c.delivery_id.in_(list(delivery_ids))).order_by(a.c.id)
    for r in conn.execute(q):
        out[r.delivery_id].append(r)
    return out
