"""Input checks shared by the service's use cases (pure functions)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from modelyard.domain.entities import FileEntry
from modelyard.domain.errors import InvalidInput, PayloadTooLarge
from modelyard.domain.names import (
    validate_digest,
    validate_file_path,
    validate_key,
    validate_tag_value,
)

_MEDIA_TYPE_RE = re.compile(r"^[\w.+-]+/[\w.+-]+(;[\w .=+-]*)?$")
_SHORT_TEXT_RE = re.compile(r"^[\w.+:/@-]{1,64}$")
_RELATION_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MAX_DESCRIPTION = 64 * 1024
MAX_KV_ITEMS = 1000


def check_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    """Validate a tag map (string keys and values)."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidInput("tags must be an object of strings", code="INVALID_TAG")
    if len(tags) > MAX_KV_ITEMS:
        raise PayloadTooLarge(f"at most {MAX_KV_ITEMS} tags", details={"field": "tags"})
    out: dict[str, str] = {}
    for k, v in tags.items():
        validate_key(k, kind="tag")
        out[k] = validate_tag_value(v)
    return out


def check_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """Validate metrics: finite numbers."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise InvalidInput("metrics must be an object of numbers", code="INVALID_METRIC")
    if len(metrics) > MAX_KV_ITEMS:
        raise PayloadTooLarge(f"at most {MAX_KV_ITEMS} metrics", details={"field": "metrics"})
    out: dict[str, float] = {}
    for k, v in metrics.items():
        validate_key(k, kind="metric")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise InvalidInput(
                f"metric {k!r} must be a finite number", code="INVALID_METRIC", details={"key": k}
            )
        out[k] = float(v)
    return out


def check_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Validate params: scalar values, stored as text."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidInput("params must be an object", code="INVALID_PARAM")
    if len(params) > MAX_KV_ITEMS:
        raise PayloadTooLarge(f"at most {MAX_KV_ITEMS} params", details={"field": "params"})
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


def check_metadata(meta: Any) -> dict[str, Any]:
    """Custom metadata is a JSON object with valid top-level keys."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise InvalidInput("metadata must be a JSON object", code="INVALID_METADATA")
    for k in meta:
        validate_key(k, kind="metadata")
    check_json_integers(meta, "metadata")
    return meta


def check_description(text: str | None) -> str:
    """Descriptions are bounded free text."""
    text = text or ""
    if not isinstance(text, str):
        raise InvalidInput("description must be a string", code="INVALID_INPUT")
    if len(text) > MAX_DESCRIPTION:
        raise PayloadTooLarge("description too long", details={"field": "description"})
    return text


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
    """Lineage relation such as ``converted``, ``quantized``, ``finetuned``."""
    if value is None:
        return None
    if not isinstance(value, str) or not _RELATION_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid relation {value!r}", code="INVALID_INPUT", details={"field": "relation"}
        )
    return value


def check_signature(sig: Any) -> dict[str, Any] | None:
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
    check_json_integers(sig, "signature")
    return sig


def check_datasets(datasets: Any) -> list[Any]:
    """Dataset references: strings or objects. Never dereferenced."""
    if datasets is None:
        return []
    if not isinstance(datasets, list) or len(datasets) > MAX_KV_ITEMS:
        raise InvalidInput(
            "datasets must be a list", code="INVALID_INPUT", details={"field": "datasets"}
        )
    for d in datasets:
        if not isinstance(d, str | dict):
            raise InvalidInput(
                "each dataset is a string or an object",
                code="INVALID_INPUT",
                details={"field": "datasets"},
            )
    check_json_integers(datasets, "datasets")
    return datasets


def check_files(entries: Any, *, max_files: int) -> list[FileEntry]:
    """Validate a manifest: safe unique paths, sha256 digests, sizes, media types."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise InvalidInput("files must be a list", code="INVALID_MANIFEST")
    if len(entries) > max_files:
        raise PayloadTooLarge(
            f"at most {max_files} files per version", details={"field": "files", "limit": max_files}
        )
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
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput(
                f"invalid size for {path!r}", code="INVALID_MANIFEST", details={"path": path}
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


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_json_integers(value: Any, field: str) -> None:
    """Refuse integers outside 64 bits anywhere in a JSON value: the event
    encoder (and PostgreSQL's jsonb consumers) cannot hold them, so they
    answered 500. Walked without recursion (nesting depth is bounded elsewhere)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif (
            isinstance(item, int)
            and not isinstance(item, bool)
            and not INT64_MIN <= item <= INT64_MAX
        ):
            raise InvalidInput(
                f"{field} holds an integer beyond 64 bits",
                code="INVALID_INPUT",
                details={"field": field},
            )
