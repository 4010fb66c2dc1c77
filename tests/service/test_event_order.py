"""Event ids are commit-ordered: a reader paging with ``id > cursor`` never misses one.

Writers hold their transaction open for a random moment after writing the
event, which is where an out-of-order commit would otherwise slip a smaller id
behind a reader's cursor.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from modelyard.composition import build_services
from modelyard.settings import Settings
from modelyard.store.metadata import outbox


def test_reader_polling_after_cursor_sees_every_event(tmp_path: Path, db_url: str) -> None:
    svc = build_services(Settings(data_dir=tmp_path, db=db_url, db_pool_size=12)).registry
    db = svc.db
    writers, per_writer = 6, 25
    done = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def write(w: int) -> None:
        rng = random.Random(w)
        try:
            for i in range(per_writer):
                with db.write() as tx:
                    tx.append_event(
                        "test.wrote",
                        actor=f"w{w}",
                        namespace="default",
                        subject="s",
                        payload={},
                    )
                    # The tail of the transaction, after the event row.
                    time.sleep(rng.random() * 0.004)
                if i % 5 == 0:
                    time.sleep(0.001)
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            with db.read() as tx:
                rows = outbox.list_events(tx.conn, after=cursor, limit=1000)
            for r in rows:
                seen.append(r["id"])
                cursor = r["id"]
            if finished and not rows:
                return

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()
    with db.read() as tx:
        committed = [r["id"] for r in outbox.list_events(tx.conn, after=0, limit=1000)]
    db.dispose()
    assert errors == []
    assert len(committed) == writers * per_writer + 1  # + namespace.created
    assert seen == committed
