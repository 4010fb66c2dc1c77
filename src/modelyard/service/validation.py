"""Input checks shared by the service's use cases (pure functions)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson

from modelyard.domain.entities import FileEntry, Relation
from modelyard.domain.errors import InvalidInput
from modelyard.domain.names import (
    validate_digest,
    validate_file_path,
    validate_key,
    validate_tag_value,
)

_MEDIA_TYPE_RE = re.compile(r"^[\w.+-]+/[\w.+-]+(;[\w .=+-]*)?$")
_SHORT_TEXT_RE = re.compile(r"^[\w.+:/@-]{1,64}$")
MAX_DESCRIPTION = 64 * 1024
MAX_FILE_SIZE = (1 << 63) - 1
"""Sizes are 64-bit signed integers in both databases (BIGINT)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """How much one request may store; see the README's "Limits" section.

    Over a limit is ``400`` with a stable code: ``TOO_MANY_ITEMS``,
    ``VALUE_TOO_LARGE`` or ``NESTING_TOO_DEEP``, ``details`` naming the
    field and the limit. (A body over ``max_json_body`` is ``413`` before
    any of this runs.)
    """

    max_map_keys: int = 1000
    """Entries of a tags, metrics or params map, keys of any metadata object,
    items of ``delete_tags`` and of ``datasets``."""
    max_metadata_bytes: int = 256 * 1024
    """Metadata, signature and datasets, each as compact JSON."""
    max_metadata_depth: int = 32
    """Nesting of objects and arrays in metadata, signature and datasets (the
    value itself is level 1). The JSON encoder that writes events stops at
    255 levels: metadata deeper than that was a 500 (issue 9)."""


DEFAULT_LIMITS = Limits()
_CONTAINERS = (dict, list, tuple)


def too_many(field: str, limit: int) -> InvalidInput:
    """The error of a map or list over its count limit."""
    return InvalidInput(
        f"{field}: at most {limit} items",
        code="TOO_MANY_ITEMS",
        details={"field": field, "limit": limit},
    )


def too_large(field: str, limit: int, unit: str = "bytes") -> InvalidInput:
    """The error of a value over its size limit."""
    return InvalidInput(
        f"{field}: at most {limit} {unit}",
        code="VALUE_TOO_LARGE",
        details={"field": field, "limit": limit},
    )


def check_tags(tags: Mapping[str, Any] | None, limits: Limits = DEFAULT_LIMITS) -> dict[str, str]:
    """Validate a tag map (string keys and values)."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidInput("tags must be an object of strings", code="INVALID_TAG")
    if len(tags) > limits.max_map_keys:
        raise too_many("tags", limits.max_map_keys)
    out: dict[str, str] = {}
    for k, v in tags.items():
        validate_key(k, kind="tag")
        out[k] = validate_tag_value(v)
    return out


def check_metrics(
    metrics: Mapping[str, Any] | None, limits: Limits = DEFAULT_LIMITS
) -> dict[str, float]:
    """Validate metrics: finite numbers."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise InvalidInput("metrics must be an object of numbers", code="INVALID_METRIC")
    if len(metrics) > limits.max_map_keys:
        raise too_many("metrics", limits.max_map_keys)
    out: dict[str, float] = {}
    for k, v in metrics.items():
        validate_key(k, kind="metric")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise InvalidInput(
                f"metric {k!r} must be a finite number", code="INVALID_METRIC", details={"key": k}
            )
        out[k] = float(v)
    return out


def check_params(
    params: Mapping[str, Any] | None, limits: Limits = DEFAULT_LIMITS
) -> dict[str, str]:
    """Validate params: scalar values, stored as text."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidInput("params must be an object", code="INVALID_PARAM")
    if len(params) > limits.max_map_keys:
        raise too_many("params", limits.max_map_keys)
    out: dict[str, str] = {}
    for k, v in params.items():
        validate_key(k, kind="param")
        if isinstance(v, bool):
            v = str(v).lower()
        elif isinstance(v, int | float):
            v = repr(v) if isinstance(v, float) else str(v)
        if not isinstance(v, str):
            raise InvalidInput(
                f"param {k!r} must be a string or number", code="INVALID_PARAM", details={"key": k}
            )
        out[k] = validate_tag_value(v)
    return out


def _walk_json(value: Any, field: str, depth_limit: int, max_keys: int) -> None:
    """Depth and keys per object of a JSON value, level by level: a recursive
    walk would itself be what deep input breaks."""
    level: list[Any] = [value] if isinstance(value, _CONTAINERS) else []
    depth = 1
    while level:
        if depth > depth_limit:
            raise InvalidInput(
                f"{field}: nested deeper than {depth_limit} levels",
                code="NESTING_TOO_DEEP",
                details={"field": field, "limit": depth_limit},
            )
        below: list[Any] = []
        for node in level:
            if isinstance(node, dict):
                if len(node) > max_keys:
                    raise too_many(field, max_keys)
                below.extend(x for x in node.values() if isinstance(x, _CONTAINERS))
            else:
                below.extend(x for x in node if isinstance(x, _CONTAINERS))
        level = below
        depth += 1


def check_json(value: Any, field: str, limits: Limits = DEFAULT_LIMITS) -> None:
    """A JSON value a client chose (metadata, a signature, datasets) within the
    limits: depth, keys per object, size as compact JSON; and writable as JSON
    (string keys, Unicode text, integers within 64 bits)."""
    if not value:
        return
    depth_limit = limits.max_metadata_depth
    max_keys = limits.max_map_keys
    try:
        encoded: bytes | None = orjson.dumps(value)
    except TypeError as exc:  # a lone surrogate, an integer beyond 64 bits, ...
        if "Recursion" not in str(exc):
            raise InvalidInput(
                f"{field} cannot be written as JSON: {exc}",
                code="INVALID_JSON",
                details={"field": field},
            ) from None
        encoded = None  # deeper than the encoder goes: the walk below says so
    # Brackets bound the depth and colons the keys of any one object from
    # above, so the usual small value needs no walk (a walk cost ~10 us).
    if (
        encoded is None
        or encoded.count(b"[") + encoded.count(b"{") > depth_limit
        or encoded.count(b":") > max_keys
    ):
        _walk_json(value, field, depth_limit, max_keys)
    if encoded is None:
        raise InvalidInput(
            f"{field} is nested too deep to write",
            code="NESTING_TOO_DEEP",
            details={"field": field, "limit": depth_limit},
        )
    size = len(encoded)
    if size > limits.max_metadata_bytes:
        raise too_large(field, limits.max_metadata_bytes)


def check_metadata(meta: Any, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Custom metadata is a JSON object with valid top-level keys, within the limits."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise InvalidInput("metadata must be a JSON object", code="INVALID_METADATA")
    if len(meta) > limits.max_map_keys:
        raise too_many("metadata", limits.max_map_keys)
    for k in meta:
        validate_key(k, kind="metadata")
    check_json(meta, "metadata", limits)
    return meta


def check_delete_tags(keys: Sequence[Any], limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """Tag keys to remove: a bounded list."""
    if len(keys) > limits.max_map_keys:
        raise too_many("delete_tags", limits.max_map_keys)
    return [str(k) for k in keys]


def check_description(text: str | None) -> str:
    """Descriptions are bounded free text."""
    text = text or ""
    if not isinstance(text, str):
        raise InvalidInput("description must be a string", code="INVALID_INPUT")
    if len(text) > MAX_DESCRIPTION:
        raise too_large("description", MAX_DESCRIPTION, "characters")
    if not _encodable(text):
        raise InvalidInput("description has a lone UTF-16 surrogate", code="INVALID_INPUT")
    return text


def _encodable(text: str) -> bool:
    """True unless ``text`` holds a lone surrogate (only Python callers can
    pass one; the HTTP door refuses it in the JSON text)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_short(value: str | None, field: str) -> str | None:
    """Framework and format names: short identifiers like ``pytorch`` or ``onnx``."""
    if value is None:
        return None
    if not isinstance(value, str) or not _SHORT_TEXT_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid {field} {value!r}", code="INVALID_INPUT", details={"field": field}
        )
    return value.lower() if field in ("framework", "format") else value


def check_relation(value: str | None) -> str | None:
    """Lineage relation: one of :class:`~modelyard.domain.entities.Relation`."""
    if value is None:
        return None
    allowed = [r.value for r in Relation]
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInput(
            f"invalid relation {str(value)[:40]!r}; relations are " + ", ".join(allowed),
            code="INVALID_RELATION",
            details={"field": "relation", "allowed": allowed},
        )
    return value


def check_recipe(recipe: Any, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any] | None:
    """How a variant was made: ``{"tool", "tool_version"?, "options"?}``.

    ``tool`` and ``tool_version`` are short identifiers (``skl2onnx``,
    ``1.17.0``); ``options`` is a JSON object within the metadata limits.
    """
    if recipe is None:
        return None
    if not isinstance(recipe, dict):
        raise InvalidInput("recipe must be an object", code="INVALID_RECIPE")
    unknown = sorted(set(recipe) - {"tool", "tool_version", "options"})
    if unknown:
        raise InvalidInput(
            f"recipe has unknown fields {unknown}; it takes tool, tool_version, options",
            code="INVALID_RECIPE",
            details={"fields": unknown},
        )
    out: dict[str, Any] = {}
    for key in ("tool", "tool_version"):
        value = recipe.get(key)
        if value is None:
            if key == "tool":
                raise InvalidInput("recipe.tool is required", code="INVALID_RECIPE")
            continue
        if not isinstance(value, str) or not _SHORT_TEXT_RE.fullmatch(value):
            raise InvalidInput(
                f"recipe.{key} must be a short name, got {str(value)[:40]!r}",
                code="INVALID_RECIPE",
                details={"field": f"recipe.{key}"},
            )
        out[key] = value
    options = recipe.get("options")
    if options is not None:
        if not isinstance(options, dict):
            raise InvalidInput("recipe.options must be an object", code="INVALID_RECIPE")
        check_json(options, "recipe.options", limits)
        out["options"] = options
    return out


def check_metric_delta(delta: Any, limits: Limits = DEFAULT_LIMITS) -> dict[str, float] | None:
    """A metric delta against the parent: finite numbers by metric key."""
    if delta is None:
        return None
    try:
        return check_metrics(delta, limits)
    except InvalidInput as exc:
        raise InvalidInput(
            "metric_delta " + exc.message, code="INVALID_METRIC_DELTA", details=exc.details
        ) from None


def check_signature(sig: Any, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any] | None:
    """A signature is an object with optional ``inputs`` / ``outputs`` lists."""
    if sig is None:
        return None
    if not isinstance(sig, dict):
        raise InvalidInput("signature must be an object", code="INVALID_SIGNATURE")
    for part in ("inputs", "outputs"):
        if part in sig and not isinstance(sig[part], list | dict):
            raise InvalidInput(
                f"signature.{part} must be a list or object", code="INVALID_SIGNATURE"
            )
    check_json(sig, "signature", limits)
    return sig


def check_datasets(datasets: Any, limits: Limits = DEFAULT_LIMITS) -> list[Any]:
    """Dataset references: strings or objects. Never dereferenced."""
    if datasets is None:
        return []
    if not isinstance(datasets, list):
        raise InvalidInput(
            "datasets must be a list", code="INVALID_INPUT", details={"field": "datasets"}
        )
    if len(datasets) > limits.max_map_keys:
        raise too_many("datasets", limits.max_map_keys)
    for d in datasets:
        if not isinstance(d, str | dict):
            raise InvalidInput(
                "each dataset is a string or an object",
                code="INVALID_INPUT",
                details={"field": "datasets"},
            )
    check_json(datasets, "datasets", limits)
    return datasets


def check_files(entries: Any, *, max_files: int) -> list[FileEntry]:
    """Validate a manifest: safe unique paths, sha256 digests, sizes, media types."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise InvalidInput("files must be a list", code="INVALID_MANIFEST")
    if len(entries) > max_files:
        raise too_many("files", max_files)
    seen: set[str] = set()
    folded: set[str] = set()
    out: list[FileEntry] = []
    for e in entries:
        path: Any
        digest: Any
        size: Any
        media: Any
        if isinstance(e, FileEntry):
            path, digest, size, media = e.path, e.digest, e.size, e.media_type
        elif isinstance(e, Mapping):
            path, digest, size = e.get("path"), e.get("digest"), e.get("size")
            media = e.get("media_type") or "application/octet-stream"
        else:
            raise InvalidInput("each file is an object", code="INVALID_MANIFEST")
        validate_file_path(path)
        if isinstance(digest, str) and digest.startswith("sha256:"):
            digest = digest[len("sha256:") :]
        validate_digest(digest)
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_FILE_SIZE:
            raise InvalidInput(
                f"invalid size for {path!r}: an integer from 0 to 2^63-1",
                code="INVALID_MANIFEST",
                details={"path": path},
            )
        if not isinstance(media, str) or not _MEDIA_TYPE_RE.fullmatch(media) or len(media) > 255:
            raise InvalidInput(
                f"invalid media type for {path!r}", code="INVALID_MANIFEST", details={"path": path}
            )
        assert isinstance(path, str) and isinstance(digest, str)
        if path in seen:
            raise InvalidInput(
                f"duplicate path {path!r}", code="INVALID_MANIFEST", details={"path": path}
            )
        # Paths that differ only by case would collide on case-insensitive disks
        # when pulled, so they are refused too.
        if path.casefold() in folded:
            raise InvalidInput(
                f"path {path!r} differs from another only by case",
                code="INVALID_MANIFEST",
                details={"path": path},
            )
        seen.add(path)
        folded.add(path.casefold())
        out.append(FileEntry(path, digest, size, media))
    # A file and a directory of the same name cannot both be pulled.
    for p in seen:
        parts = p.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in seen:
                raise InvalidInput(
                    f"path {p!r} is inside a file of the same name",
                    code="INVALID_MANIFEST",
                    details={"path": p},
                )
    return out


MAX_SOURCE_URI = 4096
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_REFUSED_SCHEMES = frozenset({"file", "local"})


def check_source_uri(value: Any, field: str = "source") -> str:
    """A model source URI that is recorded as text and never read by the server.

    MLflow clients name where a version's files came from (``runs:/<id>/model``,
    ``models:/m-...``, ``mlflow-artifacts:/...``, ``s3://...``). The registry
    keeps that text as lineage; a source that names the server's own file
    system, or that could once something resolves it, is refused here with
    ``INVALID_SOURCE`` (MLflow's own CVE history is the list): a URI without
    a scheme (``/abs/path``, ``../x``, ``//proc/self/root``), a ``file:``
    URI, a drive letter, a backslash, a control character or NUL, and a
    ``..`` path segment, also when percent-encoded once or more
    (``%2e%2e``, ``%252e%252e``).
    """
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{field} must be a non-empty string", code="INVALID_SOURCE")
    if len(value) > MAX_SOURCE_URI:
        raise too_large(field, MAX_SOURCE_URI, "characters")

    def refuse(reason: str) -> InvalidInput:
        return InvalidInput(
            f"invalid {field} {value[:200]!r}: {reason}",
            code="INVALID_SOURCE",
            details={"field": field, "reason": reason},
        )

    text = value
    # Decode until stable (bounded): each layer of percent-encoding gets the checks.
    for _ in range(4):
        if "\\" in text:
            raise refuse("backslashes are not allowed")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise refuse("control characters (and NUL) are not allowed")
        path = text.split("?", 1)[0]
        if any(seg == ".." for seg in re.split(r"[/#]", path)):
            raise refuse("'..' path segments are not allowed")
        decoded = _percent_decoded(text)
        if decoded == text:
            break
        text = decoded
    else:
        raise refuse("too many layers of percent-encoding")
    m = _SCHEME_RE.match(value)
    if m is None:
        raise refuse("a source is a URI with a scheme (runs:/, models:/, s3://, ...), not a path")
    scheme = m.group(1).lower()
    if len(scheme) == 1:
        raise refuse("a drive letter is a local path, not a URI")
    if scheme in _REFUSED_SCHEMES:
        raise refuse(f"{scheme}: URIs name the server's own file system")
    return value


def _percent_decoded(text: str) -> str:
    """``text`` with one layer of %XX escapes decoded (invalid escapes kept)."""
    return unquote(text, errors="surrogateescape")
