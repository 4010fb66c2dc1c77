"""``modelyard convert``: convert or quantize a version and register the
result as its variant (issue 14; the work is :mod:`modelyard.convert`'s)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelyard.cli.common import key_values, metrics, run
from modelyard.cli.options import DEFAULT_URL, JsonOpt, RegistryOpt, TokenOpt
from modelyard.domain.errors import InvalidInput


def _load_sample(path: Path) -> dict[str, Any]:
    """A sample input from a ``.npz`` file (one array per input name), read
    without pickle support: an object array is refused, never unpickled."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError) as exc:
        raise InvalidInput(
            f"cannot read sample {path}: {exc}", code="INVALID_SAMPLE", details={"path": str(path)}
        ) from None


def convert(
    ref: Annotated[str, typer.Argument(help="The version to convert: name/3, name@production")],
    to: Annotated[
        str | None, typer.Option("--to", help="Target format: onnx (scikit-learn, PyTorch).")
    ] = None,
    quantize: Annotated[
        str | None, typer.Option("--quantize", help="Quantize an ONNX version: dynamic.")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Model to register the variant in (default NAME-onnx / NAME-int8)."),
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(
            help="Largest absolute deviation allowed on float outputs "
            "(default 1e-4 converting, 0.1 quantizing)."
        ),
    ] = None,
    max_mismatch: Annotated[
        float | None,
        typer.Option(
            help="Largest share of differing labels allowed (default 0 converting, "
            "0.05 quantizing)."
        ),
    ] = None,
    sample: Annotated[
        Path | None,
        typer.Option(help="Sample input: an .npz file with one array per input name."),
    ] = None,
    rows: Annotated[int, typer.Option(help="Rows of the built sample input.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the built sample input.")] = 0,
    opset: Annotated[int | None, typer.Option(help="ONNX opset of the converted graph.")] = None,
    weight_type: Annotated[
        str, typer.Option(help="Quantized weight type: int8 or uint8.")
    ] = "int8",
    per_channel: Annotated[
        bool, typer.Option("--per-channel", help="Quantize weights per channel.")
    ] = False,
    trust: Annotated[
        list[str] | None,
        typer.Option(help="A type skops may load beyond its defaults (repeatable)."),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="key=value of the variant (repeatable)."),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="key=value, repeatable")
    ] = None,
    description: Annotated[str, typer.Option(help="Variant description.")] = "",
    registry: RegistryOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Convert REF (--to onnx) or quantize it (--quantize dynamic) and register
    the result as its variant, after checking that both answer alike on a
    sample input; refused, with nothing registered, beyond the tolerance."""
    from modelyard.convert import Conversion, convert_version

    given = _load_sample(sample) if sample is not None else None
    tags = key_values(tag, "tag")
    values = metrics(metric)

    def call(reg: Any) -> Conversion:
        return convert_version(
            reg,
            ref,
            to=to,
            quantize=quantize,
            name=name,
            tolerance=tolerance,
            max_mismatch=max_mismatch,
            sample=given,
            sample_rows=rows,
            seed=seed,
            opset=opset,
            weight_type=weight_type,
            per_channel=per_channel,
            trusted=trust,
            metrics=values or None,
            tags=tags or None,
            description=description,
        )

    def show(c: Conversion) -> str:
        a = c.agreement
        return (
            f"registered {c.version.ref} ({c.relation} from {c.source.ref}, "
            f"{c.version.lineage.get('recipe', {}).get('tool')}): largest deviation "
            f"{a.max_deviation:.3g} (allowed {c.tolerance:g}), label mismatch "
            f"{a.max_mismatch:.3g} on {a.rows} rows"
        )

    run(registry, token, as_json, call, show, to_json=lambda c: c.to_dict())


def register(app: typer.Typer) -> None:
    """Add ``convert`` to the ``modelyard`` app."""
    app.command()(convert)
