"""Governance policies: what a version needs before it is published or receives
a protected alias (issue 3). Pure: parse, merge, evaluate, and express as a
search filter. Storage and enforcement live in ``service/governance.py``.

A policy is a set of optional rules; an unset rule (``None``) is inherited
(see :func:`merge_policies`) or, at the top, means "no requirement"::

    required_tags       {"encrypted": "true", "reviewed": None}   value, or None = key present
    required_metadata   ["owner"]                                  top-level keys present
    require_signature   true                                       a non-empty signature
    metric_thresholds   ["metrics.accuracy >= 0.92"]               also {"metric","op","value"}
    allowed_formats     ["onnx", "tflite"]                         the version's format is one of
    required_approvals  1                                          approvals by others
    protected_aliases   ["production"]                             moves need this policy to pass
    compatible_signature true                                      a protected alias moves only
                                                                   to a version whose signature
                                                                   is compatible with its target's
    allow_custom_code   true                                       model servers may run a
                                                                   version's own Python code
    bundle_breaks       "refuse" (default) or "flag"               what a model alias move that
                                                                   breaks one of the namespace's
                                                                   bundles does (issue 14)
    drift_thresholds    {"psi": 0.1, "ks": 0.15}                   model servers' drift alerts
                                                                   (either key may be left out)

Merge rule (namespace policy, then model policy): the model policy extends
the namespace policy and overrides it rule by rule where both speak:

- ``required_tags``: per key; the model's requirement for a key replaces the
  namespace's for that key, other keys of both apply.
- ``metric_thresholds``: per metric; the model's thresholds on a metric replace
  the namespace's on that metric, other metrics of both apply.
- ``required_metadata``, ``protected_aliases``: union.
- ``require_signature``, ``allowed_formats``, ``required_approvals``,
  ``compatible_signature``: the model's value when it sets one, else the
  namespace's.

``compatible_signature`` (issue 14) compares the candidate's signature with
that of the version the protected alias points at now, by the bundle rules
(:func:`~modelyard.domain.bundles.compare_signatures`): the same inputs with
the same dtypes and compatible shapes (an added *optional* input is fine),
the same outputs with the same dtypes and shapes. Like approvals it is about
a transition, not about visibility: it has no part in the production view.

- ``drift_thresholds``: per key (``psi``, ``ks``); the model's value for a
  key replaces the namespace's. Not a requirement either: it is what model
  servers compare a version's input drift against when the version's own
  statistics file sets no thresholds (precedence: the deployment's monitoring
  settings, then the version's statistics file, then this policy, then the
  defaults PSI 0.2 and KS 0.2).

- ``allow_custom_code`` is not a requirement on versions but a permission:
  only the namespace policy can grant it (true), and a model policy can only
  withdraw it for its model (false); unset means not allowed.

- ``bundle_breaks`` is about the namespace's *bundles*, not its versions: a
  namespace policy only (a model policy setting it is refused by the
  service). When a model alias that a bundle role follows is about to move to
  a version that breaks the bundle, ``refuse`` (the default) refuses the
  move; ``flag`` lets it happen and records the incompatibility on the
  bundle (``service/bundle_guard.py``).

Both policies are set by the namespace's admins (permissions are per
namespace), so a model policy may relax a namespace rule on purpose.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from modelyard.domain.bundles import compare_signatures
from modelyard.domain.entities import Version, VersionState
from modelyard.domain.errors import InvalidInput
from modelyard.domain.filters import And, Comparison, Field, Node
from modelyard.domain.names import (
    RESERVED_ALIASES,
    validate_alias,
    validate_key,
    validate_tag_value,
)

PRODUCTION: Final = "production"
PURPOSES: Final = frozenset({PRODUCTION})
THRESHOLD_OPS: Final = (">", ">=", "<", "<=", "=")
MAX_RULES: Final = 100
MAX_APPROVALS: Final = 10
CODE: Final = "INVALID_POLICY"

RULE_FIELDS: Final = (
    "required_tags",
    "required_metadata",
    "require_signature",
    "metric_thresholds",
    "allowed_formats",
    "required_approvals",
    "protected_aliases",
    "compatible_signature",
    "allow_custom_code",
    "bundle_breaks",
    "drift_thresholds",
)
# What a model alias move that breaks a bundle does, by the bundle's
# namespace policy: refused (the default), or applied and flagged.
BUNDLE_BREAK_MODES: Final = ("refuse", "flag")
DRIFT_KEYS: Final = ("psi", "ks")

_THRESHOLD_RE: Final = re.compile(
    r"^\s*(?:metrics?\.)?([A-Za-z0-9_][A-Za-z0-9_.:/-]{0,254})\s*(>=|<=|==|=|>|<)\s*"
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*$"
)
_FORMAT_RE: Final = re.compile(r"^[\w.+:/@-]{1,64}$")


@dataclass(frozen=True, slots=True)
class MetricThreshold:
    """``metrics.<metric> <op> <value>``."""

    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"metrics.{self.metric} {self.op} {self.value:g}"

    def holds(self, actual: float) -> bool:
        """True when ``actual`` satisfies the threshold."""
        return {
            ">": actual > self.value,
            ">=": actual >= self.value,
            "<": actual < self.value,
            "<=": actual <= self.value,
            "=": actual == self.value,
        }[self.op]


@dataclass(frozen=True, slots=True)
class Policy:
    """A policy's rules; ``None`` means "not set here" (inherit / no requirement)."""

    required_tags: Mapping[str, str | None] | None = None
    required_metadata: tuple[str, ...] | None = None
    require_signature: bool | None = None
    metric_thresholds: tuple[MetricThreshold, ...] | None = None
    allowed_formats: tuple[str, ...] | None = None
    required_approvals: int | None = None
    protected_aliases: tuple[str, ...] | None = None
    compatible_signature: bool | None = None
    allow_custom_code: bool | None = None
    bundle_breaks: str | None = None
    drift_thresholds: Mapping[str, float] | None = None
    """``{"psi": x, "ks": y}`` (either key may be missing): model servers' drift thresholds."""

    @property
    def approvals_needed(self) -> int:
        """Distinct approvals a gated transition needs (0 when unset)."""
        return self.required_approvals or 0

    @property
    def flags_bundle_breaks(self) -> bool:
        """True if a move breaking a bundle of this namespace is let through
        and flagged rather than refused (``bundle_breaks: flag``)."""
        return self.bundle_breaks == "flag"

    def protects(self, alias: str) -> bool:
        """True if moving ``alias`` is gated by this policy."""
        return alias in (self.protected_aliases or ())

    def to_dict(self) -> dict[str, Any]:
        """The wire shape (every rule, ``null`` when unset)."""
        return {
            "required_tags": None if self.required_tags is None else dict(self.required_tags),
            "required_metadata": _list(self.required_metadata),
            "require_signature": self.require_signature,
            "metric_thresholds": None
            if self.metric_thresholds is None
            else [
                {"metric": m.metric, "op": m.op, "value": m.value, "text": str(m)}
                for m in self.metric_thresholds
            ],
            "allowed_formats": _list(self.allowed_formats),
            "required_approvals": self.required_approvals,
            "protected_aliases": _list(self.protected_aliases),
            "compatible_signature": self.compatible_signature,
            "allow_custom_code": self.allow_custom_code,
            "bundle_breaks": self.bundle_breaks,
            "drift_thresholds": None
            if self.drift_thresholds is None
            else dict(self.drift_thresholds),
        }


def _list(items: tuple[str, ...] | None) -> list[str] | None:
    return None if items is None else list(items)


@dataclass(frozen=True, slots=True)
class Violation:
    """One unmet rule, readable (``message``) and structured (the other fields)."""

    rule: str
    message: str
    key: str | None = None
    expected: Any = None
    actual: Any = None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape used in ``POLICY_VIOLATION`` details and the dry-run answer."""
        return {
            "rule": self.rule,
            "key": self.key,
            "expected": self.expected,
            "actual": self.actual,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The result of checking one version against a policy."""

    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No rule is unmet."""
        return not self.violations

    @property
    def only_approvals_missing(self) -> bool:
        """Every unmet rule is the approval rule (so: request an approval)."""
        return bool(self.violations) and all(v.rule == "approvals" for v in self.violations)


# -- parsing ------------------------------------------------------------------


def _bad(message: str, rule: str) -> InvalidInput:
    return InvalidInput(message, code=CODE, details={"rule": rule})


def _strings(value: Any, rule: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise _bad(f"{rule} must be a list of strings", rule)
    if len(value) > MAX_RULES:
        raise _bad(f"{rule} has more than {MAX_RULES} entries", rule)
    return list(dict.fromkeys(value))


def _parse_tags(value: Any) -> dict[str, str | None]:
    """A map ``{key: value | null}`` or a list of ``"key=value"`` / ``"key"``."""
    out: dict[str, str | None] = {}
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list):
        items = []
        for item in _strings(value, "required_tags"):
            k, eq, v = item.partition("=")
            items.append((k.strip(), v if eq else None))
    else:
        raise _bad("required_tags must be an object or a list of 'key=value'", "required_tags")
    if len(items) > MAX_RULES:
        raise _bad(f"required_tags has more than {MAX_RULES} entries", "required_tags")
    for k, v in items:
        try:
            validate_key(k, kind="tag")
            out[k] = None if v is None else validate_tag_value(v)
        except InvalidInput as exc:
            raise _bad(f"required_tags: {exc.message}", "required_tags") from None
    return out


def parse_threshold(value: Any) -> MetricThreshold:
    """``"metrics.accuracy >= 0.92"`` (prefix optional) or ``{"metric", "op", "value"}``."""
    metric: Any
    op: Any
    number: float
    if isinstance(value, str):
        m = _THRESHOLD_RE.fullmatch(value)
        if m is None:
            raise _bad(
                f"invalid metric threshold {value[:80]!r}: write e.g. 'metrics.accuracy >= 0.92' "
                "with one of >, >=, <, <=, =",
                "metric_thresholds",
            )
        metric, op, number = m.group(1), m.group(2), float(m.group(3))
    elif isinstance(value, Mapping):
        metric, op, raw = value.get("metric"), value.get("op"), value.get("value")
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _bad("a metric threshold's value must be a number", "metric_thresholds")
        try:
            number = float(raw)
        except OverflowError:  # an integer beyond any float
            raise _bad("a metric threshold must be finite", "metric_thresholds") from None
    else:
        raise _bad("a metric threshold is a string or an object", "metric_thresholds")
    op = "=" if op == "==" else op
    if op not in THRESHOLD_OPS:
        raise _bad(
            f"threshold operator must be one of {', '.join(THRESHOLD_OPS)}", "metric_thresholds"
        )
    try:
        validate_key(metric, kind="metric")
    except InvalidInput as exc:
        raise _bad(exc.message, "metric_thresholds") from None
    if not math.isfinite(number):
        raise _bad("a metric threshold must be finite", "metric_thresholds")
    return MetricThreshold(metric, op, number)


def _parse_drift(value: Any) -> dict[str, float]:
    """``{"psi": x, "ks": y}``: PSI above 0, KS in (0, 1]; either may be left out."""
    rule = "drift_thresholds"
    if not isinstance(value, Mapping) or not value:
        raise _bad('drift_thresholds is an object such as {"psi": 0.1, "ks": 0.15}', rule)
    unknown = sorted(str(k)[:40] for k in value if k not in DRIFT_KEYS)
    if unknown:
        raise _bad(f"drift_thresholds: unknown key(s) {', '.join(unknown)} (psi, ks)", rule)
    out: dict[str, float] = {}
    for key in DRIFT_KEYS:
        if key not in value:
            continue
        raw = value[key]
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _bad(f"drift_thresholds.{key} must be a number", rule)
        number = float(raw)
        upper = 1.0 if key == "ks" else math.inf
        if not math.isfinite(number) or not 0 < number <= upper:
            bound = "in (0, 1]" if key == "ks" else "a positive number"
            raise _bad(f"drift_thresholds.{key} must be {bound}", rule)
        out[key] = number
    return out


def parse_policy(data: Any) -> Policy:
    """Validate a policy from its JSON shape; ``INVALID_POLICY`` on any problem.

    Unknown keys are refused so that a typo never silently weakens a policy.
    """
    if not isinstance(data, Mapping):
        raise _bad("a policy is a JSON object", "policy")
    unknown = sorted(set(data) - set(RULE_FIELDS))
    if unknown:
        raise InvalidInput(
            f"unknown policy rule(s): {', '.join(map(str, unknown))[:200]}",
            code=CODE,
            details={"unknown": [str(u)[:80] for u in unknown[:20]], "allowed": list(RULE_FIELDS)},
        )
    kw: dict[str, Any] = {}
    if data.get("required_tags") is not None:
        kw["required_tags"] = _parse_tags(data["required_tags"])
    if data.get("required_metadata") is not None:
        keys = _strings(data["required_metadata"], "required_metadata")
        for k in keys:
            try:
                validate_key(k, kind="metadata")
            except InvalidInput as exc:
                raise _bad(f"required_metadata: {exc.message}", "required_metadata") from None
        kw["required_metadata"] = tuple(keys)
    if data.get("allow_custom_code") is not None:
        if not isinstance(data["allow_custom_code"], bool):
            raise _bad("allow_custom_code must be true or false", "allow_custom_code")
        kw["allow_custom_code"] = data["allow_custom_code"]
    if data.get("require_signature") is not None:
        if not isinstance(data["require_signature"], bool):
            raise _bad("require_signature must be true or false", "require_signature")
        kw["require_signature"] = data["require_signature"]
    if data.get("metric_thresholds") is not None:
        raw = data["metric_thresholds"]
        if not isinstance(raw, list) or len(raw) > MAX_RULES:
            raise _bad(f"metric_thresholds must be a list of at most {MAX_RULES}", "metric")
        kw["metric_thresholds"] = tuple(dict.fromkeys(parse_threshold(x) for x in raw))
    if data.get("allowed_formats") is not None:
        formats = _strings(data["allowed_formats"], "allowed_formats")
        if not formats:
            raise _bad("allowed_formats must name at least one format", "allowed_formats")
        if not all(_FORMAT_RE.fullmatch(f) for f in formats):
            raise _bad("allowed_formats: invalid format name", "allowed_formats")
        kw["allowed_formats"] = tuple(dict.fromkeys(f.lower() for f in formats))
    if data.get("required_approvals") is not None:
        n = data["required_approvals"]
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_APPROVALS:
            raise _bad(f"required_approvals must be an integer 0..{MAX_APPROVALS}", "approvals")
        kw["required_approvals"] = n
    if data.get("protected_aliases") is not None:
        aliases = _strings(data["protected_aliases"], "protected_aliases")
        for a in aliases:
            try:
                validate_alias(a)
            except InvalidInput as exc:
                raise _bad(f"protected_aliases: {exc.message}", "protected_aliases") from None
            if a in RESERVED_ALIASES:
                raise _bad(f"alias {a!r} is reserved and cannot be protected", "protected")
        kw["protected_aliases"] = tuple(aliases)
    if data.get("drift_thresholds") is not None:
        kw["drift_thresholds"] = _parse_drift(data["drift_thresholds"])
    if data.get("compatible_signature") is not None:
        if not isinstance(data["compatible_signature"], bool):
            raise _bad("compatible_signature must be true or false", "compatible_signature")
        kw["compatible_signature"] = data["compatible_signature"]
    if data.get("bundle_breaks") is not None:
        if data["bundle_breaks"] not in BUNDLE_BREAK_MODES:
            raise _bad('bundle_breaks must be "refuse" or "flag"', "bundle_breaks")
        kw["bundle_breaks"] = data["bundle_breaks"]
    return Policy(**kw)


# -- merging ------------------------------------------------------------------


def merge_policies(namespace: Policy | None, model: Policy | None) -> Policy:
    """The effective policy of a model (see the module docstring for the rule)."""
    base = namespace or Policy()
    if model is None:
        return base
    tags: dict[str, str | None] | None = None
    if base.required_tags is not None or model.required_tags is not None:
        tags = {**(base.required_tags or {}), **(model.required_tags or {})}
    thresholds: tuple[MetricThreshold, ...] | None = None
    if base.metric_thresholds is not None or model.metric_thresholds is not None:
        overridden = {m.metric for m in model.metric_thresholds or ()}
        thresholds = tuple(
            [m for m in base.metric_thresholds or () if m.metric not in overridden]
            + list(model.metric_thresholds or ())
        )

    drift: dict[str, float] | None = None
    if base.drift_thresholds is not None or model.drift_thresholds is not None:
        drift = {**(base.drift_thresholds or {}), **(model.drift_thresholds or {})}

    def union(a: tuple[str, ...] | None, b: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if a is None and b is None:
            return None
        return tuple(dict.fromkeys([*(a or ()), *(b or ())]))

    def pick(a: Any, b: Any) -> Any:
        return a if b is None else b

    return replace(
        base,
        required_tags=tags,
        required_metadata=union(base.required_metadata, model.required_metadata),
        require_signature=pick(base.require_signature, model.require_signature),
        metric_thresholds=thresholds,
        allowed_formats=pick(base.allowed_formats, model.allowed_formats),
        required_approvals=pick(base.required_approvals, model.required_approvals),
        protected_aliases=union(base.protected_aliases, model.protected_aliases),
        compatible_signature=pick(base.compatible_signature, model.compatible_signature),
        drift_thresholds=drift,
        # Granted by the namespace only; a model can withdraw it, not grant it.
        allow_custom_code=(
            True
            if base.allow_custom_code is True and model.allow_custom_code is not False
            else (False if model.allow_custom_code is False else None)
        ),
    )


# -- evaluation ---------------------------------------------------------------


def signature_present(version: Version) -> bool:
    """A signature counts when it is a non-empty object."""
    return bool(version.signature)


def evaluate(
    policy: Policy,
    version: Version,
    *,
    approvals: int | None = 0,
    require_published: bool = False,
    replacing: Version | None = None,
    alias: str | None = None,
) -> Evaluation:
    """Every rule of ``policy`` that ``version`` does not meet, in a stable order.

    ``approvals`` is how many distinct approvals the transition has; ``None``
    leaves the approval rule out (an approval being applied, a dry run of the
    other rules, or visibility). ``require_published`` adds the rule that the
    version is published (for protected alias moves and visibility).
    ``replacing`` is the version the protected ``alias`` points at now: the
    ``compatible_signature`` rule compares against it (no rule without it).
    """
    out: list[Violation] = []
    if require_published and version.state is not VersionState.PUBLISHED:
        out.append(
            Violation(
                "published",
                f"version must be published (it is {version.state.value})",
                expected="published",
                actual=version.state.value,
            )
        )
    for key, want in sorted((policy.required_tags or {}).items()):
        have = version.tags.get(key)
        if want is None and have is None:
            out.append(Violation("required_tag", f"tag {key!r} is missing", key, None, None))
        elif want is not None and have != want:
            why = "it is missing" if have is None else f"it is {have!r}"
            out.append(
                Violation("required_tag", f"tag {key!r} must be {want!r} ({why})", key, want, have)
            )
    for key in policy.required_metadata or ():
        if key not in version.metadata:
            out.append(Violation("required_metadata", f"metadata key {key!r} is missing", key))
    if policy.require_signature and not signature_present(version):
        out.append(
            Violation("signature", "a signature (inputs/outputs schema) is required", None, True)
        )
    for m in policy.metric_thresholds or ():
        actual = version.metrics.get(m.metric)
        if actual is None:
            out.append(
                Violation("metric", f"metric {m.metric!r} is missing (needs {m})", m.metric, str(m))
            )
        elif not m.holds(actual):
            out.append(
                Violation("metric", f"{m} is not met (it is {actual:g})", m.metric, str(m), actual)
            )
    if policy.allowed_formats is not None and version.format not in policy.allowed_formats:
        out.append(
            Violation(
                "format",
                f"format must be one of {', '.join(policy.allowed_formats)} "
                f"(it is {version.format or 'not set'})",
                None,
                list(policy.allowed_formats),
                version.format,
            )
        )
    if policy.compatible_signature and replacing is not None and replacing.id != version.id:
        out.extend(signature_violations(version, replacing, alias))
    needed = policy.approvals_needed
    if approvals is not None and approvals < needed:
        out.append(
            Violation(
                "approvals",
                f"needs {needed} approval(s) from someone other than the requester "
                f"(has {approvals}); request an approval",
                None,
                needed,
                approvals,
            )
        )
    return Evaluation(out)


def signature_violations(
    version: Version, replacing: Version, alias: str | None
) -> list[Violation]:
    """The breaking changes from ``replacing``'s signature to ``version``'s,
    one violation each (``key``: the tensor). A version without a signature
    replacing one with a signature breaks every consumer's contract."""
    where = f"@{alias} " if alias else ""
    if replacing.signature and not version.signature:
        return [
            Violation(
                "compatible_signature",
                f"{version.ref} declares no signature, while {where}{replacing.ref} does",
                None,
                replacing.ref,
                None,
            )
        ]
    role = f"{version.model}{'@' + alias if alias else ''}"
    return [
        Violation(
            "compatible_signature",
            f"{m.problem} (against {where}{replacing.ref})",
            m.field,
            replacing.ref,
            version.ref,
        )
        for m in compare_signatures(role, replacing.signature, version.signature)
    ]


def visible(policy: Policy, version: Version) -> bool:
    """The production view: published and every content rule met (approvals and
    protected aliases are about transitions, not visibility)."""
    return evaluate(policy, version, approvals=None, require_published=True).ok


def policy_filter(policy: Policy) -> Node:
    """The visibility part of ``policy`` as a search filter over versions.

    Same answers as :func:`visible` (a test holds them equal), so the consumer
    view can be an indexed search instead of post-filtering.
    """
    terms: list[Node] = [Comparison(Field("attr", "state"), "=", VersionState.PUBLISHED.value)]
    for key, want in sorted((policy.required_tags or {}).items()):
        if want is None:
            terms.append(Comparison(Field("tag", key), "EXISTS", True))
        else:
            terms.append(Comparison(Field("tag", key), "=", want))
    for key in policy.required_metadata or ():
        terms.append(Comparison(Field("meta", key), "EXISTS", True))
    if policy.require_signature:
        terms.append(Comparison(Field("attr", "signature"), "EXISTS", True))
    for m in policy.metric_thresholds or ():
        terms.append(Comparison(Field("metric", m.metric), m.op, m.value))
    if policy.allowed_formats is not None:
        terms.append(Comparison(Field("attr", "format"), "IN", tuple(policy.allowed_formats)))
    return terms[0] if len(terms) == 1 else And(tuple(terms))
