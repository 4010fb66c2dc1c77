"""BF16 tensors over OIP v2 (issue 12): the bfloat16 conversions, the protocol
in JSON and binary data, an ONNX graph with ``tensor(bfloat16)`` served by a
real process and called with tritonclient (which sends BF16 as binary data
from float32 and reads it back as float32), and the refusal of BF16 by a
flavor that cannot take it."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelyard.client import Registry
from modelyard.domain.errors import InvalidInput
from modelyard.serving.flavors import skops as skops_flavor
from modelyard.serving.loader import check_bf16
from modelyard.serving.protocol import ProtocolError, decode_infer, encode_infer
from modelyard.serving.tensors import (
    Signature,
    TensorSpec,
    bf16_from_float,
    bf16_to_float,
    oip_datatype,
    parse_signature,
)
from tests.conftest_server import stop_server
from tests.serving.servers import start_serving

SIG = Signature((TensorSpec("X", "BF16", (-1, 4)),), (TensorSpec("Y", "BF16", (-1, 4)),))


def test_bf16_conversions_round_to_nearest_even() -> None:
    exact = np.array([0.0, -0.0, 1.0, -3.25, 1.5, 1000.0, np.inf, -np.inf], dtype=np.float32)
    assert np.array_equal(bf16_to_float(bf16_from_float(exact)), exact)
    assert bf16_from_float(np.float32(1.0)).item() == 0x3F80
    # 1 + 2**-8 lies halfway between 1 and 1 + 2**-7: ties go to the even (1.0);
    # just above the half goes up.
    assert bf16_from_float(np.float32(1 + 2**-8)).item() == 0x3F80
    assert bf16_from_float(np.float32(1 + 2**-8 + 2**-20)).item() == 0x3F81
    assert bf16_from_float(np.float32(1 + 3 * 2**-8)).item() == 0x3F82  # tie, odd: up
    nan = bf16_from_float(np.array([np.nan, -np.nan], dtype=np.float32))
    assert np.isnan(bf16_to_float(nan)).all()
    assert bf16_to_float(bf16_from_float(np.float32(3.4e38))).item() == np.inf  # beyond bf16
    assert oip_datatype("bfloat16") == oip_datatype("BF16") == "BF16"
    sig = parse_signature({"inputs": [{"name": "x", "datatype": "bf16", "shape": [-1]}]})
    assert sig is not None and sig.inputs[0].datatype == "BF16"


def test_bf16_in_json_and_binary_data() -> None:
    import orjson

    body = orjson.dumps(
        {"inputs": [{"name": "X", "datatype": "BF16", "shape": [1, 4], "data": [1, 2.5, -3, 4]}]}
    )
    request = decode_infer(body, None, SIG)
    assert request.inputs["X"].dtype == np.uint16
    assert bf16_to_float(request.inputs["X"]).tolist() == [[1.0, 2.5, -3.0, 4.0]]
    answer, length = encode_infer("m", "1", request, {"Y": request.inputs["X"]})
    assert length is None
    assert orjson.loads(answer)["outputs"][0] == {
        "name": "Y",
        "datatype": "BF16",
        "shape": [1, 4],
        "data": [1.0, 2.5, -3.0, 4.0],
    }
    # Binary: 2 little-endian bytes per element, both ways.
    bits = bf16_from_float(np.array([[0.5, 1, 2, 4]], dtype=np.float32))
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "X",
                    "datatype": "BF16",
                    "shape": [1, 4],
                    "parameters": {"binary_data_size": 8},
                }
            ],
            "outputs": [{"name": "Y", "parameters": {"binary_data": True}}],
        }
    )
    request = decode_infer(head + bits.astype("<u2").tobytes(), len(head), SIG)
    assert np.array_equal(request.inputs["X"], bits)
    answer, length = encode_infer("m", "1", request, {"Y": bits})
    assert length is not None and answer[length:] == bits.astype("<u2").tobytes()
    for bad in (b"\x00" * 6, b"\x00" * 10):  # 3 or 5 elements' worth, not 4
        short = head.replace(b":8}", f":{len(bad)}}}".encode())
        with pytest.raises(ProtocolError) as refused:
            decode_infer(short + bad, len(short), SIG)
        assert "needs 8" in refused.value.message
    text = orjson.dumps(
        {"inputs": [{"name": "X", "datatype": "BF16", "shape": [1, 1], "data": ["a"]}]}
    )
    with pytest.raises(ProtocolError) as refused:
        decode_infer(text, None, SIG)
    assert refused.value.status == 400


def test_a_flavor_without_bf16_refuses_it_clearly() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_bf16(skops_flavor, SIG)
    assert refused.value.code == "UNSERVABLE_VERSION"
    assert "BF16" in refused.value.message and "ONNX" in refused.value.message
    check_bf16(skops_flavor, Signature((TensorSpec("X", "FP32", (-1, 4)),), ()))


def _bf16_graph(path: Path) -> Path:
    """Y = 2 * X in bfloat16 (through float32), and Z = the float32 product."""
    from onnx import TensorProto, helper

    bf16, f32 = TensorProto.BFLOAT16, TensorProto.FLOAT
    two = helper.make_tensor("two", f32, [], [2.0])
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["X"], ["Xf"], to=f32),
            helper.make_node("Mul", ["Xf", "two"], ["Z"]),
            helper.make_node("Cast", ["Z"], ["Y"], to=bf16),
        ],
        "double",
        [helper.make_tensor_value_info("X", bf16, [None, 4])],
        [
            helper.make_tensor_value_info("Y", bf16, [None, 4]),
            helper.make_tensor_value_info("Z", f32, [None, 4]),
        ],
        initializer=[two],
    )
    # IR 9: what this onnxruntime reads (the installed onnx writes a newer one).
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    path.write_bytes(model.SerializeToString())
    return path


def test_an_onnx_bf16_model_serves_tritonclient(live_server: str, tmp_path: Path) -> None:
    import tritonclient.http as httpclient

    name = f"bf16-{uuid.uuid4().hex[:8]}"
    with Registry(live_server, cache_dir=tmp_path / "sdk") as reg:
        reg.push(name, [_bf16_graph(tmp_path / "double.onnx")], format="onnx")
    proc, url = start_serving(live_server, [f"{name}/1"], tmp_path / "serve")
    try:
        x = np.array([[1.0, -2.5, 0.375, 100.0], [3.0, 0.0, -1.0, 7.0]], dtype=np.float32)
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        try:
            meta = client.get_model_metadata(name)
            assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [("X", "BF16")]
            assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {
                "Y": "BF16",
                "Z": "FP32",
            }
            inp = httpclient.InferInput("X", list(x.shape), "BF16")
            inp.set_data_from_numpy(x, binary_data=True)  # tritonclient: binary only
            for binary in (True, False):
                outs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in "YZ"]
                result = client.infer(name, [inp], outputs=outs)
                assert np.array_equal(np.asarray(result.as_numpy("Y"), np.float32), 2 * x)
                assert np.array_equal(result.as_numpy("Z"), 2 * x)
        finally:
            client.close()
        # JSON numbers are taken too (rounded to the nearest bfloat16).
        body = {"inputs": [{"name": "X", "datatype": "BF16", "shape": [1, 4], "data": [1.01] * 4}]}
        got = httpx.post(f"{url}/v2/models/{name}/infer", json=body).json()
        assert {o["name"]: o["data"] for o in got["outputs"]}["Y"] == [2.015625] * 4
        wrong = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [1] * 4}]}
        refused = httpx.post(f"{url}/v2/models/{name}/infer", json=wrong)
        assert refused.status_code == 400 and "expected BF16" in refused.json()["error"]
    finally:
        stop_server(proc)
