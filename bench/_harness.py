"""Shared helpers of the benchmarks: a server subprocess, RSS sampling, percentiles.

Everything here talks to 127.0.0.1 only. A server is stopped by the PID this
module started it with, never by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx

MODELYARD = Path(sys.executable).with_name("modelyard")
TASKSET = shutil.which("taskset")
MIB = 1 << 20


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    """``cmd`` prefixed with ``taskset -c CPU`` when asked and available."""
    if cpu is None or TASKSET is None:
        return cmd
    return [TASKSET, "-c", str(cpu), *cmd]


def pin_self(cpu: int | None) -> bool:
    """Pin this (client) process to one CPU; False if not possible."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return False
    return True


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class ServerProcess:
    """``modelyard server`` on 127.0.0.1 as a subprocess; a context manager.

    ``ready_s`` is the time from just before ``Popen`` to the first ``/health``
    that answered 200. With ``cpu`` set (and ``taskset`` installed) the server
    runs pinned to that CPU; ``taskset`` execs the server, so the PID is the
    server's own.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        db_url: str | None = None,
        workers: int = 1,
        cpu: int | None = None,
        log_path: Path | None = None,
        start_timeout: float = 60.0,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            str(MODELYARD),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
            "--workers",
            str(workers),
        ]
        if db_url:
            cmd += ["--db", db_url]
        cmd += extra_args
        self.cmd = pinned(cmd, cpu)
        self.pinned = cpu is not None and TASKSET is not None
        self.log_path = log_path or data_dir.parent / f"server-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        environ = {**os.environ, "MODELYARD_LOG_LEVEL": "warning", **(env or {})}
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.DEVNULL, stderr=self._log, env=environ
        )
        self.pid = self.proc.pid
        try:
            self.ready_s = self._wait_healthy(started, start_timeout)
            # CPU the server spent to get there: unlike ``ready_s``, hardly
            # moved by other processes competing for the cores.
            self.ready_cpu_s = self.cpu_seconds()
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, started: float, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {self.proc.returncode}; see {self.log_path}"
                    )
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.005)
        raise RuntimeError(f"server not healthy after {timeout} s; see {self.log_path}")

    def pids(self) -> list[int]:
        """The server process and, if it pre-forked, its workers."""
        pids = [self.pid]
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            pids += [int(child) for child in children.read_text().split()]
        return pids

    def rss_kib(self) -> int:
        """Resident memory of the server process (its workers too, if pre-forked)."""
        return sum(rss_kib(pid) for pid in self.pids())

    def cpu_seconds(self) -> float:
        """CPU time used by the server process (its workers too, if pre-forked)."""
        return sum(cpu_seconds(pid) for pid in self.pids())

    def stop(self) -> None:
        """SIGTERM the server by PID, SIGKILL it if it lingers past 15 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()


class RssSampler:
    """Samples a ``ServerProcess``'s RSS every ``interval`` seconds in a thread."""

    def __init__(self, server: ServerProcess, interval: float = 0.05) -> None:
        self.server = server
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.server.rss_kib())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self.server.rss_kib())

    @property
    def peak_kib(self) -> int:
        """The highest sample."""
        return max(self.samples, default=0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds this process and a server used within a ``with`` block."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.client = 0.0
        self.server_s = 0.0

    def __enter__(self) -> CpuMeter:
        self._c0 = cpu_seconds(os.getpid())
        self._s0 = self.server.cpu_seconds()
        return self

    def __exit__(self, *_: object) -> None:
        self.client = cpu_seconds(os.getpid()) - self._c0
        self.server_s = self.server.cpu_seconds() - self._s0

    @property
    def total(self) -> float:
        """Client plus server."""
        return self.client + self.server_s


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile by nearest rank (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100), at least 1
    return ordered[int(rank) - 1]


def verdict(ok: bool) -> str:
    """PASS or FAIL, for the target column."""
    return "PASS" if ok else "FAIL"
