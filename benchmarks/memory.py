"""Memory over a longer run: RSS of `arros run` idle, then every second while the 10 s tumbling window
per machine (`workload.WINDOW_SQL`) takes a steady load, and whether it stays flat. Defaults: nothing
about QoS set (the stream QoS 1 with a QoS 1 paced publisher, windows QoS 2), the log on.

"Flat" compares the median RSS of the last quarter of the run with the median of the second quarter
(after warm-up) and fits a line through the second half (MB per minute). Every window is checked
against pyarrow's over the input at the end, so a long run is also a zero-loss run.

    .venv/bin/python benchmarks/memory.py [--duration 60] [--rate 5000] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.testing import HOST, free_port, start_mosquitto  # noqa: E402
from benchmarks import mqtt_wire, paced, report, workload  # noqa: E402
from benchmarks.arros_process import ArrosProcess, service_config  # noqa: E402

Progress = Callable[[str], None]
FLAT_TOLERANCE = 0.05  # last quarter within 5% (or 5 MB) of the second quarter


def run(duration: float, rate: int, progress: Progress = print, directory: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        root = Path(tmp)
        broker = start_mosquitto(root)
        metrics_port = free_port()
        config = service_config(broker.port, metrics_port, root / "state",
                                {"win": {"sql": workload.WINDOW_SQL, "output": "bench-out/win/{machine}"}})
        arros = ArrosProcess(root, config, metrics_port)
        try:
            arros.wait_ready(broker.port)
            idle = arros.idle_rss_mb()
            receiver = mqtt_wire.Receiver(HOST, broker.port, ["bench-out/#"], f"bench-mem-{time.monotonic_ns()}")
            publisher = paced.start(broker.port, rate, duration)
            samples, start = [], time.monotonic()
            while publisher.poll() is None:
                samples.append((time.monotonic() - start, arros.rss_mb()))
                if len(samples) % 10 == 0:
                    progress(f"memory: {samples[-1][0]:.0f}/{duration:.0f} s, RSS {samples[-1][1]:.0f} MB")
                time.sleep(1.0)
            data = workload.readings(paced.rows(rate, duration))
            windows = workload.expected_windows(data)
            receiver.wait_for(windows.num_rows, timeout=60)
            receiver.close()
            difference = workload.check_windows([p for _, _, p in receiver.messages], windows)
        finally:
            arros.stop()
            broker.stop()
    return {"rate": rate, "duration_s": duration, "rss_idle_mb": idle, **flatness(samples),
            "rows": data.rows, "windows": windows.num_rows, "zero_loss": difference is None,
            "problem": difference, "samples": [[round(t, 1), round(mb, 1)] for t, mb in samples]}


def flatness(samples: list[tuple[float, float]]) -> dict:
    rss = [mb for _, mb in samples]
    if len(rss) < 8:
        return {"rss_peak_mb": max(rss, default=0.0), "flat": None}
    quarter = len(rss) // 4
    second, last = statistics.median(rss[quarter:2 * quarter]), statistics.median(rss[-quarter:])
    half = samples[len(samples) // 2:]
    slope = np.polyfit([t for t, _ in half], [mb for _, mb in half], 1)[0] * 60
    return {"rss_peak_mb": max(rss), "rss_second_quarter_mb": second, "rss_last_quarter_mb": last,
            "rss_slope_mb_per_min": float(slope),
            "flat": bool(last - second <= max(5.0, FLAT_TOLERANCE * second))}


def print_table(result: dict) -> None:
    flat = {True: "flat", False: "GROWING", None: "too short to tell"}[result["flat"]]
    print(f"{result['rate']:,} msgs/s for {result['duration_s']:.0f} s into a 10 s window per machine: "
          f"RSS idle {result['rss_idle_mb']:.0f} MB, peak {result['rss_peak_mb']:.0f} MB, "
          f"slope {result.get('rss_slope_mb_per_min', float('nan')):+.1f} MB/min ({flat}); "
          f"{result['windows']} windows {'all correct' if result['zero_loss'] else result['problem']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.duration, args.rate, progress=report.progress)
    return report.finish(result, print_table, args.json, result["zero_loss"])


if __name__ == "__main__":
    raise SystemExit(main())
