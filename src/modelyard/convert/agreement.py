"""Numerical agreement between a version and its conversion (issue 14).

Both models are called on one sample input built from the version's
signature (or given by the caller), and each declared output is compared:

- a floating-point output by its largest absolute difference;
- any other output (class labels, flags) by the share of elements that
  differ, since the distance between label 0 and label 2 means nothing.

The conversion is refused when either figure is above its limit, so a
variant is registered only when it answers like its parent on that sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelyard.domain.errors import InvalidInput
from modelyard.serving.flavors import Predictor
from modelyard.serving.tensors import Signature

# Variable dimensions other than the first (the batch) take this size in a
# built sample: big enough for small convolution windows, small enough to
# stay quick.
OTHER_DIM = 8


def sample_inputs(signature: Signature, *, rows: int, seed: int) -> dict[str, np.ndarray]:
    """Random inputs fitting ``signature``: ``rows`` in a variable first
    dimension, :data:`OTHER_DIM` in any other variable one; standard normal
    floats, integers 0..9, random booleans. Seeded, so a check can be repeated."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        shape = tuple(
            (rows if i == 0 else OTHER_DIM) if d < 0 else d for i, d in enumerate(spec.shape)
        )
        dtype = spec.dtype
        if dtype.kind == "f":
            out[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            out[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            out[spec.name] = rng.integers(0, 10, shape).astype(dtype)
    return out


def check_sample(signature: Signature, sample: dict[str, Any]) -> dict[str, np.ndarray]:
    """A caller's sample as arrays of the declared dtypes and shapes."""
    out: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        if spec.name not in sample:
            raise InvalidInput(
                f"the sample has no input {spec.name!r}",
                code="INVALID_SAMPLE",
                details={"input": spec.name, "declared": [s.name for s in signature.inputs]},
            )
        arr = np.asarray(sample[spec.name])
        if arr.dtype.kind not in "biuf":
            raise InvalidInput(f"sample input {spec.name!r} is not numeric", code="INVALID_SAMPLE")
        arr = arr.astype(spec.dtype)
        if not spec.accepts(arr.shape):
            raise InvalidInput(
                f"sample input {spec.name!r} has shape {list(arr.shape)}, the signature "
                f"declares {list(spec.shape)}",
                code="INVALID_SAMPLE",
                details={"input": spec.name},
            )
        out[spec.name] = arr
    return out


@dataclass(frozen=True, slots=True)
class Agreement:
    """How far the conversion's answers are from the original's on the sample.

    ``max_deviation``: the largest absolute difference over the floating-point
    outputs (0.0 when there are none); ``max_mismatch``: the largest share of
    differing elements over the other outputs; ``outputs``: per output, its
    kind (``abs`` or ``mismatch``) and value.
    """

    max_deviation: float
    max_mismatch: float
    rows: int
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON shape (recorded in the variant's metadata, and in errors)."""
        return {
            "max_deviation": self.max_deviation,
            "max_mismatch": self.max_mismatch,
            "sample_rows": self.rows,
            "outputs": self.outputs,
        }


def _difference(name: str, want: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    if want.shape != got.shape:
        raise InvalidInput(
            f"output {name!r} has shape {list(got.shape)} after conversion, "
            f"{list(want.shape)} before",
            code="CONVERSION_MISMATCH",
            details={"output": name, "before": list(want.shape), "after": list(got.shape)},
        )
    if want.dtype.kind == "f" or got.dtype.kind == "f":
        a, b = want.astype(np.float64), got.astype(np.float64)
        same_nan = np.isnan(a) == np.isnan(b)
        if not same_nan.all():
            return {"kind": "abs", "value": float("inf")}
        diff = np.abs(np.where(np.isnan(a), 0.0, a - b))
        return {"kind": "abs", "value": float(diff.max()) if diff.size else 0.0}
    differs = want != got
    return {"kind": "mismatch", "value": float(differs.mean()) if differs.size else 0.0}


def compare(before: Predictor, after: Predictor, sample: dict[str, np.ndarray]) -> Agreement:
    """Run both on ``sample`` and compare every output ``before`` declares."""
    want = before.predict(sample)
    got = after.predict(sample)
    outputs: dict[str, dict[str, Any]] = {}
    for name, value in want.items():
        if name not in got:
            raise InvalidInput(
                f"the converted model has no output {name!r}",
                code="CONVERSION_MISMATCH",
                details={"output": name, "outputs": sorted(got)},
            )
        outputs[name] = _difference(name, np.asarray(value), np.asarray(got[name]))
    abs_values = [o["value"] for o in outputs.values() if o["kind"] == "abs"]
    mismatch_values = [o["value"] for o in outputs.values() if o["kind"] == "mismatch"]
    first = next(iter(sample.values()), None)
    rows = 0 if first is None else (first.shape[0] if first.ndim else 1)
    return Agreement(
        max(abs_values, default=0.0), max(mismatch_values, default=0.0), int(rows), outputs
    )
