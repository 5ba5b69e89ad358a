"""Windows close when the stream's watermark passes their end, exactly once; idle streams close by the
wall clock after `idle_timeout`; late rows are counted and handed out with the stream's columns."""

from __future__ import annotations

from tests.engine_support import ARRIVAL_MS, batch, subscribe, telemetry_engine

SQL = ("SELECT tumble(ts, INTERVAL '10 seconds') AS window, machine, count(*) AS n FROM telemetry "
       "GROUP BY window, machine")
T0 = 1_764_000_000_000


def rows_of(results, late=False):
    return [row for r in results if r.late == late for row in r.table.to_pylist()]


def test_window_closes_once_when_the_watermark_passes_its_end():
    engine = telemetry_engine(watermark="1s")
    subscribe(engine, SQL)
    assert rows_of(engine.process("telemetry", batch(engine, [T0, T0 + 9_999], ["a", "a"], [1.0, 2.0]))) == []
    # max event time 10,999 - 1 s delay = watermark 9,999: the window [0, 10 s) still waits
    assert rows_of(engine.process("telemetry", batch(engine, [T0 + 10_999], ["a"], [3.0]))) == []
    closed = rows_of(engine.process("telemetry", batch(engine, [T0 + 11_000], ["b"], [4.0])))
    assert [(r["machine"], r["n"], r["window"]["end"].timestamp() * 1000) for r in closed] == [("a", 2, T0 + 10_000)]
    assert rows_of(engine.process("telemetry", batch(engine, [T0 + 12_000], ["b"], [4.0]))) == []


def test_idle_stream_closes_windows_after_idle_timeout():
    engine = telemetry_engine(watermark="5s", idle_timeout="30s")
    sub = subscribe(engine, SQL)
    engine.process("telemetry", batch(engine, [T0 + 1_000], ["a"], [1.0], arrival_ms=ARRIVAL_MS))
    assert engine.tick(ARRIVAL_MS / 1000 + 29.9) == []
    closed = rows_of(engine.tick(ARRIVAL_MS / 1000 + 30.0))
    assert [(r["machine"], r["n"]) for r in closed] == [("a", 1)]
    assert sub.stats.state_rows == 0
    assert engine.tick(ARRIVAL_MS / 1000 + 60.0) == []  # emitted once
    # the watermark moved on with the wall clock: a row for the closed window is now late
    engine.process("telemetry", batch(engine, [T0 + 2_000], ["a"], [1.0], arrival_ms=ARRIVAL_MS + 61_000))
    assert sub.stats.late_rows == 1


def test_idle_timeout_zero_never_closes_by_the_clock():
    engine = telemetry_engine(watermark="5s", idle_timeout="0s")
    subscribe(engine, SQL)
    engine.process("telemetry", batch(engine, [T0 + 1_000], ["a"], [1.0]))
    assert engine.tick(ARRIVAL_MS / 1000 + 1e6) == []


def test_late_rows_are_counted_and_returned_with_stream_columns():
    engine = telemetry_engine(watermark="0s")
    sub = subscribe(engine, SQL, late_output="late/{machine}")
    engine.process("telemetry", batch(engine, [T0, T0 + 20_000], ["a", "a"], [1.0, 2.0]))
    results = engine.process("telemetry", batch(engine, [T0 + 5_000, T0 + 25_000, None], ["x", "a", "y"],
                                                [7.0, 3.0, 8.0]))
    late = rows_of(results, late=True)
    assert [(r["machine"], r["temp"]) for r in late] == [("x", 7.0), ("y", 8.0)]  # a row without event time too
    assert set(late[0]) == set(engine.streams["telemetry"].full_schema().names)
    assert sub.stats.late_rows == 2


def test_late_rows_without_late_output_are_counted_only():
    engine = telemetry_engine(watermark="0s")
    sub = subscribe(engine, SQL)
    engine.process("telemetry", batch(engine, [T0 + 20_000], ["a"], [1.0]))
    assert rows_of(engine.process("telemetry", batch(engine, [T0], ["a"], [1.0])), late=True) == []
    assert sub.stats.late_rows == 1


def test_a_stream_with_a_backlog_is_not_idle():
    """Rows still waiting for the engine (the runtime `touch`es their stream): its windows stay open even
    when the newest processed row is older than idle_timeout."""
    engine = telemetry_engine(idle_timeout="5s")
    subscribe(engine, "SELECT tumble(ts, INTERVAL '10 seconds') AS w, count(*) AS n FROM telemetry GROUP BY w")
    engine.process("telemetry", batch(engine, [ARRIVAL_MS], ["m1"], [20.0]))
    later = ARRIVAL_MS / 1000 + 60
    engine.watermarks["telemetry"].touch(later - 1)
    assert engine.tick(later) == []
    assert [r.table.column("n").to_pylist() for r in engine.tick(later + 10)] == [[1]]
