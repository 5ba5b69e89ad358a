"""Decode rate (rows/s) of every payload format, measured side by side in one run.

The same telemetry rows (ts, temp, rpm, ok, status, plus a `machine` tag/column) are encoded in each
format, either one row per message or `--rows-per-message` rows per message, and decoded the way the
pipeline does it: micro-batches of `--batch` messages through the stream's decoder (codec + topic
captures + metadata columns). Each cell is the best of `--repeat` runs (2 shared cores: noisy).
Influx is also measured against a plain per-line Python parser, to show what vectorising buys.

    .venv/bin/python benchmarks/decode_formats.py [--rows 100000] [--rows-per-message 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import msgpack
import orjson
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.config import parse_config  # noqa: E402
from arros_mqtt.decode import decoder_for  # noqa: E402

SCHEMA = {"ts": "timestamp[ms]", "temp": "float64", "rpm": "int64", "ok": "bool", "status": "string"}
FORMATS = ("json", "msgpack", "csv", "influx", "arrow")


def make_rows(n: int) -> list[dict]:
    rng = random.Random(7)
    return [{"ts": 1_764_000_000_000 + i, "temp": round(rng.uniform(20, 100), 2), "rpm": rng.randrange(8000),
             "ok": rng.random() > 0.1, "status": rng.choice(["run", "idle", "fault"]),
             "machine": f"m{rng.randrange(50)}"} for i in range(n)]


def encode(fmt: str, rows: list[dict]) -> bytes:
    if fmt == "json":
        return orjson.dumps(rows[0] if len(rows) == 1 else rows)
    if fmt == "msgpack":
        return msgpack.packb(rows[0] if len(rows) == 1 else rows)
    if fmt == "csv":
        return b"".join(f"{r['ts']},{r['temp']},{r['rpm']},{str(r['ok']).lower()},{r['status']},{r['machine']}\n"
                        .encode() for r in rows)
    if fmt == "influx":
        return b"".join(f"telemetry,machine={r['machine']} temp={r['temp']},rpm={r['rpm']}i,ok={str(r['ok']).lower()},"
                        f"status=\"{r['status']}\" {r['ts']}\n".encode() for r in rows)
    table = pa.Table.from_pylist(rows).cast(pa.schema([
        ("ts", pa.int64()), ("temp", pa.float64()), ("rpm", pa.int64()), ("ok", pa.bool_()), ("status", pa.string()),
        ("machine", pa.string())]))
    table = table.set_column(0, "ts", table.column("ts").cast(pa.timestamp("ms")))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def stream_config(fmt: str):
    schema = dict(SCHEMA, machine="string")
    if fmt == "influx":
        schema = {k: v for k, v in schema.items() if k != "ts"}
    stream = {"topic": "bench/{line}/tel", "format": fmt, "schema": schema}
    if fmt == "influx":
        stream["precision"] = "ms"
    return parse_config({"streams": {"s": stream}}, "<bench>").streams["s"]


def measure(fmt: str, rows: list[dict], per_message: int, batch: int, repeat: int) -> float:
    payloads = [encode(fmt, rows[i:i + per_message]) for i in range(0, len(rows), per_message)]
    topics = ["bench/l1/tel"] * len(payloads)
    received = [1_764_000_000_000] * len(payloads)
    best = 0.0
    for _ in range(repeat):
        decoder = decoder_for(stream_config(fmt))
        decoded = 0
        start = time.perf_counter()
        for lo in range(0, len(payloads), batch):
            table, bad = decoder.decode(topics[lo:lo + batch], payloads[lo:lo + batch], received[lo:lo + batch])
            assert not bad, bad[0].error
            decoded += table.num_rows
        elapsed = time.perf_counter() - start
        assert decoded == len(rows), (fmt, decoded)
        best = max(best, len(rows) / elapsed)
    return best


def naive_influx(rows: list[dict], repeat: int) -> float:
    """A straightforward per-line parser (split on spaces/commas, no escapes) + from_pylist: the baseline."""
    text = encode("influx", rows).decode().splitlines()
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        out = []
        for line in text:
            head, fields, ts = line.split(" ")
            measurement, *tags = head.split(",")
            row = {"_measurement": measurement, "_time": int(ts)}
            row.update(tag.split("=", 1) for tag in tags)
            for item in fields.split(","):
                key, value = item.split("=", 1)
                if value.endswith("i"):
                    row[key] = int(value[:-1])
                elif value.startswith('"'):
                    row[key] = value[1:-1]
                elif value in ("t", "true", "f", "false"):
                    row[key] = value[0] == "t"
                else:
                    row[key] = float(value)
            out.append(row)
        pa.Table.from_pylist(out)
        best = max(best, len(rows) / (time.perf_counter() - start))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rows-per-message", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10_000, help="messages per micro-batch (batch_max_rows)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = make_rows(args.rows)
    shapes = (1, args.rows_per_message)
    results = {fmt: {str(k): round(measure(fmt, rows, k, args.batch, args.repeat)) for k in shapes} for fmt in FORMATS}
    baseline = round(naive_influx(rows, args.repeat))
    print(f"{args.rows:,} rows, micro-batches of {args.batch:,} messages, best of {args.repeat}")
    print(f"{'format':<10}{'1 row/message':>18}{f'{shapes[1]} rows/message':>22}")
    for fmt, cells in results.items():
        print(f"{fmt:<10}{cells['1']:>18,}{cells[str(shapes[1])]:>22,}")
    print(f"{'influx, per-line Python parser (baseline)':<50}{baseline:>10,}")
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "batch": args.batch, "rows_per_s": results,
                                         "influx_per_line_python_rows_per_s": baseline}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
