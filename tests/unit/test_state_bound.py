"""State grows with keys x open windows, not with rows: 1M rows over 100 keys into a 10 s tumbling window."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tests.engine_support import ARRIVAL_MS, subscribe, telemetry_engine

ROWS, KEYS, BATCH = 1_000_000, 100, 10_000


def test_state_stays_bounded_over_a_million_rows():
    engine = telemetry_engine(watermark="5s")
    sub = subscribe(engine, "SELECT tumble(ts, INTERVAL '10 seconds') AS window, machine, count(*) AS n, "
                            "avg(temp) AS a, max(temp) AS hi, min(temp) AS lo FROM telemetry GROUP BY window, machine")
    rng = np.random.default_rng(1)
    start = 1_764_000_000_000
    ms = start + np.arange(ROWS, dtype=np.int64) + rng.integers(-300, 301, ROWS)  # 1 ms apart, +-300 ms disorder
    machines = pa.array([f"m{i}" for i in range(KEYS)])
    key_index = rng.integers(0, KEYS, ROWS)
    temps = rng.uniform(20, 100, ROWS)
    schema = engine.streams["telemetry"].full_schema()
    peak, emitted = 0, 0
    for first in range(0, ROWS, BATCH):
        part = slice(first, first + BATCH)
        n = BATCH
        table = pa.table({
            "ts": pa.array(ms[part]).cast(pa.timestamp("ms")), "temp": pa.array(temps[part]),
            "rpm": pa.array(np.full(n, 1000, dtype=np.int64)), "machine": machines.take(pa.array(key_index[part])),
            "_topic": pa.array(["f/x"] * n),
            "_received_at": pa.array(np.full(n, ARRIVAL_MS, dtype=np.int64)).cast(pa.timestamp("ms", tz="UTC")),
        }, schema=schema)
        for result in engine.process("telemetry", table):
            emitted += result.table.num_rows
        peak = max(peak, sub.stats.state_rows)
    assert sub.stats.errors == 0, sub.stats.last_error
    assert sub.stats.late_rows == 0
    assert emitted > 90 * KEYS  # ~100 windows closed while rows flowed
    assert 0 < peak <= 20_000, f"state peaked at {peak} rows"
