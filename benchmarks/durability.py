"""Ingest throughput with and without the write-ahead log, per `[durability] sync` mode, in one run.

N JSON telemetry messages (~50 B) wait at QoS 1 in Arros's persistent session on a Mosquitto on a free
loopback port (published while Arros was stopped, by the fleet publisher of the fault tests,
`tests/peers/telemetry_publisher.py`: `mosquitto_pub -l -q 1` exits before sending most of its input);
then Arros (client mode, MQTT 5, one per-row filter subscription) starts and drains them. Time = from
start until its engine has decoded all N rows: Arros's own ingest rate, not the publisher's.
Modes: `wal = false` (no log, PUBACK on receipt), `sync = "none"` (logged, acknowledged after the
write, no fsync), `sync = "100ms"` and `sync = "batch"` (fsync before every micro-batch's PUBACKs). The
log lives under a temporary directory on the disk this script runs from (`--dir` to choose another).

    .venv/bin/python benchmarks/durability.py --messages 100000 [--json out.json]
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
from arros_mqtt.local_broker import HOST, start_mosquitto  # noqa: E402
from arros_mqtt.runtime import Service  # noqa: E402

MODES = {"no log (wal = false)": {"wal": False}, "sync = \"none\"": {"sync": "none"},
         "sync = \"100ms\"": {"sync": "100ms"}, "sync = \"batch\"": {"sync": "batch"}}


def service(port: int, client_id: str, durability: dict, state_dir: Path) -> Service:
    config = parse_config({
        "broker": {"url": f"mqtt://{HOST}:{port}", "client_id": client_id},
        "engine": {"state_dir": str(state_dir)},
        "durability": durability,
        "streams": {"telemetry": {"topic": "bench/{machine}/telemetry", "qos": 1, "schema": {
            "ts": "timestamp[ms]", "temp": "float64", "seq": "int64"}}},
        "subscriptions": {"hot": {"sql": "SELECT machine, ts, temp FROM telemetry WHERE temp > 99.5",
                                  "output": "bench-out/{machine}", "qos": 1}},
    }, "<bench>")
    return Service(config)


def run(port: int, n: int, durability: dict, state_dir: Path) -> dict:
    """Queue n messages in Arros's persistent session while it is stopped, then time draining them."""
    client_id = f"arros-bench-{uuid.uuid4().hex[:8]}"
    first = service(port, client_id, durability, state_dir)
    first.start()
    first.transport.subscribed.wait(10)
    first.stop()
    subprocess.run([sys.executable, "-m", "tests.peers.telemetry_publisher", "--port", str(port), "--prefix", "bench",
                    "--count", str(n - 1), "--rate", "1000000"], cwd=ROOT, stdout=subprocess.DEVNULL, check=True,
                   timeout=600)
    second = service(port, client_id, durability, state_dir)
    stats = second.pipeline.stats["telemetry"]
    start = time.perf_counter()
    second.start()
    deadline = time.monotonic() + 600
    while stats.rows < n and time.monotonic() < deadline:
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    wal_bytes = second.journal.wal.bytes if second.journal.wal is not None else 0
    second.stop()
    return {"msgs_per_s": round(n / elapsed), "rows": stats.rows, "wal_bytes": wal_bytes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=ROOT, help="where the temporary state_dir is made")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(dir=args.dir) as state:
        broker = start_mosquitto(Path(tmp))
        try:
            for name, durability in MODES.items():
                results[name] = run(broker.port, args.messages, durability, Path(state) / uuid.uuid4().hex)
        finally:
            broker.stop()
    base = results["no log (wal = false)"]["msgs_per_s"]
    print(f"{args.messages:,} QoS 1 messages of ~50 B, one filter subscription")
    for name, result in results.items():
        print(f"{name:<24}{result['msgs_per_s']:>10,} msg/s   {result['msgs_per_s'] / base:5.2f}x   "
              f"rows {result['rows']:,}   log {result['wal_bytes'] / 1e6:.1f} MB")
    if args.json:
        args.json.write_text(json.dumps({"messages": args.messages, "modes": results}, indent=2))
    return 0 if all(r["rows"] == args.messages for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
