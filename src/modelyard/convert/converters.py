"""The conversions themselves: scikit-learn (skops) to ONNX with skl2onnx,
dynamic quantization of ONNX with onnxruntime, PyTorch to ONNX with torch.

Each takes the source version's files (already pulled and digest-checked)
and its signature, writes one ``.onnx`` file and answers what it did: the
loaded source model (to compare against), the tool, its version and the
options used (the variant's recipe). The heavy libraries are imported on
first use, so ``import modelyard`` never pays for them.

Nothing here unpickles: scikit-learn models are read with skops under its
trusted-types rule, PyTorch models only as ``torch.export`` archives.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.domain.errors import InvalidInput
from modelyard.serving.flavors import Predictor, pick_file
from modelyard.serving.flavors import onnx as onnx_flavor
from modelyard.serving.flavors import skops as skops_flavor
from modelyard.serving.tensors import Signature, TensorSpec

SKLEARN_FORMATS = frozenset({"skops", "sklearn", "scikit-learn"})
TORCH_FORMATS = frozenset({"pytorch", "torch", "torch-export", "pt2"})
TORCH_SUFFIXES = (".pt2",)
WEIGHT_TYPES = ("int8", "uint8")


@dataclass(frozen=True, slots=True)
class Converted:
    """One conversion's result: the file written, the source as loaded (to
    compare against), and the recipe parts."""

    path: Path
    source: Predictor
    signature: Signature
    tool: str
    tool_version: str
    options: dict[str, Any]


def unsupported(message: str, **details: Any) -> InvalidInput:
    """The error for a conversion modelyard does not offer for this version."""
    return InvalidInput(message, code="CONVERSION_UNSUPPORTED", details=details)


def converter_missing(package: str, extra: str) -> InvalidInput:
    """The error for a conversion whose library is not installed here."""
    return InvalidInput(
        f"this conversion needs {package}, which is not installed in this environment "
        f"(install modelyard[{extra}])",
        code="CONVERTER_MISSING",
        details={"package": package},
    )


def source_kind(fmt: str | None, paths: list[str]) -> str:
    """``sklearn``, ``torch`` or ``onnx``: what the version holds, by format, else by file."""
    wanted = (fmt or "").lower()
    if wanted in SKLEARN_FORMATS:
        return "sklearn"
    if wanted in TORCH_FORMATS:
        return "torch"
    if wanted == onnx_flavor.NAME:
        return "onnx"
    lowered = [p.lower() for p in paths]
    if not wanted:  # no format recorded: the files say
        for kind, suffixes in (
            ("sklearn", skops_flavor.SUFFIXES),
            ("onnx", onnx_flavor.SUFFIXES),
            ("torch", TORCH_SUFFIXES),
        ):
            if any(p.endswith(suffixes) for p in lowered):
                return kind
    raise unsupported(
        f"cannot tell what model format {fmt or '(none)'} holds: modelyard converts "
        "scikit-learn (skops) and PyTorch (torch.export .pt2) models to ONNX, and "
        "quantizes ONNX models",
        format=fmt,
    )


# -- scikit-learn -> ONNX ------------------------------------------------------

# skl2onnx's own output names and the estimator method each one mirrors.
_SKL2ONNX_OUTPUTS = {"label": "predict", "variable": "predict", "probabilities": "predict_proba"}


def sklearn_to_onnx(
    files: dict[str, Path],
    signature: Signature | None,
    dest: Path,
    *,
    opset: int | None = None,
    trusted: Sequence[str] = (),
) -> Converted:
    """Convert the version's skops estimator to ONNX with skl2onnx.

    The graph takes the signature's input (name, datatype, shape) and gives
    its outputs under their declared names, datatypes and ranks (a cast or
    a reshape is appended where skl2onnx's own output differs, e.g. a
    regressor's ``[N, 1]`` for a declared ``[-1]``), so the variant keeps
    the original's signature. Classifiers are exported without ZipMap.
    """
    try:
        import onnx
        import skl2onnx
        from skl2onnx.common import data_types as dt
    except ImportError:
        raise converter_missing("skl2onnx", "convert") from None
    from sklearn.base import is_classifier

    source = skops_flavor.load(files, signature, trusted=trusted)
    sig = source.signature
    if len(sig.inputs) != 1:
        raise unsupported("a scikit-learn estimator takes exactly one input tensor")
    spec = sig.inputs[0]
    tensor_types = {
        "FP32": dt.FloatTensorType,
        "FP64": dt.DoubleTensorType,
        "INT64": dt.Int64TensorType,
        "INT32": dt.Int32TensorType,
    }
    if spec.datatype not in tensor_types:
        raise unsupported(
            f"skl2onnx takes FP32, FP64, INT32 or INT64 inputs, the signature declares "
            f"{spec.datatype}",
            datatype=spec.datatype,
        )
    shape = [None if d < 0 else d for d in spec.shape]
    estimator = source.estimator
    options: dict[int, dict[str, Any]] | None = None
    if is_classifier(estimator) and hasattr(estimator, "predict_proba"):
        options = {id(estimator): {"zipmap": False}}
    try:
        model = skl2onnx.convert_sklearn(
            estimator,
            initial_types=[(spec.name, tensor_types[spec.datatype](shape))],
            options=options,
            target_opset=opset,
        )
    except Exception as exc:  # skl2onnx raises plain errors for models it cannot convert
        raise unsupported(
            f"skl2onnx cannot convert this {type(estimator).__name__}: {exc}",
            estimator=type(estimator).__name__,
        ) from None
    _fit_outputs(model, sig)
    onnx.checker.check_model(model)
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(dest))
    used = {
        "target_opset": next((o.version for o in model.opset_import if o.domain == ""), None),
        "input": spec.to_wire(),
        "zipmap": False if options else None,
    }
    return Converted(
        dest,
        source,
        sig,
        "skl2onnx",
        skl2onnx.__version__,
        {k: v for k, v in used.items() if v is not None},
    )


def _fit_outputs(model: Any, sig: Signature) -> None:
    """Give the graph the signature's outputs: each declared output takes the
    skl2onnx output mirroring the same estimator method, renamed, cast to the
    declared datatype and reshaped to the declared rank where they differ."""
    import numpy as np
    import onnx
    from onnx import helper

    graph = model.graph
    by_method: dict[str, Any] = {}
    for out in graph.output:
        method = _SKL2ONNX_OUTPUTS.get(out.name)
        if method is not None:
            by_method.setdefault(method, out)
    for spec in sig.outputs:
        method = skops_flavor.OUTPUT_METHODS.get(spec.name)
        out = by_method.get(method or "")
        if out is None:
            raise unsupported(
                f"output {spec.name!r} has no counterpart in the ONNX graph "
                f"(it has {[o.name for o in graph.output]})",
                output=spec.name,
            )
        _fit_output(graph, out, spec, helper, onnx, np)


def _fit_output(graph: Any, out: Any, spec: TensorSpec, helper: Any, onnx: Any, np: Any) -> None:
    want_type = helper.np_dtype_to_tensor_dtype(spec.dtype)
    tensor = out.type.tensor_type
    rank = len(tensor.shape.dim)
    if out.name == spec.name and tensor.elem_type == want_type and rank == len(spec.shape):
        return
    raw = f"{spec.name}__raw"
    for node in graph.node:
        node.output[:] = [raw if n == out.name else n for n in node.output]
        node.input[:] = [raw if n == out.name else n for n in node.input]
    current = raw
    if tensor.elem_type != want_type:
        graph.node.append(helper.make_node("Cast", [current], [f"{raw}__cast"], to=want_type))
        current = f"{raw}__cast"
    if rank != len(spec.shape):
        if not (rank == 2 and len(spec.shape) == 1):
            raise unsupported(
                f"output {spec.name!r} has rank {rank} in the ONNX graph, the signature "
                f"declares {len(spec.shape)}",
                output=spec.name,
            )
        shape_name = f"{raw}__shape"
        graph.initializer.append(
            onnx.numpy_helper.from_array(np.array([-1], dtype=np.int64), shape_name)
        )
        graph.node.append(helper.make_node("Reshape", [current, shape_name], [f"{raw}__flat"]))
        current = f"{raw}__flat"
    graph.node.append(helper.make_node("Identity", [current], [spec.name]))
    dims = [None if d < 0 else d for d in spec.shape]
    graph.output.remove(out)
    graph.output.append(helper.make_tensor_value_info(spec.name, want_type, dims))


# -- ONNX -> dynamically quantized ONNX -----------------------------------------


def load_onnx(files: dict[str, Path], signature: Signature | None) -> onnx_flavor.OnnxPredictor:
    """The version's ONNX model in an onnxruntime session (its own signature
    when the version declares none)."""
    return onnx_flavor.load(files, signature)


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Keep the quantizer's advice off stderr for the duration of the call.

    It logs through the root logger (``logging.warning``), which also installs
    a stderr handler on a process that has none: ``--json`` output would then
    carry lines that are not JSON. A handler in place stops the latter, a
    filter the former; both are removed afterwards.
    """
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)

    def drop(record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname

    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)
        root.removeHandler(placeholder)


def quantize_dynamic(
    files: dict[str, Path],
    signature: Signature | None,
    dest: Path,
    *,
    weight_type: str = "int8",
    per_channel: bool = False,
) -> Converted:
    """Quantize the version's ONNX model with onnxruntime's dynamic quantizer
    (weights to 8 bits ahead of time, activations at run time)."""
    import onnxruntime
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as quantize

    if weight_type not in WEIGHT_TYPES:
        raise InvalidInput(
            f"weight type must be one of {', '.join(WEIGHT_TYPES)}",
            code="INVALID_INPUT",
            details={"field": "weight_type"},
        )
    source = load_onnx(files, signature)
    path = pick_file(files, onnx_flavor.SUFFIXES, onnx_flavor.NAME)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet_root_logger():
            quantize(
                str(path),
                str(dest),
                weight_type=QuantType.QInt8 if weight_type == "int8" else QuantType.QUInt8,
                per_channel=per_channel,
            )
    except Exception as exc:  # the quantizer raises plain errors for graphs it cannot take
        raise unsupported(f"onnxruntime cannot quantize {path.name}: {exc}") from None
    return Converted(
        dest,
        source,
        source.signature,
        "onnxruntime.quantization",
        onnxruntime.__version__,
        {"mode": "dynamic", "weight_type": weight_type, "per_channel": per_channel},
    )


# -- PyTorch -> ONNX -----------------------------------------------------------


class _TorchPredictor:
    """A ``torch.export`` program called like a flavor's predictor."""

    def __init__(self, module: Any, signature: Signature) -> None:
        self._module = module
        self.signature = signature

    def predict(self, inputs: dict[str, Any]) -> dict[str, Any]:
        import torch

        args = [torch.from_numpy(inputs[s.name]) for s in self.signature.inputs]
        with torch.no_grad():
            result = self._module(*args)
        results = result if isinstance(result, tuple | list) else (result,)
        return {
            s.name: r.detach().numpy()
            for s, r in zip(self.signature.outputs, results, strict=False)
        }


def torch_to_onnx(
    files: dict[str, Path], signature: Signature | None, dest: Path, *, opset: int | None = None
) -> Converted:
    """Export the version's ``torch.export`` archive (``.pt2``) to ONNX.

    Only exported programs are read (``torch.export.load``): a ``.pt`` file
    is a pickle, and loading one runs arbitrary code. The signature names the
    program's positional inputs and outputs, in order; variable dimensions
    become dynamic axes.
    """
    try:
        import torch
    except ImportError:
        raise converter_missing("torch", "torch") from None
    if signature is None:
        raise unsupported(
            "a PyTorch version needs a signature (its inputs and outputs) to be exported"
        )
    path = pick_file(files, TORCH_SUFFIXES, "PyTorch")
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # torch raises its own errors for a damaged archive
        raise unsupported(f"torch cannot load {path.name}: {exc}", file=path.name) from None
    module = program.module()
    example = tuple(
        torch.zeros(s.example_shape(), dtype=getattr(torch, str(s.dtype))) for s in signature.inputs
    )
    dynamic = {
        s.name: {i: f"{s.name}_{i}" for i, d in enumerate(s.shape) if d < 0}
        for s in signature.inputs
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    used_opset = opset or 17
    try:
        torch.onnx.export(
            module,
            example,
            str(dest),
            input_names=[s.name for s in signature.inputs],
            output_names=[s.name for s in signature.outputs],
            dynamic_axes={k: v for k, v in dynamic.items() if v},
            opset_version=used_opset,
        )
    except Exception as exc:
        raise unsupported(f"torch cannot export {path.name} to ONNX: {exc}") from None
    return Converted(
        dest,
        _TorchPredictor(module, signature),
        signature,
        "torch.onnx",
        str(torch.__version__),
        {"opset": used_opset},
    )
