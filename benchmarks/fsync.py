"""fsync time of the disk under a folder, as the write-ahead log pays it: append a small record, fsync.

With `[durability] sync = "batch"` (the default) every micro-batch's results wait for one such fsync,
so its tail is a floor under the latency tail; run it where `state_dir` will be.

    .venv/bin/python benchmarks/fsync.py [--dir DIR] [--count 1000] [--bytes 8192]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def measure(directory: Path, count: int, size: int) -> dict:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        fd = os.open(Path(tmp) / "probe.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            record = os.urandom(size)
            times = []
            for _ in range(count):
                os.write(fd, record)
                started = time.perf_counter()
                os.fsync(fd)
                times.append((time.perf_counter() - started) * 1000)
        finally:
            os.close(fd)
    p50, p90, p99, p999 = np.percentile(times, [50, 90, 99, 99.9])
    return {"count": count, "bytes": size, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "p999_ms": p999,
            "max_ms": max(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--bytes", type=int, default=8192)
    args = parser.parse_args()
    r = measure(args.dir, args.count, args.bytes)
    print(f"fsync after a {r['bytes']:,} B append, {r['count']:,} times under {args.dir}: p50 {r['p50_ms']:.2f} ms, "
          f"p90 {r['p90_ms']:.2f}, p99 {r['p99_ms']:.2f}, p99.9 {r['p999_ms']:.2f}, max {r['max_ms']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
