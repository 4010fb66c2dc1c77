"""Tensors as the Open Inference Protocol v2 names them, and a version's signature.

A signature, as stored on a version, is an object with ``inputs`` and
``outputs`` lists; each entry names one tensor::

    {"inputs":  [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}],
     "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}]}

``datatype`` is an OIP name (``FP32``, ``INT64``, ``BOOL``, ...); a NumPy
name (``float32``) is accepted as well (``dtype`` or ``type`` for the key).
``-1`` in a shape is a dimension of any size. A version without a signature
takes the one its flavor reads from the model itself (an ONNX graph's inputs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np

from modelyard.domain.errors import InvalidInput

# OIP datatype -> NumPy dtype. BYTES is an object array whose elements are
# Python ``str`` (UTF-8 text: labels, categories, tokens; what ONNX string
# tensors and scikit-learn's string classes are). BF16 (below) is apart:
# NumPy has no bfloat16, so its tensors travel as their uint16 bit patterns.
OIP_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
NUMPY_TO_OIP: dict[np.dtype[Any], str] = {v: k for k, v in OIP_TO_NUMPY.items()}

BF16 = "BF16"
"""bfloat16: the top 16 bits of a float32 (its sign, exponent and 7 fraction
bits). Requests and answers carry it as numbers in JSON or 2 little-endian
bytes per element in binary data; inside the server a BF16 tensor is a
``uint16`` array of those bits (what onnxruntime takes for ``tensor(bfloat16)``)."""
BF16_BITS: np.dtype[Any] = np.dtype(np.uint16)
DATATYPES = (*OIP_TO_NUMPY, BF16)


def bf16_from_float(values: Any) -> np.ndarray:
    """bfloat16 bit patterns of ``values`` (as float32), rounded to the nearest
    even (what a float32 to bfloat16 conversion does; tritonclient truncates
    instead, which only differs in the last bit). NaN stays a quiet NaN."""
    f = np.ascontiguousarray(values, dtype=np.float32)
    bits = f.view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    nan = np.isnan(f)
    if nan.any():  # rounding could carry a NaN's fraction into the exponent
        rounded[nan] = ((bits[nan] >> 16) | np.uint32(0x0040)).astype(np.uint16)
    return rounded


def bf16_to_float(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (exact: every bfloat16 is a float32)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def oip_of_numpy(dtype: np.dtype[Any]) -> str | None:
    """The OIP datatype of arrays of ``dtype`` (text of any width is BYTES), or None."""
    if dtype.kind in "US":
        return "BYTES"
    return NUMPY_TO_OIP.get(dtype)


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One named tensor: OIP datatype and shape (``-1``: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype[Any]:
        """The NumPy dtype of this tensor's elements (``uint16`` bits for BF16)."""
        return OIP_TO_NUMPY.get(self.datatype, BF16_BITS)

    def accepts(self, shape: tuple[int, ...]) -> bool:
        """True if a tensor of ``shape`` fits this spec."""
        if len(shape) != len(self.shape):
            return False
        return all(want < 0 or want == got for want, got in zip(self.shape, shape, strict=True))

    def example_shape(self) -> tuple[int, ...]:
        """A concrete shape for a warm-up request: variable dimensions are 1."""
        return tuple(1 if d < 0 else d for d in self.shape)

    def to_wire(self) -> dict[str, Any]:
        """The OIP metadata form ``{"name", "datatype", "shape"}``."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True, slots=True)
class Signature:
    """The inputs and outputs a served version declares."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def example_inputs(self) -> dict[str, np.ndarray]:
        """Zero-filled inputs of every declared input (empty text for BYTES),
        for a warm-up call."""
        return {
            s.name: np.full(s.example_shape(), "", dtype=object)
            if s.datatype == "BYTES"
            else np.zeros(s.example_shape(), dtype=s.dtype)
            for s in self.inputs
        }


def oip_datatype(value: Any) -> str:
    """An OIP datatype name for ``value`` (an OIP or NumPy name, or ``bfloat16``);
    INVALID_SIGNATURE if none."""
    if isinstance(value, str):
        if value.upper() in DATATYPES:
            return value.upper()
        if value.lower() == "bfloat16":
            return BF16
        try:
            found = NUMPY_TO_OIP.get(np.dtype(value))
        except TypeError:
            found = None
        if found is not None:
            return found
    raise InvalidInput(
        f"unsupported tensor datatype {value!r} (one of {', '.join(DATATYPES)})",
        code="INVALID_SIGNATURE",
        details={"datatype": str(value)},
    )


def _spec(entry: Any, part: str) -> TensorSpec:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise InvalidInput(
            f"each signature.{part} entry is an object with a name, datatype and shape",
            code="INVALID_SIGNATURE",
            details={"entry": entry if isinstance(entry, str | int | float) else str(entry)},
        )
    kind = entry.get("datatype", entry.get("dtype", entry.get("type")))
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
    ):
        raise InvalidInput(
            f"signature.{part} {entry['name']!r}: shape must be a list of sizes (-1: any)",
            code="INVALID_SIGNATURE",
            details={"name": entry["name"]},
        )
    return TensorSpec(entry["name"], oip_datatype(kind), tuple(shape))


def _specs(items: Any, part: str) -> tuple[TensorSpec, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise InvalidInput(f"signature.{part} must be a list of tensors", code="INVALID_SIGNATURE")
    specs = tuple(_spec(e, part) for e in items)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InvalidInput(f"signature.{part} names a tensor twice", code="INVALID_SIGNATURE")
    return specs


def parse_signature(raw: Mapping[str, Any] | None) -> Signature | None:
    """A version's stored signature as a :class:`Signature`; None when it has none.

    A signature that is present but not in the tensor form above is refused
    (``INVALID_SIGNATURE``): serving it would check requests against nothing.
    """
    if not raw:
        return None
    sig = Signature(_specs(raw.get("inputs"), "inputs"), _specs(raw.get("outputs"), "outputs"))
    if not sig.inputs:
        raise InvalidInput("the signature declares no inputs", code="INVALID_SIGNATURE")
    return sig


def element_count(shape: Iterable[int]) -> int:
    """How many elements a tensor of ``shape`` holds."""
    return prod(shape)
