"""Overload: offered twice what the results path carries for 30 s, Arros says it lags while it lasts,
keeps its memory bounded (results past `output_memory` spill to disk), loses nothing, and is back to
`ok` once the backlog drained.

The results path is the bottleneck on purpose: ten per-row subscriptions on one stream, so each input
message makes ten QoS 1 results. Its capacity is measured first in the same run (a burst, as fast as the
results leave), then the fleet offers twice that for 30 s. `mosquitto_sub` receives the results (C, far
faster than Arros), DuckDB computes the expected ones from the raw archive.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import orjson
import pytest

from tests.support import HOST, ROOT, Collector, start_arros, stop_process, unique, wait_for_log

FAN_OUT = 10  # results per input message
OVERLOAD_SECONDS = 30


def config(directory: Path, port: int, prefix: str) -> str:
    subscriptions = "".join(f"""
[subscriptions.s{i}]
sql = "SELECT phase, machine, seq, {i} AS sub, temp * {i} AS v FROM telemetry"
output = "{prefix}/out/{i}/{{machine}}"
""" for i in range(1, FAN_OUT + 1))
    return f"""
[broker]
url = "mqtt://127.0.0.1:{port}"
client_id = "{unique('arros-overload-')}"

[engine]
state_dir = "{directory / 'state'}"

[archive]
dir = "{directory / 'archive'}"

[durability]
output_memory = "4MiB"           # the backlog goes to disk past this: memory stays bounded

[control]
prefix = "{prefix}/arros"
status_interval = "1s"
lagging_after = "1s"

[streams.telemetry]
topic = "{prefix}/{{phase}}/{{machine}}/telemetry"
schema = {{ ts = "timestamp[ms]", seq = "int64", temp = "float64" }}
archive = true
{subscriptions}"""


class ResultFile:
    """`mosquitto_sub` writing every result payload to a file, one per line."""

    def __init__(self, port: int, topic: str, path: Path) -> None:
        self.path = path
        self.handle = path.open("wb")
        self.process = subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(port), "-q", "1", "-t", topic,
                                         "-F", "%p", "-i", unique("sub-")], stdout=self.handle)

    def lines(self) -> int:
        self.handle.flush()
        with self.path.open("rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))

    def wait_for(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while (seen := self.lines()) < count and time.monotonic() < deadline:
            time.sleep(0.25)
        return seen

    def close(self) -> None:
        stop_process(self.process)
        self.handle.close()


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_mb, self._done = pid, 0.0, threading.Event()
        self.start()

    def run(self) -> None:
        while not self._done.wait(0.5):
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            kb = int(next(line for line in text.splitlines() if line.startswith("VmRSS")).split()[1])
            self.peak_mb = max(self.peak_mb, kb / 1024)

    def stop(self) -> float:
        self._done.set()
        self.join(2)
        return self.peak_mb


def fleet(port: int, prefix: str, count: int, rate: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.peers.wire_publisher", "--port", str(port), "--prefix",
                             prefix, "--count", str(count), "--rate", str(rate)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float) -> None:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    print(output.strip().splitlines()[-1])


def measure_capacity(results: ResultFile, port: int, prefix: str) -> float:
    """Results per second while a burst of 3,000 inputs drains (between a tenth and nine tenths of it)."""
    burst = 3_000
    total = (burst + 1) * FAN_OUT  # the publisher adds one sentinel row
    finish(fleet(port, f"{prefix}/cal", burst, 100_000), 60)
    marks = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (seen := results.lines()) < total:
        for share in (0.1, 0.9):
            if share not in marks and seen >= total * share:
                marks[share] = (time.monotonic(), seen)
        time.sleep(0.05)
    assert results.lines() == total, "the calibration burst did not arrive whole"
    (t0, n0), (t1, n1) = marks[0.1], marks.get(0.9, (time.monotonic(), total))
    return (n1 - n0) / max(t1 - t0, 0.05)


@pytest.mark.slow
def test_twice_the_results_capacity_for_30s_lags_visibly_loses_nothing_and_recovers(tmp_path, mosquitto):
    prefix = unique("ov")
    path = tmp_path / "arros.toml"
    path.write_text(config(tmp_path, mosquitto.port, prefix))
    health = Collector(mosquitto.port, [f"{prefix}/arros/health"], qos=0)
    results = ResultFile(mosquitto.port, f"{prefix}/out/#", tmp_path / "results.jsonl")
    arros = start_arros("run", "-c", str(path), log=tmp_path / "arros.log")
    wait_for_log(tmp_path / "arros.log", "subscribed to", process=arros)
    try:
        capacity = measure_capacity(results, mosquitto.port, prefix)
        rate = max(100, int(2 * capacity / FAN_OUT))  # inputs per second: twice the results path
        before = len(health.messages)
        rss = RssSampler(arros.pid)
        finish(fleet(mosquitto.port, f"{prefix}/load", rate * OVERLOAD_SECONDS, rate), OVERLOAD_SECONDS + 60)
        expected = (3_001 + rate * OVERLOAD_SECONDS + 1) * FAN_OUT
        seen = results.wait_for(expected, timeout=4 * OVERLOAD_SECONDS)
        peak_mb = rss.stop()
        recovered = wait_for_status(health, before, "ok", timeout=10)
        during = [orjson.loads(payload) for _, payload in health.messages[before:]]
    finally:
        stop_process(arros)
        results.close()
        health.close()
    lags = [state["lag"]["seconds"] for state in during]
    print(f"capacity {capacity:,.0f} results/s; offered {rate:,} inputs/s ({rate * FAN_OUT:,} results/s) for "
          f"{OVERLOAD_SECONDS}s; max lag {max(lags):.1f}s; peak RSS {peak_mb:.0f} MB; results {seen:,}/{expected:,}")
    assert seen == expected, "results lost or repeated"
    assert any(state["status"] == "lagging" for state in during) and max(lags) >= 2.0
    assert recovered, "health did not return to ok after the backlog drained"
    assert peak_mb < 500, f"memory grew with the backlog: {peak_mb:.0f} MB"
    check_results(tmp_path)


def wait_for_status(health: Collector, start: int, status: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(orjson.loads(payload)["status"] == status for _, payload in health.messages[start:][-3:]):
            return True
        time.sleep(0.2)
    return False


def check_results(directory: Path) -> None:
    """Every result equals DuckDB's over the archived input rows, none missing, none extra."""
    con = duckdb.connect()
    archive = directory / "archive" / "streams" / "telemetry"
    con.execute(f"CREATE VIEW input AS SELECT * FROM read_parquet('{archive}/**/*.parquet')")
    con.execute(f"CREATE VIEW got AS SELECT * FROM read_json('{directory / 'results.jsonl'}', "
                "format = 'newline_delimited')")
    con.execute(f"""CREATE VIEW want AS SELECT phase, machine, seq, i AS sub, temp * i AS v
                    FROM input, range(1, {FAN_OUT + 1}) s(i)""")
    columns = "phase, machine, seq, sub, v"
    for a, b in (("want", "got"), ("got", "want")):
        query = f"SELECT {columns} FROM {a} EXCEPT ALL SELECT {columns} FROM {b}"
        assert con.execute(f"SELECT count(*) FROM ({query})").fetchone()[0] == 0, query
