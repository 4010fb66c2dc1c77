"""ONNX models through onnxruntime (CPU)."""

from __future__ import annotations

import ctypes
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.serving.flavors import pick_file, unservable
from modelyard.serving.tensors import BF16 as BF16_TYPE
from modelyard.serving.tensors import Signature, TensorSpec, oip_datatype

NAME = "onnx"
SUFFIXES = (".onnx",)
REQUIREMENTS = ("numpy", "onnxruntime")
BF16 = True
"""Serves ``tensor(bfloat16)`` (OIP ``BF16``): see :meth:`OnnxPredictor.predict`."""
_ONNX_BFLOAT16 = 16  # onnx.TensorProto.BFLOAT16 (onnx itself is not a dependency)

# onnxruntime's element type names -> NumPy names (``tensor(float)`` ...).
_ORT_TYPES = {
    "float": "float32",
    "double": "float64",
    "float16": "float16",
    "bool": "bool",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "string": "object",  # BYTES: text elements
    "bfloat16": "bfloat16",  # BF16: uint16 bit patterns in the server
}


def _spec(arg: Any) -> TensorSpec:
    kind = str(arg.type)
    if not (kind.startswith("tensor(") and kind[7:-1] in _ORT_TYPES):
        raise unservable(
            f"ONNX tensor {arg.name!r} has type {kind}, which the inference protocol cannot "
            "carry (export classifiers without ZipMap, e.g. skl2onnx options={'zipmap': False})",
            tensor=arg.name,
        )
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorSpec(arg.name, oip_datatype(_ORT_TYPES[kind[7:-1]]), shape)


class OnnxPredictor:
    """An onnxruntime session and the signature requests are checked against."""

    def __init__(self, session: Any, signature: Signature) -> None:
        self._session = session
        self._run = session.run
        self.signature = signature
        self._output_names = [s.name for s in signature.outputs]
        self._bf16_inputs = {s.name for s in signature.inputs if s.datatype == BF16_TYPE}
        self._bf16_outputs = {s.name for s in signature.outputs if s.datatype == BF16_TYPE}
        self._bf16 = bool(self._bf16_inputs or self._bf16_outputs)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One ``session.run`` over the declared outputs."""
        if self._bf16:
            return self._predict_bf16(inputs)
        results = self._run(self._output_names, inputs)
        return dict(zip(self._output_names, results, strict=True))

    def _predict_bf16(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``predict`` of a graph with bfloat16 tensors: onnxruntime's Python
        API takes and gives them only as OrtValues (NumPy has no bfloat16),
        so BF16 inputs go in as OrtValues of their uint16 bits, and BF16
        outputs come back as those bits, copied out of the OrtValue."""
        import onnxruntime as ort

        feed = {}
        for name, arr in inputs.items():
            if name in self._bf16_inputs:
                bits = np.ascontiguousarray(arr, dtype=np.uint16)
                feed[name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, _ONNX_BFLOAT16)
            else:
                feed[name] = ort.OrtValue.ortvalue_from_numpy(arr)
        results = self._session.run_with_ort_values(self._output_names, feed)
        out: dict[str, np.ndarray] = {}
        for name, value in zip(self._output_names, results, strict=True):
            if name in self._bf16_outputs:
                shape = tuple(value.shape())
                n = prod(shape)
                bits = np.empty(n, dtype=np.uint16)
                if n:
                    ctypes.memmove(bits.ctypes.data, value.data_ptr(), 2 * n)
                out[name] = bits.reshape(shape)
            else:
                out[name] = value.numpy()
        return out


def load(files: dict[str, Path], signature: Signature | None, *, threads: int = 1) -> OnnxPredictor:
    """Open the version's one ``.onnx`` file in an onnxruntime session.

    The model's own inputs and outputs are the signature when the version has
    none; a declared signature must name tensors the graph has. ``threads``
    bounds onnxruntime's thread pool: one by default, because the server is
    meant to be pinned (small models lose more to thread hand-offs than they
    gain).
    """
    import onnxruntime as ort

    path = pick_file(files, SUFFIXES, NAME)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
        raise unservable(f"onnxruntime cannot load {path.name}: {exc}", file=path.name) from None
    own = Signature(
        tuple(_spec(a) for a in session.get_inputs()),
        tuple(_spec(a) for a in session.get_outputs()),
    )
    if signature is None:
        return OnnxPredictor(session, own)
    graph_in = {s.name for s in own.inputs}
    graph_out = {s.name for s in own.outputs}
    missing = [s.name for s in signature.inputs if s.name not in graph_in]
    missing += [s.name for s in signature.outputs if s.name not in graph_out]
    if missing or {s.name for s in signature.inputs} != graph_in:
        raise unservable(
            "the version's signature does not match its ONNX graph "
            f"(graph inputs {sorted(graph_in)}, outputs {sorted(graph_out)})",
            unknown=missing,
        )
    # A declared datatype the graph does not take or give would fail (or be
    # misread) at the first request: refuse at load, naming each tensor.
    graph = {s.name: s.datatype for s in (*own.inputs, *own.outputs)}
    differ = {
        s.name: (s.datatype, graph[s.name])
        for s in (*signature.inputs, *signature.outputs)
        if s.datatype != graph[s.name]
    }
    if differ:
        said = ", ".join(
            f"{n} is declared {d} but the graph has {g}" for n, (d, g) in differ.items()
        )
        raise unservable(
            f"the version's signature does not match its ONNX graph's datatypes: {said}; "
            "declare the graph's datatypes (or convert the graph)",
            datatypes={n: {"declared": d, "graph": g} for n, (d, g) in differ.items()},
        )
    outputs = signature.outputs or own.outputs
    return OnnxPredictor(session, Signature(signature.inputs, outputs))
