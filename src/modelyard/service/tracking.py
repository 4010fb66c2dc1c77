"""Tracking use cases: experiments, runs (params, metric history, tags),
MLflow 3 logged models. The MLflow door calls these; so could any other.

Namespaces and permissions
--------------------------
An experiment lives in one namespace, chosen when it is created: the value
of its tag ``modelyard.namespace`` (:data:`~modelyard.domain.tracking.NAMESPACE_TAG`)
if the creator sets one, else ``default``. It never moves. Its runs, logged
models and artifacts share it. Reading needs ``read`` there (tracking data is
not part of a consumer's production view); every change needs ``write``.
The built-in ``Default`` experiment (id 0) lives in ``default``.

Events
------
What a user expects in the audit log, in the mutation's transaction:
``experiment.created`` / ``.updated`` (renamed) / ``.deleted`` / ``.restored``,
``run.created`` / ``.updated`` (status, end time, name) / ``.deleted`` /
``.restored``, ``logged_model.created`` / ``.finalized`` / ``.deleted``.
Params, metrics and tags are the run's data, not events: a training loop
logs thousands and each would flood the outbox and every webhook.
Subjects are ``experiments:ID``, ``runs:ID`` and ``logged_models:ID``.

Times are microseconds; run names default to ``run-`` and 8 hex digits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.domain import identity as auth
from modelyard.domain.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from modelyard.domain.identity import Permission, Principal
from modelyard.domain.names import validate_name
from modelyard.domain.references import DEFAULT_NAMESPACE
from modelyard.domain.run_filters import parse_run_filter, parse_run_order
from modelyard.domain.tracking import (
    DEFAULT_EXPERIMENT_ID,
    DEFAULT_EXPERIMENT_NAME,
    MAX_ENTITY_NAME_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    NAMESPACE_TAG,
    DatasetInput,
    Experiment,
    LifecycleStage,
    LoggedModel,
    LoggedModelStatus,
    Metric,
    ModelOutput,
    Run,
    RunStatus,
    check_dataset_input,
    validate_experiment_id,
    validate_key,
    validate_metric_value,
    validate_model_id,
    validate_run_id,
    validate_text,
)
from modelyard.service.core import Page
from modelyard.store.metadata.ports import RegistryTx, TrackingQueries, now_us

if TYPE_CHECKING:
    from modelyard.service.registry import RegistryService

MAX_RESULTS = 50_000  # MLflow's own cap on run search pages
MAX_BATCH = 1000  # metrics + params + tags in one log_batch (MLflow's limit)
MAX_BULK_RUNS = 100  # runs in one sampled-history request (MLflow's limit)
MAX_SAMPLED_POINTS = 2500  # points per run in a sampled history (MLflow's limit)
RUN_TAG_NAME = "mlflow.runName"
RUN_TAG_USER = "mlflow.user"

ARTIFACT_SCHEME = "mlflow-artifacts:"


def experiment_artifact_root(experiment_id: int) -> str:
    """Where an experiment's artifacts live, as the MLflow client addresses
    them through the server's artifact proxy."""
    return f"{ARTIFACT_SCHEME}/{experiment_id}"


def run_artifact_root(experiment_id: int, run_id: str) -> str:
    """A run's artifact root (``mlflow-artifacts:/<exp>/<run>/artifacts``)."""
    return f"{experiment_artifact_root(experiment_id)}/{run_id}/artifacts"


def model_artifact_root(experiment_id: int, model_id: str) -> str:
    """A logged model's artifact root (``mlflow-artifacts:/<exp>/models/<id>/artifacts``)."""
    return f"{experiment_artifact_root(experiment_id)}/models/{model_id}/artifacts"


_VIEWS = {
    "active": (LifecycleStage.ACTIVE.value,),
    "deleted": (LifecycleStage.DELETED.value,),
    "all": (LifecycleStage.ACTIVE.value, LifecycleStage.DELETED.value),
}


def parse_view(view: str | None) -> tuple[str, ...]:
    """The lifecycle stages a view type selects (``active`` by default)."""
    stages = _VIEWS.get((view or "active").lower())
    if stages is None:
        raise InvalidInput(
            f"unknown view type {view!r}", code="INVALID_INPUT", details={"allowed": list(_VIEWS)}
        )
    return stages


def parse_offset_token(token: str | None) -> int:
    """A page token (an offset as decimal text); ``INVALID_CURSOR`` if malformed."""
    if not token:
        return 0
    if not (token.isascii() and token.isdigit()) or len(token) > 12:
        raise InvalidInput("invalid page token", code="INVALID_CURSOR")
    return int(token)


def check_max_results(n: int | None, default: int, cap: int = MAX_RESULTS) -> int:
    """A page size in 1..cap (``default`` when None)."""
    if n is None:
        return default
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= cap:
        raise InvalidInput(f"max_results must be 1..{cap}", code="INVALID_PAGE_SIZE")
    return n


@dataclass(slots=True)
class LogBatch:
    """What one ``log_batch`` call records on a run."""

    metrics: list[Metric] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class TrackingService:
    """Experiments, runs and logged models over the registry's stores."""

    def __init__(self, registry: RegistryService) -> None:
        self.registry = registry
        self.db = registry.db

    # -- shared rules ---------------------------------------------------------

    def _tx(self, op: Any) -> Any:
        return self.registry.run_in_transaction(op)

    @staticmethod
    def _experiment(tq: TrackingQueries, experiment_id: int) -> Experiment:
        found = tq.get_experiment(experiment_id)
        if found is None:
            raise NotFound(
                f"experiment {experiment_id} not found",
                code="EXPERIMENT_NOT_FOUND",
                details={"experiment_id": str(experiment_id)},
            )
        return found

    @staticmethod
    def _run(tq: TrackingQueries, run_id: str) -> Run:
        found = tq.load_runs([run_id])
        if not found:
            raise NotFound(
                f"run {run_id} not found", code="RUN_NOT_FOUND", details={"run_id": run_id}
            )
        return found[0]

    @staticmethod
    def _model(tq: TrackingQueries, model_id: str, *, allow_deleted: bool = True) -> LoggedModel:
        found = tq.load_logged_models([model_id])
        if not found or (not allow_deleted and found[0].lifecycle_stage is LifecycleStage.DELETED):
            raise NotFound(
                f"logged model {model_id} not found",
                code="LOGGED_MODEL_NOT_FOUND",
                details={"model_id": model_id},
            )
        return found[0]

    @staticmethod
    def _active(run: Run) -> None:
        if run.lifecycle_stage is not LifecycleStage.ACTIVE:
            raise Conflict(
                f"run {run.id} is deleted; restore it first",
                code="RUN_DELETED",
                details={"run_id": run.id},
            )

    @staticmethod
    def _readable(actor: Principal, namespace: str) -> None:
        auth.require(actor, Permission.READ, namespace)

    def _readable_namespaces(self, actor: Principal) -> list[str] | None:
        if actor.reads_everything:
            return None
        return sorted(actor.namespaces_with(Permission.READ))

    @staticmethod
    def _event(
        tx: RegistryTx, type_: str, actor: Principal, namespace: str, subject: str, payload: Any
    ) -> None:
        tx.append_event(
            type_, actor=actor.name, namespace=namespace, subject=subject, payload=payload
        )

    # -- experiments ------------------------------------------------------------

    def ensure_default_experiment(self) -> None:
        """Create the ``Default`` experiment (id 0, namespace ``default``) if missing."""

        def op(tx: RegistryTx) -> None:
            tq = tx.tracking
            if tq.get_experiment(DEFAULT_EXPERIMENT_ID) is not None:
                return
            eid = tq.insert_experiment(
                DEFAULT_EXPERIMENT_NAME,
                namespace=DEFAULT_NAMESPACE,
                tags={},
                actor=auth.SYSTEM.name,
                experiment_id=DEFAULT_EXPERIMENT_ID,
            )
            tq.update_experiment(eid, artifact_location=experiment_artifact_root(eid))

        with self.db.read() as tx:
            if tx.tracking.get_experiment(DEFAULT_EXPERIMENT_ID) is not None:
                return
        try:
            self._tx(op)
        except AlreadyExists:
            # Another replica starting at the same moment on the same (new)
            # database created it between our read and our insert: it stopped
            # this process's start-up with EXPERIMENT_ALREADY_EXISTS.
            with self.db.read() as tx:
                if tx.tracking.get_experiment(DEFAULT_EXPERIMENT_ID) is None:
                    raise

    def create_experiment(
        self,
        name: str,
        *,
        tags: dict[str, str] | None = None,
        artifact_location: str | None = None,
        actor: Principal,
    ) -> Experiment:
        """Create an experiment in the namespace its ``modelyard.namespace``
        tag names (``default`` without one). Requires: write there.

        Artifacts always go through the server's content-addressed store, so
        an ``artifact_location`` of the client's choosing is refused.
        """
        name = validate_text(name, "name", MAX_ENTITY_NAME_LENGTH)
        if not name.strip():
            raise InvalidInput("experiment name must not be empty", code="INVALID_INPUT")
        if artifact_location:
            raise InvalidInput(
                "artifact_location is chosen by the server (artifacts are stored "
                "through its artifact proxy)",
                code="INVALID_INPUT",
                details={"field": "artifact_location"},
            )
        clean = _check_tags(tags or {})
        namespace = validate_name(clean.get(NAMESPACE_TAG, DEFAULT_NAMESPACE), kind="namespace")
        auth.require(actor, Permission.WRITE, namespace)

        def op(tx: RegistryTx) -> Experiment:
            self.registry.namespace_id(tx, namespace)
            tq = tx.tracking
            eid = tq.insert_experiment(name, namespace=namespace, tags=clean, actor=actor.name)
            tq.update_experiment(eid, artifact_location=experiment_artifact_root(eid))
            exp = self._experiment(tq, eid)
            self._event(
                tx,
                "experiment.created",
                actor,
                namespace,
                f"experiments:{eid}",
                _experiment_payload(exp),
            )
            return exp

        result: Experiment = self._tx(op)
        return result

    def get_experiment(self, experiment_id: int | str, *, actor: Principal) -> Experiment:
        """An experiment by id. Requires: read on its namespace."""
        eid = validate_experiment_id(experiment_id)
        with self.db.read() as tx:
            exp = self._experiment(tx.tracking, eid)
        self._readable(actor, exp.namespace)
        return exp

    def get_experiment_by_name(self, name: str, *, actor: Principal) -> Experiment:
        """An experiment by name. Requires: read on its namespace."""
        validate_text(name, "name", MAX_ENTITY_NAME_LENGTH)
        with self.db.read() as tx:
            exp = tx.tracking.experiment_by_name(name)
        if exp is None:
            raise NotFound(
                f"experiment {name!r} not found",
                code="EXPERIMENT_NOT_FOUND",
                details={"name": name},
            )
        self._readable(actor, exp.namespace)
        return exp

    def search_experiments(
        self,
        *,
        view: str | None = None,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
        actor: Principal,
    ) -> Page[Experiment]:
        """Experiments the caller may read, matching MLflow's experiment filter
        (``name LIKE 'x%'``, ``tags.k = 'v'``), in ``order_by`` (default newest
        first). Requires: nothing beyond read where results come from."""
        stages = parse_view(view)
        clauses = parse_run_filter(filter_string, experiments=True)
        order = parse_run_order(order_by, experiments=True)
        limit = check_max_results(max_results, 1000)
        offset = parse_offset_token(page_token)
        with self.db.read() as tx:
            tq = tx.tracking
            ids = tq.search_experiment_ids(
                stages=stages,
                clauses=clauses,
                order=order,
                limit=limit + 1,
                offset=offset,
                namespaces=self._readable_namespaces(actor),
            )
            items = tq.load_experiments(ids[:limit])
        token = str(offset + limit) if len(ids) > limit else None
        return Page(items, token)

    def _change_experiment(
        self, experiment_id: int | str, actor: Principal, change: Any
    ) -> Experiment:
        eid = validate_experiment_id(experiment_id)
        with self.db.read() as tx:
            namespace = self._experiment(tx.tracking, eid).namespace
        auth.require(actor, Permission.WRITE, namespace)

        def op(tx: RegistryTx) -> Experiment:
            tq = tx.tracking
            before = self._experiment(tq, eid)
            event = change(tq, before)
            after = self._experiment(tq, eid)
            if event:
                self._event(
                    tx,
                    event,
                    actor,
                    after.namespace,
                    f"experiments:{eid}",
                    _experiment_payload(after),
                )
            return after

        result: Experiment = self._tx(op)
        return result

    def rename_experiment(
        self, experiment_id: int | str, new_name: str, *, actor: Principal
    ) -> Experiment:
        """Rename an experiment. Requires: write on its namespace."""
        new_name = validate_text(new_name, "new_name", MAX_ENTITY_NAME_LENGTH)
        if not new_name.strip():
            raise InvalidInput("experiment name must not be empty", code="INVALID_INPUT")

        def change(tq: TrackingQueries, before: Experiment) -> str | None:
            _active_experiment(before)
            if before.name == new_name:
                return None
            tq.update_experiment(before.id, name=new_name)
            return "experiment.updated"

        return self._change_experiment(experiment_id, actor, change)

    def delete_experiment(self, experiment_id: int | str, *, actor: Principal) -> Experiment:
        """Soft-delete an experiment and its runs (restore undoes it).
        Requires: write on its namespace."""
        return self._set_experiment_stage(experiment_id, LifecycleStage.DELETED, actor)

    def restore_experiment(self, experiment_id: int | str, *, actor: Principal) -> Experiment:
        """Undo :meth:`delete_experiment`. Requires: write on its namespace."""
        return self._set_experiment_stage(experiment_id, LifecycleStage.ACTIVE, actor)

    def _set_experiment_stage(
        self, experiment_id: int | str, stage: LifecycleStage, actor: Principal
    ) -> Experiment:
        if validate_experiment_id(experiment_id) == DEFAULT_EXPERIMENT_ID and (
            stage is LifecycleStage.DELETED
        ):
            raise InvalidInput("the Default experiment cannot be deleted", code="INVALID_INPUT")

        def change(tq: TrackingQueries, before: Experiment) -> str | None:
            if before.lifecycle_stage is stage:
                raise Conflict(
                    f"experiment {before.id} is already {stage.value}",
                    code="EXPERIMENT_ALREADY_" + stage.value.upper(),
                )
            # Its runs go with it, stamped with the experiment's own change
            # time, so a restore brings back exactly those (as MLflow does).
            at = now_us()
            if stage is LifecycleStage.DELETED:
                tq.delete_experiment_runs(before.id, at)
            else:
                tq.restore_experiment_runs(before.id, before.updated_at)
            tq.update_experiment(before.id, lifecycle_stage=stage.value, updated_at=at)
            return (
                "experiment.deleted" if stage is LifecycleStage.DELETED else "experiment.restored"
            )

        return self._change_experiment(experiment_id, actor, change)

    def set_experiment_tag(
        self, experiment_id: int | str, key: str, value: str, *, actor: Principal
    ) -> None:
        """Set one experiment tag (``modelyard.namespace`` is fixed at creation).
        Requires: write on its namespace."""
        tags = _check_tags({key: value})
        if NAMESPACE_TAG in tags:
            raise InvalidInput(
                f"{NAMESPACE_TAG} is fixed when the experiment is created",
                code="INVALID_INPUT",
            )

        def change(tq: TrackingQueries, before: Experiment) -> None:
            _active_experiment(before)
            tq.set_experiment_tags(before.id, tags)

        self._change_experiment(experiment_id, actor, change)

    def delete_experiment_tag(
        self, experiment_id: int | str, key: str, *, actor: Principal
    ) -> None:
        """Remove one experiment tag. Requires: write on its namespace."""
        validate_key(key, "tag key")

        def change(tq: TrackingQueries, before: Experiment) -> None:
            _active_experiment(before)
            if not tq.delete_experiment_tag(before.id, key):
                raise NotFound(f"tag {key!r} not set", code="TAG_NOT_FOUND")

        self._change_experiment(experiment_id, actor, change)

    # -- runs ---------------------------------------------------------------

    def create_run(
        self,
        experiment_id: int | str,
        *,
        name: str | None = None,
        start_time: int | None = None,
        tags: dict[str, str] | None = None,
        actor: Principal,
    ) -> Run:
        """Start a run in an active experiment. Requires: write on its namespace.

        The run's name is ``name``, else its ``mlflow.runName`` tag, else
        generated; the tag is kept equal to it, as MLflow does. Its user is
        the caller's ``mlflow.user`` tag, else the caller's name.
        """
        eid = validate_experiment_id(experiment_id)
        clean = _check_tags(tags or {})
        if name is not None:
            validate_text(name, "run_name", MAX_ENTITY_NAME_LENGTH)
        run_id = uuid.uuid4().hex
        run_name = name or clean.get(RUN_TAG_NAME) or f"run-{run_id[:8]}"
        clean[RUN_TAG_NAME] = run_name
        with self.db.read() as tx:
            exp = self._experiment(tx.tracking, eid)
        auth.require(actor, Permission.WRITE, exp.namespace)
        started = now_us() if start_time is None else _check_time(start_time, "start_time")

        def op(tx: RegistryTx) -> Run:
            tq = tx.tracking
            current = self._experiment(tq, eid)
            if current.lifecycle_stage is not LifecycleStage.ACTIVE:
                raise Conflict(
                    f"experiment {eid} is deleted",
                    code="EXPERIMENT_DELETED",
                    details={"experiment_id": str(eid)},
                )
            tq.insert_run(
                {
                    "id": run_id,
                    "experiment_id": eid,
                    "name": run_name,
                    "user_name": clean.get(RUN_TAG_USER, actor.name),
                    "status": RunStatus.RUNNING.value,
                    "start_time": started,
                    "end_time": None,
                    "lifecycle_stage": LifecycleStage.ACTIVE.value,
                    "artifact_uri": run_artifact_root(eid, run_id),
                },
                clean,
            )
            run = self._run(tq, run_id)
            self._event(
                tx, "run.created", actor, run.namespace, f"runs:{run_id}", _run_payload(run)
            )
            return run

        result: Run = self._tx(op)
        return result

    def get_run(self, run_id: str, *, actor: Principal) -> Run:
        """A run with its params, latest metrics, tags and outputs.
        Requires: read on its namespace."""
        rid = validate_run_id(run_id)
        with self.db.read() as tx:
            run = self._run(tx.tracking, rid)
        self._readable(actor, run.namespace)
        return run

    def _change_run(self, run_id: str, actor: Principal, change: Any, *, active: bool) -> Run:
        rid = validate_run_id(run_id)
        with self.db.read() as tx:
            namespace = self._run(tx.tracking, rid).namespace
        auth.require(actor, Permission.WRITE, namespace)

        def op(tx: RegistryTx) -> Run:
            tq = tx.tracking
            before = self._run(tq, rid)
            if active:
                self._active(before)
            event = change(tq, before)
            after = self._run(tq, rid) if event is not None else before
            if event:
                self._event(tx, event, actor, after.namespace, f"runs:{rid}", _run_payload(after))
            return after

        result: Run = self._tx(op)
        return result

    def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        end_time: int | None = None,
        name: str | None = None,
        actor: Principal,
    ) -> Run:
        """Change a run's status, end time or name. Requires: write on its namespace."""
        values: dict[str, Any] = {}
        if status is not None:
            try:
                values["status"] = RunStatus(status).value
            except ValueError:
                raise InvalidInput(
                    f"unknown run status {status!r}",
                    code="INVALID_INPUT",
                    details={"allowed": [s.value for s in RunStatus]},
                ) from None
        if end_time is not None:
            values["end_time"] = _check_time(end_time, "end_time")
        if name is not None:
            values["name"] = validate_text(name, "run_name", MAX_ENTITY_NAME_LENGTH)

        def change(tq: TrackingQueries, before: Run) -> str | None:
            if not values:
                return None
            tq.update_run(before.id, **values)
            if "name" in values:
                tq.set_run_tags(before.id, {RUN_TAG_NAME: values["name"]})
            return "run.updated"

        return self._change_run(run_id, actor, change, active=False)

    def delete_run(self, run_id: str, *, actor: Principal) -> Run:
        """Soft-delete a run. Requires: write on its namespace."""
        return self._set_run_stage(run_id, LifecycleStage.DELETED, actor)

    def restore_run(self, run_id: str, *, actor: Principal) -> Run:
        """Undo :meth:`delete_run`. Requires: write on its namespace."""
        return self._set_run_stage(run_id, LifecycleStage.ACTIVE, actor)

    def _set_run_stage(self, run_id: str, stage: LifecycleStage, actor: Principal) -> Run:
        def change(tq: TrackingQueries, before: Run) -> str:
            deleted = stage is LifecycleStage.DELETED
            tq.update_run(
                before.id, lifecycle_stage=stage.value, deleted_at=now_us() if deleted else None
            )
            return "run.deleted" if deleted else "run.restored"

        return self._change_run(run_id, actor, change, active=False)

    def log_batch(self, run_id: str, batch: LogBatch, *, actor: Principal) -> None:
        """Record metrics, params and tags on an active run in one transaction.

        A param keeps its first value: logging another value for the same key
        is ``PARAM_ALREADY_LOGGED`` (the same value again is fine). Requires:
        write on the run's namespace.
        """
        metrics = [_check_metric(m) for m in batch.metrics]
        params = _check_params(batch.params)
        tags = _check_tags(batch.tags)
        if len(metrics) + len(params) + len(tags) > MAX_BATCH:
            raise InvalidInput(
                f"at most {MAX_BATCH} metrics, params and tags in one batch",
                code="INVALID_INPUT",
            )

        def change(tq: TrackingQueries, before: Run) -> None:
            if params:
                known = tq.params_of(before.id, params)
                for k, v in params.items():
                    if k in known and known[k] != v:
                        raise InvalidInput(
                            f"param {k!r} was already logged with value {known[k]!r}; "
                            f"params cannot change (new value {v!r})",
                            code="PARAM_ALREADY_LOGGED",
                            details={"key": k},
                        )
                tq.insert_params(before.id, params)
            if metrics:
                tq.insert_metrics(before.id, [_with_run(m, before.id) for m in metrics])
            if tags:
                tq.set_run_tags(before.id, tags)
                if RUN_TAG_NAME in tags:
                    tq.update_run(before.id, name=tags[RUN_TAG_NAME])

        self._change_run(run_id, actor, change, active=True)

    def delete_run_tag(self, run_id: str, key: str, *, actor: Principal) -> None:
        """Remove one run tag. Requires: write on the run's namespace."""
        validate_key(key, "tag key")

        def change(tq: TrackingQueries, before: Run) -> None:
            if not tq.delete_run_tag(before.id, key):
                raise NotFound(
                    f"no tag {key!r} on run {before.id}",
                    code="TAG_NOT_FOUND",
                    details={"key": key},
                )

        self._change_run(run_id, actor, change, active=True)

    def log_outputs(self, run_id: str, outputs: Sequence[ModelOutput], *, actor: Principal) -> None:
        """Record the logged models a run produced. Requires: write on its namespace."""
        for o in outputs:
            validate_model_id(o.model_id)

        def change(tq: TrackingQueries, before: Run) -> None:
            for o in outputs:
                model = self._model(tq, o.model_id)
                if model.experiment_id != before.experiment_id:
                    raise InvalidInput(
                        f"logged model {o.model_id} belongs to another experiment",
                        code="INVALID_INPUT",
                    )
            tq.add_run_outputs(before.id, list(outputs))

        self._change_run(run_id, actor, change, active=True)

    def log_inputs(
        self,
        run_id: str,
        datasets: Sequence[DatasetInput],
        model_ids: Sequence[str] = (),
        *,
        actor: Principal,
    ) -> None:
        """Record the datasets a run read (with their input tags, e.g. the
        ``mlflow.data.context``) and the logged models it used; a version
        registered from the run lists those datasets as its lineage
        (``service/run_lineage.py``). Requires: write on its namespace."""
        if len(datasets) + len(model_ids) > MAX_BATCH:
            raise InvalidInput(f"at most {MAX_BATCH} inputs per call", code="INVALID_INPUT")
        checked = [check_dataset_input(d) for d in datasets]
        models = [validate_model_id(m) for m in model_ids]

        def change(tq: TrackingQueries, before: Run) -> None:
            for m in models:
                self._model(tq, m)
            tq.add_run_inputs(before.id, before.experiment_id, checked, models)

        self._change_run(run_id, actor, change, active=True)

    def get_metric_history(
        self,
        run_id: str,
        key: str,
        *,
        max_results: int | None = None,
        page_token: str | None = None,
        actor: Principal,
    ) -> Page[Metric]:
        """Every logged point of one metric, by step then time. Requires: read."""
        rid = validate_run_id(run_id)
        validate_key(key, "metric key")
        limit = check_max_results(max_results, 25_000, cap=25_000)
        offset = parse_offset_token(page_token)
        with self.db.read() as tx:
            run = self._run(tx.tracking, rid)
            self._readable(actor, run.namespace)
            points = tx.tracking.metric_history(rid, key, limit=limit + 1, offset=offset)
        token = str(offset + limit) if len(points) > limit else None
        return Page(points[:limit], token)

    def sample_metric_histories(
        self,
        run_ids: Sequence[str],
        key: str,
        *,
        points: int | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
        actor: Principal,
    ) -> list[Metric]:
        """One metric of several runs, each run's history sampled to at most
        ``points`` points (default and cap 2,500; 100 runs at most) between
        ``start_step`` and ``end_step`` (both or neither), as MLflow's
        ``get-history-bulk-interval`` samples them (first and last point kept).
        Requires: read on each run's namespace."""
        rids = [validate_run_id(r) for r in run_ids]
        if not rids:
            raise InvalidInput("run_ids must not be empty", code="INVALID_INPUT")
        if len(rids) > MAX_BULK_RUNS:
            raise InvalidInput(
                f"at most {MAX_BULK_RUNS} run_ids may be given; got {len(rids)}",
                code="INVALID_INPUT",
            )
        validate_key(key, "metric key")
        limit = check_max_results(points, MAX_SAMPLED_POINTS, cap=MAX_SAMPLED_POINTS)
        if (start_step is None) != (end_step is None):
            raise InvalidInput(
                "start_step and end_step are given together or not at all", code="INVALID_INPUT"
            )
        steps = None
        if start_step is not None and end_step is not None:
            if start_step > end_step:
                raise InvalidInput(
                    f"end_step ({end_step}) must not be below start_step ({start_step})",
                    code="INVALID_INPUT",
                )
            steps = (start_step, end_step)
        out: list[Metric] = []
        with self.db.read() as tx:
            for rid in dict.fromkeys(rids):
                self._readable(actor, self._run(tx.tracking, rid).namespace)
            for rid in dict.fromkeys(rids):
                out += tx.tracking.sample_metric_history(rid, key, points=limit, steps=steps)
        return out

    def search_runs(
        self,
        experiment_ids: Sequence[int | str],
        *,
        filter_string: str | None = None,
        view: str | None = None,
        order_by: list[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
        actor: Principal,
    ) -> Page[Run]:
        """Runs of these experiments matching MLflow's run filter, in
        ``order_by`` (default: newest start first). Requires: read on every
        experiment's namespace."""
        eids = [validate_experiment_id(e) for e in experiment_ids]
        if not eids:
            raise InvalidInput("experiment_ids must not be empty", code="INVALID_INPUT")
        clauses = parse_run_filter(filter_string)
        order = parse_run_order(order_by)
        stages = parse_view(view)
        limit = check_max_results(max_results, 1000)
        offset = parse_offset_token(page_token)
        with self.db.read() as tx:
            tq = tx.tracking
            for eid in eids:
                self._readable(actor, self._experiment(tq, eid).namespace)
            ids = tq.search_run_ids(
                experiment_ids=eids,
                stages=stages,
                clauses=clauses,
                order=order,
                limit=limit + 1,
                offset=offset,
            )
            runs = tq.load_runs(ids[:limit])
        token = str(offset + limit) if len(ids) > limit else None
        return Page(runs, token)

    # -- logged models ----------------------------------------------------------

    def create_logged_model(
        self,
        experiment_id: int | str,
        *,
        name: str | None = None,
        source_run_id: str | None = None,
        model_type: str | None = None,
        tags: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        actor: Principal,
    ) -> LoggedModel:
        """Create a ``PENDING`` logged model (its files are uploaded next).
        Requires: write on the experiment's namespace."""
        eid = validate_experiment_id(experiment_id)
        model_id = "m-" + uuid.uuid4().hex
        model_name = validate_text(
            name or f"model-{model_id[2:10]}", "name", MAX_ENTITY_NAME_LENGTH
        )
        if source_run_id is not None:
            validate_run_id(source_run_id)
        if model_type is not None:
            validate_text(model_type, "model_type", MAX_ENTITY_NAME_LENGTH)
        clean_tags = _check_tags(tags or {})
        clean_params = _check_params(params or {})
        with self.db.read() as tx:
            exp = self._experiment(tx.tracking, eid)
        auth.require(actor, Permission.WRITE, exp.namespace)

        def op(tx: RegistryTx) -> LoggedModel:
            tq = tx.tracking
            current = self._experiment(tq, eid)
            if current.lifecycle_stage is not LifecycleStage.ACTIVE:
                raise Conflict(f"experiment {eid} is deleted", code="EXPERIMENT_DELETED")
            if source_run_id is not None:
                run = self._run(tq, source_run_id)
                if run.experiment_id != eid:
                    raise InvalidInput(
                        f"run {source_run_id} belongs to another experiment",
                        code="INVALID_INPUT",
                    )
            at = now_us()
            tq.insert_logged_model(
                {
                    "id": model_id,
                    "experiment_id": eid,
                    "name": model_name,
                    "source_run_id": source_run_id,
                    "model_type": model_type,
                    "status": LoggedModelStatus.PENDING.value,
                    "status_message": "",
                    "artifact_location": model_artifact_root(eid, model_id),
                    "lifecycle_stage": LifecycleStage.ACTIVE.value,
                    "created_by": actor.name,
                    "created_at": at,
                    "updated_at": at,
                },
                clean_tags,
                clean_params,
            )
            model = self._model(tq, model_id)
            self._event(
                tx,
                "logged_model.created",
                actor,
                model.namespace,
                f"logged_models:{model_id}",
                _model_payload(model),
            )
            return model

        result: LoggedModel = self._tx(op)
        return result

    def get_logged_model(
        self, model_id: str, *, allow_deleted: bool = False, actor: Principal
    ) -> LoggedModel:
        """A logged model. Requires: read on its namespace."""
        mid = validate_model_id(model_id)
        with self.db.read() as tx:
            model = self._model(tx.tracking, mid, allow_deleted=allow_deleted)
        self._readable(actor, model.namespace)
        return model

    def _change_model(self, model_id: str, actor: Principal, change: Any) -> LoggedModel:
        mid = validate_model_id(model_id)
        with self.db.read() as tx:
            namespace = self._model(tx.tracking, mid, allow_deleted=False).namespace
        auth.require(actor, Permission.WRITE, namespace)

        def op(tx: RegistryTx) -> LoggedModel:
            tq = tx.tracking
            before = self._model(tq, mid, allow_deleted=False)
            event = change(tq, before)
            after = self._model(tq, mid)
            if event:
                self._event(
                    tx, event, actor, after.namespace, f"logged_models:{mid}", _model_payload(after)
                )
            return after

        result: LoggedModel = self._tx(op)
        return result

    def finalize_logged_model(self, model_id: str, status: str, *, actor: Principal) -> LoggedModel:
        """Mark a logged model ``READY`` (or ``FAILED``). Requires: write."""
        try:
            final = LoggedModelStatus(status)
        except ValueError:
            raise InvalidInput(
                f"unknown logged model status {status!r}",
                code="INVALID_INPUT",
                details={"allowed": [s.value for s in LoggedModelStatus]},
            ) from None

        def change(tq: TrackingQueries, before: LoggedModel) -> str:
            tq.update_logged_model(before.id, status=final.value)
            return "logged_model.finalized"

        return self._change_model(model_id, actor, change)

    def set_logged_model_tags(
        self, model_id: str, tags: dict[str, str], *, actor: Principal
    ) -> LoggedModel:
        """Set tags on a logged model. Requires: write."""
        clean = _check_tags(tags)

        def change(tq: TrackingQueries, before: LoggedModel) -> None:
            tq.set_logged_model_tags(before.id, clean)
            tq.update_logged_model(before.id)

        return self._change_model(model_id, actor, change)

    def delete_logged_model_tag(self, model_id: str, key: str, *, actor: Principal) -> None:
        """Remove one tag of a logged model. Requires: write."""
        validate_key(key, "tag key")

        def change(tq: TrackingQueries, before: LoggedModel) -> None:
            if not tq.delete_logged_model_tag(before.id, key):
                raise NotFound(f"tag {key!r} not set", code="TAG_NOT_FOUND")

        self._change_model(model_id, actor, change)

    def log_logged_model_params(
        self, model_id: str, params: dict[str, str], *, actor: Principal
    ) -> None:
        """Set params of a logged model. Requires: write."""
        clean = _check_params(params)

        def change(tq: TrackingQueries, before: LoggedModel) -> None:
            tq.add_logged_model_params(before.id, clean)

        self._change_model(model_id, actor, change)

    def delete_logged_model(self, model_id: str, *, actor: Principal) -> None:
        """Soft-delete a logged model. Requires: write."""

        def change(tq: TrackingQueries, before: LoggedModel) -> str:
            tq.update_logged_model(before.id, lifecycle_stage=LifecycleStage.DELETED.value)
            return "logged_model.deleted"

        self._change_model(model_id, actor, change)

    def search_logged_models(
        self,
        experiment_ids: Sequence[int | str],
        *,
        name: str | None = None,
        source_run_id: str | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
        actor: Principal,
    ) -> Page[LoggedModel]:
        """Active logged models of these experiments (optionally of one name or
        source run), newest first. Requires: read on every experiment's namespace."""
        eids = [validate_experiment_id(e) for e in experiment_ids]
        if not eids:
            raise InvalidInput("experiment_ids must not be empty", code="INVALID_INPUT")
        if source_run_id is not None:
            validate_run_id(source_run_id)
        limit = check_max_results(max_results, 100, cap=1000)
        offset = parse_offset_token(page_token)
        with self.db.read() as tx:
            tq = tx.tracking
            for eid in eids:
                self._readable(actor, self._experiment(tq, eid).namespace)
            ids = tq.search_logged_model_ids(
                experiment_ids=eids,
                stages=(LifecycleStage.ACTIVE.value,),
                name=name,
                source_run_id=source_run_id,
                limit=limit + 1,
                offset=offset,
            )
            models = tq.load_logged_models(ids[:limit])
        token = str(offset + limit) if len(ids) > limit else None
        return Page(models, token)


# -- validation and payloads ---------------------------------------------------


def _active_experiment(e: Experiment) -> None:
    if e.lifecycle_stage is not LifecycleStage.ACTIVE:
        raise Conflict(
            f"experiment {e.id} is deleted; restore it first",
            code="EXPERIMENT_DELETED",
            details={"experiment_id": str(e.id)},
        )


def _check_time(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**62:
        raise InvalidInput(f"{what} must be a non-negative integer", code="INVALID_INPUT")
    return value


def _check_tags(tags: dict[str, Any]) -> dict[str, str]:
    if not isinstance(tags, dict):
        raise InvalidInput("tags must be an object", code="INVALID_INPUT")
    return {
        validate_key(k, "tag key"): validate_text(v, f"tag {k!r}", MAX_TAG_VALUE_LENGTH)
        for k, v in tags.items()
    }


def _check_params(params: dict[str, Any]) -> dict[str, str]:
    if not isinstance(params, dict):
        raise InvalidInput("params must be an object", code="INVALID_INPUT")
    return {
        validate_key(k, "param key"): validate_text(v, f"param {k!r}", MAX_PARAM_VALUE_LENGTH)
        for k, v in params.items()
    }


def _check_metric(m: Metric) -> Metric:
    validate_key(m.key, "metric key")
    value = validate_metric_value(m.value)
    _check_time(m.timestamp, "metric timestamp")
    if not isinstance(m.step, int) or isinstance(m.step, bool) or abs(m.step) >= 2**62:
        raise InvalidInput("metric step must be an integer", code="INVALID_INPUT")
    if m.model_id is not None:
        validate_model_id(m.model_id)
    return Metric(m.key, value, m.timestamp, m.step, m.run_id, m.model_id)


def _with_run(m: Metric, run_id: str) -> Metric:
    return Metric(m.key, m.value, m.timestamp, m.step, run_id, m.model_id)


def _experiment_payload(e: Experiment) -> dict[str, Any]:
    return {
        "experiment_id": e.id,
        "name": e.name,
        "namespace": e.namespace,
        "lifecycle_stage": e.lifecycle_stage.value,
    }


def _run_payload(r: Run) -> dict[str, Any]:
    return {
        "run_id": r.id,
        "experiment_id": r.experiment_id,
        "name": r.name,
        "status": r.status.value,
        "lifecycle_stage": r.lifecycle_stage.value,
        "start_time": r.start_time,
        "end_time": r.end_time,
    }


def _model_payload(m: LoggedModel) -> dict[str, Any]:
    return {
        "model_id": m.id,
        "experiment_id": m.experiment_id,
        "name": m.name,
        "source_run_id": m.source_run_id,
        "status": m.status.value,
        "lifecycle_stage": m.lifecycle_stage.value,
    }
