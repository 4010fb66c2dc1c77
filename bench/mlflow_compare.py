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
creating versions of one model, and an artifact round trip (``--artifact-mib``,
64 by default, several sizes allowed; the peak RSS of each server during each is
printed).

Per phase it also prints what explains the ratio on a noisy machine: the HTTP
requests the client makes per operation (counted in the client), each
server's CPU per operation (its process tree's user + system time over the
phase), the *client floor* (the same workload replayed against
``_canned_http.py``, a server that answers every path with a recorded body, so
the time is the client's own plus the loopback's) and the ratio bound
``MLflow time / (client floor + modelyard server CPU)``: the best ratio any
server could reach through this client on this machine. A second, plainer
bound needs no replay: ``MLflow time / the client's own CPU per op`` against
modelyard (column ``cpu-only``). The client is one Python process whose
threads share one interpreter lock, so an operation takes at least the CPU
the client spends on it whatever the server does; where that bound is under
5x, no server reaches 5x through this client on this machine.

    PYTHONPATH=src .venv/bin/python bench/mlflow_compare.py --models 200 --versions 5

``--only-modelyard`` skips MLflow (no virtualenv needed) and prints, per
phase, modelyard's server CPU per op, the client's CPU per op and the client
floor: what an A/B of two modelyard builds needs (run it once per build, e.g.
with ``PYTHONPATH`` naming each build's ``src``; the server subprocess
inherits it). ``--rounds N`` repeats the workload on N fresh servers and
prints each round's server CPU per op, to show how noisy the figures are.
Without ``--only-modelyard``, ``--rounds N`` adds N-1 rounds of the registry
phases on fresh servers of both, in swapped order each round, and prints
each phase's ratio per round with the median and the median ``cpu-only``
bound: on a shared machine whose speed drifts, one sequential round can put
a slow spell on one server's whole workload.

Run it on a quiet machine: the two servers and the client share its CPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import requests
from _harness import RssSampler, ServerProcess, cpu_seconds, free_port, rss_kib

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
def mlflow_server(exe: Path, root: Path) -> Iterator[tuple[str, Meter]]:
    """MLflow's server on SQLite with proxied artifacts; yields its URL and meter."""
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
        yield url, Meter(proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()


class RequestLog:
    """Counts the client's HTTP requests and keeps the last JSON body answered
    per ``METHOD /path`` (the canned server replays those).

    Wraps ``requests.Session.request``, which every ``MlflowClient`` REST call
    goes through; counting in the client sees exactly what it sends, whichever
    server answers.
    """

    def __init__(self) -> None:
        self.count = 0
        self.bodies: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._original = requests.Session.request

    def __enter__(self) -> RequestLog:
        original = self._original
        log = self

        def request(session: requests.Session, method: str, url: str, *a: Any, **k: Any) -> Any:
            answer = original(session, method, url, *a, **k)
            with log._lock:
                log.count += 1
                # The bytes as they came, not parsed: parsing every answer
                # here would add to the client time both servers are timed by.
                if answer.headers.get("Content-Type", "").startswith("application/json"):
                    log.bodies[f"{method.upper()} {urlsplit(url).path}"] = answer.content
            return answer

        requests.Session.request = request  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        requests.Session.request = self._original  # type: ignore[method-assign]


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


class Meter:
    """CPU seconds and RSS of one server's process tree."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_s(self) -> float:
        return sum(cpu_seconds(p) for p in tree_pids(self.pid))

    def rss_kib(self) -> int:
        return sum(rss_kib(p) for p in tree_pids(self.pid))


@dataclass
class Phase:
    """One phase's figures against one server."""

    ops: int
    seconds: float
    result: Any
    server_cpu_s: float
    client_cpu_s: float
    requests: int


def workload(
    url: str,
    args: argparse.Namespace,
    scratch: Path,
    meter: Meter,
    log: RequestLog,
    *,
    artifacts: bool = True,
) -> dict[str, Phase]:
    """Every phase against one server."""
    c = MlflowClient(tracking_uri=url, registry_uri=url)
    names = [f"bench-{i:05d}" for i in range(args.models)]
    out: dict[str, Phase] = {}

    def phase(label: str, ops: int, fn: Callable[[], Any]) -> None:
        cpu0, mine0, req0 = meter.cpu_s(), cpu_seconds(os.getpid()), log.count
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        out[label] = Phase(
            ops,
            seconds,
            result,
            meter.cpu_s() - cpu0,
            cpu_seconds(os.getpid()) - mine0,
            log.count - req0,
        )

    def create_models() -> None:
        for i, n in enumerate(names):
            c.create_registered_model(n, tags={"team": f"t{i % 10}"})

    phase("create models", len(names), create_models)

    def create_versions() -> None:
        for n in names:
            for _ in range(args.versions):
                c.create_model_version(n, SOURCE, tags={"kind": "bench"})

    phase("create versions", len(names) * args.versions, create_versions)

    def set_aliases() -> None:
        for n in names:
            c.set_registered_model_alias(n, "champion", str(args.versions))

    phase("set alias", len(names), set_aliases)
    phase(
        "get by alias",
        len(names),
        lambda: [c.get_model_version_by_alias(n, "champion").version for n in names],
    )
    phase("get version", len(names), lambda: [c.get_model_version(n, "1").version for n in names])
    rounds = args.searches
    phase(
        "tag search",
        rounds,
        lambda: [
            sorted(m.name for m in c.search_registered_models("tags.team = 't3'", max_results=1000))
            for _ in range(rounds)
        ][-1],
    )
    phase(
        "LIKE search",
        rounds,
        lambda: [
            sorted(
                (v.name, v.version)
                for v in c.search_model_versions("name LIKE 'bench-0001%'", max_results=1000)
            )
            for _ in range(rounds)
        ][-1],
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

        phase("8 writers, one model", 8 * per_writer, eight_writers)
    if not artifacts:
        return out

    eid = c.create_experiment(f"bench-{time.time_ns()}")
    rid = c.create_run(eid).info.run_id
    for mib in args.artifact_mib:
        blob = scratch / f"artifact-{mib}.bin"
        if not blob.exists():
            with open(blob, "wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(1 << 20))

        def artifact_round_trip(blob: Path = blob) -> str:
            c.log_artifact(rid, str(blob))
            down = scratch / f"down-{time.time_ns()}"
            got = Path(c.download_artifacts(rid, blob.name, str(down)))
            digest = hashlib.sha256()
            with open(got, "rb") as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
            shutil.rmtree(down)  # the next server's copy needs the disk space
            return digest.hexdigest()

        label = f"artifact {mib} MiB up+down"
        with RssSampler(meter) as rss:  # type: ignore[arg-type]
            phase(label, 1, artifact_round_trip)
        art = out[label]
        print(
            f"artifact {mib} MiB round trip at {url}: {art.seconds:.2f} s, server CPU"
            f" {art.server_cpu_s:.2f} s, client CPU {art.client_cpu_s:.2f} s, server peak RSS"
            f" {rss.peak_kib / 1024:.0f} MiB",
            flush=True,
        )
    return out


@contextmanager
def canned_server(bodies: dict[str, bytes], root: Path) -> Iterator[tuple[str, Meter]]:
    """``_canned_http.py`` answering ``bodies``; yields its URL and meter."""
    port = free_port()
    table = root / "canned.json"
    table.write_text(json.dumps({key: body.decode() for key, body in bodies.items()}))
    script = Path(__file__).with_name("_canned_http.py")
    proc = subprocess.Popen([sys.executable, str(script), str(port), str(table)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the canned server did not start") from None
                time.sleep(0.05)
        yield url, Meter(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def only_modelyard(args: argparse.Namespace) -> None:
    """modelyard alone, ``args.rounds`` times on fresh servers: CPU per op per phase."""
    tmp = Path(tempfile.mkdtemp(prefix="mlflow-compare-"))
    log = RequestLog()
    rounds: list[dict[str, Phase]] = []
    try:
        with log:
            for i in range(args.rounds):
                with ServerProcess(tmp / f"modelyard-{i}" / "data") as server:
                    rounds.append(
                        workload(server.url, args, tmp, Meter(server.pid), log, artifacts=False)
                    )
            with canned_server(log.bodies, tmp) as (url, meter):
                floor = workload(url, args, tmp, meter, log, artifacts=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def ms(seconds: float, phase: Phase) -> float:
        return seconds / phase.ops * 1e3

    print(f"\nMlflowClient {MLFLOW_VERSION} against modelyard only, CPU per op, ms")
    print(
        f"{'phase':28} {'ops':>5} {'req/op':>6} {'yard srv (per round)':>24} {'min':>6}"
        f" {'client':>7} {'floor':>6}"
    )
    for label, f in floor.items():
        per_round = [ms(r[label].server_cpu_s, r[label]) for r in rounds]
        m = rounds[-1][label]
        shown = " ".join(f"{x:.2f}" for x in per_round)
        print(
            f"{label:28} {m.ops:>5} {m.requests / m.ops:>6.2f} {shown:>24} {min(per_round):>6.2f}"
            f" {ms(m.client_cpu_s, m):>7.2f} {ms(f.client_cpu_s, f):>6.2f}"
        )
    print(
        "yard srv: modelyard's server CPU per op (its process tree); client: this process's\n"
        "CPU per op against modelyard; floor: its CPU per op against a server answering\n"
        "recorded bodies (the client's own cost)."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--versions", type=int, default=5)
    ap.add_argument("--searches", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=25, help="versions per writer (8 writers)")
    ap.add_argument(
        "--artifact-mib",
        type=int,
        nargs="+",
        default=[64],
        help="artifact round trips, one per size (e.g. --artifact-mib 100 1024)",
    )
    ap.add_argument("--mlflow-venv", type=Path, default=Path("/work/mlflow-venv"))
    ap.add_argument(
        "--only-modelyard",
        action="store_true",
        help="skip MLflow: modelyard's server CPU per op, client CPU and floor only",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="fresh servers, one per round (head-to-head: rounds after the first skip the"
        " artifacts and print each phase's ratio per round and the median)",
    )
    args = ap.parse_args()
    if args.only_modelyard:
        only_modelyard(args)
        return

    exe = ensure_mlflow_venv(args.mlflow_venv)
    tmp = Path(tempfile.mkdtemp(prefix="mlflow-compare-"))
    log = RequestLog()

    def run(who: str, root: Path, *, artifacts: bool) -> dict[str, Phase]:
        """The workload against a fresh server of ``who`` under ``root``."""
        if who == "mlflow":
            root.mkdir()
            with mlflow_server(exe, root) as (url, meter):
                return workload(url, args, tmp, meter, log, artifacts=artifacts)
        with ServerProcess(root / "data") as server:
            return workload(server.url, args, tmp, Meter(server.pid), log, artifacts=artifacts)

    try:
        with log:
            theirs = run("mlflow", tmp / "mlflow", artifacts=True)
            mine = run("yard", tmp / "modelyard", artifacts=True)
            with canned_server(log.bodies, tmp) as (url, meter):
                floor = workload(url, args, tmp, meter, log, artifacts=False)
            # More rounds on fresh servers, registry phases only, the order
            # swapped every round: run one after the other, a slow spell of
            # the machine would fall on one server's whole workload.
            more: list[tuple[dict[str, Phase], dict[str, Phase]]] = []
            for i in range(1, args.rounds):
                order = ("yard", "mlflow") if i % 2 else ("mlflow", "yard")
                pair = {who: run(who, tmp / f"{who}-{i}", artifacts=False) for who in order}
                more.append((pair["mlflow"], pair["yard"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\nMlflowClient {MLFLOW_VERSION} against MLflow {MLFLOW_VERSION} and modelyard (wall time)"
    )
    print(
        f"{'phase':28} {'ops':>5} {'MLflow/s':>9} {'yard/s':>8} {'ratio':>7} {'same':>4}"
        f" {'req/op':>6} {'floor ms':>8} {'bound':>6} {'cpu-only':>8}"
    )
    all_same = True

    def rate(phase: Phase) -> str:
        per_s = phase.ops / phase.seconds
        return f"{per_s:.1f}" if per_s >= 1 else f"{per_s:.4f}"

    def ms(seconds: float, phase: Phase) -> float:
        return seconds / phase.ops * 1e3

    for label, t in theirs.items():
        m = mine[label]
        same = t.result == m.result
        all_same &= same
        line = (
            f"{label:28} {t.ops:>5} {rate(t):>9} {rate(m):>8} "
            f"{t.seconds / m.seconds:>6.2f}x {'yes' if same else 'NO':>4} "
            f"{m.requests / m.ops:>6.2f}"
        )
        f = floor.get(label)
        if f is not None:
            # The canned server's own CPU is not the client's: take it out.
            floor_s = max(f.seconds - f.server_cpu_s, 0.0) / f.ops
            bound = (t.seconds / t.ops) / (floor_s + m.server_cpu_s / m.ops)
            line += f" {floor_s * 1e3:>8.2f} {bound:>5.2f}x"
            if m.client_cpu_s > 0:
                line += f" {t.seconds / m.client_cpu_s:>7.2f}x"
        print(line)
    print(
        "floor: wall time per op of the same calls against a server answering recorded"
        " bodies;\nbound: MLflow's wall time per op / (floor + modelyard's server CPU per op);"
        "\ncpu-only: MLflow's wall time per op / the client's own CPU per op against modelyard"
        " (no\nserver makes an op take less than the client's CPU for it)."
    )

    # CPU time does not count the waits a loaded machine adds to every request
    # (run queue, wake-ups), so these columns hold on a noisy machine.
    print("\nCPU per op, ms (server: its process tree; client: this process)")
    print(
        f"{'phase':28} {'MLflow srv':>10} {'yard srv':>8} {'client':>7} {'client':>7}"
        f" {'floor':>6} {'cpu ratio':>9} {'cpu bound':>9}"
    )
    print(f"{'':28} {'':>10} {'':>8} {'MLflow':>7} {'yard':>7} {'':>6}")
    for label, t in theirs.items():
        m = mine[label]
        theirs_cpu = ms(t.server_cpu_s + t.client_cpu_s, t)
        mine_cpu = ms(m.server_cpu_s + m.client_cpu_s, m)
        line = (
            f"{label:28} {ms(t.server_cpu_s, t):>10.2f} {ms(m.server_cpu_s, m):>8.2f}"
            f" {ms(t.client_cpu_s, t):>7.2f} {ms(m.client_cpu_s, m):>7.2f}"
        )
        f = floor.get(label)
        if f is not None:
            floor_cpu = ms(f.client_cpu_s, f)
            bound = theirs_cpu / (floor_cpu + ms(m.server_cpu_s, m))
            line += f" {floor_cpu:>6.2f} {theirs_cpu / mine_cpu:>8.2f}x {bound:>8.2f}x"
        print(line)
    print(
        "cpu ratio: (MLflow server + client CPU) / (modelyard server + client CPU);\n"
        "cpu bound: (MLflow server + client CPU) / (floor client CPU + modelyard server CPU),"
        " the best\nratio any server reaches through this client when time is CPU time."
    )
    if more:
        rounds = [(theirs, mine), *more]
        print(f"\nRatio per round ({len(rounds)} rounds, fresh servers; order swapped each round)")
        print(f"{'phase':28} {'rounds':>34} {'median':>7} {'cpu-only median':>16}")
        for label in floor:
            ratios = [t[label].seconds / m[label].seconds for t, m in rounds]
            bounds = [
                t[label].seconds / m[label].client_cpu_s
                for t, m in rounds
                if m[label].client_cpu_s > 0
            ]
            all_same &= all(t[label].result == m[label].result for t, m in rounds)
            shown = " ".join(f"{r:.2f}" for r in ratios)
            median_bound = f"{statistics.median(bounds):.2f}x" if bounds else "-"
            print(f"{label:28} {shown:>34} {statistics.median(ratios):>6.2f}x {median_bound:>16}")
    print(f"results equal on both: {'yes' if all_same else 'NO'}")
    sys.exit(0 if all_same else 1)


if __name__ == "__main__":
    main()
