"""`LiveViews`: what Flight SQL's `live.*` / `system.*` tables and the web console read while the
engine runs.

The engine thread feeds it (the pipeline's row, result and dead-letter sinks) and other threads read
snapshots; one lock keeps the two apart, held for appends and for building a snapshot, never across
I/O. Memory is bounded by `[live]`: rows and bytes per stream, rows per subscription, dead letters.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from arros_mqtt.config import LiveConfig, StreamConfig
from arros_mqtt.decode.stream_decoder import BadMessage
from arros_mqtt.engine import Result, Subscription
from arros_mqtt.live.latest_by_key import LatestByKey
from arros_mqtt.live.recent_rows import RecentRows
from arros_mqtt.live.system_tables import DEAD_LETTERS_SCHEMA, dead_letters_table, streams_table, subscriptions_table


@dataclass(frozen=True)
class LiveSources:
    """What the system tables read: the streams (their config and counters) and the subscriptions."""

    streams: Callable[[], dict[str, StreamConfig]]
    stream_stats: Callable[[], dict[str, Any]]  # name -> counters with messages, rows, deadletters
    subscriptions: Callable[[], dict[str, Subscription]]
    paused: Callable[[], dict[str, str]]  # name -> why it is paused


class LiveViews:
    def __init__(self, config: LiveConfig, sources: LiveSources) -> None:
        self.config = config
        self.sources = sources
        self._lock = threading.Lock()
        self._streams: dict[str, RecentRows] = {}
        self._results: dict[str, tuple[Subscription, RecentRows | LatestByKey]] = {}
        self._dead_letters: deque[dict[str, Any]] = deque(maxlen=config.dead_letters)
        self._version = 0

    # fed on the engine thread

    def add_stream_rows(self, stream: str, table: pa.Table) -> None:
        with self._lock:
            rows = self._streams.get(stream)
            if rows is None:
                rows = self._streams[stream] = RecentRows(self.config.max_rows, self.config.max_bytes)
            rows.add(table)
            self._version += 1

    def add_result(self, result: Result) -> None:
        if result.late:
            return
        subscription = result.subscription
        with self._lock:
            held = self._results.get(subscription.name)
            if held is None or held[0] is not subscription:  # new, or replaced: its old results go
                held = self._results[subscription.name] = (subscription, self._keeper(subscription))
            try:
                held[1].add(result.table)
            except pa.ArrowException:  # keys of a type Arrow cannot group by: keep recent rows instead
                keeper = RecentRows(self.config.result_rows)
                keeper.add(result.table)
                self._results[subscription.name] = (subscription, keeper)
            self._version += 1

    def add_dead_letters(self, stream: str, bad: list[BadMessage]) -> None:
        with self._lock:
            for message in bad[-self.config.dead_letters:] if self.config.dead_letters else ():
                self._dead_letters.append({"received_at": message.received_ms, "stream": stream,
                                           "topic": message.topic, "error": message.error,
                                           "payload": message.payload})
            self._version += 1

    # read from any thread

    def version(self) -> int:
        """Increases whenever anything here changed: cheap change detection for live pages."""
        return self._version

    def stream_names(self) -> list[str]:
        return sorted(self.sources.streams())

    def subscription_names(self) -> list[str]:
        return sorted(self.sources.subscriptions())

    def stream(self, name: str) -> pa.Table:
        """The most recent rows of a stream (with `_topic`, `_received_at`), oldest first; KeyError if unknown."""
        stream = self.sources.streams()[name]
        schema = stream.full_schema() if stream.schema is not None else None
        with self._lock:
            rows = self._streams.get(name)
            return rows.table(schema) if rows is not None else (schema or pa.schema([])).empty_table()

    def subscription(self, name: str) -> pa.Table:
        """Its latest results: per group key for running aggregates and windows (the last closed window
        of each key), the most recent rows otherwise; KeyError if there is no such subscription."""
        subscription = self.sources.subscriptions()[name]
        schema = subscription.shape.output_schema
        with self._lock:
            held = self._results.get(name)
            if held is None or held[0] is not subscription:
                return schema.empty_table()
            return held[1].table(schema)

    def system_streams(self) -> pa.Table:
        return streams_table(self.sources.streams(), self.sources.stream_stats())

    def system_subscriptions(self) -> pa.Table:
        return subscriptions_table(self.sources.subscriptions(), self.sources.paused())

    def system_dead_letters(self) -> pa.Table:
        with self._lock:
            letters = list(self._dead_letters)
        return dead_letters_table(letters) if letters else DEAD_LETTERS_SCHEMA.empty_table()

    def _keeper(self, subscription: Subscription) -> RecentRows | LatestByKey:
        keys = group_key_columns(subscription)
        if keys is None:
            return RecentRows(self.config.result_rows)
        return LatestByKey(keys, self.config.result_rows)


def group_key_columns(subscription: Subscription) -> list[str] | None:
    """The result columns that are its GROUP BY keys (the window not among them); None for a per-row
    subscription, or when some key is not a result column (then recent rows are kept)."""
    aggregate = subscription.plan.aggregate
    if aggregate is None:
        return None
    query, names = aggregate.query, subscription.shape.output_schema.names
    if query.select_refs is not None:
        return [names[i] for i, (kind, _) in enumerate(query.select_refs) if kind == "key"]
    # a select list with expressions (round(avg(x)), ...): keys selected under their own name still show
    wanted = {span.text.strip('"').lower() for span in query.key_exprs}
    keys = [name for name in names if name.lower() in wanted]
    return keys if len(keys) == len(wanted) else None
