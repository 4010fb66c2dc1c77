"""Reference statistics of a version's inputs, computed from a sample at push
(issue 12; the file format and the measures are in :mod:`modelyard.domain.monitoring`).

A sample is a table of the inputs the model was trained or validated on:

- a pandas ``DataFrame`` (its columns name the features; text, boolean and
  ``category`` columns are categorical),
- a 2-D NumPy array or a list of rows (features named ``INPUT[0]``,
  ``INPUT[1]``, ... unless ``columns`` names them),
- a mapping of feature name to its values.

Each feature is column ``index`` of the 2-D input tensor ``input``, in order,
which is where the model server finds it in a request. A CSV file with a
header row is read by :func:`read_csv_sample` (the CLI's ``--reference-data``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modelyard.domain.errors import InvalidInput
from modelyard.domain.monitoring import (
    DEFAULT_BINS,
    DriftThresholds,
    Feature,
    ReferenceStats,
    categorical_feature,
    numeric_feature,
)

MAX_SAMPLE_ROWS = 1_000_000


def _columns(sample: Any, input: str, columns: Sequence[str] | None) -> dict[str, list[Any]]:
    """The sample as ordered columns of plain Python values."""
    if hasattr(sample, "columns") and hasattr(sample, "to_dict"):  # a pandas DataFrame
        return {str(c): list(sample[c].tolist()) for c in sample.columns}
    if isinstance(sample, Mapping):
        return {str(k): list(v) for k, v in sample.items()}
    rows = sample.tolist() if hasattr(sample, "tolist") else list(sample)
    if not rows:
        raise InvalidInput("the reference sample is empty", code="INVALID_REFERENCE_STATS")
    if not isinstance(rows[0], list | tuple):
        rows = [[r] for r in rows]  # a 1-D sample: one feature
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise InvalidInput(
            "the reference sample's rows differ in length", code="INVALID_REFERENCE_STATS"
        )
    names = list(columns) if columns is not None else [f"{input}[{i}]" for i in range(width)]
    if len(names) != width:
        raise InvalidInput(
            f"columns names {len(names)} features, the sample has {width}",
            code="INVALID_REFERENCE_STATS",
        )
    return {name: [r[i] for r in rows] for i, name in enumerate(names)}


def _is_numeric(values: Iterable[Any]) -> bool:
    return all(
        (isinstance(v, int | float) and not isinstance(v, bool)) or v is None for v in values
    )


def compute_reference_stats(
    sample: Any,
    *,
    input: str,
    columns: Sequence[str] | None = None,
    categorical: Iterable[str] = (),
    bins: int = DEFAULT_BINS,
    thresholds: Mapping[str, float] | None = None,
) -> ReferenceStats:
    """Reference statistics of ``sample`` (see the module docstring).

    ``categorical`` names numeric features to treat as categories (codes);
    ``bins`` is the number of quantile bins per numeric feature;
    ``thresholds`` (``{"psi": 0.2, "ks": 0.2}``) travel with the version as
    its own drift thresholds.
    """
    cols = _columns(sample, input, columns)
    if not cols:
        raise InvalidInput("the reference sample has no column", code="INVALID_REFERENCE_STATS")
    size = len(next(iter(cols.values())))
    if not 1 <= size <= MAX_SAMPLE_ROWS or any(len(v) != size for v in cols.values()):
        raise InvalidInput(
            f"the reference sample must hold 1 to {MAX_SAMPLE_ROWS} rows of equal length",
            code="INVALID_REFERENCE_STATS",
        )
    as_category = set(categorical)
    unknown = as_category - set(cols)
    if unknown:
        raise InvalidInput(
            f"categorical names no column of the sample: {', '.join(sorted(unknown))}",
            code="INVALID_REFERENCE_STATS",
        )
    features: list[Feature] = []
    for index, (name, values) in enumerate(cols.items()):
        present = [v for v in values if v is not None and not _is_nan(v)]
        if name in as_category or not _is_numeric(present):
            features.append(categorical_feature(name, input, index, present))
        else:
            features.append(numeric_feature(name, input, index, present, bins=bins))
    limits = None
    if thresholds is not None:
        base = DriftThresholds()
        limits = DriftThresholds(
            float(thresholds.get("psi", base.psi)), float(thresholds.get("ks", base.ks))
        )
    return ReferenceStats(tuple(features), size, limits)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def stats_bytes(stats: ReferenceStats) -> bytes:
    """The statistics file's bytes (sorted keys: equal statistics, equal digest)."""
    return json.dumps(stats.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def read_csv_sample(path: Path) -> dict[str, list[Any]]:
    """A CSV file with a header row as columns: numbers where every value of a
    column parses as one (empty cells are missing), text otherwise."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise InvalidInput(f"{path} has no header row", code="INVALID_REFERENCE_STATS")
            raw: list[list[str]] = [[] for _ in header]
            for lineno, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    raise InvalidInput(
                        f"{path}:{lineno}: {len(row)} cells, the header has {len(header)}",
                        code="INVALID_REFERENCE_STATS",
                    )
                for cells, cell in zip(raw, row, strict=True):
                    cells.append(cell)
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", code="LOCAL_IO_ERROR") from None
    out: dict[str, list[Any]] = {}
    for name, cells in zip(header, raw, strict=True):
        try:
            out[name] = [float(c) if c.strip() else None for c in cells]
        except ValueError:
            out[name] = [c if c.strip() else None for c in cells]
    return out
