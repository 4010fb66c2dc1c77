"""The dispatcher's side of the webhook service on both databases: fan-out, leases, attempts.

No HTTP here: attempts are recorded from outcomes, so the rules are checked alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.composition import build_services
from modelyard.domain.identity import Principal
from modelyard.domain.webhooks import AttemptOutcome
from modelyard.events import dispatcher as dispatcher_module
from modelyard.events.dispatcher import Dispatcher
from modelyard.events.sender import WebhookSender
from modelyard.service.destinations import DestinationGuard
from modelyard.service.registry import RegistryService
from modelyard.service.webhooks import WebhookPolicy, WebhookService
from modelyard.settings import Settings
from modelyard.webhooks import sign, verify
from tests.receiver import wait_for

OK = AttemptOutcome(200, "ok", None, 1000)
BOOM = AttemptOutcome(500, "boom", None, 1000)


@pytest.fixture
def services(tmp_path: Path, db_url: str) -> Iterator[tuple[RegistryService, WebhookService]]:
    reg = build_services(Settings(data_dir=tmp_path, db=db_url)).registry
    # The lease must outlast the gap between two claims of one test step on a
    # loaded machine (0.3 s did not, at load 15 on 2 cores); expiry is waited for.
    policy = WebhookPolicy(retry_base=0.01, retry_cap=0.02, max_attempts=3, lease=2.0)
    yield reg, WebhookService(reg.db, DestinationGuard("127.0.0.1"), policy)
    reg.db.dispose()


def test_fan_out_queues_only_matching_later_events(
    services: tuple[RegistryService, WebhookService],
) -> None:
    reg, hooks = services
    reg.create_model("before", actor=Principal.local("t"))
    hook, secret = hooks.create_webhook(
        "http://127.0.0.1:1/", event_types=["model.*"], actor=Principal.local("admin")
    )
    reg.create_model("after", actor=Principal.local("t"))
    reg.create_namespace("other", actor=Principal.local("t"))
    assert hooks.fan_out() > 0
    assert hooks.fan_out() == 0  # the cursor moved past them
    [claim] = hooks.claim_due(worker="a", limit=10)
    assert claim.webhook_id == hook.id and claim.attempt == 1
    assert claim.secrets == [secret]
    stamp = int(time.time())
    headers = {
        "webhook-id": claim.message_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(claim.message_id, stamp, claim.body, secret),
    }
    body = verify(headers, claim.body, secret)
    assert body["type"] == "model.created" and body["data"]["name"] == "after"


def test_a_lease_keeps_others_off_until_it_expires(
    services: tuple[RegistryService, WebhookService],
) -> None:
    reg, hooks = services
    hook, _ = hooks.create_webhook("http://127.0.0.1:1/", actor=Principal.local("admin"))
    reg.create_model("m", actor=Principal.local("t"))
    hooks.fan_out()
    [first] = hooks.claim_due(worker="a", limit=10)
    assert hooks.claim_due(worker="b", limit=10) == []
    # Worker "a" dies without recording; after the lease, "b" gets the same delivery.
    again = wait_for(lambda: hooks.claim_due(worker="b", limit=10), what="lease expiry")
    assert [c.delivery_id for c in again] == [first.delivery_id]
    assert again[0].message_id == first.message_id and again[0].body == first.body
    hooks.record_attempt(again[0], OK)
    # The late report of the dead worker's attempt is still recorded, harmlessly.
    hooks.record_attempt(first, BOOM)
    d = hooks.get_delivery(hook.id, first.delivery_id, actor=Principal.local("t"))
    assert d.status.value == "succeeded"
    assert [a.status for a in d.attempts] == ["succeeded", "failed"]


def test_retries_stop_after_max_attempts(
    services: tuple[RegistryService, WebhookService],
) -> None:
    reg, hooks = services
    hook, _ = hooks.create_webhook("http://127.0.0.1:1/", actor=Principal.local("admin"))
    reg.create_model("m", actor=Principal.local("t"))
    hooks.fan_out()
    for n in range(1, 4):
        [c] = wait_for(lambda: hooks.claim_due(worker="a", limit=10), what=f"attempt {n}")
        assert c.attempt == n
        hooks.record_attempt(c, BOOM)
    d = hooks.get_delivery(hook.id, c.delivery_id, actor=Principal.local("t"))
    assert d.status.value == "failed" and d.next_attempt_at is None and len(d.attempts) == 3
    time.sleep(0.05)
    assert hooks.claim_due(worker="a", limit=10) == []
    hooks.redeliver(hook.id, d.id, actor=Principal.local("admin"))
    [c] = hooks.claim_due(worker="a", limit=10)
    assert c.attempt == 4
    hooks.record_attempt(c, OK)
    assert hooks.get_delivery(hook.id, d.id, actor=Principal.local("t")).status.value == "succeeded"
    assert hooks.get_webhook(hook.id, actor=Principal.local("t")).failing_since is None


def _counts(reg: RegistryService) -> tuple[int, int]:
    import sqlalchemy as sa

    with reg.db.read() as tx:
        n = tx.conn.execute(sa.text("SELECT count(*) FROM deliveries")).scalar_one()
        a = tx.conn.execute(sa.text("SELECT count(*) FROM delivery_attempts")).scalar_one()
    return int(n), int(a)


def test_old_finished_deliveries_are_pruned_pending_and_recent_stay(
    services: tuple[RegistryService, WebhookService],
) -> None:
    """Issue 9: retention for deliveries and attempts."""
    from modelyard.store.metadata.repository import now_us

    reg, hooks = services
    admin = Principal.local("admin")
    hook, _ = hooks.create_webhook("http://127.0.0.1:1/", actor=admin)
    for name in ("ok", "failed", "pending"):
        reg.create_model(name, actor=Principal.local("t"))
    hooks.fan_out()
    claims = hooks.claim_due(worker="a", limit=10)
    assert len(claims) == 3
    ok, failed, pending = sorted(claims, key=lambda c: c.delivery_id)
    hooks.record_attempt(ok, OK)
    hooks.record_attempt(pending, BOOM)  # retried later: stays pending
    hooks.record_attempt(failed, BOOM)
    for n in (2, 3):
        [c] = wait_for(
            lambda: [
                x
                for x in hooks.claim_due(worker="a", limit=10)
                if x.delivery_id == failed.delivery_id
            ],
            what=f"attempt {n}",
        )
        hooks.record_attempt(c, BOOM)
    state = {d.id: d.status.value for d in hooks.list_deliveries(hook.id, actor=admin).items}
    assert state[failed.delivery_id] == "failed" and state[pending.delivery_id] in ("pending",)
    assert _counts(reg) == (3, 5)

    # Within the retention (30 days by default) nothing goes.
    assert hooks.prune_deliveries() == 0
    # 31 days on: the finished two go with their attempts, the pending one stays.
    later = now_us() + 31 * 86_400_000_000
    assert hooks.prune_deliveries(now=later, batch=1) == 2
    assert _counts(reg) == (1, 1)
    remaining = hooks.list_deliveries(hook.id, actor=admin).items
    assert [d.id for d in remaining] == [pending.delivery_id]

    # The dispatcher prunes on its first round (whichever replica runs it).
    hooks.record_attempt(
        wait_for(lambda: hooks.claim_due(worker="a", limit=10), what="retry")[0], OK
    )
    short = WebhookService(reg.db, hooks.guard, WebhookPolicy(delivery_retention=0.001))
    time.sleep(0.01)
    dispatcher = Dispatcher(short, WebhookSender(hooks.guard, timeout=1.0))
    try:
        dispatcher.run_once()
    finally:
        dispatcher.stop()
    assert _counts(reg) == (0, 0)
    assert WebhookPolicy.from_settings(Settings(delivery_retention_days=2)).delivery_retention == (
        2 * 86400.0
    )


class _Rounds(threading.Event):
    """The dispatcher's stop event, recording each pause its loop asks for and
    stopping the loop after ``rounds`` pauses."""

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.rounds = rounds
        self.pauses: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(timeout)
        if len(self.pauses) >= self.rounds:
            self.set()
        return self.is_set()


def _loop_pauses(
    hooks: WebhookService, rounds: int, monkeypatch: pytest.MonkeyPatch, *, batch: int
) -> tuple[list[int], list[float | None]]:
    """(events each round fanned out, the pauses between rounds) of a dispatcher loop."""
    monkeypatch.setattr(dispatcher_module, "FANOUT_BATCH", batch)
    dispatcher = Dispatcher(hooks, WebhookSender(hooks.guard, timeout=1.0), interval=5.0)
    fanned: list[int] = []
    fan_out = hooks.fan_out

    def counted(*, batch: int = 500) -> int:
        fanned.append(fan_out(batch=batch))
        return fanned[-1]

    monkeypatch.setattr(hooks, "fan_out", counted)
    stop = _Rounds(rounds)
    dispatcher._stop = stop
    try:
        dispatcher._loop()  # in this thread; ends after ``rounds`` pauses
    finally:
        dispatcher.stop()
    return fanned, stop.pauses


def test_the_loop_pauses_briefly_after_a_burst_and_goes_on_at_once_with_a_backlog(
    services: tuple[RegistryService, WebhookService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that took every event there was is followed by a short pause,
    so the events of a burst of writes are fanned out together; it went on at
    once and followed each write with a transaction of its own. A full batch
    goes on at once; an idle round waits the interval."""
    reg, hooks = services
    for i in range(3):
        reg.create_model(f"burst{i}", actor=Principal.local("t"))
    fanned, pauses = _loop_pauses(hooks, 2, monkeypatch, batch=500)
    assert fanned[0] >= 3 and fanned[1:] == [0]  # and the fixture's own events
    assert pauses == [dispatcher_module.BURST_PAUSE, 5.0]

    for i in range(3):
        reg.create_model(f"backlog{i}", actor=Principal.local("t"))
    fanned, pauses = _loop_pauses(hooks, 2, monkeypatch, batch=2)
    # Two full batches back to back, then the last event, a pause, nothing.
    assert fanned == [2, 1, 0]
    assert pauses == [dispatcher_module.BURST_PAUSE, 5.0]
