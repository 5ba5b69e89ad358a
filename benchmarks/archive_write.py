"""Archive write rate and file sizes: N decoded telemetry rows through the archive sink, in micro-batches.

The rows are what a `telemetry` stream decodes (ts, temp, rpm, ok, status, seq, the topic captures
line and machine, `_topic`, `_received_at`; 100 machines). They go to `Archive.write_rows` in
micro-batches of `--batch` rows, then `close()`: the time includes partitioning, row-group
buffering, compression, footers, fsync and renames. Next to it, in the same run, the ceiling: one
`pyarrow.parquet.write_table` of the whole table into one file. Every run is read back with DuckDB
(row count and sum of `seq`) before its numbers count. Each case runs `--repeat` times; the median
run is reported (two shared cores are noisy).

    .venv/bin/python benchmarks/archive_write.py --rows 1000000 [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.config import parse_config  # noqa: E402
from arros_mqtt.egress.archive import Archive  # noqa: E402

HOUR_MS = 3_600_000
START_MS = 1_764_000_000_000 - 1_764_000_000_000 % HOUR_MS
SCHEMA = {"ts": "timestamp[ms]", "temp": "float64", "rpm": "int64", "ok": "bool", "status": "string", "seq": "int64"}


def telemetry(n: int, hours: int) -> pa.Table:
    """`n` rows from 100 machines, event times spread evenly over `hours` hours."""
    rng = np.random.default_rng(1)
    machine = rng.integers(0, 100, n)
    line = machine // 25
    ts = START_MS + np.arange(n, dtype=np.int64) * (hours * HOUR_MS // n)
    return pa.table({
        "ts": pa.array(ts).cast(pa.timestamp("ms")),
        "temp": pa.array(np.round(rng.uniform(20, 100, n), 2)),
        "rpm": pa.array(rng.integers(0, 8000, n)),
        "ok": pa.array(rng.random(n) > 0.05),
        "status": pa.array(np.array(["run", "idle", "fault"])[rng.integers(0, 3, n)]),
        "seq": pa.array(np.arange(n, dtype=np.int64)),
        "line": pa.array(np.char.add("l", line.astype(str))),
        "machine": pa.array(np.char.add("m", machine.astype(str))),
        "_topic": pa.array(np.char.add(np.char.add(np.char.add("factory/l", line.astype(str)), "/m"),
                                       np.char.add(machine.astype(str), "/telemetry"))),
        "_received_at": pa.array(ts + 40).cast(pa.timestamp("ms", tz="UTC")),
    })


def run_archive(table: pa.Table, batch: int, compression: str, directory: Path) -> dict:
    config = parse_config({
        "archive": {"dir": str(directory), "compression": compression},
        "streams": {"telemetry": {"topic": "factory/{line}/{machine}/telemetry", "schema": SCHEMA,
                                  "event_time": "ts", "archive": True}},
    }, "<bench>")
    archive = Archive(config)
    archive.open()
    batches = [table.slice(i, batch) for i in range(0, table.num_rows, batch)]
    start = time.perf_counter()
    for part in batches:
        archive.write_rows("telemetry", part)
    archive.close()
    elapsed = time.perf_counter() - start
    files = sorted(directory.rglob("*.parquet"))
    n, seq_sum = duckdb.sql(f"SELECT count(*), sum(seq) FROM read_parquet('{directory}/**/*.parquet')").fetchall()[0]
    assert n == table.num_rows and seq_sum == table.num_rows * (table.num_rows - 1) // 2, (n, seq_sum)
    size = sum(f.stat().st_size for f in files)
    return {"seconds": round(elapsed, 3), "rows_per_s": round(table.num_rows / elapsed),
            "ms_per_batch": round(elapsed * 1000 / len(batches), 2), "files": len(files), "bytes": size,
            "bytes_per_row": round(size / table.num_rows, 2)}


def run_ceiling(table: pa.Table, directory: Path) -> dict:
    path = directory / "one.parquet"
    directory.mkdir(parents=True)
    start = time.perf_counter()
    pq.write_table(table, path, compression="zstd", row_group_size=65_536)
    elapsed = time.perf_counter() - start
    size = path.stat().st_size
    return {"seconds": round(elapsed, 3), "rows_per_s": round(table.num_rows / elapsed), "files": 1, "bytes": size,
            "bytes_per_row": round(size / table.num_rows, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000, help="rows per micro-batch (batch_max_rows)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    one_hour, day = telemetry(args.rows, 1), telemetry(args.rows, 24)
    in_memory = one_hour.nbytes
    cases = {
        "pyarrow write_table, 1 file (ceiling)": lambda d: run_ceiling(one_hour, d),
        "archive zstd, 1 hour": lambda d: run_archive(one_hour, args.batch, "zstd", d),
        "archive zstd, 24 hours": lambda d: run_archive(day, args.batch, "zstd", d),
        "archive snappy, 1 hour": lambda d: run_archive(one_hour, args.batch, "snappy", d),
        "archive none, 1 hour": lambda d: run_archive(one_hour, args.batch, "none", d),
    }
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, case) in enumerate(cases.items()):
            results = [case(Path(tmp) / f"{i}-{r}") for r in range(args.repeat)]
            runs[name] = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]
            runs[name]["rows_per_s_all"] = [r["rows_per_s"] for r in results]
    print(f"{args.rows:,} telemetry rows ({in_memory / 1e6:.0f} MB in Arrow), micro-batches of {args.batch:,}")
    print(f"median of {args.repeat} runs each")
    print(f"{'run':<40}{'rows/s':>12}{'ms/batch':>10}{'files':>7}{'MB':>8}{'B/row':>7}")
    for name, r in runs.items():
        per_batch = f"{r['ms_per_batch']:.1f}" if "ms_per_batch" in r else "-"
        print(f"{name:<40}{r['rows_per_s']:>12,}{per_batch:>10}{r['files']:>7}{r['bytes'] / 1e6:>8.1f}"
              f"{r['bytes_per_row']:>7.1f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "batch": args.batch, "arrow_bytes": in_memory,
                                         "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
