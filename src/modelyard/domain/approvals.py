"""Approval requests for gated transitions (issue 3). Pure data and rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ApprovalAction(StrEnum):
    """What an approved request does.

    ``publish`` publishes the version (and, with ``alias``, then points that
    alias at it, in the same transaction); ``alias`` moves a (protected) alias
    to an already published version.
    """

    PUBLISH = "publish"
    ALIAS = "alias"


class ApprovalState(StrEnum):
    """``pending`` until applied, rejected or cancelled; the others are final."""

    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Vote:
    """One reviewer's decision on a request."""

    actor: str
    decision: str
    comment: str
    at: int


@dataclass(frozen=True, slots=True)
class Approval:
    """A requested transition and its reviews."""

    id: int
    namespace: str
    model: str
    version: int
    action: ApprovalAction
    alias: str | None
    alias_from: int | None
    archive_previous: bool
    state: ApprovalState
    requested_by: str
    comment: str
    created_at: int
    decided_by: str | None
    decided_at: int | None
    votes: list[Vote] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """The version the request is about, ``namespace/model/number``."""
        return f"{self.namespace}/{self.model}/{self.version}"

    @property
    def approvers(self) -> list[str]:
        """Distinct actors who approved, in order."""
        return [v.actor for v in self.votes if v.decision == "approve"]
