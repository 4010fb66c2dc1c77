"""1 GiB push and pull through presigned URLs versus through the server, on S3 (issue 13).

The store is a local S3-compatible server process (moto in server mode, the
one the tests use) on 127.0.0.1; a ``modelyard server`` on a SQLite database
in front of it. One file of ``--size`` random bytes is pushed and pulled with
the SDK (``Registry(url).push`` / ``pull``, fresh caches) in each mode:

- ``direct``        presigned single PUT (up to the multipart threshold);
                    the server reads the object back once in its background
                    verifier before the SDK's push returns
- ``direct-parts``  presigned multipart (``--part`` bytes per part) sent
                    ``--concurrency`` parts at once, then the same read-back
- ``direct-parts-1`` the same, one part at a time (``upload_concurrency=1``)
- ``proxy``         ``MODELYARD_DIRECT_TRANSFERS=false``: every byte through
                    the server (hashed there, multipart to the store)

For each: wall time and MiB/s of push and pull, and the CPU seconds the
modelyard server, the store process and this client used during each. The
issue's targets: the direct path is not slower than the proxy, and the
server's CPU during a direct push stays near idle apart from the one
read-back verification (about one SHA-256 pass over the bytes, plus the
store's GET). The machine is shared and moto is itself a Python process on
the same two cores: compare the modes of one run, not figures across runs.

    python bench/transfer_s3.py [--size 1GiB] [--part 64MiB] [--concurrency 4] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
from _harness import MIB, CpuMeter, ServerProcess, cpu_seconds, free_port
from transfer import make_random_file, parse_size, sha256_of

from modelyard import Registry

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class Figures:
    """One mode's measurements."""

    mode: str
    push_s: float
    pull_s: float
    push_cpu: CpuMeter
    pull_cpu: CpuMeter
    store_push_cpu: float
    store_pull_cpu: float
    identical: bool


class Moto:
    """moto's S3 server on a free 127.0.0.1 port, stopped by its PID."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env={**os.environ, **CREDENTIALS},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto did not start")

    def client(self) -> object:
        return boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        ).client("s3", endpoint_url=self.endpoint)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def run_mode(
    mode: str, moto: Moto, src: Path, digest: str, work: Path, args: argparse.Namespace
) -> Figures:
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    s3 = moto.client()
    s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    env = {
        **CREDENTIALS,
        "AWS_ENDPOINT_URL_S3": moto.endpoint,
        "MODELYARD_STORE": f"s3://{bucket}/reg",
        "MODELYARD_DIRECT_TRANSFERS": "false" if mode == "proxy" else "true",
        "MODELYARD_S3_PART_SIZE": str(args.part),
        "MODELYARD_S3_DIRECT_MULTIPART_THRESHOLD": str(
            args.part if mode.startswith("direct-parts") else 5 << 30
        ),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    data_dir = work / mode
    concurrency = 1 if mode == "direct-parts-1" else args.concurrency
    try:
        # A loaded machine can take minutes to start a niced server.
        with ServerProcess(data_dir / "server", start_timeout=600) as server:
            with Registry(
                server.url, cache_dir=data_dir / "cache-push", upload_concurrency=concurrency
            ) as reg:
                reg.create_model("big")
                m0 = moto.cpu()
                t0 = time.perf_counter()
                with CpuMeter(server) as push_cpu:
                    version = reg.push("big", {"model.bin": src})
                push_s = time.perf_counter() - t0
                store_push = moto.cpu() - m0
            out = data_dir / "out"
            with Registry(server.url, cache_dir=data_dir / "cache-pull") as reg:
                m0 = moto.cpu()
                t0 = time.perf_counter()
                with CpuMeter(server) as pull_cpu:
                    reg.pull(f"big/{version.version}", out)
                pull_s = time.perf_counter() - t0
                store_pull = moto.cpu() - m0
            identical = sha256_of(out / "model.bin") == digest
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        # Free moto's memory (it keeps objects in RAM) and our copies.
        paginator = s3.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
        for page in paginator.paginate(Bucket=bucket):
            for obj in page.get("Contents", ()):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])  # type: ignore[attr-defined]
        shutil.rmtree(data_dir, ignore_errors=True)
    return Figures(mode, push_s, pull_s, push_cpu, pull_cpu, store_push, store_pull, identical)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    ap.add_argument("--part", type=parse_size, default=parse_size("64MiB"))
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: /tmp)")
    ap.add_argument(
        "--modes", default="direct,direct-parts,direct-parts-1,proxy", help="comma-separated"
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelyard-s3-bench-", dir=args.dir))
    try:
        src = work / "model.bin"
        digest = make_random_file(src, args.size)
        h = hashlib.sha256()
        t0 = time.perf_counter()
        with open(src, "rb") as f:
            while chunk := f.read(8 * MIB):
                h.update(chunk)
        hash_s = time.perf_counter() - t0
        moto = Moto(work / "moto.log")
        mib = args.size / MIB
        print(
            f"{mib:.0f} MiB file; part {args.part / MIB:.0f} MiB; concurrency "
            f"{args.concurrency}; one SHA-256 pass over it here: {hash_s:.2f} s"
        )
        print(
            f"{'mode':<16}{'push s':>8}{'MiB/s':>8}{'srv cpu':>9}{'store':>8}{'client':>8}"
            f"{'pull s':>9}{'MiB/s':>8}{'srv cpu':>9}{'store':>8}{'client':>8}  ok",
            flush=True,
        )
        try:
            for mode in args.modes.split(","):
                r = run_mode(mode, moto, src, digest, work, args)
                print(
                    f"{r.mode:<16}{r.push_s:>8.2f}{mib / r.push_s:>8.0f}"
                    f"{r.push_cpu.server_s:>9.2f}{r.store_push_cpu:>8.2f}{r.push_cpu.client:>8.2f}"
                    f"{r.pull_s:>9.2f}{mib / r.pull_s:>8.0f}{r.pull_cpu.server_s:>9.2f}"
                    f"{r.store_pull_cpu:>8.2f}{r.pull_cpu.client:>8.2f}"
                    f"  {'yes' if r.identical else 'NO'}",
                    flush=True,
                )
        finally:
            moto.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        "srv cpu: the modelyard server's CPU seconds (a direct push's includes its one "
        "read-back verification); store: moto's; client: this process's."
    )


if __name__ == "__main__":
    main()
