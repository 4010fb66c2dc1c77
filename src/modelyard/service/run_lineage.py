"""What a version takes from its source run when it is registered (issue 10).

A version whose ``source_run`` is a run of modelyard's own tracking tables
(logged through the MLflow door) gets that run's metrics and params copied
into its own at create, the way the MLflow flow reads: train, log metrics and
params, register. Copied, not joined:

- a version is immutable once ready, and what it was registered with should
  not move when someone logs to the run afterwards (MLflow's registry shows
  the run live; modelyard keeps the snapshot, and the run stays linked);
- version search then serves ``metrics.auc >= 0.9`` and ``params.lr = '0.1'``
  from the version's own ``(key, value)`` indexes, with no join into runs.

The run's datasets (``log_inputs``) become the version's lineage
``datasets`` when the caller names none: ``{name, digest, source_type,
source, context}`` each, ``context`` being the input's
``mlflow.data.context`` tag (``training``, ``eval``, ...) when it has one.

Rules: the run's *latest* value of each metric (what MLflow's run page and
run search use); what the caller sent wins key by key; keys or values that
modelyard's version rules refuse (NaN and infinite metrics, keys with spaces,
over-long params) are left out, not fatal, since the run accepted them under
MLflow's looser rules; at most ``limits.max_map_keys`` keys in all. A run the
caller may not read, or a ``source_run`` that is not one of ours, copies
nothing (and says nothing about whether such a run exists).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from modelyard.domain.errors import InvalidInput
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.names import validate_key, validate_tag_value
from modelyard.domain.tracking import CONTEXT_TAG
from modelyard.service.validation import Limits
from modelyard.store.metadata.ports import MetadataStore

_RUN_ID: Final = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class RunValues:
    """A run's latest metrics, params and datasets, as a version may hold them."""

    metrics: dict[str, float]
    params: dict[str, str]
    datasets: list[dict[str, Any]]


def _valid_key(key: str, kind: str) -> bool:
    try:
        validate_key(key, kind=kind)
    except InvalidInput:
        return False
    return True


def _valid_value(value: str) -> bool:
    try:
        validate_tag_value(value)
    except InvalidInput:
        return False
    return True


def run_values(db: MetadataStore, run_id: str | None, *, actor: Principal) -> RunValues | None:
    """The metrics and params a version registered from ``run_id`` takes, or
    None when ``run_id`` is not a run of ours the caller may read."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        return None
    with db.read() as tx:
        runs = tx.tracking.load_runs([run_id])
    if not runs or not actor.can(Permission.READ, runs[0].namespace):
        return None
    run = runs[0]
    metrics = {
        k: float(m.value)
        for k, m in sorted(run.metrics.items())
        if math.isfinite(m.value) and _valid_key(k, "metric")
    }
    params = {
        k: val
        for k, val in sorted(run.params.items())
        if _valid_key(k, "param") and _valid_value(val)
    }
    datasets = []
    for i in run.dataset_inputs:
        d = i.dataset
        entry: dict[str, Any] = {
            "name": d.name,
            "digest": d.digest,
            "source_type": d.source_type,
            "source": d.source,
        }
        if CONTEXT_TAG in i.tags:
            entry["context"] = i.tags[CONTEXT_TAG]
        datasets.append(entry)
    return RunValues(metrics, params, datasets)


def merged(given: Mapping[str, Any] | None, taken: Mapping[str, Any], limits: Limits) -> Any:
    """``taken`` under ``given`` (the caller's keys win), within the key limit;
    ``given`` unchanged when it is not a mapping (its validation says why)."""
    if given is not None and not isinstance(given, Mapping):
        return given
    out = dict(given or {})
    for key, value in taken.items():
        if len(out) >= limits.max_map_keys:
            break
        out.setdefault(key, value)
    return out
