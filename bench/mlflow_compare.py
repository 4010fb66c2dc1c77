"""Head-to-head: the same ``MlflowClient`` workload against MLflow 3.17.2's
server and modelyard's MLflow door (issue 10), figures printed, results
checked equal on both.

MLflow runs from its own virtualenv (``--mlflow-venv``, default
``/work/mlflow-venv``; created with ``pip install mlflow==3.17.2`` when
missing), on SQLite, ``--workers 1``, proxied artifacts; modelyard runs as
``modelyard server`` on SQLite (``_harness.ServerProcess``). Both listen on
127.0.0.1 only and are stopped by PID at the end. The client is this
interpreter's ``mlflow`` (mlflow-skinny 3.17.2), the same for both.

Phases (each: operations, seconds, ops/s, modelyard/MLflow ratio):
create models, create versions, set aliases, get version by alias, get
version (point reads), tag search, ``LIKE`` search, 8 concurrent writers
creating versions of one model, and a 64 MiB artifact round trip.

    PYTHONPATH=src .venv/bin/python bench/mlflow_compare.py --models 200 --versions 5

Run it on a quiet machine: the two servers and the client share its CPUs.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from _harness import ServerProcess, free_port

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

from mlflow import MlflowClient

# The client logs a line per version it waits for; the figures are the output.
logging.getLogger("mlflow").setLevel(logging.WARNING)

MLFLOW_VERSION = "3.17.2"
SOURCE = "s3://bench-bucket/model"  # a source neither server resolves: text only


def ensure_mlflow_venv(venv: Path) -> Path:
    """The ``mlflow`` command of ``venv``, installing MLflow there if missing."""
    exe = venv / "bin" / "mlflow"
    if exe.exists():
        return exe
    print(f"creating {venv} with mlflow=={MLFLOW_VERSION} (a few minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"mlflow=={MLFLOW_VERSION}"], check=True
    )
    return exe


@contextmanager
def mlflow_server(exe: Path, root: Path) -> Iterator[str]:
    """MLflow's server on SQLite with proxied artifacts; yields its URL."""
    port = free_port()
    cmd = [
        str(exe),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--serve-artifacts",
    ]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    env.pop("PYTHONPATH", None)  # its own virtualenv, not our sources
    log = open(root / "mlflow-server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited; see {root / 'mlflow-server.log'}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("mlflow server not healthy after 180 s")
            time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def workload(
    url: str, args: argparse.Namespace, scratch: Path
) -> dict[str, tuple[int, float, Any]]:
    """Every phase against one server: {phase: (operations, seconds, result)}."""
    c = MlflowClient(tracking_uri=url, registry_uri=url)
    names = [f"bench-{i:05d}" for i in range(args.models)]
    out: dict[str, tuple[int, float, Any]] = {}

    def create_models() -> None:
        for i, n in enumerate(names):
            c.create_registered_model(n, tags={"team": f"t{i % 10}"})

    out["create models"] = (len(names), *timed(create_models))

    def create_versions() -> None:
        for n in names:
            for _ in range(args.versions):
                c.create_model_version(n, SOURCE, tags={"kind": "bench"})

    out["create versions"] = (len(names) * args.versions, *timed(create_versions))

    def set_aliases() -> None:
        for n in names:
            c.set_registered_model_alias(n, "champion", str(args.versions))

    out["set alias"] = (len(names), *timed(set_aliases))
    out["get by alias"] = (
        len(names),
        *timed(lambda: [c.get_model_version_by_alias(n, "champion").version for n in names]),
    )
    out["get version"] = (
        len(names),
        *timed(lambda: [c.get_model_version(n, "1").version for n in names]),
    )
    rounds = args.searches
    out["tag search"] = (
        rounds,
        *timed(
            lambda: [
                sorted(
                    m.name for m in c.search_registered_models("tags.team = 't3'", max_results=1000)
                )
                for _ in range(rounds)
            ][-1]
        ),
    )
    out["LIKE search"] = (
        rounds,
        *timed(
            lambda: [
                sorted(
                    (v.name, v.version)
                    for v in c.search_model_versions("name LIKE 'bench-0001%'", max_results=1000)
                )
                for _ in range(rounds)
            ][-1]
        ),
    )
    c.create_registered_model("bench-shared")
    per_writer = args.concurrent
    with ThreadPoolExecutor(8) as pool:

        def eight_writers() -> list[str]:
            futures = [
                pool.submit(
                    lambda: [
                        c.create_model_version("bench-shared", SOURCE).version
                        for _ in range(per_writer)
                    ]
                )
                for _ in range(8)
            ]
            return sorted((v for f in futures for v in f.result()), key=int)

        out["8 writers, one model"] = (8 * per_writer, *timed(eight_writers))

    blob = scratch / "artifact.bin"
    if not blob.exists():
        with open(blob, "wb") as f:
            for _ in range(args.artifact_mib):
                f.write(os.urandom(1 << 20))
    eid = c.create_experiment(f"bench-{time.time_ns()}")
    rid = c.create_run(eid).info.run_id

    def artifact_round_trip() -> str:
        c.log_artifact(rid, str(blob))
        got = c.download_artifacts(rid, blob.name, str(scratch / f"down-{time.time_ns()}"))
        return hashlib.sha256(Path(got).read_bytes()).hexdigest()

    out[f"artifact {args.artifact_mib} MiB up+down"] = (1, *timed(artifact_round_trip))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--versions", type=int, default=5)
    ap.add_argument("--searches", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=25, help="versions per writer (8 writers)")
    ap.add_argument("--artifact-mib", type=int, default=64)
    ap.add_argument("--mlflow-venv", type=Path, default=Path("/work/mlflow-venv"))
    args = ap.parse_args()

    exe = ensure_mlflow_venv(args.mlflow_venv)
    tmp = Path(tempfile.mkdtemp(prefix="mlflow-compare-"))
    try:
        (tmp / "mlflow").mkdir()
        with mlflow_server(exe, tmp / "mlflow") as url:
            theirs = workload(url, args, tmp)
        with ServerProcess(tmp / "modelyard" / "data") as server:
            mine = workload(server.url, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nMlflowClient {MLFLOW_VERSION} against MLflow {MLFLOW_VERSION} and modelyard")
    print(
        f"{'phase':30} {'ops':>6} {'MLflow ops/s':>13} {'modelyard ops/s':>16} {'ratio':>7}  same"
    )
    all_same = True
    for phase, (n, t_theirs, r_theirs) in theirs.items():
        _, t_mine, r_mine = mine[phase]
        same = r_theirs == r_mine
        all_same &= same
        print(
            f"{phase:30} {n:>6} {n / t_theirs:>13.1f} {n / t_mine:>16.1f} "
            f"{t_theirs / t_mine:>6.2f}x  {'yes' if same else 'NO'}"
        )
    print(f"\nresults equal on both: {'yes' if all_same else 'NO'}")
    sys.exit(0 if all_same else 1)


if __name__ == "__main__":
    main()
