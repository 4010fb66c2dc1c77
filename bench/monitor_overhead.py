"""Cost of the model server's monitoring on the request path (issue 12).

Per inference, the server counts the request's features into the version's
rolling window (``VersionMonitor.observe_inputs``) and the request itself
(``observe``: failed or not, latency). This times both in this process on a
batch-1, four-feature FP32 input like the iris model ``bench/serve.py``
serves, with and without reference statistics, and prints microseconds per
request (median of repeats); compare with the p50 overhead ``bench/serve.py``
prints for the whole request.

    .venv/bin/python bench/monitor_overhead.py [--repeat 7] [--number 20000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import timeit

import numpy as np

from modelyard.client import compute_reference_stats
from modelyard.serving.monitor import VersionMonitor
from modelyard.serving.tensors import Signature, TensorSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sample = rng.normal(size=(1000, 4))
    signature = Signature((TensorSpec("X", "FP32", (-1, 4)),), ())
    stats = compute_reference_stats(sample, input="X")
    request = {"X": rng.normal(size=(1, 4)).astype(np.float32)}
    for label, monitor in (
        ("without reference statistics", VersionMonitor(None, signature, 300)),
        ("with 4 numeric features", VersionMonitor(stats, signature, 300)),
    ):

        def once(m: VersionMonitor = monitor) -> None:
            m.observe_inputs(request)
            m.observe(False, 0.0003)

        runs = timeit.repeat(once, repeat=args.repeat, number=args.number)
        per = statistics.median(runs) / args.number * 1e6
        print(f"monitoring {label}: {per:.2f} us per request (median of {args.repeat})")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    snap_runs = timeit.repeat(monitor.snapshot, repeat=args.repeat, number=1000)
    print(f"snapshot (watcher, /metrics): {statistics.median(snap_runs) / 1000 * 1e6:.1f} us")


if __name__ == "__main__":
    main()
