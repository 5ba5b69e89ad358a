"""Plan-time bombs and run-time blow-ups are bounded (issue 20 items 1 and 2): constant calls DataFusion
would fold into huge values while planning are refused with a clear error, recursive CTEs are refused,
values too large at run time dead-letter their rows, and a subscription whose result from one
micro-batch passes `max_result_rows`/`max_result_bytes`/`max_seconds` is paused with the reason instead
of publishing it. The other subscriptions of the stream go on."""

from __future__ import annotations

import resource

import pyarrow as pa
import pytest

from arros_mqtt.config import parse_config
from arros_mqtt.core.errors import ConfigError, SqlError
from arros_mqtt.engine import DATAFUSION, Engine, RunBounds
from tests.engine_support import batch, subscribe

T0 = 1_800_000_000_000


def engine_with(bounds: RunBounds | None = None, kernel: str | None = None) -> Engine:
    config = parse_config({"streams": {"telemetry": {
        "topic": "f/{machine}", "event_time": "ts", "watermark": "0s",
        "schema": {"ts": "timestamp[ms]", "temp": "float64", "rpm": "int64"}}}})
    return Engine(config.streams, config.tables, kernel=kernel, bounds=bounds)


def rows(engine: Engine, n: int) -> pa.Table:
    return batch(engine, [T0 + i for i in range(n)], [f"m{i % 3}" for i in range(n)], [20.0] * n)


def max_rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


@pytest.mark.parametrize(("sql", "reason"), [
    ("SELECT machine, repeat('a', 300000000) AS s FROM telemetry", "repeat() would build a value of 300,000,000 bytes"),
    ("SELECT machine, repeat(repeat('ab', 1000000), 1000) AS s FROM telemetry", "a value of 2,000,000 bytes"),
    ("SELECT machine, range(1, 20000000) AS r FROM telemetry", "range() would build a list of 19,999,999 elements"),
    ("SELECT machine, generate_series(-9223372036854775807, 9223372036854775807) AS r FROM telemetry",
     "generate_series() would build"),
])
def test_a_constant_that_would_be_huge_is_not_built_while_planning_and_its_rows_are_dead_lettered(sql, reason):
    """DataFusion folded these constants while planning (repeat('a', 300000000): 2.3 GB and 16 s inside
    `explain`); the bounded functions are not folded, so planning and explaining stay small, and each
    row is dead-lettered with the reason when one comes."""
    engine = engine_with()
    before = max_rss_mb()
    subscription = subscribe(engine, sql, name="bomb")
    explained = engine.explain(subscription)
    assert sum(len(text) for text in explained.values()) < 10_000
    results = engine.process("telemetry", rows(engine, 1))
    assert max_rss_mb() - before < 200
    [failed] = results
    assert failed.error is not None and reason in failed.error and "PyErr" not in failed.error


@pytest.mark.parametrize("sql", [
    "SELECT machine, lpad(machine, 300000000) AS s FROM telemetry",
    "SELECT machine, upper(rpad(machine, 3e8, 'x')) AS s FROM telemetry",
    "SELECT machine, array_repeat(1, 300000000) AS s FROM telemetry",
])
def test_a_literal_size_past_the_bound_for_datafusions_own_size_functions_is_refused(sql):
    engine = engine_with()
    before = max_rss_mb()
    with pytest.raises(SqlError, match="would build a value past the limit"):
        subscribe(engine, sql)
    assert max_rss_mb() - before < 200
    subscribe(engine, "SELECT machine, lpad(machine, 5, '0') AS s, array_repeat(1, 3) AS a FROM telemetry")


def test_a_recursive_cte_is_refused():
    engine = engine_with()
    with pytest.raises(SqlError, match="recursive CTEs"):
        subscribe(engine, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10000000) "
                          "SELECT machine, (SELECT max(n) FROM r) AS n FROM telemetry")
    assert not engine.subscriptions


def test_bounded_functions_give_what_datafusion_gives_within_the_bound():
    engine = engine_with(kernel=DATAFUSION)
    subscribe(engine, "SELECT machine, repeat(machine, 2) AS r, range(1, 4) AS a, generate_series(1, 3) AS g, "
                      "range(3, 1) AS e FROM telemetry")
    [result] = engine.process("telemetry", rows(engine, 1))
    assert result.table.to_pylist() == [{"machine": "m0", "r": "m0m0", "a": [1, 2, 3], "g": [1, 2, 3], "e": []}]


@pytest.mark.parametrize("kernel", [None, DATAFUSION])
def test_a_row_whose_value_would_be_huge_is_dead_lettered_and_the_others_go_on(kernel):
    engine = engine_with(kernel=kernel)
    subscribe(engine, "SELECT machine, unnest(range(0, rpm * 5000000)) AS i FROM telemetry WHERE temp > 50",
              name="bomb")
    subscribe(engine, "SELECT machine, temp FROM telemetry", name="good")
    table = rows(engine, 4)
    table = table.set_column(1, "temp", pa.array([20.0, 90.0, 20.0, 20.0]))
    before = max_rss_mb()
    results = engine.process("telemetry", table)
    assert max_rss_mb() - before < 200
    good = [r for r in results if r.subscription.name == "good"]
    assert sum(r.table.num_rows for r in good) == 4
    [failed] = [r for r in results if r.subscription.name == "bomb"]
    assert failed.error is not None and "range() would build a list of 5,000,000,000 elements" in failed.error
    assert failed.table.column("machine").to_pylist() == ["m1"]


def test_a_join_fanning_out_past_max_result_rows_pauses_the_subscription_without_its_result():
    engine = engine_with(RunBounds(max_result_rows=100_000))
    subscribe(engine, "SELECT t.machine, s.value FROM telemetry t JOIN range(0, 10000000) s ON true", name="fan")
    subscribe(engine, "SELECT machine, temp FROM telemetry", name="good")
    before = max_rss_mb()
    results = engine.process("telemetry", rows(engine, 3))
    assert max_rss_mb() - before < 200  # the whole 30M rows would be ~500 MB
    assert [r.subscription.name for r in results] == ["good"]
    assert engine.paused["fan"].startswith("result limit: more than 100,000 result rows")
    stats = engine.subscriptions["fan"].stats
    assert stats.errors == 1 and stats.last_error == engine.paused["fan"]
    assert [r.subscription.name for r in engine.process("telemetry", rows(engine, 3))] == ["good"]


@pytest.mark.parametrize("kernel", [None, DATAFUSION])
def test_a_per_row_result_past_max_result_rows_or_bytes_pauses_on_either_kernel(kernel):
    engine = engine_with(RunBounds(max_result_rows=1000), kernel=kernel)
    subscribe(engine, "SELECT machine, temp FROM telemetry", name="wide")
    assert engine.process("telemetry", rows(engine, 1000))  # at the bound: published
    assert engine.process("telemetry", rows(engine, 1001)) == []
    assert "max_result_rows" in engine.paused["wide"]
    engine = engine_with(RunBounds(max_result_bytes=10_000), kernel=kernel)
    subscribe(engine, "SELECT machine, repeat(machine, 1000) AS big FROM telemetry", name="big")
    assert engine.process("telemetry", rows(engine, 20)) == []
    assert "max_result_bytes" in engine.paused["big"]


def test_a_subscription_over_its_time_budget_is_paused_and_the_others_are_not():
    engine = engine_with(RunBounds(max_seconds=1e-9))
    subscribe(engine, "SELECT t.machine, s.value FROM telemetry t JOIN range(0, 100000) s ON true", name="slow")
    engine.process("telemetry", rows(engine, 1))
    assert engine.paused["slow"].startswith("time limit: one micro-batch took more than")


def test_datafusion_queries_run_in_a_bounded_memory_pool():
    engine = engine_with(RunBounds(memory=1_000_000, max_result_rows=0, max_result_bytes=0))
    subscribe(engine, "SELECT t.machine, s.value FROM telemetry t JOIN range(0, 300000) s ON true "
                      "ORDER BY s.value DESC", name="sorts")
    results = engine.process("telemetry", rows(engine, 3))
    assert results and all(r.error is not None and "Not enough memory" in r.error for r in results)
    assert sum(r.table.num_rows for r in results) == 3  # each input row dead-lettered, none lost


def test_the_engine_section_sets_the_bounds_and_zero_turns_one_off():
    from arros_mqtt.service.runtime import build_engine

    config = parse_config({"engine": {"max_result_rows": 0, "max_result_bytes": "64MiB", "max_batch_seconds": "2s",
                                      "sql_memory": "512MiB"},
                           "streams": {"telemetry": {"topic": "f/{machine}", "schema": {"rpm": "int64"}}}})
    assert build_engine(config)._session.bounds == RunBounds(0, 64 * 1024 * 1024, 2.0, 512 * 1024 * 1024)
    with pytest.raises(ConfigError, match=r"engine\.max_result_rows"):
        parse_config({"engine": {"max_result_rows": -1}})
    engine = engine_with(RunBounds(max_result_rows=0))
    subscribe(engine, "SELECT t.machine, s.value FROM telemetry t JOIN range(0, 300000) s ON true", name="fan")
    assert sum(r.table.num_rows for r in engine.process("telemetry", rows(engine, 1))) == 300_000
