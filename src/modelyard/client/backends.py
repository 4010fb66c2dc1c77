"""The two ways the SDK reaches a registry, behind one small interface.

Both return the native API's wire shapes (plain dicts), so ``Registry`` code is
the same whether the service is across HTTP or in this process.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote

import httpx

from modelyard.client.bundles import BundleBackend, EmbeddedBundles, RemoteBundles
from modelyard.client.deployments import (
    DeploymentBackend,
    EmbeddedDeployments,
    RemoteDeployments,
)
from modelyard.client.errors import ServerError, error_from_response
from modelyard.client.families import EmbeddedFamilies, FamilyBackend, RemoteFamilies
from modelyard.client.governance import EmbeddedGovernance, GovernanceBackend, RemoteGovernance
from modelyard.client.rawhttp import BodyFetcher
from modelyard.client.transfer import Progress, check_stored_digest, iter_file, pour
from modelyard.domain.errors import IntegrityError, ModelyardError, NotFound, StorageUnavailable
from modelyard.domain.identity import Principal
from modelyard.domain.references import Reference
from modelyard.hashio import HashingSink
from modelyard.wire import render
from modelyard.wire.identity import render_binding, render_token, render_user

if TYPE_CHECKING:
    from modelyard.service.blobs import BlobService
    from modelyard.service.webhooks import WebhookService

Wire = dict[str, Any]
Action = Literal["publish", "archive", "restore"]
Target = Literal["models", "versions"]
WebhookOp = Literal[
    "create", "list", "get", "update", "delete", "rotate", "deliveries", "redeliver", "test"
]


class Backend(GovernanceBackend, FamilyBackend, BundleBackend, DeploymentBackend, Protocol):
    """What the SDK needs from a registry. ``changes`` and ``query`` use the
    REST bodies' keys (``description``, ``tags``, ``delete_tags``, ``metadata``;
    ``filter``, ``order_by``, ``page_size``, ``page_token``, ``namespace``)."""

    def create_model(self, namespace: str, name: str, body: Wire) -> Wire: ...
    def get_model(self, namespace: str, name: str) -> Wire: ...
    def update_model(self, namespace: str, name: str, changes: Wire) -> Wire: ...
    def delete_model(self, namespace: str, name: str, *, force: bool) -> None: ...
    def missing(self, digests: list[str]) -> list[str]: ...
    def upload(
        self,
        source: Path,
        size: int,
        progress: Progress | None,
        *,
        digest: str | None,
        await_verified: bool = True,
    ) -> str: ...
    def create_version(
        self, namespace: str, name: str, body: Wire, idempotency_key: str | None
    ) -> Wire: ...
    def get_version(self, ref: Reference) -> Wire: ...
    def update_version(self, ref: Reference, changes: Wire) -> Wire: ...
    def delete_version(self, ref: Reference, *, force: bool) -> None: ...
    def record_pickle_exception(self, ref: Reference, reason: str) -> Wire: ...
    def revoke_pickle_exception(self, ref: Reference) -> Wire: ...
    def transition(self, ref: Reference, action: Action, *, archive_previous: bool) -> Wire: ...
    def set_alias(self, ref: Reference, alias: str, reason: str, force: bool = False) -> Wire: ...
    def list_versions(
        self, namespace: str, name: str, page_size: int, page_token: str | None
    ) -> Wire: ...
    def search(self, target: Target, query: Wire) -> Wire: ...
    def download_into(
        self, ref: Reference, path: str, sink: HashingSink, progress: Progress | None
    ) -> None: ...
    def whoami(self) -> Wire: ...
    def create_user(self, name: str) -> Wire: ...
    def list_users(self) -> Wire: ...
    def create_token(self, name: str, user: str | None, expires_in: int | None) -> Wire: ...
    def list_tokens(self, user: str | None, all_users: bool) -> Wire: ...
    def revoke_token(self, token_id: str) -> Wire: ...
    def grant_role(self, namespace: str, user: str, role: str) -> Wire: ...
    def revoke_role(self, namespace: str, user: str, role: str) -> None: ...
    def list_roles(self, namespace: str | None, user: str | None) -> Wire: ...
    def close(self) -> None: ...
    # -- events and webhooks: query keys are the REST query parameters --
    def list_events(self, query: Wire) -> Wire: ...
    def stream_events(self, query: Wire, last_id: int | None) -> Iterator[Wire | None]: ...
    def webhook_call(self, op: WebhookOp, webhook_id: int | None, body: Wire) -> Wire: ...


def _raise_for_stream(resp: httpx.Response) -> None:
    """Raise the typed error of a streamed response that failed."""
    if resp.status_code >= 400:
        resp.read()
        try:
            body = resp.json()
        except ValueError:
            body = None
        raise error_from_response(resp.status_code, body)


class _Slicer:
    """Cuts one stream of chunks into consecutive byte ranges, streaming (a
    part of a multipart upload can be hundreds of MiB)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def take(self, n: int) -> Iterator[bytes]:
        """The next ``n`` bytes (fewer if the stream ends first)."""
        while n > 0:
            if not self._rest:
                self._rest = next(self._chunks, b"")
                if not self._rest:
                    return
            piece, self._rest = self._rest[:n], self._rest[n:]
            n -= len(piece)
            yield piece

    def drain(self) -> None:
        """Read what is left (so a digest taken on the way covers it all)."""
        for _ in self._chunks:
            pass


VERIFY_WAIT_BASE = 600.0
"""Seconds the SDK waits for a direct upload's verification, plus ...
(generous: the server reads at its store's speed, behind other uploads, and
says ``failed`` itself when it gives up; this only bounds a server whose
verifier does not run at all)"""
VERIFY_WAIT_RATE = float(4 << 20)
"""... one second per this many bytes (a slow, busy store's read-back speed)."""


def _put_parts_in_parallel(
    store: httpx.Client, parts: list[Any], slicer: _Slicer, concurrency: int
) -> None:
    """PUT the parts of a multipart upload, up to ``concurrency`` at once.

    The file is still read once, in order, on this thread (so the digest
    taken on the way covers it in order); each part is read whole, then sent
    by a worker while the next is read. At most ``concurrency`` parts are in
    memory; the first failure stops the rest (what was sent is swept by the
    server once abandoned)."""
    inflight: set[Future[None]] = set()

    def put(url: str, data: bytes) -> None:
        resp = store.put(url, content=data, headers={"Content-Length": str(len(data))})
        _check_store_answer(resp)

    with ThreadPoolExecutor(concurrency, thread_name_prefix="modelyard-part") as pool:
        try:
            for part in parts:
                data = b"".join(slicer.take(int(part["size"])))
                while len(inflight) >= concurrency:
                    done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                    for f in done:
                        f.result()
                inflight.add(pool.submit(put, str(part["url"]), data))
            for f in inflight:
                f.result()
        except BaseException:
            for f in inflight:
                f.cancel()
            raise


def _check_store_answer(resp: httpx.Response) -> None:
    if resp.status_code >= 300:
        raise StorageUnavailable(
            f"the blob store refused the upload (HTTP {resp.status_code})",
            details={"operation": "direct upload", "status": resp.status_code},
        )


def _q(s: str) -> str:
    return quote(s, safe="")


def _vseg(ref: Reference) -> str:
    return str(ref.version) if ref.version is not None else _q(ref.alias or "latest")


def _mpath(namespace: str, name: str) -> str:
    return f"/api/v1/models/{_q(namespace)}/{_q(name)}"


def _vpath(ref: Reference) -> str:
    return f"{_mpath(ref.namespace, ref.name)}/versions/{_vseg(ref)}"


class RemoteBackend(RemoteGovernance, RemoteFamilies, RemoteBundles, RemoteDeployments):
    """HTTP to a modelyard server. Constructing it touches no network."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        upload_concurrency: int = 4,
    ) -> None:
        if not 1 <= upload_concurrency <= 64:
            raise ValueError("upload_concurrency must be between 1 and 64")
        # Parts of one presigned multipart upload sent at once: one stream to
        # an object store rarely fills the link; memory is this many parts.
        self.upload_concurrency = upload_concurrency
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
        self._direct_offered: bool | None = None
        # Big file bodies bypass httpx (see rawhttp), unless a test injected
        # its own transport.
        self._fetcher = (
            BodyFetcher.for_url(url.rstrip("/"), headers, timeout) if transport is None else None
        )

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            url = str(self.http.base_url).rstrip("/")
            raise ServerError(
                f"cannot reach the registry at {url}: {exc}",
                code="UNREACHABLE",
                details={"url": url},
            ) from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            raise error_from_response(resp.status_code, body)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def _wire(self, method: str, path: str, **kw: Any) -> Wire:
        """A request whose answer is one JSON object."""
        body = self._json(method, path, **kw)
        if not isinstance(body, dict):
            raise ServerError("the registry answered something that is not a JSON object")
        return body

    def create_model(self, namespace: str, name: str, body: Wire) -> Wire:
        """POST /models."""
        return self._wire(
            "POST", "/api/v1/models", json={**body, "namespace": namespace, "name": name}
        )

    def get_model(self, namespace: str, name: str) -> Wire:
        """GET a model."""
        return self._wire("GET", _mpath(namespace, name))

    def update_model(self, namespace: str, name: str, changes: Wire) -> Wire:
        """PATCH a model."""
        return self._wire("PATCH", _mpath(namespace, name), json=changes)

    def delete_model(self, namespace: str, name: str, *, force: bool) -> None:
        """DELETE a model."""
        self._json("DELETE", _mpath(namespace, name), params={"force": str(force).lower()})

    def missing(self, digests: list[str]) -> list[str]:
        """Which digests the server lacks."""
        body = self._json("POST", "/api/v1/blobs/missing", json={"digests": digests})
        return list(body["missing"])

    def upload(
        self,
        source: Path,
        size: int,
        progress: Progress | None,
        *,
        digest: str | None,
        await_verified: bool = True,
    ) -> str:
        """Stream the file's bytes up; return the digest they are stored under.

        With a known ``digest`` the bytes go to ``PUT /blobs/{digest}`` (the
        server refuses them if they hash otherwise). Without one they go to
        ``POST /blobs`` and are hashed here while they are sent; the server's
        digest of what it received must equal ours. A direct upload (presigned
        URL) the server verifies in the background is waited for unless
        ``await_verified`` is False: a version naming it is then created
        ``draft`` and becomes ready once it is verified.
        """
        if self._direct():
            offer = self._json(
                "POST", "/api/v1/blobs/uploads", json={"size": size, "digest": digest}
            )
            if offer.get("mode") == "direct":
                return self._upload_direct(
                    offer, source, size, progress, digest, await_verified=await_verified
                )
        headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
        if digest is not None:
            self._json(
                "PUT",
                f"/api/v1/blobs/{digest}",
                content=iter_file(source, progress),
                headers=headers,
            )
            return digest
        hasher = hashlib.sha256()

        def chunks() -> Iterator[bytes]:
            for chunk in iter_file(source, progress):
                hasher.update(chunk)
                yield chunk

        body = self._json("POST", "/api/v1/blobs", content=chunks(), headers=headers)
        return check_stored_digest(str(body["digest"]), hasher.hexdigest())

    def _direct(self) -> bool:
        """Whether the server hands out presigned URLs (asked once)."""
        if self._direct_offered is None:
            try:
                self._direct_offered = bool(
                    self._json("GET", "/api/v1/blobs/transfers").get("direct")
                )
            except NotFound:  # a server from before direct transfers
                self._direct_offered = False
        return self._direct_offered

    def _upload_direct(
        self,
        offer: Wire,
        source: Path,
        size: int,
        progress: Progress | None,
        digest: str | None,
        *,
        await_verified: bool = True,
    ) -> str:
        """PUT the bytes to the store's presigned URL (hashing them on the way),
        then have the server verify them and publish them under the digest."""
        hasher = hashlib.sha256()

        def chunks() -> Iterator[bytes]:
            for chunk in iter_file(source, progress):
                hasher.update(chunk)
                yield chunk

        try:
            # A client of its own: the registry's token must not go to the store.
            with httpx.Client(timeout=self.http.timeout) as store:
                if "parts" in offer:
                    parts = sorted(offer["parts"], key=lambda p: int(p["offset"]))
                    slicer = _Slicer(chunks())
                    if self.upload_concurrency == 1:
                        # One after another, each part streamed: no part is
                        # ever held whole in memory.
                        for part in parts:
                            resp = store.put(
                                str(part["url"]),
                                content=slicer.take(int(part["size"])),
                                headers={"Content-Length": str(int(part["size"]))},
                            )
                            _check_store_answer(resp)
                    else:
                        _put_parts_in_parallel(store, parts, slicer, self.upload_concurrency)
                    slicer.drain()
                else:
                    resp = store.request(
                        str(offer["method"]),
                        str(offer["url"]),
                        content=chunks(),
                        headers={str(k): str(v) for k, v in dict(offer.get("headers", {})).items()},
                    )
                    _check_store_answer(resp)
        except httpx.TransportError as exc:
            raise StorageUnavailable(
                f"cannot reach the blob store: {exc}", details={"operation": "direct upload"}
            ) from exc
        local = hasher.hexdigest()
        if digest is not None and local != digest:
            raise IntegrityError(
                "the file changed while it was sent",
                code="DIGEST_MISMATCH",
                details={"expected": digest, "actual": local},
            )
        upload_id = _q(str(offer["upload_id"]))
        body = self._json(
            "POST",
            f"/api/v1/blobs/uploads/{upload_id}/complete",
            json={"digest": local, "size": size},
        )
        if body.get("verified") is False and await_verified:
            self._await_verification(upload_id, size)
        return check_stored_digest(str(body["digest"]), local)

    def _await_verification(self, upload_id: str, size: int) -> None:
        """Wait while the server's background verifier reads the upload back
        (about as long as sending it took); raise its refusal if it fails."""
        deadline = time.monotonic() + VERIFY_WAIT_BASE + size / VERIFY_WAIT_RATE
        delay = 0.05
        while True:
            status = self._wire("GET", f"/api/v1/blobs/uploads/{upload_id}")
            if status.get("state") == "verified":
                return
            if status.get("state") == "failed":
                raise error_from_response(422, {"error": status.get("error") or {}})
            if time.monotonic() > deadline:
                raise ServerError(
                    "the registry did not verify the upload in time",
                    code="VERIFICATION_TIMEOUT",
                    details={"upload_id": upload_id},
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def create_version(
        self, namespace: str, name: str, body: Wire, idempotency_key: str | None
    ) -> Wire:
        """POST a version."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._wire("POST", f"{_mpath(namespace, name)}/versions", json=body, headers=headers)

    def get_version(self, ref: Reference) -> Wire:
        """GET a version."""
        return self._wire("GET", _vpath(ref))

    def update_version(self, ref: Reference, changes: Wire) -> Wire:
        """PATCH a version."""
        return self._wire("PATCH", _vpath(ref), json=changes)

    def delete_version(self, ref: Reference, *, force: bool) -> None:
        """DELETE a version."""
        self._json("DELETE", _vpath(ref), params={"force": str(force).lower()})

    def record_pickle_exception(self, ref: Reference, reason: str) -> Wire:
        """PUT a version's pickle exception."""
        return self._wire("PUT", f"{_vpath(ref)}/pickle-exception", json={"reason": reason})

    def revoke_pickle_exception(self, ref: Reference) -> Wire:
        """DELETE a version's pickle exception."""
        return self._wire("DELETE", f"{_vpath(ref)}/pickle-exception")

    def transition(self, ref: Reference, action: Action, *, archive_previous: bool) -> Wire:
        """POST publish / archive / restore."""
        return self._wire(
            "POST", f"{_vpath(ref)}/{action}", json={"archive_previous": archive_previous}
        )

    def set_alias(self, ref: Reference, alias: str, reason: str, force: bool = False) -> Wire:
        """PUT an alias."""
        path = f"{_mpath(ref.namespace, ref.name)}/aliases/{_q(alias)}"
        body: Wire = {"version": _vseg(ref), "reason": reason}
        if force:
            body["force"] = True
        return self._wire("PUT", path, json=body)

    def list_versions(
        self, namespace: str, name: str, page_size: int, page_token: str | None
    ) -> Wire:
        """GET a model's versions."""
        params: dict[str, Any] = {"page_size": page_size}
        if page_token:
            params["page_token"] = page_token
        return self._wire("GET", f"{_mpath(namespace, name)}/versions", params=params)

    def search(self, target: Target, query: Wire) -> Wire:
        """POST a search (the body form takes long filters)."""
        return self._wire("POST", f"/api/v1/search/{target}", json=query)

    def download_into(
        self, ref: Reference, path: str, sink: HashingSink, progress: Progress | None
    ) -> None:
        """GET one file of a version into ``sink``."""
        url = f"{_vpath(ref)}/files/{quote(path, safe='/')}"
        if self._direct():
            with self.http.stream("GET", url, params={"redirect": "true"}) as resp:
                if resp.status_code != 307:
                    _raise_for_stream(resp)
                    pour(sink, resp.iter_raw(), progress)
                    return
                location = resp.headers["location"]
            if self._fetcher is not None and self._fetch_from_store(location, sink, progress):
                return
            # Straight from the store, with a client of its own (no token).
            with (
                httpx.Client(timeout=self.http.timeout) as store,
                store.stream("GET", location) as resp,
            ):
                if resp.status_code >= 300:
                    raise StorageUnavailable(
                        f"the blob store refused the download (HTTP {resp.status_code})",
                        details={"operation": "direct download", "status": resp.status_code},
                    )
                pour(sink, resp.iter_bytes(1 << 20), progress)
            return
        if self._fetcher is not None:
            self._fetcher.fetch(url, sink, progress)
            return
        with self.http.stream("GET", url) as resp:
            _raise_for_stream(resp)
            chunks = (
                resp.iter_raw()
                if resp.headers.get("content-encoding", "identity") == "identity"
                else resp.iter_bytes(1 << 20)
            )
            pour(sink, chunks, progress)

    def _fetch_from_store(
        self, location: str, sink: HashingSink, progress: Progress | None
    ) -> bool:
        """Read a presigned download straight from the socket, as a proxied
        one is (``rawhttp``): through httpx a 1 GiB direct pull took 4.0 s and
        3.2 s of client CPU against 3.3 s and 1.8 s proxied (moto,
        ``bench/transfer_s3.py``). No token goes to the store. False where
        httpx must carry it (a proxy from the environment applies)."""
        url = httpx.URL(location)
        origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
        fetcher = BodyFetcher.for_url(origin, {}, self.http.timeout.read or 300.0)
        if fetcher is None:
            return False
        target = url.raw_path.decode("ascii")
        try:
            fetcher.fetch(target, sink, progress)
        except ModelyardError as exc:
            status = exc.details.get("status")
            if exc.code == "UNREACHABLE":
                raise StorageUnavailable(
                    f"cannot reach the blob store: {exc}",
                    details={"operation": "direct download"},
                ) from exc
            raise StorageUnavailable(
                f"the blob store refused the download (HTTP {status})",
                details={"operation": "direct download", "status": status},
            ) from exc
        return True

    def whoami(self) -> Wire:
        """GET /whoami."""
        return self._wire("GET", "/api/v1/whoami")

    def create_user(self, name: str) -> Wire:
        """POST /users."""
        return self._wire("POST", "/api/v1/users", json={"name": name})

    def list_users(self) -> Wire:
        """GET /users."""
        return self._wire("GET", "/api/v1/users")

    def create_token(self, name: str, user: str | None, expires_in: int | None) -> Wire:
        """POST /tokens."""
        body = {"name": name, "user": user, "expires_in": expires_in}
        return self._wire("POST", "/api/v1/tokens", json=body)

    def list_tokens(self, user: str | None, all_users: bool) -> Wire:
        """GET /tokens."""
        params: dict[str, Any] = {"all": str(all_users).lower()}
        if user:
            params["user"] = user
        return self._wire("GET", "/api/v1/tokens", params=params)

    def revoke_token(self, token_id: str) -> Wire:
        """DELETE /tokens/{id}."""
        return self._wire("DELETE", f"/api/v1/tokens/{_q(token_id)}")

    def grant_role(self, namespace: str, user: str, role: str) -> Wire:
        """PUT a role binding."""
        return self._wire("PUT", f"/api/v1/roles/{_q(namespace)}/{_q(user)}/{_q(role)}")

    def revoke_role(self, namespace: str, user: str, role: str) -> None:
        """DELETE a role binding."""
        self._json("DELETE", f"/api/v1/roles/{_q(namespace)}/{_q(user)}/{_q(role)}")

    def list_roles(self, namespace: str | None, user: str | None) -> Wire:
        """GET /roles."""
        params = {k: v for k, v in {"namespace": namespace, "user": user}.items() if v}
        return self._wire("GET", "/api/v1/roles", params=params)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    # -- events and webhooks ----------------------------------------------

    def list_events(self, query: Wire) -> Wire:
        """GET a page of events."""
        params = {k: v for k, v in query.items() if v is not None}
        return self._wire("GET", "/api/v1/events", params=params)

    def stream_events(self, query: Wire, last_id: int | None) -> Iterator[Wire | None]:
        """Follow the SSE stream: yields each event, and None on every heartbeat
        (so a caller can stop an idle watch). Ends when the server closes it."""
        import json

        params = {k: v for k, v in query.items() if v is not None}
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        beat = float(params.get("heartbeat") or 15.0)
        timeout = httpx.Timeout(10.0, read=beat * 3 + 5)
        with self.http.stream(
            "GET", "/api/v1/events/stream", params=params, headers=headers, timeout=timeout
        ) as resp:
            _raise_for_stream(resp)
            data: list[str] = []
            for line in resp.iter_lines():
                if line.startswith(":"):
                    yield None
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                elif line.startswith("id:") and not data:
                    # The stream's start position (an id with no data).
                    yield {"position": int(line[3:].strip())}
                elif line == "" and data:
                    yield json.loads("\n".join(data))
                    data = []

    def webhook_call(self, op: WebhookOp, webhook_id: int | None, body: Wire) -> Wire:
        """One webhook API call (``body``: JSON body or, for listings, query)."""
        base = "/api/v1/webhooks"
        one = f"{base}/{webhook_id}"
        if op == "create":
            return self._wire("POST", base, json=body)
        if op == "list":
            return self._wire("GET", base)
        if op == "get":
            return self._wire("GET", one)
        if op == "update":
            return self._wire("PATCH", one, json=body)
        if op == "delete":
            self._json("DELETE", one)
            return {}
        if op == "rotate":
            return self._wire("POST", f"{one}/rotate-secret", json=body)
        if op == "deliveries":
            params = {k: v for k, v in body.items() if v is not None}
            return self._wire("GET", f"{one}/deliveries", params=params)
        if op == "redeliver":
            return self._wire("POST", f"{one}/deliveries/{body['delivery_id']}/redeliver")
        return self._wire("POST", f"{one}/test")


class EmbeddedBackend(EmbeddedGovernance, EmbeddedFamilies, EmbeddedBundles, EmbeddedDeployments):
    """The service in this process, on a data directory.

    Embedded use acts as the built-in superuser ``local`` (every permission,
    no token): whoever can open the data directory owns the registry anyway.
    The service still makes every decision, so pass another ``actor`` to act
    as a real principal (as the server does for token holders).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        db: str | None = None,
        store: str | None = None,
        actor: Principal | None = None,
    ) -> None:
        from modelyard.composition import build_services
        from modelyard.settings import Settings

        self.settings = Settings(data_dir=data_dir, db=db, store=store)
        self.services = build_services(self.settings)
        self.svc = self.services.registry
        self.identity = self.services.identity
        self.actor = actor or Principal.local("local")

    def create_model(self, namespace: str, name: str, body: Wire) -> Wire:
        """Register a model name."""
        return render.model(
            self.svc.create_model(
                name,
                namespace=namespace,
                description=body.get("description", ""),
                tags=body.get("tags"),
                metadata=body.get("metadata"),
                actor=self.actor,
            )
        )

    def get_model(self, namespace: str, name: str) -> Wire:
        """One model."""
        return render.model(self.svc.get_model(name, namespace=namespace, actor=self.actor))

    def update_model(self, namespace: str, name: str, changes: Wire) -> Wire:
        """Change a model."""
        return render.model(
            self.svc.update_model(
                name,
                namespace=namespace,
                description=changes.get("description"),
                set_tags=changes.get("tags"),
                delete_tags=changes.get("delete_tags", ()),
                metadata=changes.get("metadata"),
                actor=self.actor,
            )
        )

    def delete_model(self, namespace: str, name: str, *, force: bool) -> None:
        """Delete a model."""
        self.svc.delete_model(name, namespace=namespace, force=force, actor=self.actor)

    def delete_version(self, ref: Reference, *, force: bool) -> None:
        """Delete a version."""
        self.svc.delete_version(ref, force=force, actor=self.actor)

    def record_pickle_exception(self, ref: Reference, reason: str) -> Wire:
        """Record a version's pickle exception."""
        return render.version(self.svc.record_pickle_exception(ref, reason, actor=self.actor))

    def revoke_pickle_exception(self, ref: Reference) -> Wire:
        """Revoke a version's pickle exception."""
        return render.version(self.svc.revoke_pickle_exception(ref, actor=self.actor))

    def _blob_use(self) -> BlobService:
        """The blob use case (the same rules as the server's blob routes)."""
        return self.services.blob_service

    def missing(self, digests: list[str]) -> list[str]:
        """Which digests the blob store lacks."""
        return self._blob_use().missing(digests, actor=self.actor)

    def upload(
        self,
        source: Path,
        size: int,
        progress: Progress | None,
        *,
        digest: str | None,
        await_verified: bool = True,
    ) -> str:
        """Write the file into the blob store (verified and limited like an HTTP
        upload; always verified at once here, so ``await_verified`` changes nothing)."""
        return (
            self._blob_use()
            .upload(iter_file(source, progress), actor=self.actor, digest=digest, size=size)
            .digest
        )

    def create_version(
        self, namespace: str, name: str, body: Wire, idempotency_key: str | None
    ) -> Wire:
        """Create a version from stored blobs."""
        from modelyard.service.registry import VersionSpec

        fields = dict(body)
        lineage = fields.pop("lineage", None) or {}
        spec = VersionSpec(**fields, **lineage)
        return render.version(
            self.svc.create_version(
                name, spec, namespace=namespace, actor=self.actor, idempotency_key=idempotency_key
            )
        )

    def get_version(self, ref: Reference) -> Wire:
        """One version with its files."""
        return render.version(self.svc.get_version(ref, actor=self.actor))

    def update_version(self, ref: Reference, changes: Wire) -> Wire:
        """Change a version's mutable fields."""
        return render.version(
            self.svc.update_version(
                ref,
                description=changes.get("description"),
                set_tags=changes.get("tags"),
                delete_tags=changes.get("delete_tags", ()),
                metadata=changes.get("metadata"),
                actor=self.actor,
            )
        )

    def transition(self, ref: Reference, action: Action, *, archive_previous: bool) -> Wire:
        """Publish, archive or restore."""
        target = {"publish": "published", "archive": "archived", "restore": "ready"}[action]
        return render.version(
            self.svc.transition_version(
                ref, target, actor=self.actor, archive_previous=archive_previous
            )
        )

    def set_alias(self, ref: Reference, alias: str, reason: str, force: bool = False) -> Wire:
        """Point an alias."""
        return render.version(
            self.svc.set_alias(ref, alias, actor=self.actor, reason=reason, force=force)
        )

    def list_versions(
        self, namespace: str, name: str, page_size: int, page_token: str | None
    ) -> Wire:
        """A model's versions, newest first."""
        page = self.svc.list_versions(
            name, namespace=namespace, page_size=page_size, page_token=page_token, actor=self.actor
        )
        return {
            "versions": [render.version(v) for v in page.items],
            "next_page_token": page.next_page_token,
        }

    def search(self, target: Target, query: Wire) -> Wire:
        """Search models or versions."""
        kw: dict[str, Any] = {
            "order_by": query.get("order_by"),
            "page_size": query.get("page_size", 100),
            "page_token": query.get("page_token"),
            "namespace": query.get("namespace"),
            "actor": self.actor,
        }
        if target == "versions":
            vpage = self.svc.search_versions(query.get("filter"), **kw)
            return {
                "versions": [render.version(v) for v in vpage.items],
                "next_page_token": vpage.next_page_token,
            }
        mpage = self.svc.search_models(query.get("filter"), **kw)
        return {
            "models": [render.model(m) for m in mpage.items],
            "next_page_token": mpage.next_page_token,
        }

    def download_into(
        self, ref: Reference, path: str, sink: HashingSink, progress: Progress | None
    ) -> None:
        """Copy one file of a version from the blob store into ``sink``."""
        _, _, chunks = self._blob_use().open_file(ref, path, actor=self.actor)
        pour(sink, chunks, progress)

    def whoami(self) -> Wire:
        """The embedded principal."""
        return self.identity.whoami(actor=self.actor)

    def create_user(self, name: str) -> Wire:
        """Create a user."""
        return render_user(self.identity.create_user(name, actor=self.actor))

    def list_users(self) -> Wire:
        """Every user."""
        return {"users": [render_user(u) for u in self.identity.list_users(actor=self.actor)]}

    def create_token(self, name: str, user: str | None, expires_in: int | None) -> Wire:
        """Create a token (the plaintext is in ``token``)."""
        token, plaintext = self.identity.create_token(
            name, user=user, expires_in=expires_in, actor=self.actor
        )
        return {**render_token(token), "token": plaintext}

    def list_tokens(self, user: str | None, all_users: bool) -> Wire:
        """Tokens."""
        found = self.identity.list_tokens(user=user, all_users=all_users, actor=self.actor)
        return {"tokens": [render_token(t) for t in found]}

    def revoke_token(self, token_id: str) -> Wire:
        """Revoke a token."""
        return render_token(self.identity.revoke_token(token_id, actor=self.actor))

    def grant_role(self, namespace: str, user: str, role: str) -> Wire:
        """Grant a role."""
        binding, _ = self.identity.grant_role(user, role, namespace=namespace, actor=self.actor)
        return render_binding(binding)

    def revoke_role(self, namespace: str, user: str, role: str) -> None:
        """Revoke a role."""
        self.identity.revoke_role(user, role, namespace=namespace, actor=self.actor)

    def list_roles(self, namespace: str | None, user: str | None) -> Wire:
        """Role bindings."""
        found = self.identity.list_roles(namespace=namespace, user=user, actor=self.actor)
        return {"roles": [render_binding(b) for b in found]}

    def close(self) -> None:
        """Dispose of the database engine."""
        self.services.close()

    # -- events and webhooks ----------------------------------------------

    def _hooks(self) -> WebhookService:
        return self.services.webhooks

    def list_events(self, query: Wire) -> Wire:
        """A page of events."""
        hooks = self._hooks()
        types = query.get("types")
        flt = hooks.event_filter(
            types=types.split(",") if types else None,
            namespace=query.get("namespace"),
            model=query.get("model"),
            subject=query.get("subject"),
            actor=self.actor,
        )
        after = int(query.get("after") or 0)
        events = hooks.list_events(flt, after=after, limit=int(query.get("limit") or 100))
        return {
            "events": [render.event(ev) for ev in events],
            "next_after": events[-1]["id"] if events else after,
        }

    def stream_events(self, query: Wire, last_id: int | None) -> Iterator[Wire | None]:
        """Poll the outbox (there is no server to push): events, None when idle."""
        import time

        cursor = self._hooks().last_event_id() if last_id is None else last_id
        yield {"position": cursor}
        interval = min(0.5, float(query.get("heartbeat") or 0.5))
        while True:
            page = self.list_events({**query, "after": cursor, "limit": 500})
            yield from page["events"]
            if not page["events"]:
                yield None
                time.sleep(interval)
            cursor = page["next_after"]

    def webhook_call(self, op: WebhookOp, webhook_id: int | None, body: Wire) -> Wire:
        """One webhook use case, in-process.

        Embedded registries run no dispatcher: deliveries queue in the database
        and a server on the same database sends them.
        """
        hooks = self._hooks()
        wid = int(webhook_id or 0)
        if op == "create":
            hook, secret = hooks.create_webhook(
                body["url"],
                event_types=body.get("event_types"),
                namespace=body.get("namespace"),
                model=body.get("model"),
                description=body.get("description", ""),
                active=body.get("active", True),
                actor=self.actor,
            )
            return {**render.webhook(hook), "secret": secret}
        if op == "list":
            return {"webhooks": [render.webhook(h) for h in hooks.list_webhooks(actor=self.actor)]}
        if op == "get":
            return render.webhook(hooks.get_webhook(wid, actor=self.actor))
        if op == "update":
            return render.webhook(hooks.update_webhook(wid, body, actor=self.actor))
        if op == "delete":
            hooks.delete_webhook(wid, actor=self.actor)
            return {}
        if op == "rotate":
            hook, secret = hooks.rotate_secret(
                wid, overlap=body.get("overlap_seconds"), actor=self.actor
            )
            return {**render.webhook(hook), "secret": secret}
        if op == "deliveries":
            page = hooks.list_deliveries(
                wid,
                status=body.get("status"),
                page_size=int(body.get("page_size") or 50),
                page_token=body.get("page_token"),
                actor=self.actor,
            )
            return {
                "deliveries": [render.delivery(d) for d in page.items],
                "next_page_token": page.next_page_token,
            }
        if op == "redeliver":
            return render.delivery(hooks.redeliver(wid, int(body["delivery_id"]), actor=self.actor))
        return render.delivery(hooks.send_test(wid, actor=self.actor))
