"""Queries of governance (issue 3): policies, approvals, alias history by time,
and the audit log over ``events``. Functions over an open :class:`Tx`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from modelyard.domain.approvals import Approval, ApprovalAction, ApprovalState, Vote
from modelyard.domain.entities import AliasMove
from modelyard.store.metadata import outbox
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.engine import is_sqlite
from modelyard.store.metadata.ports import ApprovalRow, AuditQuery, StoredPolicy
from modelyard.store.metadata.repository import Tx, now_us

# -- policies -----------------------------------------------------------------


def get_policy(
    tx: Tx, namespace_id: int, model_id: int | None, purpose: str
) -> StoredPolicy | None:
    """The namespace policy (``model_id=None``) or a model's own policy."""
    p = t.policies
    row = tx.conn.execute(
        sa.select(p.c.rules, p.c.updated_by, p.c.updated_at).where(
            p.c.namespace_id == namespace_id,
            p.c.model_key == (model_id or 0),
            p.c.purpose == purpose,
        )
    ).one_or_none()
    return None if row is None else StoredPolicy(dict(row.rules), row.updated_by, row.updated_at)


def policies_of_model(
    tx: Tx, model_id: int, purpose: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(namespace rules, model rules) for a model, in one query."""
    return tx.wq.aliases.policies_of_model(tx.conn, model_id, purpose)


def model_policies_of_namespace(
    tx: Tx, namespace_id: int, purpose: str
) -> list[tuple[str, dict[str, Any]]]:
    """(model name, rules) of every model in a namespace that has its own policy."""
    p, m = t.policies, t.models
    rows = tx.conn.execute(
        sa.select(m.c.name, p.c.rules)
        .select_from(p.join(m, p.c.model_id == m.c.id))
        .where(p.c.namespace_id == namespace_id, p.c.model_key != 0, p.c.purpose == purpose)
        .order_by(m.c.name)
    ).all()
    return [(r.name, dict(r.rules)) for r in rows]


def put_policy(
    tx: Tx,
    namespace_id: int,
    model_id: int | None,
    purpose: str,
    rules: dict[str, Any],
    actor: str,
) -> None:
    """Insert or replace a policy (the caller holds the model or namespace lock)."""
    p = t.policies
    key = (
        p.c.namespace_id == namespace_id,
        p.c.model_key == (model_id or 0),
        p.c.purpose == purpose,
    )
    values = {"rules": rules, "updated_by": actor, "updated_at": now_us()}
    done = tx.conn.execute(p.update().where(*key).values(**values))
    if done.rowcount == 0:
        tx.conn.execute(
            p.insert().values(
                namespace_id=namespace_id,
                model_id=model_id,
                model_key=model_id or 0,
                purpose=purpose,
                **values,
            )
        )


def delete_policy(tx: Tx, namespace_id: int, model_id: int | None, purpose: str) -> bool:
    """Remove a policy; False if there was none."""
    p = t.policies
    done = tx.conn.execute(
        p.delete().where(
            p.c.namespace_id == namespace_id,
            p.c.model_key == (model_id or 0),
            p.c.purpose == purpose,
        )
    )
    return bool(done.rowcount)


def lock_namespace(tx: Tx, namespace_id: int) -> None:
    """Row-lock a namespace (PostgreSQL) so policy writers queue; SQLite writers
    are serialized already."""
    if not is_sqlite(tx.conn.engine):
        tx.conn.execute(
            sa.select(t.namespaces.c.id).where(t.namespaces.c.id == namespace_id).with_for_update()
        )


# -- approvals ----------------------------------------------------------------

_A = t.approvals
_APPROVAL_COLS = (
    _A,
    t.namespaces.c.name.label("ns_name"),
    t.models.c.name.label("model_name"),
    t.versions.c.number.label("version_number"),
)
_APPROVAL_FROM = (
    _A.join(t.namespaces, _A.c.namespace_id == t.namespaces.c.id)
    .join(t.models, _A.c.model_id == t.models.c.id)
    .join(t.versions, _A.c.version_id == t.versions.c.id)
)


def insert_approval(
    tx: Tx,
    *,
    namespace_id: int,
    model_id: int,
    version_id: int,
    action: ApprovalAction,
    alias: str | None,
    alias_from: int | None,
    archive_previous: bool,
    actor: str,
    comment: str,
) -> int:
    """Record a pending request; return its id."""
    return int(
        tx.conn.execute(
            _A.insert()
            .values(
                namespace_id=namespace_id,
                model_id=model_id,
                version_id=version_id,
                action=action.value,
                alias=alias,
                alias_from=alias_from,
                archive_previous=archive_previous,
                state=ApprovalState.PENDING.value,
                requested_by=actor,
                comment=comment,
                created_at=now_us(),
            )
            .returning(_A.c.id)
        ).scalar_one()
    )


def find_pending(tx: Tx, version_id: int, action: ApprovalAction, alias: str | None) -> int | None:
    """The id of a pending request for the same transition, if any."""
    q = sa.select(_A.c.id).where(
        _A.c.version_id == version_id,
        _A.c.action == action.value,
        _A.c.state == ApprovalState.PENDING.value,
        _A.c.alias.is_(None) if alias is None else _A.c.alias == alias,
    )
    return tx.conn.execute(q.limit(1)).scalar_one_or_none()


def load_approvals(tx: Tx, ids: Sequence[int], *, for_update: bool = False) -> list[ApprovalRow]:
    """Approvals by id with their votes, in the given order.

    ``for_update`` row-locks them on PostgreSQL so concurrent reviewers of one
    request queue up; the second then sees the first's outcome.
    """
    if not ids:
        return []
    if for_update and not is_sqlite(tx.conn.engine):
        tx.conn.execute(sa.select(_A.c.id).where(_A.c.id.in_(ids)).with_for_update())
    rows = tx.conn.execute(
        sa.select(*_APPROVAL_COLS).select_from(_APPROVAL_FROM).where(_A.c.id.in_(ids))
    ).all()
    votes: dict[int, list[Vote]] = defaultdict(list)
    v = t.approval_votes
    for r in tx.conn.execute(
        sa.select(v).where(v.c.approval_id.in_(ids)).order_by(v.c.at, v.c.actor)
    ):
        votes[r.approval_id].append(Vote(r.actor, r.decision, r.comment, r.at))
    by_id = {
        r.id: ApprovalRow(
            Approval(
                id=r.id,
                namespace=r.ns_name,
                model=r.model_name,
                version=r.version_number,
                action=ApprovalAction(r.action),
                alias=r.alias,
                alias_from=r.alias_from,
                archive_previous=bool(r.archive_previous),
                state=ApprovalState(r.state),
                requested_by=r.requested_by,
                comment=r.comment,
                created_at=r.created_at,
                decided_by=r.decided_by,
                decided_at=r.decided_at,
                votes=votes.get(r.id, []),
            ),
            r.namespace_id,
            r.model_id,
            r.version_id,
        )
        for r in rows
    }
    return [by_id[i] for i in ids if i in by_id]


def add_vote(tx: Tx, approval_id: int, actor: str, decision: str, comment: str) -> None:
    """Record one reviewer's decision (the primary key keeps reviewers distinct)."""
    tx.conn.execute(
        t.approval_votes.insert().values(
            approval_id=approval_id, actor=actor, decision=decision, comment=comment, at=now_us()
        )
    )


def set_approval_state(tx: Tx, approval_id: int, state: ApprovalState, actor: str) -> None:
    """Close a request (applied, rejected, cancelled)."""
    tx.conn.execute(
        _A.update()
        .where(_A.c.id == approval_id)
        .values(state=state.value, decided_by=actor, decided_at=now_us())
    )


def list_approval_ids(
    tx: Tx, namespace_id: int, *, state: str | None, before: int | None, limit: int
) -> list[int]:
    """Request ids of a namespace, newest first, keyset-paged on id."""
    q = sa.select(_A.c.id).where(_A.c.namespace_id == namespace_id)
    if state is not None:
        q = q.where(_A.c.state == state)
    if before is not None:
        q = q.where(_A.c.id < before)
    return list(tx.conn.execute(q.order_by(_A.c.id.desc()).limit(limit)).scalars())


# -- alias history ------------------------------------------------------------

_H = t.alias_history


def _move(r: Any, namespace: str, model: str) -> AliasMove:
    return AliasMove(
        model, namespace, r.name, r.from_version, r.to_version, r.actor, r.reason, r.at
    )


def alias_move_at(
    tx: Tx, model_id: int, namespace: str, model: str, alias: str, at: int
) -> AliasMove | None:
    """The last move of ``alias`` at or before ``at`` (µs), or None."""
    r = tx.conn.execute(
        sa.select(_H)
        .where(_H.c.model_id == model_id, _H.c.name == alias, _H.c.at <= at)
        .order_by(_H.c.at.desc(), _H.c.id.desc())
        .limit(1)
    ).one_or_none()
    return None if r is None else _move(r, namespace, model)


def last_alias_move(
    tx: Tx, model_id: int, namespace: str, model: str, alias: str
) -> AliasMove | None:
    """The newest move of ``alias``, or None."""
    r = tx.conn.execute(
        sa.select(_H)
        .where(_H.c.model_id == model_id, _H.c.name == alias)
        .order_by(_H.c.id.desc())
        .limit(1)
    ).one_or_none()
    return None if r is None else _move(r, namespace, model)


# -- audit --------------------------------------------------------------------


def prefix_end(prefix: str) -> str:
    """The smallest string above every string starting with ``prefix`` (ASCII):
    its last character incremented."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def audit_events(tx: Tx, q: AuditQuery, limit: int) -> list[dict[str, Any]]:
    """Events matching ``q``, newest first (id descending), at most ``limit``.

    Actor, namespace, model and exact type compare on indexed columns
    ((actor, id), (namespace, id), (model_key, id), (type, id)), walked
    backwards so a page stops after ``limit`` matches; without them the walk
    is the primary key. A closed time range uses (at, id) and sorts the
    window. An action prefix finds its event types in the range on (type, id)
    (``>= 'alias.' AND < 'alias/'``: exact because event types are ASCII and
    ``type`` compares in byte order on both databases, ``COLLATE "C"`` on
    PostgreSQL, migration 0006), then walks each type as an exact one and
    merges the pages by id.
    """
    e = t.events
    where: list[sa.ColumnElement[bool]] = []
    prefix: str | None = None
    if q.actor is not None:
        where.append(e.c.actor == q.actor)
    if q.namespace is not None:
        where.append(e.c.namespace == q.namespace)
    if q.namespaces is not None:
        where.append(e.c.namespace.in_(q.namespaces))
    if q.model is not None:
        ns, name = q.model
        # model_key holds "ns/name" only for subjects in namespace ns.
        where.append(e.c.model_key == f"{ns}/{name}")
    if q.action is not None:
        if q.action.endswith(("*", ".")):
            prefix = q.action.rstrip("*")
        else:
            where.append(e.c.type == q.action)
    if q.since is not None:
        where.append(e.c.at >= q.since)
    if q.until is not None:
        where.append(e.c.at < q.until)
    if q.before_id is not None:
        where.append(e.c.id < q.before_id)

    def page(extra: list[sa.ColumnElement[bool]]) -> list[dict[str, Any]]:
        rows = tx.conn.execute(
            sa.select(*outbox.EVENT_COLUMNS)
            .where(*where, *extra)
            .order_by(e.c.id.desc())
            .limit(limit)
        )
        return [dict(r._mapping) for r in rows]

    if prefix is None:
        return page([])
    # A range on (type, id) would sort every match by id (75,000 alias events
    # took 190 ms at 300,000 events): instead, one backwards walk of (type,
    # id) per event type under the prefix (a handful, each found by one index
    # seek), each stopping at ``limit``, merged here.
    found: list[dict[str, Any]] = []
    for kind in _types_with_prefix(tx, prefix):
        found.extend(page([e.c.type == kind]))
    found.sort(key=lambda r: r["id"], reverse=True)
    return found[:limit]


def _types_with_prefix(tx: Tx, prefix: str) -> list[str]:
    """The distinct event types starting with ``prefix``, one index seek each
    on (type, id) (a DISTINCT would read every matching row)."""
    e = t.events
    end = prefix_end(prefix)
    out: list[str] = []
    low: sa.ColumnElement[bool] = e.c.type >= prefix
    while True:
        kind = tx.conn.execute(
            sa.select(sa.func.min(e.c.type)).where(low, e.c.type < end)
        ).scalar_one_or_none()
        if kind is None:
            return out
        out.append(kind)
        low = e.c.type > kind
