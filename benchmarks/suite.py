"""`arros bench`: every benchmark in one run, a table on the terminal and (with --json) a JSON file.

Sections run one after another, each against its own Mosquitto on a free loopback port (the replay
and Flight SQL need no broker): ingest (with the broker's two ceilings, QoS 0 and the QoS 1 relay, and
per-row results), latency, memory, many subscriptions, replay, Flight SQL (an archive scan and a GROUP BY
through `arros run` to an ADBC client). Headline rows run the defaults a user gets (nothing about QoS
set, the write-ahead log on, default batching, QoS 1 publishers and receivers); "QoS 0 (tuned)" rows are
extras. The targets (`targets.py`) are checked against this run's numbers.
`--quick` shrinks every size (and runs fewer QoS 0 rows) so the whole suite takes about two minutes
(CI, a smoke test); the default sizes are the ones docs/performance.md's numbers come from. Ratios
measured in one run are what to compare: absolute numbers drift with whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.testing import mosquitto_binary  # noqa: E402
from benchmarks import flight_scan, ingest, latency, many_subscriptions, memory, workers  # noqa: E402
from benchmarks.targets import targets  # noqa: E402

SECTIONS = ("ingest", "latency", "memory", "subscriptions", "replay", "flight")
OPTIONAL_SECTIONS = ("workers",)  # run only when named in --sections: `arros run --workers` 1 vs 2


@dataclass(frozen=True)
class Sizes:
    messages: int
    results_messages: int  # of the per-row results runs (one output per input row: slower at QoS 1 and 2)
    tuned_cases: tuple[ingest.Case, ...]  # the "QoS 0 (tuned)" ingest rows, after every default row
    ceiling_runs: int
    latency_rates: tuple[int, ...]
    latency_seconds: float
    latency_variants: tuple[str, ...]
    memory_seconds: float
    memory_rate: int
    subscription_counts: tuple[int, ...]
    subscription_rate: int
    subscription_seconds: float
    replay_events: int
    flight_rows: int = 10_000_000  # the archive scanned through Flight SQL
    workers_rows: int = 1_000_000  # readings per run of the workers section (arrays of 100) ...
    workers_messages: int = 200_000  # ... and messages of one reading each
    workers_sustained_seconds: float = workers.SUSTAINED_SECONDS  # paced load per rate of the sustained search


FULL = Sizes(messages=500_000, results_messages=100_000, tuned_cases=tuple(ingest.TUNED_CASES), ceiling_runs=3,
             latency_rates=(1_000, 10_000), latency_seconds=10.0, latency_variants=tuple(latency.VARIANTS),
             memory_seconds=60.0, memory_rate=5_000, subscription_counts=(10, 100, 1_000, 10_000),
             subscription_rate=1_000, subscription_seconds=20.0, replay_events=1_000_000)
QUICK = Sizes(messages=20_000, results_messages=20_000, ceiling_runs=1,
              tuned_cases=tuple(case for case in ingest.TUNED_CASES if case.wal), latency_rates=(1_000, 10_000),
              latency_seconds=2.0, latency_variants=("defaults", "QoS 0 (tuned)"), memory_seconds=8.0,
              memory_rate=2_000, subscription_counts=(10, 100), subscription_rate=1_000, subscription_seconds=3.0,
              replay_events=100_000, flight_rows=1_000_000, workers_rows=100_000,
              workers_messages=20_000, workers_sustained_seconds=3.0)


class Progress:
    """One status line, rewritten in place on a terminal; plain lines otherwise (logs, CI)."""

    def __init__(self, sections: list[str]) -> None:
        self.sections = sections
        self.current = 0
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()
        self._width = 0

    def section(self, name: str) -> None:
        self.current = self.sections.index(name) + 1
        self(f"{name}")

    def __call__(self, text: str) -> None:
        line = f"[{self.current}/{len(self.sections)} {time.monotonic() - self.started:5.0f}s] {text}"
        if self.tty:
            sys.stderr.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * self._width + "\r")
            sys.stderr.flush()


def environment() -> dict:
    versions = {name: _version(name) for name in ("arros-mqtt", "pyarrow", "datafusion", "paho-mqtt", "duckdb")}
    mosquitto = subprocess.run([mosquitto_binary(), "-h"], capture_output=True, text=True).stdout.split("\n")[0]
    return {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "cpu": _cpu_model(), "python": platform.python_version(), "platform": platform.platform(),
            "mosquitto": mosquitto.replace("mosquitto version ", ""), "versions": versions}


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def replay(events: int, directory: Path) -> dict:
    """benchmarks/window_replay.py in a child (it runs each contender in a child of its own for RSS)."""
    out = directory / "replay.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "window_replay.py"), "--events", str(events),
                    "--json", str(out)], check=False, capture_output=True, text=True, timeout=3600)
    result = json.loads(out.read_text())
    duck = result["runs"]["duckdb"]
    for run in result["runs"].values():
        run["x_duckdb_time"] = run["seconds"] / duck["seconds"]
    return result


def run(sections: list[str], sizes: Sizes, json_path: Path | None) -> int:
    progress = Progress(sections)
    plain_sizes = {**sizes.__dict__, "tuned_cases": [f"{case.label} {case.query}" for case in sizes.tuned_cases]}
    report: dict = {"environment": environment(), "sizes": plain_sizes, "sections": sections}
    with tempfile.TemporaryDirectory(prefix="arros-bench-") as tmp:
        directory = Path(tmp)
        for name in sections:
            progress.section(name)
            if name == "ingest":
                report[name] = ingest.run(sizes.messages, ingest.DEFAULT_CASES + list(sizes.tuned_cases), progress,
                                          directory,
                                          ceiling_runs=sizes.ceiling_runs, results_messages=sizes.results_messages)
            elif name == "latency":
                report[name] = latency.run(list(sizes.latency_rates), sizes.latency_seconds,
                                           list(sizes.latency_variants), progress, directory)
            elif name == "memory":
                report[name] = memory.run(sizes.memory_seconds, sizes.memory_rate, progress, directory)
            elif name == "subscriptions":
                report[name] = many_subscriptions.run(list(sizes.subscription_counts), list(many_subscriptions.KINDS),
                                                      sizes.subscription_rate, sizes.subscription_seconds, progress,
                                                      directory)
            elif name == "replay":
                report[name] = replay(sizes.replay_events, directory)
            elif name == "flight":
                report[name] = flight_scan.run(sizes.flight_rows, progress, directory)
            elif name == "workers":
                report[name] = workers.run(sizes.workers_rows, sizes.workers_messages, progress, directory,
                                           sizes.workers_sustained_seconds)
    progress.done()
    report["targets"] = targets(report)
    report["zero_loss"] = zero_loss(report)
    print_report(report)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2, default=_plain))
        print(f"\nwritten to {json_path}")
    return 0 if report["zero_loss"] else 1


def _plain(value: object) -> object:
    """numpy scalars (bools, ints) as their Python values."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def zero_loss(report: dict) -> bool:
    """Every row accounted for in every section that ran."""
    checks = [r["zero_loss"] for r in report.get("ingest", {}).get("runs", [])]
    checks += [rate > 0 for ceiling in report.get("ingest", {}).get("ceilings", {}).values()
               for rate in ceiling["runs_msgs_per_s"]]  # a QoS 1 relay run that lost messages counts 0
    checks += [r["complete"] for r in report.get("latency", {}).get("runs", [])]
    checks += [report["memory"]["zero_loss"]] if "memory" in report else []
    checks += [r["zero_loss"] for r in report.get("subscriptions", {}).get("runs", [])]
    checks += [r.get("matches_duckdb", True) for r in report.get("replay", {}).get("runs", {}).values()]
    checks += [report["flight"]["ok"]] if "flight" in report else []
    checks += [r["zero_loss"] for r in workers.all_runs(report["workers"])] if "workers" in report else []
    return all(checks)


_SECTION_TABLES = [  # report key, heading, the section script's table printer
    ("ingest", "1-2. Ceilings, ingest and per-row results", ingest.print_table),
    ("latency", "3. Latency, publish -> derived message (one per row)", latency.print_table),
    ("memory", "4. Memory", memory.print_table),
    ("subscriptions", "5. Many subscriptions on one stream", many_subscriptions.print_table),
]


def print_report(report: dict) -> None:
    env = report["environment"]
    print(f"arros bench, {env['date']}: {env['cpus']} CPUs ({env['cpu']}), Python {env['python']}, "
          f"Mosquitto {env['mosquitto']}, " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v))
    for key, title, print_table in _SECTION_TABLES:
        if key in report:
            print(f"\n{title}")
            print_table(report[key])
    if "replay" in report:
        replay_result = report["replay"]
        print(f"\n6. Replay: {replay_result['events']:,} events, 10 s tumbling window per machine, vs DuckDB")
        print(f"{'contender':<10}{'seconds':>9}{'x DuckDB':>10}{'peak RSS MB':>13}  same rows as DuckDB")
        for mode, run in replay_result["runs"].items():
            print(f"{mode:<10}{run['seconds']:>9.2f}{run['x_duckdb_time']:>10.2f}{run['peak_rss_mb']:>13.0f}  "
                  f"{run.get('matches_duckdb', '-')}")
    if "flight" in report:
        print("\n7. Flight SQL: an archive scan and a GROUP BY to an ADBC client, vs DuckDB reading the files")
        flight_scan.print_table(report["flight"])
    if "workers" in report:
        print("\n8. `arros run --workers`, 1 vs 2: a filter over JSON arrays of 100 readings (CPU-bound), then over "
              "one reading per message (broker-bound)")
        workers.print_table(report["workers"])
    if report["targets"]:
        print("\nTargets")
        for row in report["targets"]:
            verdict = {True: "met", False: "not met", None: "not run"}[row["met"]]
            print(f"  [{verdict:>7}] {row['target']}: {row['measured']}")
    print(f"\nzero loss: {'yes, every row accounted for' if report['zero_loss'] else 'NO (see above)'}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes: about two minutes (CI, smoke test)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--duration", type=float, help="seconds of the memory run (default 60; 8 with --quick)")
    parser.add_argument("--messages", type=int, help="messages per ingest run and per ceiling run (default 500,000; "
                        "20,000 with --quick); also the per-row runs' (default 100,000; 20,000 with --quick)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, of: {', '.join(SECTIONS)}; optional, only when named: "
                        f"{', '.join(OPTIONAL_SECTIONS)}")


def main_with(args: argparse.Namespace) -> int:
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS + OPTIONAL_SECTIONS]
    if unknown:
        raise ValueError(f"unknown section {unknown[0]!r} (known: {', '.join(SECTIONS + OPTIONAL_SECTIONS)})")
    sizes = QUICK if args.quick else FULL
    if args.duration is not None:
        sizes = Sizes(**{**sizes.__dict__, "memory_seconds": args.duration})
    if args.messages is not None:
        sizes = Sizes(**{**sizes.__dict__, "messages": args.messages, "results_messages": args.messages})
    return run(sections, sizes, args.json)


def main() -> int:
    parser = argparse.ArgumentParser(prog="arros bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args()
    try:
        return main_with(args)
    except ValueError as exc:  # one line, as every `arros` error
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
