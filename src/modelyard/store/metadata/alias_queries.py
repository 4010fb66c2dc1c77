"""The statements of an alias move, compiled once per dialect (issue 10).

Moving an alias (REST v1, the MLflow door's ``set_registered_model_alias``,
approvals, rollbacks) ran seven SQLAlchemy-built statements: its current
target, the production policies (twice: the gate and the consumer-visibility
mark), the bundles following the alias, and the delete, insert and history
row of the move itself. Building and cache-keying those constructs cost more
server CPU than the rest of the move (cProfile, issue 10's head-to-head); as
:class:`~modelyard.store.metadata.prepared.Prepared` statements they are the
same SQL run straight on the driver. The one implementation of each: the
callers in ``repository``, ``governance`` and ``bundles`` run these.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from modelyard.store.metadata import tables as t
from modelyard.store.metadata.prepared import Prepared, json_value

_B = sa.bindparam


class AliasQueries:
    """An alias's target, its move and history row, the policies gating it and
    the bundles following it."""

    def __init__(self, dialect: Dialect) -> None:
        def p(stmt: sa.ClauseElement) -> Prepared:
            return Prepared(stmt, dialect)

        a, h, pol, m, f = t.aliases, t.alias_history, t.policies, t.models, t.bundle_follows
        v = t.versions
        self.target = p(
            sa.select(a.c.version_id, v.c.number)
            .join(v, v.c.id == a.c.version_id)
            .where(a.c.model_id == _B("mid"), a.c.name == _B("alias"))
        )
        self.delete = p(a.delete().where(a.c.model_id == _B("mid"), a.c.name == _B("alias")))
        self.insert = p(
            a.insert().values(
                model_id=_B("mid"),
                name=_B("alias"),
                version_id=_B("vid"),
                updated_by=_B("actor"),
                updated_at=_B("at"),
            )
        )
        self.history = p(
            h.insert().values(
                model_id=_B("mid"),
                name=_B("alias"),
                from_version=_B("from_number"),
                to_version=_B("to_number"),
                actor=_B("actor"),
                reason=_B("reason"),
                at=_B("at"),
            )
        )
        # Key 0 is the namespace's own policy; a literal column, since a
        # prepared statement takes named parameters only.
        self.policies = p(
            sa.select(pol.c.model_key, pol.c.rules).where(
                pol.c.namespace_id
                == sa.select(m.c.namespace_id).where(m.c.id == _B("mid")).scalar_subquery(),
                pol.c.model_key.in_([sa.literal_column("0"), _B("mid")]),
                pol.c.purpose == _B("purpose"),
            )
        )
        self.following = p(
            sa.select(f.c.bundle_id, f.c.role)
            .where(f.c.namespace == _B("ns"), f.c.model == _B("model"), f.c.alias == _B("alias"))
            .order_by(f.c.bundle_id, f.c.role)
        )

    def policies_of_model(
        self, conn: sa.Connection, model_id: int, purpose: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(namespace rules, model rules) of a model's ``purpose`` policy."""
        rows = self.policies.all(conn, {"mid": model_id, "purpose": purpose})
        by_key = {int(key): dict(json_value(rules)) for key, rules in rows}
        return by_key.get(0), by_key.get(model_id)
