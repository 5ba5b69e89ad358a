"""Per-row subscriptions run by pyarrow (kernels/arrow_select.py) give exactly DuckDB's rows, NULLs included;
queries outside the simple subset are left to DataFusion."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from arros_mqtt.engine import PYARROW
from arros_mqtt.engine.kernels.arrow_select import compile_select
from arros_mqtt.engine.logical_plan import read_plan
from arros_mqtt.engine.readonly_sql import analyze, plan
from tests.engine_support import ARRIVAL_MS, subscribe, telemetry_engine

WHERES = [
    "temp > 50", "temp >= 50.5 AND rpm < 1500", "machine = 'm1' OR temp IS NULL", "NOT (temp > 50)",
    "NOT (temp > 50 AND machine = 'm2')", "machine <> 'm1'", "rpm = 1000", "rpm != 1000 OR machine IS NOT NULL",
    "temp <= rpm", "temp > 50 OR NOT (rpm > 1200)", "machine IS NULL", "temp < 30.25 AND temp > 10",
]


def _table(engine) -> pa.Table:
    n = 12
    return pa.table({
        "ts": pa.array([ARRIVAL_MS + i for i in range(n)], pa.int64()).cast(pa.timestamp("ms")),
        "temp": pa.array([10.0, 50.0, 50.5, None, 99.9, 30.25, 29.0, None, 70.0, 1000.0, 15.0, 51.0]),
        "rpm": pa.array([1000, None, 1500, 1200, 900, 1000, None, 1300, 1000, 2000, 1100, 800], pa.int64()),
        "machine": pa.array(["m1", "m2", None, "m1", "m2", "m3", None, "m2", "m1", "m3", "m2", None]),
        "_topic": pa.array(["f/x"] * n),
        "_received_at": pa.array([ARRIVAL_MS] * n, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
    }, schema=engine.streams["telemetry"].full_schema())


@pytest.mark.parametrize("where", WHERES)
def test_pyarrow_rows_equal_duckdb(where):
    engine = telemetry_engine()
    sql = f"SELECT machine AS m, temp, rpm FROM telemetry WHERE {where}"
    subscription = subscribe(engine, sql)
    assert subscription.kernel == PYARROW, "this query should run on pyarrow"
    table = _table(engine)
    results = engine.process("telemetry", table)
    got = results[0].table.to_pylist() if results else []
    con = duckdb.connect()
    con.register("telemetry", table)
    expected = con.sql(sql).to_arrow_table().to_pylist()
    assert got == expected
    assert results == [] or results[0].table.schema == subscription.shape.output_schema


@pytest.mark.parametrize("sql", [
    "SELECT temp * 2 AS t FROM telemetry",  # an expression in the SELECT list
    "SELECT machine FROM telemetry WHERE upper(machine) = 'M1'",  # a function
    "SELECT machine FROM telemetry WHERE temp > '50'",  # a string compared with a number: DataFusion casts
    "SELECT machine FROM telemetry WHERE ts > '2027-01-01T00:00:00'",  # timestamps
    "SELECT machine FROM telemetry WHERE temp IN (1.0, 2.0)",
    "SELECT DISTINCT machine FROM telemetry",
    "SELECT machine FROM telemetry WHERE temp > 1 ORDER BY temp",
])
def test_other_queries_stay_with_datafusion(sql):
    engine = telemetry_engine()
    shape = analyze(engine._ctx, sql, {"telemetry"}, set())
    schema = engine.streams["telemetry"].full_schema()
    assert compile_select(read_plan(plan(engine._ctx, sql).logical_plan()), "telemetry", schema,
                          shape.output_schema) is None


def test_select_star_and_alias_run_on_pyarrow():
    engine = telemetry_engine()
    star = subscribe(engine, "SELECT * FROM telemetry t WHERE t.temp > 60", "star")
    assert star.kernel == PYARROW
    (result,) = engine.process("telemetry", _table(engine))
    assert result.table.column("temp").to_pylist() == [99.9, 70.0, 1000.0]
    assert result.table.schema == star.shape.output_schema
