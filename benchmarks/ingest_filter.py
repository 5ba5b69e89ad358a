"""Ingest throughput of one per-row filter subscription vs a bare `mosquitto_sub`, in one run.

Both receive the same N JSON telemetry messages (~100 B) that `mosquitto_pub -l` publishes at QoS 0
to a Mosquitto on a free loopback port. The ceiling is the time until `mosquitto_sub -C N` has them
all; Arros's time is until its engine has decoded all N rows. Zero loss is checked: every row is
counted, and the filter's output count equals the count computed independently over the input.

    .venv/bin/python benchmarks/ingest_filter.py --messages 200000 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.config import parse_config  # noqa: E402
from arros_mqtt.local_broker import HOST, start_mosquitto  # noqa: E402
from arros_mqtt.runtime import Service  # noqa: E402

TOPIC = "bench/line1/m1/telemetry"


def make_lines(n: int) -> tuple[bytes, int]:
    rng = random.Random(1)
    lines, hot = [], 0
    for i in range(n):
        temp = round(rng.uniform(20, 100), 2)
        hot += temp > 99
        lines.append(orjson.dumps({"ts": 1_764_000_000_000 + i, "temp": temp, "rpm": rng.randrange(8000),
                                   "ok": True, "status": "run", "seq": i}))
    return b"\n".join(lines) + b"\n", hot


def publish(port: int, data: bytes) -> None:
    subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), "-t", TOPIC, "-q", "0", "-l"], input=data,
                   check=True, timeout=600)


def ceiling(port: int, data: bytes, n: int) -> float:
    sub = subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(port), "-t", "bench/#", "-q", "0", "-C", str(n)],
                           stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    start = time.perf_counter()
    publish(port, data)
    sub.wait(600)
    return n / (time.perf_counter() - start)


def arros(port: int, data: bytes, n: int, hot: int, protocol: str) -> tuple[float, int, int]:
    config = parse_config({
        "broker": {"url": f"mqtt://{HOST}:{port}", "client_id": "arros-bench", "clean_start": True,
                   "protocol": protocol},
        "streams": {"telemetry": {"topic": "bench/{line}/{machine}/telemetry", "qos": 0, "schema": {
            "ts": "timestamp[ms]", "temp": "float64", "rpm": "int64", "ok": "bool", "status": "string",
            "seq": "int64"}}},
        "subscriptions": {"hot": {"sql": "SELECT machine, ts, temp FROM telemetry WHERE temp > 99",
                                  "output": "bench-out/{machine}", "qos": 0}},
    }, "<bench>")
    service = Service(config)
    service.start()
    service.transport.subscribed.wait(10)
    stats = service.pipeline.stats["telemetry"]
    start = time.perf_counter()
    publish(port, data)
    deadline = time.monotonic() + 600
    while stats.rows < n and time.monotonic() < deadline:
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    service.stop()
    return n / elapsed, stats.rows, service.engine.subscriptions["hot"].stats.rows_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--protocols", default="5,3.1.1", help="MQTT versions to measure Arros with")
    args = parser.parse_args()
    data, hot = make_lines(args.messages)
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_mosquitto(Path(tmp))
        try:
            bare = ceiling(broker.port, data, args.messages)
            runs = {p: arros(broker.port, data, args.messages, hot, p) for p in args.protocols.split(",")}
        finally:
            broker.stop()
    result = {"messages": args.messages, "bytes_per_message": round(len(data) / args.messages, 1),
              "mosquitto_sub_msgs_per_s": round(bare), "filter_rows_expected": hot, "arros": {}}
    print(f"{'messages':<36}{args.messages:>12,}")
    print(f"{'bare mosquitto_sub msg/s':<36}{bare:>12,.0f}")
    ok = True
    for protocol, (rate, rows, out) in runs.items():
        result["arros"][protocol] = {"msgs_per_s": round(rate), "ratio": round(rate / bare, 3), "rows_in": rows,
                                     "lost": args.messages - rows, "rows_out": out}
        print(f"{f'arros filter msg/s (MQTT {protocol})':<36}{rate:>12,.0f}   ratio {rate / bare:.2f}   "
              f"lost {args.messages - rows}   out {out}/{hot}")
        ok &= rows == args.messages and out == hot
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
