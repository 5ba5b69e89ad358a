"""The benchmarks' telemetry: seeded readings, their payloads, and what a correct engine must output.

Reading i is machine `(i // rows_per_message) % machines` at event time START_MS + i ms, in order,
so the 10 s tumbling windows per machine are known in advance. Payloads are ~100 B JSON objects like a
device would send (or the same object in msgpack; or arrays of 100 readings per message, in either). The
expected results are computed here with pyarrow, independently of DataFusion.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import msgpack
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

START_MS = 1_764_000_000_000  # a multiple of 10 s
WINDOW_MS = 10_000
HOT = 99.0  # the filter subscription's threshold: ~1.25% of readings
SCHEMA = {"ts": "timestamp[ms]", "temp": "float64", "rpm": "int64", "ok": "bool", "status": "string",
          "seq": "int64"}
FILTER_SQL = f"SELECT machine, seq, temp FROM telemetry WHERE temp > {HOT}"
WINDOW_SQL = ("SELECT tumble(ts, INTERVAL '10 seconds') AS window, machine, count(*) AS n, avg(temp) AS avg_temp, "
              "max(temp) AS max_temp, min(temp) AS min_temp FROM telemetry GROUP BY window, machine")
ROWS_SQL = "SELECT machine, ts, seq FROM telemetry"  # one result per input row
TOPIC_PATTERN = "bench/{line}/{machine}/telemetry"
PAYLOADS = {"json": ("json", 1), "msgpack": ("msgpack", 1), "json-batch100": ("json", 100),
            "msgpack-batch100": ("msgpack", 100)}


def topic(machine: int) -> bytes:
    return b"bench/line1/m%d/telemetry" % machine


@dataclass
class Readings:
    ts: np.ndarray  # epoch ms
    temp: np.ndarray
    rpm: np.ndarray
    machine: np.ndarray  # machine number per reading
    rows_per_message: int

    @property
    def rows(self) -> int:
        return len(self.ts)

    @property
    def messages(self) -> int:
        return math.ceil(self.rows / self.rows_per_message)

    def table(self) -> pa.Table:
        names = pa.array([f"m{i}" for i in range(int(self.machine.max()) + 1)])
        return pa.table({"ts": self.ts, "temp": self.temp, "machine": names.take(pa.array(self.machine))})


def readings(n: int, machines: int = 100, rows_per_message: int = 1, seed: int = 1) -> Readings:
    """1 ms of event time between readings, more for short runs so they still fill a 10 s window (its
    last window then closes soon after the load stops)."""
    rng = np.random.default_rng(seed)
    index = np.arange(n, dtype=np.int64)
    step = WINDOW_MS // n if 0 < n < WINDOW_MS else 1
    return Readings(ts=START_MS + index * step, temp=np.round(rng.uniform(20, 100, n), 2), rpm=rng.integers(0, 8000, n),
                    machine=(index // rows_per_message) % machines, rows_per_message=rows_per_message)


def payloads(data: Readings, fmt: str) -> list[tuple[bytes, bytes]]:
    """(topic, payload) per message."""
    ts, temp, rpm = data.ts.tolist(), data.temp.tolist(), data.rpm.tolist()
    objects = [{"ts": t, "temp": v, "rpm": r, "ok": True, "status": "run", "seq": i}
               for i, (t, v, r) in enumerate(zip(ts, temp, rpm, strict=True))]
    dump = msgpack.packb if fmt == "msgpack" else orjson.dumps
    per = data.rows_per_message
    machines = data.machine[::per].tolist()
    if per == 1:
        return [(topic(m), dump(o)) for m, o in zip(machines, objects, strict=True)]
    return [(topic(m), dump(objects[i * per:(i + 1) * per])) for i, m in enumerate(machines)]


def expected_hot(data: Readings) -> int:
    return int((data.temp > HOT).sum())


def expected_windows(data: Readings) -> pa.Table:
    table = data.table()
    start = pc.multiply(pc.divide(pa.array(data.ts), WINDOW_MS), WINDOW_MS)
    table = table.append_column("start_ms", start)
    return table.group_by(["start_ms", "machine"]).aggregate(
        [("temp", "count"), ("temp", "mean"), ("temp", "max"), ("temp", "min")]
    ).rename_columns(["start_ms", "machine", "n", "avg_temp", "max_temp", "min_temp"])


def check_windows(received: list[bytes], expected: pa.Table) -> str | None:
    """None when the window messages are exactly the expected windows; else the first difference."""
    got: dict[tuple[int, str], dict] = {}
    for payload in received:
        row = orjson.loads(payload)
        start = dt.datetime.fromisoformat(row["window"]["start"].replace("Z", "+00:00"))
        key = (round(start.timestamp() * 1000), row["machine"])
        if key in got:
            return f"window {key} published twice"
        got[key] = row
    if len(got) != expected.num_rows:
        return f"{len(got)} windows published, {expected.num_rows} expected"
    for want in expected.to_pylist():
        row = got.get((want["start_ms"], want["machine"]))
        if row is None:
            return f"window {want['start_ms']} {want['machine']} missing"
        for column in ("n", "avg_temp", "max_temp", "min_temp"):
            if not math.isclose(row[column], want[column], rel_tol=1e-9, abs_tol=1e-9):
                return f"window {want['start_ms']} {want['machine']}: {column} {row[column]} != {want[column]}"
    return None
