"""What each page shows, as JSON-ready dicts: rendered into the HTML first, then sent again over
Server-Sent Events whenever it changes. Reads counters and snapshots; never changes anything."""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from arros_mqtt.control.catalog import connector_status, shape_of, status_of
from arros_mqtt.egress.encode import json_ready
from arros_mqtt.ops.health import health
from arros_mqtt.web.sampler import Sampler
from arros_mqtt.web.sources import WebSources

MAX_TABLE_ROWS = 50  # rows of a live table sent to the browser: the newest, newest first
MAX_STREAM_ROWS = 20
MAX_CHART_COLUMNS = 8


def overview(sources: WebSources, sampler: Sampler) -> dict[str, Any]:
    state = health(sources.health)
    streams = dict(sources.streams())
    subscriptions = subscription_rows(sources)
    cpu, rss = sampler.latest()
    lags = [lag for lag in (event_lag(sources, name) for name in streams) if lag is not None]
    connected = sources.health.receiving() if sources.health.receiving is not None else True
    return {
        "broker": sources.broker, "connected": "connected" if connected else "not connected",
        "status": state["status"], "reasons": "; ".join(state["reasons"]) or "none",
        "messages_in": sum(s.messages for s in streams.values()),
        "results_out": sum(s["messages_out"] for s in subscriptions),
        "deadletters": sum(s.deadletters for s in streams.values()),
        "pending": state["ingest"]["pending_messages"],
        "outputs_queued": (state["outputs"] or {}).get("queued", 0),
        "lag": f"{max(lags):.1f} s" if lags else "-",
        "cpu": "-" if cpu is None else f"{cpu:.1f} %", "rss": "-" if rss is None else f"{rss / 2**20:.1f} MiB",
        "rates": sampler.overview(),
        "connectors": [connector_status(name, c.kind, c.stats) for name, c in sorted(sources.connectors().items())],
        "streams": stream_rows(sources),
        "subscriptions": subscriptions,
    }


def stream_rows(sources: WebSources) -> list[dict[str, Any]]:
    stats = dict(sources.streams())
    rows = []
    for name, stream in sources.config.streams.items():
        counters = stats.get(name)
        lag = event_lag(sources, name)
        rows.append({"name": name, "topic": stream.topic.text if stream.topic else "(connector)",
                     "format": stream.format, "messages": getattr(counters, "messages", 0),
                     "rows": getattr(counters, "rows", 0), "deadletters": getattr(counters, "deadletters", 0),
                     "lag": "-" if lag is None else f"{lag:.1f} s"})
    return rows


def subscription_rows(sources: WebSources) -> list[dict[str, Any]]:
    engine = sources.engine
    paused = dict(engine.paused)
    rows = []
    for subscription in sorted(list(engine.subscriptions.values()), key=lambda s: s.name):
        config, stats = subscription.config, subscription.stats
        rows.append({"name": subscription.name, "kind": subscription.shape.kind, "stream": subscription.shape.stream,
                     "output": config.output.text if config.output else "-", "origin": config.origin,
                     "paused": paused.get(subscription.name) or "", "rows_in": stats.rows_in,
                     "rows_out": stats.rows_out, "messages_out": stats.messages_out, "late_rows": stats.late_rows,
                     "errors": stats.errors, "state_bytes": stats.state_bytes})
    return rows


def event_lag(sources: WebSources, stream: str) -> float | None:
    """Seconds between now and the stream's watermark (None before its first event time)."""
    watermark = sources.engine.watermarks.get(stream)
    value = getattr(watermark, "value", None)
    return None if value is None else max(0.0, time.time() - value / 1000)


def stream_page(sources: WebSources, sampler: Sampler, name: str) -> dict[str, Any]:
    stream = sources.engine.streams.get(name) or sources.config.streams[name]
    counters = dict(sources.streams()).get(name)
    lag = event_lag(sources, name)
    return {
        "name": name, "topic": stream.topic.text if stream.topic else "(connector)", "format": stream.format,
        "schema": [{"column": f.name, "type": str(f.type)} for f in stream.full_schema()],
        "schema_kind": "inferred" if stream.infers_schema else "declared",
        "messages": getattr(counters, "messages", 0), "rows": getattr(counters, "rows", 0),
        "deadletters": getattr(counters, "deadletters", 0), "lag": "-" if lag is None else f"{lag:.1f} s",
        "rates": sampler.stream(name),
        "latest": live_table(sources, "stream", name),
        "dead": dead_letters(sources, name),
    }


def subscription_page(sources: WebSources, sampler: Sampler, name: str) -> dict[str, Any]:
    subscription = sources.engine.subscriptions[name]
    config = subscription.config
    status = status_of(subscription, sources.engine.paused.get(name))
    shape = shape_of(subscription)
    latest = live_table(sources, "subscription", name)
    return {
        "name": name, "sql": config.sql.strip(), "kind": shape["kind"], "how": shape["runs"],
        "stream": shape["stream"], "output": config.output.text if config.output else "-", "origin": config.origin,
        "columns": shape["columns"], "status": status, "paused": status["paused_reason"] or "running",
        "rates": sampler.subscription(name),
        "latest": latest, "means": latest.pop("means", {}),
    }


def live_table(sources: WebSources, kind: str, name: str) -> dict[str, Any]:
    """The newest rows the live views hold of a stream or subscription, with the mean of each numeric
    column (what the subscription page's line chart plots over time)."""
    views = sources.live
    if views is None:
        return {"columns": [], "rows": [], "note": "live views are off"}
    try:
        table = views.stream(name) if kind == "stream" else views.subscription(name)
    except KeyError:
        return {"columns": [], "rows": [], "note": "nothing yet"}
    shown = MAX_STREAM_ROWS if kind == "stream" else MAX_TABLE_ROWS
    result = table_data(table.slice(max(0, table.num_rows - shown)), newest_first=True)
    if kind == "subscription":  # what its page charts
        result["means"] = numeric_means(table)
    result["version"] = views.version()
    return result


def dead_letters(sources: WebSources, stream: str) -> dict[str, Any]:
    views = sources.live
    if views is None:
        return {"columns": [], "rows": [], "note": "live views are off"}
    table = views.system_dead_letters()
    if "stream" in table.column_names:
        table = table.filter(pc.equal(table["stream"], stream))
    return table_data(table.slice(max(0, table.num_rows - MAX_STREAM_ROWS)), newest_first=True)


def table_data(table: pa.Table, newest_first: bool = False) -> dict[str, Any]:
    """Columns and rows (lists) of JSON-ready values: timestamps as RFC 3339, binary as text, a window
    as "start – end"."""
    ready = json_ready(table)
    columns = ready.column_names
    rows = [[_cell(row[c]) for c in columns] for row in ready.to_pylist()]
    return {"columns": columns, "rows": rows[::-1] if newest_first else rows}


def numeric_means(table: pa.Table) -> dict[str, float]:
    means = {}
    for field in table.schema:
        if len(means) >= MAX_CHART_COLUMNS:
            break
        if (pa.types.is_integer(field.type) or pa.types.is_floating(field.type)) and table.num_rows:
            value = pc.mean(table[field.name]).as_py()
            if value is not None:
                means[field.name] = round(value, 4)
    return means


def chart_of(table: pa.Table) -> dict[str, Any]:
    """A query result as a chart: its numeric columns against its first timestamp column (or the row number)."""
    x_name = next((f.name for f in table.schema if pa.types.is_timestamp(f.type)), None)
    if x_name is not None:  # uPlot wants x ascending, without gaps
        table = table.filter(pc.is_valid(table[x_name])).sort_by(x_name)
        seconds = pc.cast(pc.cast(table[x_name], pa.timestamp("ms", tz="UTC")), pa.int64())
        x = [None if v is None else v / 1000 for v in seconds.to_pylist()]
    else:
        x = list(range(table.num_rows))
    series = {f.name: table[f.name].to_pylist() for f in table.schema
              if (pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type))}
    series = {k: [None if v is None else float(v) for v in values]
              for k, values in list(series.items())[:MAX_CHART_COLUMNS]}
    return {"x": x, "time": x_name is not None, "series": series}


def _cell(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict) and set(value) == {"start", "end"}:  # a window
        end = str(value["end"])
        same_day = str(value["start"])[:11] == end[:11]
        return f"{value['start']} – {end[11:] if same_day else end}"
    if isinstance(value, dict | list):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN has no JSON
        return None
    return value
