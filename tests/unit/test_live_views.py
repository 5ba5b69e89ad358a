"""The live views (Flight SQL's `live.*` and `system.*`, the web console) against DuckDB over the same
input: latest row per group key, last closed window per key, the most recent rows within their bounds."""

from __future__ import annotations

import random

import duckdb
import pyarrow as pa

from arros_mqtt.config import LiveConfig
from arros_mqtt.decode.stream_decoder import BadMessage
from arros_mqtt.live import LiveSources, LiveViews
from arros_mqtt.live.recent_rows import RecentRows
from tests.engine_support import batch, subscribe, telemetry_engine

MACHINES = ["a", "b", "c", None]


def views_of(engine, config: LiveConfig | None = None) -> LiveViews:
    return LiveViews(config or LiveConfig(), LiveSources(
        streams=lambda: engine.streams, stream_stats=dict, subscriptions=lambda: engine.subscriptions,
        paused=lambda: engine.paused))


def feed(engine, views: LiveViews, steps: int, seed: int = 1) -> pa.Table:
    """Random micro-batches through the engine into the views; every input row, in order."""
    rng = random.Random(seed)
    tables = []
    for step in range(steps):
        n = rng.randrange(1, 30)
        table = batch(engine, [step * 1000 + i * 10 for i in range(n)], [rng.choice(MACHINES) for _ in range(n)],
                      [round(rng.uniform(0, 100), 1) for _ in range(n)])
        tables.append(table)
        views.add_stream_rows("telemetry", table)
        for result in engine.process("telemetry", table):
            views.add_result(result)
    return pa.concat_tables(tables)


def rows(table: pa.Table, key: str) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: (r[key] is None, r[key] or ""))


def test_running_aggregate_view_is_the_latest_row_per_key():
    engine = telemetry_engine()
    subscribe(engine, "SELECT machine AS m, count(*) AS n, max(temp) AS hi FROM telemetry GROUP BY machine", "r")
    views = views_of(engine)
    con = duckdb.connect()
    con.register("seen", feed(engine, views, 40))
    expected = con.sql("SELECT machine AS m, count(*) AS n, max(temp) AS hi FROM seen GROUP BY machine")
    assert rows(views.subscription("r"), "m") == rows(expected.to_arrow_table(), "m")


def test_window_view_is_the_last_closed_window_per_key():
    engine = telemetry_engine(watermark="0s")
    subscribe(engine, "SELECT tumble(ts, INTERVAL '5 seconds') AS w, machine, count(*) AS n FROM telemetry "
                      "GROUP BY w, machine", "w")
    views = views_of(engine)
    seen = feed(engine, views, 40)
    watermark_ms = max(seen["ts"].cast(pa.int64()).to_pylist())  # watermark 0s: windows ending by it closed
    con = duckdb.connect()
    con.register("seen", seen)
    expected = con.sql(f"""
        WITH win AS (SELECT machine, (epoch_ms(ts::TIMESTAMP) // 5000) * 5000 AS ws, count(*) AS n FROM seen
                     GROUP BY ALL HAVING ws + 5000 <= {watermark_ms})
        SELECT machine, n FROM win QUALIFY ws = max(ws) OVER (PARTITION BY machine)""").fetchall()
    got = [(r["machine"], r["n"]) for r in views.subscription("w").to_pylist()]
    assert sorted(got, key=str) == sorted(expected, key=str)


def test_per_row_view_keeps_the_most_recent_rows_in_order():
    engine = telemetry_engine()
    subscribe(engine, "SELECT machine, temp FROM telemetry WHERE temp > 50", "hot")
    views = views_of(engine, LiveConfig(result_rows=25, max_rows=40))
    seen = feed(engine, views, 30)
    con = duckdb.connect()
    con.register("seen", seen)
    expected = con.sql("SELECT machine, temp FROM seen WHERE temp > 50").fetchall()
    assert [(r["machine"], r["temp"]) for r in views.subscription("hot").to_pylist()] == expected[-25:]
    stream = views.stream("telemetry")
    assert stream.num_rows == 40 and stream.to_pylist() == seen.slice(seen.num_rows - 40).to_pylist()


def test_recent_rows_stay_within_their_byte_bound():
    kept = RecentRows(max_rows=1_000_000, max_bytes=10_000)
    for i in range(100):
        kept.add(pa.table({"x": pa.array(range(i * 100, i * 100 + 100), pa.int64())}))  # 800 bytes each
    table = kept.table()
    assert table.nbytes <= 10_000 and table["x"][-1].as_py() == 9_999
    assert table["x"].to_pylist() == list(range(10_000 - table.num_rows, 10_000))


def test_a_replaced_subscription_starts_with_an_empty_view():
    engine = telemetry_engine()
    subscribe(engine, "SELECT machine, count(*) AS n FROM telemetry GROUP BY machine", "r")
    views = views_of(engine)
    feed(engine, views, 5)
    assert views.subscription("r").num_rows > 0
    engine.remove("r")
    subscribe(engine, "SELECT machine, count(*) AS n FROM telemetry GROUP BY machine", "r")
    assert views.subscription("r").num_rows == 0
    assert views.subscription_names() == ["r"]


def test_system_tables_and_dead_letters():
    engine = telemetry_engine()
    subscribe(engine, "SELECT machine, temp FROM telemetry WHERE temp > 50", "hot")
    engine.pause("hot", "operator asked")
    views = views_of(engine, LiveConfig(dead_letters=3))
    before = views.version()
    views.add_dead_letters("telemetry", [BadMessage(f"f/m{i}", b"{bad", 1_800_000_000_000 + i, f"bad {i}")
                                         for i in range(5)])
    assert views.version() > before
    letters = views.system_dead_letters().to_pylist()
    assert [r["error"] for r in letters] == ["bad 2", "bad 3", "bad 4"] and letters[0]["payload"] == b"{bad"
    subs = views.system_subscriptions().to_pylist()
    assert subs[0]["name"] == "hot" and subs[0]["status"] == "paused" and subs[0]["kind"] == "per_row"
    streams = views.system_streams().to_pylist()
    assert streams[0]["name"] == "telemetry" and streams[0]["topic"] == "f/{machine}"


def test_keys_selected_by_name_beside_expressions_still_give_one_row_per_key():
    engine = telemetry_engine()
    subscribe(engine, "SELECT machine, round(avg(temp), 1) AS a, count(*) AS n FROM telemetry GROUP BY machine", "r")
    subscribe(engine, "SELECT upper(machine) AS m, count(*) AS n FROM telemetry GROUP BY upper(machine)", "u")
    views = views_of(engine)
    con = duckdb.connect()
    con.register("seen", feed(engine, views, 30))
    expected = con.execute("SELECT machine, round(avg(temp), 1), count(*) FROM seen GROUP BY machine").fetchall()
    got = [(r["machine"], r["a"], r["n"]) for r in views.subscription("r").to_pylist()]
    assert sorted(got, key=str) == sorted(expected, key=str)
    assert views.subscription("u").num_rows >= 4  # its key is not a result column: recent rows instead
