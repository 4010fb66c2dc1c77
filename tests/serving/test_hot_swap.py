"""Hot swap under load: the alias moves, the server follows, no request fails;
a version that cannot load never takes traffic."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

from modelyard.client import Registry
from tests.conftest_server import stop_server
from tests.serving.models import onnx_predict, train, write_onnx
from tests.serving.servers import start_serving


class Load:
    """Threads sending inference requests until stopped; every answer is checked."""

    def __init__(self, url: str, body: dict[str, object], clients: int = 3) -> None:
        self.url = url
        self.body = body
        self.versions: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(self.url, json=self.body)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text}")
                else:
                    self.versions.append(r.json()["model_version"])

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def wait_for(self, version: str, timeout: float = 60) -> None:
        """Until some answer came from ``version`` (a deadline, not a timing claim)."""
        deadline = time.monotonic() + timeout
        while version not in self.versions[-50:]:
            assert time.monotonic() < deadline, f"never answered from version {version}"
            time.sleep(0.05)


def _metric(url: str, line_start: str) -> float | None:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_alias_move_swaps_with_no_failed_request(live_server: str, tmp_path: Path) -> None:
    name = f"swap-{uuid.uuid4().hex[:8]}"
    first, second = train(0, c=0.05), train(1, c=1.0)
    v1, v2 = write_onnx(first, tmp_path / "v1.onnx"), write_onnx(second, tmp_path / "v2.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    reg = Registry(live_server, cache_dir=tmp_path / "sdk")
    reg.push(name, [v1], format="onnx")
    reg.push(name, [v2], format="onnx")
    reg.push(name, [broken], format="onnx")
    reg.set_alias(f"{name}/1", "production")
    proc, url = start_serving(live_server, [f"{name}@production"], tmp_path / "serve")
    rows = first.rows[:2]
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 4], "data": rows.tolist()}]}
    try:
        with Load(f"{url}/v2/models/{name}/infer", body) as load:
            load.wait_for("1")
            reg.set_alias(f"{name}/2", "production")
            load.wait_for("2")
            # After the switch every answer is version 2's, and it is right.
            r = httpx.post(f"{url}/v2/models/{name}/infer", json=body).json()
            labels = np.array(r["outputs"][0]["data"])
            np.testing.assert_array_equal(labels, onnx_predict(v2, rows)["label"])
            # A version that cannot load: refused, counted, version 2 keeps serving.
            reg.set_alias(f"{name}/3", "production")
            failures = f'modelyard_serving_load_failures_total{{model="{name}"}}'
            deadline = time.monotonic() + 60
            while _metric(url, failures) != 1.0:
                assert time.monotonic() < deadline, "the failed load was never reported"
                time.sleep(0.1)
            seen = len(load.versions)
            while len(load.versions) < seen + 20:
                time.sleep(0.05)
        assert load.failures == []
        assert set(load.versions[seen:]) == {"2"}
        assert _metric(url, f'modelyard_serving_swaps_total{{model="{name}"}}') == 1.0
        meta = httpx.get(f"{url}/v2/models/{name}").json()
        assert meta["versions"] == ["2"]  # version 1 unloaded, 3 never loaded
        assert httpx.get(f"{url}/v2/models/{name}/versions/1/ready").status_code == 404
    finally:
        stop_server(proc)
        reg.close()
    log = (tmp_path / "serve" / "serve.log").read_text()
    assert f"default/{name}/3 not loaded, default/{name}/2 keeps serving" in log


def test_a_pinned_reference_keeps_its_version(live_server: str, tmp_path: Path) -> None:
    """``name/1`` beside ``name@production``: moving the alias away from 1 leaves 1
    served, and the unversioned routes stay on the first reference given."""
    name = f"pin-{uuid.uuid4().hex[:8]}"
    reg = Registry(live_server, cache_dir=tmp_path / "sdk")
    for seed in (0, 1):
        reg.push(name, [write_onnx(train(seed), tmp_path / f"m{seed}.onnx")], format="onnx")
    reg.set_alias(f"{name}/1", "production")
    proc, url = start_serving(live_server, [f"{name}/1", f"{name}@production"], tmp_path / "serve")
    try:
        reg.set_alias(f"{name}/2", "production")
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/v2/models/{name}").json()["versions"] != ["1", "2"]:
            assert time.monotonic() < deadline, "the alias move was never followed"
            time.sleep(0.05)
        default = httpx.get(f"{url}/v2/models/{name}/ready")
        assert default.status_code == 200
        body = {
            "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5, 3, 1, 0]}]
        }
        answer = httpx.post(f"{url}/v2/models/{name}/infer", json=body).json()
        assert answer["model_version"] == "1"
        answer = httpx.post(f"{url}/v2/models/{name}/versions/2/infer", json=body).json()
        assert answer["model_version"] == "2"
    finally:
        stop_server(proc)
        reg.close()
