"""Lookup tables: joined from any subscription, reloaded when the file changes, atomically, and a bad
reload keeps the previous contents."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.engine_support import batch, subscribe, telemetry_engine

T0 = 1_764_000_000_000
PER_ROW = "SELECT t.machine, m.model, t.temp FROM telemetry t JOIN machines m USING (machine)"
WINDOWED = ("SELECT tumble(ts, INTERVAL '10 seconds') AS window, m.model, count(*) AS n, max(t.temp - m.max_temp) "
            "AS over FROM telemetry t JOIN machines m USING (machine) GROUP BY window, m.model")


def write_csv(path: Path, text: str, mtime: float) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, path)


def reload(engine) -> None:
    """Two ticks: the change is seen, then read once it stayed the same for a tick."""
    engine.tick(0.0)
    engine.tick(0.0)


def results(engine, ms, machines, temps):
    out = engine.process("telemetry", batch(engine, ms, machines, temps))
    return {r.subscription.name: r.table.to_pylist() for r in out}


def test_join_and_reload_while_rows_flow(tmp_path):
    path = tmp_path / "machines.csv"
    write_csv(path, "machine,model,max_temp\na,M1,50\nb,M2,60\n", 1_000_000)
    engine = telemetry_engine(watermark="0s", tables={"machines": {"path": str(path)}})
    subscribe(engine, PER_ROW, name="rows")
    subscribe(engine, WINDOWED, name="windows")
    before = results(engine, [T0, T0 + 1], ["a", "b"], [55.0, 70.0])
    assert sorted((r["machine"], r["model"]) for r in before["rows"]) == [("a", "M1"), ("b", "M2")]

    write_csv(path, "machine,model,max_temp\na,M1,50\nb,M1,65\nc,M3,10\n", 2_000_000)
    engine.tick(0.0)  # seen, not yet read: rows still join the old table
    still_old = results(engine, [T0 + 2], ["b"], [70.0])
    assert [r["model"] for r in still_old["rows"]] == ["M2"]
    engine.tick(0.0)
    assert engine.lookups["machines"].reloads == 1
    after = results(engine, [T0 + 3, T0 + 4], ["b", "c"], [70.0, 20.0])
    assert sorted((r["machine"], r["model"]) for r in after["rows"]) == [("b", "M1"), ("c", "M3")]

    closed = results(engine, [T0 + 10_000], ["z"], [0.0])["windows"]  # "z" joins nothing; the window closes
    by_model = {r["model"]: (r["n"], r["over"]) for r in closed}
    # each row joined the table as it was when the row arrived: old (a->M1, b->M2 max 60), new (b->M1 max 65, c->M3)
    assert by_model == {"M1": (2, 5.0), "M2": (2, 10.0), "M3": (1, 10.0)}


def test_failed_reload_keeps_previous_table(tmp_path):
    path = tmp_path / "machines.csv"
    write_csv(path, "machine,model,max_temp\na,M1,50\n", 1_000_000)
    engine = telemetry_engine(tables={"machines": {"path": str(path)}})
    subscribe(engine, PER_ROW, name="rows")
    write_csv(path, 'machine,model,max_temp\na,"M1\n', 2_000_000)  # unterminated quote: unreadable
    reload(engine)
    write_csv(path, "machine,kind\na,X\n", 3_000_000)  # readable, but the subscription needs `model`
    reload(engine)
    lookup = engine.lookups["machines"]
    assert (lookup.reloads, lookup.reload_errors) == (0, 2)
    assert "subscription rows would fail" in lookup.last_error
    assert results(engine, [T0], ["a"], [1.0])["rows"] == [{"machine": "a", "model": "M1", "temp": 1.0}]
    write_csv(path, "machine,model,max_temp\na,M9,50\n", 4_000_000)  # fixed: picked up
    reload(engine)
    assert results(engine, [T0 + 1], ["a"], [1.0])["rows"][0]["model"] == "M9"


def test_parquet_lookup_table_reloads(tmp_path):
    path = tmp_path / "machines.parquet"
    pq.write_table(pa.table({"machine": ["a"], "model": ["P1"], "max_temp": [1.0]}), path)
    engine = telemetry_engine(tables={"machines": {"path": str(path)}})
    subscribe(engine, PER_ROW, name="rows")
    tmp = tmp_path / "next.tmp"
    pq.write_table(pa.table({"machine": ["a"], "model": ["P2"], "max_temp": [1.0]}), tmp)
    os.utime(tmp, (2_000_000, 2_000_000))
    os.replace(tmp, path)
    reload(engine)
    assert results(engine, [T0], ["a"], [1.0])["rows"][0]["model"] == "P2"
