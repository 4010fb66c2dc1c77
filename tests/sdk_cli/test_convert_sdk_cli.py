"""``modelyard convert`` (issue 14): scikit-learn to ONNX, dynamic
quantization, the agreement check and its refusal, in the SDK (remote and
embedded) and the CLI against a live server. Real models: scikit-learn
estimators saved with skops, converted by skl2onnx, run by onnxruntime."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPRegressor
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.convert import convert_version
from modelyard.convert.agreement import compare, sample_inputs
from modelyard.domain.errors import InvalidInput, NotFound
from modelyard.serving.tensors import Signature, TensorSpec, parse_signature

ADAM = "sklearn.neural_network._stochastic_optimizers.AdamOptimizer"
CLASSIFIER_SIG = {
    "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
    "outputs": [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]},
    ],
}
REGRESSOR_SIG = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "label", "datatype": "FP32", "shape": [-1]}],
}


@pytest.fixture(params=["remote", "embedded"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "remote":
        target: str | Path = request.getfixturevalue("live_server")
    else:
        target = tmp_path / "embedded"
    with Registry(target, cache_dir=tmp_path / "cache") as reg:
        yield reg


def _data() -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(7).standard_normal((300, 4))
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)


def _push_classifier(reg: Registry, tmp_path: Path, name: str) -> LogisticRegression:
    x, y = _data()
    est = LogisticRegression().fit(x, y)
    (tmp_path / name).mkdir()
    sio.dump(est, tmp_path / name / "model.skops")
    (tmp_path / "labels.json").write_text('{"0": "ok", "1": "fraud"}')
    reg.push(
        name,
        tmp_path / name,
        format="skops",
        framework="sklearn",
        signature=CLASSIFIER_SIG,
        metrics={"auc": 0.91},
    )
    reg.add_resources(f"{name}/1", {"labels.json": tmp_path / "labels.json"})
    return est


def _push_regressor(reg: Registry, tmp_path: Path, name: str) -> MLPRegressor:
    x, _ = _data()
    est = MLPRegressor(hidden_layer_sizes=(32,), max_iter=400, random_state=0)
    est.fit(x, 2 * x[:, 0] + 1)
    (tmp_path / name).mkdir()
    sio.dump(est, tmp_path / name / "model.skops")
    reg.push(name, tmp_path / name, format="skops", signature=REGRESSOR_SIG)
    return est


def _run_onnx(reg: Registry, ref: str, dest: Path, inputs: dict[str, Any]) -> list[Any]:
    import onnxruntime as ort

    reg.pull(ref, dest)
    session = ort.InferenceSession(str(dest / "model.onnx"), providers=["CPUExecutionProvider"])
    return list(session.run(None, inputs))


def test_sklearn_to_onnx_registers_a_variant(registry: Registry, tmp_path: Path) -> None:
    name = "cv" + uuid.uuid4().hex[:8]
    est = _push_classifier(registry, tmp_path, name)
    done = convert_version(registry, f"{name}@latest", to="onnx", metrics={"auc": 0.905})
    v = done.version
    assert v.ref == f"default/{name}-onnx/1"
    assert (v.format, v.framework) == ("onnx", "onnx")
    assert v.lineage["parent"] == f"default/{name}/2"  # the resource version, latest
    assert v.lineage["original"] == f"default/{name}/1"
    assert v.lineage["relation"] == "converted"
    recipe = v.lineage["recipe"]
    assert recipe["tool"] == "skl2onnx" and recipe["tool_version"]
    assert recipe["options"]["zipmap"] is False
    assert v.lineage["metric_delta"] == {"auc": pytest.approx(-0.005)}
    assert v.raw["signature"] == CLASSIFIER_SIG
    assert [r["name"] for r in v.resources] == ["labels.json"]  # carried over
    check = v.metadata["conversion"]
    assert check["max_deviation"] == done.agreement.max_deviation < 1e-6
    assert check["outputs"]["label"] == {"kind": "mismatch", "value": 0.0}
    assert check["tolerance"] == 1e-4 and check["sample"] == {"rows": 64, "seed": 0}
    # The registered file, run on its own, answers as the estimator does.
    x = np.random.default_rng(1).standard_normal((50, 4))
    label, proba = _run_onnx(registry, v.ref, tmp_path / "pulled", {"input": x})
    assert proba.dtype == np.float64
    np.testing.assert_array_equal(label, est.predict(x))
    np.testing.assert_allclose(proba, est.predict_proba(x), atol=1e-9)
    assert registry.variant(f"{name}/1", format="onnx").ref == v.ref


def test_quantize_records_deviation_and_refuses_beyond_tolerance(
    registry: Registry, tmp_path: Path
) -> None:
    name = "qz" + uuid.uuid4().hex[:8]
    est = _push_regressor(registry, tmp_path, name)
    with pytest.raises(InvalidInput) as err:  # skops' trust rule: the optimizer is not trusted
        convert_version(registry, f"{name}/1", to="onnx")
    assert ADAM in err.value.message
    onnx_v = convert_version(registry, f"{name}/1", to="onnx", trusted=[ADAM]).version
    assert onnx_v.raw["signature"] == REGRESSOR_SIG  # cast to FP32 and flattened to [-1]
    x = np.random.default_rng(2).standard_normal((20, 4)).astype(np.float32)
    (pred,) = _run_onnx(registry, onnx_v.ref, tmp_path / "o", {"x": x})
    assert pred.shape == (20,) and pred.dtype == np.float32
    np.testing.assert_allclose(pred, est.predict(x), atol=1e-4)

    with pytest.raises(InvalidInput) as err:
        convert_version(registry, onnx_v.ref, quantize="dynamic", tolerance=1e-7)
    assert err.value.code == "CONVERSION_MISMATCH"
    assert err.value.details["max_deviation"] > 1e-7
    with pytest.raises(NotFound):  # nothing registered
        registry.get_version(f"{name}-int8@latest")

    q = convert_version(registry, onnx_v.ref, quantize="dynamic", weight_type="uint8")
    v = q.version
    assert v.ref == f"default/{name}-int8/1"
    assert v.lineage["relation"] == "quantized"
    assert v.lineage["parent"] == onnx_v.ref and v.lineage["original"] == f"default/{name}/1"
    assert v.lineage["recipe"]["tool"] == "onnxruntime.quantization"
    assert v.lineage["recipe"]["options"] == {
        "mode": "dynamic",
        "weight_type": "uint8",
        "per_channel": False,
    }
    dev = v.metadata["conversion"]["max_deviation"]
    assert 0 < dev <= 0.1 and dev == q.agreement.max_deviation
    assert v.raw["signature"] == REGRESSOR_SIG
    fam = registry.family(v.ref)
    assert [m.version.ref for m in fam.members] == [
        f"default/{name}/1",
        onnx_v.ref,
        v.ref,
    ]


def test_refusals(registry: Registry, tmp_path: Path) -> None:
    name = "rf" + uuid.uuid4().hex[:8]
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04N.")
    registry.push(name, {"model.pkl": tmp_path / "model.pkl"}, format="pickle")
    with pytest.raises(InvalidInput) as err:
        convert_version(registry, f"{name}/1", to="onnx")
    assert err.value.code == "CONVERSION_UNSUPPORTED"
    with pytest.raises(InvalidInput) as err:
        convert_version(registry, f"{name}/1", to="onnx", quantize="dynamic")
    assert err.value.code == "INVALID_INPUT"
    with pytest.raises(InvalidInput) as err:
        convert_version(registry, f"{name}/1", to="tflite")
    assert err.value.code == "CONVERSION_UNSUPPORTED"
    _push_classifier(registry, tmp_path, name + "-sk")
    with pytest.raises(InvalidInput) as err:  # quantizing takes ONNX
        convert_version(registry, f"{name}-sk/1", quantize="dynamic")
    assert err.value.code == "CONVERSION_UNSUPPORTED"


def test_sample_is_built_from_the_signature() -> None:
    sig = parse_signature(
        {
            "inputs": [
                {"name": "img", "datatype": "FP32", "shape": [-1, 3, -1]},
                {"name": "ids", "datatype": "INT64", "shape": [2]},
                {"name": "mask", "datatype": "BOOL", "shape": [-1]},
            ]
        }
    )
    assert sig is not None
    s = sample_inputs(sig, rows=5, seed=3)
    assert s["img"].shape == (5, 3, 8) and s["img"].dtype == np.float32
    assert s["ids"].shape == (2,) and s["ids"].dtype == np.int64
    assert s["mask"].dtype == np.bool_
    np.testing.assert_array_equal(s["img"], sample_inputs(sig, rows=5, seed=3)["img"])


class _Fixed:
    def __init__(self, out: dict[str, np.ndarray]) -> None:
        self.out = out
        self.signature = Signature((TensorSpec("x", "FP32", (-1,)),), ())

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.out


def test_agreement_measures_floats_by_distance_and_labels_by_share() -> None:
    before = _Fixed({"p": np.array([0.5, 0.25]), "label": np.array([1, 0, 1, 1])})
    after = _Fixed({"p": np.array([0.5, 0.5]), "label": np.array([1, 1, 1, 1])})
    a = compare(before, after, {"x": np.zeros(4, dtype=np.float32)})
    assert a.max_deviation == 0.25 and a.max_mismatch == 0.25 and a.rows == 4
    nan = _Fixed({"p": np.array([np.nan, 0.25]), "label": np.array([1, 0, 1, 1])})
    assert compare(before, nan, {"x": np.zeros(4, dtype=np.float32)}).max_deviation == np.inf


def test_cli_convert_and_quantize(live_server: str, tmp_path: Path) -> None:
    name = "cc" + uuid.uuid4().hex[:8]
    with Registry(live_server, cache_dir=tmp_path / "cache") as reg:
        _push_regressor(reg, tmp_path, name)
    runner = CliRunner()
    base = ["-r", live_server, "--json"]
    res = runner.invoke(app, ["convert", f"{name}/1", "--to", "onnx", "--trust", ADAM, *base])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert body["version"]["ref"] == f"default/{name}-onnx/1" and body["max_deviation"] < 1e-4
    res = runner.invoke(
        app,
        ["convert", f"{name}-onnx/1", "--quantize", "dynamic", "--tolerance", "1e-9", *base],
    )
    assert res.exit_code == 1
    err = json.loads(res.stderr)["error"]
    assert err["code"] == "CONVERSION_MISMATCH" and "nothing was registered" in err["message"]
    np.savez(tmp_path / "sample.npz", x=np.ones((3, 4), dtype=np.float32))
    res = runner.invoke(
        app,
        [
            "convert",
            f"{name}-onnx/1",
            "--quantize",
            "dynamic",
            "--sample",
            str(tmp_path / "sample.npz"),
            "--name",
            f"{name}-q",
            "-r",
            live_server,
        ],
    )
    assert res.exit_code == 0, res.output
    assert f"registered default/{name}-q/1 (quantized from default/{name}-onnx/1" in res.stdout
    assert "on 3 rows" in res.stdout


def test_torch_export_to_onnx(registry: Registry, tmp_path: Path) -> None:
    """PyTorch to ONNX runs only where torch is installed (an optional extra)."""
    torch = pytest.importorskip("torch")
    name = "pt" + uuid.uuid4().hex[:8]
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    program = torch.export.export(model, (torch.zeros(2, 4),))
    torch.export.save(program, str(tmp_path / "model.pt2"))
    sig = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [2, 3]}],
    }
    registry.push(name, {"model.pt2": tmp_path / "model.pt2"}, format="pytorch", signature=sig)
    done = convert_version(registry, f"{name}/1", to="onnx")
    assert done.version.lineage["recipe"]["tool"] == "torch.onnx"
    assert done.agreement.max_deviation < 1e-5
