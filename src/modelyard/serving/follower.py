"""Hot swap: follow the registry's event stream and move with the aliases served.

For every reference served by alias (``fraud@production``), an
``alias.moved`` event on it makes the follower resolve the alias again
through the SDK. When it names another version, that version is loaded
beside the one taking traffic, warmed up with a request built from its
signature, and only then swapped in (:meth:`ModelTable.swap`); the old one is
dropped once no request holds it. A version that fails to load or to warm
up never takes traffic: the old one keeps serving, the failure is logged and
counted (``modelyard_serving_load_failures_total``).

Events are triggers, not truth: the alias is always resolved again, so the
consumer's view applies and a missed or repeated event changes nothing. The
stream is reopened every :data:`RECONCILE_SECONDS` of quiet, and every
followed alias is resolved again then, which also covers a move made in the
instant between loading and subscribing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelyard.client import Registry
from modelyard.domain.references import parse_reference
from modelyard.serving.loader import LoadedVersion, load_version
from modelyard.serving.table import ModelTable

log = logging.getLogger("modelyard.serving")

RECONCILE_SECONDS = 10.0


@dataclass(slots=True)
class Followed:
    """A reference as given and the version it serves now."""

    ref: str
    subject: str | None
    """``ns/name@alias`` for an alias (the event subject), None for a pinned version."""
    current: LoadedVersion


class AliasFollower:
    """The thread that keeps aliased references on the version their alias names."""

    def __init__(
        self,
        registry: Registry,
        table: ModelTable,
        served: list[tuple[str, LoadedVersion]],
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
        self.followed: list[Followed] = []
        for ref, loaded in served:
            parsed = parse_reference(ref)
            subject = str(parsed) if parsed.alias is not None else None
            self.followed.append(Followed(ref, subject, loaded))
        self._stop = threading.Event()
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

    def _run(self) -> None:
        last: int | None = None
        subjects = {f.subject for f in self.followed if f.subject is not None}
        while not self._stop.is_set():
            try:
                for f in self.followed:
                    if f.subject is not None:
                        self.reconcile(f)
                for event in self.registry.watch(
                    types=["alias.moved"], after=last, idle_timeout=self.reconcile_seconds
                ):
                    last = event.id
                    if self._stop.is_set():
                        return
                    if event.subject in subjects:
                        for f in self.followed:
                            if f.subject == event.subject:
                                self.reconcile(f)
            except Exception:  # the registry unreachable, a bad token: keep serving, retry
                log.exception("following the registry's events failed; retrying")
                self._stop.wait(self.reconcile_seconds)

    def reconcile(self, f: Followed) -> bool:
        """Resolve ``f``'s alias; swap to the version it names if that is
        another one. True if a swap happened."""
        model = f.current.model
        wanted = f.ref
        wanted_version: int | None = None
        try:
            target = self.registry.get_version(f.ref)
            wanted = target.ref
            wanted_version = target.version
            if target.version == f.current.version:
                return False
            new = self.table.loaded(model, str(target.version))
            if new is None:
                new = load_version(self.registry, target.ref, self.cache_root, threads=self.threads)
                warm_up(new)
        except Exception as exc:  # any failure keeps the old version serving
            self.table.metrics.load_failures.labels(model).inc()
            log.error("%s: %s not loaded, %s keeps serving: %s", f.ref, wanted, f.current.ref, exc)
            # Only a version that was resolved and then failed is a load
            # failure; an unreachable registry is not the version's fault.
            if wanted_version is not None and self.on_load_failure is not None:
                self.on_load_failure(f.ref, wanted_version, f"{type(exc).__name__}: {exc}")
            return False
        old = f.current
        keep_old = any(o is not f and o.current.version == old.version for o in self.followed)
        self.table.swap(f.ref, old, new, keep_old=keep_old)
        f.current = new
        log.info("%s moved: %s -> %s (swapped)", f.ref, old.ref, new.ref)
        if self.on_swap is not None:
            self.on_swap(f.ref, new.version)
        return True


def warm_up(loaded: LoadedVersion) -> None:
    """One call with zeros shaped by the signature: a model that cannot answer
    it must not take traffic (and the first real request pays no first-call cost)."""
    predictor = loaded.predictor
    outputs = predictor.predict(predictor.signature.example_inputs())
    missing = [s.name for s in predictor.signature.outputs if s.name not in outputs]
    if missing:
        raise RuntimeError(f"warm-up answered without {', '.join(missing)}")
