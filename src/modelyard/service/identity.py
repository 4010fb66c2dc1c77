"""Users, API tokens, role bindings, and turning a bearer token into a Principal.

Tokens
------
A token reads ``myd_<public id>_<secret>``: the prefix makes leaked tokens easy
to spot (secret scanners, logs), the 12-hex-digit public id names the token in
listings and finds its row through a unique index, and the secret is 32 random
bytes (256 bits, URL-safe base64). Only SHA-256 of the whole token string is
stored, and it is compared with :func:`hmac.compare_digest`.

Why plain SHA-256 and not bcrypt/argon2: slow hashes protect *guessable*
secrets (passwords) from offline guessing after a database leak. A 256-bit
random secret cannot be guessed at any hashing speed, so a slow hash would
only cost ~50-100 ms of CPU per request on a path meant to serve thousands of
requests a second. A keyed hash (HMAC with a server-side pepper) would add
nothing against guessing either, and would need a key shared by every replica
and rotated with care; so the hash is unkeyed.

Tokens given from outside (``MODELYARD_ADMIN_TOKEN``) may have any form of at
least 32 characters; their public id is derived from their hash.

Lookups are cached in-process for :data:`CACHE_SECONDS` (``auth_cache_seconds``):
a revocation or role change made through this process applies at once (the
cache is dropped). One made through another replica (or another worker, or
the CLI) reaches this process through the outbox: a server calls
:meth:`IdentityService.sync_with_outbox` every ``auth_sync_interval`` seconds
(``events/cachesync.py``), which drops the cache when an event that can take
a right away (:data:`INVALIDATING_EVENTS`) was committed since its last call;
the cache lifetime is only the backstop should that reader fail. Expiry is checked
on every request against the cached expiry time. ``last_used_at`` is written
at most once a minute per token (:data:`TOUCH_INTERVAL_US`), so reads do not
turn into writes; it is bookkeeping, not a governed change, and writes no
event. Every other change here (users, tokens, roles, the bootstrap) writes
exactly one event in its transaction; instance-wide ones under namespace ``*``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from modelyard.domain.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from modelyard.domain.identity import (
    GLOBAL_SCOPE,
    SYSTEM,
    ApiToken,
    Permission,
    Principal,
    Role,
    RoleBinding,
    User,
    parse_role,
    require,
    require_instance_admin,
    roles_by_namespace,
)
from modelyard.domain.names import validate_name
from modelyard.service.registry import RegistryService
from modelyard.store.metadata.ports import IdentityQueries, RegistryTx, now_us

TOKEN_PREFIX: Final = "myd_"
CACHE_SECONDS: Final = 5.0
CACHE_MAX_ENTRIES: Final = 10_000
TOUCH_INTERVAL_US: Final = 60 * 1_000_000
MAX_TOKEN_LENGTH: Final = 512
MIN_EXTERNAL_TOKEN_LENGTH: Final = 32
MAX_EXPIRES_IN: Final = 10 * 366 * 86_400
BOOTSTRAP_USER: Final = "admin"
INVALIDATING_EVENTS: Final = (
    "token.revoked",
    "user.disabled",
    "user.enabled",
    "user.deleted",
    "role.granted",
    "role.revoked",
)
"""Events after which a cached principal may be wrong (a grant changes the
roles a cached principal holds as surely as a revocation does)."""
_PUBLIC_ID_RE: Final = re.compile(r"^[0-9a-f]{12}$")


def hash_token(token: str) -> str:
    """The stored form of a token: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def public_id_of(token: str) -> str:
    """The public id a token string names (derived from the hash for foreign forms)."""
    if token.startswith(TOKEN_PREFIX):
        pid, sep, _secret = token[len(TOKEN_PREFIX) :].partition("_")
        if sep and _PUBLIC_ID_RE.fullmatch(pid):
            return pid
    return hash_token(token)[:16]


def new_token() -> tuple[str, str]:
    """A fresh (token, public id)."""
    pid = secrets.token_hex(6)
    return f"{TOKEN_PREFIX}{pid}_{secrets.token_urlsafe(32)}", pid


def _unauthenticated() -> Unauthenticated:
    # One answer for missing, malformed, unknown, expired and revoked tokens:
    # which one it was is none of the caller's business.
    return Unauthenticated(
        "a valid API token is required (Authorization: Bearer <token>)", code="UNAUTHENTICATED"
    )


@dataclass(slots=True)
class _Cached:
    secret_hash: str
    token: ApiToken
    principal: Principal
    fetched: float  # time.monotonic()
    last_used: int | None
    user_active: bool = True  # False: the owner is disabled or deleted


class IdentityService:
    """Users, tokens and roles over the registry's metadata store."""

    def __init__(self, registry: RegistryService, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.registry = registry
        self.db = registry.db
        self.cache_seconds = cache_seconds
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        # Bumped by every forget: a lookup that read the database before a
        # forget must not put what it read into the cache after it (it may
        # predate the change that caused the forget).
        self._generation = 0
        self._synced_to: int | None = None  # outbox position of sync_with_outbox

    def _forget(self, public_id: str | None = None) -> None:
        with self._lock:
            self._generation += 1
            if public_id is None:
                self._cache.clear()
            else:
                self._cache.pop(public_id, None)

    def sync_with_outbox(self) -> bool:
        """Drop the cache if a right-removing change was committed anywhere since
        the last call (by any process on this database); True if it was dropped.

        The first call notes where the outbox is and drops what was cached
        before (it may predate a change below that position). Event ids are
        in commit order, so reading past the last id seen never skips a change.
        Requires: nothing (internal).
        """
        after = self._synced_to
        with self.db.read() as tx:
            # The head first: ids are in commit order, so every event up to it
            # is committed; one committed after this read is the next call's.
            head = tx.outbox.max_event_id()
            # Whether there is any: the whole cache goes, so one is enough.
            changed = after is None or bool(
                tx.outbox.list_events(after=after, limit=1, types=INVALIDATING_EVENTS)
            )
        if changed:
            self._forget()
        self._synced_to = head if after is None else max(after, head)
        return changed

    # -- authentication -----------------------------------------------------

    def authenticate_cached(self, token: str | None) -> Principal | None:
        """:meth:`authenticate` from the in-process cache alone, without I/O.

        None when the database must be asked (unknown or stale entry, or the
        once-a-minute ``last_used_at`` write is due); raises like
        :meth:`authenticate` when the cached facts already refuse the token.
        """
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise _unauthenticated()
        entry = self._cache.get(public_id_of(token))
        if entry is None or time.monotonic() - entry.fetched > self.cache_seconds:
            return None
        if not hmac.compare_digest(entry.secret_hash, hash_token(token)):
            raise _unauthenticated()
        now = now_us()
        if entry.token.state(now) != "active" or not entry.user_active:
            raise _unauthenticated()
        if entry.last_used is None or now - entry.last_used >= TOUCH_INTERVAL_US:
            return None
        return entry.principal

    def authenticate(self, token: str | None) -> Principal:
        """The principal a bearer token stands for; ``UNAUTHENTICATED`` otherwise.

        No permission needed (this is how permissions are found).
        """
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise _unauthenticated()
        pid = public_id_of(token)
        digest = hash_token(token)
        entry = self._cache.get(pid)
        if entry is None or time.monotonic() - entry.fetched > self.cache_seconds:
            entry = self._load(pid)
        if entry is None or not hmac.compare_digest(entry.secret_hash, digest):
            raise _unauthenticated()
        now = now_us()
        if entry.token.state(now) != "active" or not entry.user_active:
            raise _unauthenticated()
        if entry.last_used is None or now - entry.last_used >= TOUCH_INTERVAL_US:
            entry.last_used = now
            with self.db.write() as tx:
                tx.identity.touch_token(pid, now, not_since=now - TOUCH_INTERVAL_US)
        return entry.principal

    def _load(self, pid: str) -> _Cached | None:
        generation = self._generation
        with self.db.read() as tx:
            found = tx.identity.token_for_auth(pid)
        if found is None:
            return None  # misses are not cached: a flood of bad tokens must not evict
        token, secret_hash, bindings, user_active = found
        principal = Principal(token.user, roles_by_namespace(bindings), token_id=token.id)
        entry = _Cached(
            secret_hash, token, principal, time.monotonic(), token.last_used_at, user_active
        )
        with self._lock:
            if generation != self._generation:
                return entry  # a forget came between: use it once, keep it not
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
            self._cache[pid] = entry
        return entry

    def bootstrap(self, admin_token: str | None) -> str | None:
        """On an empty user table, create ``admin`` (instance admin) with a token.

        The token is ``admin_token`` if given (``MODELYARD_ADMIN_TOKEN``), else a
        new one, which is returned so the caller can print it once. Returns
        None when users exist already (or another replica won the race).
        """
        if admin_token is not None and not (
            MIN_EXTERNAL_TOKEN_LENGTH <= len(admin_token) <= MAX_TOKEN_LENGTH
            and admin_token.isprintable()
            and " " not in admin_token
        ):
            raise InvalidInput(
                f"MODELYARD_ADMIN_TOKEN must be {MIN_EXTERNAL_TOKEN_LENGTH}-"
                f"{MAX_TOKEN_LENGTH} printable characters without spaces",
                code="INVALID_TOKEN",
            )
        with self.db.read() as tx:
            if tx.identity.count_users():
                return None
        if admin_token is not None:
            plaintext, pid = admin_token, public_id_of(admin_token)
        else:
            plaintext, pid = new_token()

        def op(tx: RegistryTx) -> bool:
            q = tx.identity
            if q.count_users():
                return False
            uid = q.insert_user(BOOTSTRAP_USER, actor=SYSTEM.name)
            q.grant(uid, GLOBAL_SCOPE, Role.ADMIN, actor=SYSTEM.name)
            token = q.insert_token(
                user_id=uid,
                public_id=pid,
                name="bootstrap",
                secret_hash=hash_token(plaintext),
                actor=SYSTEM.name,
                expires_at=None,
            )
            tx.append_event(
                "user.bootstrapped",
                actor=SYSTEM.name,
                namespace=GLOBAL_SCOPE,
                subject=f"user/{BOOTSTRAP_USER}",
                payload={
                    "user": BOOTSTRAP_USER,
                    "roles": [{"namespace": GLOBAL_SCOPE, "role": Role.ADMIN.value}],
                    "token": _token_payload(token),
                    "from_env": admin_token is not None,
                },
            )
            return True

        try:
            created = self.registry.run_in_transaction(op)
        except AlreadyExists:  # another replica bootstrapped at the same moment
            return None
        return plaintext if created and admin_token is None else None

    # -- users --------------------------------------------------------------

    def whoami(self, *, actor: Principal) -> dict[str, Any]:
        """Who the caller is and what roles it holds. Requires: nothing."""
        return {
            "name": actor.name,
            "instance_admin": actor.is_instance_admin,
            "builtin": actor.superuser,
            "token_id": actor.token_id,
            "roles": {ns: sorted(r.value for r in roles) for ns, roles in actor.roles.items()},
        }

    def create_user(self, name: str, *, actor: Principal) -> User:
        """Create a user (no roles, no tokens yet). Requires: instance admin."""
        require_instance_admin(actor)
        validate_name(name, kind="user")

        def op(tx: RegistryTx) -> User:
            q = tx.identity
            old = q.get_user(name)
            if old is not None and old.deleted_at is not None:
                # The history names the old user; a new one under that name
                # would inherit its entries in every audit read.
                raise AlreadyExists(
                    f"user {name!r} was deleted; the names of deleted users are not "
                    "reused (the history still names them): choose another name",
                    code="USER_ALREADY_EXISTS",
                    details={"user": name, "state": "deleted"},
                )
            q.insert_user(name, actor=actor.name)
            tx.append_event(
                "user.created",
                actor=actor.name,
                namespace=GLOBAL_SCOPE,
                subject=f"user/{name}",
                payload={"user": name},
            )
            return next(u for u in q.list_users() if u.name == name)

        return self.registry.run_in_transaction(op)

    def list_users(self, *, actor: Principal) -> list[User]:
        """Every user with their role bindings. Requires: instance admin."""
        require_instance_admin(actor)
        with self.db.read() as tx:
            return tx.identity.list_users()

    def _user_id(self, q: IdentityQueries, name: str, *, live: bool = False) -> int:
        """A user's id; a deleted user is not found; ``live`` also refuses a
        disabled one (``USER_DISABLED``)."""
        user = q.get_user(name) if isinstance(name, str) else None
        if user is None or user.deleted_at is not None:
            raise NotFound(
                f"user {name!r} not found", code="USER_NOT_FOUND", details={"user": name}
            )
        if live and user.disabled_at is not None:
            raise Conflict(
                f"user {name!r} is disabled: enable it first (`modelyard user enable {name}`)",
                code="USER_DISABLED",
                details={"user": name, "state": user.state},
            )
        return user.id

    def _target_user(self, q: IdentityQueries, name: str, actor: Principal) -> User:
        """The user an admin disables, enables or deletes (not the caller)."""
        validate_name(name, kind="user")
        user = q.get_user(name)
        if user is None or user.deleted_at is not None:
            raise NotFound(
                f"user {name!r} not found", code="USER_NOT_FOUND", details={"user": name}
            )
        if name == actor.name:
            raise Conflict(
                "you cannot disable or delete yourself: ask another instance admin",
                code="SELF_LOCKOUT",
                details={"user": name},
            )
        return user

    def disable_user(self, name: str, *, actor: Principal) -> User:
        """Disable a user: every token of theirs is refused from the next request
        on (401), in this process at once and in other server processes within
        ``auth_sync_interval`` (see the module docstring); roles and tokens are
        kept for :meth:`enable_user`.
        Idempotent. Writes ``user.disabled``. Requires: instance admin.
        """
        return self._set_disabled(name, True, actor=actor)

    def enable_user(self, name: str, *, actor: Principal) -> User:
        """Undo :meth:`disable_user` (idempotent). Writes ``user.enabled``.
        Requires: instance admin."""
        return self._set_disabled(name, False, actor=actor)

    def _set_disabled(self, name: str, disabled: bool, *, actor: Principal) -> User:
        """Disable or enable ``name`` in one transaction with its event; a user
        already in that state is returned unchanged (no event)."""
        require_instance_admin(actor)
        before, after_state = ("active", "disabled") if disabled else ("disabled", "active")

        def op(tx: RegistryTx) -> User:
            q = tx.identity
            user = self._target_user(q, name, actor)
            if (user.disabled_at is not None) == disabled:
                return user
            q.set_user_state(user.id, disabled_at=now_us() if disabled else None)
            tx.append_event(
                "user.disabled" if disabled else "user.enabled",
                actor=actor.name,
                namespace=GLOBAL_SCOPE,
                subject=f"user/{name}",
                payload={
                    "user": name,
                    "before": {"state": before},
                    "after": {"state": after_state},
                },
            )
            after = q.get_user(name)
            assert after is not None
            return after

        try:
            return self.registry.run_in_transaction(op)
        finally:
            self._forget()

    def delete_user(self, name: str, *, actor: Principal) -> None:
        """Delete a user: their tokens are revoked (401 from the next request on),
        their role bindings removed, in one transaction that writes
        ``user.deleted`` (with the tokens and roles it took).

        The row stays, marked deleted: history (audit, events, alias history)
        keeps naming the user, and the name is not given to a new user
        (``USER_ALREADY_EXISTS``), so old entries cannot be mistaken for the
        newcomer's. Requires: instance admin.
        """
        require_instance_admin(actor)

        def op(tx: RegistryTx) -> None:
            q = tx.identity
            user = self._target_user(q, name, actor)
            now = now_us()
            tokens = q.revoke_user_tokens(user.id, now)
            q.drop_bindings(user.id)
            q.set_user_state(user.id, disabled_at=user.disabled_at or now, deleted_at=now)
            tx.append_event(
                "user.deleted",
                actor=actor.name,
                namespace=GLOBAL_SCOPE,
                subject=f"user/{name}",
                payload={
                    "user": name,
                    "revoked_tokens": tokens,
                    "removed_roles": [
                        {"namespace": b.namespace, "role": b.role.value} for b in user.bindings
                    ],
                    "before": {"state": user.state},
                    "after": {"state": "deleted"},
                },
            )

        try:
            self.registry.run_in_transaction(op)
        finally:
            self._forget()

    # -- tokens -------------------------------------------------------------

    def create_token(
        self,
        name: str,
        *,
        actor: Principal,
        user: str | None = None,
        expires_in: int | None = None,
    ) -> tuple[ApiToken, str]:
        """Create a token; returns it and its plaintext, which is never shown again.

        Requires: the token is the caller's own, or the caller is instance admin.
        """
        owner = user or (None if actor.superuser else actor.name)
        if owner is None:
            raise InvalidInput("name the user the token is for", code="INVALID_INPUT")
        if owner != actor.name:
            require_instance_admin(actor)
        _check_token_name(name)
        expires_at = None
        if expires_in is not None:
            if (
                not isinstance(expires_in, int)
                or isinstance(expires_in, bool)
                or not 1 <= expires_in <= MAX_EXPIRES_IN
            ):
                raise InvalidInput(
                    f"expires_in must be 1..{MAX_EXPIRES_IN} seconds", code="INVALID_EXPIRY"
                )
            expires_at = now_us() + expires_in * 1_000_000
        plaintext, pid = new_token()

        def op(tx: RegistryTx) -> ApiToken:
            q = tx.identity
            token = q.insert_token(
                user_id=self._user_id(q, owner, live=True),
                public_id=pid,
                name=name,
                secret_hash=hash_token(plaintext),
                actor=actor.name,
                expires_at=expires_at,
            )
            tx.append_event(
                "token.created",
                actor=actor.name,
                namespace=GLOBAL_SCOPE,
                subject=f"token/{pid}",
                payload=_token_payload(token),
            )
            return token

        return self.registry.run_in_transaction(op), plaintext

    def list_tokens(
        self, *, actor: Principal, user: str | None = None, all_users: bool = False
    ) -> list[ApiToken]:
        """Tokens of the caller (default), of ``user``, or of everyone.

        Requires: own tokens, nothing; others', instance admin.
        """
        if all_users or (user is not None and user != actor.name):
            require_instance_admin(actor)
        elif actor.superuser and user is None:
            all_users = True
        with self.db.read() as tx:
            return tx.identity.list_tokens(None if all_users else (user or actor.name))

    def revoke_token(self, token_id: str, *, actor: Principal) -> ApiToken:
        """Revoke a token at once (idempotent). Requires: own token, or instance admin.

        Another user's token answers ``TOKEN_NOT_FOUND`` to a non-admin, as if
        it did not exist.
        """
        if not isinstance(token_id, str) or len(token_id) > 32:
            raise InvalidInput("invalid token id", code="INVALID_INPUT")

        def op(tx: RegistryTx) -> ApiToken:
            q = tx.identity
            token = q.get_token(token_id)
            if token is None or (token.user != actor.name and not actor.is_instance_admin):
                raise NotFound(
                    f"token {token_id!r} not found",
                    code="TOKEN_NOT_FOUND",
                    details={"token_id": token_id},
                )
            if token.revoked_at is not None:
                return token
            q.revoke_token(token_id, now_us())
            after = q.get_token(token_id)
            assert after is not None
            tx.append_event(
                "token.revoked",
                actor=actor.name,
                namespace=GLOBAL_SCOPE,
                subject=f"token/{token_id}",
                payload=_token_payload(after),
            )
            return after

        try:
            return self.registry.run_in_transaction(op)
        finally:
            self._forget(token_id)

    # -- role bindings -------------------------------------------------------

    def _check_binding_admin(self, actor: Principal, namespace: str) -> None:
        if namespace == GLOBAL_SCOPE:
            require_instance_admin(actor)
        else:
            validate_name(namespace, kind="namespace")
            require(actor, Permission.ADMIN, namespace)

    def grant_role(
        self, user: str, role: str, *, namespace: str, actor: Principal
    ) -> tuple[RoleBinding, bool]:
        """Bind ``role`` to ``user`` in ``namespace``; (binding, newly created).

        Requires: admin on the namespace; on ``*``, instance admin.
        """
        r = parse_role(role)
        self._check_binding_admin(actor, namespace)

        def op(tx: RegistryTx) -> tuple[RoleBinding, bool]:
            q = tx.identity
            uid = self._user_id(q, user)
            if namespace != GLOBAL_SCOPE:
                self.registry.namespace_id(tx, namespace)
            created = q.grant(uid, namespace, r, actor=actor.name)
            if created:
                tx.append_event(
                    "role.granted",
                    actor=actor.name,
                    namespace=namespace,
                    subject=f"user/{user}",
                    payload={"user": user, "namespace": namespace, "role": r.value},
                )
            binding = next(
                b for b in q.list_bindings(user=user, namespace=namespace) if b.role is r
            )
            return binding, created

        try:
            return self.registry.run_in_transaction(op)
        finally:
            self._forget()

    def revoke_role(self, user: str, role: str, *, namespace: str, actor: Principal) -> None:
        """Remove a role binding. Requires: admin on the namespace; on ``*``, instance admin."""
        r = parse_role(role)
        self._check_binding_admin(actor, namespace)

        def op(tx: RegistryTx) -> None:
            q = tx.identity
            uid = self._user_id(q, user)
            if not q.revoke(uid, namespace, r):
                raise NotFound(
                    f"{user!r} holds no {r.value!r} role in {namespace!r}",
                    code="ROLE_BINDING_NOT_FOUND",
                    details={"user": user, "namespace": namespace, "role": r.value},
                )
            tx.append_event(
                "role.revoked",
                actor=actor.name,
                namespace=namespace,
                subject=f"user/{user}",
                payload={"user": user, "namespace": namespace, "role": r.value},
            )

        try:
            self.registry.run_in_transaction(op)
        finally:
            self._forget()

    def list_roles(
        self, *, actor: Principal, namespace: str | None = None, user: str | None = None
    ) -> list[RoleBinding]:
        """Role bindings, filtered by namespace and/or user.

        Requires: one's own bindings, nothing; a namespace's, admin on it;
        anything else, instance admin.
        """
        ns_admin = namespace not in (None, GLOBAL_SCOPE) and actor.can(
            Permission.ADMIN, str(namespace)
        )
        if actor.is_instance_admin or ns_admin:
            pass
        elif user in (None, actor.name):
            user = actor.name
        else:
            raise PermissionDenied(
                "only admins may list other users' roles", code="PERMISSION_DENIED"
            )
        with self.db.read() as tx:
            return tx.identity.list_bindings(user=user, namespace=namespace)


def _check_token_name(name: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 128 or not name.isprintable():
        raise InvalidInput(
            "token name must be 1-128 printable characters", code="INVALID_TOKEN_NAME"
        )


def _token_payload(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "user": token.user,
        "name": token.name,
        "expires_at": token.expires_at,
        "revoked_at": token.revoked_at,
    }
