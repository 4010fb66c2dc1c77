"""The readiness check's read for a consume-only principal (issue 14): how long
``get_bundle_version`` takes, and how many SQL statements it runs, for
bundles of 3, 16 and 64 members, in-process on SQLite.

The members' visibility in the production view is checked in one statement
for all of them (it was one per member). Prints one line per size; nothing
is asserted. Runs in a fresh temporary directory, removed at the end.

    PYTHONPATH=src .venv/bin/python bench/bundle_readiness.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from modelyard.composition import build_services
from modelyard.domain.identity import Principal, Role
from modelyard.service.registry import VersionSpec
from modelyard.settings import Settings

ADMIN = Principal.local("bench")
CONSUMER = Principal("c", roles={"default": frozenset({Role.CONSUMER})})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(Settings(data_dir=Path(tmp)))
        try:
            svc = services.registry
            engine: sa.Engine = svc.db.engine  # type: ignore[attr-defined]
            statements = [0]

            def count(*_: Any) -> None:
                statements[0] += 1

            sa.event.listen(engine, "before_cursor_execute", count)
            services.governance.set_policy(
                "default", {"required_tags": {"scanned": "yes"}}, actor=ADMIN
            )
            made = 0
            for size in (3, 16, 64):
                roles = {}
                for i in range(size):
                    name = f"m{made}"
                    made += 1
                    svc.create_model(name, actor=ADMIN)
                    ref = svc.create_version(
                        name, VersionSpec(tags={"scanned": "yes"}), actor=ADMIN
                    ).ref
                    svc.transition_version(ref, "published", actor=ADMIN)
                    roles[f"r{i}"] = ref
                svc.create_bundle(f"b{size}", roles=roles, actor=ADMIN)
                svc.create_bundle_version(f"b{size}", actor=ADMIN)
                svc.get_bundle_version(f"b{size}", actor=CONSUMER)  # warm-up
                statements[0] = 0
                svc.get_bundle_version(f"b{size}", actor=CONSUMER)
                per_call = statements[0]
                times = []
                for _ in range(args.rounds):
                    t0 = time.perf_counter()
                    svc.get_bundle_version(f"b{size}", actor=CONSUMER)
                    times.append(time.perf_counter() - t0)
                times.sort()
                print(
                    f"members={size:3d}  statements/call={per_call:3d}  "
                    f"p50={statistics.median(times) * 1e3:.2f} ms  "
                    f"p95={times[int(len(times) * 0.95) - 1] * 1e3:.2f} ms  "
                    f"(consumer, {args.rounds} rounds)"
                )
        finally:
            services.close()


if __name__ == "__main__":
    main()
