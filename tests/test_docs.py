"""Docs stay honest: every setting and CLI command appears in the README."""

from __future__ import annotations

from pathlib import Path

from modelyard.cli.main import app, db_app, role_app, token_app, user_app, webhooks_app
from modelyard.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"MODELYARD_{name.upper()}" in README, name


def test_every_cli_command_is_documented() -> None:
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]
    groups = (
        ("db", db_app),
        ("token", token_app),
        ("user", user_app),
        ("role", role_app),
        ("webhooks", webhooks_app),
    )
    for group, sub in groups:
        names += [f"{group} {c.name or ''}" for c in sub.registered_commands]
    assert names
    for name in names:
        assert f"`{name}`" in README, name


def test_readme_names_the_two_commands() -> None:
    assert "make serve" in README and "make test" in README
