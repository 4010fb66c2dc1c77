"""``modelyard serve`` against a live registry: ONNX and skops models pushed
with the SDK, served by a real process, called with tritonclient and httpx."""

from __future__ import annotations

import stat
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from tests.conftest_server import stop_server
from tests.serving.models import Trained, onnx_predict, train, write_onnx, write_skops
from tests.serving.servers import start_serving

SKOPS_SIGNATURE = {
    "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
    "outputs": [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
    ],
}


@dataclass
class Served:
    """The server under test and what it serves."""

    url: str
    onnx_name: str
    skops_name: str
    v1: Path  # the ONNX file of version 1
    v2: Path  # the ONNX file of version 2 (@production)
    trained: Trained
    workdir: Path
    proc: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def served(live_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Two ONNX versions (v2 @production) and one skops version, served by one process."""
    work = tmp_path_factory.mktemp("serve")
    tag = uuid.uuid4().hex[:8]
    onnx_name, skops_name = f"iris-{tag}", f"iris-skl-{tag}"
    first, second = train(0, c=0.05), train(1, c=1.0)
    v1 = write_onnx(first, work / "v1.onnx")
    v2 = write_onnx(second, work / "v2.onnx")
    with Registry(live_server, cache_dir=work / "sdk-cache") as reg:
        reg.push(onnx_name, [v1], framework="onnx", format="onnx")
        reg.push(onnx_name, [v2], framework="onnx", format="onnx")
        reg.set_alias(f"{onnx_name}/2", "production")
        reg.push(
            skops_name,
            [write_skops(second, work / "model.skops")],
            framework="sklearn",
            signature=SKOPS_SIGNATURE,
        )
        reg.set_alias(f"{skops_name}/1", "production")
    proc, url = start_serving(
        live_server,
        [f"{onnx_name}@production", f"{onnx_name}/1", f"{skops_name}@production"],
        work,
    )
    try:
        yield Served(url, onnx_name, skops_name, v1, v2, second, work, proc)
    finally:
        stop_server(proc)


def _triton(url: str):  # type: ignore[no-untyped-def]
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(url.removeprefix("http://"))


def test_tritonclient_gets_what_onnxruntime_gives(served: Served) -> None:
    import tritonclient.http as httpclient

    client = _triton(served.url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(served.onnx_name)
        assert client.is_model_ready(served.onnx_name, "1")
        meta = client.get_model_metadata(served.onnx_name)
        assert meta["versions"] == ["1", "2"]
        assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
        assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities"}
        rows = served.trained.rows
        for binary in (True, False):  # binary tensor extension, then plain JSON
            inp = httpclient.InferInput("X", list(rows.shape), "FP32")
            inp.set_data_from_numpy(rows, binary_data=binary)
            outs = [
                httpclient.InferRequestedOutput("label", binary_data=binary),
                httpclient.InferRequestedOutput("probabilities", binary_data=binary),
            ]
            for version, path in (("", served.v2), ("1", served.v1)):
                result = client.infer(served.onnx_name, [inp], model_version=version, outputs=outs)
                want = onnx_predict(path, rows)
                np.testing.assert_array_equal(result.as_numpy("label"), want["label"])
                np.testing.assert_array_equal(
                    result.as_numpy("probabilities"), want["probabilities"]
                )
                assert result.get_response()["model_version"] == (version or "2")
        # No outputs named: tritonclient asks for every output, in binary.
        inp = httpclient.InferInput("X", list(rows.shape), "FP32")
        inp.set_data_from_numpy(rows)
        result = client.infer(served.onnx_name, [inp])
        want = onnx_predict(served.v2, rows)
        np.testing.assert_array_equal(result.as_numpy("label"), want["label"])
    finally:
        client.close()


def test_json_without_content_type_and_skops(served: Served) -> None:
    rows = served.trained.rows.astype(np.float64)
    body = {
        "id": "r-1",
        "inputs": [
            {"name": "input", "datatype": "FP64", "shape": list(rows.shape), "data": rows.tolist()}
        ],
    }
    # httpx sets no Content-Type for raw content: the server must read JSON anyway.
    r = httpx.post(f"{served.url}/v2/models/{served.skops_name}/infer", content=orjson.dumps(body))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["id"] == "r-1" and answer["model_version"] == "1"
    outputs = {o["name"]: o for o in answer["outputs"]}
    est = served.trained.estimator
    assert outputs["label"]["data"] == est.predict(rows).tolist()
    assert outputs["label"]["shape"] == [len(rows)] and outputs["label"]["datatype"] == "INT64"
    proba = np.array(outputs["probabilities"]["data"]).reshape(outputs["probabilities"]["shape"])
    np.testing.assert_array_equal(proba, est.predict_proba(rows))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"name": "Y"}, "unknown input 'Y'"),
        ({"datatype": "FP64"}, "datatype 'FP64', expected FP32"),
        ({"shape": [2, 5]}, "shape [2, 5] does not match [-1, 4]"),
        ({"shape": [3, 4]}, "data has 8 elements, shape [3, 4] needs 12"),
        ({"data": ["a", "b", "c", "d", "e", "f", "g", "h"]}, "not FP32"),
        ({"data": [[1, 2, 3, 4], [5, 6]]}, "not a regular array"),
        ({"shape": [2, True]}, "shape must be a list of non-negative integers"),
    ],
)
def test_bad_inputs_get_a_clear_400(served: Served, change: dict[str, object], words: str) -> None:
    tensor = {"name": "X", "datatype": "FP32", "shape": [2, 4], "data": list(range(8))}
    body = {"inputs": [{**tensor, **change}]}
    r = httpx.post(f"{served.url}/v2/models/{served.onnx_name}/infer", json=body)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]
    assert r.json()["code"] == "INVALID_TENSOR"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "INVALID_JSON"),
        (b"[1, 2]", "INVALID_REQUEST"),
        (b'{"inputs": []}', "INVALID_REQUEST"),
        (b'{"inputs": [{"name": "X"}], "id": 5}', "INVALID_TENSOR"),
    ],
)
def test_garbage_bodies_get_a_clear_400(served: Served, raw: bytes, code: str) -> None:
    r = httpx.post(f"{served.url}/v2/models/{served.onnx_name}/infer", content=raw)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code and r.json()["error"]


def test_tritonclient_sees_the_error_and_unknown_models_are_404(served: Served) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = _triton(served.url)
    try:
        inp = httpclient.InferInput("X", [1, 3], "FP32")
        inp.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
        with pytest.raises(InferenceServerException, match=r"shape \[1, 3\] does not match"):
            client.infer(served.onnx_name, [inp])
        assert not client.is_model_ready("nope")
    finally:
        client.close()
    r = httpx.post(f"{served.url}/v2/models/nope/infer", json={"inputs": []})
    assert r.status_code == 404 and r.json()["code"] == "MODEL_NOT_FOUND"
    r = httpx.get(f"{served.url}/v2/models/{served.onnx_name}/versions/9")
    assert r.status_code == 404
    r = httpx.get(f"{served.url}/v2/models/{served.onnx_name}/infer")
    assert r.status_code == 405


def test_metrics_and_private_cache(served: Served) -> None:
    rows = served.trained.rows
    body = {
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": rows[0].tolist()}]
    }
    assert httpx.post(f"{served.url}/v2/models/{served.onnx_name}/infer", json=body).is_success
    # An error of its own to count: the tests that send bad tensors may run
    # on another xdist worker, against that worker's server.
    bad = {"inputs": [{**body["inputs"][0], "shape": [2, 4]}]}
    r = httpx.post(f"{served.url}/v2/models/{served.onnx_name}/infer", json=bad)
    assert r.status_code == 400 and r.json()["code"] == "INVALID_TENSOR", r.text
    text = httpx.get(f"{served.url}/metrics").text
    name = served.onnx_name
    assert f'modelyard_serving_requests_total{{model="{name}",status="200",version="2"}}' in text
    assert f'modelyard_serving_loaded_version{{flavor="onnx",model="{name}"' in text
    assert "modelyard_serving_request_duration_seconds_bucket" in text
    assert f'modelyard_serving_errors_total{{code="INVALID_TENSOR",model="{name}"}}' in text
    assert "modelyard_serving_in_flight_requests" in text
    assert "modelyard_serving_swaps_total" in text and "modelyard_serving_load_failures" in text
    cache = served.workdir / "cache"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert any((cache / "sha256").glob("*/*"))  # the verified blobs stay for the next start


def test_pickle_only_versions_are_refused(live_server: str, tmp_path: Path) -> None:
    name = f"pickled-{uuid.uuid4().hex[:8]}"
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    with Registry(live_server, cache_dir=tmp_path / "c") as reg:
        reg.push(name, [tmp_path / "model.pkl"], framework="sklearn")
    result = CliRunner().invoke(
        app, ["serve", f"{name}/1", "-r", live_server, "--cache-dir", str(tmp_path / "s")]
    )
    assert result.exit_code == 1
    assert "UNSERVABLE_VERSION" in result.output and "does not unpickle" in result.output
    assert "modelyard version allow-pickle" in result.output  # the admin's way through
    assert not (tmp_path / "s" / "sha256").exists()  # refused before a byte was pulled


def test_a_declared_datatype_the_graph_lacks_is_refused_at_load(
    live_server: str, tmp_path: Path
) -> None:
    name = f"mistyped-{uuid.uuid4().hex[:8]}"
    signature = {"inputs": [{"name": "X", "datatype": "FP64", "shape": [-1, 4]}]}
    with Registry(live_server, cache_dir=tmp_path / "c") as reg:
        reg.push(name, [write_onnx(train(), tmp_path / "m.onnx")], signature=signature)
    result = CliRunner().invoke(
        app, ["serve", f"{name}/1", "-r", live_server, "--cache-dir", str(tmp_path / "s")]
    )
    assert result.exit_code == 1 and "UNSERVABLE_VERSION" in result.output
    assert "X is declared FP64 but the graph has FP32" in result.output


def test_unknown_references_fail_before_serving(live_server: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["serve", "no-such-model@production", "-r", live_server, "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 1 and "NOT_FOUND" in result.output
