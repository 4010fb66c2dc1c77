"""Run and logged-model artifacts in the content-addressed blob store, and the
resolution of an MLflow model source into a version's files.

Artifact paths are what MLflow's artifact proxy is sent, relative to the
proxy root: a run's tree ``<experiment>/<run id>/artifacts/<file>`` and a
logged model's ``<experiment>/models/<m-id>/artifacts/<file>`` (the server
hands these roots out as ``mlflow-artifacts:/...`` URIs). A path is checked
as a whole by the one file-path rule of REST v1
(:func:`~modelyard.domain.names.validate_file_path`: no ``..``, absolute
paths, backslashes, encoded traversal, NUL...), then must name an existing
run or logged model of that experiment. Bytes become blobs (hashed as they
arrive, stored once per digest); the index maps (owner, path) to a digest.
Nothing here opens a file by a client's path: the blob store is addressed by
digest only.

A registered version owns its files (:func:`resolve_model_source`): its
MLflow ``source`` (``runs:/<run>/<path>``, ``models:/m-<id>``, or the
``mlflow-artifacts:/`` URI of either tree) is looked up in the index and
becomes the version's manifest by digest, no bytes copied. Anything else is
left unresolved (the caller keeps the text). No filesystem, no network.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.domain import identity as auth
from modelyard.domain.entities import FileEntry
from modelyard.domain.errors import IntegrityError, InvalidInput, NotFound
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.names import validate_file_path
from modelyard.domain.tracking import (
    ArtifactFile,
    LifecycleStage,
    validate_experiment_id,
    validate_model_id,
    validate_run_id,
)
from modelyard.service.blobs import check_not_collected
from modelyard.service.tracking import ARTIFACT_SCHEME
from modelyard.store.metadata.ports import MetadataStore, RegistryTx, TrackingQueries

if TYPE_CHECKING:
    from modelyard.service.blobs import BlobService, StoredBlob, Upload
    from modelyard.store.blobs.base import BlobStore

MAX_LISTED = 100_000
_LOGGED_MODEL_URI = re.compile(r"models:/(m-[0-9a-f]{32})(?=/|$)")
MAX_SOURCE_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class ArtifactTarget:
    """Where an artifact path points: the owner (run or logged model id), its
    namespace, and the path inside the owner's tree (``""`` for the root)."""

    owner: str
    namespace: str
    path: str


@dataclass(frozen=True, slots=True)
class ListedArtifact:
    """One entry of a directory listing: a file with its size, or a directory."""

    name: str
    is_dir: bool
    size: int | None


@dataclass(frozen=True, slots=True)
class ResolvedSource:
    """The files a model source names, and the run it came from (if known)."""

    files: list[FileEntry]
    run_id: str | None
    model_id: str | None


def _split(path: str) -> tuple[int, str, str]:
    """(experiment id, owner id, path inside the owner's tree) of a proxy path."""
    validate_file_path(path)
    parts = path.split("/")
    if len(parts) >= 3 and parts[2] == "artifacts":
        eid, owner, rest = parts[0], validate_run_id(parts[1]), parts[3:]
    elif len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
        eid, owner, rest = parts[0], validate_model_id(parts[2]), parts[4:]
    else:
        raise InvalidInput(
            f"artifact path {path!r} is not under a run's or logged model's artifact root",
            code="INVALID_PATH",
            details={"path": path},
        )
    return validate_experiment_id(eid), owner, "/".join(rest)


def _owner_namespace(tq: TrackingQueries, experiment_id: int, owner: str) -> str | None:
    """The namespace of an active run or logged model of that experiment, else None."""
    if owner.startswith("m-"):
        models = tq.load_logged_models([owner])
        if not models or models[0].experiment_id != experiment_id:
            return None
        if models[0].lifecycle_stage is not LifecycleStage.ACTIVE:
            return None
        return models[0].namespace
    runs = tq.load_runs([owner])
    if not runs or runs[0].experiment_id != experiment_id:
        return None
    if runs[0].lifecycle_stage is not LifecycleStage.ACTIVE:
        return None
    return runs[0].namespace


class ArtifactService:
    """Artifact upload, download and listing over the blob store and the index."""

    def __init__(self, db: MetadataStore, blob_service: BlobService) -> None:
        self.db = db
        self.blob_service = blob_service

    def target(self, path: str, *, actor: Principal, write: bool) -> ArtifactTarget:
        """Check ``path`` and the caller's permission (write or read on the
        owner's namespace); ``ARTIFACT_ROOT_NOT_FOUND`` if no active run or
        logged model owns it."""
        eid, owner, rel = _split(path)
        with self.db.read() as tx:
            namespace = _owner_namespace(tx.tracking, eid, owner)
        if namespace is None:
            raise NotFound(
                f"no active run or logged model owns {path!r}",
                code="ARTIFACT_ROOT_NOT_FOUND",
                details={"path": path},
            )
        auth.require(actor, Permission.WRITE if write else Permission.READ, namespace)
        return ArtifactTarget(owner, namespace, rel)

    def begin_upload(
        self, path: str, *, actor: Principal, size: int | None = None
    ) -> tuple[ArtifactTarget, Upload]:
        """Start storing the bytes of one artifact file (the caller writes the
        chunks, then calls :meth:`finish_upload`). Requires: write."""
        target = self.target(path, actor=actor, write=True)
        if not target.path:
            raise InvalidInput("an artifact upload needs a file path", code="INVALID_PATH")
        return target, self.blob_service.begin_upload(actor, declared_size=size)

    def finish_upload(
        self, target: ArtifactTarget, stored: StoredBlob, *, actor: Principal
    ) -> ArtifactFile:
        """Index a stored upload under its path (replacing what was there)."""
        entry = ArtifactFile(target.path, stored.digest, stored.size)

        def op(tx: RegistryTx) -> None:
            # The index keeps its blob alive as a manifest does, so it must not
            # name one garbage collection is deleting (service/gc.py).
            check_not_collected(tx, [FileEntry(entry.path, entry.digest, entry.size)])
            tx.tracking.put_artifact(target.owner, entry, actor=actor.name)

        self.db.transact(op, retry_conflicts=True)
        return entry

    def upload(self, path: str, chunks: Iterator[bytes], *, actor: Principal) -> ArtifactFile:
        """A whole upload from a blocking caller."""
        target, up = self.begin_upload(path, actor=actor)
        try:
            for chunk in chunks:
                up.write(chunk)
            stored = up.commit()
        except BaseException:
            up.abort()
            raise
        return self.finish_upload(target, stored, actor=actor)

    def open(self, path: str, *, actor: Principal) -> tuple[ArtifactFile, Iterator[bytes]]:
        """One artifact file and its bytes. Requires: read."""
        target = self.target(path, actor=actor, write=False)
        with self.db.read() as tx:
            entry = tx.tracking.artifact(target.owner, target.path) if target.path else None
        if entry is None:
            raise NotFound(
                f"artifact {path!r} not found", code="ARTIFACT_NOT_FOUND", details={"path": path}
            )
        return entry, self.blob_service.store.iter_range(entry.digest)

    def list(self, path: str, *, actor: Principal) -> list[ListedArtifact]:
        """The files and directories directly under ``path`` (empty when
        nothing is there, as MLflow answers). Requires: read."""
        target = self.target(path, actor=actor, write=False)
        with self.db.read() as tx:
            tq = tx.tracking
            if target.path and tq.artifact(target.owner, target.path) is not None:
                return []  # a file is not a directory
            entries = tq.artifacts_under(target.owner, target.path, limit=MAX_LISTED)
        return list_directory(entries, target.path)

    def delete(self, path: str, *, actor: Principal) -> int:
        """Drop a file or directory from the index (blobs are shared, kept).
        Requires: write."""
        target = self.target(path, actor=actor, write=True)

        def op(tx: RegistryTx) -> int:
            return tx.tracking.delete_artifacts(target.owner, target.path)

        return int(self.db.transact(op))


def list_directory(entries: list[ArtifactFile], prefix: str) -> list[ListedArtifact]:
    """Collapse recursive entries under ``prefix`` into one directory level."""
    start = prefix.rstrip("/") + "/" if prefix else ""
    seen: dict[str, ListedArtifact] = {}
    for e in entries:
        rest = e.path[len(start) :]
        head, sep, _ = rest.partition("/")
        if sep:
            seen.setdefault(head, ListedArtifact(head, True, None))
        else:
            seen[head] = ListedArtifact(head, False, e.size)
    return sorted(seen.values(), key=lambda x: x.name)


def _tree(tq: TrackingQueries, owner: str, prefix: str) -> list[FileEntry]:
    start = prefix.rstrip("/") + "/" if prefix else ""
    entries = tq.artifacts_under(owner, prefix, limit=MAX_LISTED)
    return [
        FileEntry(
            e.path[len(start) :],
            e.digest,
            e.size,
            mimetypes.guess_type(e.path)[0] or "application/octet-stream",
        )
        for e in entries
    ]


def resolve_model_source(
    db: MetadataStore, source: str, *, actor: Principal
) -> ResolvedSource | None:
    """The files an MLflow model ``source`` names, by digest; None when the
    source is not one of ours (then it stays text only).

    ``runs:/<run>/<path>``: the run's files under ``<path>``; if it has none
    there, the newest logged model of that run named ``<path>`` (MLflow 3
    keeps a model's files with the logged model). ``models:/m-<id>[/<path>]``:
    the logged model's files. ``mlflow-artifacts:/<exp>/<run>/artifacts/<path>``
    and ``mlflow-artifacts:/<exp>/models/<m-id>/artifacts[/<path>]``: those
    trees. A source of ours that names nothing (no such run, no files) is
    ``SOURCE_NOT_FOUND``. Requires: read on the run's or model's namespace.
    """
    if not isinstance(source, str) or len(source) > MAX_SOURCE_LENGTH:
        raise InvalidInput(
            f"source must be a string of at most {MAX_SOURCE_LENGTH} characters",
            code="INVALID_INPUT",
        )
    owner: str
    prefix: str
    experiment_id: int | None = None
    if source.startswith("runs:/"):
        rest = source[len("runs:/") :].strip("/")
        run_part, _, prefix = rest.partition("/")
        owner = validate_run_id(run_part)
        if prefix:
            validate_file_path(prefix)
    elif (m := _LOGGED_MODEL_URI.match(source)) is not None:
        # ``models:/m-<32 hex>[/path]`` only: ``models:/<name>/<version>`` is
        # the registry's own (a registered model may well be named "m-...").
        owner, prefix = m.group(1), source[m.end() :].strip("/")
        if prefix:
            validate_file_path(prefix)
    elif source.startswith(ARTIFACT_SCHEME + "/") and not source.startswith(ARTIFACT_SCHEME + "//"):
        experiment_id, owner, prefix = _split(source[len(ARTIFACT_SCHEME) + 1 :])
    else:
        return None
    with db.read() as tx:
        tq = tx.tracking
        namespace: str | None
        run_id: str | None = None
        model_id: str | None = None
        if owner.startswith("m-"):
            models = tq.load_logged_models([owner])
            if not models or (
                experiment_id is not None and models[0].experiment_id != experiment_id
            ):
                raise _source_not_found(source)
            namespace, model_id, run_id = models[0].namespace, owner, models[0].source_run_id
        else:
            runs = tq.load_runs([owner])
            if not runs or (experiment_id is not None and runs[0].experiment_id != experiment_id):
                raise _source_not_found(source)
            namespace, run_id = runs[0].namespace, owner
        auth.require(actor, Permission.READ, namespace)
        files = _tree(tq, owner, prefix)
        if not files and model_id is None and prefix and experiment_id is None:
            # runs:/<run>/<name> of an MLflow 3 model: its files are the logged model's.
            ids = tq.search_logged_model_ids(
                experiment_ids=[runs[0].experiment_id],
                stages=(LifecycleStage.ACTIVE.value,),
                name=prefix,
                source_run_id=owner,
                limit=1,
                offset=0,
            )
            if ids:
                model_id = ids[0]
                files = _tree(tq, model_id, "")
    if not files:
        raise _source_not_found(source)
    return ResolvedSource(files, run_id, model_id)


def check_stored(blobs: BlobStore, files: list[FileEntry]) -> None:
    """Every file's blob is stored with its size (``BLOB_MISSING`` /
    ``SIZE_MISMATCH``): the index could outlive a blob only through a
    garbage collection that ignored it."""
    for f in files:
        size = blobs.size_of(f.digest)
        if size is None:
            raise IntegrityError(
                f"blob for {f.path!r} is not stored",
                code="BLOB_MISSING",
                details={"path": f.path, "digest": f.digest},
            )
        if size != f.size:
            raise IntegrityError(
                f"indexed size of {f.path!r} does not match its blob",
                code="SIZE_MISMATCH",
                details={"path": f.path, "declared": f.size, "stored": size},
            )


def _source_not_found(source: str) -> NotFound:
    return NotFound(
        f"model source {source!r} names no stored files",
        code="SOURCE_NOT_FOUND",
        details={"source": source},
    )
