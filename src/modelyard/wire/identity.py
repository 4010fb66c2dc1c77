"""Users, tokens and role bindings to JSON-able dicts: the wire shape of the identity API."""

from __future__ import annotations

import time
from typing import Any

from modelyard.domain.identity import ApiToken, RoleBinding, User
from modelyard.wire.render import iso


def _time(us: int | None) -> str | None:
    return None if us is None else iso(us)


def render_token(token: ApiToken) -> dict[str, Any]:
    """Wire shape of a token (never its secret)."""
    return {
        "id": token.id,
        "user": token.user,
        "name": token.name,
        "state": token.state(time.time_ns() // 1000),
        "created_by": token.created_by,
        "created_at": iso(token.created_at),
        "expires_at": _time(token.expires_at),
        "revoked_at": _time(token.revoked_at),
        "last_used_at": _time(token.last_used_at),
    }


def render_binding(b: RoleBinding) -> dict[str, Any]:
    """Wire shape of a role binding."""
    return {
        "user": b.user,
        "namespace": b.namespace,
        "role": b.role.value,
        "granted_by": b.granted_by,
        "granted_at": iso(b.granted_at),
    }


def render_user(u: User) -> dict[str, Any]:
    """Wire shape of a user."""
    return {
        "name": u.name,
        "state": u.state,
        "created_by": u.created_by,
        "created_at": iso(u.created_at),
        "disabled_at": _time(u.disabled_at),
        "deleted_at": _time(u.deleted_at),
        "roles": [render_binding(b) for b in u.bindings],
    }
