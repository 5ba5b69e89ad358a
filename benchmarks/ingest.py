"""Ingest and per-row results: the broker's two ceilings vs Arros with the defaults a user gets, in one run.

All runs share one Mosquitto on a free loopback port (`set_tcp_nodelay true`, as docs/brokers.md
advises) and one kind of publisher (`blast.py`, a child process writing pre-built PUBLISH packets; at
QoS 1 it keeps a window of unacknowledged packets and counts PUBACKs by size, so it is never the limit).
Results are received by `mqtt_wire.Receiver` in this process (a bare socket, subscribed at QoS 1,
acknowledging each socket read's PUBLISHes in one write, the cyclic GC off). For N ~100 B JSON
telemetry messages from 100 machines:

- ceilings, the broker alone with the same N messages, best of `ceiling_runs`, QoS 0 and QoS 1 runs
  alternating: QoS 0, publisher -> Mosquitto -> `mosquitto_sub -C N` (C, prints to /dev/null), until
  it exits; QoS 1 relay, publisher at QoS 1 -> Mosquitto -> the bare-socket receiver at QoS 1, until
  the last message arrived;
- Arros (`arros run` in a child process, MQTT 5 as by default) into (a) a per-row filter (~1.25% of
  readings out), (b) a 10 s tumbling window per machine (count/avg/max/min), (c) a per-row subscription,
  one result per input row (`workload.ROWS_SQL`). The "defaults" rows set nothing about QoS (streams
  QoS 1, results QoS 1, windows QoS 2 with the log on), keep the write-ahead log and the default
  batching, and get a QoS 1 publisher; "QoS 0 (tuned)" rows set `qos = 0` on streams and subscriptions
  and get a QoS 0 publisher. Ingest time: until the engine decoded every row (Prometheus counter);
  per-row results: until the receiver got the last result (results/s). Ratios: defaults to the QoS 1
  ceiling, tuned rows to the QoS 0 ceiling (both are in the JSON). CPU seconds and RSS (idle, peak)
  of the Arros process come from /proc.

Zero loss is checked for every run: every row decoded, no dead letter, the filter's messages are
exactly the hot readings, the windows' counts and values equal pyarrow's over the input, every
per-row result arrived exactly once.

    .venv/bin/python benchmarks/ingest.py --messages 200000 [--json out.json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.testing import HOST, Mosquitto, free_port, start_mosquitto  # noqa: E402
from benchmarks import mqtt_wire, report, workload  # noqa: E402
from benchmarks.arros_process import ArrosProcess, Usage, cpu_per_1k_msgs_per_s, service_config  # noqa: E402
from benchmarks.blast import Blast  # noqa: E402

Progress = Callable[[str], None]
BROKER_EXTRA = ("set_tcp_nodelay true\n"
                "log_type subscribe\nlog_type error\nlog_type warning\n")  # SUBSCRIBEs show when a client is ready
STALL_SECONDS = 60.0
FAST_POLL_S, FAST_POLL_FOR_S, POLL_S = 0.02, 2.0, 0.1
QUERIES = {
    "filter": {"hot": {"sql": workload.FILTER_SQL, "output": "bench-out/hot/{machine}"}},
    "window": {"win": {"sql": workload.WINDOW_SQL, "output": "bench-out/win/{machine}"}},
    "per-row": {"rows": {"sql": workload.ROWS_SQL, "output": "bench-out/rows/{machine}"}},
}
GROUPS = {  # group -> (its ceiling, the table's heading)
    "defaults": ("qos1", "Defaults: nothing about QoS set (streams QoS 1, results QoS 1, windows QoS 2), "
                         "write-ahead log on, default batching; publisher QoS 1; x = of the QoS 1 ceiling"),
    "qos0": ("qos0", "QoS 0 (tuned): qos = 0 on streams and subscriptions, publisher QoS 0; "
                     "x = of the QoS 0 ceiling"),
}
LEGEND = ("results/s: per-row results at the receiver (QoS 1), first publish to last result; x is of it for "
          "per-row rows.\nCPU s/1k: CPU seconds of the Arros process during the run / (msg/s / 1,000) / run "
          "seconds, the share of one core each 1,000 msg/s costs (= CPU seconds per 1,000 messages; msg/s "
          "is results/s for per-row rows).\nRSS: idle once started and subscribed, peak while loaded (MB).")


@dataclass(frozen=True)
class Case:
    """One Arros run of the table: a payload kind of `workload.PAYLOADS`, a query of `QUERIES`, the
    defaults (nothing about QoS set, QoS 1 publisher) unless `tuned` (QoS 0 everywhere)."""

    payload: str
    query: str
    tuned: bool = False
    wal: bool = True
    subscription_qos: int | None = None  # set on the subscription; None: the default

    @property
    def group(self) -> str:
        return "qos0" if self.tuned else "defaults"

    @property
    def per_row(self) -> bool:
        return self.query == "per-row"

    @property
    def publisher_qos(self) -> int:
        return 0 if self.tuned else 1

    @property
    def results_qos(self) -> int:
        """The QoS Arros publishes results at: what is set, else its default (`service/pipeline.py`:
        windows QoS 2 with the log on in client mode, everything else QoS 1)."""
        if self.tuned:
            return 0
        if self.subscription_qos is not None:
            return self.subscription_qos
        return 2 if self.query == "window" and self.wal else 1

    @property
    def label(self) -> str:
        notes = [] if self.wal else ["no WAL"]
        notes += [f"results QoS {self.subscription_qos}"] if self.subscription_qos is not None else []
        return ", ".join([self.payload, *notes])

    def subscriptions(self) -> dict[str, dict]:
        qos = {} if self.subscription_qos is None else {"qos": self.subscription_qos}
        return {name: {**sub, **qos} for name, sub in QUERIES[self.query].items()}


DEFAULT_CASES = [*(Case(payload, query) for payload in workload.PAYLOADS for query in ("filter", "window")),
                 Case("json", "per-row"), Case("json", "per-row", subscription_qos=2)]
TUNED_CASES = [*(Case("json", query, tuned=True, wal=wal) for wal in (True, False) for query in ("filter", "window")),
               Case("json", "per-row", tuned=True)]
CASES = DEFAULT_CASES + TUNED_CASES


def start_broker(directory: Path) -> Mosquitto:
    return start_mosquitto(directory, extra=BROKER_EXTRA)


def wait_subscribed(broker: Mosquitto, client_id: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f" {client_id} " in broker.log.read_text(errors="replace"):
            return
        time.sleep(0.02)
    raise TimeoutError(f"{client_id} did not subscribe within {timeout}s")


def qos0_ceiling(broker: Mosquitto, n: int) -> float:
    """Messages/s a bare `mosquitto_sub` receives from the QoS 0 publisher."""
    client_id = f"bench-ceiling-{time.monotonic_ns()}"
    sub = subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(broker.port), "-t", "bench/#", "-q", "0",
                            "-C", str(n), "-i", client_id], stdout=subprocess.DEVNULL)
    try:
        wait_subscribed(broker, client_id)
        publisher = Blast(broker.port, "json", 1, n, qos=0)
        publisher.ready()
        start = time.perf_counter()
        publisher.go()
        sub.wait(600)
        elapsed = time.perf_counter() - start
        publisher.finish()
        return n / elapsed
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


def qos1_ceiling(broker: Mosquitto, n: int) -> float:
    """Messages/s of the broker's QoS 1 relay: the QoS 1 publisher -> Mosquitto -> the bare-socket
    receiver at QoS 1 (the receiver that counts Arros's results); 0 if messages went missing."""
    receiver = mqtt_wire.Receiver(HOST, broker.port, ["bench/#"], f"bench-relay-{time.monotonic_ns()}", qos=1)
    try:
        publisher = Blast(broker.port, "json", 1, n, qos=1)
        publisher.ready()
        with mqtt_wire.gc_paused():
            start_ns = time.time_ns()
            publisher.go()
            complete = receiver.wait_for(n, timeout=3600, stall=STALL_SECONDS)
        publisher.finish()
    finally:
        receiver.close()
    return n / ((receiver.messages[-1][0] - start_ns) / 1e9) if complete else 0.0


def ceilings(broker: Mosquitto, n: int, runs: int, progress: Progress) -> dict:
    """Both ceilings, best of `runs` each, alternating so that what else the machine does weighs on both."""
    measured: dict[str, list[float]] = {"qos0": [], "qos1": []}
    for i in range(runs):
        progress(f"ceilings, run {i + 1} of {runs}: QoS 0 (mosquitto_sub), QoS 1 relay (bare sockets)")
        measured["qos0"].append(qos0_ceiling(broker, n))
        measured["qos1"].append(qos1_ceiling(broker, n))
    return {name: {"msgs_per_s": max(rates), "runs_msgs_per_s": rates} for name, rates in measured.items()}


def measure(broker: Mosquitto, directory: Path, case: Case, data: workload.Readings, progress: Progress,
            protocol: str = "5") -> dict:
    """One Arros run: start, idle RSS, the load, accounting, stop."""
    directory.mkdir(parents=True, exist_ok=True)
    metrics_port = free_port()
    fmt, per = workload.PAYLOADS[case.payload]
    config = service_config(broker.port, metrics_port, directory / "state", case.subscriptions(), fmt=fmt,
                            protocol=protocol, durability=None if case.wal else {"wal": False},
                            qos=0 if case.tuned else None)
    publisher = Blast(broker.port, fmt, per, data.rows, case.publisher_qos)  # builds while Arros starts
    arros = ArrosProcess(directory, config, metrics_port)
    try:
        arros.wait_ready(broker.port)
        rss_idle = arros.idle_rss_mb()
        receiver = mqtt_wire.Receiver(HOST, broker.port, ["bench-out/#"], f"bench-out-{time.monotonic_ns()}", qos=1)
        try:
            publisher.ready()
            with mqtt_wire.gc_paused():
                timing = _drive(arros, receiver, publisher, data.rows, data.rows if case.per_row else 0,
                                lambda text: progress(f"{case.label} {case.query}: {text}"))
            published = publisher.finish()
            outcome = _account(arros, receiver, data, case.query, timing["rows_decoded"])
        finally:
            receiver.close()
    finally:
        publisher.finish(10)  # returns at once after a run; lets it exit unpublished after a failure
        arros.stop()
    if published.get("sent") != data.messages or published.get("unacknowledged"):
        outcome["problems"].append(f"the publisher reported {published or 'nothing'}")
        outcome["zero_loss"] = False
    return {**_describe(case), "messages": data.messages, "rows": data.rows, "rss_idle_mb": rss_idle,
            **_rates(timing, data), **outcome}


def _describe(case: Case) -> dict:
    return {"group": case.group, "label": case.label, "payload": case.payload,
            "rows_per_message": workload.PAYLOADS[case.payload][1], "query": case.query, "wal": case.wal,
            "stream_qos": 0 if case.tuned else 1, "publisher_qos": case.publisher_qos, "results_qos": case.results_qos}


def _drive(arros: ArrosProcess, receiver: mqtt_wire.Receiver, publisher: Blast, rows_wanted: int,
           results_wanted: int, progress: Progress) -> dict:
    """Starts the publisher, polls until the engine decoded every row and the receiver holds
    `results_wanted` messages, or nothing moved for STALL_SECONDS; times both."""
    usage = Usage(arros)
    start_ns = time.time_ns()
    publisher.go()
    decoded_ns, seen, changed, told = None, (-1.0, -1), time.monotonic(), time.monotonic()
    began = changed
    while True:
        time.sleep(_poll_interval(time.monotonic() - began))
        rows, results = arros.metric("arros_stream_rows_total", "telemetry"), len(receiver.messages)
        usage.sample()
        if decoded_ns is None and rows >= rows_wanted:
            decoded_ns = time.time_ns()
        if decoded_ns is not None and results >= results_wanted:
            break
        if (rows, results) != seen:
            seen, changed = (rows, results), time.monotonic()
        elif time.monotonic() - changed > STALL_SECONDS:
            break
        if time.monotonic() - told > 2:
            told = time.monotonic()
            progress(f"{rows:,.0f} of {rows_wanted:,} rows decoded, {results:,} results")
    usage.stop()
    last_result_ns = receiver.messages[-1][0] if results_wanted and receiver.messages else None
    return {"rows_decoded": rows, "seconds": ((decoded_ns or time.time_ns()) - start_ns) / 1e9,
            "results_seconds": (last_result_ns - start_ns) / 1e9 if last_result_ns else None,
            "cpu_seconds": usage.cpu_seconds, "rss_peak_mb": usage.peak_rss_mb}


def _poll_interval(elapsed: float) -> float:
    """How long to sleep between two reads of Arros's row counter: 20 ms for the first 2 s, so a short run
    (500,000 rows in arrays at 1M rows/s take 0.5 s) is timed within ~2%, then 100 ms, so a long run is
    not slowed by the reads themselves (each costs Arros ~0.8 ms of CPU to render /metrics)."""
    return FAST_POLL_S if elapsed < FAST_POLL_FOR_S else POLL_S


def _rates(timing: dict, data: workload.Readings) -> dict:
    """msg/s and rows/s until decoded; results/s for a per-row run; CPU per 1,000 msg/s of the row's rate."""
    msgs_per_s = data.messages / timing["seconds"]
    results_per_s = data.rows / timing["results_seconds"] if timing["results_seconds"] else None
    rate, seconds = (results_per_s, timing["results_seconds"]) if results_per_s else (msgs_per_s, timing["seconds"])
    return {"seconds": timing["seconds"], "results_seconds": timing["results_seconds"], "msgs_per_s": msgs_per_s,
            "rows_per_s": data.rows / timing["seconds"], "results_per_s": results_per_s,
            "cpu_seconds": timing["cpu_seconds"], "cpu_s_per_1k_msgs_per_s": cpu_per_1k_msgs_per_s(
                timing["cpu_seconds"], rate, seconds), "rss_peak_mb": timing["rss_peak_mb"]}


def _account(arros: ArrosProcess, receiver: mqtt_wire.Receiver, data: workload.Readings, query: str,
             rows: float) -> dict:
    """Every row accounted for: decoded, not dead-lettered, and in the derived messages exactly once."""
    problems = []
    if rows != data.rows:
        problems.append(f"{int(rows)} of {data.rows} rows decoded")
    if query == "window":
        windows = workload.expected_windows(data)
        expected = windows.num_rows
        receiver.wait_for(expected, timeout=30)
        time.sleep(0.2)  # a duplicate would arrive now
        difference = workload.check_windows([payload for _, _, payload in receiver.messages], windows)
        problems += [difference] if difference else []
    else:
        expected = workload.expected_hot(data) if query == "filter" else data.rows
        receiver.wait_for(expected, timeout=30)
        time.sleep(0.2)
        problems += _count_problems([payload for _, _, payload in receiver.messages], expected, query)
    deadletters = arros.metric("arros_deadletters_total", "telemetry")
    if deadletters:
        problems.append(f"{int(deadletters)} dead letters")
    return {"messages_out": len(receiver.messages), "messages_out_expected": expected,
            "lost_rows": data.rows - int(rows), "zero_loss": not problems, "problems": problems}


def _count_problems(payloads: list[bytes], expected: int, query: str) -> list[str]:
    """A filter's or a per-row subscription's messages: as many as expected, each reading once (by `seq`)."""
    seqs = [orjson.loads(payload)["seq"] for payload in payloads]
    problems = [f"{len(seqs)} {query} messages, {expected} expected"] if len(seqs) != expected else []
    duplicates = len(seqs) - len(set(seqs))
    return problems + ([f"{duplicates} readings published twice"] if duplicates else [])


def run(messages: int, cases: list[Case], progress: Progress = print, directory: Path | None = None,
        ceiling_runs: int = 3, protocol: str = "5", results_messages: int | None = None) -> dict:
    """The ceilings with `messages` JSON messages, then every case (`results_messages` for per-row ones)."""
    results_messages = results_messages or messages
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        root = Path(tmp)
        broker = start_broker(root)
        try:
            found = ceilings(broker, messages, ceiling_runs, progress)
            data: dict[tuple[str, int], workload.Readings] = {}
            runs = []
            for i, case in enumerate(cases):
                count = results_messages if case.per_row else messages
                key = (case.payload, count)
                if key not in data:
                    data[key] = workload.readings(count, rows_per_message=workload.PAYLOADS[case.payload][1])
                progress(f"{case.label} {case.query} ({GROUPS[case.group][0]}): starting arros")
                result = measure(broker, root / f"run-{i}", case, data[key], progress, protocol)
                runs.append({**result, **_ratios(result, found)})
        finally:
            broker.stop()
    sample = workload.payloads(workload.readings(messages), "json")
    wire = sum(len(mqtt_wire.publish_packet(topic, payload)) for topic, payload in sample)
    return {"messages": messages, "results_messages": results_messages, "protocol": protocol,
            "bytes_per_message": round(wire / messages, 1), "ceiling_runs": ceiling_runs, "ceilings": found,
            "runs": runs}


def _ratios(result: dict, found: dict) -> dict:
    rate = result["results_per_s"] if result["query"] == "per-row" else result["msgs_per_s"]
    rate = rate or 0.0
    ratios = {f"ratio_to_{name}_ceiling": rate / ceiling["msgs_per_s"] if ceiling["msgs_per_s"] else 0.0
              for name, ceiling in found.items()}
    ceiling = GROUPS[result["group"]][0]
    return {**ratios, "ceiling": ceiling, "ratio_to_ceiling": ratios[f"ratio_to_{ceiling}_ceiling"]}


def print_table(result: dict) -> None:
    found = result["ceilings"]
    print(f"Ceilings, the broker alone: the same {result['messages']:,} JSON messages (~"
          f"{result['bytes_per_message']:.0f} B on the wire), best of {result['ceiling_runs']} each")
    for name, path in (("qos0", "QoS 0: publisher -> Mosquitto -> mosquitto_sub (C)"),
                       ("qos1", "QoS 1 relay: publisher -> Mosquitto -> bare-socket subscriber, QoS 1 both hops")):
        runs = ", ".join(f"{rate:,.0f}" for rate in found[name]["runs_msgs_per_s"])
        print(f"  {path:<80}{found[name]['msgs_per_s']:>9,.0f} msgs/s ({runs})")
    for group, (_ceiling, heading) in GROUPS.items():
        runs = [r for r in result["runs"] if r["group"] == group]
        if runs:
            print(f"\n{heading}")
            _print_rows(runs, result)
    print(f"\n{LEGEND}")


def _print_rows(runs: list[dict], result: dict) -> None:
    print(f"{'payload':<21}{'query':<8}{'msgs/s':>10}{'rows/s':>11}{'results/s':>10}{'x ceil':>8}{'CPU s/1k':>9}"
          f"{'RSS idle':>9}{'peak':>6}  loss")
    for r in runs:
        per_row = f"{r['results_per_s']:>10,.0f}" if r["results_per_s"] else f"{'-':>10}"
        print(f"{r['label']:<21}{r['query']:<8}{r['msgs_per_s']:>10,.0f}{r['rows_per_s']:>11,.0f}{per_row}"
              f"{r['ratio_to_ceiling']:>8.2f}{r['cpu_s_per_1k_msgs_per_s']:>9.3f}{r['rss_idle_mb']:>9.0f}"
              f"{r['rss_peak_mb']:>6.0f}  {'none' if r['zero_loss'] else '; '.join(r['problems'])}")
    if any(r["query"] == "per-row" for r in runs) and result["results_messages"] != result["messages"]:
        print(f"(per-row rows: {result['results_messages']:,} messages)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--results-messages", type=int, help="messages of the per-row runs (default: --messages)")
    parser.add_argument("--payloads", default=",".join(workload.PAYLOADS))
    parser.add_argument("--queries", default=",".join(QUERIES))
    parser.add_argument("--groups", default=",".join(GROUPS), help="defaults and/or qos0 (the tuned rows)")
    parser.add_argument("--ceiling-runs", type=int, default=3)
    parser.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT version of Arros's client")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cases = [case for case in CASES if case.payload in args.payloads.split(",")
             and case.query in args.queries.split(",") and case.group in args.groups.split(",")]
    result = run(args.messages, cases, progress=report.progress, ceiling_runs=args.ceiling_runs,
                 protocol=args.protocol, results_messages=args.results_messages)
    return report.finish(result, print_table, args.json, all(r["zero_loss"] for r in result["runs"]))


if __name__ == "__main__":
    raise SystemExit(main())
