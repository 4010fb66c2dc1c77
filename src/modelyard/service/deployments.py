"""Deployment use cases (issue 12): the registry's record of what runs where.

Two kinds of writers, two permissions:

- **Operators** record a deployment (``put_deployment``: environment,
  reference, desired replicas, endpoint). Requires ``write`` on the
  namespace of the model the reference names.
- **Model servers** report on it (``report_heartbeat``): their status, the
  version they loaded, a version that failed to load. A model server usually
  holds only a ``consumer`` token, so a heartbeat requires only ``consume``
  on the namespace, and every version number it reports must be one the
  caller can read (for a consumer: in the production view; anything else
  answers ``VERSION_NOT_FOUND`` as if it did not exist). A heartbeat can
  therefore only state facts about versions its sender could have pulled;
  it cannot change the desired replicas or the endpoint of the record, and
  it creates the record only if none exists (a server started with
  ``--env`` registers itself). Nothing else a consumer may do is widened.

Reading deployments and their history requires ``read`` on the namespace
(a deployment reveals versions outside the production view, such as one that
failed to load), so consumers do not see them.

Every change writes its event in the same transaction (outbox), subject
``deployment:ENV/REFERENCE``: ``deployment.created``, ``deployment.updated``,
``deployment.swapped`` (the resolved version changed), ``deployment.load_failed``,
``deployment.replica`` (a replica joined or changed status),
``deployment.deleted``. A heartbeat that changes nothing but the time writes
no event and no history.

Deleting a deployment (``write``) keeps its history: the row stays, marked
deleted, and reads skip it; its replicas' heartbeats are forgotten. A
deployment whose replicas are still alive is not deleted unless forced
(``DEPLOYMENT_ACTIVE``): a live server would register it again at its next
heartbeat, so stop the servers first. Recording it again (``put`` or a
heartbeat) brings it back with a ``created`` entry.

Each deployment read carries the version its reference resolves to *now*
(``desired_version``) beside the one its replicas run (``version``): an
alias moved that the servers have not followed shows as drift.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from modelyard.domain import identity as auth
from modelyard.domain.deployments import (
    MAX_ERROR,
    Deployment,
    HistoryEntry,
    HistoryKind,
    Replica,
    ReplicaStatus,
    is_stale,
    parse_replica_status,
    validate_endpoint,
    validate_environment,
    validate_replica,
    validate_replicas,
)
from modelyard.domain.errors import Conflict, InvalidInput, NotFound
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.monitoring import MonitorSettings, parse_monitor_settings
from modelyard.domain.references import DEFAULT_NAMESPACE, Reference, parse_reference
from modelyard.service.core import (
    MAX_PAGE_SIZE,
    Page,
    RegistryCore,
    check_page_size,
    version_not_found,
)
from modelyard.service.views import ProductionView
from modelyard.store.metadata.ports import DeploymentRow, RegistryTx, ReplicaRow, now_us

DEFAULT_STALE_SECONDS = 60.0
MAX_HISTORY_PAGE = 1000


def _deployment_token(d: Deployment) -> str:
    """The page token after ``d``: its (environment, reference) keyset, as
    unpadded URL-safe base64 of a JSON pair (opaque to clients)."""
    raw = orjson.dumps([d.environment, d.reference])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_deployment_token(token: str) -> tuple[str, str]:
    """The keyset a :func:`_deployment_token` names; ``INVALID_CURSOR`` for
    anything else (checked whole: it reaches a SQL comparison)."""
    bad = InvalidInput("invalid page token", code="INVALID_CURSOR")
    if not isinstance(token, str) or len(token) > 2048 or not token.isascii():
        raise bad
    try:
        value = orjson.loads(
            base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        )
    except (ValueError, binascii.Error):
        raise bad from None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise bad
    environment, reference = value
    try:
        validate_environment(environment)
    except InvalidInput:
        raise bad from None
    if not reference or len(reference) > 512 or not reference.isprintable():
        raise bad
    return environment, reference


def deployment_not_found(environment: str, reference: str) -> NotFound:
    """``DEPLOYMENT_NOT_FOUND`` for a reference in an environment."""
    return NotFound(
        f"no deployment of {reference} in {environment}",
        code="DEPLOYMENT_NOT_FOUND",
        details={"environment": environment, "reference": reference},
    )


def _subject(environment: str, reference: str) -> str:
    # Prefixed, so the audit log never reads it as a model's subject.
    return f"deployment:{environment}/{reference}"


def _check_number(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value < 2**31:
        raise InvalidInput(
            f"{field} must be a positive version number",
            code="INVALID_DEPLOYMENT",
            details={"field": field},
        )
    return value


def _check_error(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(
            "error must be text", code="INVALID_DEPLOYMENT", details={"field": "error"}
        )
    # A load error can be a long traceback: keep its end, where the cause is.
    return value[-MAX_ERROR:]


MAX_MEASURES_BYTES = 16 * 1024


def check_json_object(value: Any, field: str, code: str) -> dict[str, Any]:
    """``value`` if it is a JSON object of at most :data:`MAX_MEASURES_BYTES`
    (as JSON) with no NUL character (PostgreSQL refuses NUL in text)."""
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be an object", code=code, details={"field": field})
    try:
        dumped = orjson.dumps(value)
    except TypeError:  # lone surrogates, integers past 64 bits, non-JSON values
        raise InvalidInput(f"{field} must be JSON", code=code, details={"field": field}) from None
    if b"\\u0000" in dumped:
        raise InvalidInput(
            f"{field} must not contain NUL characters", code=code, details={"field": field}
        )
    if len(dumped) > MAX_MEASURES_BYTES:
        raise InvalidInput(
            f"{field} is over {MAX_MEASURES_BYTES} bytes", code=code, details={"field": field}
        )
    return value


def parse_deployed_reference(reference: Any) -> Reference:
    """The reference a deployment follows, canonical (``ns/model@alias`` or
    ``ns/model/N``); a bare model name follows its latest version."""
    if not isinstance(reference, str):
        raise InvalidInput(
            "reference must be text", code="INVALID_REFERENCE", details={"reference": None}
        )
    ref = parse_reference(reference, default_namespace=DEFAULT_NAMESPACE)
    if ref.version is None and ref.alias is None:
        ref = Reference(ref.namespace, ref.name, alias="latest")
    return ref


class DeploymentUseCases(RegistryCore):
    """Deployments: records, heartbeats, history, "who follows this alias"."""

    deployment_stale_seconds: float = DEFAULT_STALE_SECONDS
    """A replica whose last heartbeat is older than this shows as stale
    (``MODELYARD_DEPLOYMENT_STALE_SECONDS``; set by the composition root)."""

    # -- writes -------------------------------------------------------------

    def put_deployment(
        self,
        environment: str,
        reference: str,
        *,
        replicas: int | None = None,
        endpoint: str | None = None,
        monitoring: dict[str, Any] | None = None,
        actor: Principal,
    ) -> Deployment:
        """Record (or update) the deployment of ``reference`` in ``environment``:
        desired ``replicas``, ``endpoint`` and ``monitoring`` settings (see
        :class:`~modelyard.domain.monitoring.MonitorSettings`; the whole object
        is replaced, keys left out take their defaults). None keeps what is
        recorded. Opting in to ``monitoring.rollback`` lets the deployment's
        model servers trigger the alias rollback (see ``service/monitoring.py``),
        which is why it needs write like any alias move.

        The reference must name a model that exists. Requires: write on the
        model's namespace. Events: ``deployment.created`` or ``deployment.updated``
        (none if nothing changed).
        """
        env = validate_environment(environment)
        ref = parse_deployed_reference(reference)
        auth.require(actor, Permission.WRITE, ref.namespace)
        want_replicas = None if replicas is None else validate_replicas(replicas)
        want_endpoint = validate_endpoint(endpoint)
        want_monitoring = (
            None if monitoring is None else parse_monitor_settings(monitoring).to_dict()
        )

        def op(tx: RegistryTx) -> Deployment:
            self.model_id(tx, ref.namespace, ref.name)
            at = now_us()
            row = tx.deployments.get(env, str(ref))
            if row is None or row.deleted_at is not None:
                row = self._create(
                    tx,
                    env,
                    ref,
                    actor,
                    at,
                    replicas=want_replicas,
                    endpoint=want_endpoint,
                    monitoring=want_monitoring,
                    row=row,
                )
            else:
                changes: dict[str, Any] = {}
                if want_replicas is not None and want_replicas != row.replicas:
                    changes["replicas"] = want_replicas
                if want_endpoint is not None and want_endpoint != row.endpoint:
                    changes["endpoint"] = want_endpoint
                if want_monitoring is not None and want_monitoring != row.monitoring:
                    changes["monitoring"] = want_monitoring
                if changes:
                    tx.deployments.update(
                        row.id, {**changes, "updated_by": actor.name, "updated_at": at}
                    )
                    self._record(
                        tx, row, HistoryKind.UPDATED, actor, at, version=row.version, detail=changes
                    )
                    row = tx.deployments.get(env, str(ref))
                    assert row is not None
            return self._assemble(tx, [row], at)[0]

        return self.run_in_transaction(op)

    def report_heartbeat(
        self,
        environment: str,
        reference: str,
        *,
        replica: str,
        status: str | ReplicaStatus,
        version: int | None = None,
        endpoint: str | None = None,
        failed_version: int | None = None,
        error: str | None = None,
        measures: dict[str, Any] | None = None,
        actor: Principal,
    ) -> Deployment:
        """A model server's heartbeat for the deployment of ``reference`` in
        ``environment``: its ``status``, the ``version`` it serves (a change is
        a swap), a ``failed_version`` that did not load (with ``error``), and
        ``measures``: its monitoring window now (kept as the replica's latest
        figures, at most 16 KiB of JSON; None keeps none).

        Creates the deployment if none is recorded. Requires: consume on the
        model's namespace, and every reported version readable by the caller
        (see the module docstring). Events: see the module docstring.
        """
        env = validate_environment(environment)
        ref = parse_deployed_reference(reference)
        auth.require_readable(actor, ref.namespace)
        rid = validate_replica(replica)
        state = parse_replica_status(status)
        number = _check_number(version, "version")
        failed = _check_number(failed_version, "failed_version")
        url = validate_endpoint(endpoint)
        message = _check_error(error)
        window = None
        if measures is not None:
            window = check_json_object(measures, "measures", "INVALID_DEPLOYMENT")

        def op(tx: RegistryTx) -> Deployment:
            view = ProductionView(tx)
            for n in (number, failed):
                if n is not None:
                    self._require_visible(tx, view, actor, ref, n)
            at = now_us()
            row = tx.deployments.get(env, str(ref))
            if row is None or row.deleted_at is not None:
                self.model_id(tx, ref.namespace, ref.name)
                row = self._create(tx, env, ref, actor, at, version=number, endpoint=url, row=row)
            elif number is not None and number != row.version:
                tx.deployments.update(
                    row.id, {"version": number, "updated_by": actor.name, "updated_at": at}
                )
                self._record(
                    tx,
                    row,
                    HistoryKind.SWAPPED,
                    actor,
                    at,
                    version=number,
                    previous=row.version,
                    replica=rid,
                )
            if failed is not None:
                self._record(
                    tx,
                    row,
                    HistoryKind.LOAD_FAILED,
                    actor,
                    at,
                    version=failed,
                    previous=number,
                    replica=rid,
                    detail={"error": message or ""},
                )
            before = tx.deployments.replica(row.id, rid)
            if before is None or before.status != state.value:
                self._record(
                    tx,
                    row,
                    HistoryKind.REPLICA,
                    actor,
                    at,
                    version=number,
                    replica=rid,
                    detail={
                        "status": state.value,
                        "previous_status": None if before is None else before.status,
                    },
                )
            tx.deployments.upsert_replica(
                ReplicaRow(
                    deployment_id=row.id,
                    replica=rid,
                    status=state.value,
                    version=number,
                    endpoint=url,
                    error=message,
                    started_at=at if before is None else before.started_at,
                    heartbeat_at=at,
                    measures=window,
                ),
                exists=before is not None,
            )
            fresh = tx.deployments.get(env, str(ref))
            assert fresh is not None
            return self._assemble(tx, [fresh], at)[0]

        return self.run_in_transaction(op)

    def delete_deployment(
        self, environment: str, reference: str, *, force: bool = False, actor: Principal
    ) -> Deployment:
        """Delete the deployment of ``reference`` in ``environment``; its history
        stays (ending with a ``deleted`` entry). Returns it as it was.

        Refused with ``DEPLOYMENT_ACTIVE`` while a replica still sends
        heartbeats (a live server would record it again at its next beat),
        unless ``force``. Requires: write on the model's namespace.
        Event: ``deployment.deleted``.
        """
        env = validate_environment(environment)
        ref = parse_deployed_reference(reference)
        auth.require(actor, Permission.WRITE, ref.namespace)

        def op(tx: RegistryTx) -> Deployment:
            row = tx.deployments.get(env, str(ref))
            if row is None or row.deleted_at is not None:
                raise deployment_not_found(env, str(ref))
            at = now_us()
            [before] = self._assemble(tx, [row], at)
            live = [r.replica for r in before.instances if not r.stale]
            if live and not force:
                raise Conflict(
                    f"the deployment of {row.reference} in {env} has live replicas "
                    f"({', '.join(live)}): stop them first, or delete with force",
                    code="DEPLOYMENT_ACTIVE",
                    details={"environment": env, "reference": row.reference, "replicas": live},
                )
            tx.deployments.update(
                row.id,
                {
                    "deleted_at": at,
                    "deleted_by": actor.name,
                    "updated_by": actor.name,
                    "updated_at": at,
                },
            )
            tx.deployments.delete_replicas(row.id)
            self._record(
                tx,
                row,
                HistoryKind.DELETED,
                actor,
                at,
                version=row.version,
                detail={"forced": bool(live), "live_replicas": live},
            )
            return before

        return self.run_in_transaction(op)

    # -- reads --------------------------------------------------------------

    def get_deployment(self, environment: str, reference: str, *, actor: Principal) -> Deployment:
        """The deployment of ``reference`` in ``environment`` with its replicas
        (stale ones marked). Requires: read on the model's namespace."""
        env = validate_environment(environment)
        ref = parse_deployed_reference(reference)
        auth.require(actor, Permission.READ, ref.namespace)
        with self.db.read() as tx:
            row = tx.deployments.get(env, str(ref))
            if row is None or row.deleted_at is not None:
                raise deployment_not_found(env, str(ref))
            return self._assemble(tx, [row], now_us())[0]

    def list_deployments(
        self,
        *,
        environment: str | None = None,
        follows: str | None = None,
        after: tuple[str, str] | None = None,
        limit: int | None = None,
        actor: Principal,
    ) -> list[Deployment]:
        """Deployments the caller may read, by environment and reference.

        ``follows`` narrows to what follows a reference: ``fraud@production``
        (deployments of that alias), ``fraud`` (any deployment of the model),
        ``fraud/7`` (deployments whose resolved version is 7, whatever they
        follow). ``after`` (an environment and reference) and ``limit`` page
        through them in that order. Requires: any valid token; only
        namespaces the caller reads are listed (``follows`` needs read on its
        namespace).
        """
        # One more than a page's most: a pager asks for that to know whether
        # another page follows.
        if limit is not None and (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_PAGE_SIZE + 1
        ):
            raise InvalidInput(f"limit must be 1 to {MAX_PAGE_SIZE}", code="INVALID_PAGE_SIZE")
        env = None if environment is None else validate_environment(environment)
        model = alias = None
        number: int | None = None
        namespaces: list[str] | None = self._readable_namespaces(actor)
        if follows is not None:
            if not isinstance(follows, str):
                raise InvalidInput("follows must be a reference", code="INVALID_REFERENCE")
            ref = parse_reference(follows, default_namespace=DEFAULT_NAMESPACE)
            auth.require(actor, Permission.READ, ref.namespace)
            namespaces, model, alias, number = [ref.namespace], ref.name, ref.alias, ref.version
        with self.db.read() as tx:
            rows = tx.deployments.find(
                environment=env,
                namespaces=namespaces,
                model=model,
                alias=alias,
                version=number,
                after=after,
                limit=limit,
            )
            return self._assemble(tx, rows, now_us())

    def page_deployments(
        self,
        *,
        environment: str | None = None,
        follows: str | None = None,
        page_size: int = 100,
        page_token: str | None = None,
        actor: Principal,
    ) -> Page[Deployment]:
        """One page of :meth:`list_deployments`, by environment and reference;
        ``page_token`` is the previous page's ``next_page_token``
        (``INVALID_CURSOR`` if it is not one). Requires: as :meth:`list_deployments`.
        """
        limit = check_page_size(page_size)
        after = None if not page_token else _parse_deployment_token(page_token)
        found = self.list_deployments(
            environment=environment, follows=follows, after=after, limit=limit + 1, actor=actor
        )
        items = found[:limit]
        more = len(found) > limit
        return Page(items, _deployment_token(items[-1]) if more else None)

    def deployment_history(
        self,
        environment: str,
        *,
        reference: str | None = None,
        before: int | None = None,
        limit: int = 100,
        kinds: list[HistoryKind] | None = None,
        actor: Principal,
    ) -> list[HistoryEntry]:
        """An environment's history, newest first (``reference`` narrows it to
        one deployment, ``kinds`` to entries of those kinds, e.g. the alerts
        and automatic rollbacks; ``before`` pages on by entry id). Requires:
        read on the namespaces whose entries are shown (others are left out)."""
        env = validate_environment(environment)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY_PAGE:
            raise InvalidInput(f"limit must be 1 to {MAX_HISTORY_PAGE}", code="INVALID_PAGE_SIZE")
        if before is not None and (not isinstance(before, int) or before < 1):
            raise InvalidInput("before must be a positive entry id", code="INVALID_CURSOR")
        namespaces = self._readable_namespaces(actor)
        canonical = None
        if reference is not None:
            ref = parse_deployed_reference(reference)
            auth.require(actor, Permission.READ, ref.namespace)
            canonical, namespaces = str(ref), [ref.namespace]
        with self.db.read() as tx:
            return tx.deployments.history(
                env,
                namespaces=namespaces,
                reference=canonical,
                before=before,
                limit=limit,
                kinds=None if kinds is None else [HistoryKind(k).value for k in kinds],
            )

    # -- shared steps -------------------------------------------------------

    def _readable_namespaces(self, actor: Principal) -> list[str] | None:
        """None for "every namespace", else those the caller reads."""
        if actor.reads_everything:
            return None
        return sorted(actor.namespaces_with(Permission.READ))

    def _require_visible(
        self, tx: RegistryTx, view: ProductionView, actor: Principal, ref: Reference, number: int
    ) -> None:
        exact = Reference(ref.namespace, ref.name, version=number)
        vid = tx.find_version_id(ref.namespace, ref.name, number=number)
        if vid is None or (
            actor.production_only(ref.namespace)
            and not tx.version_matches(vid, view.rule(ref.namespace))
        ):
            raise version_not_found(exact)

    def _create(
        self,
        tx: RegistryTx,
        env: str,
        ref: Reference,
        actor: Principal,
        at: int,
        *,
        version: int | None = None,
        replicas: int | None = None,
        endpoint: str | None = None,
        monitoring: dict[str, Any] | None = None,
        row: DeploymentRow | None = None,
    ) -> DeploymentRow:
        """Insert the deployment, or bring back ``row`` (a deleted one: same
        id, so its history reads on) as if new."""
        values = {
            "environment": env,
            "reference": str(ref),
            "namespace": ref.namespace,
            "model": ref.name,
            "alias": ref.alias,
            "version": version,
            "replicas": 1 if replicas is None else replicas,
            "endpoint": endpoint,
            "monitoring": monitoring,
            "created_by": actor.name,
            "created_at": at,
            "updated_by": actor.name,
            "updated_at": at,
        }
        detail: dict[str, Any] = {"replicas": values["replicas"], "endpoint": endpoint}
        if monitoring is not None:
            detail["monitoring"] = monitoring
        if row is None:
            row = tx.deployments.insert(values)
        else:
            tx.deployments.update(row.id, {**values, "deleted_at": None, "deleted_by": None})
            fresh = tx.deployments.get(env, str(ref))
            assert fresh is not None
            row = fresh
            detail["recreated"] = True
        self._record(tx, row, HistoryKind.CREATED, actor, at, version=version, detail=detail)
        return row

    def _record(
        self,
        tx: RegistryTx,
        row: DeploymentRow,
        kind: HistoryKind,
        actor: Principal,
        at: int,
        *,
        version: int | None,
        previous: int | None = None,
        replica: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """One history entry and its outbox event, in the caller's transaction;
        the entry's id."""
        entry = HistoryEntry(
            id=0,
            environment=row.environment,
            reference=row.reference,
            kind=kind,
            version=version,
            previous_version=previous,
            replica=replica,
            actor=actor.name,
            at=at,
            detail=detail or {},
        )
        entry_id = tx.deployments.add_history(row.id, entry)
        tx.append_event(
            f"deployment.{kind.value}",
            actor=actor.name,
            namespace=row.namespace,
            subject=_subject(row.environment, row.reference),
            payload={
                "environment": row.environment,
                "reference": row.reference,
                "version": version,
                "previous_version": previous,
                "replica": replica,
                "history_id": entry_id,
                **(detail or {}),
            },
        )
        return entry_id

    def _assemble(self, tx: RegistryTx, rows: list[DeploymentRow], now: int) -> list[Deployment]:
        """Rows with their replicas, staleness computed at ``now``."""
        stale_after = int(self.deployment_stale_seconds * 1_000_000)
        by_id: dict[int, list[Replica]] = {r.id: [] for r in rows}
        for rep in tx.deployments.replicas(list(by_id)):
            by_id[rep.deployment_id].append(
                Replica(
                    replica=rep.replica,
                    status=ReplicaStatus(rep.status),
                    version=rep.version,
                    endpoint=rep.endpoint,
                    error=rep.error,
                    started_at=rep.started_at,
                    heartbeat_at=rep.heartbeat_at,
                    stale=is_stale(rep.heartbeat_at, now, stale_after),
                    measures=rep.measures,
                )
            )
        return [
            Deployment(
                environment=r.environment,
                reference=r.reference,
                namespace=r.namespace,
                model=r.model,
                alias=r.alias,
                version=r.version,
                replicas=r.replicas,
                endpoint=r.endpoint,
                created_by=r.created_by,
                created_at=r.created_at,
                updated_by=r.updated_by,
                updated_at=r.updated_at,
                instances=by_id[r.id],
                monitoring=(
                    MonitorSettings()
                    if r.monitoring is None
                    else parse_monitor_settings(r.monitoring)
                ),
                desired_version=self._desired_version(tx, r),
            )
            for r in rows
        ]

    def _desired_version(self, tx: RegistryTx, row: DeploymentRow) -> int | None:
        """The version ``row``'s reference names now: the pinned number, or
        what its alias (``latest``: the newest ready or published) resolves to."""
        ref = parse_reference(row.reference)
        if ref.version is not None:
            return ref.version
        found = tx.get_version_by_ref(ref.namespace, ref.name, alias=ref.alias)
        return None if found is None else found.number
