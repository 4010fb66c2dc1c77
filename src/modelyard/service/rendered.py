"""A process-local cache of rendered versions, valid for one database revision.

A search page spent most of its time turning rows into versions and versions
into JSON (issue 9, Performance: 2.7 server CPU ms for a page of 50). The API
keeps each version's rendered bytes here, keyed by the version's id *and* the
database revision they were rendered at: the id of the newest event
(``RegistryTx.data_revision``). Every mutation writes its event in its own
transaction and event ids are commit-ordered on both backends (the outbox's
rule, ``Tx.append_event``), so two snapshots with the same newest event hold
the same data, and an entry can only be served to a reader whose transaction
sees exactly the data it was rendered from: on this replica or another, after
any kind of write, with nothing to invalidate by hand.

The price of that simplicity: any write ends every entry (the revision moves
on and the old entries are dropped at the next store). Under a steady stream
of writes a page costs what it did without the cache plus one index seek.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_CAPACITY = 8192
"""Entries kept at most (a rendered version is ~0.5-2 KiB: a few MiB in all)."""


class RevisionCache(Generic[T]):
    """Values by key (a version id, or any hashable key of an answer), all of
    one database revision; thread-safe.

    Entries of an older revision are never returned: storing values of a
    newer revision drops every older entry, and values of an older revision
    than the one held are not stored (a reader on an older snapshot). When
    full, the oldest entries go first.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._revision = -1
        self._items: dict[Hashable, T] = {}
        self._lock = threading.Lock()

    @property
    def revision(self) -> int:
        """The revision of the entries held (-1 before the first store)."""
        return self._revision

    def __len__(self) -> int:
        return len(self._items)

    def get_many(self, revision: int, ids: Iterable[Hashable]) -> dict[Hashable, T]:
        """The entries of ``ids`` rendered at ``revision`` (others are left out)."""
        with self._lock:
            if revision != self._revision:
                return {}
            items = self._items
            return {i: items[i] for i in ids if i in items}

    def put_many(self, revision: int, values: Mapping[Hashable, T]) -> None:
        """Store ``values``, rendered at ``revision``."""
        with self._lock:
            if revision < self._revision:
                return
            if revision > self._revision:
                self._revision = revision
                self._items = {}
            items = self._items
            items.update(values)
            excess = len(items) - self.capacity
            if excess > 0:
                for key in list(_first(items, excess)):
                    del items[key]


def _first(items: dict[Hashable, T], n: int) -> Sequence[Hashable]:
    """The ``n`` oldest keys (dicts keep insertion order)."""
    out: list[Hashable] = []
    for key in items:
        if len(out) == n:
            break
        out.append(key)
    return out
