"""The same SQL through both kernels: every golden case (tests/sql/*.toml) runs on DataFusion and, where the
compile step can run it there, on the pyarrow kernels; both give the same rows (order aside, floats within
1e-9) and both equal DuckDB's. Per-row queries over a golden case's input are compared the same way.

The pyarrow kernels run a subset of SQL (kernels/arrow_select.py, kernels/arrow_aggregate.py): a case
outside it is refused when pyarrow is forced (SqlError code "kernel"), and then runs on DataFusion alone.
"""

from __future__ import annotations

import pytest

from arros_mqtt.config import SubscriptionConfig
from arros_mqtt.core.errors import SqlError
from arros_mqtt.core.topics import OutputTemplate
from arros_mqtt.engine import DATAFUSION, KERNELS, PYARROW, Engine
from tests.unit import test_sql_golden as golden

# the golden cases whose every step but possibly the final runs on pyarrow (the compile step's choice too)
ON_PYARROW = {"hop", "hop_arrow_closing", "tumble_arrow_having", "tumble_arrow_nulls", "tumble_disorder",
              "tumble_global", "tumble_in_order", "tumble_late"}
PER_ROW = [  # (query, whether pyarrow runs it)
    ("SELECT machine, temp, rpm FROM telemetry WHERE temp > 50 AND ok", True),
    ("SELECT machine AS m, ts FROM telemetry WHERE machine = 'm1' OR temp IS NULL", True),
    ("SELECT * FROM telemetry WHERE NOT (rpm >= 1500) AND machine IS NOT NULL", True),
    ("SELECT machine, temp * 2 AS t FROM telemetry WHERE temp < 40", False),  # an expression
]


def _batches(case: dict) -> list[list[dict]]:
    rows = golden.generate(case["generate"]) if "generate" in case else golden.listed(case)
    return golden.batches_of(rows, case)


def _on(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The golden runner's engines force `kernel` from now on."""
    make = golden.engine_for
    monkeypatch.setattr(golden, "engine_for", lambda case: Engine(make(case).streams, kernel=kernel))


def _accepted(case: dict, kernel: str) -> bool:
    engine = Engine(golden.engine_for(case).streams, kernel=kernel)
    try:
        engine.build(SubscriptionConfig(name="golden", sql=case["sql"], output=OutputTemplate.parse("out/x")))
    except SqlError as exc:
        if exc.code == "kernel":
            return False
        raise
    return True


@pytest.mark.parametrize("path", golden.CASES, ids=[p.stem for p in golden.CASES])
def test_every_kernel_that_accepts_a_golden_case_gives_its_rows(path, monkeypatch):
    case = golden.load(path)
    batches = _batches(case)
    expected, expected_late = golden.run_duckdb(case, batches)
    kernels = [k for k in KERNELS if _accepted(case, k)]
    assert kernels[0] == DATAFUSION, "DataFusion runs every query"
    assert (PYARROW in kernels) is (path.stem in ON_PYARROW)
    outputs = {}
    for kernel in kernels:
        with monkeypatch.context() as patch:
            _on(kernel, patch)
            rows, late, engine = golden.run_engine(case, batches)
        assert engine.subscriptions["golden"].kernel == kernel
        assert late == expected_late, kernel
        golden.assert_same_rows(rows, expected)
        outputs[kernel] = rows
    if PYARROW in outputs:
        golden.assert_same_rows(outputs[PYARROW], outputs[DATAFUSION])


@pytest.mark.parametrize("path", golden.CASES, ids=[p.stem for p in golden.CASES])
def test_the_compile_step_chooses_pyarrow_where_it_accepts_the_case(path):
    case = golden.load(path)
    engine = golden.engine_for(case)
    chosen = engine.build(SubscriptionConfig(name="golden", sql=case["sql"], output=OutputTemplate.parse("out/x")))
    assert chosen.kernel == (PYARROW if _accepted(case, PYARROW) else DATAFUSION)


@pytest.mark.parametrize(("sql", "on_pyarrow"), PER_ROW)
def test_per_row_queries_give_the_same_rows_on_each_kernel(sql, on_pyarrow):
    case = golden.load(next(p for p in golden.CASES if p.stem == "tumble_arrow_nulls"))  # NULL keys and values
    batches = _batches(case)
    outputs = {}
    for kernel in KERNELS:
        engine = Engine(golden.engine_for(case).streams, kernel=kernel)
        try:
            engine.add(SubscriptionConfig(name="rows", sql=sql, output=OutputTemplate.parse("out/x")))
        except SqlError as exc:
            assert exc.code == "kernel" and kernel == PYARROW
            continue
        schema = engine.streams["telemetry"].full_schema()
        outputs[kernel] = [golden.flatten(row) for batch in batches
                           for result in engine.process("telemetry", golden.stream_table(batch, schema))
                           for row in result.table.to_pylist()]
    assert outputs[DATAFUSION], "the query selects rows"
    golden.assert_same_rows(outputs.get(PYARROW, outputs[DATAFUSION]), outputs[DATAFUSION])
    assert (PYARROW in outputs) is on_pyarrow
