"""``modelyard serve`` against its targets (issue 12): overhead, throughput, start, memory.

Serves a tiny ONNX model (an iris-like logistic regression trained here,
batch 1) with ``modelyard serve``, pinned to CPU 0, and measures from CPU 1:

- p50 overhead: tritonclient (HTTP, one request at a time) minus onnxruntime
  called directly on the same input, in this process;
- throughput and p99 with wrk (``-t1 -c16``, JSON bodies without a
  Content-Type, as tritonclient sends them);
- start to ready: ``modelyard serve`` started again with the model in its
  cache, until ``/v2/health/ready`` answers 200;
- idle RSS of the serving process after that start.

A registry (``modelyard server``) runs beside it in the same temp directory.
Needs the dev extra (scikit-learn, skl2onnx, tritonclient) and wrk.

    .venv/bin/python bench/serve.py [--duration 15] [--connections 16] [--no-pin]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from _harness import MODELYARD, TASKSET, ServerProcess, free_port, percentile, pinned, rss_kib
from _harness import verdict as shown
from point_reads import parse_wrk

TARGET_OVERHEAD_MS = 0.3
TARGET_RPS = 5000.0
TARGET_P99_MS = 10.0
TARGET_START_S = 1.0
TARGET_RSS_MIB = 150.0

LUA = """
wrk.method = "POST"
wrk.body = '{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}'
"""


def make_model(path: Path) -> np.ndarray:
    """Write the ONNX model; return one input row (float32, shape (1, 4))."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centers = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.5, 2.0]])
    x = np.concatenate([c + rng.normal(scale=0.4, size=(50, 4)) for c in centers])
    y = np.repeat([0, 1, 2], 50)
    est = LogisticRegression(max_iter=500).fit(x, y)
    row = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    onx = to_onnx(est, row, options={"zipmap": False}, target_opset=17)
    path.write_bytes(onx.SerializeToString())
    return row


class ServeProcess:
    """``modelyard serve`` as a subprocess, stopped by its PID."""

    def __init__(self, registry: str, ref: str, cache: Path, log: Path, cpu: int | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [str(MODELYARD), "serve", ref, "-r", registry, "--port", str(self.port)]
        cmd += ["--cache-dir", str(cache), "--log-level", "warning"]
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        started = time.perf_counter()
        self.proc = subprocess.Popen(pinned(cmd, cpu), stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=2) as client:
            while True:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"modelyard serve did not start; see {log}")
                try:
                    if client.get(f"{self.url}/v2/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.002)
        self.ready_s = time.perf_counter() - started

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after 15 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


def raw_p50_ms(model: Path, row: np.ndarray, seconds: float) -> float:
    """onnxruntime called directly, batch 1, one thread (as the server runs it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        session.run(None, {"X": row})
        times.append(time.perf_counter() - t0)
    return 1000 * percentile(times, 50)


def triton_p50_ms(url: str, row: np.ndarray, seconds: float) -> tuple[float, int]:
    """tritonclient over HTTP, one request at a time; (p50 ms, requests)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    try:
        inp = httpclient.InferInput("X", [1, 4], "FP32")
        inp.set_data_from_numpy(row, binary_data=False)
        for _ in range(200):  # warm-up: connection, first-call paths
            client.infer("iris", [inp])
        times = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            client.infer("iris", [inp])
            times.append(time.perf_counter() - t0)
    finally:
        client.close()
    return 1000 * percentile(times, 50), len(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=15, help="seconds per measurement")
    ap.add_argument("--connections", type=int, default=16, help="wrk -c")
    ap.add_argument("--no-pin", action="store_true", help="do not use taskset")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, cache)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    pin = not args.no_pin and TASKSET is not None
    server_cpu, client_cpu = (0, 1) if pin else (None, None)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})

    from modelyard.client import Registry

    tmp = Path(tempfile.mkdtemp(prefix="modelyard-serve-"))
    try:
        model = tmp / "iris.onnx"
        row = make_model(model)
        with ServerProcess(tmp / "registry", cpu=client_cpu) as registry:
            with Registry(registry.url, cache_dir=tmp / "sdk-cache") as reg:
                reg.push("iris", [model], framework="onnx", format="onnx")
                reg.set_alias("iris/1", "production")
            cache, log = tmp / "serve-cache", tmp / "serve.log"
            ServeProcess(registry.url, "iris@production", cache, log, server_cpu).stop()  # fill
            served = ServeProcess(registry.url, "iris@production", cache, log, server_cpu)
            try:
                time.sleep(1.0)
                idle_mib = rss_kib(served.proc.pid) / 1024
                raw = raw_p50_ms(model, row, min(args.duration, 5))
                p50, n = triton_p50_ms(served.url, row, args.duration)
                script = tmp / "infer.lua"
                script.write_text(LUA)
                cmd = [
                    "wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s",
                    "--timeout", "5s", "--latency", "-s", str(script),
                    f"{served.url}/v2/models/iris/infer",
                ]  # fmt: skip
                out = subprocess.run(
                    pinned(cmd, client_cpu),
                    capture_output=True,
                    text=True,
                    timeout=args.duration + 60,
                    check=True,
                ).stdout
                (tmp / "wrk.out").write_text(out)
                wrk = parse_wrk(out)
            finally:
                served.stop()
        overhead = p50 - raw
        print(
            "pinning: "
            + ("serve on CPU 0, clients and registry on CPU 1" if pin else "none (shared CPUs)")
        )
        print(f"wrk: {' '.join(cmd).replace(str(tmp) + '/', '')}")
        print(f"{'measure':<36} {'value':>12}  target")
        print(f"{'onnxruntime direct, p50':<36} {raw * 1000:>9.1f} us  -")
        print(f"{'tritonclient p50 (' + str(n) + ' requests)':<36} {p50:>9.3f} ms  -")
        ok = overhead < TARGET_OVERHEAD_MS
        print(f"{'p50 overhead over onnxruntime':<36} {overhead:>9.3f} ms  {shown(ok)} < 0.3 ms")
        ok = wrk.rps >= TARGET_RPS and wrk.non_2xx == 0 and wrk.socket_errors == 0
        label = f"throughput, {args.connections} connections"
        print(f"{label:<36} {wrk.rps:>7.0f} req/s  {shown(ok)} >= 5,000, no errors")
        print(
            f"{'p99 under that load':<36} {wrk.p99_ms:>9.2f} ms  "
            f"{shown(wrk.p99_ms < TARGET_P99_MS)} < 10 ms"
        )
        print(f"{'errors (non-2xx, socket)':<36} {wrk.non_2xx + wrk.socket_errors:>12}")
        ok = served.ready_s < TARGET_START_S
        print(f"{'start to ready (model cached)':<36} {served.ready_s:>10.3f} s  {shown(ok)} < 1 s")
        ok = idle_mib < TARGET_RSS_MIB
        print(f"{'idle RSS':<36} {idle_mib:>8.1f} MiB  {shown(ok)} < 150 MiB")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
