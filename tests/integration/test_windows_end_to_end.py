"""A windowed subscription on a real Mosquitto: devices publish with bounded disorder, Arros emits each
window once (the last ones when the stream goes idle), late rows go to `late_output`; the expected
windows come from DuckDB over the same input."""

from __future__ import annotations

import datetime as dt
import random

import duckdb
import msgpack
import orjson
import pyarrow as pa

from tests.support import Collector, publish_all, running_service, unique

BASE = 1_764_000_000_000
SQL = ("SELECT tumble(ts, INTERVAL '2 seconds') AS window, machine, count(*) AS n, avg(temp) AS avg_temp, "
       "max(temp) AS max_temp FROM telemetry GROUP BY window, machine")


def config(prefix: str) -> str:
    return f"""
[engine]
batch_max_rows = 500
batch_max_delay = "20ms"

[streams.telemetry]
topic = "{prefix}/f/{{machine}}"
schema = {{ ts = "timestamp[ms]", temp = "float64" }}
event_time = "ts"
watermark = "1s"
idle_timeout = "2s"

[subscriptions.win]
sql = "{SQL}"
output = "{prefix}/win/{{machine}}"
late_output = "{prefix}/late/{{machine}}"

[subscriptions.win_mp]
sql = "{SQL}"
output = "{prefix}/win_mp/{{machine}}"
format = "msgpack"
timestamps = "epoch_ms"
"""


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def expected_windows(rows: list[dict]) -> list[dict]:
    con = duckdb.connect()
    con.register("input", pa.Table.from_pylist(rows))
    return con.sql("SELECT ms // 2000 * 2000 AS start_ms, machine, count(*) AS n, avg(temp) AS avg_temp, "
                   "max(temp) AS max_temp FROM input GROUP BY ALL").to_arrow_table().to_pylist()


def key(row: dict) -> tuple:
    return row["machine"], row["start_ms"]


def test_windows_over_mosquitto_match_duckdb(mosquitto, tmp_path):
    prefix = unique()
    rng = random.Random(11)
    rows = [{"ms": BASE + i * 5, "machine": f"m{rng.randrange(5)}", "temp": round(rng.uniform(20, 90), 2)}
            for i in range(3000)]
    arrival = sorted(rows, key=lambda r: r["ms"] + rng.uniform(-100, 100))  # within the 1 s watermark
    late = [{"ms": BASE + 100 + i, "machine": "m1", "temp": 1.0} for i in range(20)]  # window [0, 2 s) is long closed
    expected = {key(r): r for r in expected_windows(rows)}
    with running_service(config(prefix), tmp_path, mosquitto.url) as service:
        out = Collector(mosquitto.port, [f"{prefix}/win/#"])
        out_mp = Collector(mosquitto.port, [f"{prefix}/win_mp/#"])
        late_out = Collector(mosquitto.port, [f"{prefix}/late/#"])
        publish_all(mosquitto.port, [(f"{prefix}/f/{r['machine']}", orjson.dumps({"ts": r["ms"], "temp": r["temp"]}))
                                     for r in arrival + late])
        messages = out.wait_for(len(expected), timeout=45)  # the last windows close on the idle timeout
        messages_mp = out_mp.wait_for(len(expected), timeout=20)
        late_messages = late_out.wait_for(len(late), timeout=20)
        for collector in (out, out_mp, late_out):
            collector.close()
        stats = service.engine.subscriptions["win"].stats
    got = {}
    for topic, payload in messages:
        row = orjson.loads(payload)
        assert topic == f"{prefix}/win/{row['machine']}"
        start = row["window"]["start"]
        assert start.endswith("Z") and row["window"]["end"].endswith("Z")
        start_ms = round(dt.datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() * 1000)
        assert row["window"]["end"] == iso(start_ms + 2000)
        assert (row["machine"], start_ms) not in got, "each window is emitted once"
        got[(row["machine"], start_ms)] = row
    assert set(got) == set(expected)
    for k, want in expected.items():
        assert got[k]["n"] == want["n"] and got[k]["max_temp"] == want["max_temp"]
        assert abs(got[k]["avg_temp"] - want["avg_temp"]) < 1e-9
    mp = [msgpack.unpackb(p) for _, p in messages_mp]
    assert sorted((r["machine"], r["window"]["start"], r["window"]["end"] - r["window"]["start"], r["n"]) for r in mp) \
        == sorted((m, s, 2000, expected[(m, s)]["n"]) for m, s in expected)
    assert stats.late_rows == len(late) and len(late_messages) == len(late)
    late_rows = [orjson.loads(p) for _, p in late_messages]
    assert {r["temp"] for r in late_rows} == {1.0} and all(r["ts"].endswith("Z") for r in late_rows)
    assert all(t == f"{prefix}/late/m1" for t, _ in late_messages)
