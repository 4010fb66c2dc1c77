"""Which versions take traffic, under which names.

Requests read the table without a lock: each read picks up one whole
:class:`Live` (or one ``versions`` dict) and keeps using it, while a swap
builds new objects and replaces them with single assignments (atomic in
Python). An in-flight request therefore finishes on the version it started
on; the old version is freed when the last such request drops it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import orjson

from modelyard.domain.errors import InvalidInput
from modelyard.serving.loader import LoadedVersion
from modelyard.serving.metrics import ServingMetrics, VersionMetrics
from modelyard.serving.monitor import MonitorCollector, VersionMonitor
from modelyard.serving.tensors import BF16, Signature


@dataclass(slots=True)
class Live:
    """A loaded version as requests use it: predictor, signature, bound
    metrics children and its OIP metadata, serialized once."""

    loaded: LoadedVersion
    signature: Signature
    metrics: VersionMetrics
    metadata: bytes
    monitor: VersionMonitor
    """The rolling window of what this version receives (drift, errors, latency)."""
    bf16: frozenset[str] = frozenset()
    """Names of its BF16 tensors (held as uint16 bits; logged as values)."""

    @property
    def version(self) -> str:
        """The version number as a string (OIP's version names)."""
        return self.loaded.version_label


@dataclass(slots=True)
class ServedModel:
    """One OIP model name: its default version (the first reference given for
    it) and every version loaded under it."""

    name: str
    default: Live
    default_ref: str
    """The reference (as given) whose version the unversioned routes answer with."""
    owner: str
    """What the name stands for: ``ns/model`` for a model served under its own
    name, ``bundle ns/name`` for a bundle's role."""
    versions: dict[str, Live] = field(default_factory=dict)

    def metadata(self) -> bytes:
        """OIP model metadata of the default version, listing every loaded version."""
        live = self.default
        versions = sorted(self.versions, key=int)
        return _metadata(self.name, live.loaded.flavor, live.signature, versions)


def _metadata(name: str, flavor: str, signature: Signature, versions: list[str]) -> bytes:
    return orjson.dumps(
        {
            "name": name,
            "versions": versions,
            "platform": flavor,
            "inputs": [s.to_wire() for s in signature.inputs],
            "outputs": [s.to_wire() for s in signature.outputs],
        }
    )


class ModelTable:
    """Served models by name. Writers (startup, the follower thread) hold a
    lock; readers (requests on the event loop) never do."""

    def __init__(self, metrics: ServingMetrics, *, window_seconds: float = 300.0) -> None:
        self.metrics = metrics
        self.models: dict[str, ServedModel] = {}
        self.window_seconds = window_seconds
        """The monitoring window of versions loaded from now on."""
        self._lock = threading.Lock()
        metrics.registry.register(MonitorCollector(self))

    def _live(self, loaded: LoadedVersion, name: str) -> Live:
        sig = loaded.predictor.signature
        return Live(
            loaded,
            sig,
            self.metrics.for_version(name, loaded.version_label),
            _metadata(name, loaded.flavor, sig, [loaded.version_label]),
            VersionMonitor(loaded.reference_stats, sig, self.window_seconds),
            frozenset(s.name for s in (*sig.inputs, *sig.outputs) if s.datatype == BF16),
        )

    def add(
        self,
        ref: str,
        loaded: LoadedVersion,
        *,
        name: str | None = None,
        owner: str | None = None,
    ) -> None:
        """Serve ``loaded`` (what ``ref`` resolved to) under ``name`` (default:
        its model name); the first reference given for a name is its default.

        ``owner`` says what the name stands for (default ``ns/model``; a
        bundle's role passes ``bundle ns/name``): one name cannot stand for
        two things, such as two namespaces' models or a role and a model.
        """
        name = name or loaded.model
        owner = owner or f"{loaded.namespace}/{loaded.model}"
        with self._lock:
            served = self.models.get(name)
            if served is not None and served.owner != owner:
                raise InvalidInput(
                    f"two models served as {name!r} ({served.owner}: {served.default.loaded.ref}; "
                    f"{owner}: {loaded.ref}): serve them from two servers",
                    code="UNSERVABLE_VERSION",
                    details={"name": name},
                )
            live = self._live(loaded, name)
            if served is None:
                self.models = {**self.models, name: ServedModel(name, live, ref, owner)}
                served = self.models[name]
            if live.version not in served.versions:
                served.versions = {**served.versions, live.version: live}
                self._mark_loaded(name, live)

    def swap(
        self,
        ref: str,
        old: LoadedVersion,
        new: LoadedVersion,
        *,
        keep_old: bool,
        name: str | None = None,
    ) -> None:
        """Make ``new`` take the traffic ``ref`` had on ``old`` under ``name``
        (default: the model's name), in single assignments.

        ``keep_old``: another reference still serves ``old`` (``fraud/3`` beside
        ``fraud@production``), so it stays reachable by its version number.
        """
        name = name or old.model
        with self._lock:
            served = self.models[name]
            versions = dict(served.versions)
            live = versions.get(new.version_label)
            if live is None or live.loaded is not new:
                live = self._live(new, name)
                versions[live.version] = live
                self._mark_loaded(name, live)
            if not keep_old and old.version_label != live.version:
                gone = versions.pop(old.version_label, None)
                if gone is not None:
                    self.metrics.loaded.remove(
                        name, gone.version, gone.loaded.ref, gone.loaded.flavor
                    )
            # New entries first, then the default: a request never finds a
            # default whose version its own lookup would not know.
            served.versions = versions
            if served.default_ref == ref:
                served.default = live
            self.metrics.swaps.labels(name).inc()

    def monitoring(self) -> list[dict[str, object]]:
        """Every served version's monitoring window (``GET /monitoring``)."""
        out: list[dict[str, object]] = []
        for served in list(self.models.values()):
            for version, live in sorted(served.versions.items(), key=lambda kv: int(kv[0])):
                out.append(
                    {
                        "model": served.name,
                        "version": version,
                        "ref": live.loaded.ref,
                        "reference_stats": live.loaded.reference_stats is not None,
                        **live.monitor.snapshot(),
                    }
                )
        return out

    def live(self, name: str, version: str) -> Live | None:
        """The served version ``version`` under ``name``, if it takes traffic."""
        served = self.models.get(name)
        return served.versions.get(version) if served is not None else None

    def loaded(self, name: str, version: str) -> LoadedVersion | None:
        """The version already in memory under ``name`` / ``version``, if any."""
        served = self.models.get(name)
        live = served.versions.get(version) if served is not None else None
        return live.loaded if live is not None else None

    def _mark_loaded(self, name: str, live: Live) -> None:
        v = live.loaded
        self.metrics.loaded.labels(name, live.version, v.ref, v.flavor).set(1)
