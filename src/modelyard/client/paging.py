"""Walking the keyset pages of a list or search answer, for the SDK."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

PageFetch = Callable[[str | None, int | None], Mapping[str, Any]]


def walk_pages(fetch: PageFetch, key: str, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield the items under ``key`` of page after page, up to ``limit`` items.

    ``fetch(token, remaining)`` gets one page: ``token`` is the previous page's
    ``next_page_token`` (None for the first) and ``remaining`` how many items
    ``limit`` still allows (None without a limit), so a caller may ask for a
    smaller last page. Pages are fetched lazily, as the caller iterates.
    """
    token: str | None = None
    n = 0
    while True:
        page = fetch(token, None if limit is None else limit - n)
        for item in page[key]:
            yield item
            n += 1
            if limit is not None and n >= limit:
                return
        token = page["next_page_token"]
        if not token:
            return
