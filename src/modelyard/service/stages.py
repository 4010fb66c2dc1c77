"""Stages, the lifecycle MLflow clients still speak, over modelyard's states and aliases.

MLflow (before aliases) moved a version between four *stages*; modelyard has
lifecycle *states* and named *aliases* instead. A stage is read from and
written to them as follows (issue 10; the README's MLflow section says the
same to users)::

    stage        a version is in it when            moving a version there
    ----------   --------------------------------   ---------------------------------
    Production   its state is published             publish it (policy and approvals
                                                    apply as to any publish)
    Staging      its state is ready and the         make it ready, point @staging at it
                 model's @staging alias names it    (a protected @staging is gated)
    Archived     its state is archived              archive it
    None         anything else (ready, draft)       make it ready

Leaving Staging removes @staging from the version. ``archive_existing``
archives the model's other versions in the target stage (other published
versions for Production; @staging's previous version for Staging), as MLflow's
``archive_existing_versions`` does. One difference is inherent: @staging
names one version, so a model has at most one version in Staging.

Every move is one transaction, with the events of its parts (``version.published``,
``alias.moved``, ``alias.deleted``, ...), and ends with the production-policy
check that no protected alias is left on a version that breaks the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, cast

from modelyard.domain import filters
from modelyard.domain import identity as auth
from modelyard.domain.entities import Model, Version, VersionState
from modelyard.domain.errors import Conflict, InvalidInput, NotFound
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.references import DEFAULT_NAMESPACE, Reference
from modelyard.service import policy_gate
from modelyard.service.core import RegistryCore
from modelyard.store.metadata.ports import RegistryTx

if TYPE_CHECKING:
    from modelyard.service.registry import RegistryService

STAGES: Final = ("None", "Staging", "Production", "Archived")
"""MLflow's stage names, in its canonical spelling."""
STAGING_ALIAS: Final = "staging"
_BY_LOWER: Final = {s.lower(): s for s in STAGES}


def parse_stage(value: str) -> str:
    """The canonical stage for ``value`` (any letter case); ``INVALID_STAGE`` if none."""
    found = _BY_LOWER.get(value.strip().lower()) if isinstance(value, str) else None
    if found is None:
        raise InvalidInput(
            f"invalid stage {value!r}: one of {', '.join(STAGES)}",
            code="INVALID_STAGE",
            details={"stage": str(value)[:100], "allowed": list(STAGES)},
        )
    return found


def stage_of(version: Version) -> str:
    """The stage ``version`` is in (its aliases must be loaded, as they always are)."""
    if version.state is VersionState.PUBLISHED:
        return "Production"
    if version.state is VersionState.ARCHIVED:
        return "Archived"
    if version.state is VersionState.READY and STAGING_ALIAS in version.aliases:
        return "Staging"
    return "None"


def _in_stage(name: str, stage: str) -> filters.Node:
    """Filter nodes of "a version of model ``name`` whose state fits ``stage``"."""
    states = {
        "Production": ("published",),
        "Archived": ("archived",),
        "Staging": ("ready",),
        "None": ("ready", "draft"),
    }[stage]
    state: filters.Node = (
        filters.Comparison(filters.Field("attr", "state"), "=", states[0])
        if len(states) == 1
        else filters.Comparison(filters.Field("attr", "state"), "IN", states)
    )
    named = filters.Comparison(filters.Field("attr", "name"), "=", name)
    return filters.And((named, state))


class StageUseCases(RegistryCore):
    """Reading and moving versions by stage (see the module docstring for the mapping)."""

    def set_stage(
        self,
        ref: str | Reference,
        stage: str,
        *,
        archive_existing: bool = False,
        actor: Principal,
    ) -> Version:
        """Move a version to ``stage`` (None, Staging, Production, Archived).

        Requires: write on the namespace; publishing is gated by the production
        policy and approvals, and a protected @staging by its policy, exactly as
        :meth:`transition_version` and :meth:`set_alias` are.
        """
        target = parse_stage(stage)
        r = self.resolve(ref)
        auth.require(actor, Permission.WRITE, r.namespace)
        registry = cast("RegistryService", self)

        def op(tx: RegistryTx) -> Version:
            mid = self.model_id(tx, r.namespace, r.name, for_update=True)
            vid = self.version_id(tx, r)
            current = tx.load_versions([vid])[0]
            at = Reference(r.namespace, r.name, version=current.number)
            reason = f"stage {stage_of(current)} -> {target}"
            if current.state is VersionState.DRAFT and target != "None":
                raise Conflict(
                    f"version {current.ref} is a draft: commit its files before moving it "
                    f"to {target}",
                    code="INVALID_STATE_TRANSITION",
                    details={"ref": current.ref, "from": "draft", "to": target},
                )
            if target != "Staging" and STAGING_ALIAS in current.aliases:
                registry.remove_alias_in_tx(
                    tx,
                    mid,
                    r.namespace,
                    r.name,
                    STAGING_ALIAS,
                    current.number,
                    actor=actor,
                    reason=reason,
                )
            wanted = {
                "Production": VersionState.PUBLISHED,
                "Archived": VersionState.ARCHIVED,
            }.get(target, VersionState.READY)
            if current.state is VersionState.DRAFT:
                wanted = VersionState.DRAFT  # None: a draft already is in it
            if current.state is not wanted:
                registry.transition_in_tx(
                    tx,
                    at,
                    wanted,
                    actor=actor,
                    archive_previous=archive_existing and target == "Production",
                )
            if target == "Staging":
                previous = tx.get_alias(mid, STAGING_ALIAS)
                if previous != vid:
                    registry.move_alias_in_tx(tx, at, STAGING_ALIAS, actor=actor, reason=reason)
                    if archive_existing and previous is not None:
                        old = tx.load_versions([previous])[0]
                        registry.transition_in_tx(
                            tx,
                            Reference(r.namespace, r.name, version=old.number),
                            VersionState.ARCHIVED,
                            actor=actor,
                        )
            policy_gate.check_protected_targets(tx, mid)
            return tx.load_versions([vid])[0]

        return self.run_in_transaction(op)

    def latest_in_stages(
        self,
        name: str,
        stages: list[str] | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        actor: Principal,
    ) -> list[Version]:
        """For each stage asked (all four when none), the highest-numbered version
        of model ``name`` in it, if any; ordered by stage as asked.

        Requires: read on the namespace (consume: only the production view, as
        every read).
        """
        wanted = [parse_stage(s) for s in stages] if stages else list(STAGES)
        registry = cast("RegistryService", self)
        registry.get_model(name, namespace=namespace, actor=actor)  # MODEL_NOT_FOUND first
        found: list[Version] = []
        for stage in dict.fromkeys(wanted):
            if stage == "Staging":
                try:
                    v = registry.get_version(
                        Reference(namespace, name, alias=STAGING_ALIAS),
                        with_files=False,
                        actor=actor,
                    )
                except NotFound:
                    continue
                if stage_of(v) == "Staging":
                    found.append(v)
                continue
            # Two candidates: the newest ready one may be @staging's, in Staging.
            page = registry.search_versions(
                None,
                order_by="number DESC",
                page_size=2,
                namespace=namespace,
                where=_in_stage(name, stage),
                actor=actor,
            )
            for v in page.items:
                if stage_of(v) == stage:
                    found.append(v)
                    break
        return found

    def stage_summaries(
        self, models: Sequence[Model], *, actor: Principal
    ) -> list[tuple[dict[str, int], list[Version]]]:
        """For each model (in order): its aliases (alias -> version number) and
        its latest version per stage, as :meth:`model_aliases` and
        :meth:`latest_in_stages` give them one model at a time.

        For a page of models a reader gets this from two statements and one
        load (plus one lookup per model whose @staging names an older
        version), rather than six statements a model. A consumer's production
        view is decided per version, so its models go one at a time.

        Requires: read on each model's namespace (consume: the production view).
        """
        registry = cast("RegistryService", self)
        out: list[tuple[dict[str, int], list[Version]] | None] = [None] * len(models)
        whole: list[int] = []
        for i, m in enumerate(models):
            if auth.require_readable(actor, m.namespace):
                aliases = registry.model_aliases(m.name, namespace=m.namespace, actor=actor)
                latest = self.latest_in_stages(m.name, namespace=m.namespace, actor=actor)
                out[i] = (aliases, latest)
            else:
                whole.append(i)
        if whole:
            with self.db.read() as tx:
                found = summaries_in_tx(tx, [models[i] for i in whole])
            for i, summary in zip(whole, found, strict=True):
                out[i] = summary
        return [x for x in out if x is not None]

    def model_summary(
        self, name: str, *, namespace: str = DEFAULT_NAMESPACE, actor: Principal
    ) -> tuple[Model, dict[str, int], list[Version]]:
        """A model with its aliases and latest version per stage, as
        :meth:`~modelyard.service.models.ModelUseCases.get_model` and
        :meth:`stage_summaries` give them (MLflow's ``get_registered_model``),
        read in one transaction where the reader sees the whole namespace.

        Requires: read on the namespace (consume: the production view).
        """
        registry = cast("RegistryService", self)
        if auth.require_readable(actor, namespace):
            model = registry.get_model(name, namespace=namespace, actor=actor)
            ((aliases, latest),) = self.stage_summaries([model], actor=actor)
            return model, aliases, latest
        with self.db.read() as tx:
            model = tx.load_models([self.model_id(tx, namespace, name)])[0]
            ((aliases, latest),) = summaries_in_tx(tx, [model])
        return model, aliases, latest


def summaries_in_tx(
    tx: RegistryTx, models: Sequence[Model]
) -> list[tuple[dict[str, int], list[Version]]]:
    """:meth:`StageUseCases.stage_summaries` of ``models`` for a reader who sees
    their whole namespaces, in ``tx``: two statements and one load for the page."""
    ids = [m.id for m in models]
    out: list[tuple[dict[str, int], list[Version]]] = []

    aliases_of: dict[int, dict[str, int]] = {mid: {} for mid in ids}
    for mid, alias, number in tx.aliases_of_models(ids):
        aliases_of[mid][alias] = number
    candidates: dict[tuple[str, str], list[Version]] = {}
    for v in tx.load_versions(tx.newest_by_state(ids, 2)):
        candidates.setdefault((v.namespace, v.model), []).append(v)
    for m in models:
        mine = candidates.get((m.namespace, m.name), [])
        staged = aliases_of[m.id].get(STAGING_ALIAS)
        if staged is not None and all(v.number != staged for v in mine):
            found = tx.get_version_by_ref(m.namespace, m.name, alias=STAGING_ALIAS)
            if found is not None:
                mine.append(found)
        mine.sort(key=lambda v: v.number, reverse=True)
        latest = []
        for stage in STAGES:
            pick = next((v for v in mine if stage_of(v) == stage), None)
            if pick is not None:
                latest.append(pick)
        out.append((aliases_of[m.id], latest))
    return out
