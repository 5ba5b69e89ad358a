"""Golden SQL cases (tests/sql/*.toml): our engine vs DuckDB computing the same windows as a batch.

Each case gives input rows in arrival order (listed, or generated with seeded disorder, gaps and
late rows), the micro-batch size, the stream's watermark delay, the subscription's SQL, and a
DuckDB query that computes the expected result over the table `input` with columns
`ms` (event time, epoch ms), `ts`, `machine`, `temp`, `rpm`, `ok` and `wm`: the watermark when the
row's micro-batch arrived (max event time of earlier batches minus the delay), which is all the
DuckDB query needs to leave out what arrived too late. Window bounds in DuckDB are epoch
arithmetic on `ms`, never our code. After the last batch a tick far in the future closes every
window (the idle timeout), so every window is compared.
"""

from __future__ import annotations

import math
import random
import tomllib
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from arros_mqtt.config import SubscriptionConfig, parse_config
from arros_mqtt.core.topics import OutputTemplate
from arros_mqtt.engine import Engine

CASES = sorted((Path(__file__).parent.parent / "sql").glob("*.toml"))
ARRIVAL = 1_800_000_000.0  # processing time of every batch (seconds); the final tick is far after it
NO_WATERMARK = -(2**62)


def load(path: Path) -> dict:
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def generate(spec: dict) -> list[dict]:
    """Rows in arrival order: event times step by `step_ms` (skipping `gaps`), arrive jittered by up to
    `disorder_ms`; every `late_every`-th row arrives `late_ms` later than its neighbours."""
    rng = random.Random(spec.get("seed", 1))
    rows, t, i = [], spec.get("start_ms", 1_764_000_000_000), 0
    gaps = [tuple(g) for g in spec.get("gaps", [])]
    while len(rows) < spec["rows"]:
        t += spec["step_ms"]
        offset = t - spec.get("start_ms", 1_764_000_000_000)
        if any(a <= offset < b for a, b in gaps):
            continue
        i += 1
        machine = f"m{rng.randrange(spec['machines'])}"
        if spec.get("null_keys") and i % spec["null_keys"] == 0:
            machine = None
        temp = None if spec.get("null_values") and i % spec["null_values"] == 0 else round(rng.uniform(20, 100), 2)
        arrival = t + rng.uniform(-spec.get("disorder_ms", 0), spec.get("disorder_ms", 0))
        if spec.get("late_every") and i % spec["late_every"] == 0:
            arrival += spec["late_ms"]
        rows.append({"ms": t, "machine": machine, "temp": temp, "rpm": rng.randrange(500, 3000),
                     "ok": rng.random() > 0.2, "arrival": arrival})
    rows.sort(key=lambda r: r["arrival"])
    return rows


def listed(case: dict) -> list[dict]:
    rows = []
    for ms, machine, temp in case["rows"]:
        rows.append({"ms": ms, "machine": machine, "temp": temp, "rpm": 1000, "ok": True})
    return rows


def batches_of(rows: list[dict], case: dict) -> list[list[dict]]:
    if "batches" in case:
        out, pos = [], 0
        for size in case["batches"]:
            out.append(rows[pos:pos + size])
            pos += size
        assert pos == len(rows), "batches must add up to the rows"
        return out
    size = case.get("batch_rows", 100)
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def stream_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    return pa.table({
        "ts": pa.array([r["ms"] for r in rows], pa.int64()).cast(pa.timestamp("ms")),
        "temp": pa.array([r["temp"] for r in rows], pa.float64()),
        "rpm": pa.array([r["rpm"] for r in rows], pa.int64()),
        "ok": pa.array([r["ok"] for r in rows], pa.bool_()),
        "machine": pa.array([r["machine"] for r in rows], pa.string()),
        "_topic": pa.array([f"f/{r['machine']}" for r in rows], pa.string()),
        "_received_at": pa.array([int(ARRIVAL * 1000)] * len(rows), pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
    }, schema=schema)


def engine_for(case: dict) -> Engine:
    config = parse_config({
        "streams": {"telemetry": {
            "topic": "f/{machine}", "event_time": "ts", "watermark": f"{case.get('watermark_ms', 0)}ms",
            "schema": {"ts": "timestamp[ms]", "temp": "float64", "rpm": "int64", "ok": "bool"},
        }},
    })
    return Engine(config.streams)


def run_engine(case: dict, batches: list[list[dict]]) -> tuple[list[dict], int, Engine]:
    engine = engine_for(case)
    sub = engine.add(SubscriptionConfig(name="golden", sql=case["sql"], output=OutputTemplate.parse("out/x"),
                                        late_output=OutputTemplate.parse("late/x")))
    schema = engine.streams["telemetry"].full_schema()
    out, late = [], 0
    for batch in batches:
        for result in engine.process("telemetry", stream_table(batch, schema)):
            if result.late:
                late += result.table.num_rows
            else:
                out += result.table.to_pylist()
    for result in engine.tick(ARRIVAL + 1_000_000):
        out += result.table.to_pylist()
    assert sub.stats.errors == 0, sub.stats.last_error
    assert sub.stats.late_rows == late
    if sub.shape.kind == "windowed":
        assert sub.stats.state_rows == 0, "every window closed, so no state is left"
    return [flatten(r) for r in out], late, engine


def flatten(row: dict) -> dict:
    """Our rows in DuckDB's terms: a window struct becomes window_start/window_end, timestamps epoch ms."""
    flat = {}
    for key, value in row.items():
        if isinstance(value, dict) and set(value) == {"start", "end"}:
            flat[f"{key}_start"] = _ms(value["start"])
            flat[f"{key}_end"] = _ms(value["end"])
        else:
            flat[key] = _ms(value) if hasattr(value, "timestamp") else value
    return flat


def _ms(value) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        import datetime as dt

        value = value.replace(tzinfo=dt.UTC)
    return round(value.timestamp() * 1000)


def duckdb_input(batches: list[list[dict]], watermark_ms: int) -> pa.Table:
    rows, high = [], None
    for batch in batches:
        wm = NO_WATERMARK if high is None else high - watermark_ms
        for r in batch:
            rows.append({**r, "wm": wm})
        high = max([high or NO_WATERMARK, *(r["ms"] for r in batch)])
    return pa.table({
        "ms": pa.array([r["ms"] for r in rows], pa.int64()),
        "ts": pa.array([r["ms"] for r in rows], pa.int64()).cast(pa.timestamp("ms")),
        "machine": pa.array([r["machine"] for r in rows], pa.string()),
        "temp": pa.array([r["temp"] for r in rows], pa.float64()),
        "rpm": pa.array([r["rpm"] for r in rows], pa.int64()),
        "ok": pa.array([r["ok"] for r in rows], pa.bool_()),
        "wm": pa.array([r["wm"] for r in rows], pa.int64()),
    })


def run_duckdb(case: dict, batches: list[list[dict]]) -> tuple[list[dict], int]:
    con = duckdb.connect()
    con.register("input", duckdb_input(batches, case.get("watermark_ms", 0)))
    expected = con.sql(case["duckdb"]).to_arrow_table().to_pylist()
    late = con.sql(case["late"]).fetchall()[0][0] if "late" in case else 0
    return [{k: _ms(v) if hasattr(v, "timestamp") else v for k, v in r.items()} for r in expected], late


def canonical(rows: list[dict]) -> list[tuple]:
    def key(value):
        if isinstance(value, float):
            return ("f", round(value, 6))
        return (type(value).__name__, value)
    return sorted(tuple(sorted((k, key(v)) for k, v in r.items())) for r in rows)


def assert_same_rows(ours: list[dict], expected: list[dict]) -> None:
    assert len(ours) == len(expected), f"{len(ours)} rows, DuckDB has {len(expected)}"
    if ours:
        assert set(ours[0]) == set(expected[0]), f"columns {sorted(ours[0])} vs DuckDB {sorted(expected[0])}"
    for mine, theirs in zip(sorted(ours, key=_sort_key), sorted(expected, key=_sort_key), strict=True):
        for column, value in theirs.items():
            got = mine[column]
            if isinstance(value, float) and got is not None:
                assert math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-9), (column, mine, theirs)
            else:
                assert got == value, (column, mine, theirs)


def _sort_key(row: dict) -> tuple:
    return tuple((v is None, "" if v is None else str(v) if not isinstance(v, float) else f"{v:.6f}")
                 for _, v in sorted(row.items()) if not isinstance(v, float))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path):
    case = load(path)
    rows = generate(case["generate"]) if "generate" in case else listed(case)
    batches = batches_of(rows, case)
    ours, late, _ = run_engine(case, batches)
    expected, expected_late = run_duckdb(case, batches)
    assert late == expected_late
    if "min_late" in case:
        assert late >= case["min_late"], "the case should exercise late rows"
    assert_same_rows(ours, expected)
    assert len(expected) >= case.get("min_rows", 1)


def test_cases_exist():
    names = {p.stem for p in CASES}
    for kind in ("tumble", "hop", "session"):
        assert any(n.startswith(kind) for n in names)
