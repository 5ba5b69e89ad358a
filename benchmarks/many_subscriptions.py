"""Many subscriptions on one stream: 10 / 100 / 1,000 / 10,000 per-row filters or 10 s windows, at a
fixed offered rate: CPU seconds per second and RSS per subscription of `arros run`.

Machine k (of as many machines as subscriptions) has its own subscription, as when every device or
every dashboard gets one: filter k is `... WHERE machine = 'mk' AND temp > 90`, window k counts,
averages and maxes machine k's readings per 10 s. Measured: startup until subscribed, RSS idle with
the subscriptions (per subscription: minus RSS with none), CPU s/s while the load runs, how long after
the load stopped the last row was decoded (lag: 1 s or more means it did not keep up), and zero loss
(filter rows out = hot readings; window counts sum to the rows published). Defaults: nothing about
QoS set (the stream QoS 1 with a QoS 1 paced publisher, filter results QoS 1, windows QoS 2), the log on.

    .venv/bin/python benchmarks/many_subscriptions.py [--counts 10,100,1000,10000] [--rate 1000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.testing import HOST, Mosquitto, free_port, start_mosquitto  # noqa: E402
from benchmarks import mqtt_wire, paced, report, workload  # noqa: E402
from benchmarks.arros_process import ArrosProcess, service_config  # noqa: E402

Progress = Callable[[str], None]
FILTER_TEMP = 90.0
KINDS = ("filter", "window")
KEPT_UP_LAG_S = 1.0  # issue 15: 10,000 window subscriptions at 1,000 msg/s with lag < 1 s


def subscriptions(kind: str, count: int) -> dict[str, dict]:
    if kind == "filter":
        return {f"f{k}": {"sql": f"SELECT machine, seq, temp FROM telemetry WHERE machine = 'm{k}' "
                                 f"AND temp > {FILTER_TEMP}", "output": f"bench-out/f{k}"} for k in range(count)}
    return {f"w{k}": {"sql": "SELECT tumble(ts, INTERVAL '10 seconds') AS window, count(*) AS n, avg(temp) AS "
                             f"avg_temp, max(temp) AS max_temp FROM telemetry WHERE machine = 'm{k}' GROUP BY window",
                      "output": f"bench-out/w{k}"} for k in range(count)}


def measure(broker: Mosquitto, directory: Path, kind: str, count: int, rate: int, seconds: float,
            progress: Progress) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    metrics_port = free_port()
    # statuses every 5 s for each of 10,000 subscriptions would be a load of their own: once a minute here
    config = service_config(broker.port, metrics_port, directory / "state", subscriptions(kind, count),
                            control={"status_interval": "60s"})
    started = time.monotonic()
    arros = ArrosProcess(directory, config, metrics_port)
    try:
        arros.wait_ready(broker.port, timeout=1800)
        startup = time.monotonic() - started
        idle = arros.idle_rss_mb()
        receiver = mqtt_wire.Receiver(HOST, broker.port, ["bench-out/#"], f"bench-many-{time.monotonic_ns()}")
        progress(f"{count:,} {kind} subscriptions: load {rate:,} msgs/s for {seconds:.0f} s")
        cpu_before = arros.cpu_seconds()
        paced.start(broker.port, rate, seconds, machines=count).wait(seconds * 10 + 60)
        cpu = arros.cpu_seconds() - cpu_before
        loaded = arros.rss_mb()
        data = workload.readings(paced.rows(rate, seconds), machines=count)
        stopped, rows = time.monotonic(), 0.0
        while rows < data.rows and time.monotonic() - stopped < 300:
            rows = arros.metric("arros_stream_rows_total", "telemetry")
            time.sleep(0.1)
        lag = time.monotonic() - stopped
        problems = [] if rows == data.rows else [f"{int(rows)} of {data.rows} rows decoded"]
        if kind == "filter":
            expected = int((data.temp > FILTER_TEMP).sum())
            receiver.wait_for(expected, timeout=60)
        else:
            expected = data.rows  # the windows' counts, once they all closed
            deadline = time.monotonic() + 120
            while _window_rows(receiver) < expected and time.monotonic() < deadline:
                time.sleep(0.2)
        time.sleep(0.2)
        got = len(receiver.messages) if kind == "filter" else _window_rows(receiver)
        if got != expected:
            problems.append(f"{got} {'messages' if kind == 'filter' else 'rows in windows'}, {expected} expected")
        receiver.close()
    finally:
        arros.stop(timeout=300)
    return {"kind": kind, "subscriptions": count, "rate": rate, "seconds": seconds, "startup_s": startup,
            "rss_idle_mb": idle, "rss_loaded_mb": loaded, "cpu_per_s": cpu / seconds, "lag_s": lag,
            "kept_up": lag < KEPT_UP_LAG_S, "zero_loss": not problems, "problems": problems}


def _window_rows(receiver: mqtt_wire.Receiver) -> int:
    return sum(orjson.loads(payload)["n"] for _, _, payload in list(receiver.messages))


def run(counts: list[int], kinds: list[str], rate: int, seconds: float, progress: Progress = print,
        directory: Path | None = None) -> dict:
    runs = []
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        root = Path(tmp)
        broker = start_mosquitto(root)
        try:
            metrics_port = free_port()
            empty = ArrosProcess(root / "none", _mkdir(root / "none") or service_config(
                broker.port, metrics_port, root / "none" / "state", {}), metrics_port)
            try:
                empty.wait_ready(broker.port)
                time.sleep(1.0)
                baseline = empty.rss_mb()
            finally:
                empty.stop()
            for kind in kinds:
                for count in counts:
                    progress(f"{count:,} {kind} subscriptions: starting arros")
                    result = measure(broker, root / f"{kind}-{count}", kind, count, rate, seconds, progress)
                    result["rss_per_subscription_kb"] = (result["rss_idle_mb"] - baseline) * 1024 / count
                    runs.append(result)
        finally:
            broker.stop()
    return {"rss_without_subscriptions_mb": baseline, "runs": runs}


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def print_table(result: dict) -> None:
    print(f"RSS without subscriptions: {result['rss_without_subscriptions_mb']:.0f} MB")
    print(f"{'kind':<8}{'subs':>7}{'msgs/s':>8}{'startup s':>10}{'CPU s/s':>9}{'RSS MB':>8}{'KB/sub':>8}"
          f"{'lag s':>7}  loss")
    for r in result["runs"]:
        print(f"{r['kind']:<8}{r['subscriptions']:>7,}{r['rate']:>8,}{r['startup_s']:>10.1f}{r['cpu_per_s']:>9.2f}"
              f"{r['rss_loaded_mb']:>8.0f}{r['rss_per_subscription_kb']:>8.1f}{r['lag_s']:>7.1f}  "
              f"{'none' if r['zero_loss'] else '; '.join(r['problems'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="10,100,1000,10000")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run([int(c) for c in args.counts.split(",")], args.kinds.split(","), args.rate, args.seconds,
                 progress=report.progress)
    return report.finish(result, print_table, args.json, all(r["zero_loss"] for r in result["runs"]))


if __name__ == "__main__":
    raise SystemExit(main())
