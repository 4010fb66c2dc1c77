"""The serving layer's parts in-process: signatures, request decoding and
encoding, flavor choice, flavors loading real files."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from modelyard.domain.errors import InvalidInput
from modelyard.serving.app import InferenceApp
from modelyard.serving.flavors import choose_flavor
from modelyard.serving.flavors import onnx as onnx_flavor
from modelyard.serving.flavors import skops as skops_flavor
from modelyard.serving.loader import LoadedVersion
from modelyard.serving.metrics import ServingMetrics
from modelyard.serving.protocol import ProtocolError, decode_infer, encode_infer
from modelyard.serving.table import ModelTable
from modelyard.serving.tensors import Signature, TensorSpec, parse_signature
from tests.serving.models import onnx_predict, train, write_onnx, write_skops


def doubled(x: np.ndarray) -> np.ndarray:
    """A function of ours: skops must not trust a file that calls it."""
    return x * 2


SIG = Signature(
    (TensorSpec("x", "FP32", (-1, 2)), TensorSpec("flag", "BOOL", (-1,))),
    (TensorSpec("y", "FP16", (-1,)), TensorSpec("n", "INT64", (-1,))),
)


def _json(inputs: list[dict[str, object]], **extra: object) -> bytes:
    return orjson.dumps({"inputs": inputs, **extra})


X = {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2.5, 3, 4]}
FLAG = {"name": "flag", "datatype": "BOOL", "shape": [2], "data": [True, False]}


def test_json_inputs_become_arrays_of_the_declared_dtype() -> None:
    req = decode_infer(_json([X, FLAG], id="a"), None, SIG)
    assert req.id == "a"
    assert req.inputs["x"].dtype == np.float32 and req.inputs["x"].shape == (2, 2)
    assert req.inputs["flag"].tolist() == [True, False]
    assert [(s.name, binary) for s, binary in req.outputs] == [("y", False), ("n", False)]


def test_binary_inputs_and_outputs() -> None:
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    flag = np.array([True, True])
    head = _json(
        [
            {**X, "data": None, "parameters": {"binary_data_size": x.nbytes}},
            {**FLAG, "data": None, "parameters": {"binary_data_size": flag.nbytes}},
        ],
        outputs=[{"name": "n", "parameters": {"binary_data": True}}, {"name": "y"}],
    )
    req = decode_infer(head + x.tobytes() + flag.tobytes(), len(head), SIG)
    np.testing.assert_array_equal(req.inputs["x"], x)
    results = {"y": np.array([0.5, 1.5]), "n": np.array([7, 8])}
    body, json_length = encode_infer("m", "3", req, results)
    assert json_length is not None
    doc = orjson.loads(body[:json_length])
    n, y = doc["outputs"]
    assert n["parameters"] == {"binary_data_size": 16} and "data" not in n
    assert np.frombuffer(body[json_length:], dtype=np.int64).tolist() == [7, 8]
    assert y == {"name": "y", "datatype": "FP16", "shape": [2], "data": [0.5, 1.5]}
    assert doc["model_name"] == "m" and doc["model_version"] == "3"


@pytest.mark.parametrize(
    ("body", "header", "words"),
    [
        (_json([X]), None, "missing input(s): flag"),
        (_json([X, X, FLAG]), None, "input 'x' is given twice"),
        (_json([X, {**FLAG, "data": [1, 0]}]), None, "not BOOL"),
        (_json([X, FLAG], id=3), None, "'id' must be a string"),
        (_json([X, FLAG], outputs=[{"name": "z"}]), None, "unknown output 'z'"),
        (_json([X, FLAG]), 10_000, "exceeds the body"),
        (_json([{**X, "parameters": {"binary_data_size": 16}}, FLAG]), None, "without binary"),
    ],
)
def test_requests_refused_with_the_reason(body: bytes, header: int | None, words: str) -> None:
    with pytest.raises(ProtocolError, match=words.replace("(", r"\(").replace(")", r"\)")):
        decode_infer(body, header, SIG)


def test_binary_sizes_must_add_up() -> None:
    head = _json([{**X, "parameters": {"binary_data_size": 16}}, FLAG])
    with pytest.raises(ProtocolError, match="8 bytes of binary data, shape"):
        decode_infer(head + b"\0" * 8, len(head), SIG)
    with pytest.raises(ProtocolError, match="does not add up"):
        decode_infer(head + b"\0" * 20, len(head), SIG)


def test_integers_fit_a_float_tensor_but_fractions_not_an_integer_one() -> None:
    sig = Signature((TensorSpec("i", "INT64", (-1,)),), ())
    ints = {"name": "i", "datatype": "INT64", "shape": [2], "data": [1, 2]}
    assert decode_infer(_json([ints]), None, sig).inputs["i"].tolist() == [1, 2]
    with pytest.raises(ProtocolError, match="not INT64"):
        decode_infer(_json([{**ints, "data": [1.5, 2]}]), None, sig)


def test_signatures_parse_or_say_why_not() -> None:
    sig = parse_signature({"inputs": [{"name": "a", "dtype": "float32", "shape": [-1, 3]}]})
    assert sig is not None and sig.inputs[0].datatype == "FP32"
    assert parse_signature(None) is None and parse_signature({}) is None
    for bad in (
        {"inputs": [{"name": "a", "datatype": "STRING", "shape": [1]}]},
        {"inputs": [{"name": "a", "datatype": "FP32", "shape": "1x3"}]},
        {"inputs": "a"},
        {"outputs": []},
        {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1]}] * 2},
    ):
        with pytest.raises(InvalidInput) as err:
            parse_signature(bad)
        assert err.value.code == "INVALID_SIGNATURE"


@pytest.mark.parametrize(
    ("fmt", "paths", "expected"),
    [
        ("onnx", ["model.bin"], "onnx"),
        (None, ["README.md", "m.onnx"], "onnx"),
        (None, ["m.skops", "m.pkl"], "skops"),
        ("SKOPS", ["m.skops"], "skops"),
    ],
)
def test_flavor_by_format_then_suffix(fmt: str | None, paths: list[str], expected: str) -> None:
    assert expected == choose_flavor(fmt, paths).NAME


@pytest.mark.parametrize(
    ("fmt", "paths"), [(None, ["model.pkl", "meta.json"]), ("joblib", ["m.joblib"])]
)
def test_pickles_take_the_pickle_flavor_only_when_granted(
    fmt: str | None, paths: list[str]
) -> None:
    with pytest.raises(InvalidInput, match="allow-pickle"):
        choose_flavor(fmt, paths, frozenset({"custom_code"}))
    assert choose_flavor(fmt, paths, frozenset({"pickle"})).NAME == "pickle"
    # The grant is for pickles only: other versions keep their own flavor.
    assert choose_flavor(None, ["m.skops", "m.pkl"], frozenset({"pickle"})).NAME == "skops"


@pytest.mark.parametrize(
    ("fmt", "paths", "words"),
    [
        (None, ["model.pkl", "meta.json"], "only pickle files"),
        ("joblib", ["model.skops"], "is a pickle"),
        ("tflite", ["m.tflite"], "no flavor serves format 'tflite'"),
        (None, ["notes.txt"], "no flavor recognizes"),
    ],
)
def test_unservable_versions_are_refused(fmt: str | None, paths: list[str], words: str) -> None:
    with pytest.raises(InvalidInput, match=words) as err:
        choose_flavor(fmt, paths)
    assert err.value.code == "UNSERVABLE_VERSION"


def test_onnx_flavor_reads_its_signature_from_the_graph(tmp_path: Path) -> None:
    trained = train()
    path = write_onnx(trained, tmp_path / "m.onnx")
    predictor = onnx_flavor.load({"m.onnx": path}, None)
    assert [s.to_wire() for s in predictor.signature.inputs] == [
        {"name": "X", "datatype": "FP32", "shape": [-1, 4]}
    ]
    got = predictor.predict({"X": trained.rows})
    np.testing.assert_array_equal(got["label"], onnx_predict(path, trained.rows)["label"])
    wrong = Signature((TensorSpec("input", "FP32", (-1, 4)),), ())
    with pytest.raises(InvalidInput, match="does not match its ONNX graph"):
        onnx_flavor.load({"m.onnx": path}, wrong)
    with pytest.raises(InvalidInput, match=r"exactly one \.onnx file"):
        onnx_flavor.load({"a.onnx": path, "b.onnx": path}, None)


def test_onnx_flavor_refuses_declared_datatypes_the_graph_does_not_have(tmp_path: Path) -> None:
    path = write_onnx(train(), tmp_path / "m.onnx")
    declared = Signature(
        (TensorSpec("X", "FP64", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),)
    )
    with pytest.raises(InvalidInput, match="X is declared FP64 but the graph has FP32") as err:
        onnx_flavor.load({"m.onnx": path}, declared)
    assert err.value.code == "UNSERVABLE_VERSION"
    assert err.value.details["datatypes"] == {"X": {"declared": "FP64", "graph": "FP32"}}
    wrong_out = Signature(
        (TensorSpec("X", "FP32", (-1, 4)),), (TensorSpec("probabilities", "FP64", (-1, 3)),)
    )
    with pytest.raises(InvalidInput, match="probabilities is declared FP64 but the graph has FP32"):
        onnx_flavor.load({"m.onnx": path}, wrong_out)
    right = Signature((TensorSpec("X", "FP32", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),))
    assert onnx_flavor.load({"m.onnx": path}, right).signature == right


def test_skops_flavor_refuses_untrusted_types(tmp_path: Path) -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    trained = train()
    ok = write_skops(trained, tmp_path / "m.skops")
    predictor = skops_flavor.load({"m.skops": ok}, None)
    rows = trained.rows.astype(np.float64)
    assert predictor.predict({"input": rows})["label"].tolist() == (
        trained.estimator.predict(rows).tolist()
    )
    # A function the file names would be imported and called: not trusted.
    pipe = make_pipeline(FunctionTransformer(doubled), trained.estimator)
    import skops.io as sio

    sio.dump(pipe, tmp_path / "p.skops")
    with pytest.raises(InvalidInput, match="does not trust") as err:
        skops_flavor.load({"p.skops": tmp_path / "p.skops"}, None)
    assert "doubled" in str(err.value.details)


class _Recorder:
    """A stand-in model that notes which thread called it."""

    def __init__(self) -> None:
        self.signature = Signature(
            (TensorSpec("x", "FP32", (-1,)),), (TensorSpec("y", "FP32", (-1,)),)
        )
        self.threads: list[int] = []

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.threads.append(threading.get_ident())
        return {"y": inputs["x"] * 2}


@pytest.mark.parametrize("offload", [False, True])
def test_slow_models_infer_off_the_event_loop(offload: bool) -> None:
    table = ModelTable(ServingMetrics())
    model = _Recorder()
    table.add(
        "m/1", LoadedVersion("default/m/1", "default", "m", 1, "test", model, offload=offload)
    )
    app = InferenceApp(table)

    async def call() -> tuple[int, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}
            return threading.get_ident(), await client.post("/v2/models/m/infer", json=body)

    loop_thread, answer = asyncio.run(call())
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [2.0, 4.0]
    assert (model.threads[0] != loop_thread) is offload


TEXT_SIG = Signature(
    (TensorSpec("words", "BYTES", (-1, 2)),), (TensorSpec("label", "BYTES", (-1,)),)
)


def _oip_bytes(items: list[bytes]) -> bytes:
    """OIP's binary BYTES layout: 4-byte little-endian length, then the bytes."""
    return b"".join(len(b).to_bytes(4, "little") + b for b in items)


def test_bytes_tensors_in_json_and_binary() -> None:
    words = {"name": "words", "datatype": "BYTES", "shape": [2, 2], "data": [["a", "b"], ["ç", ""]]}
    req = decode_infer(_json([words]), None, TEXT_SIG)
    assert req.inputs["words"].tolist() == [["a", "b"], ["ç", ""]]
    raw = _oip_bytes([b"a", b"b", "ç".encode(), b""])
    head = _json([{**words, "data": None, "parameters": {"binary_data_size": len(raw)}}])
    req = decode_infer(head + raw, len(head), TEXT_SIG)
    assert req.inputs["words"].tolist() == [["a", "b"], ["ç", ""]]
    # Answers: text in JSON, length-prefixed in binary.
    labels = np.array(["setosa", "virginica"])
    body, n = encode_infer("m", "1", req, {"label": labels})
    assert n is None and orjson.loads(body)["outputs"][0]["data"] == ["setosa", "virginica"]
    req.outputs = [(TEXT_SIG.outputs[0], True)]
    body, n = encode_infer("m", "1", req, {"label": labels})
    assert n is not None and body[n:] == _oip_bytes([b"setosa", b"virginica"])


@pytest.mark.parametrize(
    ("data", "binary", "fragment"),
    [
        ([["a", 1], ["b", "c"]], None, "text only"),
        (["a", "b", "c"], None, "needs 4"),
        (None, _oip_bytes([b"a", b"b", b"c"]), "does not hold"),
        (None, _oip_bytes([b"a", b"b", b"c", b"\xff"]), "UTF-8"),
        (None, _oip_bytes([b"a", b"b", b"c", b"dd"])[:-1], "runs past"),
        (None, _oip_bytes([b"a", b"b", b"c"]) + b"\0\0", "cut short"),
        (None, _oip_bytes([b"a", b"b", b"c", b"d"]) + b"\0\0", "does not hold"),
    ],
)
def test_bad_bytes_tensors(data: object, binary: bytes | None, fragment: str) -> None:
    item: dict[str, object] = {"name": "words", "datatype": "BYTES", "shape": [2, 2]}
    if binary is None:
        body, n = _json([{**item, "data": data}]), None
    else:
        head = _json([{**item, "parameters": {"binary_data_size": len(binary)}}])
        body, n = head + binary, len(head)
    with pytest.raises(ProtocolError) as bad:
        decode_infer(body, n, TEXT_SIG)
    assert bad.value.status == 400 and fragment in bad.value.message


def test_skops_classifiers_with_text_labels_answer_bytes(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    trained = train(0)
    names = np.array(["setosa", "versicolor", "virginica"])
    x = trained.rows.astype(np.float64)
    est = LogisticRegression(max_iter=500).fit(
        np.repeat(x, 3, axis=0), np.tile(names, len(x))[: len(x) * 3]
    )
    path = tmp_path / "text.skops"
    import skops.io as sio

    sio.dump(est, path)
    predictor = skops_flavor.load({"text.skops": path}, None)
    assert [(s.name, s.datatype) for s in predictor.signature.outputs] == [
        ("label", "BYTES"),
        ("probabilities", "FP64"),
    ]
    out = predictor.predict({"input": x})
    assert set(out["label"].tolist()) <= set(names.tolist())
    body, _ = encode_infer(
        "m",
        "1",
        decode_infer(
            _json(
                [
                    {
                        "name": "input",
                        "datatype": "FP64",
                        "shape": list(x.shape),
                        "data": x.ravel().tolist(),
                    }
                ]
            ),
            None,
            predictor.signature,
        ),
        out,
    )
    assert orjson.loads(body)["outputs"][0]["data"] == est.predict(x).tolist()


def test_the_heap_is_frozen_after_loading_and_settled_again_after_a_swap() -> None:
    """``heap.settle`` keeps the collector from walking what loading left;
    ``heap.resettle`` (after a swap) still collects a dropped version's cycles."""
    import gc
    import weakref

    from modelyard.serving import heap

    class Node:
        me: object = None

    node = Node()
    node.me = node  # a cycle: only the cyclic collector can free it
    ref = weakref.ref(node)
    try:
        heap.settle()
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        # Booleans only: an assert holding ref()'s object would keep it alive.
        frozen_alive = ref() is not None
        assert frozen_alive  # frozen: never walked
        heap.resettle()
        freed = ref() is None
        assert freed and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
