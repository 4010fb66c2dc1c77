"""A consumer-only token narrows its event list and its event stream with
``namespace=`` and ``model=`` (issue 12): the same alias moves, trimmed by
the consumer rule (``event_for``), only for that model; a namespace it has no
role in is refused. A real server process with auth on."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from modelyard.client import Registry
from tests.auth_helpers import ADMIN_TOKEN
from tests.conftest_server import start_server, stop_server


def test_consumer_filters_events_by_namespace_and_model(tmp_path: Path) -> None:
    env = {"MODELYARD_AUTH": "on", "MODELYARD_ADMIN_TOKEN": ADMIN_TOKEN}
    proc, url = start_server(tmp_path / "d", extra_env=env)
    try:
        src = tmp_path / "w.bin"
        src.write_bytes(b"weights")
        with Registry(url, token=ADMIN_TOKEN, cache_dir=tmp_path / "sdk") as reg:
            reg.set_policy({"protected_aliases": ["production"]}, namespace="default")
            for name in ("m", "n"):
                reg.push(name, [src])
                reg.push(name, [src])
                reg.publish(f"{name}/1")
                reg.publish(f"{name}/2")
            reg.set_alias("m/1", "production")
            reg.set_alias("n/1", "production")  # between m's two moves
            reg.set_alias("m/2", "production")
            reg.create_user("srv")
            reg.grant_role("srv", "consumer", namespace="default")
            token = reg.create_token("serving", user="srv")["token"]
        consumer = {"Authorization": f"Bearer {token}"}

        expected = [
            (
                "default/m@production",
                {"alias": "production", "to_version": v, "after": {"version": v}},
            )
            for v in (1, 2)
        ]
        for params in (
            {"namespace": "default", "model": "m"},
            {"model": "default/m"},
            {"namespace": "default", "model": "m", "types": "alias.moved"},
        ):
            r = httpx.get(f"{url}/api/v1/events", params=params, headers=consumer)
            assert r.status_code == 200, (params, r.text)
            events = r.json()["events"]
            assert [(e["subject"], e["payload"]) for e in events] == expected, params
            assert all(e["actor"] == "" for e in events)  # trimmed as without filters
        whole = httpx.get(f"{url}/api/v1/events", params={"namespace": "default"}, headers=consumer)
        assert [e["subject"] for e in whole.json()["events"]] == [
            "default/m@production",
            "default/n@production",
            "default/m@production",
        ]
        for params in ({"namespace": "other"}, {"model": "other/m"}):
            r = httpx.get(f"{url}/api/v1/events", params=params, headers=consumer)
            assert r.status_code == 403 and r.json()["error"]["code"] == "PERMISSION_DENIED"
            r = httpx.get(f"{url}/api/v1/events/stream", params=params, headers=consumer)
            assert r.status_code == 403 and r.json()["error"]["code"] == "PERMISSION_DENIED"

        seen: list[tuple[str, dict[str, object]]] = []
        with httpx.stream(
            "GET",
            f"{url}/api/v1/events/stream",
            params={"after": 0, "namespace": "default", "model": "m", "heartbeat": 0.2},
            headers=consumer,
            timeout=httpx.Timeout(10.0),
        ) as resp:
            assert resp.status_code == 200
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    event = json.loads(line[len("data: ") :])
                    seen.append((event["subject"], event["payload"]))
                    assert event["actor"] == ""
                if len(seen) == 2:
                    break
        # n's move sits between m's two in the log: the stream skipped it.
        assert seen == expected
    finally:
        stop_server(proc)
