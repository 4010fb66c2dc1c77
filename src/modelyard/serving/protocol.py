"""Open Inference Protocol v2 inference bodies: decode requests, encode answers.

The request is JSON (``{"id", "parameters", "inputs": [...], "outputs": [...]}``),
optionally followed by raw tensor bytes: the binary tensor data extension
that tritonclient uses by default. Then the ``Inference-Header-Content-Length``
header says where the JSON ends, and each input with
``parameters.binary_data_size`` takes that many bytes, in order. Outputs are
sent the same way when asked for (``parameters.binary_data`` on an output, or
``binary_data_output`` on the request).

Everything here is on the hot path: numbers become arrays in one NumPy call
(no per-element Python), answers are serialized by orjson straight from the
arrays, and nothing is validated twice.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelyard.serving.tensors import (
    BF16,
    Signature,
    TensorSpec,
    bf16_from_float,
    bf16_to_float,
    element_count,
)

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY

# Which NumPy kinds a JSON array may arrive as for each target kind: numbers
# written without a fraction are fine for a float tensor, a fraction is not
# fine for an integer one (NumPy would silently truncate it).
_KINDS_FOR = {
    "f": frozenset("fiu"),
    "i": frozenset("iu"),
    "u": frozenset("iu"),
    "b": frozenset("b"),
}


class ProtocolError(Exception):
    """A request the server refuses; becomes ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, code: str = "INVALID_REQUEST", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


@dataclass(slots=True)
class InferRequest:
    """A decoded, checked inference request."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[tuple[TensorSpec, bool]]
    """The outputs to send, each with whether it goes as binary data."""


def _bad(message: str, code: str = "INVALID_TENSOR") -> ProtocolError:
    return ProtocolError(message, code)


def _shape(item: dict[str, Any], name: str) -> tuple[int, ...]:
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(
        type(d) is int and d >= 0
        for d in shape  # bool is an int subclass: excluded
    ):
        raise _bad(f"input {name!r}: shape must be a list of non-negative integers")
    return tuple(shape)


def _text_from_json(data: list[Any], spec: TensorSpec, shape: tuple[int, ...]) -> np.ndarray:
    flat: list[str] = []
    stack = [iter(data)]
    while stack:  # nested lists flattened in order, without recursion
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            if not isinstance(x, str):
                raise _bad(f"input {spec.name!r}: BYTES data holds text only")
            flat.append(x)
        else:
            stack.pop()
    n = element_count(shape)
    if len(flat) != n:
        raise _bad(
            f"input {spec.name!r}: data has {len(flat)} elements, shape {list(shape)} needs {n}"
        )
    arr = np.empty(n, dtype=object)
    arr[:] = flat
    return arr.reshape(shape)


def _text_from_bytes(
    chunk: bytes | memoryview, spec: TensorSpec, shape: tuple[int, ...]
) -> np.ndarray:
    """OIP's binary BYTES: each element a 4-byte little-endian length, then its bytes."""
    n = element_count(shape)
    raw = bytes(chunk)
    items: list[str] = []
    at = 0
    try:
        while at < len(raw) and len(items) < n:
            (size,) = struct.unpack_from("<I", raw, at)
            at += 4
            if at + size > len(raw):
                raise _bad(f"input {spec.name!r}: a BYTES element runs past the binary data")
            items.append(raw[at : at + size].decode())
            at += size
    except struct.error:
        raise _bad(f"input {spec.name!r}: BYTES element length cut short") from None
    except UnicodeDecodeError:
        raise _bad(f"input {spec.name!r}: BYTES elements here carry UTF-8 text") from None
    if len(items) != n or at != len(raw):
        raise _bad(
            f"input {spec.name!r}: binary BYTES data does not hold the {n} elements "
            f"of shape {list(shape)}"
        )
    arr = np.empty(n, dtype=object)
    arr[:] = items
    return arr.reshape(shape)


def _from_json(data: Any, spec: TensorSpec, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(data, list):
        raise _bad(f"input {spec.name!r}: data must be an array")
    if spec.datatype == "BYTES":
        return _text_from_json(data, spec, shape)
    try:
        arr = np.array(data)
    except (ValueError, TypeError):
        raise _bad(f"input {spec.name!r}: data is not a regular array of numbers") from None
    # BF16 arrives as numbers, like any float tensor, and becomes its bits.
    want = np.dtype(np.float32) if spec.datatype == BF16 else spec.dtype
    if arr.size and arr.dtype.kind not in _KINDS_FOR.get(want.kind, frozenset(want.kind)):
        raise _bad(
            f"input {spec.name!r}: data holds {arr.dtype.kind!r}-kind values, not {spec.datatype}"
        )
    n = element_count(shape)
    if arr.size != n:
        raise _bad(
            f"input {spec.name!r}: data has {arr.size} elements, shape {list(shape)} needs {n}"
        )
    if spec.datatype == BF16:
        return bf16_from_float(arr).reshape(shape)
    return arr.astype(want, copy=False).reshape(shape)


def _from_bytes(chunk: bytes | memoryview, spec: TensorSpec, shape: tuple[int, ...]) -> np.ndarray:
    if spec.datatype == "BYTES":
        return _text_from_bytes(chunk, spec, shape)
    need = element_count(shape) * spec.dtype.itemsize
    if len(chunk) != need:
        raise _bad(
            f"input {spec.name!r}: {len(chunk)} bytes of binary data, shape {list(shape)} "
            f"of {spec.datatype} needs {need}"
        )
    return np.frombuffer(chunk, dtype=spec.dtype).reshape(shape)


def decode_infer(body: bytes, header_length: int | None, signature: Signature) -> InferRequest:
    """Parse and check an inference request against ``signature``.

    Every input the signature declares must be present once, with its
    datatype and a shape it accepts, and with as many elements as that
    shape holds. Raises :class:`ProtocolError` (400) naming what is wrong.
    """
    if header_length is not None and not 0 <= header_length <= len(body):
        raise ProtocolError("Inference-Header-Content-Length exceeds the body", "INVALID_REQUEST")
    head = body if header_length is None else body[:header_length]
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"the request body is not JSON: {exc}", "INVALID_JSON") from None
    if not isinstance(doc, dict):
        raise ProtocolError("the request body must be a JSON object", "INVALID_REQUEST")
    items = doc.get("inputs")
    if not isinstance(items, list) or not items:
        raise ProtocolError("the request needs a non-empty 'inputs' array", "INVALID_REQUEST")
    specs = {s.name: s for s in signature.inputs}
    binary = memoryview(body)[header_length:] if header_length is not None else None
    offset = 0
    inputs: dict[str, np.ndarray] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _bad("each input is an object with a name, datatype, shape and data")
        name = item["name"]
        spec = specs.get(name)
        if spec is None:
            raise _bad(f"unknown input {name!r} (expected: {', '.join(specs)})")
        if name in inputs:
            raise _bad(f"input {name!r} is given twice")
        if item.get("datatype") != spec.datatype:
            raise _bad(
                f"input {name!r}: datatype {item.get('datatype')!r}, expected {spec.datatype}"
            )
        shape = _shape(item, name)
        if not spec.accepts(shape):
            raise _bad(
                f"input {name!r}: shape {list(shape)} does not match {list(spec.shape)} "
                "(-1: any size)"
            )
        params = item.get("parameters")
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if binary is None or type(size) is not int or size < 0:
                raise _bad(f"input {name!r}: binary_data_size without binary data")
            inputs[name] = _from_bytes(binary[offset : offset + size], spec, shape)
            offset += size
        else:
            inputs[name] = _from_json(item.get("data"), spec, shape)
    if binary is not None and offset != len(binary):
        raise ProtocolError("binary data does not add up to the inputs' binary_data_size")
    if len(inputs) != len(specs):
        missing = [n for n in specs if n not in inputs]
        raise _bad(f"missing input(s): {', '.join(missing)}")
    params = doc.get("parameters")
    binary_default = isinstance(params, dict) and params.get("binary_data_output") is True
    return InferRequest(
        _request_id(doc.get("id")), inputs, _outputs(doc.get("outputs"), signature, binary_default)
    )


def _request_id(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ProtocolError("'id' must be a string", "INVALID_REQUEST")


def _outputs(
    asked: Any, signature: Signature, binary_default: bool
) -> list[tuple[TensorSpec, bool]]:
    if asked is None:
        return [(s, binary_default) for s in signature.outputs]
    if not isinstance(asked, list):
        raise ProtocolError("'outputs' must be an array", "INVALID_REQUEST")
    specs = {s.name: s for s in signature.outputs}
    chosen = []
    for item in asked:
        name = item.get("name") if isinstance(item, dict) else None
        spec = specs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise ProtocolError(
                f"unknown output {name!r} (expected: {', '.join(specs)})", "INVALID_TENSOR"
            )
        params = item.get("parameters")
        flag = params.get("binary_data") if isinstance(params, dict) else None
        chosen.append((spec, binary_default if flag is None else flag is True))
    return chosen


def encode_infer(
    model: str,
    version: str,
    request: InferRequest,
    results: dict[str, np.ndarray],
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary data follows it."""
    outputs = []
    blobs: list[bytes] = []
    for spec, as_binary in request.outputs:
        arr = np.ascontiguousarray(results[spec.name], dtype=spec.dtype)
        out: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype, "shape": arr.shape}
        if spec.datatype == "BYTES":
            texts = [x.decode() if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)]
            if as_binary:
                raw = b"".join(struct.pack("<I", len(b)) + b for b in (t.encode() for t in texts))
                out["parameters"] = {"binary_data_size": len(raw)}
                blobs.append(raw)
            else:
                out["data"] = texts
        elif as_binary:
            raw = arr.tobytes()
            out["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif spec.datatype == BF16:
            out["data"] = bf16_to_float(arr.reshape(-1))  # exact as float32
        else:
            # orjson writes NumPy arrays natively, except half floats.
            out["data"] = arr.reshape(-1) if arr.dtype != np.float16 else arr.reshape(-1).tolist()
        outputs.append(out)
    doc: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if request.id is not None:
        doc["id"] = request.id
    head = orjson.dumps(doc, option=JSON_OPTIONS)
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)


def error_body(message: str, code: str) -> bytes:
    """OIP's error shape ``{"error": message}``, with modelyard's stable ``code`` beside it."""
    return orjson.dumps({"error": message, "code": code})
