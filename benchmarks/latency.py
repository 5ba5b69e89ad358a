"""Latency: device publish -> derived message, at fixed offered rates, one derived message per input row.

A paced publisher (`paced.py`, a child process) sends JSON telemetry at a fixed rate with its
wall-clock send time in microseconds in each payload (`sent_us`); Arros (`arros run`, a child process)
echoes `sent_us` in one derived message per row (`SQL`); the receiver (`mqtt_wire.Receiver`, a bare
socket subscribed at QoS 1 that acknowledges each socket read's PUBLISHes in one write) stamps each
read as it arrives. Latency = receive time - `sent_us`, over every derived message after a 1 s
warm-up; every expected message must arrive (waiting as long as they keep coming: an Arros that falls
behind shows as latency, not as loss).

The "defaults" variant sets nothing about QoS (stream QoS 1 with a QoS 1 publisher, results QoS 1),
keeps the write-ahead log (fsync per micro-batch) and the default adaptive micro-batching (a batch
closes when the engine is free and its oldest message has lingered 2 ms). The other variants change
one thing each: `sync = "100ms"` (acknowledgements wait for the fsync, results do not), no log, no
linger, the older timer (`batching = "delay"`, 20 ms), and "QoS 0 (tuned)": `qos = 0` on the stream
and the subscription and a QoS 0 publisher. Mosquitto runs with `set_tcp_nodelay true` (its default,
false, lets Nagle's algorithm hold small messages back by up to ~40 ms per hop). The receiver stamps
arrivals in this process, so its cyclic GC is off while it does (`mqtt_wire.gc_paused`).

    .venv/bin/python benchmarks/latency.py [--rates 1000,10000] [--seconds 10] [--variants defaults,...]
                                           [--json out.json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.testing import HOST, Mosquitto, free_port, start_mosquitto  # noqa: E402
from benchmarks import mqtt_wire, paced, report, workload  # noqa: E402
from benchmarks.arros_process import ArrosProcess, Usage, cpu_per_1k_msgs_per_s, service_config  # noqa: E402

Progress = Callable[[str], None]
SQL = "SELECT machine, seq, sent_us FROM telemetry"  # one derived message per row
SCHEMA = {**workload.SCHEMA, "sent_us": "int64"}
WARMUP_SECONDS = 1.0
STALL_SECONDS = 30.0
BROKER_EXTRA = "set_tcp_nodelay true\n"


@dataclass(frozen=True)
class Variant:
    """What a latency run changes from the defaults: [engine] and [durability] settings, or QoS 0 on the
    stream, the subscription and the publisher (`tuned`)."""

    engine: dict = field(default_factory=dict)
    durability: dict = field(default_factory=dict)
    tuned: bool = False


VARIANTS: dict[str, Variant] = {
    "defaults": Variant(),
    "sync 100ms": Variant(durability={"sync": "100ms"}),
    "no WAL": Variant(durability={"wal": False}),
    "no linger": Variant(engine={"batch_linger": "0ms"}),
    "delay 20ms": Variant(engine={"batching": "delay"}),
    "QoS 0 (tuned)": Variant(tuned=True),
}


def measure(broker: Mosquitto, directory: Path, rate: int, seconds: float, variant: str,
            progress: Progress) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    metrics_port = free_port()
    settings = VARIANTS[variant]
    config = service_config(broker.port, metrics_port, directory / "state",
                            {"lat": {"sql": SQL, "output": "bench-out/lat/{machine}"}}, engine=settings.engine,
                            schema=SCHEMA, durability=settings.durability, qos=0 if settings.tuned else None)
    expected = paced.rows(rate, seconds)
    arros = ArrosProcess(directory, config, metrics_port)
    try:
        arros.wait_ready(broker.port)
        rss_idle = arros.idle_rss_mb()
        receiver = mqtt_wire.Receiver(HOST, broker.port, ["bench-out/#"], f"bench-lat-{time.monotonic_ns()}", qos=1)
        try:
            with mqtt_wire.gc_paused():
                publisher = paced.start(broker.port, rate, seconds, qos=0 if settings.tuned else 1)
                usage, started = Usage(arros), time.monotonic()
                published = _published(publisher, seconds, usage)
                complete = receiver.wait_for(expected, timeout=3600, stall=STALL_SECONDS, poll=usage.sample)
                usage.stop()
                elapsed = time.monotonic() - started
        finally:
            receiver.close()
    finally:
        arros.stop()
    stats = _latencies(receiver.messages)
    progress(f"latency {rate:,}/s, {variant}: p99 {stats['p99_ms']:.1f} ms")
    return {"rate": rate, "variant": variant, "tuned": settings.tuned, "wal": settings.durability.get("wal", True),
            "seconds": seconds, "elapsed_s": elapsed, "messages_out": len(receiver.messages),
            "messages_out_expected": expected, "complete": published and complete
            and len(receiver.messages) == expected, **stats, "cpu_per_s": usage.cpu_seconds / elapsed,
            "cpu_s_per_1k_msgs_per_s": cpu_per_1k_msgs_per_s(usage.cpu_seconds, expected / elapsed, elapsed),
            "rss_idle_mb": rss_idle, "rss_peak_mb": usage.peak_rss_mb}


def _published(publisher: subprocess.Popen, seconds: float, usage: Usage) -> bool:
    """Waits for the paced publisher's end, sampling Arros's RSS; whether it sent (and got acknowledged) all."""
    deadline = time.monotonic() + seconds * 10 + 60
    while publisher.poll() is None and time.monotonic() < deadline:
        usage.sample()
        time.sleep(0.1)
    if publisher.poll() is None:
        publisher.kill()
        publisher.wait(10)
    return publisher.returncode == 0


def _latencies(messages: list[tuple[int, bytes, bytes]]) -> dict:
    """Percentiles of receive time - `sent_us` over the messages sent after the warm-up."""
    received_us = np.array([r for r, _, _ in messages], dtype=np.int64) // 1000
    sent_us = np.array([orjson.loads(payload)["sent_us"] for _, _, payload in messages], dtype=np.int64)
    warm = sent_us >= sent_us.min() + WARMUP_SECONDS * 1e6 if len(sent_us) else sent_us.astype(bool)
    latency_ms = (received_us - sent_us)[warm] / 1000
    p50, p99, p999 = np.percentile(latency_ms, [50, 99, 99.9]) if len(latency_ms) else (float("nan"),) * 3
    return {"measured": int(warm.sum()), "p50_ms": float(p50), "p99_ms": float(p99), "p999_ms": float(p999),
            "max_ms": float(latency_ms.max()) if len(latency_ms) else float("nan")}


def run(rates: list[int], seconds: float, variants: list[str], progress: Progress = print,
        directory: Path | None = None) -> dict:
    runs = []
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        broker = start_mosquitto(Path(tmp), extra=BROKER_EXTRA)
        try:
            for rate in rates:
                for variant in variants:
                    progress(f"latency {rate:,}/s, {variant}")
                    runs.append(measure(broker, Path(tmp) / f"{rate}-{len(runs)}", rate, seconds, variant, progress))
        finally:
            broker.stop()
    return {"sql": SQL, "runs": runs}


def print_table(result: dict) -> None:
    print(f"{'offered msgs/s':>14}  {'variant':<15}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'max ms':>9}"
          f"{'CPU s/s':>9}{'CPU s/1k':>9}{'RSS idle':>9}{'peak':>6}  complete")
    for r in result["runs"]:
        print(f"{r['rate']:>14,}  {r['variant']:<15}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['p999_ms']:>10.1f}"
              f"{r['max_ms']:>9.1f}{r['cpu_per_s']:>9.2f}{r['cpu_s_per_1k_msgs_per_s']:>9.3f}{r['rss_idle_mb']:>9.0f}"
              f"{r['rss_peak_mb']:>6.0f}  {r['messages_out']}/{r['messages_out_expected']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="1000,10000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"some of: {', '.join(VARIANTS)}")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run([int(r) for r in args.rates.split(",")], args.seconds, args.variants.split(","),
                 progress=report.progress)
    return report.finish(result, print_table, args.json, all(r["complete"] for r in result["runs"]))


if __name__ == "__main__":
    raise SystemExit(main())
