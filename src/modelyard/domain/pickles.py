"""Pickle files and the admin's audited exception that lets one version's
pickles be served (issue 12).

Unpickling runs arbitrary code, so nothing of modelyard unpickles by default:
the registry server never does (it stores and hashes bytes only), and the
model server (``modelyard serve``) refuses a version whose only model files
are pickles. An admin of the version's namespace may record an *exception*
on one version: who, when, why, and the sha256 of each of its pickle files at
that moment. The model server then unpickles exactly those bytes, and only
while the exception stands: revoked, or recorded for other bytes, it refuses
as before.

This module holds the rules both sides share: which files are pickles, the
exception's shape, and whether an exception covers a manifest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelyard.domain.errors import InvalidInput

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".cloudpickle")
"""File suffixes that mean "loading this unpickles it"."""
PICKLE_FORMATS = frozenset({"pickle", "pkl", "joblib", "cloudpickle"})
"""Version formats that mean the same."""
MAX_REASON = 2000
ALLOW_PICKLE_COMMAND = "modelyard version allow-pickle REF --reason TEXT"
"""How an admin records the exception (named in the model server's refusal)."""


def is_pickle_path(path: str) -> bool:
    """True if loading the file at ``path`` would unpickle it."""
    return path.lower().endswith(PICKLE_SUFFIXES)


def pickle_digests(files: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The ``path -> sha256`` of the pickle files among ``(path, digest)`` pairs."""
    return {path: digest for path, digest in files if is_pickle_path(path)}


def check_reason(reason: object) -> str:
    """The exception's reason, required: non-empty text of at most :data:`MAX_REASON`."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput(
            "a pickle exception needs a reason (why these bytes may be unpickled)",
            code="INVALID_REASON",
            details={"field": "reason"},
        )
    text = reason.strip()
    if len(text) > MAX_REASON:
        raise InvalidInput(
            f"reason is longer than {MAX_REASON} characters",
            code="INVALID_REASON",
            details={"field": "reason", "limit": MAX_REASON},
        )
    return text


@dataclass(frozen=True, slots=True)
class PickleException:
    """An admin's permission to unpickle one version's pickle files, as recorded."""

    by: str
    """Who recorded it (the admin's principal name)."""
    at: int
    """When, in microseconds since the epoch."""
    reason: str
    digests: Mapping[str, str]
    """``path -> sha256`` of every pickle file of the version when recorded."""

    def to_json(self) -> dict[str, Any]:
        """As stored beside the version (``at`` stays microseconds)."""
        return {"by": self.by, "at": self.at, "reason": self.reason, "digests": dict(self.digests)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PickleException:
        """From :meth:`to_json`'s shape."""
        return cls(
            by=str(data["by"]),
            at=int(data["at"]),
            reason=str(data["reason"]),
            digests={str(k): str(v) for k, v in dict(data["digests"]).items()},
        )


def covers(recorded: Mapping[str, str] | None, files: Iterable[tuple[str, str]]) -> bool:
    """True if an exception recorded for ``recorded`` (``path -> sha256``)
    covers the manifest ``files`` (``(path, digest)`` pairs): the manifest's
    pickle files are exactly the recorded paths, each with the recorded
    digest. Any other byte, a file more or less, and it does not."""
    if not recorded:
        return False
    current = pickle_digests(files)
    return bool(current) and current == dict(recorded)
