"""From a reference to a loaded predictor, through the SDK only.

The version is resolved once (an alias names one exact version), its files are
pulled into a private directory under the serving cache (mode 0700; the
SDK's blob cache verifies every file against its digest on the way in or
when read back), handed to the flavor, and removed once loaded: the
predictor holds the model in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.client import Registry, VersionInfo
from modelyard.domain.errors import InvalidInput
from modelyard.domain.monitoring import STATS_PATH, ReferenceStats, parse_reference_stats
from modelyard.domain.pickles import ALLOW_PICKLE_COMMAND, covers
from modelyard.serving.flavors import Predictor, choose_flavor, is_pickle, unservable
from modelyard.serving.tensors import BF16, Signature, parse_signature

log = logging.getLogger("modelyard.serving")

SERVABLE_STATES = frozenset({"ready", "published"})
LARGE_MODEL_BYTES = 64 << 20
"""From this total file size on, a model's inference runs on a worker thread
(a big model's call takes long enough that blocking the event loop would
stall every other request, and the hop costs little beside it)."""


@dataclass(slots=True)
class LoadedVersion:
    """One version in memory, ready to take requests."""

    ref: str
    """The exact reference (``ns/name/7``)."""
    namespace: str
    model: str
    version: int
    flavor: str
    predictor: Predictor
    offload: bool = False
    """Run inference on a worker thread, off the event loop (the flavor says
    so, or the model is large: :data:`LARGE_MODEL_BYTES`)."""
    loaded_at: float = field(default_factory=time.time)
    reference_stats: ReferenceStats | None = None
    """The version's reference statistics (``.modelyard/reference_stats.json``), if any."""
    policy_drift: Mapping[str, float] | None = None
    """Drift thresholds (``psi``, ``ks``) from the model's production policy,
    read at load time when the statistics file sets none."""

    @property
    def version_label(self) -> str:
        """The version number as OIP and the metrics spell it."""
        return str(self.version)


def private_dir(root: Path) -> Path:
    """``root`` created if missing and made 0700: pulled model files are only
    this user's to read (another local user could otherwise swap or read them)."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    return root


def check_servable(version: VersionInfo) -> None:
    """Refuse a version in a state that must not take traffic."""
    if version.state not in SERVABLE_STATES:
        raise unservable(
            f"{version.ref} is {version.state}; only ready or published versions are served",
            ref=version.ref,
            state=version.state,
        )


def allowed_exceptions(
    registry: Registry, version: VersionInfo, *, loading: bool = True
) -> frozenset[str]:
    """What ``version`` is allowed beyond the default: for format ``python``,
    ``custom_code`` when its model's policy allows it (asked only for such a
    version: other versions cost no extra call); for a pickle-only version,
    ``pickle`` when it carries an admin's exception bound to exactly its
    pickle files' digests (read from the version itself: no extra call).
    A pickle exception recorded for other bytes is refused here, naming it.

    ``loading``: this process is about to run the version's code or unpickle
    its files, and says so loudly (a warning). ``modelyard build`` only
    checks the version for the image it writes (whose server says so when it
    loads): it passes False and gets a plain note."""
    if (version.format or "").lower() == "python" and registry.custom_code_allowed(version.ref):
        if loading:
            log.warning("%s: running the version's own code (policy allows it)", version.ref)
        else:
            log.info(
                "%s: the image will run the version's own code (policy allows it)", version.ref
            )
        return frozenset({"custom_code"})
    manifest = [(str(f["path"]), str(f["digest"])) for f in version.files or []]
    found = version.pickle_exception
    if found is None or not is_pickle(version.format, [p for p, _ in manifest]):
        return frozenset()
    if not covers(found.get("digests"), manifest):
        raise unservable(
            f"{version.ref} holds only pickle files, and its pickle exception (recorded by "
            f"{found.get('by')}) names other bytes than its files now, so it is not "
            f"unpickled; an admin can record the exception again: {ALLOW_PICKLE_COMMAND}",
            ref=version.ref,
        )
    recorded = (version.ref, found["by"], found["at"], found["reason"])
    if loading:
        # Loud on purpose: this process is about to run whatever the file names.
        log.warning(
            "%s: UNPICKLING its pickle files under the admin's exception recorded by %s at %s "
            "(reason: %s)",
            *recorded,
        )
    else:
        log.info(
            "%s: the image's server will unpickle its pickle files under the admin's "
            "exception recorded by %s at %s (reason: %s)",
            *recorded,
        )
    return frozenset({"pickle"})


def check_pickle_digests(files: Mapping[str, Path], digests: Mapping[str, str]) -> None:
    """Hash the pulled pickle files again against the exception's digests
    before anything unpickles them: the exception covers these bytes only,
    whatever the cache or the pull did."""
    for path, expected in digests.items():
        local = files.get(path)
        actual = None if local is None else sha256_file(local)
        if actual != expected:
            raise unservable(
                f"{path} does not hash to the digest its pickle exception names; not unpickled",
                file=path,
            )


def sha256_file(path: Path) -> str:
    """The sha256 of a local file as the manifest spells digests (hex)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def load_version(
    registry: Registry, ref: str, cache_root: Path, *, threads: int = 1
) -> LoadedVersion:
    """Resolve ``ref``, pull its files (digest-verified) and load them with their flavor."""
    version = registry.get_version(ref)
    check_servable(version)
    paths = [str(f["path"]) for f in version.files or []]
    flavor = choose_flavor(  # refused before any byte is pulled
        version.format, paths, allowed_exceptions(registry, version)
    )
    signature = parse_signature(version.raw.get("signature"))
    check_bf16(flavor, signature)
    work = Path(tempfile.mkdtemp(prefix="pull-", dir=private_dir(cache_root)))
    try:
        # Pull the exact version resolved above, not ``ref`` again: an alias
        # moving in between must not mix two versions' metadata and files.
        _, out = registry.pull_version(version.ref, work, link=True)
        files = {p: out / p for p in paths}
        if flavor.NAME == "pickle":
            exception = version.pickle_exception or {}
            check_pickle_digests(files, exception.get("digests") or {})
        stats = read_reference_stats(version.ref, files.pop(STATS_PATH, None))
        policy_drift = None
        if stats is not None and stats.thresholds is None:
            # Only a version with statistics is judged for drift, and its own
            # thresholds come first: no call otherwise.
            policy_drift = registry.serving_policy(version.ref).get("drift_thresholds")
        started = time.perf_counter()
        try:
            predictor = flavor.load(files, signature, threads=threads)
        except ImportError as exc:
            raise unservable(
                f"the {flavor.NAME} flavor's runtime is not installed "
                f"(pip install 'modelyard[serving]'): {exc}",
                flavor=flavor.NAME,
            ) from None
        log.info(
            "loaded %s (%s) in %.3f s", version.ref, flavor.NAME, time.perf_counter() - started
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    offload = bool(getattr(flavor, "OFFLOAD", False)) or version.total_size >= LARGE_MODEL_BYTES
    return LoadedVersion(
        version.ref,
        version.namespace,
        version.model,
        version.version,
        flavor.NAME,
        predictor,
        reference_stats=stats,
        policy_drift=policy_drift,
        offload=offload,
    )


def check_bf16(flavor: Any, signature: Signature | None) -> None:
    """Refuse a BF16 tensor in the signature of a flavor that cannot take it
    (NumPy has no bfloat16: only a flavor that says so handles the bits)."""
    if signature is None or getattr(flavor, "BF16", False):
        return
    named = [s.name for s in (*signature.inputs, *signature.outputs) if s.datatype == BF16]
    if named:
        raise unservable(
            f"tensor(s) {', '.join(named)} are BF16, which the {flavor.NAME} flavor cannot "
            "take or give (BF16 is served for ONNX models; declare FP32 instead)",
            tensors=named,
        )


def read_reference_stats(ref: str, path: Path | None) -> ReferenceStats | None:
    """The statistics file's content, checked. A damaged file turns drift
    monitoring off for the version (with a warning) rather than refusing it:
    the model itself is sound, only the yardstick is missing."""
    if path is None:
        return None
    try:
        return parse_reference_stats(json.loads(path.read_bytes()))
    except (OSError, ValueError, InvalidInput) as exc:
        log.warning("%s: reference statistics unreadable, no drift monitoring: %s", ref, exc)
        return None
