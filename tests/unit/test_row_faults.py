"""One row a query fails on at run time (division by zero) must not lose its micro-batch: the rows it fails
on come back as dead-letter results with the error, the others go on, and aggregates are exactly what
they are without the failing rows (checked against DuckDB over the good rows). A group whose final
fails (a poison group) is dead-lettered alone (test_window_closing_atomic.py)."""

from __future__ import annotations

import duckdb
import orjson
import pyarrow as pa
import pytest

from arros_mqtt.config import parse_config
from arros_mqtt.engine import DATAFUSION, Engine
from arros_mqtt.engine.fault_isolation import isolate
from arros_mqtt.ingress.batcher import RawBatch
from arros_mqtt.service.pipeline import Pipeline
from arros_mqtt.service.runtime import build_engine
from tests.engine_support import subscribe, telemetry_engine

T0 = 1_764_000_000_000


def rows(engine: Engine, ms: list[int], machines: list[str], rpms: list[int]) -> pa.Table:
    n = len(ms)
    return pa.table({
        "ts": pa.array(ms, pa.int64()).cast(pa.timestamp("ms")),
        "temp": pa.array([20.0] * n, pa.float64()),
        "rpm": pa.array(rpms, pa.int64()),
        "machine": pa.array(machines, pa.string()),
        "_topic": pa.array([f"f/{m}" for m in machines], pa.string()),
        "_received_at": pa.array([T0] * n, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
    }, schema=engine.streams["telemetry"].full_schema())


def outputs(results):
    return [row for r in results if r.error is None and not r.late for row in r.table.to_pylist()]


def failures(results):
    return [r for r in results if r.error is not None]


def engine_on(kernel: str | None) -> Engine:
    engine = telemetry_engine(watermark="0s")
    engine.kernel = kernel
    return engine


@pytest.mark.parametrize("kernel", [None, DATAFUSION])
def test_a_row_failing_a_per_row_query_is_dead_lettered_and_the_other_rows_go_on(kernel):
    engine = engine_on(kernel)
    sub = subscribe(engine, "SELECT machine, rpm, 100 / rpm AS x FROM telemetry")
    rpms = [10, 20, 5, 50, 0, 25, 4, 2, 1, 100]
    results = engine.process("telemetry", rows(engine, [T0 + i for i in range(10)], [f"m{i}" for i in range(10)],
                                               rpms))
    assert sorted((r["machine"], r["x"]) for r in outputs(results)) == sorted(
        (f"m{i}", 100 // rpm) for i, rpm in enumerate(rpms) if rpm)
    [failed] = failures(results)
    assert failed.table.column("machine").to_pylist() == ["m4"]
    assert "Divide by zero" in failed.error
    assert sub.stats.rows_failed == 1 and sub.stats.errors == 1 and sub.stats.rows_out == 9


@pytest.mark.parametrize("kernel", [None, DATAFUSION])
def test_a_windowed_aggregate_over_a_failing_row_is_the_aggregate_without_it(kernel):
    engine = engine_on(kernel)
    sub = subscribe(engine, "SELECT tumble(ts, INTERVAL '1 second') AS window, machine, count(*) AS n, "
                            "sum(100 / rpm) AS s FROM telemetry GROUP BY window, machine")
    ms = [T0 + i * 100 for i in range(50)]  # 5 windows of 10 rows
    machines = ["a" if i % 2 else "b" for i in range(50)]
    rpms = [0 if i in (3, 27, 28) else 1 + i % 7 for i in range(50)]
    batch = rows(engine, ms, machines, rpms)
    results = engine.process("telemetry", batch)
    results += engine.process("telemetry", rows(engine, [T0 + 10_000], ["a"], [1]))  # closes the 5 windows
    got = sorted((r["window"]["start"].timestamp() * 1000 - T0, r["machine"], r["n"], r["s"]) for r in outputs(results))
    good = batch.filter(pa.array([rpm != 0 for rpm in rpms]))  # noqa: F841 - read by DuckDB
    expected = duckdb.sql("SELECT (epoch_ms(ts::TIMESTAMP) - 1764000000000) // 1000 * 1000 AS w, machine, count(*), "
                          "sum(100 // rpm) FROM good GROUP BY ALL ORDER BY ALL").fetchall()
    assert got == [(float(w), m, n, s) for w, m, n, s in expected]
    assert len(got) == 10
    assert sum(r.table.num_rows for r in failures(results)) == 3
    assert sub.stats.rows_failed == 3


def test_a_running_aggregate_over_a_failing_row_counts_without_it():
    engine = engine_on(None)
    sub = subscribe(engine, "SELECT machine, count(*) AS n, sum(100 / rpm) AS s FROM telemetry GROUP BY machine")
    results = engine.process("telemetry", rows(engine, [T0] * 4, ["a", "a", "b", "a"], [10, 0, 50, 20]))
    assert sorted((r["machine"], r["n"], r["s"]) for r in outputs(results)) == [("a", 2, 15), ("b", 1, 2)]
    assert [r.table.num_rows for r in failures(results)] == [1]
    assert sub.stats.rows_failed == 1


def test_isolation_is_bounded_and_loses_no_row():
    table = pa.table({"v": pa.array(range(1000))})

    def step(part: pa.Table) -> int:
        if any(v % 3 == 0 for v in part.column("v").to_pylist()):
            raise ValueError("bad")
        return part.num_rows

    found = isolate(table, step, ValueError("bad"), max_runs=40)
    assert sum(found.results) + found.failed_rows == 1000  # every row either ran or is dead-lettered
    assert all(error.endswith("bad") for _, error in found.failed)


def test_the_pipeline_publishes_failing_rows_to_the_dead_letter_topic_with_the_error():
    sent: list[tuple[str, bytes]] = []
    cfg = parse_config({
        "streams": {"s": {"topic": "dev/{device}/data", "schema": {"rpm": "int64"}}},
        "subscriptions": {"x": {"sql": "SELECT device, 100 / rpm AS x FROM s", "output": "out/{device}"}},
    })
    pipeline = Pipeline(cfg, build_engine(cfg), lambda topic, payload, qos, retain: sent.append((topic, payload)))
    payloads = [orjson.dumps({"rpm": rpm}) for rpm in (10, 0, 50)]
    pipeline.process(RawBatch("s", ["dev/a/data", "dev/b/data", "dev/c/data"], payloads, [0, 0, 0]))
    assert sorted((t, orjson.loads(p)["x"]) for t, p in sent if t.startswith("out/")) == [("out/a", 10), ("out/c", 2)]
    [letter] = [orjson.loads(p) for t, p in sent if t == "arros/deadletter/s"]
    assert letter["subscription"] == "x" and "Divide by zero" in letter["error"] and letter["rows_total"] == 1
    assert letter["rows"][0]["device"] == "b" and letter["rows"][0]["rpm"] == 0


def test_isolation_keeps_the_parts_left_small_when_the_budget_runs_out():
    table = pa.table({"v": pa.array(range(10_000))})
    bad = set(range(0, 10_000, 1000))

    def step(part: pa.Table) -> int:
        if bad & set(part.column("v").to_pylist()):
            raise ValueError("bad")
        return part.num_rows

    found = isolate(table, step, ValueError("bad"))
    assert sum(found.results) + found.failed_rows == 10_000
    assert found.failed_rows < 300 and len(found.failed) == 10  # breadth first: ten small parts, one per bad row
