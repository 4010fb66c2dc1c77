"""A pickle-only scikit-learn version served by a real ``modelyard serve``
process only under an admin's audited exception (issue 12): refused before
it, answering tritonclient correctly with it, refused again when it names
other bytes, and a revoked or missing exception refusing the next swap."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.domain.errors import InvalidInput
from modelyard.serving.loader import check_pickle_digests, sha256_file
from tests.conftest_server import start_server, stop_server
from tests.serving.models import Trained, train
from tests.serving.servers import start_serving

REASON = "legacy fraud model, rebuilt from audited source"


def _dump(trained: Trained, path: Path) -> Path:
    import joblib

    joblib.dump(trained.estimator, path)
    return path


def _refused(registry: str, ref: str, cache: Path) -> str:
    result = CliRunner().invoke(app, ["serve", ref, "-r", registry, "--cache-dir", str(cache)])
    assert result.exit_code == 1, result.output
    assert "UNSERVABLE_VERSION" in result.output
    return result.output


def _infer(url: str, name: str, rows: np.ndarray) -> tuple[Any, str]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    try:
        inp = httpclient.InferInput("input", list(rows.shape), "FP64")
        inp.set_data_from_numpy(rows)
        result = client.infer(name, [inp])
        return result, str(result.get_response()["model_version"])
    finally:
        client.close()


def _versions(url: str, name: str) -> list[str]:
    return list(httpx.get(f"{url}/v2/models/{name}").json()["versions"])


def _until(what: str, check: Any) -> None:
    deadline = time.monotonic() + 60  # a deadline, not a timing claim
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_pickle_is_served_only_under_the_admins_exception(
    live_server: str, tmp_path: Path
) -> None:
    name = f"pickled-{uuid.uuid4().hex[:8]}"
    first, second = train(0, c=0.05), train(1, c=1.0)
    reg = Registry(live_server, cache_dir=tmp_path / "sdk")
    try:
        reg.push(name, [_dump(first, tmp_path / "v1.joblib")], framework="sklearn")
        reg.set_alias(f"{name}/1", "production")
        out = _refused(live_server, f"{name}@production", tmp_path / "refused")
        assert "version allow-pickle" in out  # says how an admin lets it through
        assert not (tmp_path / "refused" / "sha256").exists()  # before a byte was pulled

        reg.allow_pickle(f"{name}/1", REASON)
        proc, url = start_serving(
            live_server, [f"{name}@production"], tmp_path / "serve", args=["--resync", "1"]
        )
        try:
            rows = first.rows.astype(np.float64)
            result, version = _infer(url, name, rows)
            assert version == "1"
            np.testing.assert_array_equal(result.as_numpy("label"), first.estimator.predict(rows))
            np.testing.assert_allclose(
                result.as_numpy("probabilities"), first.estimator.predict_proba(rows), rtol=1e-12
            )

            # Version 2 has no exception: the alias moving there is refused and
            # version 1 keeps serving.
            reg.push(name, [_dump(second, tmp_path / "v2.joblib")], framework="sklearn")
            reg.set_alias(f"{name}/2", "production")
            log = tmp_path / "serve" / "serve.log"
            _until("the refused swap was never logged", lambda: "/2 not loaded" in log.read_text())
            assert _versions(url, name) == ["1"] and _infer(url, name, rows)[1] == "1"

            # Recorded now: the next resync loads it and swaps.
            reg.allow_pickle(f"{name}/2", REASON)
            _until(
                "the allowed version was never swapped in", lambda: _versions(url, name) == ["2"]
            )
            result, version = _infer(url, name, rows)
            assert version == "2"
            np.testing.assert_array_equal(result.as_numpy("label"), second.estimator.predict(rows))
            # Revoked, and the alias moved back to 1 and forth to 2: 2 is
            # loaded again, and refused (1 serves; documented in serving.md).
            reg.revoke_pickle(f"{name}/2")
            reg.revoke_pickle(f"{name}/1")
            reg.allow_pickle(f"{name}/1", REASON)
            reg.set_alias(f"{name}/1", "production")
            _until("the move back was never followed", lambda: _versions(url, name) == ["1"])
            reg.set_alias(f"{name}/2", "production")
            _until(
                "the revoked version's refusal was never logged",
                lambda: log.read_text().count("/2 not loaded") >= 2,
            )
            assert _versions(url, name) == ["1"]
        finally:
            stop_server(proc)
    finally:
        reg.close()
    text = log.read_text()
    assert "UNPICKLING" in text and REASON in text  # loud, naming who and why
    assert "allow-pickle" in text.split("/2 not loaded", 2)[2]


def test_an_exception_naming_other_bytes_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, url = start_server(data)
    name = f"forged-{uuid.uuid4().hex[:8]}"
    try:
        with Registry(url, cache_dir=tmp_path / "sdk") as reg:
            reg.push(name, [_dump(train(0), tmp_path / "m.pkl")], framework="sklearn")
            reg.allow_pickle(f"{name}/1", REASON)
    finally:
        stop_server(proc)
    # The stored exception made to name other bytes (a forged or stale
    # record): the server must not take it for these files.
    with sqlite3.connect(data / "registry.db") as db:
        (raw,) = db.execute("SELECT pickle_exception FROM versions").fetchone()
        record = json.loads(raw)
        record["digests"] = {"m.pkl": "0" * 64}
        db.execute("UPDATE versions SET pickle_exception = ?", (json.dumps(record),))
    proc, url = start_server(data)
    try:
        out = _refused(url, f"{name}/1", tmp_path / "refused")
        assert "names other bytes" in out and "allow-pickle" in out
    finally:
        stop_server(proc)


def test_pulled_bytes_are_hashed_again_before_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(b"\x80\x04K\x01.")
    check_pickle_digests({"m.pkl": path}, {"m.pkl": sha256_file(path)})
    with pytest.raises(InvalidInput, match="does not hash") as bad:
        check_pickle_digests({"m.pkl": path}, {"m.pkl": "0" * 64})
    assert bad.value.code == "UNSERVABLE_VERSION"
    with pytest.raises(InvalidInput, match="does not hash"):
        check_pickle_digests({}, {"m.pkl": sha256_file(path)})


def test_build_takes_the_exception_as_serve_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """... and, unpickling nothing itself, does not warn that it unpickles."""
    from modelyard.serving.buildctx import write_context

    with Registry(tmp_path / "emb", cache_dir=tmp_path / "sdk") as reg:
        reg.push("legacy", [_dump(train(0), tmp_path / "m.joblib")], framework="sklearn")
        with pytest.raises(InvalidInput, match="allow-pickle"):
            write_context(reg, "legacy/1", tmp_path / "refused")
        assert not (tmp_path / "refused").exists()
        reg.allow_pickle("legacy/1", REASON)
        with caplog.at_level(logging.INFO, logger="modelyard"):
            write_context(reg, "legacy/1", tmp_path / "ctx")
    notes = [r for r in caplog.records if "unpickl" in r.getMessage().lower()]
    assert [r.levelno for r in notes] == [logging.INFO], notes
    assert "image's server will unpickle" in notes[0].getMessage()
    assert "UNPICKLING" not in caplog.text
    pins = (tmp_path / "ctx" / "requirements.txt").read_text().split()
    assert any(p.startswith("joblib==") for p in pins)
    assert any(p.startswith("scikit-learn==") for p in pins)
