"""Equality routing: subscriptions with `column = literal` skip micro-batches that hold no such row, and
output exactly what they would have output running on every batch (checked against DuckDB)."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from arros_mqtt.engine.equality_skip import equality_route
from arros_mqtt.engine.logical_plan import read_plan
from arros_mqtt.engine.readonly_sql import plan
from arros_mqtt.engine.shared_partial import share_partial
from tests.engine_support import batch, subscribe, telemetry_engine

START = 1_800_000_000_000


@pytest.mark.parametrize(("where", "route"), [
    ("machine = 'm3'", ("machine", "m3")),
    ("'m3' = machine AND temp > 50", ("machine", "m3")),
    ("temp > 50 AND rpm = 7", ("rpm", 7)),
    ("machine = 'm3' OR temp > 50", None),  # a disjunction can match any batch
    ("temp = 5.5", None),  # floats are not routed
    ("upper(machine) = 'M3'", None),  # an expression, not the column
    ("machine IS NULL", None),
])
def test_route_of_a_where_clause(where, route):
    engine = telemetry_engine()
    sql = f"SELECT machine, temp FROM telemetry WHERE {where}"
    schema = engine.streams["telemetry"].full_schema()
    assert equality_route(read_plan(plan(engine._ctx, sql).logical_plan()), "telemetry", schema) == route


def test_routed_subscriptions_are_planned_with_their_route():
    engine = telemetry_engine()
    assert subscribe(engine, "SELECT * FROM telemetry WHERE machine = 'm1'", "f").plan.route == ("machine", "m1")
    windowed = subscribe(engine, "SELECT tumble(ts, INTERVAL '10 seconds') AS w, count(*) AS n FROM telemetry "
                         "WHERE machine = 'm1' GROUP BY w", "w")
    assert windowed.plan.route == ("machine", "m1")
    running = subscribe(engine, "SELECT count(*) AS n FROM telemetry WHERE machine = 'm1'", "r")
    assert running.plan.route is None  # a running aggregate without keys emits on every batch: never skipped


def test_many_routed_subscriptions_match_duckdb():
    """30 per-row and 30 windowed subscriptions, one per machine, over batches that each hold only a few
    machines (most subscriptions skip most batches), with late rows: results equal DuckDB's."""
    engine = telemetry_engine(watermark="0s")
    machines = [f"m{i}" for i in range(30)]
    for m in machines:
        subscribe(engine, f"SELECT machine, ts, temp FROM telemetry WHERE machine = '{m}' AND temp > 50", f"f{m}")
        subscribe(engine, "SELECT tumble(ts, INTERVAL '1 second') AS w, machine, count(*) AS n, max(temp) AS hi "
                  f"FROM telemetry WHERE machine = '{m}' GROUP BY w, machine", f"w{m}", late_output="late/x")
    assert engine.subscriptions["wm0"].plan.shared is not None  # the 30 windows share one partial query per batch
    assert engine.subscriptions["wm0"].plan.shared.key == engine.subscriptions["wm29"].plan.shared.key
    assert engine.subscriptions["wm0"].plan.shared.final is not None  # ... and one final query when windows close
    rng = np.random.default_rng(3)
    rows, per_row, windows, late_rows = [], {}, {}, {}
    for b in range(40):
        chosen = rng.choice(machines, 3, replace=False)
        ms = [START + b * 250 + i for i in range(20)]
        if b == 20:  # two rows behind the watermark: late for every windowed subscription
            ms[:2] = [START, START + 1]
        batch_machines = [str(chosen[i % 3]) for i in range(20)]
        temps = [float(t) for t in np.round(rng.uniform(0, 100, 20), 1)]
        table = batch(engine, ms, batch_machines, temps)
        rows.append(table.append_column("late", pa.array([b == 20 and i < 2 for i in range(20)])))
        for result in engine.process("telemetry", table):
            target = late_rows if result.late else per_row if result.subscription.name.startswith("f") else windows
            target.setdefault(result.subscription.name, []).append(result.table)
    for result in engine.tick(START / 1000 + 3600):
        windows.setdefault(result.subscription.name, []).append(result.table)

    events = pa.concat_tables(rows)
    con = duckdb.connect()
    con.register("events", events)
    for m in machines:
        expected = con.sql(f"SELECT machine, ts, temp FROM events WHERE machine = '{m}' AND temp > 50 "
                           "ORDER BY ts, temp").to_arrow_table()
        got = [] if f"f{m}" not in per_row else pa.concat_tables(per_row[f"f{m}"]).sort_by(
            [("ts", "ascending"), ("temp", "ascending")]).to_pylist()
        assert got == expected.to_pylist()
    for m in machines:  # late rows are in no window
        expected = con.sql(f"SELECT epoch_ms(ts::TIMESTAMP) // 1000 * 1000 AS start, count(*) AS n, max(temp) "
                           f"AS hi FROM events WHERE machine = '{m}' AND NOT late GROUP BY start ORDER BY start"
                           ).to_arrow_table()
        got = pa.concat_tables(windows[f"w{m}"]) if f"w{m}" in windows else None
        got_rows = [] if got is None else sorted(
            (r["w"]["start"].timestamp() * 1000, r["n"], r["hi"]) for r in got.to_pylist())
        assert got_rows == [(float(r["start"]), r["n"], r["hi"]) for r in expected.to_pylist()], m
        # late rows are reported to every windowed subscription, skipped or not (as without routing)
        assert engine.subscriptions[f"w{m}"].stats.late_rows == 2
        assert sum(t.num_rows for t in late_rows[f"w{m}"]) == 2


@pytest.mark.parametrize(("partial", "shared"), [
    ("SELECT count(*) AS __a0 FROM telemetry WHERE machine = 'm1' AND temp > 3 GROUP BY __ws",
     "SELECT count(*) AS __a0, machine AS __route FROM telemetry WHERE TRUE AND temp > 3 GROUP BY __ws, __route"),
    ("SELECT count(*) AS __a0 FROM telemetry WHERE 'm1' = machine GROUP BY __ws",
     "SELECT count(*) AS __a0, machine AS __route FROM telemetry WHERE TRUE GROUP BY __ws, __route"),
    ("SELECT count(*) AS __a0 FROM telemetry t WHERE t.machine = 'm1' GROUP BY __ws", None),  # qualified
    ("SELECT count(*) FILTER (WHERE machine = 'm1') AS __a0 FROM telemetry WHERE machine = 'm1' GROUP BY __ws",
     None),  # the literal twice
    ("SELECT machine AS __a0 FROM telemetry WHERE machine = 'm1'", None),  # no GROUP BY (raw rows)
])
def test_shared_partial_sql(partial, shared):
    result = share_partial(partial, ("machine", "m1"))
    assert (result[1] if result else None) == shared


def test_two_subscriptions_for_the_same_value_each_get_the_full_window():
    """Shared partial and final queries with a value twice in the group: neither is counted double."""
    engine = telemetry_engine(watermark="0s")
    sql = ("SELECT tumble(ts, INTERVAL '1 second') AS w, count(*) AS n, sum(temp) AS total FROM telemetry "
           "WHERE machine = '{m}' GROUP BY w")
    for name, machine in (("a", "m1"), ("b", "m1"), ("c", "m2")):
        subscribe(engine, sql.format(m=machine), name)
    assert engine.subscriptions["a"].plan.shared.final_key == engine.subscriptions["c"].plan.shared.final_key
    results = engine.process("telemetry", batch(engine, [START + i for i in range(6)], ["m1", "m2"] * 3,
                                                 [1.0, 10.0, 2.0, 20.0, 3.0, 30.0]))
    results += engine.tick(START / 1000 + 3600)
    got = {r.subscription.name: r.table.select(["n", "total"]).to_pylist() for r in results}
    assert got == {"a": [{"n": 3, "total": 6.0}], "b": [{"n": 3, "total": 6.0}], "c": [{"n": 3, "total": 60.0}]}
