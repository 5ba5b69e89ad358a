"""Running aggregates (GROUP BY without a window): after each micro-batch, the updated rows of the groups it
changed, equal to DuckDB aggregating every row received so far."""

from __future__ import annotations

import math
import random

import duckdb
import pyarrow as pa

from tests.engine_support import batch, subscribe, telemetry_engine

SQL = ("SELECT machine, count(*) AS n, avg(temp) AS a, max(temp) AS hi, stddev(temp) AS sd FROM telemetry "
       "WHERE temp > 30 GROUP BY machine HAVING count(*) > 2")
DUCKDB = ("SELECT machine, count(*) AS n, avg(temp) AS a, max(temp) AS hi, stddev_samp(temp) AS sd FROM seen "
          "WHERE temp > 30 GROUP BY machine HAVING count(*) > 2")


def close(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def test_update_mode_matches_duckdb_after_every_batch():
    engine = telemetry_engine()
    sub = subscribe(engine, SQL)
    rng = random.Random(3)
    seen: list[dict] = []
    con = duckdb.connect()
    for step in range(12):
        rows = [{"ms": 1_764_000_000_000 + step * 1000 + i, "machine": rng.choice(["a", "b", "c", "d", None]),
                 "temp": rng.choice([None, round(rng.uniform(0, 100), 2)])} for i in range(rng.randrange(1, 40))]
        seen += rows
        results = engine.process("telemetry", batch(engine, [r["ms"] for r in rows], [r["machine"] for r in rows],
                                                    [r["temp"] for r in rows]))
        got = [row for r in results for row in r.table.to_pylist()]
        con.register("seen", pa.Table.from_pylist(seen, schema=pa.schema([("ms", pa.int64()), ("machine", pa.string()),
                                                                           ("temp", pa.float64())])))
        changed = {r["machine"] for r in rows if r["temp"] is not None and r["temp"] > 30}
        expected = [r for r in con.sql(DUCKDB).to_arrow_table().to_pylist() if r["machine"] in changed]
        assert len(got) == len(expected), (step, got, expected)
        by_key = {r["machine"]: r for r in expected}
        for row in got:
            want = by_key[row["machine"]]
            assert all(close(row[k], want[k]) for k in want), (step, row, want)
    assert sub.stats.errors == 0
    assert sub.stats.state_rows <= 5  # one partial row per machine (a, b, c, d and null)


def test_global_running_aggregate_emits_one_row_per_batch():
    engine = telemetry_engine()
    subscribe(engine, "SELECT count(*) AS n, sum(temp) AS total FROM telemetry")
    outputs = []
    for step in range(3):
        results = engine.process("telemetry", batch(engine, [step * 10, step * 10 + 1], ["a", "b"], [1.0, 2.0]))
        outputs += [row for r in results for row in r.table.to_pylist()]
    assert outputs == [{"n": 2, "total": 3.0}, {"n": 4, "total": 6.0}, {"n": 6, "total": 9.0}]
