"""Optional prediction logging (issue 12): off by default; with
``--log-predictions DIR`` every inference (inputs, outputs or the error,
version, latency) is a JSON line in rotating files of bounded size."""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelyard.client import Registry
from modelyard.serving.predlog import FILE_NAME, PredictionLog, Record
from tests.conftest_server import stop_server
from tests.serving.models import train, write_skops
from tests.serving.servers import start_serving


@pytest.fixture
def reg(live_server: str, tmp_path: Path) -> Iterator[Registry]:
    with Registry(live_server, cache_dir=tmp_path / "sdk") as client:
        yield client


def _lines(directory: Path) -> list[dict[str, object]]:
    """Every record, oldest first (the highest-numbered rotated file is the oldest)."""
    rotated = sorted(
        directory.glob("predictions.*.jsonl"), key=lambda p: -int(p.name.split(".")[1])
    )
    out = []
    for path in [*rotated, directory / FILE_NAME]:
        if path.exists():
            out += [json.loads(line) for line in path.read_text().splitlines()]
    return out


def test_rotation_keeps_the_log_bounded(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log", max_bytes=2000, backups=2)
    x = np.arange(8, dtype=np.float64).reshape(2, 4)
    for i in range(100):
        rec = Record(
            1.5e9 + i, "m", "1", "ns/m/1", str(i), 0.1, {"input": x}, {"label": x[:, 0]}, None
        )
        assert log.record(rec)
    log.close()
    files = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert files == sorted([FILE_NAME, "predictions.1.jsonl", "predictions.2.jsonl"])
    line = len((tmp_path / "log" / FILE_NAME).read_text().splitlines()[0]) + 1
    for name in files:
        assert (tmp_path / "log" / name).stat().st_size <= 2000 + line
    ids = [int(str(r["id"])) for r in _lines(tmp_path / "log")]
    # The newest records survive, in order; the oldest were rotated away.
    assert ids == list(range(ids[0], 100)) and ids[0] > 0
    assert stat.S_IMODE((tmp_path / "log").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "log" / FILE_NAME).stat().st_mode) == 0o600


def test_serve_logs_predictions_and_failures(
    live_server: str, reg: Registry, tmp_path: Path
) -> None:
    name = f"plog-{uuid.uuid4().hex[:8]}"
    trained = train(0)
    reg.push(name, [write_skops(trained, tmp_path / "m.skops")], format="skops")
    logdir = tmp_path / "predictions"
    proc, url = start_serving(
        live_server, [f"{name}/1"], tmp_path / "serve", args=["--log-predictions", str(logdir)]
    )
    rows = trained.rows[:2].astype(np.float64)
    try:
        for i in range(3):
            body = {
                "id": f"req-{i}",
                "inputs": [{"name": "input", "datatype": "FP64", "shape": [2, 4],
                            "data": rows.tolist()}],
            }  # fmt: skip
            r = httpx.post(f"{url}/v2/models/{name}/infer", json=body)
            assert r.status_code == 200, r.text
        bad = np.full((1, 4), np.nan)
        head = json.dumps(
            {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4],
                         "parameters": {"binary_data_size": bad.nbytes}}]}
        ).encode()  # fmt: skip
        r = httpx.post(
            f"{url}/v2/models/{name}/infer",
            content=head + bad.tobytes(),
            headers={"Inference-Header-Content-Length": str(len(head))},
        )
        assert r.status_code == 500
    finally:
        stop_server(proc)  # a clean stop writes what is queued
    records = _lines(logdir)
    assert [r["id"] for r in records] == ["req-0", "req-1", "req-2", None]
    first = records[0]
    assert (first["model"], first["version"], first["ref"]) == (name, "1", f"default/{name}/1")
    assert np.allclose(np.array(first["inputs"]["input"]), rows)
    expected = trained.estimator.predict(rows).tolist()
    assert first["outputs"]["label"] == expected and "probabilities" in first["outputs"]
    assert isinstance(first["latency_ms"], float) and first["at"].endswith("Z")
    failed = records[-1]
    assert "outputs" not in failed and "inference failed" in failed["error"]
    assert failed["inputs"]["input"] == [[None, None, None, None]]  # NaN is not JSON


def test_off_by_default(live_server: str, reg: Registry, tmp_path: Path) -> None:
    name = f"plog-{uuid.uuid4().hex[:8]}"
    trained = train(0)
    reg.push(name, [write_skops(trained, tmp_path / "m.skops")], format="skops")
    proc, url = start_serving(live_server, [f"{name}/1"], tmp_path / "serve")
    try:
        body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4],
                            "data": [5.0, 3.4, 1.5, 0.2]}]}  # fmt: skip
        assert httpx.post(f"{url}/v2/models/{name}/infer", json=body).status_code == 200
    finally:
        stop_server(proc)
    assert not list(tmp_path.rglob("predictions*.jsonl"))
