"""Latency: device publish -> derived message, at fixed offered rates, for a per-row filter subscription.

A paced publisher (`paced.py`, a child process) sends JSON telemetry at a fixed rate with its
wall-clock send time in microseconds in each payload (`sent_us`). Arros (`arros run`, a child process)
filters it (`temp > 60`, about half the readings) and echoes `sent_us` in each derived message; the
receiver (`mqtt_wire.Receiver`) stamps each socket read as it arrives. Latency = receive time -
`sent_us`, over every derived message after a 1 s warm-up; every expected message must arrive. Runs
with the default adaptive micro-batching (a batch closes when the engine is free and its oldest
message has lingered 2 ms), with the write-ahead log on (default: fsync per micro-batch), on with
`sync = "100ms"` (acknowledgements wait for the fsync, results do not) and off, without the linger,
and with the older timer-driven batching (`batching = "delay"`, 20 ms). Mosquitto runs with
`set_tcp_nodelay true` (its default, false, lets Nagle's algorithm hold small messages back by up to
~40 ms per hop). The receiver stamps arrivals in this process, so its cyclic GC is off while it does:
a full collection with 50k messages held took ~20 ms, which was counted as Arros's latency.

    .venv/bin/python benchmarks/latency.py [--rates 1000,10000] [--seconds 10] [--variants adaptive,...]
                                           [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.testing import HOST, Mosquitto, free_port, start_mosquitto  # noqa: E402
from benchmarks import mqtt_wire, paced, report, workload  # noqa: E402
from benchmarks.arros_process import ArrosProcess, service_config  # noqa: E402

Progress = Callable[[str], None]
THRESHOLD = 60.0
SQL = f"SELECT machine, seq, sent_us FROM telemetry WHERE temp > {THRESHOLD}"
SCHEMA = {**workload.SCHEMA, "sent_us": "int64"}
WARMUP_SECONDS = 1.0
BROKER_EXTRA = "set_tcp_nodelay true\n"
# label -> ([engine] settings, [durability] settings)
VARIANTS: dict[str, tuple[dict, dict]] = {
    "adaptive": ({}, {}),
    "adaptive (no WAL)": ({}, {"wal": False}),
    "adaptive (sync 100ms)": ({}, {"sync": "100ms"}),
    "adaptive (no linger)": ({"batch_linger": "0ms"}, {}),
    "delay 20ms": ({"batching": "delay"}, {}),
}


def measure(broker: Mosquitto, directory: Path, rate: int, seconds: float, variant: str,
            progress: Progress) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    metrics_port = free_port()
    engine, durability = VARIANTS[variant]
    config = service_config(broker.port, metrics_port, directory / "state",
                            {"hot": {"sql": SQL, "output": "bench-out/lat/{machine}"}}, engine=engine, schema=SCHEMA,
                            durability=durability)
    arros = ArrosProcess(directory, config, metrics_port)
    try:
        arros.wait_ready(broker.port)
        receiver = mqtt_wire.Receiver(HOST, broker.port, ["bench-out/#"], f"bench-lat-{time.monotonic_ns()}")
        cpu_before = arros.cpu_seconds()
        gc.disable()  # no collection pauses while the receiver stamps arrivals (see the docstring)
        try:
            paced.start(broker.port, rate, seconds).wait(seconds * 10 + 60)
            cpu = arros.cpu_seconds() - cpu_before
            expected = int((workload.readings(paced.rows(rate, seconds)).temp > THRESHOLD).sum())
            complete = receiver.wait_for(expected, timeout=30)
            receiver.close()
        finally:
            gc.enable()
    finally:
        arros.stop()
    rows = [orjson.loads(payload) for _, _, payload in receiver.messages]
    received_us = np.array([r for r, _, _ in receiver.messages], dtype=np.int64) // 1000
    sent_us = np.array([row["sent_us"] for row in rows], dtype=np.int64)
    warm = sent_us >= sent_us.min() + WARMUP_SECONDS * 1e6 if len(sent_us) else sent_us.astype(bool)
    latency_ms = (received_us - sent_us)[warm] / 1000
    p50, p99, p999 = np.percentile(latency_ms, [50, 99, 99.9]) if len(latency_ms) else (float("nan"),) * 3
    progress(f"latency {rate:,}/s, {variant}: p99 {p99:.1f} ms")
    return {"rate": rate, "variant": variant, "wal": durability.get("wal", True), "seconds": seconds,
            "messages_out": len(rows),
            "messages_out_expected": expected, "complete": complete and len(rows) == expected,
            "measured": int(warm.sum()), "p50_ms": p50, "p99_ms": p99, "p999_ms": p999,
            "max_ms": float(latency_ms.max()) if len(latency_ms) else float("nan"), "cpu_per_s": cpu / seconds}


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
    print(f"{'offered msgs/s':>14}  {'batching':<23}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'max ms':>9}"
          f"{'CPU s/s':>9}  complete")
    for r in result["runs"]:
        print(f"{r['rate']:>14,}  {r['variant']:<23}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['p999_ms']:>10.1f}"
              f"{r['max_ms']:>9.1f}{r['cpu_per_s']:>9.2f}  {r['messages_out']}/{r['messages_out_expected']}")


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
