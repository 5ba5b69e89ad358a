"""The catalogue as Arrow tables: `system.streams`, `system.subscriptions`, `system.dead_letters`.

Built from counters the engine thread updates; a reader on another thread sees each counter as it was
at some instant (plain integers), which is what a status page needs.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from arros_mqtt.config import StreamConfig
from arros_mqtt.engine import Subscription

STREAMS_SCHEMA = pa.schema([
    ("name", pa.string()), ("topic", pa.string()), ("format", pa.string()), ("schema", pa.string()),
    ("event_time", pa.string()), ("messages", pa.int64()), ("rows", pa.int64()), ("dead_letters", pa.int64()),
])
SUBSCRIPTIONS_SCHEMA = pa.schema([
    ("name", pa.string()), ("sql", pa.string()), ("kind", pa.string()), ("stream", pa.string()),
    ("output", pa.string()), ("origin", pa.string()), ("status", pa.string()), ("paused_reason", pa.string()),
    ("batches", pa.int64()), ("rows_in", pa.int64()), ("rows_out", pa.int64()), ("messages_out", pa.int64()),
    ("late_rows", pa.int64()), ("errors", pa.int64()), ("last_error", pa.string()), ("state_rows", pa.int64()),
    ("state_bytes", pa.int64()), ("last_emit", pa.timestamp("ms", tz="UTC")),
])
DEAD_LETTERS_SCHEMA = pa.schema([
    ("received_at", pa.timestamp("ms", tz="UTC")), ("stream", pa.string()), ("topic", pa.string()),
    ("error", pa.string()), ("payload", pa.binary()),
])


def streams_table(streams: dict[str, StreamConfig], stats: dict[str, Any]) -> pa.Table:
    rows = []
    for name in sorted(streams):
        stream, counters = streams[name], stats.get(name)
        schema = stream.schema
        rows.append({
            "name": name,
            "topic": stream.topic.text if stream.topic is not None else None,
            "format": stream.format,
            "schema": ", ".join(f"{f.name} {f.type}" for f in schema) if schema is not None else None,
            "event_time": stream.event_time,
            "messages": getattr(counters, "messages", 0),
            "rows": getattr(counters, "rows", 0),
            "dead_letters": getattr(counters, "deadletters", 0),
        })
    return pa.Table.from_pylist(rows, STREAMS_SCHEMA)


def subscriptions_table(subscriptions: dict[str, Subscription], paused: dict[str, str]) -> pa.Table:
    rows = []
    for name in sorted(subscriptions):
        subscription = subscriptions[name]
        config, stats, reason = subscription.config, subscription.stats, paused.get(name)
        rows.append({
            "name": name, "sql": config.sql, "kind": subscription.shape.kind, "stream": subscription.shape.stream,
            "output": config.output.text if config.output is not None else None, "origin": config.origin,
            "status": "paused" if reason is not None else "running", "paused_reason": reason,
            "batches": stats.batches, "rows_in": stats.rows_in, "rows_out": stats.rows_out,
            "messages_out": stats.messages_out, "late_rows": stats.late_rows, "errors": stats.errors,
            "last_error": stats.last_error, "state_rows": stats.state_rows, "state_bytes": stats.state_bytes,
            "last_emit": int(stats.last_emit * 1000) if stats.last_emit is not None else None,
        })
    return pa.Table.from_pylist(rows, SUBSCRIPTIONS_SCHEMA)


def dead_letters_table(letters: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(letters, DEAD_LETTERS_SCHEMA)
