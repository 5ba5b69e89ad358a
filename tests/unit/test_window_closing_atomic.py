"""Closing windows is atomic per group: a group whose final fails at run time (a poison group, here
`100 / sum(rpm)` over a machine whose rpm is 0) is dead-lettered with the error and leaves the state;
every healthy window closing with it is published, and later windows close as usual."""

from __future__ import annotations

import pytest

from arros_mqtt.engine import DATAFUSION
from tests.engine_support import subscribe
from tests.unit.test_row_faults import T0, engine_on, failures, outputs, rows


@pytest.mark.parametrize("kernel", [None, DATAFUSION])
def test_a_poison_group_does_not_lose_the_healthy_windows_closing_with_it(kernel):
    engine = engine_on(kernel)
    sub = subscribe(engine, "SELECT tumble(ts, INTERVAL '1 second') AS window, machine, 100 / sum(rpm) AS x "
                            "FROM telemetry GROUP BY window, machine")
    ms = [T0 + w * 1000 + i for w in range(4) for i in range(3)]
    machines = [m for _ in range(4) for m in ("good", "zero", "other")]
    rpms = [10 if m != "zero" else 0 for m in machines]
    results = engine.process("telemetry", rows(engine, ms, machines, rpms))
    results += engine.process("telemetry", rows(engine, [T0 + 10_000], ["good"], [10]))
    got = sorted((r["window"]["start"].timestamp() * 1000 - T0, r["machine"], r["x"]) for r in outputs(results))
    assert got == [(w * 1000.0, m, 10) for w in range(4) for m in ("good", "other")]
    poisoned = failures(results)
    keys = sorted(row["machine"] for r in poisoned for row in r.table.to_pylist())
    assert keys == ["zero"] * 4
    assert sub.stats.rows_failed == 4
    assert sub.operator.rows == 1  # the closed windows left the state, the open one stays
    # the next window closes normally: nothing is retried or lost
    later = engine.process("telemetry", rows(engine, [T0 + 20_000], ["good"], [10]))
    assert [(r["machine"], r["x"]) for r in outputs(later)] == [("good", 10)]


EXPECTED = sorted([(w * 1000.0, "good", 1, 10) for w in range(3)] + [(w * 1000.0, "other", 1, 5) for w in range(3)])


def routed(engine, select: str):
    subs = {m: subscribe(engine, f"SELECT tumble(ts, INTERVAL '1 second') AS window, machine, {select} "
                                 f"FROM telemetry WHERE machine = '{m}' GROUP BY window, machine", name=m)
            for m in ("good", "zero", "other")}
    assert subs["good"].plan.shared is not None and subs["good"].plan.shared.final is not None
    return subs


def three_windows(engine, rpms_of):
    ms = [T0 + w * 1000 + i for w in range(3) for i in range(3)]
    machines = [m for _ in range(3) for m in ("good", "zero", "other")]
    results = engine.process("telemetry", rows(engine, ms, machines, [rpms_of(m) for m in machines]))
    results += engine.process("telemetry", rows(engine, [T0 + 10_000], ["good"], [10]))
    return results


def test_routed_windows_sharing_their_final_lose_only_the_poison_group():
    """Subscriptions routed by machine share one final query; when it fails, each runs its own."""
    engine = engine_on(None)
    subs = routed(engine, "count(*) AS n, 100 / sum(rpm) AS x")
    results = three_windows(engine, lambda m: {"good": 10, "other": 20, "zero": 0}[m])
    got = sorted((r["window"]["start"].timestamp() * 1000 - T0, r["machine"], r["n"], r["x"]) for r in outputs(results))
    assert got == EXPECTED
    assert sorted(row["machine"] for r in failures(results) for row in r.table.to_pylist()) == ["zero"] * 3
    assert [subs[m].stats.rows_failed for m in ("good", "zero", "other")] == [0, 3, 0]
    assert all(sub.operator.rows == (1 if m == "good" else 0) for m, sub in subs.items())


def test_routed_windows_sharing_their_partial_lose_only_the_failing_rows():
    engine = engine_on(None)
    subs = routed(engine, "count(*) AS n, sum(100 / rpm) AS s")
    results = three_windows(engine, lambda m: {"good": 10, "other": 20, "zero": 0}[m])
    got = sorted((r["window"]["start"].timestamp() * 1000 - T0, r["machine"], r["n"], r["s"]) for r in outputs(results))
    assert got == EXPECTED
    assert [subs[m].stats.rows_failed for m in ("good", "zero", "other")] == [0, 3, 0]
    assert sorted(row["machine"] for r in failures(results) for row in r.table.to_pylist()) == ["zero"] * 3
