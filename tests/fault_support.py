"""Fault-test helpers: a fleet publisher subprocess, `arros run` subprocesses, and the DuckDB checks of
"nothing lost, nothing twice" over the raw archive and the collected window results."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson
import paho.mqtt.client as mqtt

from tests.support import HOST, ROOT, Collector, new_client, start_arros, stop_process, unique, wait_for_log

WINDOW_SQL = ("SELECT tumble(ts, INTERVAL '1 second') AS window, machine, count(*) AS n, sum(temp) AS total "
              "FROM telemetry GROUP BY window, machine")


@dataclass
class FaultRun:
    """One scenario's files, config and topics."""

    directory: Path
    port: int
    prefix: str
    count: int
    rate: int
    machines: int = 10
    sync: str = "batch"

    @property
    def archive(self) -> Path:
        return self.directory / "archive"

    @property
    def config(self) -> Path:
        path = self.directory / "arros.toml"
        if not path.exists():
            path.write_text(f"""
[broker]
url = "mqtt://127.0.0.1:{self.port}"
client_id = "{unique('arros-fault-')}"

[engine]
state_dir = "{self.directory / 'state'}"
batch_max_delay = "20ms"

[archive]
dir = "{self.archive}"
roll_interval = "2s"

[durability]
sync = "{self.sync}"
checkpoint_interval = "2s"
shutdown_timeout = "20s"

[control]
prefix = "{self.prefix}/arros"

[streams.telemetry]
topic = "{self.prefix}/{{machine}}/telemetry"
schema = {{ ts = "timestamp[ms]", seq = "int64", temp = "float64" }}
event_time = "ts"
watermark = "2s"
idle_timeout = "0s"
qos = 1
archive = true

[subscriptions.per_second]  # no qos: windows default to 2 (exactly once) with the log on
sql = "{WINDOW_SQL}"
output = "{self.prefix}/out/{{machine}}"
""")
        return path

    def start_arros(self, name: str) -> subprocess.Popen:
        process = start_arros("run", "-c", str(self.config), log=self.directory / f"{name}.log")
        wait_for_log(self.directory / f"{name}.log", "subscribed to", process=process)
        return process

    def start_publisher(self, wire: bool = True) -> subprocess.Popen:
        """The fleet: pre-built packets on a raw socket (10k msg/s and more), or with `wire=False` paho,
        which reconnects and re-sends across a broker restart."""
        module = "tests.peers.wire_publisher" if wire else "tests.peers.telemetry_publisher"
        return subprocess.Popen(
            [sys.executable, "-m", module, "--port", str(self.port), "--prefix",
             self.prefix, "--count", str(self.count), "--rate", str(self.rate), "--machines", str(self.machines)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def collector(self) -> Collector:
        return DurableCollector(self.port, [f"{self.prefix}/out/#"], qos=2)  # QoS 2 both hops: once


class DurableCollector(Collector):
    """A collector with a persistent session (MQTT 3.1.1, clean_session false): it survives a broker
    restart with its subscription and gets what was published meanwhile.

    Mosquitto 2.0.11, restarted with `persistence true`, may send again a QoS 2 message whose delivery
    to this subscriber it had completed just before stopping: the same packet id, with DUP set, as a
    PUBLISH (its restored state went back to before our PUBREC); paho then delivers it a second time.
    That copy is the broker's retransmission on its own session with us, not a second publication (a
    message Arros sent twice would reach us under a new packet id), so it is counted in `redelivered`
    and left out of `messages`.
    """

    def __post_init__(self) -> None:
        import threading

        self.redelivered = 0
        self._delivered: dict[int, tuple[str, bytes]] = {}  # packet id -> the last message under it
        self._lock = threading.Condition()
        self._subscribed = threading.Event()
        self.client = new_client(self.port, protocol=mqtt.MQTTv311, clean_session=False)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.reconnect_delay_set(0.1, 1.0)
        self.client.connect(HOST, self.port)
        self.client.subscribe([(t, self.qos) for t in self.topics])
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("collector did not get SUBACK")

    def _on_message(self, _client, _userdata, message) -> None:
        with self._lock:
            key = (message.topic, message.payload)
            if message.dup and self._delivered.get(message.mid) == key:
                self.redelivered += 1
                return
            self._delivered[message.mid] = key
            self.messages.append(key)
            self._lock.notify_all()


def finish_publisher(publisher: subprocess.Popen, timeout: float = 180.0) -> int:
    """Wait for the publisher; returns the start_ms it used."""
    output, _ = publisher.communicate(timeout=timeout)
    assert publisher.returncode == 0, output
    print(output.strip().splitlines()[-1])
    return int(output.split("start_ms ", 1)[1].split()[0])


def dropped_duplicates(run: FaultRun) -> int:
    """Redelivered copies of logged messages that the runs dropped (from their stop or replay logs)."""
    total = 0
    for path in run.directory.glob("run-*.log"):
        counts = [int(line.split(" redelivered copies")[0].split()[-1])
                  for line in path.read_text(errors="replace").splitlines()
                  if "redelivered copies of logged messages dropped" in line]
        total += max(counts, default=0)
    return total


def expected_windows(run: FaultRun, start_ms: int) -> dict[tuple[int, str], tuple[int, float]]:
    """DuckDB's windows over the full input: (window start ms, machine) -> (count, sum of temp)."""
    rows = duckdb.sql(f"""
        WITH input AS (
            SELECT i, 'm' || (i % {run.machines}) AS machine, {start_ms} + (i * 1000) // {run.rate} AS ts,
                   ((i * 7919) % 1000) / 10 AS temp
            FROM range({run.count}) t(i))
        SELECT (ts // 1000) * 1000 AS start, machine, count(*) AS n, sum(temp) AS total
        FROM input GROUP BY start, machine""").fetchall()
    return {(start, machine): (n, total) for start, machine, n, total in rows}


def collected_windows(collector: Collector) -> list[tuple[int, str, int, float]]:
    found = []
    for _topic, payload in list(collector.messages):
        row = orjson.loads(payload)
        found.append((row["window"]["start"], row["machine"], row["n"], row["total"]))
    return found


def wait_for_windows(collector: Collector, expected: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while len(collector.messages) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # a duplicate would show up now


def check_archive(run: FaultRun) -> dict[str, int]:
    """Every published row exactly once in the raw archive; returns the figures."""
    files = f"{run.archive}/streams/telemetry/**/*.parquet"
    counts = duckdb.sql(f"""
        SELECT count(*) AS rows, count(DISTINCT seq) AS distinct_rows,
               count(*) FILTER (WHERE seq >= 0) AS data_rows
        FROM read_parquet('{files}', hive_partitioning = true)""").fetchall()[0]
    rows, distinct, data_rows = counts
    missing = duckdb.sql(f"""
        SELECT count(*) FROM range({run.count}) t(i)
        ANTI JOIN read_parquet('{files}') a ON a.seq = t.i""").fetchall()[0][0]
    figures = {"sent": run.count, "archived": data_rows, "duplicates": rows - distinct, "missing": missing}
    assert figures["missing"] == 0 and figures["duplicates"] == 0 and data_rows == run.count, figures
    return figures


def check_windows(run: FaultRun, collector: Collector, start_ms: int) -> dict[str, int]:
    """Every window equals DuckDB's over the full input, none is missing and none arrived twice (window
    results go exactly once: QoS 2 with the output journal); returns the figures."""
    expected = expected_windows(run, start_ms)
    wait_for_windows(collector, len(expected))
    found = collected_windows(collector)
    seen: dict[tuple[int, str], int] = {}
    wrong = []
    for start, machine, n, total in found:
        key = (_epoch_ms(start), machine)
        seen[key] = seen.get(key, 0) + 1
        want = expected.get(key)
        if want is None or want[0] != n or abs(want[1] - total) > 1e-6 * max(1.0, abs(want[1])):
            wrong.append((key, (n, total), want))
    twice = {key for key, count in seen.items() if count > 1}
    figures = {"windows_expected": len(expected), "windows_received": len(found), "windows_twice": len(twice),
               "window_ends_twice": len({start for start, _ in twice}),
               "windows_missing": len(set(expected) - set(seen)), "windows_wrong": len(wrong),
               "broker_redeliveries": getattr(collector, "redelivered", 0)}
    assert not wrong, wrong[:5]
    assert figures["windows_missing"] == 0 and figures["windows_twice"] == 0, figures
    return figures


def _epoch_ms(value: str | int) -> int:
    if isinstance(value, int):
        return value
    import datetime as dt

    return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def stop_arros(process: subprocess.Popen, timeout: float = 60.0) -> None:
    assert stop_process(process, timeout=timeout) == 0
