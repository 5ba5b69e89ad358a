"""Which time puts a row into an hour partition, and splitting a batch by hour without row loops.

A stream's rows go by their event time (the stream's `event_time` column), else by arrival
(`_received_at`). A subscription's result rows go by the first of these the result has:
  1. a window value (a struct column with timestamp fields `start` and `end`): its `start`;
  2. the stream's event-time column, selected under its own name;
  3. `_received_at`, selected;
  4. none of these: the time the result was archived (emit time).
A null partition time falls back to `_received_at` for stream rows and to emit time for results.
Timestamps without a time zone are taken as UTC, as everywhere else in Arros.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arros_mqtt.config import StreamConfig

RECEIVED_AT = "_received_at"
_MS_PER_HOUR = 3_600_000


@dataclass(frozen=True)
class PartitionTime:
    """Where a table's partition time comes from: a column, or a field of a struct column."""

    column: str | None  # None: emit time
    field: str | None = None
    fallback: str | None = None  # a column used where `column` is null; emit time when None

    @property
    def description(self) -> str:
        """What the file metadata says the data is partitioned by."""
        if self.column is None:
            return "emit time"
        return f"{self.column}.{self.field}" if self.field else self.column

    def hours(self, table: pa.Table, now_ms: int) -> np.ndarray:
        """The epoch hour (UTC) of every row, as int64."""
        if self.column is None:
            return np.full(table.num_rows, now_ms // _MS_PER_HOUR, dtype=np.int64)
        values = table.column(self.column)
        if self.field is not None:
            values = pc.struct_field(values, self.field)
        ms = _as_ms(values)
        if ms.null_count and self.fallback is not None:
            ms = pc.coalesce(ms, _as_ms(table.column(self.fallback)))
        if ms.null_count:
            ms = pc.fill_null(ms, now_ms)
        return np.floor_divide(ms.to_numpy(), _MS_PER_HOUR)


def stream_partition_time(stream: StreamConfig) -> PartitionTime:
    return PartitionTime(stream.event_time or RECEIVED_AT, fallback=RECEIVED_AT)


def result_partition_time(schema: pa.Schema, event_time: str | None) -> PartitionTime:
    """The partition time of a subscription's results, from their schema (see the module doc)."""
    fallback = RECEIVED_AT if _is_timestamp(schema, RECEIVED_AT) else None
    for field in schema:
        if _is_window(field.type):
            return PartitionTime(field.name, "start", fallback)
    for name in (event_time, RECEIVED_AT):
        if name is not None and _is_timestamp(schema, name):
            return PartitionTime(name, fallback=fallback)
    return PartitionTime(None)


def split_by_hour(table: pa.Table, hours: np.ndarray) -> Iterator[tuple[int, pa.Table]]:
    """`(hour, rows of that hour)` in arrival order within each hour: one stable sort, then slices."""
    if table.num_rows == 0:
        return
    first = int(hours[0])
    if (hours == first).all():  # the usual case: a micro-batch within one hour
        yield first, table
        return
    order = np.argsort(hours, kind="stable")
    ordered = hours[order]
    taken = table.take(pa.array(order))
    starts = np.concatenate(([0], np.flatnonzero(np.diff(ordered)) + 1))
    ends = np.append(starts[1:], len(ordered))
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        yield int(ordered[start]), taken.slice(start, end - start)


def _as_ms(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Epoch milliseconds as one int64 array (time zones do not matter: the values are UTC-based)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return pc.cast(pc.cast(values, pa.timestamp("ms", tz=values.type.tz), safe=False), pa.int64())


def _is_window(kind: pa.DataType) -> bool:
    if not pa.types.is_struct(kind):
        return False
    indexes = [kind.get_field_index(name) for name in ("start", "end")]
    return all(i >= 0 and pa.types.is_timestamp(kind.field(i).type) for i in indexes)


def _is_timestamp(schema: pa.Schema, name: str) -> bool:
    index = schema.get_field_index(name)
    return index >= 0 and pa.types.is_timestamp(schema.field(index).type)
