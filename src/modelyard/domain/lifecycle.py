"""Lifecycle rules for versions, pure functions over states."""

from __future__ import annotations

from modelyard.domain.entities import VersionState
from modelyard.domain.errors import Conflict

LATEST_STATES: tuple[VersionState, ...] = (VersionState.READY, VersionState.PUBLISHED)
"""The states ``latest`` may name: a reference without a number or alias
(``name``, ``name@latest``) is the newest version in one of these. Drafts are
unfinished and archived versions withdrawn, so neither is ever ``latest``."""


def counts_as_latest(state: VersionState) -> bool:
    """True if a version in ``state`` may be what ``latest`` resolves to."""
    return state in LATEST_STATES


# Which state may follow which. Archived versions can be restored to ready.
_ALLOWED: dict[VersionState, frozenset[VersionState]] = {
    VersionState.DRAFT: frozenset({VersionState.READY}),
    VersionState.READY: frozenset({VersionState.PUBLISHED, VersionState.ARCHIVED}),
    VersionState.PUBLISHED: frozenset({VersionState.ARCHIVED, VersionState.READY}),
    VersionState.ARCHIVED: frozenset({VersionState.READY}),
}


def check_transition(current: VersionState, target: VersionState, *, ref: str) -> None:
    """Raise ``INVALID_STATE_TRANSITION`` unless ``current -> target`` is allowed."""
    if target not in _ALLOWED[current]:
        raise Conflict(
            f"version {ref} cannot go from {current.value} to {target.value}",
            code="INVALID_STATE_TRANSITION",
            details={"ref": ref, "from": current.value, "to": target.value},
        )


def files_mutable(state: VersionState) -> bool:
    """Files may change only while a version is a draft."""
    return state is VersionState.DRAFT
