"""The pure role rules of ``domain/identity.py``."""

from __future__ import annotations

import pytest

from modelyard.domain.errors import PermissionDenied
from modelyard.domain.filters import And, AnyVersion, Comparison, Field, Or
from modelyard.domain.identity import (
    Permission,
    Principal,
    Role,
    require,
    require_readable,
    visibility_filter,
)

NS = Field("attr", "namespace")
PUBLISHED = Comparison(Field("attr", "state"), "=", "published")


def test_role_permissions() -> None:
    expected = {
        Role.CONSUMER: {Permission.CONSUME},
        Role.READER: {Permission.CONSUME, Permission.READ},
        Role.WRITER: {Permission.CONSUME, Permission.READ, Permission.WRITE},
        Role.REVIEWER: {Permission.CONSUME, Permission.READ, Permission.REVIEW},
        Role.ADMIN: set(Permission),
    }
    for role, perms in expected.items():
        p = Principal("u", {"a": frozenset({role})})
        assert set(p.permissions_in("a")) == perms, role
        assert p.permissions_in("b") == frozenset()
        assert not p.is_instance_admin
    root = Principal("root", {"*": frozenset({Role.ADMIN})})
    assert root.is_instance_admin and root.can(Permission.ADMIN, "anything")
    assert Principal.local().is_instance_admin


def test_require_and_readable() -> None:
    p = Principal("u", {"a": frozenset({Role.CONSUMER}), "b": frozenset({Role.READER})})
    assert require_readable(p, "a") is True
    assert require_readable(p, "b") is False
    with pytest.raises(PermissionDenied):
        require_readable(p, "c")
    with pytest.raises(PermissionDenied) as info:
        require(p, Permission.WRITE, "b")
    assert info.value.details == {"permission": "write", "namespace": "b"}


def test_visibility_filter() -> None:
    def prod(ns: str) -> Comparison:
        return PUBLISHED

    mixed = Principal(
        "u",
        {
            "a": frozenset({Role.CONSUMER}),
            "b": frozenset({Role.READER}),
            "c": frozenset({Role.CONSUMER, Role.WRITER}),
        },
    )
    assert visibility_filter(mixed, "versions", namespaces=(), production=prod) == Or(
        (Comparison(NS, "IN", ("b", "c")), And((Comparison(NS, "IN", ("a",)), PUBLISHED)))
    )
    models = visibility_filter(mixed, "models", namespaces=(), production=prod)
    assert isinstance(models, Or) and models.items[1] == And(
        (Comparison(NS, "IN", ("a",)), AnyVersion(PUBLISHED))
    )
    everywhere = Principal("u", {"*": frozenset({Role.CONSUMER}), "b": frozenset({Role.READER})})
    assert visibility_filter(everywhere, "versions", namespaces=("a", "b"), production=prod) == Or(
        (Comparison(NS, "IN", ("b",)), And((Comparison(NS, "IN", ("a",)), PUBLISHED)))
    )
    assert visibility_filter(
        Principal("nobody"), "versions", namespaces=("a",), production=prod
    ) == (Comparison(NS, "IN", ()))
    reader = Principal("u", {"*": frozenset({Role.READER})})
    assert visibility_filter(reader, "versions", namespaces=("a",), production=prod) is None
