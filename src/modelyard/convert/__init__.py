"""Conversions registered as variants (issue 14): ``modelyard convert``.

:func:`convert_version` runs in the client, beside any registry (remote or
embedded), and talks to it through the SDK only:

1. pull the source version's files (digest-checked) into a scratch directory;
2. convert them: a scikit-learn model (skops) to ONNX with skl2onnx, an ONNX
   model to a dynamically quantized ONNX with onnxruntime, a PyTorch model
   (``torch.export`` archive) to ONNX when torch is installed;
3. call the source and the result on one sample input (built from the
   signature, or the caller's) and measure how far they disagree
   (:mod:`~modelyard.convert.agreement`); refuse above the tolerance, with
   nothing registered;
4. push the result as a variant: ``parent`` the source version (the
   registry derives the ``original``), relation ``converted`` or
   ``quantized``, recipe ``{tool, tool_version, options}``, the source's
   signature, the agreement figures in ``metadata["conversion"]``; metrics
   given by the caller make the registry record the metric delta.

The layer sits beside ``serving`` (whose flavors load and call models the
same way a served version is loaded and called) and uses the SDK below it;
the CLI's ``convert`` command is a thin shell over it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.client.registry import Registry, VersionInfo
from modelyard.convert import converters
from modelyard.convert.agreement import Agreement, check_sample, compare, sample_inputs
from modelyard.domain.errors import InvalidInput
from modelyard.domain.references import parse_reference
from modelyard.serving.tensors import parse_signature

__all__ = ["DEFAULT_TOLERANCE", "Conversion", "convert_version"]

# Default limits, per step. float32 ONNX against a float64 estimator differs in
# the 7th significant digit; 8-bit weights move outputs by about 1% of their
# range, and may flip a label that sits on a decision boundary.
DEFAULT_TOLERANCE = {"converted": 1e-4, "quantized": 0.1}
DEFAULT_MAX_MISMATCH = {"converted": 0.0, "quantized": 0.05}
QUANTIZE_MODES = ("dynamic",)
TARGETS = ("onnx",)
MAX_SAMPLE_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class Conversion:
    """A registered conversion: the new variant and how closely it agrees."""

    version: VersionInfo
    source: VersionInfo
    relation: str
    agreement: Agreement
    tolerance: float
    max_mismatch: float

    def to_dict(self) -> dict[str, Any]:
        """JSON shape (``modelyard convert --json``)."""
        return {
            "version": self.version.raw,
            "source": self.source.ref,
            "relation": self.relation,
            "tolerance": self.tolerance,
            "max_mismatch": self.max_mismatch,
            **self.agreement.to_dict(),
        }


def _default_name(model: str, relation: str) -> str:
    """``fraud`` -> ``fraud-onnx``; ``fraud-onnx`` (or ``fraud``) -> ``fraud-int8``."""
    if relation == "converted":
        return f"{model}-onnx"
    return f"{model.removesuffix('-onnx') or model}-int8"


def convert_version(
    registry: Registry,
    ref: str,
    *,
    to: str | None = None,
    quantize: str | None = None,
    name: str | None = None,
    tolerance: float | None = None,
    max_mismatch: float | None = None,
    sample: dict[str, Any] | None = None,
    sample_rows: int = 64,
    seed: int = 0,
    opset: int | None = None,
    weight_type: str = "int8",
    per_channel: bool = False,
    trusted: list[str] | None = None,
    metrics: dict[str, float] | None = None,
    description: str = "",
    tags: dict[str, str] | None = None,
) -> Conversion:
    """Convert the version ``ref`` names and register the result as its variant.

    Exactly one of ``to="onnx"`` (a scikit-learn or PyTorch version) and
    ``quantize="dynamic"`` (an ONNX version). The variant becomes the next
    version of model ``name`` in the source's namespace (default
    ``<model>-onnx`` / ``<model>-int8``, created if needed).

    Agreement: the source and the result are called on ``sample`` (input
    name -> array) or on ``sample_rows`` random rows built from the
    signature (seeded by ``seed``); the largest absolute difference of a
    floating-point output must be at most ``tolerance`` and the share of
    differing elements of any other output (labels) at most
    ``max_mismatch``, else ``CONVERSION_MISMATCH`` and nothing is
    registered. Defaults: :data:`DEFAULT_TOLERANCE`, :data:`DEFAULT_MAX_MISMATCH`.

    ``trusted`` lists extra type names skops may load (beyond its defaults:
    scikit-learn, NumPy, SciPy); nothing is ever unpickled.
    """
    if (to is None) == (quantize is None):
        raise InvalidInput(
            "give exactly one of --to onnx and --quantize dynamic", code="INVALID_INPUT"
        )
    if to is not None and to.lower() not in TARGETS:
        raise converters.unsupported(
            f"cannot convert to {to!r} (targets: {', '.join(TARGETS)})", target=to
        )
    if quantize is not None and quantize.lower() not in QUANTIZE_MODES:
        raise converters.unsupported(
            f"unknown quantization {quantize!r} (modes: {', '.join(QUANTIZE_MODES)})",
            mode=quantize,
        )
    if not 1 <= sample_rows <= MAX_SAMPLE_ROWS:
        raise InvalidInput(f"sample rows must be 1..{MAX_SAMPLE_ROWS}", code="INVALID_INPUT")
    relation = "converted" if to is not None else "quantized"
    tol = DEFAULT_TOLERANCE[relation] if tolerance is None else float(tolerance)
    mismatch = DEFAULT_MAX_MISMATCH[relation] if max_mismatch is None else float(max_mismatch)
    if not (tol >= 0 and 0 <= mismatch <= 1):
        raise InvalidInput(
            "tolerance must be >= 0 and max mismatch within 0..1", code="INVALID_INPUT"
        )
    source = registry.get_version(ref)
    exact = parse_reference(source.ref)
    target = name or _default_name(exact.name, relation)
    declared = parse_signature(source.raw.get("signature"))
    with tempfile.TemporaryDirectory(prefix="modelyard-convert-") as scratch:
        root = Path(scratch)
        registry.pull(source.ref, root / "source")
        files = {f["path"]: root / "source" / f["path"] for f in source.model_files}
        kind = converters.source_kind(source.format, sorted(files))
        out = root / "out" / "model.onnx"
        if relation == "quantized":
            if kind != "onnx":
                raise converters.unsupported(
                    f"dynamic quantization takes an ONNX version; {source.ref} is {kind}",
                    reference=source.ref,
                )
            done = converters.quantize_dynamic(
                files, declared, out, weight_type=weight_type, per_channel=per_channel
            )
        elif kind == "sklearn":
            done = converters.sklearn_to_onnx(
                files, declared, out, opset=opset, trusted=trusted or ()
            )
        elif kind == "torch":
            done = converters.torch_to_onnx(files, declared, out, opset=opset)
        else:
            raise converters.unsupported(
                f"{source.ref} is already ONNX (quantize it with --quantize dynamic)",
                reference=source.ref,
            )
        result = converters.load_onnx({"model.onnx": done.path}, done.signature)
        inputs = (
            check_sample(done.signature, sample)
            if sample is not None
            else sample_inputs(done.signature, rows=sample_rows, seed=seed)
        )
        agreement = compare(done.source, result, inputs)
        check = {
            **agreement.to_dict(),
            "tolerance": tol,
            "max_mismatch_allowed": mismatch,
            "sample": "given" if sample is not None else {"rows": sample_rows, "seed": seed},
        }
        if agreement.max_deviation > tol or agreement.max_mismatch > mismatch:
            raise InvalidInput(
                f"the {relation} model disagrees with {source.ref} beyond the tolerance: "
                f"largest deviation {agreement.max_deviation:.3g} (allowed {tol:g}), "
                f"largest label mismatch {agreement.max_mismatch:.3g} (allowed {mismatch:g}); "
                "nothing was registered",
                code="CONVERSION_MISMATCH",
                details=check,
            )
        signature = source.raw.get("signature") or {
            "inputs": [s.to_wire() for s in done.signature.inputs],
            "outputs": [s.to_wire() for s in done.signature.outputs],
        }
        # The source's resources (label maps, thresholds) still apply to the
        # converted model: the variant lists them too, shared by digest.
        carried = {f["path"]: root / "source" / f["path"] for f in source.resources}
        version = registry.push(
            target,
            {"model.onnx": done.path, **carried},
            namespace=exact.namespace,
            framework="onnx",
            format="onnx",
            description=description,
            metrics=metrics,
            tags=tags,
            metadata={"conversion": check},
            signature=signature,
            parent=source.ref,
            relation=relation,
            recipe={
                "tool": done.tool,
                "tool_version": done.tool_version,
                "options": done.options,
            },
        )
    return Conversion(version, source, relation, agreement, tol, mismatch)
