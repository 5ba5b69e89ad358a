"""Window subscriptions on pyarrow kernels (engine/kernels/arrow_aggregate.py): which queries take that path, and that
a checkpoint taken mid-window restores into it with results still equal to DuckDB's batch computation."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from arros_mqtt.config import SubscriptionConfig
from arros_mqtt.core.topics import OutputTemplate
from arros_mqtt.durability.checkpoint import CheckpointStore
from arros_mqtt.engine import DATAFUSION, PYARROW, Engine
from tests.engine_support import batch as stream_batch
from tests.engine_support import subscribe, telemetry_engine
from tests.unit.test_sql_golden import (
    ARRIVAL,
    assert_same_rows,
    batches_of,
    engine_for,
    flatten,
    generate,
    load,
    run_duckdb,
    stream_table,
)

SQL_DIR = Path(__file__).parent.parent / "sql"


def golden(engine: Engine, case: dict):
    return engine.add(SubscriptionConfig(name="golden", sql=case["sql"], output=OutputTemplate.parse("out/x"),
                                         late_output=OutputTemplate.parse("late/x")))


@pytest.mark.parametrize(("name", "final_on_arrow"), [
    ("tumble_arrow_nulls", True), ("hop_arrow_closing", True), ("tumble_global", True), ("hop", True),
    ("tumble_arrow_having", False),  # expressions over aggregates, HAVING, ORDER BY: DataFusion's final
])
def test_golden_cases_run_on_arrow_kernels(name: str, final_on_arrow: bool):
    case = load(SQL_DIR / f"{name}.toml")
    engine = engine_for(case)
    subscription = golden(engine, case)
    kernel = subscription.plan.kernel
    assert kernel.name == PYARROW
    assert (kernel.outputs is not None) is final_on_arrow
    assert ("final query in DataFusion" in engine.explain(subscription)["kernels"]) is not final_on_arrow


@pytest.mark.parametrize("sql", [
    "SELECT session(ts, INTERVAL '5 seconds') AS w, count(*) AS n FROM telemetry GROUP BY w",
    "SELECT tumble(ts, INTERVAL '5 seconds') AS w, count(DISTINCT machine) AS n FROM telemetry GROUP BY w",
    "SELECT tumble(ts, INTERVAL '5 seconds') AS w, median(temp) AS m FROM telemetry GROUP BY w",
    "SELECT tumble(ts, INTERVAL '5 seconds') AS w, sum(temp + 1) AS s FROM telemetry GROUP BY w",
    "SELECT tumble(ts, INTERVAL '5 seconds') AS w, count(*) FILTER (WHERE temp > 5) AS n FROM telemetry GROUP BY w",
    "SELECT tumble(ts, INTERVAL '5 seconds') AS w, upper(machine) AS m, count(*) AS n FROM telemetry "
    "GROUP BY w, upper(machine)",
    "SELECT tumble(ts, INTERVAL '5 seconds') AS w, count(*) AS n FROM telemetry WHERE upper(machine) = 'M1' "
    "GROUP BY w",
    "WITH t AS (SELECT * FROM telemetry) SELECT tumble(ts, INTERVAL '5 seconds') AS w, count(*) AS n FROM t "
    "GROUP BY w",
])
def test_other_shapes_stay_on_datafusion(sql: str):
    engine = telemetry_engine()
    subscription = subscribe(engine, sql)
    assert subscription.kernel == DATAFUSION
    assert "kernels" not in engine.explain(subscription)


def feed(engine: Engine, batches: list[list[dict]]) -> tuple[list[dict], int]:
    schema = engine.streams["telemetry"].full_schema()
    rows, late = [], 0
    for batch in batches:
        for result in engine.process("telemetry", stream_table(batch, schema)):
            if result.late:
                late += result.table.num_rows
            else:
                rows += [flatten(r) for r in result.table.to_pylist()]
    return rows, late


@pytest.mark.parametrize("name", ["tumble_arrow_nulls", "hop_arrow_closing"])
def test_a_checkpoint_mid_window_restores_into_the_arrow_path(tmp_path, name: str):
    case = load(SQL_DIR / f"{name}.toml")
    batches = batches_of(generate(case["generate"]), case)
    half = len(batches) // 2
    first = engine_for(case)
    subscription = golden(first, case)
    state = subscription.operator
    before, late_before = feed(first, batches[:half])
    assert subscription.kernel == PYARROW and state.rows > 0, "windows are open when the checkpoint is taken"
    store = CheckpointStore(tmp_path)
    store.write(first, seq=half, archive_from=0, confirmed=half)
    store.promote()

    second = engine_for(case)
    golden(second, case)
    reopened = CheckpointStore(tmp_path)
    assert reopened.restore(reopened.load(), second, now=ARRIVAL) == ["golden"]
    after, late_after = feed(second, batches[half:])
    closing = second.tick(ARRIVAL + 1_000_000)
    after += [flatten(r) for result in closing for r in result.table.to_pylist()]

    expected, expected_late = run_duckdb(case, batches)
    assert late_before + late_after == expected_late
    assert_same_rows(before + after, expected)
    assert second.subscriptions["golden"].operator.rows == 0


def test_a_state_fed_one_row_at_a_time_stays_few_chunks_and_closes_right():
    """Micro-batches of one row each (a slow stream) append a chunk per batch; past MAX_STATE_CHUNKS the
    state is made one chunk, and the windows still close with the counts and sums of all rows."""
    from arros_mqtt.engine.operators.state import MAX_STATE_CHUNKS

    engine = telemetry_engine()
    sub = subscribe(engine, "SELECT machine, tumble(ts, INTERVAL '10 seconds') AS window, count(*) AS n, "
                            "sum(temp) AS total FROM telemetry GROUP BY machine, window")
    base = 1_700_000_000_000
    results = []
    for i in range(500):  # 2 machines, 5 s of rows every 10 ms: every window stays open (1 s watermark)
        results += engine.process("telemetry", stream_batch(engine, [base + i * 10], [f"m{i % 2}"], [float(i)]))
        assert sub.operator.table.column(0).num_chunks <= MAX_STATE_CHUNKS + 1
    assert sub.operator.bytes > 0
    results += engine.process("telemetry", stream_batch(engine, [base + 60_000], ["m0"], [0.0]))  # closes them
    closed = pa.concat_tables([r.table for r in results]).sort_by("machine").to_pylist()
    assert [(r["machine"], r["n"], r["total"]) for r in closed] == [
        ("m0", 250, float(sum(range(0, 500, 2)))), ("m1", 250, float(sum(range(1, 500, 2))))]
