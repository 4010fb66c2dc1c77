"""What differs between versions: pure functions over domain entities.

The compare page puts the first version chosen (the base) beside the others;
each difference is relative to the base.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.domain.entities import Version

MAX_COMPARED = 6


@dataclass(frozen=True, slots=True)
class Row:
    """One key across the compared versions: the values, and each delta to the base."""

    key: str
    values: list[Any]
    deltas: list[float | None]
    differs: bool


@dataclass(frozen=True, slots=True)
class FileDiff:
    """Files of one version against the base's, by path."""

    added: list[str]
    removed: list[str]
    changed: list[str]
    same: int


def metric_rows(versions: list[Version]) -> list[Row]:
    """Every metric key of any version; deltas are value minus the base's."""
    keys = sorted({k for v in versions for k in v.metrics})
    rows = []
    for key in keys:
        values = [v.metrics.get(key) for v in versions]
        base = values[0]
        deltas = [
            None if base is None or x is None or i == 0 else x - base for i, x in enumerate(values)
        ]
        rows.append(Row(key, values, deltas, len({repr(x) for x in values}) > 1))
    return rows


def param_rows(versions: list[Version]) -> list[Row]:
    """Every param key of any version, with whether the values differ."""
    keys = sorted({k for v in versions for k in v.params})
    rows = []
    for key in keys:
        values = [v.params.get(key) for v in versions]
        rows.append(Row(key, values, [None] * len(values), len(set(values)) > 1))
    return rows


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A JSON value as ``path -> leaf`` (``inputs[0].name``), for a readable diff."""
    out: dict[str, Any] = {}
    if isinstance(value, dict) and value:
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix or "(root)"] = value
    return out


def signature_rows(versions: list[Version]) -> list[Row]:
    """The signatures flattened to paths; rows where any version differs come first."""
    flat = [flatten(v.signature) if v.signature else {} for v in versions]
    keys = sorted({k for f in flat for k in f})
    rows = [
        Row(
            k, [f.get(k) for f in flat], [None] * len(flat), len({repr(f.get(k)) for f in flat}) > 1
        )
        for k in keys
    ]
    return sorted(rows, key=lambda r: not r.differs)


def file_diffs(versions: list[Version]) -> list[FileDiff]:
    """Each version's files against the base's (the base's own entry is all same)."""
    base = {f.path: f.digest for f in versions[0].files or ()}
    out = []
    for v in versions:
        mine = {f.path: f.digest for f in v.files or ()}
        out.append(
            FileDiff(
                added=sorted(mine.keys() - base.keys()),
                removed=sorted(base.keys() - mine.keys()),
                changed=sorted(p for p in mine.keys() & base.keys() if mine[p] != base[p]),
                same=sum(1 for p in mine.keys() & base.keys() if mine[p] == base[p]),
            )
        )
    return out
