"""The two ways the SDK reaches a registry, behind one small interface.

Both speak the native API's wire shapes (plain dicts), so ``Registry`` code is
the same whether the service is across HTTP or in this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from modelyard.client.errors import ServerError, error_from_response
from modelyard.client.transfer import Progress, iter_file
from modelyard.domain.references import Reference


class Backend(Protocol):
    """What the SDK needs from a registry."""

    def call(self, op: str, **kw: Any) -> Any:
        """Run one registry operation, returning its wire-shaped result."""

    def upload(self, digest: str, source: Path, size: int, progress: Progress | None) -> None:
        """Store a blob from a local file."""

    def download(self, ref: Reference, path: str, size: int) -> Iterator[bytes]:
        """Stream one file of a version."""

    def close(self) -> None:
        """Release connections."""


def _q(s: str) -> str:
    return quote(s, safe="")


def _vseg(ref: Reference) -> str:
    if ref.version is not None:
        return str(ref.version)
    return _q(ref.alias or "latest")


class RemoteBackend:
    """HTTP to a modelyard server. Constructing it touches no network."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": "modelyard-sdk"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
            follow_redirects=False,
        )

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise ServerError(f"cannot reach the registry: {exc}", code="UNREACHABLE") from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            raise error_from_response(resp.status_code, body)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def call(self, op: str, **kw: Any) -> Any:
        """Map an operation name onto its REST route."""
        ns, name = kw.get("namespace", "default"), kw.get("name", "")
        mpath = f"/api/v1/models/{_q(ns)}/{_q(name)}"
        if op == "create_model":
            return self._json("POST", "/api/v1/models", json=kw)
        if op == "get_model":
            return self._json("GET", mpath)
        if op == "update_model":
            return self._json("PATCH", mpath, json=kw["changes"])
        if op == "delete_model":
            return self._json("DELETE", mpath, params={"force": str(kw["force"]).lower()})
        if op in ("archive_model", "restore_model"):
            return self._json("POST", f"{mpath}/{op.split('_')[0]}")
        if op == "missing":
            return self._json("POST", "/api/v1/blobs/missing", json={"digests": kw["digests"]})[
                "missing"
            ]
        if op == "create_version":
            headers = (
                {"Idempotency-Key": kw["idempotency_key"]} if kw.get("idempotency_key") else {}
            )
            return self._json("POST", f"{mpath}/versions", json=kw["body"], headers=headers)
        if op in ("get_version", "update_version", "transition", "set_alias"):
            ref: Reference = kw["ref"]
            vpath = f"/api/v1/models/{_q(ref.namespace)}/{_q(ref.name)}/versions/{_vseg(ref)}"
            if op == "get_version":
                return self._json("GET", vpath)
            if op == "update_version":
                return self._json("PATCH", vpath, json=kw["changes"])
            if op == "transition":
                return self._json(
                    "POST",
                    f"{vpath}/{kw['action']}",
                    json={"archive_previous": kw.get("archive_previous", False)},
                )
            apath = f"/api/v1/models/{_q(ref.namespace)}/{_q(ref.name)}/aliases/{_q(kw['alias'])}"
            return self._json(
                "PUT", apath, json={"version": _vseg(ref), "reason": kw.get("reason", "")}
            )
        if op == "list_versions":
            return self._json(
                "GET",
                f"{mpath}/versions",
                params={
                    "page_size": kw["page_size"],
                    **({"page_token": kw["page_token"]} if kw.get("page_token") else {}),
                },
            )
        if op in ("search_versions", "search_models"):
            target = op.split("_")[1]
            return self._json("POST", f"/api/v1/search/{target}", json=kw["query"])
        raise ValueError(f"unknown operation {op}")

    def upload(self, digest: str, source: Path, size: int, progress: Progress | None) -> None:
        """PUT the file's bytes, streamed, under its digest."""
        self._json(
            "PUT",
            f"/api/v1/blobs/{digest}",
            content=iter_file(source, progress),
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
        )

    def download(self, ref: Reference, path: str, size: int) -> Iterator[bytes]:
        """GET one file of a version, streamed."""
        url = (
            f"/api/v1/models/{_q(ref.namespace)}/{_q(ref.name)}/versions/{_vseg(ref)}"
            f"/files/{quote(path, safe='/')}"
        )
        with self.http.stream("GET", url) as resp:
            if resp.status_code >= 400:
                resp.read()
                try:
                    body = resp.json()
                except ValueError:
                    body = None
                raise error_from_response(resp.status_code, body)
            yield from resp.iter_bytes(1 << 20)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()


class EmbeddedBackend:
    """The service in this process, on a data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        db: str | None = None,
        store: str | None = None,
        actor: str = "local",
    ) -> None:
        from modelyard.service.factory import build_registry
        from modelyard.settings import Settings

        self.settings = Settings(data_dir=data_dir, db=db, store=store)
        self.svc = build_registry(self.settings)
        self.actor = actor

    def call(self, op: str, **kw: Any) -> Any:
        """Run the operation on the service and render it like the API does."""
        from modelyard.api import render
        from modelyard.service.registry import VersionSpec

        svc, actor = self.svc, self.actor
        ns, name = kw.get("namespace", "default"), kw.get("name", "")
        if op == "create_model":
            return render.model(
                svc.create_model(
                    name,
                    namespace=ns,
                    description=kw.get("description", ""),
                    tags=kw.get("tags"),
                    metadata=kw.get("metadata"),
                    actor=actor,
                )
            )
        if op == "get_model":
            return render.model(svc.get_model(name, namespace=ns))
        if op == "update_model":
            c = kw["changes"]
            return render.model(
                svc.update_model(
                    name,
                    namespace=ns,
                    description=c.get("description"),
                    set_tags=c.get("tags"),
                    delete_tags=c.get("delete_tags", ()),
                    metadata=c.get("metadata"),
                    actor=actor,
                )
            )
        if op == "delete_model":
            svc.delete_model(name, namespace=ns, force=kw["force"], actor=actor)
            return None
        if op in ("archive_model", "restore_model"):
            return render.model(
                svc.set_model_archived(
                    name, namespace=ns, archived=op == "archive_model", actor=actor
                )
            )
        if op == "missing":
            return svc.missing_blobs(kw["digests"])
        if op == "create_version":
            b = dict(kw["body"])
            lineage = b.pop("lineage", {}) or {}
            spec = VersionSpec(**b, **lineage)
            return render.version(
                svc.create_version(
                    name, spec, namespace=ns, actor=actor, idempotency_key=kw.get("idempotency_key")
                )
            )
        if op == "get_version":
            return render.version(svc.get_version(kw["ref"]))
        if op == "update_version":
            c = kw["changes"]
            return render.version(
                svc.update_version(
                    kw["ref"],
                    description=c.get("description"),
                    set_tags=c.get("tags"),
                    delete_tags=c.get("delete_tags", ()),
                    metadata=c.get("metadata"),
                    actor=actor,
                )
            )
        if op == "transition":
            target = {"publish": "published", "archive": "archived", "restore": "ready"}
            return render.version(
                svc.transition_version(
                    kw["ref"],
                    target[kw["action"]],
                    actor=actor,
                    archive_previous=kw.get("archive_previous", False),
                )
            )
        if op == "set_alias":
            return render.version(
                svc.set_alias(kw["ref"], kw["alias"], actor=actor, reason=kw.get("reason", ""))
            )
        if op == "list_versions":
            page = svc.list_versions(
                name, namespace=ns, page_size=kw["page_size"], page_token=kw.get("page_token")
            )
            return {
                "versions": [render.version(v) for v in page.items],
                "next_page_token": page.next_page_token,
            }
        if op == "search_versions":
            q = kw["query"]
            page = svc.search_versions(
                q.get("filter"),
                order_by=q.get("order_by"),
                page_size=q.get("page_size", 100),
                page_token=q.get("page_token"),
                namespace=q.get("namespace"),
            )
            return {
                "versions": [render.version(v) for v in page.items],
                "next_page_token": page.next_page_token,
            }
        if op == "search_models":
            q = kw["query"]
            mpage = svc.search_models(
                q.get("filter"),
                order_by=q.get("order_by"),
                page_size=q.get("page_size", 100),
                page_token=q.get("page_token"),
                namespace=q.get("namespace"),
            )
            return {
                "models": [render.model(m) for m in mpage.items],
                "next_page_token": mpage.next_page_token,
            }
        raise ValueError(f"unknown operation {op}")

    def upload(self, digest: str, source: Path, size: int, progress: Progress | None) -> None:
        """Write the file into the blob store (verified like an HTTP upload)."""
        writer = self.svc.blobs.writer()
        try:
            for chunk in iter_file(source, progress):
                writer.write(chunk)
            writer.commit(expected_digest=digest, expected_size=size)
        except BaseException:
            writer.abort()
            raise

    def download(self, ref: Reference, path: str, size: int) -> Iterator[bytes]:
        """Read one file of a version from the blob store."""
        _, entry = self.svc.get_file(ref, path)
        yield from self.svc.blobs.iter_range(entry.digest)

    def close(self) -> None:
        """Dispose of the database engine."""
        self.svc.db.dispose()
