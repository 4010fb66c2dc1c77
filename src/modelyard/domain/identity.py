"""Who is acting, and what their roles let them do. Pure rules, no I/O.

Roles are bound to a user per namespace; a binding on the global scope ``*``
applies in every namespace, and ``admin`` on ``*`` makes the instance admin.

============  =============================================================
role          may
============  =============================================================
``consumer``  ``consume``: the production view only (published versions that
              pass the production policy, and the models holding them);
              everything else in the namespace answers 404.
``reader``    ``consume`` + ``read``: every model and version in any state,
              files, alias history, events, policies, pending approvals.
``writer``    ``reader`` + ``write``: create and change models and versions,
              upload blobs, commit files, publish/archive/restore, set and
              delete aliases (protected aliases also need the production
              policy and, if it says so, an approval), request approvals.
``reviewer``  ``reader`` + ``review``: approve or reject approval requests
              (never one's own).
``admin``     every permission in the namespace, plus ``admin``: delete
              models, grant and revoke roles in the namespace, set policies,
              manage the namespace's webhooks, read its audit log.
============  =============================================================

The instance admin may do everything everywhere, and alone may create
namespaces and users, and manage other users' tokens. A principal with no role
in a namespace is refused with ``PERMISSION_DENIED`` before anything in that
namespace is looked up, so the refusal says nothing about what exists there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal

from modelyard.domain.errors import InvalidInput, PermissionDenied
from modelyard.domain.filters import And, AnyVersion, Comparison, Field, Node, Or, all_of

GLOBAL_SCOPE: Final = "*"


class Role(StrEnum):
    """A role a user holds in a namespace (or in every namespace, via ``*``)."""

    CONSUMER = "consumer"
    READER = "reader"
    WRITER = "writer"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class Permission(StrEnum):
    """What a use case needs on its target namespace."""

    CONSUME = "consume"
    READ = "read"
    WRITE = "write"
    REVIEW = "review"
    ADMIN = "admin"


_GRANTS: Final[Mapping[Role, frozenset[Permission]]] = {
    Role.CONSUMER: frozenset({Permission.CONSUME}),
    Role.READER: frozenset({Permission.CONSUME, Permission.READ}),
    Role.WRITER: frozenset({Permission.CONSUME, Permission.READ, Permission.WRITE}),
    Role.REVIEWER: frozenset({Permission.CONSUME, Permission.READ, Permission.REVIEW}),
    Role.ADMIN: frozenset(Permission),
}


_ALL: Final = frozenset(Permission)


def permissions_of(roles: Iterable[Role]) -> frozenset[Permission]:
    """The union of what ``roles`` grant."""
    result: frozenset[Permission] = frozenset()
    for role in roles:
        result |= _GRANTS[role]
    return result


def parse_role(value: str) -> Role:
    """A role from its name; ``INVALID_ROLE`` listing the allowed names otherwise."""
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(
            f"unknown role {value!r}",
            code="INVALID_ROLE",
            details={"allowed": [r.value for r in Role]},
        ) from None


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user (via a token), or a built-in superuser.

    ``roles`` maps a namespace (or ``*``) to the roles held there.
    ``superuser`` marks the built-in principals that act with every
    permission: the embedded SDK (``local``), a server running with auth off
    (``anonymous``) and internal bookkeeping (``system``).
    """

    name: str
    roles: Mapping[str, frozenset[Role]] = field(default_factory=dict)
    superuser: bool = False
    token_id: str | None = None

    @classmethod
    def local(cls, name: str = "local") -> Principal:
        """A built-in principal with every permission (embedded SDK, auth off)."""
        return cls(name=name, superuser=True)

    @property
    def is_instance_admin(self) -> bool:
        """Admin on the global scope, or a built-in superuser."""
        return self.superuser or Role.ADMIN in self.roles.get(GLOBAL_SCOPE, frozenset())

    def roles_in(self, namespace: str) -> frozenset[Role]:
        """Roles held in ``namespace``, including global ones."""
        return self.roles.get(namespace, frozenset()) | self.roles.get(GLOBAL_SCOPE, frozenset())

    def permissions_in(self, namespace: str) -> frozenset[Permission]:
        """Everything this principal may do in ``namespace``."""
        if self.is_instance_admin:
            return _ALL
        return permissions_of(self.roles_in(namespace))

    def can(self, permission: Permission, namespace: str) -> bool:
        """True if ``permission`` is granted in ``namespace``."""
        return permission in self.permissions_in(namespace)

    def production_only(self, namespace: str) -> bool:
        """True if this principal sees ``namespace`` only through the production view."""
        perms = self.permissions_in(namespace)
        return Permission.CONSUME in perms and Permission.READ not in perms

    @property
    def reads_everything(self) -> bool:
        """Full read access in every namespace (instance admin or a global read role)."""
        return Permission.READ in self.permissions_in(GLOBAL_SCOPE)

    def namespaces_with(self, permission: Permission) -> frozenset[str]:
        """Namespaces named in bindings that grant ``permission`` (not ``*``)."""
        return frozenset(
            ns
            for ns, roles in self.roles.items()
            if ns != GLOBAL_SCOPE and permission in permissions_of(roles)
        )

    @property
    def writes_somewhere(self) -> bool:
        """May write in at least one namespace (needed to upload blobs, which are shared)."""
        return self.is_instance_admin or any(
            Permission.WRITE in permissions_of(roles) for roles in self.roles.values()
        )


def require(principal: Principal, permission: Permission, namespace: str) -> None:
    """Raise ``PERMISSION_DENIED`` unless ``permission`` is granted in ``namespace``."""
    if not principal.can(permission, namespace):
        raise PermissionDenied(
            f"{principal.name!r} lacks {permission.value!r} permission on namespace {namespace!r}",
            code="PERMISSION_DENIED",
            details={"permission": permission.value, "namespace": namespace},
        )


def require_instance_admin(principal: Principal) -> None:
    """Raise ``PERMISSION_DENIED`` unless the principal is the instance admin."""
    if not principal.is_instance_admin:
        raise PermissionDenied(
            f"{principal.name!r} is not an instance admin",
            code="PERMISSION_DENIED",
            details={"permission": Permission.ADMIN.value, "namespace": GLOBAL_SCOPE},
        )


def require_readable(principal: Principal, namespace: str) -> bool:
    """Check a read of ``namespace``; return True if only the production view applies.

    ``PERMISSION_DENIED`` without any role there.
    """
    perms = principal.permissions_in(namespace)
    if Permission.READ in perms:
        return False
    if Permission.CONSUME in perms:
        return True
    require(principal, Permission.CONSUME, namespace)
    raise AssertionError("unreachable")


SYSTEM: Final = Principal.local("system")

_NAMESPACE: Final = Field("attr", "namespace")


def visibility_filter(
    principal: Principal,
    target: Literal["models", "versions"],
    *,
    namespaces: Iterable[str],
    production: Callable[[str], Node],
) -> Node | None:
    """What a search may return to ``principal``, as a filter (None: everything).

    Namespaces the principal reads are visible whole; in namespaces where it
    only consumes, versions must satisfy ``production(namespace)`` (models:
    hold at least one such version). ``namespaces`` lists every namespace; it
    is only needed for a global ``consumer`` binding. Added to the search's own
    filter, so keyset pagination stays exact (no post-filtering).
    """
    if principal.reads_everything:
        return None
    full = set(principal.namespaces_with(Permission.READ))
    consumed: set[str] = set(principal.namespaces_with(Permission.CONSUME)) - full
    if Permission.CONSUME in permissions_of(principal.roles.get(GLOBAL_SCOPE, frozenset())):
        consumed |= set(namespaces) - full
    terms: list[Node] = []
    if full:
        terms.append(Comparison(_NAMESPACE, "IN", tuple(sorted(full))))
    # Namespaces with the same production rule share one term.
    groups: dict[Node, list[str]] = {}
    for ns in sorted(consumed):
        groups.setdefault(production(ns), []).append(ns)
    for rule, names in groups.items():
        view: Node = rule if target == "versions" else AnyVersion(rule)
        terms.append(And((Comparison(_NAMESPACE, "IN", tuple(names)), view)))
    if not terms:
        return Comparison(_NAMESPACE, "IN", ())  # matches nothing
    return terms[0] if len(terms) == 1 else Or(tuple(terms))


def combine(*nodes: Node | None) -> Node | None:
    """AND of the given filters, skipping None (None if nothing is left), as one
    flat conjunction (see :func:`~modelyard.domain.filters.all_of`): a reader's
    filter then keeps the plans an admin's gets."""
    return all_of(*nodes)


# -- entities ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoleBinding:
    """``user`` holds ``role`` in ``namespace`` (``*``: every namespace)."""

    user: str
    namespace: str
    role: Role
    granted_by: str
    granted_at: int


@dataclass(frozen=True, slots=True)
class User:
    """A person or a robot that holds tokens and roles."""

    id: int
    name: str
    created_by: str
    created_at: int
    bindings: tuple[RoleBinding, ...] = ()
    disabled_at: int | None = None
    deleted_at: int | None = None

    @property
    def state(self) -> str:
        """``active``, ``disabled`` (tokens refused, roles kept) or ``deleted``
        (tokens revoked, roles gone, the name kept for the history)."""
        if self.deleted_at is not None:
            return "deleted"
        return "active" if self.disabled_at is None else "disabled"


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API token's public facts (never its secret)."""

    id: str
    user: str
    name: str
    created_by: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None

    def state(self, now: int) -> Literal["active", "expired", "revoked"]:
        """Whether the token still authenticates at ``now`` (microseconds)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def roles_by_namespace(bindings: Iterable[tuple[str, str]]) -> dict[str, frozenset[Role]]:
    """Group (namespace, role name) pairs; unknown role names are ignored."""
    acc: dict[str, set[Role]] = {}
    known = {r.value for r in Role}
    for ns, role in bindings:
        if role in known:
            acc.setdefault(ns, set()).add(Role(role))
    return {ns: frozenset(roles) for ns, roles in acc.items()}
