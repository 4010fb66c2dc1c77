"""Deployments in the SDK (issue 12): record a deployment, send a model
server's heartbeats, list what runs where and read an environment's history,
over HTTP or in-process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from modelyard.client.paging import walk_pages
from modelyard.domain.references import Reference, parse_reference
from modelyard.wire import deployments as wire

if TYPE_CHECKING:
    from modelyard.domain.identity import Principal
    from modelyard.service.registry import RegistryService

Wire = dict[str, Any]


class DeploymentBackend(Protocol):
    """What the deployment SDK needs from a registry (REST bodies' keys)."""

    def put_deployment(self, body: Wire) -> Wire: ...
    def report_heartbeat(self, body: Wire) -> Wire: ...
    def report_alert(self, body: Wire) -> Wire: ...
    def get_deployment(self, environment: str, reference: str) -> Wire: ...
    def delete_deployment(self, environment: str, reference: str, force: bool) -> Wire: ...
    def list_deployments(
        self,
        environment: str | None,
        follows: str | None,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Wire: ...
    def deployment_history(
        self, environment: str, reference: str | None, before: int | None, limit: int
    ) -> Wire: ...
    def serving_policy(self, ref: Reference) -> Wire: ...


def _drop_none(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _serving_policy_path(ref: Reference) -> str:
    seg = str(ref.version) if ref.version is not None else (ref.alias or "latest")
    parts = (ref.namespace, ref.name, "versions", seg)
    return "/api/v1/models/" + "/".join(quote(p, safe="") for p in parts) + "/serving-policy"


class RemoteDeployments:
    """HTTP calls of the deployment API (mixed into ``RemoteBackend``)."""

    if TYPE_CHECKING:

        def _wire(self, method: str, path: str, **kw: Any) -> Wire: ...

    def serving_policy(self, ref: Reference) -> Wire:
        """GET what a model server may do with a version."""
        return self._wire("GET", _serving_policy_path(ref))

    def put_deployment(self, body: Wire) -> Wire:
        """PUT a deployment."""
        return self._wire("PUT", "/api/v1/deployments", json=body)

    def report_heartbeat(self, body: Wire) -> Wire:
        """POST a heartbeat."""
        return self._wire("POST", "/api/v1/deployments/heartbeats", json=body)

    def report_alert(self, body: Wire) -> Wire:
        """POST an alert."""
        return self._wire("POST", "/api/v1/deployments/alerts", json=body)

    def get_deployment(self, environment: str, reference: str) -> Wire:
        """GET one deployment."""
        # The reference's "/" are path separators on purpose (a path route).
        env = quote(environment, safe="")
        return self._wire("GET", f"/api/v1/deployments/{env}/{quote(reference, safe='/@')}")

    def delete_deployment(self, environment: str, reference: str, force: bool) -> Wire:
        """DELETE one deployment."""
        env = quote(environment, safe="")
        return self._wire(
            "DELETE",
            f"/api/v1/deployments/{env}/{quote(reference, safe='/@')}",
            params={"force": str(force).lower()},
        )

    def list_deployments(
        self,
        environment: str | None,
        follows: str | None,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Wire:
        """GET one page of deployments."""
        params = _drop_none(
            {
                "environment": environment,
                "follows": follows,
                "page_size": page_size,
                "page_token": page_token,
            }
        )
        return self._wire("GET", "/api/v1/deployments", params=params)

    def deployment_history(
        self, environment: str, reference: str | None, before: int | None, limit: int
    ) -> Wire:
        """GET an environment's history."""
        params = _drop_none({"reference": reference, "before": before, "limit": limit})
        env = quote(environment, safe="")
        return self._wire("GET", f"/api/v1/deployments/{env}/history", params=params)


class EmbeddedDeployments:
    """The deployment use cases in this process (mixed into ``EmbeddedBackend``)."""

    if TYPE_CHECKING:
        svc: RegistryService
        actor: Principal

    def serving_policy(self, ref: Reference) -> Wire:
        """What a model server may do with a version."""
        return wire.serving_policy(self.svc.serving_policy(ref, actor=self.actor))

    def put_deployment(self, body: Wire) -> Wire:
        """Record a deployment."""
        return wire.deployment(
            self.svc.put_deployment(
                body["environment"],
                body["reference"],
                replicas=body.get("replicas"),
                endpoint=body.get("endpoint"),
                monitoring=body.get("monitoring"),
                actor=self.actor,
            )
        )

    def report_heartbeat(self, body: Wire) -> Wire:
        """Send a heartbeat."""
        return wire.deployment(
            self.svc.report_heartbeat(
                body["environment"],
                body["reference"],
                replica=body["replica"],
                status=body["status"],
                version=body.get("version"),
                endpoint=body.get("endpoint"),
                failed_version=body.get("failed_version"),
                error=body.get("error"),
                measures=body.get("measures"),
                actor=self.actor,
            )
        )

    def report_alert(self, body: Wire) -> Wire:
        """Send an alert."""
        return self.svc.report_alert(
            body["environment"],
            body["reference"],
            replica=body["replica"],
            kind=body["kind"],
            version=body["version"],
            sustained_seconds=body.get("sustained_seconds"),
            detail=body.get("detail"),
            actor=self.actor,
        )

    def get_deployment(self, environment: str, reference: str) -> Wire:
        """One deployment."""
        return wire.deployment(self.svc.get_deployment(environment, reference, actor=self.actor))

    def delete_deployment(self, environment: str, reference: str, force: bool) -> Wire:
        """Delete a deployment."""
        return wire.deployment(
            self.svc.delete_deployment(environment, reference, force=force, actor=self.actor)
        )

    def list_deployments(
        self,
        environment: str | None,
        follows: str | None,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Wire:
        """One page of deployments."""
        page = self.svc.page_deployments(
            environment=environment,
            follows=follows,
            page_size=page_size,
            page_token=page_token,
            actor=self.actor,
        )
        return {
            "deployments": [wire.deployment(d) for d in page.items],
            "next_page_token": page.next_page_token,
        }

    def deployment_history(
        self, environment: str, reference: str | None, before: int | None, limit: int
    ) -> Wire:
        """An environment's history."""
        found = self.svc.deployment_history(
            environment, reference=reference, before=before, limit=limit, actor=self.actor
        )
        entries = [wire.history_entry(h) for h in found]
        more = len(entries) == limit
        return {"history": entries, "next_before": entries[-1]["id"] if more and entries else None}


class DeploymentMixin:
    """``Registry`` methods for deployments."""

    if TYPE_CHECKING:
        _b: DeploymentBackend

    def put_deployment(
        self,
        environment: str,
        reference: str,
        *,
        replicas: int | None = None,
        endpoint: str | None = None,
        monitoring: dict[str, Any] | None = None,
    ) -> Wire:
        """Record (or update) the deployment of ``reference`` in ``environment``
        (``replicas``/``endpoint``/``monitoring`` None: keep what is recorded).
        ``monitoring``: thresholds and the automatic rollback opt-in, e.g.
        ``{"rollback": True, "error_rate": 0.1, "rollback_after_seconds": 120}``
        (replaced whole; see the README's Monitoring section). Needs write."""
        body = _drop_none(
            {
                "environment": environment,
                "reference": reference,
                "replicas": replicas,
                "endpoint": endpoint,
                "monitoring": monitoring,
            }
        )
        return self._b.put_deployment(body)

    def report_heartbeat(
        self,
        environment: str,
        reference: str,
        *,
        replica: str,
        status: str,
        version: int | None = None,
        endpoint: str | None = None,
        failed_version: int | None = None,
        error: str | None = None,
        measures: dict[str, Any] | None = None,
    ) -> Wire:
        """A model server's heartbeat (status ``starting``/``ready``/``degraded``/
        ``failed``, the version served, a version that failed to load, and
        ``measures``: its monitoring window now, shown as the replica's latest
        figures); creates the deployment if none is recorded. A consumer token
        is enough for versions it can read."""
        body = _drop_none(
            {
                "environment": environment,
                "reference": reference,
                "replica": replica,
                "status": status,
                "version": version,
                "endpoint": endpoint,
                "failed_version": failed_version,
                "error": error,
                "measures": measures,
            }
        )
        return self._b.report_heartbeat(body)

    def report_alert(
        self,
        environment: str,
        reference: str,
        *,
        replica: str,
        kind: str,
        version: int,
        sustained_seconds: float | None = None,
        detail: dict[str, Any] | None = None,
    ) -> Wire:
        """A model server's alert (``drift`` or ``degraded``) about the version it
        serves; a ``degraded`` one held ``sustained_seconds`` may roll the alias
        back if the deployment opted in. Answers ``{"kind", "history_id",
        "rollback"}``. A consumer token is enough for versions it can read."""
        body = _drop_none(
            {
                "environment": environment,
                "reference": reference,
                "replica": replica,
                "kind": kind,
                "version": version,
                "sustained_seconds": sustained_seconds,
                "detail": detail,
            }
        )
        return self._b.report_alert(body)

    def deployment(self, environment: str, reference: str) -> Wire:
        """One deployment with its replicas (``status`` ``stale`` for old heartbeats)."""
        return self._b.get_deployment(environment, reference)

    def delete_deployment(self, environment: str, reference: str, *, force: bool = False) -> Wire:
        """Delete the deployment of ``reference`` in ``environment`` (its history
        stays); refused with ``DEPLOYMENT_ACTIVE`` while replicas send
        heartbeats, unless ``force``. Needs write. Returns it as it was."""
        return self._b.delete_deployment(environment, reference, force)

    def custom_code_allowed(self, ref: str) -> bool:
        """True if the policy of the model ``ref`` names lets a model server run
        the version's own Python code (the namespace policy's ``allow_custom_code``)."""
        return bool(self.serving_policy(ref)["custom_code_allowed"])

    def serving_policy(self, ref: str) -> Wire:
        """What a model server takes from the production policy of the model
        ``ref`` names: ``{"custom_code_allowed": bool, "drift_thresholds":
        {"psi", "ks"} or None}``. A consumer token is enough."""
        return self._b.serving_policy(parse_reference(ref))

    def deployments(
        self,
        *,
        environment: str | None = None,
        follows: str | None = None,
        page_size: int = 100,
    ) -> list[Wire]:
        """Deployments you may read, every page of them (``page_size`` a
        request); ``follows="fraud@production"`` lists those following that
        alias (``fraud``: any of the model; ``fraud/7``: those running version 7)."""
        pages = walk_pages(
            lambda token, _: self._b.list_deployments(environment, follows, page_size, token),
            "deployments",
        )
        return list(pages)

    def deployment_history(
        self,
        environment: str,
        *,
        reference: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> Wire:
        """An environment's history, newest first: ``{"history": [...],
        "next_before": id or None}`` (pass ``next_before`` as ``before`` to page on)."""
        return self._b.deployment_history(environment, reference, before, limit)
