"""Queries over users, API tokens and role bindings (issue 3).

Kept apart from ``repository.py``: the service opens a :class:`Tx` as usual and
wraps its connection in :class:`IdentityQueries`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from modelyard.domain.errors import AlreadyExists
from modelyard.domain.identity import ApiToken, Role, RoleBinding, User
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.repository import now_us

_TOKEN_COLS = (
    t.api_tokens.c.id,
    t.api_tokens.c.public_id,
    t.users.c.name.label("user"),
    t.api_tokens.c.name,
    t.api_tokens.c.created_by,
    t.api_tokens.c.created_at,
    t.api_tokens.c.expires_at,
    t.api_tokens.c.revoked_at,
    t.api_tokens.c.last_used_at,
)
_TOKEN_FROM = t.api_tokens.join(t.users, t.users.c.id == t.api_tokens.c.user_id)


def _token(r: Any) -> ApiToken:
    return ApiToken(
        r.public_id,
        r.user,
        r.name,
        r.created_by,
        r.created_at,
        r.expires_at,
        r.revoked_at,
        r.last_used_at,
    )


def _user(r: Any, bindings: Iterable[RoleBinding]) -> User:
    return User(
        r.id, r.name, r.created_by, r.created_at, tuple(bindings), r.disabled_at, r.deleted_at
    )


class IdentityQueries:
    """The identity tables' queries, on one transaction's connection."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    # -- users ------------------------------------------------------------

    def count_users(self) -> int:
        """How many users exist."""
        return int(self.conn.execute(sa.select(sa.func.count()).select_from(t.users)).scalar_one())

    def insert_user(self, name: str, *, actor: str) -> int:
        """Create a user; ``USER_ALREADY_EXISTS`` if the name is taken."""
        try:
            with self.conn.begin_nested():
                uid: int = self.conn.execute(
                    t.users.insert()
                    .values(name=name, created_by=actor, created_at=now_us())
                    .returning(t.users.c.id)
                ).scalar_one()
        except SAIntegrityError:
            raise AlreadyExists(
                f"user {name!r} already exists",
                code="USER_ALREADY_EXISTS",
                details={"user": name},
            ) from None
        return uid

    def get_user(self, name: str) -> User | None:
        """One user with their role bindings, by name (deleted ones too)."""
        row = self.conn.execute(sa.select(t.users).where(t.users.c.name == name)).one_or_none()
        if row is None:
            return None
        return _user(row, self.list_bindings(user=name))

    def set_user_state(
        self, user_id: int, *, disabled_at: int | None, deleted_at: int | None = None
    ) -> None:
        """Mark a user disabled (or enabled again: None) and/or deleted."""
        self.conn.execute(
            t.users.update()
            .where(t.users.c.id == user_id)
            .values(disabled_at=disabled_at, deleted_at=deleted_at)
        )

    def revoke_user_tokens(self, user_id: int, at: int) -> list[str]:
        """Revoke every live token of a user; their public ids."""
        c = t.api_tokens.c
        live = sa.and_(c.user_id == user_id, c.revoked_at.is_(None))
        ids = list(self.conn.execute(sa.select(c.public_id).where(live)).scalars())
        self.conn.execute(t.api_tokens.update().where(live).values(revoked_at=at))
        return ids

    def drop_bindings(self, user_id: int) -> None:
        """Remove every role binding of a user."""
        self.conn.execute(t.role_bindings.delete().where(t.role_bindings.c.user_id == user_id))

    def user_id(self, name: str) -> int | None:
        """The id of a user by name."""
        return self.conn.execute(
            sa.select(t.users.c.id).where(t.users.c.name == name)
        ).scalar_one_or_none()

    def list_users(self) -> list[User]:
        """Every user with their role bindings, by name."""
        bindings = defaultdict(list)
        for b in self.list_bindings():
            bindings[b.user].append(b)
        rows = self.conn.execute(sa.select(t.users).order_by(t.users.c.name))
        return [_user(r, bindings.get(r.name, ())) for r in rows]

    # -- tokens -----------------------------------------------------------

    def insert_token(
        self,
        *,
        user_id: int,
        public_id: str,
        name: str,
        secret_hash: str,
        actor: str,
        expires_at: int | None,
    ) -> ApiToken:
        """Store a new token (its hash only)."""
        self.conn.execute(
            t.api_tokens.insert().values(
                public_id=public_id,
                user_id=user_id,
                name=name,
                secret_hash=secret_hash,
                created_by=actor,
                created_at=now_us(),
                expires_at=expires_at,
            )
        )
        found = self.get_token(public_id)
        assert found is not None
        return found

    def get_token(self, public_id: str) -> ApiToken | None:
        """A token's public facts by its public id."""
        row = self.conn.execute(
            sa.select(*_TOKEN_COLS)
            .select_from(_TOKEN_FROM)
            .where(t.api_tokens.c.public_id == public_id)
        ).one_or_none()
        return None if row is None else _token(row)

    def list_tokens(self, user: str | None) -> list[ApiToken]:
        """Tokens of one user (or all), newest first."""
        q = sa.select(*_TOKEN_COLS).select_from(_TOKEN_FROM)
        if user is not None:
            q = q.where(t.users.c.name == user)
        q = q.order_by(t.api_tokens.c.id.desc())
        return [_token(r) for r in self.conn.execute(q)]

    def revoke_token(self, public_id: str, at: int) -> None:
        """Mark a token revoked (the row stays, for the audit trail)."""
        self.conn.execute(
            t.api_tokens.update()
            .where(t.api_tokens.c.public_id == public_id, t.api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )

    def token_for_auth(
        self, public_id: str
    ) -> tuple[ApiToken, str, list[tuple[str, str]], bool] | None:
        """(token, its secret hash, the owner's (namespace, role) bindings, whether
        the owner is active (neither disabled nor deleted)), one query.

        The unique index on ``public_id`` finds the row; bindings come along
        through a left join on their primary key's leading column.
        """
        rb = t.role_bindings
        rows = self.conn.execute(
            sa.select(
                *_TOKEN_COLS,
                t.api_tokens.c.secret_hash,
                t.users.c.disabled_at,
                t.users.c.deleted_at,
                rb.c.namespace,
                rb.c.role,
            )
            .select_from(_TOKEN_FROM.outerjoin(rb, rb.c.user_id == t.api_tokens.c.user_id))
            .where(t.api_tokens.c.public_id == public_id)
        ).all()
        if not rows:
            return None
        bindings = [(r.namespace, r.role) for r in rows if r.namespace is not None]
        first = rows[0]
        active = first.disabled_at is None and first.deleted_at is None
        return _token(first), first.secret_hash, bindings, active

    def touch_token(self, public_id: str, at: int, *, not_since: int) -> None:
        """Record use at ``at`` unless already recorded at or after ``not_since``."""
        c = t.api_tokens.c
        self.conn.execute(
            t.api_tokens.update()
            .where(
                c.public_id == public_id,
                sa.or_(c.last_used_at.is_(None), c.last_used_at < not_since),
            )
            .values(last_used_at=at)
        )

    # -- role bindings ----------------------------------------------------

    def grant(self, user_id: int, namespace: str, role: Role, *, actor: str) -> bool:
        """Bind ``role``; False if the binding existed already."""
        rb = t.role_bindings
        exists = self.conn.execute(
            sa.select(rb.c.role).where(
                rb.c.user_id == user_id, rb.c.namespace == namespace, rb.c.role == role.value
            )
        ).first()
        if exists is not None:
            return False
        self.conn.execute(
            rb.insert().values(
                user_id=user_id,
                namespace=namespace,
                role=role.value,
                granted_by=actor,
                granted_at=now_us(),
            )
        )
        return True

    def revoke(self, user_id: int, namespace: str, role: Role) -> bool:
        """Remove a binding; False if there was none."""
        rb = t.role_bindings
        result = self.conn.execute(
            rb.delete().where(
                rb.c.user_id == user_id, rb.c.namespace == namespace, rb.c.role == role.value
            )
        )
        return bool(result.rowcount)

    def list_bindings(
        self, *, user: str | None = None, namespace: str | None = None
    ) -> list[RoleBinding]:
        """Role bindings, optionally of one user and/or one namespace."""
        rb = t.role_bindings
        q = sa.select(
            t.users.c.name, rb.c.namespace, rb.c.role, rb.c.granted_by, rb.c.granted_at
        ).select_from(rb.join(t.users, t.users.c.id == rb.c.user_id))
        if user is not None:
            q = q.where(t.users.c.name == user)
        if namespace is not None:
            q = q.where(rb.c.namespace == namespace)
        q = q.order_by(rb.c.namespace, t.users.c.name, rb.c.role)
        return [
            RoleBinding(r.name, r.namespace, Role(r.role), r.granted_by, r.granted_at)
            for r in self.conn.execute(q)
            if r.role in Role.__members__.values()
        ]
