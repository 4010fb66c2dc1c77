"""Monitoring rules (issue 12): reference statistics, drift measures and a
deployment's monitoring settings. Pure Python, no I/O.

Reference statistics describe a sample of a version's inputs, taken when it
is pushed. They travel as one file of the version, :data:`STATS_PATH`, so
they are as immutable and content-addressed as the weights they describe::

    {"format": 1, "sample_size": 500,
     "features": [
       {"name": "age", "input": "X", "index": 0, "kind": "numeric",
        "edges": [21.0, 30.5, ...], "probabilities": [0.1, 0.1, ...],
        "min": 18.0, "max": 90.0, "mean": 41.2},
       {"name": "country", "input": "X", "index": 3, "kind": "categorical",
        "categories": {"1": 0.6, "2": 0.3, "7": 0.1}}],
     "thresholds": {"psi": 0.2, "ks": 0.2}}

A numeric feature is cut into bins at the sample's quantiles (``edges``,
``len(edges) + 1`` bins, the outer ones open-ended), so each bin holds about
the same share of the reference; ``probabilities`` are those shares. A
categorical feature keeps the frequency of each value (values outside the
reference fall in an "other" bucket when compared). ``input`` and ``index``
name the tensor and its column (a 2-D input ``[-1, n]``; index 0 for a 1-D
one) where the model server finds the feature in a request.

Drift is measured on those bins:

- PSI (population stability index), ``sum((a - e) * ln(a / e))`` over the
  bins, shares floored at :data:`PSI_FLOOR` so an empty bin stays finite;
  0.1-0.2 is commonly read as a moderate shift, above 0.2 as a major one.
- KS (Kolmogorov-Smirnov statistic) between the reference and the observed
  distribution, evaluated at the reference's quantile edges: the largest gap
  between the two cumulative shares there. It is a lower bound of the exact
  statistic (which needs every raw value), computed in bounded memory.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from modelyard.domain.errors import InvalidInput

STATS_PATH: Final = ".modelyard/reference_stats.json"
"""Where a version keeps its reference statistics (a reserved path)."""
STATS_FORMAT: Final = 1
PSI_FLOOR: Final = 1e-4
MAX_FEATURES: Final = 1000
MAX_BINS: Final = 100
MAX_CATEGORIES: Final = 1000
OTHER: Final = "__other__"
"""The bucket of categorical values the reference never saw."""
DEFAULT_BINS: Final = 10


def _bad(message: str, **details: Any) -> InvalidInput:
    return InvalidInput(message, code="INVALID_REFERENCE_STATS", details=details)


def category_key(value: Any) -> str:
    """How a categorical value is named in the statistics: integral numbers as
    integers (``1.0`` and ``1`` are one category, as a FP32 tensor carries an
    integer code), other numbers by ``repr``, anything else as text."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    """When drift is reported: any feature's PSI or KS above these."""

    psi: float = 0.2
    ks: float = 0.2

    def to_dict(self) -> dict[str, float]:
        """The JSON form."""
        return {"psi": self.psi, "ks": self.ks}


@dataclass(frozen=True, slots=True)
class NumericFeature:
    """A numeric feature: quantile edges and the reference's share per bin."""

    name: str
    input: str
    index: int
    edges: tuple[float, ...]
    probabilities: tuple[float, ...]
    summary: Mapping[str, float] = field(default_factory=dict)

    kind: ClassVar[str] = "numeric"

    def bin_of(self, value: float) -> int:
        """The bin ``value`` falls in (bins are ``(-inf, e0], (e0, e1], ..., (en, inf)``)."""
        return _bin(self.edges, value)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "name": self.name,
            "input": self.input,
            "index": self.index,
            "kind": "numeric",
            "edges": list(self.edges),
            "probabilities": list(self.probabilities),
            **dict(self.summary),
        }


@dataclass(frozen=True, slots=True)
class CategoricalFeature:
    """A categorical feature: each value's share of the reference."""

    name: str
    input: str
    index: int
    categories: Mapping[str, float]

    kind: ClassVar[str] = "categorical"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "name": self.name,
            "input": self.input,
            "index": self.index,
            "kind": "categorical",
            "categories": dict(self.categories),
        }


Feature = NumericFeature | CategoricalFeature


@dataclass(frozen=True, slots=True)
class ReferenceStats:
    """A version's reference statistics (see the module docstring)."""

    features: tuple[Feature, ...]
    sample_size: int
    thresholds: DriftThresholds | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored at :data:`STATS_PATH`."""
        doc: dict[str, Any] = {
            "format": STATS_FORMAT,
            "sample_size": self.sample_size,
            "features": [f.to_dict() for f in self.features],
        }
        if self.thresholds is not None:
            doc["thresholds"] = self.thresholds.to_dict()
        return doc


# -- computing reference statistics ------------------------------------------


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (NumPy's default method)."""
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def numeric_feature(
    name: str, input: str, index: int, values: Iterable[float], *, bins: int = DEFAULT_BINS
) -> NumericFeature:
    """Quantile bins of ``values`` (non-finite values are left out)."""
    if not 2 <= bins <= MAX_BINS:
        raise _bad(f"bins must be 2 to {MAX_BINS}", bins=bins)
    ordered = sorted(float(v) for v in values if math.isfinite(float(v)))
    if not ordered:
        raise _bad(f"feature {name!r} has no finite value in the sample", feature=name)
    # Repeated quantiles (a feature with few distinct values) merge into one edge.
    edges = sorted({_quantile(ordered, i / bins) for i in range(1, bins)})
    counts = [0] * (len(edges) + 1)
    for v in ordered:
        counts[_bin(edges, v)] += 1
    n = len(ordered)
    return NumericFeature(
        name,
        input,
        index,
        tuple(edges),
        tuple(c / n for c in counts),
        {
            "min": ordered[0],
            "max": ordered[-1],
            "mean": math.fsum(ordered) / n,
            "p50": _quantile(ordered, 0.5),
        },
    )


def categorical_feature(
    name: str, input: str, index: int, values: Iterable[Any]
) -> CategoricalFeature:
    """The share of each value in ``values``."""
    counts: dict[str, int] = {}
    for v in values:
        key = category_key(v)
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        raise _bad(f"feature {name!r} has no value in the sample", feature=name)
    if len(counts) > MAX_CATEGORIES:
        raise _bad(
            f"feature {name!r} has {len(counts)} distinct values (at most {MAX_CATEGORIES}); "
            "treat it as numeric",
            feature=name,
        )
    n = sum(counts.values())
    return CategoricalFeature(name, input, index, {k: c / n for k, c in sorted(counts.items())})


def _bin(edges: Sequence[float], value: float) -> int:
    # Right-closed bins: a value equal to an edge belongs to the bin below it,
    # which keeps the quantile shares of a sample with repeated values exact.
    lo, hi = 0, len(edges)
    while lo < hi:
        mid = (lo + hi) // 2
        if edges[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


# -- parsing a stored file ---------------------------------------------------


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"{what} must be a finite number")
    return float(value)


def _shares(values: Iterable[Any], what: str) -> list[float]:
    out = [_number(v, what) for v in values]
    if any(v < 0 for v in out) or not math.isclose(math.fsum(out), 1.0, abs_tol=1e-6):
        raise _bad(f"{what} must be non-negative shares adding up to 1")
    return out


def parse_thresholds(raw: Any) -> DriftThresholds | None:
    """``{"psi": x, "ks": y}`` (either may be left out), or None."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise _bad("thresholds must be an object")
    base = DriftThresholds()
    psi = _number(raw.get("psi", base.psi), "thresholds.psi")
    ks = _number(raw.get("ks", base.ks), "thresholds.ks")
    if psi <= 0 or not 0 < ks <= 1:
        raise _bad("thresholds.psi must be positive and thresholds.ks in (0, 1]")
    return DriftThresholds(psi, ks)


def _feature(raw: Any, position: int) -> Feature:
    if not isinstance(raw, Mapping):
        raise _bad(f"features[{position}] must be an object")
    name, input_, index = raw.get("name"), raw.get("input"), raw.get("index")
    if not isinstance(name, str) or not name or not isinstance(input_, str) or not input_:
        raise _bad(f"features[{position}] needs a name and an input tensor name")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise _bad(f"feature {name!r}: index must be a column number", feature=name)
    kind = raw.get("kind")
    if kind == "numeric":
        edges_raw, probs_raw = raw.get("edges"), raw.get("probabilities")
        if not isinstance(edges_raw, list) or not isinstance(probs_raw, list):
            raise _bad(f"feature {name!r}: edges and probabilities must be lists", feature=name)
        edges = [_number(e, f"feature {name!r} edges") for e in edges_raw]
        if len(edges) > MAX_BINS or any(b <= a for a, b in itertools.pairwise(edges)):
            raise _bad(f"feature {name!r}: edges must increase (at most {MAX_BINS})", feature=name)
        probs = _shares(probs_raw, f"feature {name!r} probabilities")
        if len(probs) != len(edges) + 1:
            raise _bad(
                f"feature {name!r}: {len(edges)} edges make {len(edges) + 1} bins, "
                f"not {len(probs)}",
                feature=name,
            )
        summary = {
            k: _number(raw[k], f"feature {name!r} {k}")
            for k in ("min", "max", "mean", "p50")
            if k in raw
        }
        return NumericFeature(name, input_, index, tuple(edges), tuple(probs), summary)
    if kind == "categorical":
        cats = raw.get("categories")
        if not isinstance(cats, Mapping) or not cats or len(cats) > MAX_CATEGORIES:
            raise _bad(
                f"feature {name!r}: categories must map 1 to {MAX_CATEGORIES} values to shares",
                feature=name,
            )
        shares = _shares(cats.values(), f"feature {name!r} categories")
        return CategoricalFeature(
            name, input_, index, dict(zip((str(k) for k in cats), shares, strict=True))
        )
    raise _bad(f"feature {name!r}: kind must be numeric or categorical", feature=name)


def parse_reference_stats(doc: Any) -> ReferenceStats:
    """A stored statistics file, checked; ``INVALID_REFERENCE_STATS`` if malformed."""
    if not isinstance(doc, Mapping) or doc.get("format") != STATS_FORMAT:
        raise _bad(f"reference statistics must be an object with format {STATS_FORMAT}")
    raw = doc.get("features")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_FEATURES:
        raise _bad(f"features must list 1 to {MAX_FEATURES} features")
    features = tuple(_feature(f, i) for i, f in enumerate(raw))
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise _bad("a feature name appears twice")
    size = doc.get("sample_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise _bad("sample_size must be a positive integer")
    return ReferenceStats(features, size, parse_thresholds(doc.get("thresholds")))


# -- drift measures ----------------------------------------------------------


def psi(expected: Sequence[float], observed_counts: Sequence[float]) -> float:
    """Population stability index of observed counts against expected shares."""
    total = math.fsum(observed_counts)
    if total <= 0:
        return 0.0
    out = 0.0
    for e, c in zip(expected, observed_counts, strict=True):
        e_ = max(e, PSI_FLOOR)
        a_ = max(c / total, PSI_FLOOR)
        out += (a_ - e_) * math.log(a_ / e_)
    return out


def ks_binned(expected: Sequence[float], observed_counts: Sequence[float]) -> float:
    """Largest gap between cumulative shares at the bin edges (see the module docstring)."""
    total = math.fsum(observed_counts)
    if total <= 0:
        return 0.0
    gap = ce = co = 0.0
    for e, c in zip(expected, observed_counts, strict=True):
        ce += e
        co += c / total
        gap = max(gap, abs(ce - co))
    return gap


# -- a deployment's monitoring settings --------------------------------------


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """How a deployment's model servers watch it, and whether they may roll it back.

    - ``window_seconds``: the rolling window statistics cover (and the
      debounce: one alert of a kind per window);
    - ``psi`` / ``ks``: drift thresholds (None: the version's statistics
      file's, else its model's production policy's ``drift_thresholds``, else
      :class:`DriftThresholds`' defaults);
    - ``error_rate``: share of requests failing in the model (5xx) above which
      the deployment is degraded; ``latency_p99_ms``: the window's 99th
      percentile latency above which it is (None: latency is not judged);
    - ``min_requests``: fewer requests in the window judge nothing;
    - ``rollback``: roll the followed alias back when the deployment stays
      degraded for ``rollback_after_seconds``.
    """

    window_seconds: float = 300.0
    psi: float | None = None
    ks: float | None = None
    error_rate: float = 0.05
    latency_p99_ms: float | None = None
    min_requests: int = 20
    rollback: bool = False
    rollback_after_seconds: float = 300.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (every field)."""
        return {
            "window_seconds": self.window_seconds,
            "psi": self.psi,
            "ks": self.ks,
            "error_rate": self.error_rate,
            "latency_p99_ms": self.latency_p99_ms,
            "min_requests": self.min_requests,
            "rollback": self.rollback,
            "rollback_after_seconds": self.rollback_after_seconds,
        }


MIN_WINDOW_SECONDS: Final = 1.0
MAX_WINDOW_SECONDS: Final = 7 * 86_400.0


def _settings_bad(message: str, field_name: str) -> InvalidInput:
    return InvalidInput(message, code="INVALID_DEPLOYMENT", details={"field": field_name})


def _seconds(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not MIN_WINDOW_SECONDS <= value <= MAX_WINDOW_SECONDS
    ):
        raise _settings_bad(
            f"monitoring.{key} must be {MIN_WINDOW_SECONDS:g} to {MAX_WINDOW_SECONDS:g} seconds",
            f"monitoring.{key}",
        )
    return float(value)


def _optional_positive(raw: Mapping[str, Any], key: str, upper: float | None) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
        or (upper is not None and value > upper)
    ):
        bound = "" if upper is None else f" up to {upper:g}"
        raise _settings_bad(f"monitoring.{key} must be a positive number{bound}", key)
    return float(value)


def parse_monitor_settings(raw: Any) -> MonitorSettings:
    """A deployment's ``monitoring`` object, checked (unknown keys refused)."""
    if not isinstance(raw, Mapping):
        raise _settings_bad("monitoring must be an object", "monitoring")
    known = set(MonitorSettings().to_dict())
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise _settings_bad(
            f"unknown monitoring setting(s): {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})",
            "monitoring",
        )
    base = MonitorSettings()
    error_rate = raw.get("error_rate", base.error_rate)
    if isinstance(error_rate, bool) or not isinstance(error_rate, int | float):
        error_rate = -1
    if not 0 < error_rate <= 1:
        raise _settings_bad("monitoring.error_rate must be in (0, 1]", "monitoring.error_rate")
    min_requests = raw.get("min_requests", base.min_requests)
    if isinstance(min_requests, bool) or not isinstance(min_requests, int):
        min_requests = 0
    if not 1 <= min_requests <= 1_000_000:
        raise _settings_bad(
            "monitoring.min_requests must be 1 to 1000000", "monitoring.min_requests"
        )
    rollback = raw.get("rollback", base.rollback)
    if not isinstance(rollback, bool):
        raise _settings_bad("monitoring.rollback must be true or false", "monitoring.rollback")
    return MonitorSettings(
        window_seconds=_seconds(raw, "window_seconds", base.window_seconds),
        psi=_optional_positive(raw, "psi", None),
        ks=_optional_positive(raw, "ks", 1.0),
        error_rate=float(error_rate),
        latency_p99_ms=_optional_positive(raw, "latency_p99_ms", None),
        min_requests=min_requests,
        rollback=rollback,
        rollback_after_seconds=_seconds(raw, "rollback_after_seconds", base.rollback_after_seconds),
    )
