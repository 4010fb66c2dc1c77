"""Hot swap: follow the registry's event stream and move with the aliases served.

For every reference served by alias (``fraud@production``), an
``alias.moved`` event on it makes the follower resolve the alias again
through the SDK. When it names another version, that version is loaded
beside the one taking traffic, warmed up with a request built from its
signature, and only then swapped in (:meth:`ModelTable.swap`); the old one is
dropped once no request holds it. A version that fails to load or to warm
up never takes traffic: the old one keeps serving, the failure is logged and
counted (``modelyard_serving_load_failures_total``).

A bundle served by name (``pipeline``, ``pipeline@latest``: not a number)
is followed the same way: a ``bundle.*`` event on it makes the follower read
the bundle version it names now, and when that pins other versions, every
changed role's version is loaded and warmed up first, and only when all of
them are ready are they swapped in, role after role. If one fails, none is
swapped: the roles keep serving the set they had, which fits together.

Events are triggers, not truth: the alias is always resolved again, so the
consumer's view applies and a missed or repeated event changes nothing. Every
followed alias is resolved again each time the stream opens (after it has
opened, so a move made in the instant between loading and subscribing comes
as an event), and the stream is reopened every :data:`RECONCILE_SECONDS` of
quiet (``modelyard serve --resync``). A consumer token gets the moves of
protected aliases onto versions in its production view as events (the
registry's consumer event rule); other moves it sees at the next resync.

Every load reads the version afresh, so a pickle exception revoked (or a
custom-code permission withdrawn) refuses the next swap onto that version;
a version already in memory keeps serving until it is swapped out or the
server restarts (docs/serving.md, "Pickles").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.client import Registry
from modelyard.domain.bundles import parse_bundle_ref
from modelyard.domain.references import parse_reference
from modelyard.serving import heap
from modelyard.serving.loader import LoadedVersion, load_version
from modelyard.serving.table import ModelTable

log = logging.getLogger("modelyard.serving")

RECONCILE_SECONDS = 10.0


@dataclass(slots=True)
class Followed:
    """A reference as given and the version it serves now."""

    ref: str
    subject: str | None
    """``ns/name@alias`` for an alias (the event subject), None for a pinned
    version; for a bundle's role, ``ns/name`` of the bundle when it is
    followed (not pinned to a bundle version number)."""
    current: LoadedVersion
    name: str = ""
    """The name it is served under (the model's, or the bundle role's)."""
    role: str | None = None
    """The bundle role this is (``ref`` is then the bundle reference)."""

    @property
    def key(self) -> str:
        """The table's key for this reference (``ref``, or ``ref#role``)."""
        return self.ref if self.role is None else f"{self.ref}#{self.role}"


@dataclass(frozen=True, slots=True)
class Served:
    """One thing to serve and follow: a reference as given and what it loaded.

    For a bundle's role, ``ref`` is the bundle reference (``pipeline@latest``),
    ``role`` the role, and ``name`` the role it is served as."""

    ref: str
    loaded: LoadedVersion
    name: str
    role: str | None = None

    @property
    def key(self) -> str:
        """The table's key for this reference (``ref``, or ``ref#role``)."""
        return self.ref if self.role is None else f"{self.ref}#{self.role}"


def bundle_subject(ref: str) -> str | None:
    """The event subject of a bundle reference that follows the bundle (no
    version number): ``bundle:ns/name``; None when it pins one version."""
    parsed, number = parse_bundle_ref(ref)
    return None if number is not None else f"bundle:{parsed.namespace}/{parsed.name}"


def about_bundle(event_subject: str, subject: str) -> bool:
    """True if an event's subject is about the bundle ``subject``
    (``bundle:ns/name``): the bundle itself, one of its versions
    (``bundle:ns/name/3``) or an alias of it (``bundle:ns/name@prod``)."""
    return event_subject == subject or event_subject.startswith((subject + "/", subject + "@"))


class AliasFollower:
    """The thread that keeps aliased references on the version their alias names."""

    def __init__(
        self,
        registry: Registry,
        table: ModelTable,
        served: list[Served],
        cache_root: Path,
        *,
        threads: int = 1,
        reconcile_seconds: float = RECONCILE_SECONDS,
        on_swap: Callable[[str, int], None] | None = None,
        on_load_failure: Callable[[str, int, str], None] | None = None,
    ) -> None:
        """``on_swap(ref, version)`` runs after a swap and ``on_load_failure(ref,
        version, error)`` after a resolved version failed to load or warm up
        (the deployment heartbeats report both)."""
        self.registry = registry
        self.on_swap = on_swap
        self.on_load_failure = on_load_failure
        self.table = table
        self.cache_root = cache_root
        self.threads = threads
        self.reconcile_seconds = reconcile_seconds
        # What failed to load, by followed key: (what was wanted, when). An
        # event and the resolve at the stream's (re)opening can name the same
        # move twice within milliseconds; a version that just failed is tried
        # again at most once per resync interval, not once per trigger.
        self._failed: dict[str, tuple[str, float]] = {}
        self.followed: list[Followed] = []
        for s in served:
            if s.role is not None:
                subject = bundle_subject(s.ref)
            else:
                parsed = parse_reference(s.ref)
                subject = str(parsed) if parsed.alias is not None else None
            self.followed.append(Followed(s.ref, subject, s.loaded, s.name, s.role))
        self._stop = threading.Event()
        # Followed bundle references and their roles: fixed at start, like
        # the list they are grouped from.
        self.bundles: dict[str, list[Followed]] = {}
        for f in self.followed:
            if f.role is not None and f.subject is not None:
                self.bundles.setdefault(f.ref, []).append(f)
        self._thread = threading.Thread(target=self._run, name="alias-follower", daemon=True)

    @property
    def active(self) -> bool:
        """True if any reference is an alias (else there is nothing to follow)."""
        return any(f.subject is not None for f in self.followed)

    def start(self) -> None:
        """Start following (no thread when no alias is served)."""
        if self.active:
            self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it does at its next event or heartbeat."""
        self._stop.set()

    def reconcile_all(self) -> None:
        """Resolve every followed alias and bundle again."""
        for f in self.followed:
            if f.subject is not None and f.role is None:
                self.reconcile(f)
        for ref, roles in self.bundles.items():
            self.reconcile_bundle(ref, roles)

    def _run(self) -> None:
        last: int | None = None
        aliases = {f.subject for f in self.followed if f.subject is not None and f.role is None}
        types = ["alias.moved"] if aliases else []
        if self.bundles:
            types.append("bundle.*")
        while not self._stop.is_set():
            try:
                # Resolved again once the stream is open (``on_open``): a move
                # committed after that read arrives as an event, so none is
                # left for the next resync.
                for event in self.registry.watch(
                    types=types,
                    after=last,
                    idle_timeout=self.reconcile_seconds,
                    on_open=lambda _position: self.reconcile_all(),
                ):
                    last = event.id
                    if self._stop.is_set():
                        return
                    subject = event.subject or ""
                    if event.type == "alias.moved" and subject in aliases:
                        for f in self.followed:
                            if f.role is None and f.subject == subject:
                                self.reconcile(f)
                    if event.type.startswith("bundle."):
                        for ref, roles in self.bundles.items():
                            if about_bundle(subject, roles[0].subject or ""):
                                self.reconcile_bundle(ref, roles)
            except Exception:  # the registry unreachable, a bad token: keep serving, retry
                log.exception("following the registry's events failed; retrying")
                self._stop.wait(self.reconcile_seconds)

    def reconcile_bundle(self, ref: str, roles: list[Followed]) -> bool:
        """Read the bundle version ``ref`` names now; when it pins other
        versions for the served roles, load and warm up every changed one,
        then swap them all. Nothing is swapped if one fails. True if swapped."""
        fresh: dict[str, LoadedVersion] = {}
        failed: Followed | None = None
        wanted = ""
        bundle_version: dict[str, Any] | None = None
        try:
            bundle_version = self.registry.bundle(ref).version()
            if self._failed_lately(ref, str(bundle_version["ref"])):
                return False
            members = bundle_version["members"]
            for f in roles:
                failed = f
                assert f.role is not None
                member = members.get(f.role)
                if member is None:
                    raise RuntimeError(
                        f"bundle version {bundle_version['ref']} has no role {f.role!r}"
                    )
                wanted = str(member["ref"])
                if wanted == f.current.ref:
                    continue
                new = next((v for v in fresh.values() if v.ref == wanted), None)
                if new is None:
                    new = load_version(self.registry, wanted, self.cache_root, threads=self.threads)
                    warm_up(new)
                fresh[f.role] = new
        except Exception as exc:  # any failure keeps the whole old set serving
            if bundle_version is not None:
                self._failed[ref] = (str(bundle_version["ref"]), time.monotonic())
            name = failed.name if failed is not None else ref
            self.table.metrics.load_failures.labels(name).inc()
            log.error(
                "%s: %s not loaded, the bundle keeps serving its roles as they were: %s",
                ref,
                wanted or ref,
                exc,
            )
            return False
        if not fresh:
            return False
        for f in roles:
            new = fresh.get(f.role or "")
            if new is None:
                continue
            old = f.current
            self.table.swap(f.key, old, new, keep_old=self._shared(f, old), name=f.name)
            f.current = new
            log.info("%s role %s moved: %s -> %s (swapped)", ref, f.role, old.ref, new.ref)
        heap.resettle()
        return True

    def reconcile(self, f: Followed) -> bool:
        """Resolve ``f``'s alias; swap to the version it names if that is
        another one. True if a swap happened."""
        model = f.name or f.current.model
        wanted = f.ref
        wanted_version: int | None = None
        try:
            target = self.registry.get_version(f.ref)
            wanted = target.ref
            wanted_version = target.version
            if target.version == f.current.version:
                return False
            if self._failed_lately(f.key, target.ref):
                return False
            new = self.table.loaded(model, str(target.version))
            if new is not None and new.ref != target.ref:
                new = None
            if new is None:
                new = load_version(self.registry, target.ref, self.cache_root, threads=self.threads)
                warm_up(new)
        except Exception as exc:  # any failure keeps the old version serving
            if wanted_version is not None:
                self._failed[f.key] = (wanted, time.monotonic())
            self.table.metrics.load_failures.labels(model).inc()
            log.error("%s: %s not loaded, %s keeps serving: %s", f.ref, wanted, f.current.ref, exc)
            # Only a version that was resolved and then failed is a load
            # failure; an unreachable registry is not the version's fault.
            if wanted_version is not None and self.on_load_failure is not None:
                self.on_load_failure(f.ref, wanted_version, f"{type(exc).__name__}: {exc}")
            return False
        old = f.current
        self.table.swap(f.key, old, new, keep_old=self._shared(f, old), name=model)
        f.current = new
        log.info("%s moved: %s -> %s (swapped)", f.ref, old.ref, new.ref)
        heap.resettle()
        if self.on_swap is not None:
            self.on_swap(f.ref, new.version)
        return True

    def _failed_lately(self, key: str, wanted: str) -> bool:
        """``wanted`` failed to load for ``key`` less than a resync interval ago."""
        last = self._failed.get(key)
        return (
            last is not None
            and last[0] == wanted
            and time.monotonic() - last[1] < self.reconcile_seconds
        )

    def _shared(self, f: Followed, old: LoadedVersion) -> bool:
        """Another reference served under ``f``'s name still holds ``old``."""
        return any(
            o is not f and o.name == f.name and o.current.ref == old.ref for o in self.followed
        )


def warm_up(loaded: LoadedVersion) -> None:
    """One call with zeros shaped by the signature: a model that cannot answer
    it must not take traffic (and the first real request pays no first-call cost)."""
    predictor = loaded.predictor
    outputs = predictor.predict(predictor.signature.example_inputs())
    missing = [s.name for s in predictor.signature.outputs if s.name not in outputs]
    if missing:
        raise RuntimeError(f"warm-up answered without {', '.join(missing)}")
