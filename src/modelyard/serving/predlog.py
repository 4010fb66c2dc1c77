"""Optional prediction logging (issue 12): inputs, outputs, version and
latency of each inference, as JSON lines in rotating local files.

Off unless ``modelyard serve --log-predictions DIR`` asks for it. The
directory is made 0700 and the files 0600 (requests can hold personal data).
Size is bounded: ``predictions.jsonl`` is rotated when the next line would
take it past ``max_bytes`` (``predictions.1.jsonl`` is the newest old file,
up to ``backups`` of them; the oldest is deleted), so the log never takes
more than ``(backups + 1) * max_bytes`` plus one line.

Requests never wait on the disk: the event loop only queues the arrays (the
model's answers are not changed afterwards) and a writer thread serializes
and writes them. When the queue is full, a record is dropped and counted
(``modelyard_serving_prediction_log_dropped_total``) rather than slowing
inference down.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

log = logging.getLogger("modelyard.serving")

FILE_NAME = "predictions.jsonl"
QUEUE_SIZE = 10_000


@dataclass(slots=True)
class Record:
    """One inference as queued: what the writer thread turns into a line."""

    at: float
    model: str
    version: str
    ref: str
    request_id: str | None
    latency_ms: float
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray] | None
    error: str | None


def _rotated(directory: Path, n: int) -> Path:
    return directory / f"predictions.{n}.jsonl"


class PredictionLog:
    """The queue, the writer thread and the rotating files (module docstring)."""

    def __init__(self, directory: Path, *, max_bytes: int, backups: int) -> None:
        if max_bytes < 1 or backups < 0:
            raise ValueError("max_bytes must be positive and backups non-negative")
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        self.directory = directory
        self.max_bytes = max_bytes
        self.backups = backups
        self.dropped = 0
        self._queue: queue.Queue[Record | None] = queue.Queue(QUEUE_SIZE)
        self._file = self._open()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def _open(self) -> Any:
        path = self.directory / FILE_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "ab", buffering=1 << 16)

    def record(self, rec: Record) -> bool:
        """Queue ``rec`` (from the event loop); False if it was dropped."""
        try:
            self._queue.put_nowait(rec)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def close(self) -> None:
        """Write what is queued, then stop the writer and close the file."""
        self._queue.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            rec = self._queue.get()
            if rec is None:
                break
            try:
                self._write(_line(rec))
            except Exception:  # a full disk: keep serving, say so once per record
                log.exception("prediction log: a record was not written")
            if self._queue.empty():
                self._file.flush()
        self._file.close()

    def _write(self, line: bytes) -> None:
        if self._file.tell() and self._file.tell() + len(line) > self.max_bytes:
            self._rotate()
        self._file.write(line)

    def _rotate(self) -> None:
        self._file.close()
        if self.backups == 0:
            (self.directory / FILE_NAME).unlink(missing_ok=True)
        else:
            _rotated(self.directory, self.backups).unlink(missing_ok=True)
            for n in range(self.backups - 1, 0, -1):
                older = _rotated(self.directory, n)
                if older.exists():
                    older.rename(_rotated(self.directory, n + 1))
            (self.directory / FILE_NAME).rename(_rotated(self.directory, 1))
        self._file = self._open()


def _line(rec: Record) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(rec.at))
    doc: dict[str, Any] = {
        "at": f"{stamp}.{int(rec.at % 1 * 1e6):06d}Z",
        "model": rec.model,
        "version": rec.version,
        "ref": rec.ref,
        "id": rec.request_id,
        "latency_ms": round(rec.latency_ms, 4),
        "inputs": {k: _plain(v) for k, v in rec.inputs.items()},
    }
    if rec.outputs is not None:
        doc["outputs"] = {k: _plain(v) for k, v in rec.outputs.items()}
    if rec.error is not None:
        doc["error"] = rec.error
    # NaN and infinities are not JSON: orjson writes them as null.
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def _plain(arr: np.ndarray) -> Any:
    arr = np.asarray(arr)
    if arr.dtype == np.float16 or not arr.flags.c_contiguous:
        return arr.tolist()
    return arr
