"""The pickle exception (issue 12) through the SDK, remote and embedded, and
the CLI (`version allow-pickle`, `show`)."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.domain.errors import Conflict

PICKLE = b"\x80\x04K\x03."


@pytest.fixture(params=["remote", "embedded"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "remote":
        return str(request.getfixturevalue("live_server"))
    return str(tmp_path / "embedded")


def test_sdk_and_cli_record_show_and_revoke(target: str, tmp_path: Path) -> None:
    name = f"legacy-{uuid.uuid4().hex[:8]}"
    (tmp_path / "model.pkl").write_bytes(PICKLE)
    (tmp_path / "notes.txt").write_text("no pickle")
    with Registry(target, cache_dir=tmp_path / "cache") as reg:
        reg.push(name, [tmp_path / "model.pkl"], framework="sklearn")
        reg.push(name, [tmp_path / "notes.txt"])
        assert reg.get_version(f"{name}/1").pickle_exception is None
        ver = reg.allow_pickle(f"{name}/1", "audited legacy model")
        found = ver.pickle_exception
        assert found is not None and found["reason"] == "audited legacy model"
        assert found["digests"] == {"model.pkl": hashlib.sha256(PICKLE).hexdigest()}
        assert reg.get_version(f"{name}@latest").version == 2
        assert reg.get_version(f"{name}/1").pickle_exception == found
        with pytest.raises(Conflict) as no_pickle:
            reg.allow_pickle(f"{name}/2", "nothing to allow")
        assert no_pickle.value.code == "NO_PICKLE_FILES"

    runner = CliRunner()
    shown = runner.invoke(app, ["show", f"{name}/1", "-r", target])
    assert shown.exit_code == 0, shown.output
    assert f"pickle exception: by {found['by']}" in shown.output
    assert "audited legacy model" in shown.output

    revoked = runner.invoke(
        app, ["version", "allow-pickle", f"{name}/1", "--revoke", "-r", target, "--json"]
    )
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.output)["pickle_exception"] is None

    recorded = runner.invoke(
        app, ["version", "allow-pickle", f"{name}/1", "--reason", "[b]again[/b]", "-r", target]
    )
    assert recorded.exit_code == 0, recorded.output
    assert "model.pkl" in recorded.output and "[b]again[/b]" in recorded.output  # not markup

    both = runner.invoke(
        app, ["version", "allow-pickle", f"{name}/1", "--reason", "x", "--revoke", "-r", target]
    )
    neither = runner.invoke(app, ["version", "allow-pickle", f"{name}/1", "-r", target])
    assert both.exit_code == 2 and neither.exit_code == 2
    with Registry(target, cache_dir=tmp_path / "cache") as reg:
        still = reg.get_version(f"{name}/1").pickle_exception
        assert still is not None and still["reason"] == "[b]again[/b]"
