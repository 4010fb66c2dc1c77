"""The home page's search form: filter text plus quick filters, as one filter.

The user's filter text goes first, in parentheses, so a parse error's
position maps back onto what they typed; quick filters are appended as
quoted comparisons (their values can never change the query's shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from starlette.datastructures import QueryParams

from modelyard.domain import filters
from modelyard.domain.errors import InvalidInput

PAGE_SIZE: Final = 25
SORTS: Final = {
    "updated DESC": "recently updated",
    "created DESC": "newest",
    "created ASC": "oldest",
    "name ASC": "name A-Z",
}
STATES: Final = ("draft", "ready", "published", "archived")


def quote_value(text: str) -> str:
    """A string literal of the filter language."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_key(text: str) -> str:
    """A key of ``tags.``, quoted with double quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class SearchForm:
    """What the home page was asked for."""

    q: str
    tag: str
    framework: str
    state: str
    namespace: str
    sort: str
    page: str | None

    @classmethod
    def parse(cls, params: QueryParams) -> SearchForm:
        """Read the form's fields (all optional) from the query string."""

        def get(name: str) -> str:
            return (params.get(name) or "").strip()

        return cls(
            q=params.get("q") or "",
            tag=get("tag"),
            framework=get("framework"),
            state=get("state"),
            namespace=get("namespace"),
            sort=get("sort") or "updated DESC",
            page=params.get("page") or None,
        )

    @property
    def target(self) -> Literal["models", "versions"]:
        """Framework and state are facts of versions: asking for them lists versions."""
        return "versions" if self.framework or self.state else "models"

    def filter_text(self) -> str:
        """The whole filter: ``(user text) AND quick filters``."""
        parts = [f"({self.q})"] if self.q.strip() else []
        if self.tag:
            key, eq, value = self.tag.partition("=")
            field = f"tags.{quote_key(key.strip())}"
            parts.append(f"{field} = {quote_value(value.strip())}" if eq else f"{field} EXISTS")
        if self.framework:
            parts.append(f"framework = {quote_value(self.framework)}")
        if self.state:
            parts.append(f"state = {quote_value(self.state)}")
        return " AND ".join(parts)

    def check_text(self) -> None:
        """Parse the user's own text alone first, so an error's position (and
        the message quoting it) is about what they typed, not the whole filter."""
        if self.q.strip():
            filters.parse_filter(self.q, self.target)

    def user_position(self, exc: InvalidInput) -> int | None:
        """Where in the user's text a filter error is (None: not in it)."""
        pos = exc.details.get("position")
        if exc.code != filters.FILTER_CODE or not isinstance(pos, int) or not self.q.strip():
            return None
        return pos if 0 <= pos <= len(self.q) else None

    def params(self, **override: str | None) -> dict[str, str | None]:
        """The form as query parameters (for links that change one field)."""
        base: dict[str, str | None] = {
            "q": self.q,
            "tag": self.tag,
            "framework": self.framework,
            "state": self.state,
            "namespace": self.namespace,
            "sort": self.sort,
            "page": self.page,
        }
        base.update(override)
        return base
