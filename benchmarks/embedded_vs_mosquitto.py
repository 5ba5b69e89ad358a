"""Embedded broker (amqtt + Arros plugin) next to Mosquitto (Arros in client mode), in one run.

The same N JSON telemetry messages (~100 B), published by `mosquitto_pub -l` at QoS 0 (MQTT 3.1.1,
which amqtt needs), are measured four ways:
  - routing: broker -> `mosquitto_sub -C N` (a C subscriber), for Mosquitto and for the embedded broker
    (Arros running with no stream on that topic, so only the broker works);
  - ingest: broker -> Arros's engine (one filter subscription), until every row is decoded: embedded
    mode (plugin hook) and client mode on Mosquitto (paho, MQTT 3.1.1).
Loss is reported, not hidden: rows decoded and results out vs the count computed over the input.

    .venv/bin/python benchmarks/embedded_vs_mosquitto.py --messages 30000 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from arros_mqtt.config import parse_config  # noqa: E402
from arros_mqtt.service.runtime import Service  # noqa: E402
from arros_mqtt.testing import HOST, free_port, start_mosquitto  # noqa: E402
from benchmarks import workload  # noqa: E402

TOPIC = "bench/line1/m1/telemetry"


def make_lines(n: int) -> tuple[bytes, int]:
    """N JSON telemetry payloads, one a line (for `mosquitto_pub -l`), and how many the filter passes."""
    data = workload.readings(n)
    return b"\n".join(payload for _, payload in workload.payloads(data, "json")) + b"\n", workload.expected_hot(data)


def publish(port: int, data: bytes) -> None:
    subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), "-t", TOPIC, "-q", "0", "-l"], input=data,
                   check=True, timeout=600)

STREAM = {"topic": "bench/{line}/{machine}/telemetry", "qos": 0, "schema": {
    "ts": "timestamp[ms]", "temp": "float64", "rpm": "int64", "ok": "bool", "status": "string", "seq": "int64"}}
SUBSCRIPTION = {"sql": "SELECT machine, ts, temp FROM telemetry WHERE temp > 99", "output": "bench-out/{machine}",
                "qos": 0}


def routing(port: int, data: bytes, n: int, timeout: float) -> tuple[float, int]:
    """msgs/s from the first publish until `mosquitto_sub` has all N (or the timeout), and how many it got."""
    sub = subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(port), "-t", "bench/#", "-q", "0", "-C", str(n)],
                           stdout=subprocess.PIPE)
    time.sleep(0.5)
    start = time.perf_counter()
    publish(port, data)
    try:
        out, _ = sub.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        sub.kill()
        out, _ = sub.communicate()
    elapsed = time.perf_counter() - start
    got = out.count(b"\n")
    return got / elapsed, got


def ingest(config: dict, port: int, data: bytes, n: int, timeout: float) -> tuple[float, int, int]:
    service = Service(parse_config(config, "<bench>"))
    service.start()
    service.transport.subscribed.wait(10)
    stats = service.pipeline.stats["telemetry"]
    start = time.perf_counter()
    publish(port, data)
    deadline = time.monotonic() + timeout
    while stats.rows < n and time.monotonic() < deadline:
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    service.stop()
    return stats.rows / elapsed, stats.rows, service.engine.subscriptions["hot"].stats.rows_out


def embedded(port: int, with_stream: bool) -> dict:
    streams = {"telemetry": STREAM if with_stream else {**STREAM, "topic": "elsewhere/{line}/{machine}"}}
    return {"embedded": {"listen": f"{HOST}:{port}"}, "streams": streams, "subscriptions": {"hot": SUBSCRIPTION}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--timeout", type=float, default=120.0, help="per measurement")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    n = args.messages
    data, hot = make_lines(n)
    runs: dict[str, tuple[float, int, int | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        mosquitto = start_mosquitto(Path(tmp))
        try:
            rate, got = routing(mosquitto.port, data, n, args.timeout)
            runs["routing: Mosquitto -> mosquitto_sub"] = (rate, got, None)
            client = {"broker": {"url": mosquitto.url, "client_id": "arros-bench", "clean_start": True,
                                 "protocol": "3.1.1"},
                      "streams": {"telemetry": STREAM}, "subscriptions": {"hot": SUBSCRIPTION}}
            runs["ingest: Mosquitto -> Arros client mode"] = ingest(client, mosquitto.port, data, n, args.timeout)
        finally:
            mosquitto.stop()
    port = free_port()
    idle = Service(parse_config(embedded(port, with_stream=False), "<bench>"))
    idle.start()
    try:
        rate, got = routing(port, data, n, args.timeout)
        runs["routing: embedded amqtt -> mosquitto_sub"] = (rate, got, None)
    finally:
        idle.stop()
    port = free_port()
    runs["ingest: embedded amqtt -> Arros plugin"] = ingest(embedded(port, True), port, data, n, args.timeout)

    print(f"{n:,} messages of {len(data) / n:.0f} B, QoS 0, MQTT 3.1.1; filter expects {hot} results")
    print(f"{'measurement':<44}{'msgs/s':>10}{'received':>10}{'results':>10}")
    result = {"messages": n, "bytes_per_message": round(len(data) / n, 1), "expected_results": hot, "runs": {}}
    for name, (rate, got, out) in runs.items():
        print(f"{name:<44}{rate:>10,.0f}{got:>10,}{'' if out is None else f'{out:,}':>10}")
        result["runs"][name] = {"msgs_per_s": round(rate), "received": got, "results": out}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
