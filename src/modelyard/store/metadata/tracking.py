"""Queries over the tracking tables (issue 10): experiments, runs with their
params, metric history and tags, logged models and the artifact index.

The SQL implementation of :class:`~modelyard.store.metadata.ports.TrackingQueries`,
on one transaction's connection (``Tx.tracking``). Run filters arrive as
``domain/run_filters.py`` clauses and become ``EXISTS`` probes on the
``(key, value, run_id)`` indexes of the latest-metric, param and tag tables.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from modelyard.domain.errors import AlreadyExists, InvalidInput
from modelyard.domain.run_filters import Clause, RunOrder
from modelyard.domain.tracking import (
    ArtifactFile,
    Dataset,
    DatasetInput,
    Experiment,
    LifecycleStage,
    LoggedModel,
    LoggedModelStatus,
    Metric,
    ModelOutput,
    Run,
    RunStatus,
)
from modelyard.store.metadata import tables as t
from modelyard.store.metadata.ports import now_us
from modelyard.store.metadata.search import like_to_glob

_CHUNK = 500  # bound IN lists: SQLite caps bound parameters per statement


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


class TrackingQueries:
    """The tracking tables' queries, on one transaction's connection."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    # -- helpers ------------------------------------------------------------

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's ``INSERT`` (with ``ON CONFLICT``); PostgreSQL's is
        imported when first needed, so a SQLite server never loads it."""
        if self.conn.dialect.name == "sqlite":
            return sqlite.insert(table)
        from sqlalchemy.dialects.postgresql import insert

        return insert(table)

    def _upsert(self, table: sa.Table, rows: list[dict[str, Any]], keys: Sequence[str]) -> None:
        """Insert ``rows``, replacing the non-key columns of rows that exist."""
        if not rows:
            return
        ins = self._insert(table)
        update = {c: getattr(ins.excluded, c) for c in rows[0] if c not in keys}
        stmt = (
            ins.on_conflict_do_update(index_elements=list(keys), set_=update)
            if update
            else ins.on_conflict_do_nothing(index_elements=list(keys))
        )
        for part in _chunks(rows):
            self.conn.execute(stmt, list(part))

    def _insert_ignore(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        ins = self._insert(table)
        for part in _chunks(rows):
            self.conn.execute(ins.on_conflict_do_nothing(), list(part))

    def _kv(self, table: sa.Table, owner_col: str, ids: Sequence[Any]) -> dict[Any, dict[str, str]]:
        out: dict[Any, dict[str, str]] = defaultdict(dict)
        owner = table.c[owner_col]
        for part in _chunks(list(ids)):
            for r in self.conn.execute(
                sa.select(owner, table.c.key, table.c.value).where(owner.in_(part))
            ):
                out[r[0]][r[1]] = r[2]
        return out

    # -- experiments ----------------------------------------------------------

    def insert_experiment(
        self,
        name: str,
        *,
        namespace: str,
        tags: dict[str, str],
        actor: str,
        experiment_id: int | None = None,
    ) -> int:
        """Create an experiment (its artifact location is set by the caller
        once the id is known); ``EXPERIMENT_ALREADY_EXISTS`` if the name is taken."""
        at = now_us()
        values: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "artifact_location": "",
            "lifecycle_stage": LifecycleStage.ACTIVE.value,
            "created_by": actor,
            "created_at": at,
            "updated_at": at,
        }
        if experiment_id is not None:
            values["id"] = experiment_id
        try:
            with self.conn.begin_nested():
                eid = int(
                    self.conn.execute(
                        t.experiments.insert().values(values).returning(t.experiments.c.id)
                    ).scalar_one()
                )
        except SAIntegrityError:
            raise AlreadyExists(
                f"experiment {name!r} already exists",
                code="EXPERIMENT_ALREADY_EXISTS",
                details={"name": name},
            ) from None
        self.set_experiment_tags(eid, tags)
        return eid

    def load_experiments(self, ids: Sequence[int]) -> list[Experiment]:
        """Experiments by id, in the order given (missing ids skipped)."""
        if not ids:
            return []
        rows: dict[int, Any] = {}
        for part in _chunks(list(ids)):
            for r in self.conn.execute(
                sa.select(t.experiments).where(t.experiments.c.id.in_(part))
            ):
                rows[r.id] = r
        tags = self._kv(t.experiment_tags, "experiment_id", list(rows))
        return [
            Experiment(
                r.id,
                r.name,
                r.namespace,
                r.artifact_location,
                LifecycleStage(r.lifecycle_stage),
                tags.get(r.id, {}),
                r.created_by,
                r.created_at,
                r.updated_at,
            )
            for r in [rows[i] for i in ids if i in rows]
        ]

    def get_experiment(self, experiment_id: int) -> Experiment | None:
        """One experiment by id."""
        found = self.load_experiments([experiment_id])
        return found[0] if found else None

    def experiment_by_name(self, name: str) -> Experiment | None:
        """One experiment by its (instance-wide unique) name."""
        eid = self.conn.execute(
            sa.select(t.experiments.c.id).where(t.experiments.c.name == name)
        ).scalar_one_or_none()
        return None if eid is None else self.get_experiment(int(eid))

    def search_experiment_ids(
        self,
        *,
        stages: Sequence[str],
        clauses: Sequence[Clause],
        order: Sequence[RunOrder],
        limit: int,
        offset: int,
        namespaces: Sequence[str] | None,
    ) -> list[int]:
        """Experiment ids matching every clause (``attribute`` name / creation
        and update times, ``tag``), in ``order`` then id."""
        e = t.experiments
        q = sa.select(e.c.id).where(e.c.lifecycle_stage.in_(list(stages)))
        if namespaces is not None:
            q = q.where(e.c.namespace.in_(sorted(namespaces)))
        columns = {
            "name": e.c.name,
            "creation_time": e.c.created_at,
            "last_update_time": e.c.updated_at,
            "experiment_id": e.c.id,
        }
        for c in clauses:
            if c.entity == "tag":
                et = t.experiment_tags
                q = q.where(
                    sa.exists().where(
                        et.c.experiment_id == e.c.id,
                        et.c.key == c.key,
                        _compare(self.conn, et.c.value, c.op, c.value),
                    )
                )
            elif c.entity == "attribute" and c.key in columns:
                q = q.where(_compare(self.conn, columns[c.key], c.op, c.value))
            else:
                raise InvalidInput(
                    f"experiments cannot be filtered on {c.entity} {c.key!r}",
                    code="INVALID_FILTER",
                )
        sort: list[Any] = []
        for o in order:
            col = columns.get(o.key) if o.entity == "attribute" else None
            if col is None:
                raise InvalidInput(
                    f"experiments cannot be ordered by {o.entity} {o.key!r}",
                    code="INVALID_FILTER",
                )
            sort.append(col.asc() if o.ascending else col.desc())
        if not order:
            sort.append(e.c.created_at.desc())
        sort.append(e.c.id.asc())
        q = q.order_by(*sort).limit(limit).offset(offset)
        return [int(x) for x in self.conn.execute(q).scalars()]

    def update_experiment(self, experiment_id: int, **values: Any) -> None:
        """Change columns of an experiment (and stamp ``updated_at``)."""
        values.setdefault("updated_at", now_us())
        try:
            with self.conn.begin_nested():
                self.conn.execute(
                    t.experiments.update().where(t.experiments.c.id == experiment_id).values(values)
                )
        except SAIntegrityError:
            raise AlreadyExists(
                f"experiment {values.get('name')!r} already exists",
                code="EXPERIMENT_ALREADY_EXISTS",
                details={"name": values.get("name")},
            ) from None

    def set_experiment_tags(self, experiment_id: int, tags: dict[str, str]) -> None:
        """Set (insert or replace) tags of an experiment."""
        rows = [{"experiment_id": experiment_id, "key": k, "value": v} for k, v in tags.items()]
        self._upsert(t.experiment_tags, rows, ("experiment_id", "key"))

    def delete_experiment_tag(self, experiment_id: int, key: str) -> bool:
        """Remove one tag; False if it was not set."""
        et = t.experiment_tags
        res = self.conn.execute(
            et.delete().where(et.c.experiment_id == experiment_id, et.c.key == key)
        )
        return bool(res.rowcount)

    # -- runs -------------------------------------------------------------------

    def insert_run(self, values: dict[str, Any], tags: dict[str, str]) -> None:
        """Insert a run row and its initial tags."""
        self.conn.execute(t.runs.insert().values(values))
        self.set_run_tags(values["id"], tags)

    def load_runs(self, ids: Sequence[str]) -> list[Run]:
        """Runs by id with their params, latest metrics, tags and outputs, in
        the order given (missing ids skipped)."""
        if not ids:
            return []
        r_, e = t.runs, t.experiments
        rows: dict[str, Any] = {}
        for part in _chunks(list(ids)):
            q = (
                sa.select(r_, e.c.namespace)
                .select_from(r_.join(e, e.c.id == r_.c.experiment_id))
                .where(r_.c.id.in_(part))
            )
            for r in self.conn.execute(q):
                rows[r.id] = r
        found = list(rows)
        params = self._kv(t.run_params, "run_id", found)
        tags = self._kv(t.run_tags, "run_id", found)
        metrics: dict[str, dict[str, Metric]] = defaultdict(dict)
        outputs: dict[str, list[ModelOutput]] = defaultdict(list)
        lm, ro = t.run_latest_metrics, t.run_outputs
        for part in _chunks(found):
            for m in self.conn.execute(sa.select(lm).where(lm.c.run_id.in_(part))):
                metrics[m.run_id][m.key] = Metric(
                    m.key, _value(m.value, m.is_nan), m.timestamp, m.step, m.run_id
                )
            for o in self.conn.execute(
                sa.select(ro).where(ro.c.run_id.in_(part)).order_by(ro.c.step, ro.c.model_id)
            ):
                outputs[o.run_id].append(ModelOutput(o.model_id, o.step))
        datasets, models = self._inputs(found)
        return [
            Run(
                r.id,
                r.experiment_id,
                r.namespace,
                r.name,
                r.user_name,
                RunStatus(r.status),
                r.start_time,
                r.end_time,
                LifecycleStage(r.lifecycle_stage),
                r.artifact_uri,
                params.get(r.id, {}),
                metrics.get(r.id, {}),
                tags.get(r.id, {}),
                outputs.get(r.id, []),
                datasets.get(r.id, []),
                models.get(r.id, []),
            )
            for r in [rows[i] for i in ids if i in rows]
        ]

    def _inputs(
        self, run_ids: Sequence[str]
    ) -> tuple[dict[str, list[DatasetInput]], dict[str, list[str]]]:
        """The dataset inputs (first logged first) and model inputs of runs."""
        datasets: dict[str, list[DatasetInput]] = defaultdict(list)
        models: dict[str, list[str]] = defaultdict(list)
        ri, d, rm = t.run_dataset_inputs, t.datasets, t.run_model_inputs
        for part in _chunks(list(run_ids)):
            q = (
                sa.select(ri.c.run_id, ri.c.tags, d)
                .select_from(ri.join(d, d.c.id == ri.c.dataset_id))
                .where(ri.c.run_id.in_(part))
                .order_by(ri.c.run_id, ri.c.created_at, d.c.id)
            )
            for r in self.conn.execute(q):
                dataset = Dataset(r.name, r.digest, r.source_type, r.source, r.schema, r.profile)
                datasets[r.run_id].append(DatasetInput(dataset, dict(r.tags or {})))
            for m in self.conn.execute(
                sa.select(rm).where(rm.c.run_id.in_(part)).order_by(rm.c.run_id, rm.c.model_id)
            ):
                models[m.run_id].append(m.model_id)
        return datasets, models

    def add_run_inputs(
        self,
        run_id: str,
        experiment_id: int,
        datasets: Sequence[DatasetInput],
        model_ids: Sequence[str],
    ) -> None:
        """Record what a run read: each dataset once per (experiment, name,
        digest), each input once per run (a repeat keeps its first tags, as
        MLflow does), and the logged models it used."""
        at = now_us()
        d = t.datasets
        self._insert_ignore(
            d,
            [
                {
                    "experiment_id": experiment_id,
                    "name": i.dataset.name,
                    "digest": i.dataset.digest,
                    "source_type": i.dataset.source_type,
                    "source": i.dataset.source,
                    "schema": i.dataset.schema,
                    "profile": i.dataset.profile,
                    "created_at": at,
                }
                for i in datasets
            ],
        )
        rows = []
        for i in datasets:
            dataset_id = self.conn.execute(
                sa.select(d.c.id).where(
                    d.c.experiment_id == experiment_id,
                    d.c.name == i.dataset.name,
                    d.c.digest == i.dataset.digest,
                )
            ).scalar_one()
            rows.append(
                {"run_id": run_id, "dataset_id": dataset_id, "tags": i.tags, "created_at": at}
            )
        self._insert_ignore(t.run_dataset_inputs, rows)
        self._insert_ignore(
            t.run_model_inputs, [{"run_id": run_id, "model_id": m} for m in model_ids]
        )

    def update_run(self, run_id: str, **values: Any) -> None:
        """Change columns of a run."""
        if values:
            self.conn.execute(t.runs.update().where(t.runs.c.id == run_id).values(values))

    def delete_experiment_runs(self, experiment_id: int, at: int) -> int:
        """Soft-delete an experiment's active runs, stamped ``at``."""
        r_ = t.runs
        res = self.conn.execute(
            r_.update()
            .where(
                r_.c.experiment_id == experiment_id,
                r_.c.lifecycle_stage == LifecycleStage.ACTIVE.value,
            )
            .values(lifecycle_stage=LifecycleStage.DELETED.value, deleted_at=at)
        )
        return int(res.rowcount or 0)

    def restore_experiment_runs(self, experiment_id: int, deleted_at: int) -> int:
        """Restore the runs deleted with their experiment (stamped ``deleted_at``);
        runs deleted one by one before stay deleted."""
        r_ = t.runs
        res = self.conn.execute(
            r_.update()
            .where(
                r_.c.experiment_id == experiment_id,
                r_.c.lifecycle_stage == LifecycleStage.DELETED.value,
                r_.c.deleted_at == deleted_at,
            )
            .values(lifecycle_stage=LifecycleStage.ACTIVE.value, deleted_at=None)
        )
        return int(res.rowcount or 0)

    def params_of(self, run_id: str, keys: Iterable[str]) -> dict[str, str]:
        """The values already logged for ``keys`` (params never change once logged)."""
        p = t.run_params
        out: dict[str, str] = {}
        for part in _chunks(sorted(set(keys))):
            for r in self.conn.execute(
                sa.select(p.c.key, p.c.value).where(p.c.run_id == run_id, p.c.key.in_(part))
            ):
                out[r.key] = r.value
        return out

    def insert_params(self, run_id: str, params: dict[str, str]) -> None:
        """Insert params (keys already logged with the same value are kept once)."""
        rows = [{"run_id": run_id, "key": k, "value": v} for k, v in params.items()]
        self._insert_ignore(t.run_params, rows)

    def set_run_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Set (insert or replace) tags of a run."""
        rows = [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()]
        self._upsert(t.run_tags, rows, ("run_id", "key"))

    def delete_run_tag(self, run_id: str, key: str) -> bool:
        """Remove one tag; False if it was not set."""
        rt = t.run_tags
        return bool(
            self.conn.execute(rt.delete().where(rt.c.run_id == run_id, rt.c.key == key)).rowcount
        )

    def insert_metrics(self, run_id: str, metrics: Sequence[Metric]) -> None:
        """Append metric points to the history (an identical point is kept once)
        and move each key's latest point when a newer one arrives: the largest
        (step, timestamp, value), NaN counting as smaller than any number."""
        if not metrics:
            return
        self._insert_ignore(
            t.run_metrics,
            [
                {
                    "run_id": run_id,
                    "key": m.key,
                    "step": m.step,
                    "timestamp": m.timestamp,
                    "value": 0.0 if math.isnan(m.value) else m.value,
                    "is_nan": math.isnan(m.value),
                    "model_id": m.model_id,
                }
                for m in metrics
            ],
        )
        lm = t.run_latest_metrics
        keys = sorted({m.key for m in metrics})
        current: dict[str, tuple[int, int, float]] = {}
        for part in _chunks(keys):
            for r in self.conn.execute(
                sa.select(lm).where(lm.c.run_id == run_id, lm.c.key.in_(part))
            ):
                current[r.key] = (r.step, r.timestamp, -math.inf if r.is_nan else r.value)
        newest: dict[str, Metric] = {}
        for m in metrics:
            rank = (m.step, m.timestamp, -math.inf if math.isnan(m.value) else m.value)
            if m.key not in current or rank >= current[m.key]:
                current[m.key] = rank
                newest[m.key] = m
        self._upsert(
            lm,
            [
                {
                    "run_id": run_id,
                    "key": m.key,
                    "value": 0.0 if math.isnan(m.value) else m.value,
                    "is_nan": math.isnan(m.value),
                    "timestamp": m.timestamp,
                    "step": m.step,
                }
                for m in newest.values()
            ],
            ("run_id", "key"),
        )

    def metric_history(self, run_id: str, key: str, *, limit: int, offset: int) -> list[Metric]:
        """Every point of one metric, by step then timestamp."""
        m = t.run_metrics
        q = (
            sa.select(m)
            .where(m.c.run_id == run_id, m.c.key == key)
            .order_by(m.c.step, m.c.timestamp, m.c.value)
            .limit(limit)
            .offset(offset)
        )
        return [
            Metric(r.key, _value(r.value, r.is_nan), r.timestamp, r.step, r.run_id, r.model_id)
            for r in self.conn.execute(q)
        ]

    def sample_metric_history(
        self, run_id: str, key: str, *, points: int, steps: tuple[int, int] | None
    ) -> list[Metric]:
        """At most ``points`` points of one metric, evenly spread over its
        history (optionally only steps in ``steps``, inclusive), by step then
        time: the first point of each of ``points`` equal buckets (``NTILE``),
        with the last point always kept (in place of the last sample when
        there is no room), as MLflow 3.17's store samples. The database does
        the sampling: a run with a million points sends back ``points`` rows."""
        m = t.run_metrics
        where = [m.c.run_id == run_id, m.c.key == key]
        if steps is not None:
            where += [m.c.step >= steps[0], m.c.step <= steps[1]]
        order = [m.c.step, m.c.timestamp, m.c.value, m.c.is_nan]
        bucketed = (
            sa.select(
                m.c.value,
                m.c.timestamp,
                m.c.step,
                m.c.is_nan,
                m.c.model_id,
                sa.func.ntile(points).over(order_by=order).label("bucket"),
            )
            .where(*where)
            .subquery()
        )
        b = bucketed.c
        inner = [b.step, b.timestamp, b.value, b.is_nan]
        ranked = sa.select(
            b.value,
            b.timestamp,
            b.step,
            b.is_nan,
            b.model_id,
            sa.func.row_number().over(partition_by=b.bucket, order_by=inner).label("rn"),
        ).subquery()
        r = ranked.c
        rows = list(
            self.conn.execute(
                sa.select(r.value, r.timestamp, r.step, r.is_nan, r.model_id)
                .where(r.rn == 1)
                .order_by(r.step, r.timestamp, r.value, r.is_nan)
            )
        )
        last = self.conn.execute(
            sa.select(m.c.value, m.c.timestamp, m.c.step, m.c.is_nan, m.c.model_id)
            .where(*where)
            .order_by(*(c.desc() for c in order))
            .limit(1)
        ).first()
        if last is not None and (not rows or tuple(rows[-1]) != tuple(last)):
            if len(rows) >= points:
                rows[-1] = last
            else:
                rows.append(last)
        return [
            Metric(key, _value(x.value, x.is_nan), x.timestamp, x.step, run_id, x.model_id)
            for x in rows
        ]

    def add_run_outputs(self, run_id: str, outputs: Sequence[ModelOutput]) -> None:
        """Record logged models a run produced (a repeat keeps its first step)."""
        self._insert_ignore(
            t.run_outputs,
            [{"run_id": run_id, "model_id": o.model_id, "step": o.step} for o in outputs],
        )

    def search_run_ids(
        self,
        *,
        experiment_ids: Sequence[int],
        stages: Sequence[str],
        clauses: Sequence[Clause],
        order: Sequence[RunOrder],
        limit: int,
        offset: int,
    ) -> list[str]:
        """Run ids of these experiments matching every clause, in ``order``
        (default: newest start first), then by id."""
        r_ = t.runs
        q = sa.select(r_.c.id).where(
            r_.c.experiment_id.in_(list(experiment_ids)),
            r_.c.lifecycle_stage.in_(list(stages)),
        )
        for c in clauses:
            q = q.where(self._run_clause(c))
        sort: list[Any] = []
        for i, o in enumerate(order):
            col = self._order_column(o, i)
            # Runs without the metric/param/tag sort last either way, as MLflow does.
            sort.append(col.is_(None).asc())
            sort.append(col.asc() if o.ascending else col.desc())
        if not order:
            sort.extend([r_.c.start_time.is_(None).asc(), r_.c.start_time.desc()])
        sort.append(r_.c.id.asc())
        q = q.order_by(*sort).limit(limit).offset(offset)
        return [str(x) for x in self.conn.execute(q).scalars()]

    def _run_clause(self, c: Clause) -> Any:
        r_ = t.runs
        if c.entity == "attribute":
            col = {
                "run_id": r_.c.id,
                "run_name": r_.c.name,
                "status": r_.c.status,
                "user_id": r_.c.user_name,
                "artifact_uri": r_.c.artifact_uri,
                "start_time": r_.c.start_time,
                "end_time": r_.c.end_time,
            }[c.key]
            return _compare(self.conn, col, c.op, c.value)
        if c.entity == "metric":
            lm = t.run_latest_metrics
            return sa.exists().where(
                lm.c.run_id == r_.c.id,
                lm.c.key == c.key,
                lm.c.is_nan.is_(False),
                _compare(self.conn, lm.c.value, c.op, c.value),
            )
        table = t.run_params if c.entity == "param" else t.run_tags
        return sa.exists().where(
            table.c.run_id == r_.c.id,
            table.c.key == c.key,
            _compare(self.conn, table.c.value, c.op, c.value),
        )

    def _order_column(self, o: RunOrder, i: int) -> Any:
        r_ = t.runs
        if o.entity == "attribute":
            return {
                "run_id": r_.c.id,
                "run_name": r_.c.name,
                "status": r_.c.status,
                "user_id": r_.c.user_name,
                "artifact_uri": r_.c.artifact_uri,
                "start_time": r_.c.start_time,
                "end_time": r_.c.end_time,
            }[o.key]
        table = {"metric": t.run_latest_metrics, "param": t.run_params, "tag": t.run_tags}[o.entity]
        alias = table.alias(f"o{i}")
        return (
            sa.select(alias.c.value)
            .where(alias.c.run_id == r_.c.id, alias.c.key == o.key)
            .scalar_subquery()
        )

    # -- logged models ----------------------------------------------------------

    def insert_logged_model(
        self, values: dict[str, Any], tags: dict[str, str], params: dict[str, str]
    ) -> None:
        """Insert a logged model with its tags and params."""
        self.conn.execute(t.logged_models.insert().values(values))
        self.set_logged_model_tags(values["id"], tags)
        self.add_logged_model_params(values["id"], params)

    def load_logged_models(self, ids: Sequence[str]) -> list[LoggedModel]:
        """Logged models by id with tags, params and metrics, in the order given."""
        if not ids:
            return []
        lm, e = t.logged_models, t.experiments
        rows: dict[str, Any] = {}
        for part in _chunks(list(ids)):
            q = (
                sa.select(lm, e.c.namespace)
                .select_from(lm.join(e, e.c.id == lm.c.experiment_id))
                .where(lm.c.id.in_(part))
            )
            for r in self.conn.execute(q):
                rows[r.id] = r
        found = list(rows)
        tags = self._kv(t.logged_model_tags, "model_id", found)
        params = self._kv(t.logged_model_params, "model_id", found)
        metrics: dict[str, list[Metric]] = defaultdict(list)
        m = t.run_metrics
        for part in _chunks(found):
            q2 = (
                sa.select(m)
                .where(m.c.model_id.in_(part))
                .order_by(m.c.key, m.c.step, m.c.timestamp)
            )
            for r in self.conn.execute(q2):
                metrics[r.model_id].append(
                    Metric(
                        r.key, _value(r.value, r.is_nan), r.timestamp, r.step, r.run_id, r.model_id
                    )
                )
        return [
            LoggedModel(
                r.id,
                r.experiment_id,
                r.namespace,
                r.name,
                r.source_run_id,
                r.model_type,
                LoggedModelStatus(r.status),
                r.status_message,
                r.artifact_location,
                LifecycleStage(r.lifecycle_stage),
                r.created_by,
                r.created_at,
                r.updated_at,
                tags.get(r.id, {}),
                params.get(r.id, {}),
                metrics.get(r.id, []),
            )
            for r in [rows[i] for i in ids if i in rows]
        ]

    def update_logged_model(self, model_id: str, **values: Any) -> None:
        """Change columns of a logged model (and stamp ``updated_at``)."""
        values.setdefault("updated_at", now_us())
        self.conn.execute(
            t.logged_models.update().where(t.logged_models.c.id == model_id).values(values)
        )

    def set_logged_model_tags(self, model_id: str, tags: dict[str, str]) -> None:
        """Set (insert or replace) tags of a logged model."""
        rows = [{"model_id": model_id, "key": k, "value": v} for k, v in tags.items()]
        self._upsert(t.logged_model_tags, rows, ("model_id", "key"))

    def delete_logged_model_tag(self, model_id: str, key: str) -> bool:
        """Remove one tag; False if it was not set."""
        mt = t.logged_model_tags
        return bool(
            self.conn.execute(
                mt.delete().where(mt.c.model_id == model_id, mt.c.key == key)
            ).rowcount
        )

    def add_logged_model_params(self, model_id: str, params: dict[str, str]) -> None:
        """Set params of a logged model."""
        rows = [{"model_id": model_id, "key": k, "value": v} for k, v in params.items()]
        self._upsert(t.logged_model_params, rows, ("model_id", "key"))

    def search_logged_model_ids(
        self,
        *,
        experiment_ids: Sequence[int],
        stages: Sequence[str],
        name: str | None,
        source_run_id: str | None,
        limit: int,
        offset: int,
    ) -> list[str]:
        """Logged model ids of these experiments, newest first."""
        lm = t.logged_models
        q = sa.select(lm.c.id).where(
            lm.c.experiment_id.in_(list(experiment_ids)), lm.c.lifecycle_stage.in_(list(stages))
        )
        if name is not None:
            q = q.where(lm.c.name == name)
        if source_run_id is not None:
            q = q.where(lm.c.source_run_id == source_run_id)
        q = q.order_by(lm.c.created_at.desc(), lm.c.id.asc()).limit(limit).offset(offset)
        return [str(x) for x in self.conn.execute(q).scalars()]

    # -- artifacts ----------------------------------------------------------------

    def put_artifact(self, owner: str, entry: ArtifactFile, *, actor: str) -> None:
        """Index (or re-index) one file of an artifact tree."""
        self._upsert(
            t.artifacts,
            [
                {
                    "owner": owner,
                    "path": entry.path,
                    "digest": entry.digest,
                    "size": entry.size,
                    "created_by": actor,
                    "created_at": now_us(),
                }
            ],
            ("owner", "path"),
        )

    def insert_artifact_upload(self, values: dict[str, Any]) -> None:
        """Open a multipart upload (and drop the ones whose time ran out)."""
        u = t.artifact_uploads
        self.conn.execute(u.delete().where(u.c.expires_at < values["created_at"]))
        self.conn.execute(u.insert().values(**values))

    def artifact_upload(self, key: str) -> Any:
        """An open multipart upload by the hash of its id, or None."""
        u = t.artifact_uploads
        return self.conn.execute(sa.select(u).where(u.c.id == key)).first()

    def put_upload_part(self, key: str, part_number: int, digest: str, size: int) -> None:
        """Record one part's blob (a part sent again replaces the earlier one)."""
        self._upsert(
            t.artifact_upload_parts,
            [{"upload_id": key, "part_number": part_number, "digest": digest, "size": size}],
            ("upload_id", "part_number"),
        )

    def upload_parts(self, key: str) -> dict[int, tuple[str, int]]:
        """The parts received so far: number -> (digest, size)."""
        p = t.artifact_upload_parts
        rows = self.conn.execute(
            sa.select(p.c.part_number, p.c.digest, p.c.size).where(p.c.upload_id == key)
        )
        return {int(r[0]): (str(r[1]), int(r[2])) for r in rows}

    def delete_artifact_upload(self, key: str) -> None:
        """Close a multipart upload (its part rows go with it)."""
        p, u = t.artifact_upload_parts, t.artifact_uploads
        self.conn.execute(p.delete().where(p.c.upload_id == key))
        self.conn.execute(u.delete().where(u.c.id == key))

    def artifact(self, owner: str, path: str) -> ArtifactFile | None:
        """One indexed file."""
        a = t.artifacts
        r = self.conn.execute(
            sa.select(a.c.path, a.c.digest, a.c.size).where(a.c.owner == owner, a.c.path == path)
        ).one_or_none()
        return None if r is None else ArtifactFile(r.path, r.digest, r.size)

    def artifacts_under(self, owner: str, prefix: str, *, limit: int) -> list[ArtifactFile]:
        """Files of ``owner`` whose path is under directory ``prefix`` ("" for
        all), by path; a range scan of the primary key."""
        a = t.artifacts
        q = sa.select(a.c.path, a.c.digest, a.c.size).where(a.c.owner == owner)
        if prefix:
            start = prefix.rstrip("/") + "/"
            # "/" + 1 is "0": every path below the directory sorts in [start, end).
            end = start[:-1] + "0"
            q = q.where(a.c.path >= start, a.c.path < end)
        q = q.order_by(a.c.path).limit(limit)
        return [ArtifactFile(r.path, r.digest, r.size) for r in self.conn.execute(q)]

    def delete_artifacts(self, owner: str, prefix: str) -> int:
        """Drop index entries at or under ``prefix`` (the blobs stay: shared by digest)."""
        a = t.artifacts
        start = prefix.rstrip("/") + "/"
        res = self.conn.execute(
            a.delete().where(
                a.c.owner == owner,
                sa.or_(a.c.path == prefix, sa.and_(a.c.path >= start, a.c.path < start[:-1] + "0")),
            )
        )
        return int(res.rowcount or 0)


def _value(value: float, is_nan: bool) -> float:
    return math.nan if is_nan else float(value)


def _compare(conn: sa.Connection, col: Any, op: str, value: Any) -> Any:
    """``col <op> value`` for the operators of the run filter grammar."""
    if op == "=":
        return col == value
    if op == "!=":
        return col != value
    if op == ">":
        return col > value
    if op == ">=":
        return col >= value
    if op == "<":
        return col < value
    if op == "<=":
        return col <= value
    if op == "IN":
        return col.in_(list(value))
    if op == "NOT IN":
        return col.not_in(list(value))
    if op == "ILIKE":
        return sa.func.lower(col).like(sa.func.lower(sa.literal(str(value))), escape="\\")
    if op == "LIKE":
        if conn.dialect.name == "sqlite":
            # SQLite's LIKE ignores ASCII case; GLOB is the case-sensitive equivalent.
            glob = sa.literal(like_to_glob(str(value)), sa.Text())
            return col.op("GLOB", is_comparison=True)(glob)
        return col.like(str(value), escape="\\")
    raise InvalidInput(f"unsupported operator {op!r}", code="INVALID_FILTER")
