"""``Registry``: the SDK's one entry point."""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from modelyard.client.backends import (
    VERIFY_WAIT_BASE,
    VERIFY_WAIT_RATE,
    Backend,
    EmbeddedBackend,
    RemoteBackend,
    Target,
)
from modelyard.client.bundles import BundleMixin
from modelyard.client.deployments import DeploymentMixin
from modelyard.client.errors import ServerError, error_from_response
from modelyard.client.families import FamilyMixin
from modelyard.client.governance import GovernanceMixin
from modelyard.client.paging import walk_pages
from modelyard.client.reference_stats import stats_bytes
from modelyard.client.transfer import (
    BlobCache,
    HashCache,
    LocalFile,
    Progress,
    collect,
    copy_checked_into,
    copy_into,
    link_into,
    prepare,
    safe_destination,
    verify_file,
)
from modelyard.domain.errors import InvalidInput, ModelyardError, NotFound
from modelyard.domain.monitoring import STATS_PATH, ReferenceStats
from modelyard.domain.references import DEFAULT_NAMESPACE, Reference, parse_reference


@dataclass(frozen=True)
class ModelInfo:
    """A model as the SDK returns it."""

    namespace: str
    name: str
    description: str
    tags: dict[str, str]
    metadata: dict[str, Any]
    archived: bool
    latest_version: int | None
    created_at: str
    updated_at: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> ModelInfo:
        """Build from the API's JSON."""
        return cls(
            d["namespace"],
            d["name"],
            d["description"],
            d["tags"],
            d["metadata"],
            d["archived"],
            d["latest_version"],
            d["created_at"],
            d["updated_at"],
            d,
        )


@dataclass(frozen=True)
class VersionInfo:
    """A version as the SDK returns it."""

    ref: str
    namespace: str
    model: str
    version: int
    state: str
    framework: str | None
    format: str | None
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    metadata: dict[str, Any]
    aliases: list[str]
    lineage: dict[str, Any]
    files: list[dict[str, Any]] | None
    total_size: int
    created_at: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def resources(self) -> list[dict[str, Any]]:
        """The version's resources (files under ``resources/``), each with its
        ``name`` (the path below ``resources/``); empty without a manifest."""
        return list(self.raw.get("resources") or [])

    @property
    def pending_files(self) -> list[dict[str, Any]]:
        """Files whose blob the registry is still verifying (``path``,
        ``digest``, ``state``: ``pending`` or ``failed`` with its ``error``):
        the version stays ``draft`` until none is left. Empty when none, or
        when the answer did not load them (lists, searches)."""
        return list(self.raw.get("pending_files") or [])

    @property
    def pickle_exception(self) -> dict[str, Any] | None:
        """The admin's exception letting model servers unpickle this version
        (``by``, ``at``, ``reason``, ``digests``), None when there is none."""
        found = self.raw.get("pickle_exception")
        return dict(found) if found else None

    @property
    def model_files(self) -> list[dict[str, Any]]:
        """The manifest without the resources: the model's own files."""
        names = {r["path"] for r in self.resources}
        return [f for f in self.files or [] if f["path"] not in names]

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> VersionInfo:
        """Build from the API's JSON."""
        return cls(
            d["ref"],
            d["namespace"],
            d["model"],
            d["version"],
            d["state"],
            d["framework"],
            d["format"],
            d["metrics"],
            d["params"],
            d["tags"],
            d["metadata"],
            d["aliases"],
            d["lineage"],
            d.get("files"),
            d["total_size"],
            d["created_at"],
            d,
        )


@dataclass(frozen=True)
class EventInfo:
    """One outbox event: every registry change is one."""

    id: int
    type: str
    at: str
    actor: str
    namespace: str
    subject: str
    payload: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> EventInfo:
        """Build from the API's JSON."""
        return cls(
            d["id"], d["type"], d["at"], d["actor"], d["namespace"], d["subject"], d["payload"], d
        )


@dataclass(frozen=True)
class WebhookInfo:
    """A webhook subscription. ``secret`` is set only by create and rotate."""

    id: int
    url: str
    event_types: list[str]
    namespace: str | None
    model: str | None
    active: bool
    disabled_reason: str | None
    secret: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> WebhookInfo:
        """Build from the API's JSON."""
        return cls(
            d["id"],
            d["url"],
            d["event_types"],
            d["namespace"],
            d["model"],
            d["active"],
            d["disabled_reason"],
            d.get("secret"),
            d,
        )


@dataclass(frozen=True)
class DeliveryInfo:
    """One event sent (or being sent) to one webhook, with every attempt."""

    id: int
    webhook_id: int
    message_id: str
    event_id: int
    event_type: str
    status: str
    next_attempt_at: str | None
    attempts: list[dict[str, Any]]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> DeliveryInfo:
        """Build from the API's JSON."""
        return cls(
            d["id"],
            d["webhook_id"],
            d["message_id"],
            d["event_id"],
            d["event_type"],
            d["status"],
            d["next_attempt_at"],
            d["attempts"],
            d,
        )


@dataclass(frozen=True)
class PushCallbacks:
    """Progress hooks for a push: phase start (name, total bytes) and bytes done."""

    start: Callable[[str, int], None] | None = None
    advance: Progress | None = None


def default_cache_dir() -> Path:
    """Where pulled blobs and digests of pushed files are kept unless a
    ``cache_dir`` is given: ``MODELYARD_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/modelyard``, else ``~/.cache/modelyard``."""
    explicit = os.environ.get("MODELYARD_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelyard"


_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):\d{1,5}(?:/.*)?$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def registry_target(url_or_path: str) -> str:
    """The URL or data directory a ``Registry`` argument means.

    ``host:port`` (``127.0.0.1:8080``, ``registry.internal:80/prefix``,
    ``[::1]:8080``) is taken as ``http://host:port``: nobody names a data
    directory like that, and treating it as one silently made an empty
    registry in a directory of that name. Any other scheme than http(s) is
    refused; everything else is a data directory.
    """
    if url_or_path.startswith(("http://", "https://")):
        return url_or_path
    if _SCHEME.match(url_or_path):
        raise InvalidInput(
            f"unsupported registry URL {url_or_path!r}: use http(s)://host:port "
            "or a data directory path",
            code="INVALID_REGISTRY",
            details={"registry": url_or_path},
        )
    if _HOST_PORT.fullmatch(url_or_path):
        return f"http://{url_or_path}"
    return url_or_path


class Registry(GovernanceMixin, FamilyMixin, BundleMixin, DeploymentMixin):
    """A model registry, remote (``http(s)://...``) or embedded (a data directory path).

    Nothing here touches the network or disk until a method is called, except
    that an embedded registry opens (and if needed creates) its database.
    Governance methods (policies, approvals, rollback, audit) come from
    :class:`~modelyard.client.governance.GovernanceMixin`; family queries
    (family, variants, variant, ancestry) from
    :class:`~modelyard.client.families.FamilyMixin`; bundles (create, pin,
    ``bundle(ref).pull/ready``) from :class:`~modelyard.client.bundles.BundleMixin`.

    ``upload_concurrency``: parts of one big upload sent straight to the
    object store at once, when the server offers presigned multipart uploads.
    """

    _b: Backend

    def __init__(
        self,
        url_or_path: str | os.PathLike[str] = ".modelyard",
        *,
        token: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        backend: Backend | None = None,
        upload_concurrency: int = 4,
    ) -> None:
        target = registry_target(os.fspath(url_or_path))
        if backend is not None:
            self._b = backend
        elif target.startswith(("http://", "https://")):
            self._b = RemoteBackend(
                target,
                token=token or os.environ.get("MODELYARD_TOKEN"),
                upload_concurrency=upload_concurrency,
            )
        else:
            self._b = EmbeddedBackend(Path(target))
        cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
        self.cache = BlobCache(cache_root)
        self.hashes = HashCache(cache_root)

    def close(self) -> None:
        """Release connections and pools."""
        self._b.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- models -----------------------------------------------------------

    def create_model(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        description: str = "",
        tags: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ModelInfo:
        """Register a model name."""
        body = {"description": description, "tags": tags or {}, "metadata": metadata or {}}
        return ModelInfo.from_wire(self._b.create_model(namespace, name, body))

    def get_model(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> ModelInfo:
        """One model."""
        return ModelInfo.from_wire(self._b.get_model(namespace, name))

    def update_model(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        delete_tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ModelInfo:
        """Change description, merge/delete tags, replace metadata."""
        changes = {
            "description": description,
            "tags": tags,
            "delete_tags": delete_tags or [],
            "metadata": metadata,
        }
        return ModelInfo.from_wire(self._b.update_model(namespace, name, changes))

    def delete_model(
        self, name: str, *, namespace: str = DEFAULT_NAMESPACE, force: bool = False
    ) -> None:
        """Delete a model (refused while versions are published unless ``force``)."""
        self._b.delete_model(namespace, name, force=force)

    def search_models(
        self,
        filter: str | None = None,
        *,
        order_by: str | None = None,
        namespace: str | None = None,
        limit: int | None = None,
        page_size: int = 100,
    ) -> Iterator[ModelInfo]:
        """Iterate over models matching ``filter`` (all pages, up to ``limit``).

        The first page is fetched now, so a bad filter raises here, not at the
        first ``next()``; later pages are fetched as the caller iterates.
        """
        pages = _eager(self._pages("models", filter, order_by, namespace, limit, page_size))
        return (ModelInfo.from_wire(d) for d in pages)

    # -- versions ---------------------------------------------------------

    def delete_version(self, ref: str, *, force: bool = False) -> None:
        """Delete one version for good (admin; refused while published unless
        ``force``). Its blobs go at the next garbage collection if no other
        version lists them; its number is never reused."""
        self._b.delete_version(parse_reference(ref), force=force)

    def allow_pickle(self, ref: str, reason: str) -> VersionInfo:
        """Record an admin's audited exception: model servers may unpickle the
        pickle files of the version ``ref`` names, bound to their digests now
        (admin; ``NO_PICKLE_FILES`` for a version without pickles)."""
        return VersionInfo.from_wire(self._b.record_pickle_exception(parse_reference(ref), reason))

    def revoke_pickle(self, ref: str) -> VersionInfo:
        """Revoke the version's pickle exception (admin): model servers refuse
        its pickles again from their next load of it."""
        return VersionInfo.from_wire(self._b.revoke_pickle_exception(parse_reference(ref)))

    def get_version(self, ref: str) -> VersionInfo:
        """A version by reference: ``name/3``, ``name@alias``, ``ns/name@latest``."""
        return VersionInfo.from_wire(self._b.get_version(parse_reference(ref)))

    def list_versions(
        self, name: str, *, namespace: str = DEFAULT_NAMESPACE, page_size: int = 100
    ) -> Iterator[VersionInfo]:
        """All versions of a model, newest first (an unknown model raises here)."""
        pages = walk_pages(
            lambda token, _: self._b.list_versions(namespace, name, page_size, token), "versions"
        )
        return (VersionInfo.from_wire(d) for d in _eager(pages))

    def search_versions(
        self,
        filter: str | None = None,
        *,
        order_by: str | None = None,
        namespace: str | None = None,
        limit: int | None = None,
        page_size: int = 100,
    ) -> Iterator[VersionInfo]:
        """Iterate over versions matching ``filter`` (all pages, up to ``limit``).

        The first page is fetched now, so a bad filter or sort raises here, not
        at the first ``next()``; later pages are fetched as the caller iterates.
        """
        pages = _eager(self._pages("versions", filter, order_by, namespace, limit, page_size))
        return (VersionInfo.from_wire(d) for d in pages)

    def _pages(
        self,
        target: Target,
        filter: str | None,
        order_by: str | None,
        namespace: str | None,
        limit: int | None,
        page_size: int,
    ) -> Iterator[dict[str, Any]]:
        def fetch(token: str | None, remaining: int | None) -> dict[str, Any]:
            size = page_size if remaining is None else max(1, min(page_size, remaining))
            query = {
                "filter": filter,
                "order_by": order_by,
                "page_size": size,
                "page_token": token,
                "namespace": namespace,
            }
            return self._b.search(target, query)

        return walk_pages(fetch, target, limit)

    def tag(
        self,
        ref: str,
        tags: dict[str, str] | None = None,
        *,
        delete: list[str] | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> VersionInfo:
        """Set/delete tags (and optionally description, metadata) of a version."""
        changes = {
            "description": description,
            "tags": tags,
            "delete_tags": delete or [],
            "metadata": metadata,
        }
        return VersionInfo.from_wire(self._b.update_version(parse_reference(ref), changes))

    def publish(
        self,
        ref: str,
        *,
        archive_previous: bool = False,
        with_variants: list[str] | None = None,
    ) -> VersionInfo:
        """Publish a version; ``with_variants`` (formats) publishes the newest
        ready or published variant of each format with it, in one transaction
        (see :meth:`promote_family`, which also answers every part)."""
        if with_variants:
            done = self.promote_family(
                ref,
                action="publish",
                with_variants=with_variants,
                archive_previous=archive_previous,
            )
            return done.parts[0].version
        return VersionInfo.from_wire(
            self._b.transition(parse_reference(ref), "publish", archive_previous=archive_previous)
        )

    def archive(self, ref: str) -> VersionInfo:
        """Archive a version."""
        return VersionInfo.from_wire(
            self._b.transition(parse_reference(ref), "archive", archive_previous=False)
        )

    def restore(self, ref: str) -> VersionInfo:
        """Restore an archived (or unpublish a published) version to ready."""
        return VersionInfo.from_wire(
            self._b.transition(parse_reference(ref), "restore", archive_previous=False)
        )

    def set_alias(
        self,
        ref: str,
        alias: str,
        *,
        reason: str = "",
        with_variants: list[str] | None = None,
        force: bool = False,
    ) -> VersionInfo:
        """Point ``alias`` at the version ``ref`` names.

        ``with_variants`` (formats) also points each chosen variant's model's
        ``alias`` at that variant, in one transaction (see
        :meth:`promote_family`). Refused with ``BUNDLE_INCOMPATIBLE`` when the
        move breaks a bundle whose role follows the alias; ``force`` (admins)
        moves one alias anyway and is not combined with ``with_variants``.
        """
        if with_variants:
            if force:
                raise InvalidInput(
                    "force moves one alias; it is not combined with with_variants",
                    code="INVALID_INPUT",
                )
            done = self.promote_family(
                ref, action="alias", alias=alias, with_variants=with_variants, reason=reason
            )
            return done.parts[0].version
        return VersionInfo.from_wire(self._b.set_alias(parse_reference(ref), alias, reason, force))

    # -- identity ---------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """Who this registry handle acts as, with its roles per namespace."""
        return self._b.whoami()

    def create_user(self, name: str) -> dict[str, Any]:
        """Create a user (instance admin)."""
        return self._b.create_user(name)

    def list_users(self) -> list[dict[str, Any]]:
        """Every user with their role bindings (instance admin)."""
        return list(self._b.list_users()["users"])

    def create_token(
        self, name: str, *, user: str | None = None, expires_in: int | None = None
    ) -> dict[str, Any]:
        """Create an API token; ``result["token"]`` is the secret, shown only now."""
        return self._b.create_token(name, user, expires_in)

    def list_tokens(
        self, *, user: str | None = None, all_users: bool = False
    ) -> list[dict[str, Any]]:
        """Tokens (own by default) with state and last use, never secrets."""
        return list(self._b.list_tokens(user, all_users)["tokens"])

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        """Revoke a token by its public id."""
        return self._b.revoke_token(token_id)

    def grant_role(self, user: str, role: str, *, namespace: str) -> dict[str, Any]:
        """Give ``user`` a role in ``namespace`` (``*``: every namespace)."""
        return self._b.grant_role(namespace, user, role)

    def revoke_role(self, user: str, role: str, *, namespace: str) -> None:
        """Take a role back."""
        self._b.revoke_role(namespace, user, role)

    def list_roles(
        self, *, namespace: str | None = None, user: str | None = None
    ) -> list[dict[str, Any]]:
        """Role bindings, optionally of one namespace and/or user."""
        return list(self._b.list_roles(namespace, user)["roles"])

    # -- events -----------------------------------------------------------

    def list_events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        types: list[str] | None = None,
        namespace: str | None = None,
        model: str | None = None,
        subject: str | None = None,
    ) -> list[EventInfo]:
        """One page of events with id > ``after``, oldest first."""
        query = _event_query(types, namespace, model, subject)
        page = self._b.list_events({**query, "after": after, "limit": limit})
        return [EventInfo.from_wire(e) for e in page["events"]]

    def watch(
        self,
        *,
        types: list[str] | None = None,
        namespace: str | None = None,
        model: str | None = None,
        subject: str | None = None,
        after: int | None = None,
        idle_timeout: float | None = None,
        on_open: Callable[[int], None] | None = None,
    ) -> Iterator[EventInfo]:
        """Iterate over events as they commit (SSE remotely, polling when embedded).

        Starts after event ``after`` (default: only new events) and resumes from
        the last event seen when the connection drops, so no event is skipped
        or repeated. Ends after ``idle_timeout`` seconds without an event, or
        never when it is None (break out of the loop to stop).

        ``on_open(position)`` runs each time the stream (re)opens, before any
        of its events: read the state you follow there, and every change after
        that read arrives as an event (none falls between the two).
        """
        import time

        query: dict[str, Any] = _event_query(types, namespace, model, subject)
        if idle_timeout is not None:
            query["heartbeat"] = max(0.1, min(15.0, idle_timeout / 2))
        last = after
        quiet_since = time.monotonic()

        def idle() -> bool:
            return idle_timeout is not None and time.monotonic() - quiet_since > idle_timeout

        connected = False
        while True:
            stream = self._b.stream_events(query, last)
            try:
                for item in stream:
                    connected = True
                    if item is not None and "position" in item:
                        last = item["position"] if last is None else last
                        if on_open is not None:
                            on_open(last)
                    elif item is not None:
                        last = int(item["id"])
                        quiet_since = time.monotonic()
                        yield EventInfo.from_wire(item)
                    if idle():
                        return
            except (httpx.TransportError, ServerError) as exc:
                # The server went away or restarts: reconnect from ``last``;
                # but one never reached is a mistake to report, not to retry.
                if not connected:
                    raise _unreachable(self._b, exc) from exc
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()  # release the HTTP connection now, not at garbage collection
            if idle():
                return
            time.sleep(0.5)  # the server went away: reconnect from ``last``

    # -- webhooks ---------------------------------------------------------

    def create_webhook(
        self,
        url: str,
        *,
        event_types: list[str] | None = None,
        namespace: str | None = None,
        model: str | None = None,
        description: str = "",
        active: bool = True,
    ) -> WebhookInfo:
        """Subscribe ``url`` to events; the result's ``secret`` is shown only now."""
        body = {
            "url": url,
            "event_types": event_types,
            "namespace": namespace,
            "model": model,
            "description": description,
            "active": active,
        }
        return WebhookInfo.from_wire(self._b.webhook_call("create", None, body))

    def list_webhooks(self) -> list[WebhookInfo]:
        """Every webhook (without secrets)."""
        return [
            WebhookInfo.from_wire(h) for h in self._b.webhook_call("list", None, {})["webhooks"]
        ]

    def get_webhook(self, webhook_id: int) -> WebhookInfo:
        """One webhook."""
        return WebhookInfo.from_wire(self._b.webhook_call("get", webhook_id, {}))

    def update_webhook(self, webhook_id: int, **changes: Any) -> WebhookInfo:
        """Change url, event_types, namespace, model, description or active."""
        return WebhookInfo.from_wire(self._b.webhook_call("update", webhook_id, changes))

    def delete_webhook(self, webhook_id: int) -> None:
        """Delete a webhook and its delivery history."""
        self._b.webhook_call("delete", webhook_id, {})

    def rotate_webhook_secret(
        self, webhook_id: int, *, overlap_seconds: float | None = None
    ) -> WebhookInfo:
        """New secret (in the result); the old one also signs during the overlap."""
        body = {"overlap_seconds": overlap_seconds}
        return WebhookInfo.from_wire(self._b.webhook_call("rotate", webhook_id, body))

    def webhook_deliveries(
        self, webhook_id: int, *, status: str | None = None, limit: int | None = None
    ) -> Iterator[DeliveryInfo]:
        """A webhook's deliveries, newest first, with every attempt."""
        token: str | None = None
        n = 0
        while True:
            query = {"status": status, "page_size": 100, "page_token": token}
            page = self._b.webhook_call("deliveries", webhook_id, query)
            for d in page["deliveries"]:
                yield DeliveryInfo.from_wire(d)
                n += 1
                if limit is not None and n >= limit:
                    return
            token = page["next_page_token"]
            if not token:
                return

    def redeliver(self, webhook_id: int, delivery_id: int) -> DeliveryInfo:
        """Queue one delivery again now (same ``webhook-id``)."""
        body = {"delivery_id": delivery_id}
        return DeliveryInfo.from_wire(self._b.webhook_call("redeliver", webhook_id, body))

    def test_webhook(self, webhook_id: int) -> DeliveryInfo:
        """Send a ``webhook.test`` event to this webhook only."""
        return DeliveryInfo.from_wire(self._b.webhook_call("test", webhook_id, {}))

    # -- transfers --------------------------------------------------------

    def push(
        self,
        name: str,
        files_or_dir: str | os.PathLike[str] | list[Any] | dict[str, Any],
        *,
        namespace: str = DEFAULT_NAMESPACE,
        framework: str | None = None,
        format: str | None = None,
        description: str = "",
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        signature: dict[str, Any] | None = None,
        parent: str | None = None,
        original: str | None = None,
        relation: str | None = None,
        recipe: dict[str, Any] | None = None,
        lineage: dict[str, Any] | None = None,
        create_model: bool = True,
        allow_empty: bool = False,
        callbacks: PushCallbacks | None = None,
        reference_stats: ReferenceStats | None = None,
        wait: bool = True,
    ) -> VersionInfo:
        """Upload files and register them as a new version, in one commit.

        Bytes sent straight to the object store (a server offering presigned
        URLs) are verified by the server in the background; the version is
        ``draft`` until they are, then ``ready`` by itself. By default
        (``wait``) the call returns once the version is ready, and raises the
        verification's refusal if a file's bytes did not hash to its digest;
        ``wait=False`` returns the draft at once (see
        :attr:`VersionInfo.pending_files`; :meth:`wait_ready` waits later).

        ``reference_stats`` (from :func:`~modelyard.client.compute_reference_stats`
        over a sample of the inputs) is stored as the version's file
        ``.modelyard/reference_stats.json``: a model server compares what it
        receives against it (drift).

        Files are hashed locally, only blobs the server lacks are uploaded, and
        the version appears only when its manifest commits. A retried push
        (same call after a network failure) reuses an idempotency key, so it
        creates one version. Nothing to push (an empty directory, say) raises
        ``EMPTY_VERSION`` unless ``allow_empty``: an empty version would
        otherwise become ``latest``. The registry is asked once (who am I)
        before any file is read, so an unreachable server or a bad token fails
        at once, not after hashing every file.
        """
        cb = callbacks or PushCallbacks()
        pairs = collect(
            files_or_dir if isinstance(files_or_dir, list | dict) else Path(files_or_dir)
        )
        if reference_stats is not None:
            return self._push_with_stats(
                name,
                pairs,
                reference_stats,
                signature,
                partial(
                    self.push,
                    name,
                    namespace=namespace,
                    framework=framework,
                    format=format,
                    description=description,
                    metrics=metrics,
                    params=params,
                    tags=tags,
                    metadata=metadata,
                    signature=signature,
                    parent=parent,
                    original=original,
                    relation=relation,
                    recipe=recipe,
                    lineage=lineage,
                    create_model=create_model,
                    allow_empty=allow_empty,
                    callbacks=callbacks,
                    wait=wait,
                ),
            )
        if not pairs and not allow_empty:
            raise InvalidInput(
                f"nothing to push: {_describe(files_or_dir)} holds no files "
                "(allow_empty=True, or --allow-empty, makes a version without files)",
                code="EMPTY_VERSION",
            )
        self._b.whoami()
        # The version, not each upload, is waited for: it exists (draft)
        # while the server verifies what went straight to the store.
        local = self._upload(pairs, cb, await_verified=False)
        body: dict[str, Any] = {
            "files": [
                {"path": f.path, "digest": f.digest, "size": f.size, "media_type": f.media_type}
                for f in local
            ],
            "description": description,
            "framework": framework,
            "format": format,
            "signature": signature,
            "metrics": metrics or {},
            "params": params or {},
            "tags": tags or {},
            "metadata": metadata or {},
            "lineage": {
                **(lineage or {}),
                "parent": parent,
                "original": original,
                "relation": relation,
                **({"recipe": recipe} if recipe is not None else {}),
            },
        }
        key = uuid.uuid4().hex

        def commit() -> Any:
            try:
                return self._b.create_version(namespace, name, body, key)
            except NotFound as exc:
                if not create_model or exc.code != "MODEL_NOT_FOUND":
                    raise
                try:
                    self.create_model(name, namespace=namespace)
                except Exception as again:  # a concurrent pusher may have created it
                    if getattr(again, "code", "") != "MODEL_ALREADY_EXISTS":
                        raise
                return self._b.create_version(namespace, name, body, key)

        try:
            wire = commit()
        except ModelyardError as exc:
            if exc.code != "BLOB_MISSING":
                raise
            # Garbage collection took a blob this push sent before its commit
            # (a push longer than gc's grace period): send what the registry
            # lacks again and commit once more, under the same idempotency key.
            self._upload_again(local, cb)
            wire = commit()
        info = VersionInfo.from_wire(wire)
        if wait and info.pending_files:
            return self.wait_ready(info.ref)
        return info

    def wait_ready(self, ref: str, *, timeout: float | None = None) -> VersionInfo:
        """Wait while the registry verifies the blobs a draft version waits on
        (direct uploads read back in the background) and return the version
        once none is left. A file whose bytes failed verification raises that
        refusal (``DIGEST_MISMATCH`` and the like, with the version and path
        in its details): the version stays draft until the right bytes are
        uploaded again. ``timeout`` (seconds) defaults to a bound generous for
        the pending bytes' size (``VERIFICATION_TIMEOUT`` past it)."""
        r = parse_reference(ref)
        info = VersionInfo.from_wire(self._b.get_version(r))
        if timeout is None:
            size = {f["path"]: int(f["size"]) for f in info.files or []}
            pending = sum(size.get(p["path"], 0) for p in info.pending_files)
            timeout = VERIFY_WAIT_BASE + pending / VERIFY_WAIT_RATE
        deadline = time.monotonic() + timeout
        delay = 0.05
        while info.pending_files:
            failed = [p for p in info.pending_files if p.get("state") == "failed"]
            if failed:
                err = dict(failed[0].get("error") or {})
                details = dict(err.get("details") or {})
                details.update(reference=info.ref, path=failed[0]["path"])
                raise error_from_response(
                    422,
                    {
                        "error": {
                            "code": err.get("code") or "DIGEST_MISMATCH",
                            "message": f"{failed[0]['path']}: "
                            + str(err.get("message") or "failed verification"),
                            "details": details,
                        }
                    },
                )
            if time.monotonic() > deadline:
                raise ServerError(
                    "the registry did not verify the version's files in time",
                    code="VERIFICATION_TIMEOUT",
                    details={"reference": info.ref},
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            info = VersionInfo.from_wire(self._b.get_version(r))
        return info

    def _upload_again(self, local: list[LocalFile], cb: PushCallbacks) -> None:
        """Upload the blobs of ``local`` the registry lacks now (each once)."""
        digests = [f.digest for f in local if f.digest is not None]
        missing = set(self._b.missing(digests))
        sent: set[str] = set()
        for f in local:
            if f.digest in missing and f.digest not in sent:
                self._b.upload(f.source, f.size, cb.advance, digest=f.digest, await_verified=False)
                sent.add(f.digest)

    def _push_with_stats(
        self,
        name: str,
        pairs: list[tuple[Path, str]],
        stats: ReferenceStats,
        signature: dict[str, Any] | None,
        push: Callable[..., VersionInfo],
    ) -> VersionInfo:
        """Push ``pairs`` plus the statistics file (written to a temporary file
        for the upload: the version holds it like any other file)."""
        if any(path == STATS_PATH for _, path in pairs):
            raise InvalidInput(
                f"{STATS_PATH} is reserved for reference_stats; do not push it as a file",
                code="INVALID_PATH",
                details={"path": STATS_PATH},
            )
        declared = {i.get("name") for i in (signature or {}).get("inputs") or []}
        stray = sorted({f.input for f in stats.features} - declared) if declared else []
        if stray:
            raise InvalidInput(
                f"reference statistics name input(s) the signature lacks: {', '.join(stray)}",
                code="INVALID_REFERENCE_STATS",
                details={"inputs": stray},
            )
        with tempfile.TemporaryDirectory(prefix="modelyard-stats-") as tmp:
            file = Path(tmp) / "reference_stats.json"
            file.write_bytes(stats_bytes(stats))
            return push({path: src for src, path in [*pairs, (file, STATS_PATH)]})

    def _upload(
        self, pairs: list[tuple[Path, str]], cb: PushCallbacks, *, await_verified: bool = True
    ) -> list[LocalFile]:
        """Hash ``pairs`` and upload the blobs the registry lacks (each once);
        the files with their digests. ``await_verified=False``: do not wait
        for the server's background verification of direct uploads."""
        total = sum(src.stat().st_size for src, _ in pairs)
        if cb.start:
            cb.start("hashing", total)
        local = prepare(pairs, cb.advance, self.hashes)
        missing = set(self._b.missing([f.digest for f in local if f.digest is not None]))
        todo: dict[str, LocalFile] = {}
        unknown: list[LocalFile] = []
        for f in local:
            if f.digest is None:
                unknown.append(f)
            elif f.digest in missing and f.digest not in todo:
                todo[f.digest] = f
        if cb.start:
            cb.start("uploading", sum(f.size for f in [*todo.values(), *unknown]))
        for f in todo.values():
            self._b.upload(
                f.source, f.size, cb.advance, digest=f.digest, await_verified=await_verified
            )
        for i, f in enumerate(local):
            if f.digest is None:
                # Hashed on the way up: the server names the blob by the digest
                # of what it received, and the backend checks it equals ours.
                st = f.source.stat()
                digest = self._b.upload(
                    f.source, f.size, cb.advance, digest=None, await_verified=await_verified
                )
                self.hashes.put(f.source, st, digest)
                local[i] = dataclasses.replace(f, digest=digest)
        return local

    def add_resources(
        self,
        ref: str,
        resources: dict[str, str | os.PathLike[str]],
        *,
        alias: str | None = None,
        reason: str = "",
        description: str | None = None,
        callbacks: PushCallbacks | None = None,
        idempotency_key: str | None = None,
    ) -> VersionInfo:
        """Attach or replace named resources of ``ref`` (``{"thresholds.json":
        path}``): the registry creates the next version with them, sharing every
        other file by digest (only the resources' bytes are uploaded, and only
        if the registry lacks them), ``parent`` = ``ref``, relation ``retuned``.
        ``alias`` moves to it in the same step, under the production policy.

        The request carries an idempotency key (``idempotency_key``, or a new
        one per call), so a retry after a lost answer creates one version.
        """
        if not resources:
            raise InvalidInput("no resources to add", code="INVALID_RESOURCES")
        self._b.whoami()
        local = self._upload(
            [(Path(src), name) for name, src in resources.items()], callbacks or PushCallbacks()
        )
        body: dict[str, Any] = {
            "resources": [
                {"name": f.path, "digest": f.digest, "size": f.size, "media_type": f.media_type}
                for f in local
            ],
            "alias": alias,
            "reason": reason,
            "description": description,
        }
        return VersionInfo.from_wire(
            self._b.attach_resources(
                parse_reference(ref), body, idempotency_key or uuid.uuid4().hex
            )
        )

    def pull(
        self,
        ref: str,
        dest: str | os.PathLike[str],
        *,
        link: bool = False,
        callbacks: PushCallbacks | None = None,
    ) -> Path:
        """Download a version's files into ``dest`` (byte-identical, digest-checked).

        Blobs are kept in the local cache (``self.cache``), so pulling again
        reads no bytes over the wire. Each pulled file is the caller's own: a
        reflink where the filesystem supports one, else a copy, so editing it
        changes neither the cache nor another pull. ``link=True`` hard-links
        the cache's read-only files instead (no second copy on disk; writing
        one as root would change them all). Paths never escape ``dest``.
        """
        return self.pull_version(ref, dest, link=link, callbacks=callbacks)[1]

    def pull_version(
        self,
        ref: str,
        dest: str | os.PathLike[str],
        *,
        link: bool = False,
        callbacks: PushCallbacks | None = None,
    ) -> tuple[VersionInfo, Path]:
        """:meth:`pull`, also returning the version that was pulled (an alias
        resolves once, so the answer names exactly the files written)."""
        cb = callbacks or PushCallbacks()
        if Path(dest).exists() and not Path(dest).is_dir():
            _destination(dest)  # raises: checked before anything is fetched
        version = self.get_version(ref)
        exact = parse_reference(version.ref)
        out = _destination(dest)
        files = version.files or []
        if cb.start:
            cb.start("downloading", sum(int(f["size"]) for f in files))
        for f in files:
            target = safe_destination(out, f["path"])
            digest, size = f["digest"], int(f["size"])
            try:
                self._place(exact, f["path"], digest, size, target, link, cb)
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                raise InvalidInput(
                    f"cannot write {f['path']!r} under {out}: {exc.strerror}",
                    code="INVALID_DESTINATION",
                    details={"dest": str(out), "path": f["path"]},
                ) from None
        return version, out

    def _place(
        self,
        ref: Reference,
        path: str,
        digest: str,
        size: int,
        target: Path,
        link: bool,
        cb: PushCallbacks,
    ) -> None:
        """Put one file of ``ref`` at ``target``, from the cache if it holds
        the right bytes, else downloaded into the cache first."""
        cached = self.cache.get(digest, size)
        if cached is not None and not link:
            if copy_checked_into(cached, target, digest, cb.advance):
                return
            cached.unlink(missing_ok=True)  # damaged: dropped and fetched again
            cached = None
        elif cached is not None and not verify_file(cached, digest, cb.advance):
            cached.unlink(missing_ok=True)
            cached = None
        if cached is None:
            cached = self.cache.put(
                digest, size, partial(self._b.download_into, ref, path, progress=cb.advance)
            )
        # Verified just now (on its way in, or read back above): placed unhashed.
        if not (link and link_into(cached, target)):
            copy_into(cached, target)


def _unreachable(backend: Backend, exc: Exception) -> Exception:
    """``exc`` as the SDK's UNREACHABLE error naming the URL tried."""
    if isinstance(exc, ServerError):
        return exc
    http = getattr(backend, "http", None)
    url = str(http.base_url).rstrip("/") if http is not None else "?"
    return ServerError(
        f"cannot reach the registry at {url}: {exc}", code="UNREACHABLE", details={"url": url}
    )


def _describe(files_or_dir: object) -> str:
    if isinstance(files_or_dir, list | dict):
        return "the list given"
    return str(files_or_dir)


def _eager(items: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Run ``items`` up to its first item now (so the first request's error is
    raised to the caller), then hand back an iterator over all of them."""
    try:
        head = next(items)
    except StopIteration:
        return iter(())

    def chain() -> Iterator[dict[str, Any]]:
        yield head
        yield from items

    return chain()


def _destination(dest: str | os.PathLike[str]) -> Path:
    """``dest`` as a directory to pull into, created if missing; a clear error
    (not an ``OSError``) when it cannot be one."""
    out = Path(dest)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InvalidInput(
            f"cannot pull into {out}: it exists and is not a directory",
            code="INVALID_DESTINATION",
            details={"dest": str(out)},
        ) from None
    except NotADirectoryError:
        raise InvalidInput(
            f"cannot pull into {out}: a parent of it is a file",
            code="INVALID_DESTINATION",
            details={"dest": str(out)},
        ) from None
    return out


def _event_query(
    types: list[str] | None, namespace: str | None, model: str | None, subject: str | None
) -> dict[str, Any]:
    return {
        "types": ",".join(types) if types else None,
        "namespace": namespace,
        "model": model,
        "subject": subject,
    }


__all__ = [
    "DeliveryInfo",
    "EventInfo",
    "ModelInfo",
    "PushCallbacks",
    "Reference",
    "Registry",
    "VersionInfo",
    "WebhookInfo",
]
