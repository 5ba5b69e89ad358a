"""Ingest throughput with and without the write-ahead log, per `[durability] sync` mode, in one run.

N JSON telemetry messages (~50 B) wait at QoS 1 in Arros's persistent session on a Mosquitto on a free
loopback port (published while Arros was stopped, by the fleet publisher of the fault tests,
`tests/peers/telemetry_publisher.py`: `mosquitto_pub -l -q 1` exits before sending most of its input);
then Arros (client mode, MQTT 5, one per-row filter subscription) starts and drains them. Time = from
start until its engine has decoded all N rows: Arros's own ingest rate, not the publisher's.
Modes: `wal = false` (no log, PUBACK on receipt), `sync = "none"` (logged, acknowledged after the
write, no fsync), `sync = "100ms"` and `sync = "batch"` (fsync before every micro-batch's PUBACKs). The
log lives under a temporary directory on the disk this script runs from (`--dir` to choose another).

Then the cost of exactly-once results (`--outputs` N, default 20,000): the same drain with the default
`sync = "batch"`, but a subscription that publishes every row (`SELECT * FROM telemetry`), at `qos = 1`
and at `qos = 2` (QoS 2 through the fsynced output journal: PUBLISH, PUBREC, PUBREL, PUBCOMP). Time =
from start until the broker acknowledged every output (PUBACK / PUBCOMP).

    .venv/bin/python benchmarks/durability.py --messages 100000 [--outputs 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.config import parse_config  # noqa: E402
from arros_mqtt.service.runtime import Service  # noqa: E402
from arros_mqtt.testing import HOST, start_mosquitto  # noqa: E402

MODES = {"no log (wal = false)": {"wal": False}, "sync = \"none\"": {"sync": "none"},
         "sync = \"100ms\"": {"sync": "100ms"}, "sync = \"batch\"": {"sync": "batch"}}


def service(port: int, client_id: str, durability: dict, state_dir: Path, output_qos: int | None = None) -> Service:
    subscription = {"sql": "SELECT machine, ts, temp FROM telemetry WHERE temp > 99.5", "output": "bench-out/{machine}",
                    "qos": 1}
    if output_qos is not None:
        subscription = {"sql": "SELECT * FROM telemetry", "output": "bench-out/{machine}", "qos": output_qos}
    config = parse_config({
        "broker": {"url": f"mqtt://{HOST}:{port}", "client_id": client_id},
        "engine": {"state_dir": str(state_dir)},
        "durability": durability,
        "streams": {"telemetry": {"topic": "bench/{machine}/telemetry", "qos": 1, "schema": {
            "ts": "timestamp[ms]", "temp": "float64", "seq": "int64"}}},
        "subscriptions": {"hot": subscription},
    }, "<bench>")
    return Service(config)


def run(port: int, n: int, durability: dict, state_dir: Path, output_qos: int | None = None) -> dict:
    """Queue n messages in Arros's persistent session while it is stopped, then time draining them (with
    `output_qos`: until every row's output is acknowledged)."""
    client_id = f"arros-bench-{uuid.uuid4().hex[:8]}"
    first = service(port, client_id, durability, state_dir, output_qos)
    first.start()
    first.transport.subscribed.wait(10)
    first.stop()
    subprocess.run([sys.executable, "-m", "tests.peers.telemetry_publisher", "--port", str(port), "--prefix", "bench",
                    "--count", str(n - 1), "--rate", "1000000"], cwd=ROOT, stdout=subprocess.DEVNULL, check=True,
                   timeout=600)
    second = service(port, client_id, durability, state_dir, output_qos)
    stats = second.pipeline.stats["telemetry"]
    start = time.perf_counter()
    second.start()
    deadline = time.monotonic() + 600
    while stats.rows < n and time.monotonic() < deadline:
        time.sleep(0.005)
    outputs = second.transport.outputs
    while output_qos is not None and outputs.acknowledged < n and time.monotonic() < deadline:  # (+ health)
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    if output_qos is not None:
        journal = outputs.journal
        return {"outputs_per_s": round(outputs.acknowledged / elapsed), "outputs": outputs.acknowledged,
                "journal_syncs": journal.syncs if journal is not None and output_qos == 2 else 0,
                **_stop(second)}
    wal_bytes = second.journal.wal.bytes if second.journal.wal is not None else 0
    second.stop()
    return {"msgs_per_s": round(n / elapsed), "rows": stats.rows, "wal_bytes": wal_bytes}


def _stop(service: Service) -> dict:
    rows = service.pipeline.stats["telemetry"].rows
    service.stop()
    return {"rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--outputs", type=int, default=20_000, help="messages for the QoS 1 vs 2 output runs")
    parser.add_argument("--dir", type=Path, default=ROOT, help="where the temporary state_dir is made")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(dir=args.dir) as state:
        broker = start_mosquitto(Path(tmp))
        try:
            for name, durability in MODES.items():
                results[name] = run(broker.port, args.messages, durability, Path(state) / uuid.uuid4().hex)
            outputs = {f"qos = {qos}": run(broker.port, args.outputs, {"sync": "batch"}, Path(state) / uuid.uuid4().hex,
                                           qos) for qos in (1, 2)} if args.outputs else {}
        finally:
            broker.stop()
    base = results["no log (wal = false)"]["msgs_per_s"]
    print(f"{args.messages:,} QoS 1 messages of ~50 B, one filter subscription")
    for name, result in results.items():
        print(f"{name:<24}{result['msgs_per_s']:>10,} msg/s   {result['msgs_per_s'] / base:5.2f}x   "
              f"rows {result['rows']:,}   log {result['wal_bytes'] / 1e6:.1f} MB")
    if outputs:
        print(f"{args.outputs:,} messages, one output per row, until the broker acknowledged every output")
        for name, result in outputs.items():
            print(f"{name:<24}{result['outputs_per_s']:>10,} outputs/s   outputs {result['outputs']:,}   "
                  f"journal fsyncs {result['journal_syncs']:,}")
    if args.json:
        args.json.write_text(json.dumps({"messages": args.messages, "modes": results, "outputs": outputs}, indent=2))
    return 0 if all(r["rows"] == args.messages for r in results.values()) and all(
        r["outputs"] >= args.outputs for r in outputs.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
