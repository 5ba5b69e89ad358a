"""`arros run --workers N`, 1 vs 2: does a second worker process take the load of a CPU-bound stream?

The workload is the CPU-bound one of docs/performance.md: JSON arrays of 100 readings per message (one
message costs Arros ~100 rows of decoding) into the filter subscription (`workload.FILTER_SQL`), QoS 1
publisher, results at the default QoS 1. For each worker count: a fresh Mosquitto, `arros run --workers N`
(each worker a `[cluster]` member, `$share/...` subscriptions, Mosquitto round robin), a burst of `rows`
readings published by `blast.py` in a child process; timed from the first PUBLISH until every worker's
metrics say all rows are decoded (`seconds`) and until the last result arrived (`results_seconds`).
Zero loss: every row decoded exactly once across the workers (their row counters sum to the rows sent)
and every expected result received exactly once (by `seq`).

Then the same for one reading per message (`--messages`), where Mosquitto's per-message relaying limits
first: it shows where more workers stop helping.

    python benchmarks/workers.py [--rows 1000000] [--messages 200000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.testing import HOST, free_port, start_mosquitto  # noqa: E402
from benchmarks import mqtt_wire, workload  # noqa: E402
from benchmarks.arros_process import PROBE_TOPIC, service_config  # noqa: E402
from benchmarks.blast import Blast  # noqa: E402

PER_MESSAGE = 100
STALL_SECONDS = 30.0
LAG_BOUND = 1.0  # a sustained rate: everything decoded within this of the last message sent
STEP = 1.25  # the sustained search's step between rates
TRIALS = 10
REFINE = 2  # bisections between the last rate kept up with and the first not
SUSTAINED_SECONDS = 8.0
OUTPUT = "bench-out/{machine}"


class Workers:
    """`arros run -c CONFIG --workers N` as a user starts it; each worker's Prometheus port is base + i."""

    def __init__(self, directory: Path, broker_port: int, count: int) -> None:
        self.count, self.metrics_port = count, free_port()
        while any(_in_use(self.metrics_port + i) for i in range(count)):
            self.metrics_port = free_port()
        config = directory / "arros.toml"
        config.write_text(service_config(broker_port, self.metrics_port, directory / "state",
                                         {"hot": {"sql": workload.FILTER_SQL, "output": OUTPUT}})
                          + '[flight]\nenabled = false\n')
        self.log = directory / "arros.log"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "arros_mqtt", "run", "-c", str(config),
                                             "--workers", str(count)], stdout=log, stderr=subprocess.STDOUT,
                                            cwd=directory, env={**os.environ, "PYTHONPATH": str(ROOT)})

    def metric(self, index: int, name: str, label: str) -> float:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port + index}/metrics", timeout=30) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        prefix = f'{name}{{stream="{label}"}} '
        return next((float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)), 0.0)

    def rows(self) -> list[float]:
        return [self.metric(i, "arros_stream_rows_total", "telemetry") for i in range(self.count)]

    def wait_ready(self, broker_port: int, timeout: float = 300.0) -> None:
        """Until every worker decoded a probe message (the probes are shared round robin too)."""
        client = mqtt_wire.WireClient(HOST, broker_port, "bench-probe")
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"arros exited with {self.process.returncode}: {self.tail()}")
                if all(self.metric(i, "arros_stream_rows_total", "probe") for i in range(self.count)):
                    return
                client.send(mqtt_wire.publish_packet(PROBE_TOPIC.encode(), b'{"v":1}'))
                time.sleep(0.2)
        finally:
            client.close()
        raise TimeoutError(f"workers not ready after {timeout}s: {self.tail()}")

    def pids(self) -> list[int]:
        """The workers' pids, from the supervisor's log (`worker i started (pid N)`)."""
        import re

        if self.count == 1:  # `--workers 1` is the service itself, no supervisor
            return [self.process.pid]
        found = dict(re.findall(r"worker (\d+) started \(pid (\d+)\)", self.log.read_text(errors="replace")))
        return [int(found[str(i)]) for i in range(self.count) if str(i) in found]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of every worker (all their threads)."""
        from benchmarks.arros_process import CLOCK_TICKS

        total = 0.0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return total

    def tail(self) -> str:
        return " | ".join(self.log.read_text(errors="replace").splitlines()[-5:])

    def stop(self, timeout: float = 60.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _in_use(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


def measure(count: int, rows: int, per_message: int, directory: Path, progress=print, rate: float = 0.0) -> dict:
    """One run: a burst (`rate` 0), or `rows` readings paced at `rate` messages/s, into `count` workers."""
    run_dir = directory / (f"workers-{count}-per-{per_message}" + (f"-at-{rate:.0f}" if rate else ""))
    run_dir.mkdir()
    broker = start_mosquitto(run_dir, extra="max_queued_messages 0\nmax_inflight_messages 0\n")
    workers = None
    try:
        data = workload.readings(rows, rows_per_message=per_message)
        publisher = Blast(broker.port, "json", per_message, rows, qos=1, rate=rate)
        workers = Workers(run_dir, broker.port, count)
        workers.wait_ready(broker.port)
        receiver = mqtt_wire.Receiver(HOST, broker.port, ["bench-out/#"], client_id=f"bench-out-{count}")
        publisher.ready()
        cpu_start = workers.cpu_seconds()
        start_ns = time.time_ns()
        publisher.go()
        expected = workload.expected_hot(data)
        decoded_ns = _until_decoded(workers, receiver, rows, expected)
        cpu = workers.cpu_seconds() - cpu_start
        receiver.wait_for(expected, timeout=10)
        time.sleep(0.3)  # a duplicate would arrive now
        per_worker = workers.rows()
        seqs = [json.loads(payload)["seq"] for _, _, payload in receiver.messages]
        receiver.close()
        sent = publisher.finish()
        seconds = ((decoded_ns or time.time_ns()) - start_ns) / 1e9
        last = receiver.messages[-1][0] if receiver.messages else time.time_ns()
        problems = _losses(per_worker, rows, seqs, expected)
        result = {"workers": count, "rows": rows, "messages": data.messages, "seconds": seconds,
                  "rows_per_s": rows / seconds, "msgs_per_s": data.messages / seconds,
                  "results_seconds": (last - start_ns) / 1e9, "rows_per_worker": per_worker,
                  "cores_used": cpu / seconds if seconds else None,
                  "zero_loss": not problems, "problems": problems}
        if rate:  # how long after the last message was written the workers had decoded everything
            result.update(offered_msgs_per_s=rate, send_seconds=sent.get("send_seconds"),
                          lag_seconds=seconds - sent["send_seconds"] if sent.get("send_seconds") else None)
        else:
            progress(f"{count} worker(s): {result['rows_per_s']:,.0f} rows/s, zero loss: {result['zero_loss']}")
        return result
    finally:
        if workers is not None:
            workers.stop()
        broker.stop()


def _until_decoded(workers: Workers, receiver: mqtt_wire.Receiver, rows: int, expected: int) -> int | None:
    """The time (ns) at which every row was decoded, once the results are in too; None after a stall."""
    decoded_ns, seen, changed = None, -1.0, time.monotonic()
    while True:
        time.sleep(0.1)
        done = sum(workers.rows())
        if decoded_ns is None and done >= rows:
            decoded_ns = time.time_ns()
        if decoded_ns is not None and len(receiver.messages) >= expected:
            return decoded_ns
        if done != seen:
            seen, changed = done, time.monotonic()
        elif time.monotonic() - changed > STALL_SECONDS:
            return decoded_ns


def _losses(per_worker: list[float], rows: int, seqs: list[int], expected: int) -> list[str]:
    problems = []
    if sum(per_worker) != rows:
        problems.append(f"{sum(per_worker):.0f} of {rows} rows decoded")
    if len(seqs) != len(set(seqs)):
        problems.append(f"{len(seqs) - len(set(seqs))} duplicate results")
    if len(set(seqs)) != expected:
        problems.append(f"{len(set(seqs))} of {expected} results")
    return problems


def sustained(count: int, per_message: int, start_rate: float, seconds: float, directory: Path,
              progress=print, step: float = STEP, trials: int = TRIALS, refine: int = REFINE) -> dict:
    """The highest paced rate (messages/s) that `count` workers keep up with: `seconds` of load at QoS 1, every
    row decoded within `LAG_BOUND` s of the last message written, zero loss, the publisher on pace. From
    `start_rate` up by `step` until a rate fails (or `trials` rates passed), then `refine` bisections
    (geometric) between the highest that passed and the lowest that failed."""
    tried: list[dict] = []
    best, failed, rate = None, None, start_rate
    for _ in range(trials):
        if _trial(count, per_message, rate, seconds, directory, progress, tried):
            best, rate = rate, rate * step
        else:
            failed = rate
            break
    for _ in range(refine if best and failed else 0):
        rate = round((best * failed) ** 0.5, -1)
        if _trial(count, per_message, rate, seconds, directory, progress, tried):
            best = rate
        else:
            failed = rate
    return {"workers": count, "per_message": per_message, "highest_msgs_per_s": best,
            "highest_rows_per_s": best * per_message if best else None, "trials": tried,
            "zero_loss": all(t["zero_loss"] for t in tried)}


def _trial(count: int, per_message: int, rate: float, seconds: float, directory: Path, progress,
           tried: list[dict]) -> bool:
    """One paced run at `rate`, appended to `tried`: did the workers keep up?"""
    run = measure(count, int(rate * seconds) * per_message, per_message, directory, progress, rate=rate)
    on_pace = run["send_seconds"] is not None and run["send_seconds"] <= seconds * 1.1 + 0.5
    run["publisher_on_pace"] = on_pace
    run["kept_up"] = bool(run["zero_loss"] and on_pace and run["lag_seconds"] is not None
                          and run["lag_seconds"] <= LAG_BOUND)
    tried.append(run)
    progress(f"{count} worker(s) at {rate:,.0f} msg/s x {per_message}: lag {run['lag_seconds'] or 0:.2f}s, "
             f"zero loss {run['zero_loss']}, publisher on pace {on_pace}: "
             f"{'kept up' if run['kept_up'] else 'fell behind'}")
    return run["kept_up"]


def run(rows: int, single_messages: int, progress=print, directory: Path | None = None,
        sustained_seconds: float = SUSTAINED_SECONDS) -> dict:
    """Both workloads, 1 then 2 workers each: arrays of 100 readings (`rows` readings, CPU-bound) and one
    reading per message (`single_messages`, where the broker's per-message work is what limits); a burst
    each, then (unless `sustained_seconds` is 0) the highest sustained rate of each, both worker counts on
    one ladder of rates from 0.8x the 1-worker burst rate."""
    import tempfile

    workloads = []
    with tempfile.TemporaryDirectory(prefix="arros-workers-") as tmp:
        base = directory or Path(tmp)
        for name, per_message, size in (("arrays of 100 readings", PER_MESSAGE, rows),
                                        ("one reading per message", 1, single_messages)):
            runs = [measure(count, size, per_message, base, progress) for count in (1, 2)]
            speedup = runs[1]["rows_per_s"] / runs[0]["rows_per_s"] if runs[0]["rows_per_s"] else None
            result = {"name": name, "per_message": per_message, "runs": runs, "speedup_2_vs_1": speedup}
            if sustained_seconds:
                start = max(100.0, round(0.8 * runs[0]["msgs_per_s"], -2))
                found = [sustained(count, per_message, start, sustained_seconds, base, progress) for count in (1, 2)]
                one, two = (f["highest_msgs_per_s"] for f in found)
                result.update(sustained=found, sustained_speedup_2_vs_1=two / one if one and two else None)
            workloads.append(result)
    return {"workloads": workloads, "cpus": os.cpu_count(), "sustained_seconds": sustained_seconds,
            "lag_bound": LAG_BOUND}


def all_runs(result: dict) -> list[dict]:
    """Every run, bursts and sustained trials: each must have lost nothing."""
    return [r for w in result["workloads"]
            for r in w["runs"] + [t for found in w.get("sustained", []) for t in found["trials"]]]


def print_table(result: dict) -> None:
    for workload_result in result["workloads"]:
        print(f"{workload_result['name']}:")
        _print_runs(workload_result)
        if workload_result["speedup_2_vs_1"]:
            print(f"2 workers vs 1: {workload_result['speedup_2_vs_1']:.2f}x on {result['cpus']} CPUs")
        for found in workload_result.get("sustained", []):
            best = found["highest_msgs_per_s"]
            tried = ", ".join(f"{t['offered_msgs_per_s']:,.0f}{_why_not(t)}" for t in found["trials"])
            highest = f"{best:,.0f} msg/s = {found['highest_rows_per_s']:,.0f} rows/s" if best else "none"
            print(f"  sustained, {found['workers']} worker(s): {highest} (tried {tried}; "
                  f"{result['sustained_seconds']:.0f} s each, lag <= {result['lag_bound']:.0f} s)")
        if workload_result.get("sustained_speedup_2_vs_1"):
            print(f"sustained, 2 workers vs 1: {workload_result['sustained_speedup_2_vs_1']:.2f}x")


def _why_not(trial: dict) -> str:
    """Why a sustained trial failed, for the table: the workers, or the publisher (or broker) itself."""
    if trial["kept_up"]:
        return ""
    if not trial["zero_loss"]:
        return " (LOSS)"
    return " (publisher fell behind)" if not trial["publisher_on_pace"] else f" (lag {trial['lag_seconds']:.1f} s)"


def _print_runs(result: dict) -> None:
    print(f"{'workers':>8}{'rows/s':>12}{'msg/s':>10}{'seconds':>9}{'cores':>7}  rows per worker            "
          "zero loss")
    for r in result["runs"]:
        split = ", ".join(f"{n:,.0f}" for n in r["rows_per_worker"])
        print(f"{r['workers']:>8}{r['rows_per_s']:>12,.0f}{r['msgs_per_s']:>10,.0f}{r['seconds']:>9.2f}"
              f"{r['cores_used']:>7.2f}  "
              f"{split:<26} {'yes' if r['zero_loss'] else 'NO: ' + '; '.join(r['problems'])}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/workers.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="readings per run of arrays (100 per message)")
    parser.add_argument("--messages", type=int, default=200_000, help="messages per run of one reading each")
    parser.add_argument("--sustained-seconds", type=float, default=SUSTAINED_SECONDS,
                        help="seconds of paced load per rate of the sustained search (0: bursts only)")
    parser.add_argument("--json", type=Path, help="also write the result as JSON")
    args = parser.parse_args()
    result = run(args.rows, args.messages, sustained_seconds=args.sustained_seconds)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if all(r["zero_loss"] for r in all_runs(result)) else 1


if __name__ == "__main__":
    sys.exit(main())
