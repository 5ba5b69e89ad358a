"""Ingest throughput: the broker's ceiling vs Arros into a filter and into a window, in one run.

All runs share one Mosquitto on a free loopback port and one publisher (`mqtt_wire`: pre-built QoS 0
PUBLISH packets written in 1 MB chunks, faster than `mosquitto_pub -l`, so the publisher is never the
limit). Measured, for N ~100 B JSON telemetry messages from 100 machines:

- ceiling: a bare `mosquitto_sub -C N` (C, prints to /dev/null): time from the first byte published to
  its exit; the physical limit of broker + one subscriber on this machine (best of 3 runs);
- Arros (`arros run` in a child process, MQTT 5 as by default) into (a) a per-row filter and (b) a 10 s tumbling
  window per machine (count/avg/max/min): time until its engine decoded all rows (Prometheus counter),
  for JSON, msgpack and JSON arrays of 100 readings per message, with the default durability (the
  write-ahead log, fsync per micro-batch) and, for JSON, also with `[durability] wal = false`. Zero loss
  is checked: every row decoded, no dead letter, the filter's messages are exactly the hot readings, the
  windows' counts and values equal pyarrow's over the input. RSS idle and peak under load come from /proc.

    .venv/bin/python benchmarks/ingest.py --messages 200000 [--json out.json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.testing import HOST, Mosquitto, free_port, start_mosquitto  # noqa: E402
from benchmarks import mqtt_wire, report, workload  # noqa: E402
from benchmarks.arros_process import ArrosProcess, service_config  # noqa: E402

Progress = Callable[[str], None]
BROKER_LOG = "log_type subscribe\nlog_type error\nlog_type warning\n"  # SUBSCRIBEs show when a client is ready
STALL_SECONDS = 60.0
QUERIES = {
    "filter": ({"hot": {"sql": workload.FILTER_SQL, "output": "bench-out/hot/{machine}"}}),
    "window": ({"win": {"sql": workload.WINDOW_SQL, "output": "bench-out/win/{machine}"}}),
}


def start_broker(directory: Path) -> Mosquitto:
    return start_mosquitto(directory, extra=BROKER_LOG)


def packets(messages: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(mqtt_wire.publish_packet(topic, payload) for topic, payload in messages)


def wait_subscribed(broker: Mosquitto, client_id: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f" {client_id} " in broker.log.read_text(errors="replace"):
            return
        time.sleep(0.02)
    raise TimeoutError(f"{client_id} did not subscribe within {timeout}s")


def blast(port: int, data: bytes) -> threading.Thread:
    """Publish pre-built packets on a thread; the caller times what the receiver sees."""

    def send() -> None:
        client = mqtt_wire.WireClient(HOST, port, f"bench-pub-{time.monotonic_ns()}")
        client.send(data)
        client.close()

    thread = threading.Thread(target=send, name="bench-publisher", daemon=True)
    thread.start()
    return thread


def ceiling(broker: Mosquitto, data: bytes, n: int) -> float:
    """Messages/s a bare `mosquitto_sub` receives."""
    client_id = f"bench-ceiling-{time.monotonic_ns()}"
    sub = subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(broker.port), "-t", "bench/#", "-q", "0",
                            "-C", str(n), "-i", client_id], stdout=subprocess.DEVNULL)
    try:
        wait_subscribed(broker, client_id)
        start = time.perf_counter()
        blast(broker.port, data).join()
        sub.wait(600)
        return n / (time.perf_counter() - start)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


def ingest(broker: Mosquitto, directory: Path, data: workload.Readings, kind: str, query: str, wire: bytes,
           progress: Progress, protocol: str = "5", wal: bool = True) -> dict:
    """One Arros run: start, idle RSS, the load, accounting, stop."""
    directory.mkdir(parents=True, exist_ok=True)
    metrics_port = free_port()
    fmt = workload.PAYLOADS[kind][0]
    config = service_config(broker.port, metrics_port, directory / "state", QUERIES[query], fmt=fmt,
                            protocol=protocol, durability=None if wal else {"wal": False})
    arros = ArrosProcess(directory, config, metrics_port)
    try:
        arros.wait_ready(broker.port)
        rss_idle = arros.idle_rss_mb()
        receiver = mqtt_wire.Receiver(HOST, broker.port, ["bench-out/#"], f"bench-out-{time.monotonic_ns()}")
        cpu_before = arros.cpu_seconds()
        start = time.perf_counter()
        publisher = blast(broker.port, wire)
        rows, rss_peak, last_rows, last_change = 0.0, rss_idle, -1.0, time.monotonic()
        while rows < data.rows:
            time.sleep(0.1)
            rows = arros.metric("arros_stream_rows_total", "telemetry")
            rss_peak = max(rss_peak, arros.rss_mb())
            if rows != last_rows:
                if int(10 * rows / data.rows) != int(10 * max(last_rows, 0) / data.rows):
                    progress(f"{query} {kind}: {int(10 * rows / data.rows) * 10}% of {data.rows:,} rows")
                last_rows, last_change = rows, time.monotonic()
            elif time.monotonic() - last_change > STALL_SECONDS:
                break
        elapsed = time.perf_counter() - start
        cpu = arros.cpu_seconds() - cpu_before
        publisher.join(60)
        outcome = _account(arros, receiver, data, query, rows)
        receiver.close()
    finally:
        arros.stop()
    return {"payload": kind if wal else f"{kind}, no WAL", "wal": wal, "query": query, "messages": data.messages,
            "rows": data.rows, "seconds": elapsed,
            "msgs_per_s": data.messages / elapsed, "rows_per_s": data.rows / elapsed, "cpu_seconds": cpu,
            "rss_idle_mb": rss_idle, "rss_peak_mb": rss_peak, **outcome}


def _account(arros: ArrosProcess, receiver: mqtt_wire.Receiver, data: workload.Readings, query: str,
             rows: float) -> dict:
    """Every row accounted for: decoded, not dead-lettered, and in the derived messages exactly once."""
    problems = []
    if rows != data.rows:
        problems.append(f"{int(rows)} of {data.rows} rows decoded")
    if query == "filter":
        expected = workload.expected_hot(data)
        receiver.wait_for(expected, timeout=30)
        time.sleep(0.2)  # a duplicate would arrive now
        got = len(receiver.messages)
        if got != expected:
            problems.append(f"{got} filter messages, {expected} expected")
    else:
        windows = workload.expected_windows(data)
        receiver.wait_for(windows.num_rows, timeout=30)
        time.sleep(0.2)
        difference = workload.check_windows([payload for _, _, payload in receiver.messages], windows)
        if difference:
            problems.append(difference)
        expected = windows.num_rows
    deadletters = arros.metric("arros_deadletters_total", "telemetry")
    if deadletters:
        problems.append(f"{int(deadletters)} dead letters")
    return {"messages_out": len(receiver.messages), "messages_out_expected": expected,
            "lost_rows": data.rows - int(rows), "zero_loss": not problems, "problems": problems}


def run(messages: int, payload_kinds: list[str], queries: list[str], progress: Progress = print,
        directory: Path | None = None, ceiling_runs: int = 3, protocol: str = "5") -> dict:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        root = Path(tmp)
        broker = start_broker(root)
        try:
            json_data = workload.readings(messages)
            progress("ceiling: bare mosquitto_sub")
            json_wire = packets(workload.payloads(json_data, "json"))
            ceilings = [ceiling(broker, json_wire, json_data.messages) for _ in range(ceiling_runs)]
            bare = max(ceilings)  # the limit: what the broker and a C subscriber manage at best
            runs = []
            for kind in payload_kinds:
                fmt, per = workload.PAYLOADS[kind]
                data = json_data if kind == "json" else workload.readings(messages, rows_per_message=per)
                wire = json_wire if kind == "json" else packets(workload.payloads(data, fmt))
                for query in queries:
                    for wal in (True, False) if kind == "json" else (True,):
                        progress(f"{query} {kind}{'' if wal else ', no WAL'}: starting arros")
                        result = ingest(broker, root / f"{kind}-{query}-{wal}", data, kind, query, wire, progress,
                                        protocol, wal)
                        result["ratio_to_ceiling"] = result["msgs_per_s"] / bare
                        runs.append(result)
        finally:
            broker.stop()
    return {"messages": messages, "protocol": protocol, "bytes_per_message": round(len(json_wire) / messages, 1),
            "ceiling_msgs_per_s": bare, "ceiling_runs_msgs_per_s": ceilings, "runs": runs}


def print_table(result: dict) -> None:
    runs = ", ".join(f"{r:,.0f}" for r in result["ceiling_runs_msgs_per_s"])
    print(f"ceiling (bare mosquitto_sub, best of {runs}): {result['ceiling_msgs_per_s']:,.0f} msgs/s "
          f"({result['messages']:,} messages of ~{result['bytes_per_message']:.0f} B on the wire)")
    print(f"{'payload':<21}{'query':<8}{'msgs/s':>10}{'rows/s':>11}{'x ceiling':>10}{'CPU s':>7}{'RSS MB':>8}  loss")
    for r in result["runs"]:
        print(f"{r['payload']:<21}{r['query']:<8}{r['msgs_per_s']:>10,.0f}{r['rows_per_s']:>11,.0f}"
              f"{r['ratio_to_ceiling']:>10.2f}{r['cpu_seconds']:>7.1f}{r['rss_peak_mb']:>8.0f}  "
              f"{'none' if r['zero_loss'] else '; '.join(r['problems'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--payloads", default=",".join(workload.PAYLOADS))
    parser.add_argument("--queries", default=",".join(QUERIES))
    parser.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT version of Arros's client")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.messages, args.payloads.split(","), args.queries.split(","),
                 progress=report.progress, protocol=args.protocol)
    return report.finish(result, print_table, args.json, all(r["zero_loss"] for r in result["runs"]))


if __name__ == "__main__":
    raise SystemExit(main())
