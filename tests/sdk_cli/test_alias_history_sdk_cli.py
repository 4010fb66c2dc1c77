"""A model's alias history through the SDK (remote and embedded) and the CLI
(``modelyard alias history``): every move, fetched page by page, oldest first
or newest first, one alias or all."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.domain.errors import InvalidInput, NotFound


@pytest.fixture(params=["remote", "embedded"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "remote":
        target: str | Path = request.getfixturevalue("live_server")
    else:
        target = tmp_path / "embedded"
    with Registry(target, cache_dir=tmp_path / "cache") as reg:
        yield reg


def _model_with_moves(reg: Registry, tmp_path: Path, moves: int) -> str:
    name = f"hist-{uuid.uuid4().hex[:8]}"
    src = tmp_path / name
    src.mkdir()
    for i in range(3):
        (src / "w.bin").write_bytes(f"{name}-{i}".encode())
        reg.push(name, src)
    for i in range(moves):
        alias = "prod" if i % 3 else "canary"
        reg.set_alias(f"{name}/{i % 3 + 1}", alias, reason=f"move {i}")
    return name


def test_sdk_walks_every_page(registry: Registry, tmp_path: Path) -> None:
    name = _model_with_moves(registry, tmp_path, 7)
    everything = [f"move {i}" for i in range(7)]
    assert [m["reason"] for m in registry.alias_history(name, page_size=2)] == everything
    newest = registry.alias_history(f"default/{name}", newest_first=True, page_size=3)
    assert [m["reason"] for m in newest] == list(reversed(everything))
    prod = [f"move {i}" for i in range(7) if i % 3]
    assert [m["reason"] for m in registry.alias_history(name, alias="prod", page_size=1)] == prod
    assert [m["reason"] for m in registry.alias_history(f"{name}@prod")] == prod
    assert [m["reason"] for m in registry.alias_history(name, limit=3, page_size=2)] == [
        "move 0",
        "move 1",
        "move 2",
    ]
    first = next(iter(registry.alias_history(name)))
    assert first["alias"] == "canary" and first["from_version"] is None
    assert first["to_version"] == 1 and first["model"] == name
    with pytest.raises(InvalidInput):
        list(registry.alias_history(f"{name}/2"))
    with pytest.raises(NotFound):
        list(registry.alias_history(f"ghost-{uuid.uuid4().hex[:6]}"))


def test_cli_alias_history(live_server: str, tmp_path: Path) -> None:
    with Registry(live_server, cache_dir=tmp_path / "cache") as reg:
        name = _model_with_moves(reg, tmp_path, 120)  # more than one REST page (100)
    runner = CliRunner()
    env = {"MODELYARD_URL": live_server, "XDG_CACHE_HOME": str(tmp_path / "c"), "COLUMNS": "250"}

    def cli(*args: str) -> tuple[int, str]:
        r = runner.invoke(app, list(args), env=env)
        return r.exit_code, r.output

    code, text = cli("alias", "history", name, "--json")
    assert code == 0, text
    assert [m["reason"] for m in json.loads(text)] == [f"move {i}" for i in range(120)]
    code, text = cli("alias", "history", name, "--newest-first", "--limit", "2", "--json")
    assert code == 0 and [m["reason"] for m in json.loads(text)] == ["move 119", "move 118"]
    code, text = cli("alias", "history", f"{name}@canary", "--limit", "1")
    assert code == 0 and "canary" in text and "move 0" in text and "prod" not in text, text
