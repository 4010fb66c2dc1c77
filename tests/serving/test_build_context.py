"""``modelyard build`` (issue 12): a build context written from a live
registry, its Dockerfile parsed by BuildKit's own parser (the ``dockerfile``
package) and linted by hadolint; the command it runs serves the files it
holds. No container engine exists here, so no image is built."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import dockerfile
import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.serving.buildctx import (
    CACHE_DIR,
    DEFAULT_BASE_IMAGE,
    BuildPlan,
    check_base_image,
    render_dockerfile,
)
from tests.conftest_server import stop_server
from tests.serving.models import train, write_onnx, write_skops
from tests.serving.servers import start_serving

HADOLINT = Path(sys.executable).parent / "hadolint"


def hadolint(path: Path) -> list[dict[str, Any]]:
    """hadolint's findings on ``path`` at every level (style included); it
    exits 1 when it found any, anything else is its own failure."""
    done = subprocess.run(
        [str(HADOLINT), "--no-color", "-f", "json", str(path)], capture_output=True, check=False
    )
    assert done.returncode in (0, 1), done.stderr
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found


def _cli(registry: str, tmp_path: Path, *args: str) -> Any:
    env = {"MODELYARD_URL": registry, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    return CliRunner().invoke(app, list(args), env=env)


def _instructions(path: Path) -> list[Any]:
    return list(dockerfile.parse_file(str(path)))


@pytest.fixture(scope="module")
def pushed(live_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    work = tmp_path_factory.mktemp("build-models")
    tag = uuid.uuid4().hex[:8]
    names = {"onnx": f"iris-{tag}", "skops": f"iris-skl-{tag}", "pickle": f"pickled-{tag}"}
    trained = train(0)
    with Registry(live_server, cache_dir=work / "sdk") as reg:
        reg.push(names["onnx"], [write_onnx(trained, work / "model.onnx")], format="onnx")
        reg.set_alias(f"{names['onnx']}/1", "production")
        labels = work / "labels.json"
        labels.write_text('{"0": "setosa"}')
        reg.push(names["skops"], [write_skops(trained, work / "model.skops"), labels])
        pickled = work / "model.pkl"
        pickled.write_bytes(b"\x80\x05N.")
        reg.push(names["pickle"], [pickled])
    return names


def test_build_context_is_pinned_non_root_and_lints_clean(
    live_server: str, pushed: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "ctx"
    r = _cli(live_server, tmp_path, "build", f"{pushed['skops']}/1", "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert plan["ref"] == f"default/{pushed['skops']}/1" and plan["flavor"] == "skops"
    assert plan["requirements"][1:] == ["numpy==2.4.6", "scikit-learn==1.9.1", "skops==0.16.0"]
    assert plan["requirements"][0].startswith("modelyard==")
    assert (out / "requirements.txt").read_text().splitlines() == plan["requirements"]

    steps = _instructions(out / "Dockerfile")
    cmds = [s.cmd for s in steps]
    assert cmds[0] == "FROM" and steps[0].value == (DEFAULT_BASE_IMAGE,)
    check_base_image(steps[0].value[0])
    # Non-root: the last USER is the fixed uid, set before the server starts.
    users = [s for s in steps if s.cmd == "USER"]
    assert users and users[-1].value == ("10001:10001",)
    assert cmds.index("USER") > max(i for i, c in enumerate(cmds) if c in ("RUN", "COPY"))
    # Every file of the version is copied by its digest, and the context holds
    # exactly those bytes at those places.
    copies = {s.value[1]: s for s in steps if s.cmd == "COPY" and s.value[0].startswith("cache/")}
    assert len(copies) == 2 == len(plan["files"])
    for f in plan["files"]:
        dest = f"{CACHE_DIR}/sha256/{f['digest'][:2]}/{f['digest']}"
        step = copies[dest]
        assert step.flags == ("--chown=10001:10001",)
        held = out / step.value[0]
        assert hashlib.sha256(held.read_bytes()).hexdigest() == f["digest"]
        assert held.stat().st_size == f["size"]
    # The health probe asks the OIP readiness route; the server is the entrypoint.
    [health] = [s for s in steps if s.cmd == "HEALTHCHECK"]
    assert health.value[0] == "CMD" and "/v2/health/ready" in health.value[-1]
    [entry] = [s for s in steps if s.cmd == "ENTRYPOINT"]
    assert entry.json and entry.value == ("modelyard", "serve")
    [cmd] = [s for s in steps if s.cmd == "CMD"]
    assert cmd.value == (
        plan["ref"],
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--cache-dir",
        CACHE_DIR,
        "--no-follow",
    )
    assert hadolint(out / "Dockerfile") == []
    # The context sends only what the Dockerfile copies.
    ignored = (out / ".dockerignore").read_text().splitlines()
    assert ignored[0] == "*" and "!cache/" in ignored


def test_the_linter_catches_what_the_build_guards_against(tmp_path: Path) -> None:
    """The lint in the test above can fail: a floating base and a root user are findings."""
    plan = BuildPlan(
        reference="m@production",
        ref="default/m/1",
        namespace="default",
        model="m",
        version=1,
        flavor="onnx",
        base_image="python:latest",  # check_base_image would refuse it
        requirements=["modelyard==0.1.0"],
    )
    bad = tmp_path / "Dockerfile"
    bad.write_text(render_dockerfile(plan).replace("USER 10001:10001", "USER root"))
    codes = {f["code"] for f in hadolint(bad)}
    assert {"DL3007", "DL3002"} <= codes


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("python:3.11.14-slim-bookworm", True),
        ("registry.local:5000/base/python:3.11.14", True),
        ("python@sha256:" + "a" * 64, True),
        ("python:3.11-slim", False),
        ("python:latest", False),
        ("python", False),
        ("registry.local:5000/python", False),
        ("python@sha256:abc", False),
        ("Python:3.11.14", False),
    ],
)
def test_base_image_must_be_pinned(image: str, ok: bool) -> None:
    if ok:
        assert check_base_image(image) == image
    else:
        with pytest.raises(Exception) as refused:
            check_base_image(image)
        assert getattr(refused.value, "code", None) == "UNPINNED_BASE_IMAGE"


def test_build_refusals(live_server: str, pushed: dict[str, str], tmp_path: Path) -> None:
    r = _cli(
        live_server,
        tmp_path,
        "build",
        f"{pushed['onnx']}@production",
        "--out",
        str(tmp_path / "a"),
        "--base-image",
        "python:3",
    )
    assert r.exit_code == 1 and "UNPINNED_BASE_IMAGE" in r.output, r.output
    assert not (tmp_path / "a").exists()
    r = _cli(live_server, tmp_path, "build", pushed["pickle"], "--out", str(tmp_path / "p"))
    assert r.exit_code == 1 and "UNSERVABLE_VERSION" in r.output, r.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    r = _cli(live_server, tmp_path, "build", pushed["onnx"], "--out", str(tmp_path / "full"))
    assert r.exit_code == 1 and "OUTPUT_NOT_EMPTY" in r.output, r.output
    assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_a_wheel_goes_into_the_context(
    live_server: str, pushed: dict[str, str], tmp_path: Path
) -> None:
    wheel = tmp_path / "modelyard-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: only copied, never installed
    out = tmp_path / "ctx"
    r = _cli(
        live_server, tmp_path, "build", pushed["onnx"], "--out", str(out), "--wheel", str(wheel)
    )
    assert r.exit_code == 0, r.output
    reqs = (out / "requirements.txt").read_text().splitlines()
    assert reqs[0] == f"/opt/modelyard/wheels/{wheel.name}"
    assert (out / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
    copies = [s.value for s in _instructions(out / "Dockerfile") if s.cmd == "COPY"]
    assert ("wheels/", "/opt/modelyard/wheels/") in copies
    assert hadolint(out / "Dockerfile") == []


def test_the_context_command_serves_its_files(
    live_server: str, pushed: dict[str, str], tmp_path: Path
) -> None:
    """What the image would run: the Dockerfile's CMD, with the context's cache
    as the server's cache (only the port and the cache's place change here)."""
    out = tmp_path / "ctx"
    r = _cli(live_server, tmp_path, "build", f"{pushed['onnx']}@production", "--out", str(out))
    assert r.exit_code == 0, r.output
    [cmd] = [s.value for s in _instructions(out / "Dockerfile") if s.cmd == "CMD"]
    ref, flags = cmd[0], list(cmd[1:])
    assert flags[-1] == "--no-follow"
    work = tmp_path / "serve"
    shutil.copytree(out / "cache", work / "cache")
    held = {p: p.stat().st_ino for p in (work / "cache" / "sha256").glob("*/*")}
    assert len(held) == 1
    proc, url = start_serving(live_server, [ref], work, args=["--no-follow"])
    try:
        rows = train(0).rows
        body = {
            "inputs": [
                {
                    "name": "X",
                    "datatype": "FP32",
                    "shape": list(rows.shape),
                    "data": rows.ravel().tolist(),
                }
            ]
        }
        answer = httpx.post(f"{url}/v2/models/{pushed['onnx']}/infer", json=body).json()
        [label] = [o for o in answer["outputs"] if o["name"] == "label"]
        assert np.array(label["data"]).shape == (len(rows),)
        assert answer["model_version"] == "1"
    finally:
        stop_server(proc)
    # The file was served from the context's copy (a download would have
    # written a new file in its place), and nothing else was fetched.
    assert {p: p.stat().st_ino for p in (work / "cache" / "sha256").glob("*/*")} == held
