"""What the control plane shows of a subscription: its catalogue entry, its status, how it runs.

The catalogue entry (retained at `{prefix}/catalog/{name}`) is the definition plus what planning
found out (kind, stream, tables, result columns). The status (`{prefix}/status/{name}`) is the
counters. Both are plain dicts, encoded as JSON by the caller.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from arros_mqtt.config import StreamConfig
from arros_mqtt.control.store import definition_of
from arros_mqtt.engine import PER_ROW, RUNNING, WINDOWED, Subscription

# How the engine runs each kind of subscription and what it keeps between micro-batches.
HOW_IT_RUNS: dict[str, tuple[str, str]] = {
    PER_ROW: ("per-row: each micro-batch of the stream is filtered and projected; its result rows are "
              "published at once", "none: nothing is kept between micro-batches"),
    WINDOWED: ("windowed: one result row per group and window, emitted once when the watermark passes the "
               "window's end (append mode)", "partial aggregates per group and open window"),
    RUNNING: ("running aggregate: after each micro-batch, the updated rows of the groups that changed "
              "(update mode)", "partial aggregates per group"),
}


def catalog_topic(prefix: str, name: str) -> str:
    return f"{prefix}/catalog/{name}"


def status_topic(prefix: str, name: str) -> str:
    return f"{prefix}/status/{name}"


def shape_of(subscription: Subscription) -> dict[str, Any]:
    shape = subscription.shape
    runs, state = HOW_IT_RUNS.get(shape.kind, (shape.kind, "see the plan"))
    if subscription.holds_raw_rows:
        state = "the raw input rows of each open window (its aggregates cannot be merged incrementally)"
    return {
        "kind": shape.kind,
        "how": subscription.describe(),
        "stream": shape.stream,
        "tables": list(shape.tables),
        "columns": [{"name": f.name, "type": str(f.type)} for f in shape.output_schema],
        "runs": runs,
        "state": state,
    }


def catalog_entry(subscription: Subscription, created_at: str | None, version: str | None = None) -> dict[str, Any]:
    """`created_at` and `version` (control/versions.py): a run-time subscription's."""
    config = subscription.config
    entry: dict[str, Any] = {"name": config.name, "origin": config.origin, **definition_of(config)}
    shape = shape_of(subscription)
    entry.update(kind=shape["kind"], stream=shape["stream"], tables=shape["tables"], columns=shape["columns"])
    if created_at is not None:
        entry["created_at"] = created_at
    if version is not None:
        entry["version"] = version
    return entry


def stream_of(stream: StreamConfig, inferred: bool, extra_fields: dict[str, int]) -> dict[str, Any]:
    """The stream a subscription reads: its columns now (an inferred schema once the first micro-batch
    fixed it) and, when inferred, the rows per field it lacks."""
    info: dict[str, Any] = {"name": stream.name, "format": stream.format,
                            "schema": "inferred" if inferred else "declared",
                            "columns": {f.name: str(f.type) for f in stream.full_schema()}}
    if inferred:
        info["extra_fields"] = dict(extra_fields)
    return info


def status_of(subscription: Subscription, paused_reason: str | None) -> dict[str, Any]:
    stats = subscription.stats
    return {
        "name": subscription.name,
        "origin": subscription.config.origin,
        "kind": subscription.shape.kind,
        "paused": paused_reason is not None,
        "paused_reason": paused_reason,
        "batches": stats.batches,
        "rows_in": stats.rows_in,
        "rows_out": stats.rows_out,
        "messages_out": stats.messages_out,
        "messages_too_large": stats.messages_too_large,
        "late_rows": stats.late_rows,
        "errors": stats.errors,
        "last_error": stats.last_error,
        "rows_failed": stats.rows_failed,
        "state_rows": stats.state_rows,
        "state_bytes": stats.state_bytes,
        "last_emit": _rfc3339(stats.last_emit),
        "at": _rfc3339(dt.datetime.now(dt.UTC).timestamp()),
    }


def connector_status_topic(prefix: str, name: str) -> str:
    return f"{prefix}/connectors/{name}/status"


def connector_status(name: str, kind: str, stats: Any) -> dict[str, Any]:
    """A connector's health (`arros_mqtt.connectors.base.ConnectorStats`): is the PLC reachable, how often it failed."""
    return {
        "name": name,
        "kind": kind,
        "connected": stats.connected,
        "connects": stats.connects,
        "connection_failures": stats.connection_failures,
        "reads": stats.reads,
        "errors": stats.errors,
        "last_error": stats.last_error,
        "at": _rfc3339(dt.datetime.now(dt.UTC).timestamp()),
    }


def _rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
