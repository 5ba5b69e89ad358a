"""Feeding an Engine directly (no broker): a one-stream config and stream batches built from columns."""

from __future__ import annotations

import pyarrow as pa

from arros_mqtt.config import SubscriptionConfig, parse_config
from arros_mqtt.core.topics import OutputTemplate
from arros_mqtt.engine import Engine

ARRIVAL_MS = 1_800_000_000_000


def telemetry_engine(watermark: str = "1s", idle_timeout: str = "30s", tables: dict | None = None) -> Engine:
    config = parse_config({
        "streams": {"telemetry": {
            "topic": "f/{machine}", "event_time": "ts", "watermark": watermark, "idle_timeout": idle_timeout,
            "schema": {"ts": "timestamp[ms]", "temp": "float64", "rpm": "int64"},
        }},
        "tables": tables or {},
    })
    return Engine(config.streams, config.tables)


def subscribe(engine: Engine, sql: str, name: str = "s", late_output: str | None = None):
    return engine.add(SubscriptionConfig(name=name, sql=sql, output=OutputTemplate.parse("out/x"),
                                         late_output=OutputTemplate.parse(late_output) if late_output else None))


def batch(engine: Engine, ms: list[int], machines: list[str | None], temps: list[float | None],
          arrival_ms: int = ARRIVAL_MS) -> pa.Table:
    n = len(ms)
    return pa.table({
        "ts": pa.array(ms, pa.int64()).cast(pa.timestamp("ms")),
        "temp": pa.array(temps, pa.float64()),
        "rpm": pa.array([1000] * n, pa.int64()),
        "machine": pa.array(machines, pa.string()),
        "_topic": pa.array(["f/x"] * n, pa.string()),
        "_received_at": pa.array([arrival_ms] * n, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
    }, schema=engine.streams["telemetry"].full_schema())
