"""Reading MLflow requests and writing MLflow answers, for every route of the door.

MLflow's client sends a GET's message as the query string (repeated keys for
lists, ``True``/``False`` for booleans, integers as text) and a POST, PATCH or
DELETE's message as a JSON object (int64 fields as JSON strings, the way
protobuf's JSON mapping writes them). :class:`Params` reads both the same way,
so a route says which fields it needs and never which transport brought them;
a missing or malformed field is ``INVALID_PARAMETER_VALUE`` (400), with
MLflow's wording, never a 500.

Answers are JSON objects in protobuf's JSON mapping: :func:`ok` renders one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from fastapi import Request
from starlette.responses import Response

from modelyard.api.responses import JSONResponse
from modelyard.domain.errors import InvalidInput

BODY_METHODS: Final = frozenset({"POST", "PATCH", "DELETE", "PUT"})
_TRUE: Final = frozenset({"true", "1"})
_FALSE: Final = frozenset({"false", "0"})


def invalid(message: str, **details: Any) -> InvalidInput:
    """An ``INVALID_PARAMETER_VALUE`` error (modelyard code ``INVALID_PARAMETER``)."""
    return InvalidInput(message, code="INVALID_PARAMETER", details=details)


def missing(name: str) -> InvalidInput:
    """MLflow's wording for a required field that is absent or empty."""
    return invalid(f"Missing value for required parameter '{name}'.", parameter=name)


class Params:
    """The fields of one MLflow request, from its query string or JSON body."""

    __slots__ = ("_lists", "_values")

    def __init__(self, values: Mapping[str, Any], lists: Mapping[str, list[str]] | None = None):
        self._values = values
        self._lists = lists or {}

    @classmethod
    async def of(cls, request: Request) -> Params:
        """Read ``request``: the JSON object body of a write, the query of a read.

        A write with an empty body reads as no fields (the client sends ``{}``
        for messages without fields, some callers send nothing).
        """
        if request.method in BODY_METHODS:
            raw = await request.body()
            if not raw.strip():
                return cls({})
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise invalid(f"the request body is not valid JSON: {exc}") from None
            if not isinstance(body, dict):
                raise invalid("the request body must be a JSON object")
            return cls(body)
        lists: dict[str, list[str]] = {}
        # What ``request.query_params`` parses, without building its multidict
        # (a tenth of a point read's CPU went to that object).
        query = request.scope.get("query_string", b"").decode("latin-1")
        for key, value in parse_qsl(query, keep_blank_values=True):
            lists.setdefault(key, []).append(value)
        return cls({k: v[-1] for k, v in lists.items()}, lists)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def raw(self, name: str) -> Any:
        """The field as sent (None when absent)."""
        return self._values.get(name)

    def text(self, name: str, default: str | None = None) -> str | None:
        """A string field (numbers are accepted as their text, as protobuf's JSON does)."""
        value = self._values.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise invalid(
                f"Invalid value for parameter '{name}': expected a string.", parameter=name
            )
        return str(value)

    def required_text(self, name: str) -> str:
        """A string field that must be present and not empty."""
        value = self.text(name)
        if value is None or value == "":
            raise missing(name)
        return value

    def integer(
        self,
        name: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        """An integer field, sent as a JSON number or as text."""
        value = self._values.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise invalid(f"Invalid value {value!r} for parameter '{name}': expected an integer.")
        try:
            number = int(value) if isinstance(value, int | str) else int("x")
        except ValueError:
            raise invalid(
                f"Invalid value {value!r} for parameter '{name}': expected an integer.",
                parameter=name,
            ) from None
        if minimum is not None and number < minimum:
            raise invalid(
                f"Invalid value {number} for parameter '{name}': it must be at least {minimum}.",
                parameter=name,
            )
        if maximum is not None and number > maximum:
            raise invalid(
                f"Invalid value {number} for parameter '{name}': it must be at most {maximum}.",
                parameter=name,
            )
        return number

    def boolean(self, name: str, default: bool = False) -> bool:
        """A boolean field (JSON ``true``/``false``, or ``True``/``true``/``1`` as text)."""
        value = self._values.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE:
            return True
        if isinstance(value, str) and value.lower() in _FALSE:
            return False
        raise invalid(f"Invalid value {value!r} for parameter '{name}': expected a boolean.")

    def texts(self, name: str) -> list[str]:
        """A repeated string field: repeated query keys, or a JSON list of strings."""
        if name in self._lists:
            return list(self._lists[name])
        value = self._values.get(name)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise invalid(f"Invalid value for parameter '{name}': expected a list of strings.")

    def key_values(self, name: str) -> dict[str, str]:
        """A repeated ``{"key": ..., "value": ...}`` field (tags) as a mapping."""
        value = self._values.get(name)
        if value is None:
            return {}
        if not isinstance(value, list):
            raise invalid(f"Invalid value for parameter '{name}': expected a list of tags.")
        found: dict[str, str] = {}
        for item in value:
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                raise invalid(f"Invalid value for parameter '{name}': each tag needs a 'key'.")
            tag_value = item.get("value", "")
            if tag_value is None:
                tag_value = ""
            if not isinstance(tag_value, str):
                raise invalid(f"Invalid value for parameter '{name}': tag values are strings.")
            found[item["key"]] = tag_value
        return found


def paged(key: str, items: list[Any], token: str | None) -> dict[str, Any]:
    """One page of a list answer: ``{key: items}``, with ``next_page_token``
    only when there is a next page (MLflow leaves it out on the last)."""
    body: dict[str, Any] = {key: items}
    if token:
        body["next_page_token"] = token
    return body


def ok(body: Mapping[str, Any] | None = None) -> Response:
    """A 200 answer holding ``body`` (MLflow answers ``{}`` for deletes and other
    messages without fields)."""
    return JSONResponse(dict(body or {}))
