"""Windowed aggregation replay: Arros's engine vs DuckDB doing the same query as a batch, in one run.

1M telemetry events from 100 machines (1 event per ms overall, ~1,000 s of event time), arriving with
+-300 ms disorder, into `tumble(ts, INTERVAL '10 seconds')` with count/avg/max/min and a 5 s watermark.
Each contender runs in a child process of its own (so peak RSS is its own) over the same seeded data:

- `engine`: decoded Arrow micro-batches of 10,000 rows straight into `Engine.process` (no broker, no
  decoding); a final tick closes the last windows;
- `pipeline`: the same events as JSON payloads through `Pipeline.process` (decode -> engine -> JSON
  encoding of each result message; the publish function only counts), still without a broker;
- `duckdb`: the whole table at once, `GROUP BY` the 10 s bucket and machine.

Peak RSS is measured over the timed run only (the peak is reset after the inputs are prepared and
loaded; "RSS before" is what the process held then, inputs included). Every contender's result rows
are compared with DuckDB's (count exact, avg/min/max within 1e-9).

    .venv/bin/python benchmarks/window_replay.py [--events 1000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MACHINES, BATCH, START_MS = 100, 10_000, 1_764_000_000_000
SQL = ("SELECT tumble(ts, INTERVAL '10 seconds') AS window, machine, count(*) AS n, avg(temp) AS avg_temp, "
       "max(temp) AS max_temp, min(temp) AS min_temp FROM telemetry GROUP BY window, machine")
DUCKDB_SQL = ("SELECT epoch_ms(ts::TIMESTAMP) // 10000 * 10000 AS start_ms, machine, count(*) AS n, "
              "avg(temp) AS avg_temp, max(temp) AS max_temp, min(temp) AS min_temp FROM events GROUP BY ALL")


def make_events(n: int) -> pa.Table:
    """Events in arrival order: the i-th arrives at START + i ms with an event time off by up to +-300 ms."""
    rng = np.random.default_rng(42)
    ms = START_MS + np.arange(n, dtype=np.int64) + rng.integers(-300, 301, n)
    names = pa.array([f"m{i:03d}" for i in range(MACHINES)])
    return pa.table({
        "ts": pa.array(ms).cast(pa.timestamp("ms")),
        "temp": pa.array(np.round(rng.uniform(20, 100, n), 2)),
        "machine": names.take(pa.array(rng.integers(0, MACHINES, n))),
    })


def rss_mb(field: str = "VmRSS") -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Start peak RSS afresh (Linux: writing 5 to clear_refs resets VmHWM), so preparing inputs is not counted."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def child(mode: str, events_path: str, out_path: str) -> None:
    """One contender: load the events, run, write its windows as Parquet and its numbers as JSON on stdout."""
    with pa.OSFile(events_path) as source:  # Arrow IPC: reading Parquet would keep ~50 MB of reader memory
        events = pa.ipc.open_file(source).read_all()
    if mode == "duckdb":
        import duckdb

        con = duckdb.connect()
        baseline = rss_mb()
        reset_peak()
        start = time.perf_counter()
        con.register("events", events)
        result = con.sql(DUCKDB_SQL).to_arrow_table()
        elapsed = time.perf_counter() - start
        extra = {}
        peak = rss_mb("VmHWM")
        extra = {}
    else:
        result, elapsed, baseline, peak, extra = _arros(mode, events)
    pq.write_table(result, out_path)
    print(json.dumps({"mode": mode, "seconds": elapsed, "peak_rss_mb": peak, "rss_before_mb": baseline,
                      "rows_out": result.num_rows, **extra}))


def _arros(mode: str, events: pa.Table) -> tuple[pa.Table, float, float, float, dict]:
    from arros_mqtt.config import parse_config
    from arros_mqtt.ingress.batcher import RawBatch
    from arros_mqtt.service.pipeline import Pipeline
    from arros_mqtt.service.runtime import build_engine

    config = parse_config({
        "streams": {"telemetry": {"topic": "f/{machine}/t", "event_time": "ts", "watermark": "5s",
                                  "schema": {"ts": "timestamp[ms]", "temp": "float64"}}},
        "subscriptions": {"win": {"sql": SQL, "output": "out/{machine}"}},
    }, "<bench>")
    engine = build_engine(config)
    schema = config.streams["telemetry"].full_schema()
    arrival_ms = START_MS + np.arange(events.num_rows, dtype=np.int64)
    results: list[pa.Table] = []
    published = [0]

    def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        published[0] += 1

    pipeline = Pipeline(config, engine, publish)
    pipeline.add_result_sink(lambda result: results.append(result.table))
    peak_state = 0
    if mode == "engine":
        topic = pa.array(["f/m/t"] * BATCH)
        batches = [_stream_batch(events.slice(i, BATCH), arrival_ms[i:i + BATCH], topic, schema)
                   for i in range(0, events.num_rows, BATCH)]
        baseline = rss_mb()
        reset_peak()
        start = time.perf_counter()
        for batch in batches:
            pipeline.process_table("telemetry", batch)
            peak_state = max(peak_state, engine.subscriptions["win"].stats.state_rows)
    else:
        ts = events.column("ts").cast(pa.int64()).to_pylist()
        temps = events.column("temp").to_pylist()
        topics = [f"f/{m}/t" for m in events.column("machine").to_pylist()]
        # %-formatting gives exact-size bytes like a broker's payloads (orjson.dumps results keep ~4 KB each)
        raws = [RawBatch("telemetry", topics[i:i + BATCH],
                         [b'{"ts":%d,"temp":%r}' % (t, v) for t, v in zip(ts[i:i + BATCH], temps[i:i + BATCH],
                                                                           strict=True)],
                         arrival_ms[i:i + BATCH].tolist()) for i in range(0, len(ts), BATCH)]
        del ts, temps, topics
        baseline = rss_mb()
        reset_peak()
        start = time.perf_counter()
        for raw in raws:
            pipeline.process(raw)
            peak_state = max(peak_state, engine.subscriptions["win"].stats.state_rows)
    pipeline.tick(arrival_ms[-1] / 1000 + 3600)  # idle: close the last windows
    elapsed = time.perf_counter() - start
    peak = rss_mb("VmHWM")
    stats = engine.subscriptions["win"].stats
    table = pa.concat_tables(results)
    flat = pa.table({
        "start_ms": table.column("window").combine_chunks().field("start").cast(pa.int64()),
        **{name: table.column(name) for name in ("machine", "n", "avg_temp", "max_temp", "min_temp")},
    })
    return flat, elapsed, baseline, peak, {"late_rows": stats.late_rows, "errors": stats.errors,
                                           "peak_state_rows": peak_state, "messages_out": published[0]}


def _stream_batch(events: pa.Table, arrival_ms: np.ndarray, topic: pa.Array, schema: pa.Schema) -> pa.Table:
    """A decoded micro-batch sharing the events' buffers (only the arrival times are new: 80 KB)."""
    return pa.table({
        "ts": events.column("ts"), "temp": events.column("temp"), "machine": events.column("machine"),
        "_topic": topic.slice(0, events.num_rows),
        "_received_at": pa.array(arrival_ms).view(pa.timestamp("ms", tz="UTC")),
    }).select(schema.names).cast(schema)


def compare(ours: pa.Table, expected: pa.Table) -> str | None:
    """None when both have the same windows with the same values; else the first difference."""
    key = ["start_ms", "machine"]
    a = ours.sort_by([(k, "ascending") for k in key]).to_pylist()
    b = expected.sort_by([(k, "ascending") for k in key]).to_pylist()
    if len(a) != len(b):
        return f"{len(a)} windows vs DuckDB's {len(b)}"
    for mine, theirs in zip(a, b, strict=True):
        for column, value in theirs.items():
            got = mine[column]
            same = math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-9) if isinstance(value, float) else got == value
            if not same:
                return f"{column}: {mine} vs DuckDB {theirs}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--modes", default="engine,pipeline,duckdb")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "EVENTS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        events_path = Path(tmp) / "events.arrow"
        events = make_events(args.events)
        with pa.OSFile(str(events_path), "wb") as sink, pa.ipc.new_file(sink, events.schema) as writer:
            writer.write_table(events)
        del events
        runs, tables = {}, {}
        for mode in ["duckdb", *[m for m in args.modes.split(",") if m != "duckdb"]]:
            out = Path(tmp) / f"{mode}.parquet"
            done = subprocess.run([sys.executable, __file__, "--child", mode, str(events_path), str(out)],
                                  capture_output=True, text=True, check=True, timeout=1800)
            runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            tables[mode] = pq.read_table(out)
    ok = True
    print(f"{args.events:,} events, {MACHINES} machines, 10 s tumbling window, +-300 ms disorder, 5 s watermark")
    print(f"{'contender':<10}{'seconds':>9}{'events/s':>12}{'peak RSS MB':>13}{'RSS before MB':>15}{'windows':>9}  "
          "vs DuckDB")
    for mode, run in runs.items():
        difference = None if mode == "duckdb" else compare(tables[mode], tables["duckdb"])
        run["matches_duckdb"] = difference is None
        ok &= difference is None and run.get("errors", 0) == 0 and run.get("late_rows", 0) == 0
        print(f"{mode:<10}{run['seconds']:>9.2f}{args.events / run['seconds']:>12,.0f}{run['peak_rss_mb']:>13.0f}"
              f"{run['rss_before_mb']:>15.0f}{run['rows_out']:>9}  {difference or 'same rows'}")
    for mode in ("engine", "pipeline"):
        if mode in runs:
            print(f"{mode}: peak state {runs[mode]['peak_state_rows']} rows, late {runs[mode]['late_rows']}, "
                  f"messages out {runs[mode]['messages_out']}")
    if args.json:
        args.json.write_text(json.dumps({"events": args.events, "machines": MACHINES, "runs": runs}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
