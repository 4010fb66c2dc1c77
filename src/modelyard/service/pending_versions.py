"""Draft versions whose files wait for the verification of a direct upload.

Issue 13: a client that PUT a blob straight into the object store may create
the version naming it at once, while the background verifier still has to
read the bytes back. The version is then ``draft`` with a record of the
files it waits on; it becomes ``ready`` in the verifier's transaction that
publishes the last of those blobs, or stays ``draft`` with the file marked
``failed`` (and a ``version.verification_failed`` event) when the bytes do
not hash to the digest. Uploading the right bytes for that digest again
releases it. Until then nobody reads the file (``BLOB_UNVERIFIED``) and
nobody moves the version by hand (``VERSION_UNVERIFIED``).

Only the creator's own uploads count (the OCI mount rule: knowing a digest
is not enough): a wait names the uploader whose verified upload releases it,
or nobody in particular when the creator reads every namespace anyway.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from modelyard.domain.entities import FileEntry, PendingFile, Version, VersionState
from modelyard.domain.errors import Conflict, IntegrityError, ModelyardError
from modelyard.service.core import version_payload
from modelyard.store.metadata.ports import PENDING, VERIFIED, RegistryTx


def pending_files(
    tx: RegistryTx, files: Sequence[FileEntry], uploader: str | None
) -> dict[str, int]:
    """Digests of ``files`` with a direct upload by ``uploader`` (None: anyone)
    still waiting for the verifier, with the size that upload declared."""
    return tx.pending_uploads_of(sorted({f.digest for f in files}), uploader)


def recheck_in_tx(
    tx: RegistryTx, waiting: Sequence[FileEntry], uploader: str | None
) -> list[FileEntry]:
    """Inside the create transaction: which of ``waiting`` (pending when the
    prepare step looked) still are. A verification that finished meanwhile
    either published the blob for the caller (nothing to wait for) or refused
    it (``BLOB_MISSING``: upload again).

    The rows read are locked on PostgreSQL, so a verifier finishing one of
    them either committed before (seen here) or waits for this commit (and
    then sees the wait this transaction records). Call it before anything
    locks a model (the verifier locks its verification row, then models).
    """
    if not waiting:
        return []
    states = tx.verification_states(sorted({f.digest for f in waiting}), uploader)
    kept: list[FileEntry] = []
    for f in waiting:
        seen = states.get(f.digest, set())
        if PENDING in seen:
            # Still pending (an older verified row may name bytes since
            # collected): wait for this upload.
            kept.append(f)
        elif VERIFIED not in seen:
            raise IntegrityError(
                f"blob for {f.path!r} failed verification; upload it again",
                code="BLOB_MISSING",
                details={"path": f.path, "digest": f.digest},
            )
    return kept


def with_pending(tx: RegistryTx, version: Version) -> Version:
    """``version`` with its waiting files loaded (only a draft can have any)."""
    if version.state is VersionState.DRAFT:
        version.pending = tx.version_waits([version.id]).get(version.id, [])
    else:
        version.pending = []
    return version


def check_not_waiting(tx: RegistryTx, version: Version) -> None:
    """Refuse to move a draft by hand while it waits (``VERSION_UNVERIFIED``)."""
    if version.state is not VersionState.DRAFT:
        return
    waits = tx.version_waits([version.id]).get(version.id)
    if waits:
        raise Conflict(
            f"version {version.ref} waits for the verification of "
            f"{', '.join(w.path for w in waits)}",
            code="VERSION_UNVERIFIED",
            details={"reference": version.ref, "pending": [_wire(w) for w in waits]},
        )


def check_file_readable(tx: RegistryTx, version: Version, entry: FileEntry) -> None:
    """Refuse the bytes of a file whose blob is not verified yet (``BLOB_UNVERIFIED``)."""
    if version.state is not VersionState.DRAFT:
        return
    for w in tx.version_waits([version.id]).get(version.id, []):
        if w.path == entry.path:
            raise Conflict(
                f"the blob of {entry.path!r} in {version.ref} is not verified yet ({w.state})",
                code="BLOB_UNVERIFIED",
                details={"reference": version.ref, **_wire(w)},
            )


def check_all_readable(version: Version) -> None:
    """Refuse every file of a version loaded with its waits while any waits
    (a whole-version archive): ``BLOB_UNVERIFIED`` naming the first."""
    for w in version.pending or ():
        raise Conflict(
            f"the blob of {w.path!r} in {version.ref} is not verified yet ({w.state})",
            code="BLOB_UNVERIFIED",
            details={"reference": version.ref, **_wire(w)},
        )


def release_in_tx(tx: RegistryTx, digest: str, uploader: str) -> list[int]:
    """``uploader``'s bytes of ``digest`` are now verified and published:
    drop the waits they release, and move each draft that asked to become
    ready and waits on nothing else to ``ready`` (``version.files_committed``,
    ``verified: true``). Returns the ids of the versions moved.

    Every affected model is locked first (in name order, so two verifiers
    never deadlock), then the waits are dropped and counted: of two verifiers
    releasing the last two files of one version, the second to take the lock
    sees the first's committed release and moves it, exactly once. A version
    deleted meanwhile has no waits left; one that is no longer a draft is
    left as it is.
    """
    vids = tx.versions_waiting_on(digest, uploader)
    if not vids:
        return []
    # Locked in name order, the same in every transaction; a model deleted
    # meanwhile took its versions' waits with it (nothing to lock or move).
    for namespace, name in sorted({(v.namespace, v.model) for v in tx.load_versions(vids)}):
        tx.find_model_id(namespace, name, for_update=True)
    moved: list[int] = []
    for vid in vids:
        promote = tx.release_version_waits(vid, digest, uploader)
        if not promote or tx.count_version_waits(vid):
            continue
        current = tx.load_versions([vid], with_files=True)
        if not current or current[0].state is not VersionState.DRAFT:
            continue
        before = current[0]
        tx.update_version(vid, state=VersionState.READY.value)
        after = tx.load_versions([vid], with_files=True)[0]
        payload = version_payload(after)
        payload["verified"] = True
        payload["before"] = {"state": before.state.value, "file_count": before.file_count}
        payload["after"] = {"state": after.state.value, "file_count": after.file_count}
        tx.append_event(
            "version.files_committed",
            actor=uploader,
            namespace=after.namespace,
            subject=after.ref,
            payload=payload,
        )
        moved.append(vid)
    return moved


def fail_in_tx(
    tx: RegistryTx,
    digest: str,
    uploader: str,
    exc: ModelyardError,
    upload_id: str,
) -> list[int]:
    """``uploader``'s bytes of ``digest`` failed verification: mark the waits
    they would have released failed, and write ``version.verification_failed``
    for each version (still draft); the ids of those versions."""
    error = exc.to_dict()
    hit = tx.fail_version_waits(digest, uploader, json.dumps(error))
    paths: dict[int, list[str]] = {}
    for vid, path in hit:
        paths.setdefault(vid, []).append(path)
    for ver in tx.load_versions(sorted(paths)):
        tx.append_event(
            "version.verification_failed",
            actor=uploader,
            namespace=ver.namespace,
            subject=ver.ref,
            payload={
                **version_payload(ver),
                "digest": digest,
                "paths": paths[ver.id],
                "upload_id": upload_id,
                "error": error,
            },
        )
    return sorted(paths)


def _wire(w: PendingFile) -> dict[str, Any]:
    out = asdict(w)
    if out["error"] is None:
        del out["error"]
    return out
