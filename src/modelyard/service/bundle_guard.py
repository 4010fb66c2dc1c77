"""Bundles guard the model aliases their roles follow (issue 14).

When ``det@production`` is about to move, every bundle with a role bound to
``det@production`` is checked with the new version in that role, against
what the bundle runs now: the members of its newest bundle version (or, for
a bundle never pinned, what its references name at this moment). The checks
are those of pinning a bundle version, so a move that passes here is one the
next ``bundle pin`` accepts:

- every declared edge touching the role still holds (outputs feed inputs,
  same dtype, compatible shape);
- the role's signature does not break against the pinned member (an input
  removed or retyped, a required input added, an output removed or changed).

What a breaking move does is the broken bundle's to say, by its namespace's
production policy (``bundle_breaks``):

- ``refuse`` (the default): the move is refused with ``BUNDLE_INCOMPATIBLE``
  (409), naming the bundle, the role and the edge in the message and in
  ``details``. An admin of the model's namespace may force it
  (``force=True``): the move then applies and its ``alias.moved`` event
  carries what it broke (``forced_bundles``), so the audit log shows who
  overrode which bundle.
- ``flag``: the move applies; its ``alias.moved`` event lists the bundles in
  ``flagged_bundles``.

Either way, a move that applies although it breaks a bundle is recorded on
that bundle, in the same transaction: a ``bundle.incompatible`` event
(subject ``bundle:NS/NAME``, in the bundle's namespace, so the bundle's
owners see it in their audit log and webhooks) and an entry in the bundle's
``incompatible`` list (``bundle show``, REST, SDK). An entry goes when the
bundle fits again: a later move of the same alias that breaks nothing takes
that alias's entries off the list (a ``bundle.compatible`` event says so),
and the next pinned bundle version clears the list (pinning checks the
bundle fits together).
Bundles are checked whatever namespace they live in: the owner of ``det``
must learn that a pipeline in another team depends on it.
"""

from __future__ import annotations

from typing import Any

from modelyard.domain.bundles import Mismatch, check_edge, compare_signatures, parse_edges
from modelyard.domain.entities import Version
from modelyard.domain.errors import Conflict
from modelyard.domain.references import parse_reference
from modelyard.service import policy_gate
from modelyard.store.metadata.ports import RegistryTx, now_us

# Enough to say what broke; a message naming hundreds of bundles helps nobody.
_MAX_REPORTED = 50
# Flagged incompatibilities kept on a bundle until its next pin (newest kept).
MAX_FLAGS = 50


def breaks_of_move(
    tx: RegistryTx,
    target: Version,
    alias: str,
    current_id: int | None,
    following: dict[int, list[str]],
) -> list[dict[str, Any]]:
    """What moving ``target``'s model's ``alias`` to ``target`` would break.

    One entry per (bundle, role): ``{"bundle", "role", "mode",
    "mismatches"}``, ``mode`` the bundle namespace's ``bundle_breaks``
    (``refuse`` or ``flag``), each mismatch with ``kind``, ``role``,
    ``field``, ``problem`` and, for an edge, ``edge``
    (``"detector->classifier"``). Empty: nothing breaks. ``following``:
    the bundles following the alias, ``tx.bundles.following(...)``.
    """
    if not following:
        return []
    out: list[dict[str, Any]] = []
    modes: dict[str, str] = {}
    for row in tx.bundles.by_ids(list(following)):
        roles = following[row.id]
        members = _current_members(tx, row.id, row.roles)
        signatures = {role: v.signature for role, v in members.items()}
        found: list[tuple[str, Mismatch, str | None]] = []
        for role in roles:
            signatures[role] = target.signature
            old = members.get(role)
            if old is None and current_id is not None and current_id != target.id:
                old = tx.load_versions([current_id])[0]
            if old is not None and old.id != target.id:
                for m in compare_signatures(role, old.signature, target.signature):
                    found.append((role, m, None))
        for edge in parse_edges(row.edges, row.roles):
            if edge.source not in roles and edge.target not in roles:
                continue
            if edge.source not in signatures or edge.target not in signatures:
                continue  # a member that resolves to nothing yet: pinning says so
            for m in check_edge(edge, signatures[edge.source], signatures[edge.target]):
                role = edge.source if edge.source in roles else edge.target
                found.append((role, m, f"{edge.source}->{edge.target}"))
        for role in roles:
            mine = [(m, e) for r, m, e in found if r == role]
            if mine:
                if row.namespace not in modes:
                    policy = policy_gate.namespace_policy(tx, row.namespace)
                    modes[row.namespace] = "flag" if policy.flags_bundle_breaks else "refuse"
                out.append(
                    {
                        "bundle": f"{row.namespace}/{row.name}",
                        "role": role,
                        "mode": modes[row.namespace],
                        "mismatches": [
                            {**m.to_dict(), **({"edge": e} if e else {})} for m, e in mine
                        ],
                    }
                )
    return out


def _current_members(tx: RegistryTx, bundle_id: int, roles: dict[str, str]) -> dict[str, Version]:
    """What the bundle runs now: its newest version's members, else what its
    references name now (roles naming nothing are left out)."""
    pinned = tx.bundles.version(bundle_id, None)
    if pinned is not None:
        ids = pinned.members
    else:
        ids = {}
        for role, ref in roles.items():
            r = parse_reference(ref)
            vid = tx.find_version_id(r.namespace, r.name, number=r.version, alias=r.alias)
            if vid is not None:
                ids[role] = vid
    return dict(zip(ids, tx.load_versions(list(ids.values())), strict=True))


def refuse_breaking_move(target: Version, alias: str, breaks: list[dict[str, Any]]) -> None:
    """Raise ``BUNDLE_INCOMPATIBLE`` naming the bundles, roles and edges ``breaks`` lists."""
    shown = breaks[:_MAX_REPORTED]
    parts = []
    for b in shown:
        problems = "; ".join(
            (f"edge {m['edge']}: " if m.get("edge") else "") + m["problem"] for m in b["mismatches"]
        )
        parts.append(f"bundle {b['bundle']} role {b['role']}: {problems}")
    more = f" (and {len(breaks) - len(shown)} more)" if len(breaks) > len(shown) else ""
    raise Conflict(
        f"cannot move {target.namespace}/{target.model}@{alias} to {target.ref}: it breaks "
        + " | ".join(parts)
        + more
        + "; fix the bundle (edit its roles or edges) or, as an admin, force the move",
        code="BUNDLE_INCOMPATIBLE",
        details={"ref": target.ref, "alias": alias, "bundles": shown},
    )


def record_breaks(
    tx: RegistryTx,
    target: Version,
    alias: str,
    from_version: int | None,
    breaks: list[dict[str, Any]],
    *,
    actor: str,
) -> None:
    """Record on each bundle what an applied move broke (flagged, or forced
    past ``refuse``): an entry in its ``incompatible`` list and a
    ``bundle.incompatible`` event, in the move's transaction."""
    by_bundle: dict[str, list[dict[str, Any]]] = {}
    for b in breaks:
        by_bundle.setdefault(b["bundle"], []).append(b)
    at = now_us()
    for key, entries in by_bundle.items():
        namespace, _, name = key.partition("/")
        row = tx.bundles.get(namespace, name)
        if row is None:  # pragma: no cover - found by the same transaction
            continue
        mode = entries[0]["mode"]
        record: dict[str, Any] = {
            "at": at,
            "actor": actor,
            "alias": f"{target.namespace}/{target.model}@{alias}",
            "ref": target.ref,
            "from_version": from_version,
            "to_version": target.number,
            "mode": mode,
            "forced": mode == "refuse",
            "roles": [{"role": b["role"], "mismatches": b["mismatches"]} for b in entries],
        }
        tx.bundles.set_incompatible(row.id, [*row.incompatible, record][-MAX_FLAGS:])
        tx.append_event(
            "bundle.incompatible",
            actor=actor,
            namespace=namespace,
            subject=f"bundle:{namespace}/{name}",
            payload={"name": name, **{k: v for k, v in record.items() if k != "at"}},
        )


def record_mended(
    tx: RegistryTx,
    target: Version,
    alias: str,
    following: dict[int, list[str]],
    breaks: list[dict[str, Any]],
    *,
    actor: str,
) -> None:
    """Take ``alias``'s entries off the ``incompatible`` list of every bundle
    that follows it and that this move (to ``target``) does not break: the
    alias points at a version the bundle takes again (often the one it was
    moved away from). A ``bundle.compatible`` event per bundle, in the
    move's transaction."""
    if not following:
        return
    broken = {b["bundle"] for b in breaks}
    name = f"{target.namespace}/{target.model}@{alias}"
    for row in tx.bundles.by_ids(list(following)):
        key = f"{row.namespace}/{row.name}"
        if key in broken or not row.incompatible:
            continue
        kept = [e for e in row.incompatible if e.get("alias") != name]
        if len(kept) == len(row.incompatible):
            continue
        tx.bundles.set_incompatible(row.id, kept)
        tx.append_event(
            "bundle.compatible",
            actor=actor,
            namespace=row.namespace,
            subject=f"bundle:{key}",
            payload={
                "name": row.name,
                "alias": name,
                "ref": target.ref,
                "to_version": target.number,
                "cleared": len(row.incompatible) - len(kept),
                "remaining": len(kept),
            },
        )
