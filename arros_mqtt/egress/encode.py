"""Result tables -> MQTT messages (topic, payload), per docs/results.md.

Conversions that JSON and msgpack cannot express are done per column in Arrow before rows are
built: timestamps become RFC 3339 UTC strings (or epoch milliseconds), decimals floats, dates
ISO strings. Then one message per row, or one per micro-batch and topic with `batch = true`.
`format = "arrow"` (always batched) keeps the columns as they are: see `arrow_ipc.py`.

`encode_slices` encodes one message per row a slice of about `SLICE_BYTES` of Arrow at a time, so a
result of 200 MB never exists as Python rows and payloads all at once (that took 6x its size in RSS).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import functools
from collections.abc import Callable, Iterator

import msgpack
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from arros_mqtt.config import SubscriptionConfig
from arros_mqtt.core.topics import OutputTemplate
from arros_mqtt.egress.arrow_ipc import arrow_messages

Message = tuple[str, bytes]
_RFC3339 = "%Y-%m-%dT%H:%M:%SZ"
SLICE_BYTES = 1024 * 1024  # Arrow bytes of result rows encoded (and handed over) at once
SLICE_ROWS = 4096  # ... and at most this many rows


def encode_slices(table: pa.Table, config: SubscriptionConfig, template: OutputTemplate) -> Iterator[list[Message]]:
    """`encode_results` over consecutive slices of `table`; one slice (the whole table) when the result is
    batched (one message per topic needs all its rows) or small."""
    rows = table.num_rows
    if config.batch or config.format == "arrow" or rows <= 1:
        yield encode_results(table, config, template)
        return
    per_row = max(1, table.nbytes // rows)
    step = max(1, min(SLICE_ROWS, SLICE_BYTES // per_row))
    for offset in range(0, rows, step):
        yield encode_results(table.slice(offset, step), config, template)


def encode_results(table: pa.Table, config: SubscriptionConfig, template: OutputTemplate) -> list[Message]:
    topics = template.render(table)
    if config.format == "arrow":
        return arrow_messages(table, topics)
    rows = json_ready(table, config.timestamps).to_pylist()
    dump = _DUMPERS[config.format]
    if not config.batch:
        if isinstance(topics, str):
            return [(topics, dump(row)) for row in rows]
        return [(topic, dump(row)) for topic, row in zip(topics, rows, strict=True)]
    if isinstance(topics, str):
        return [(topics, dump(rows))]
    grouped: dict[str, list] = {}
    for topic, row in zip(topics, rows, strict=True):
        grouped.setdefault(topic, []).append(row)
    return [(topic, dump(group)) for topic, group in grouped.items()]


def json_ready(table: pa.Table, timestamps: str = "rfc3339") -> pa.Table:
    """Columns converted to what JSON and msgpack can carry, in Arrow (per column, not per row)."""
    columns = [_convert(column, timestamps) for column in table.columns]
    return pa.Table.from_arrays(columns, names=table.column_names)


def _convert(column: pa.ChunkedArray | pa.Array, timestamps: str) -> pa.ChunkedArray | pa.Array:
    kind = column.type
    if pa.types.is_struct(kind):  # e.g. a window {start, end}: its timestamps render like top-level ones
        if isinstance(column, pa.ChunkedArray):
            return pa.chunked_array([_convert(chunk, timestamps) for chunk in column.chunks],
                                    type=_converted_type(kind, timestamps))
        fields = [_convert(column.field(i), timestamps) for i in range(kind.num_fields)]
        return pa.StructArray.from_arrays(fields, names=[f.name for f in kind], mask=column.is_null())
    if pa.types.is_timestamp(kind):
        utc = pc.cast(column, pa.timestamp(kind.unit, tz="UTC"))  # naive means UTC; aware ones shift to UTC
        if timestamps == "epoch_ms":
            return pc.cast(pc.cast(utc, pa.timestamp("ms", tz="UTC"), safe=False), pa.int64())
        return _rfc3339(utc)
    if pa.types.is_date(kind) or pa.types.is_time(kind):
        return pc.cast(column, pa.string())
    if pa.types.is_decimal(kind):
        return pc.cast(column, pa.float64())
    if pa.types.is_duration(kind):
        return pc.cast(column, pa.int64())
    return column


def _rfc3339(utc: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """strftime costs ~1 us per value and a window's bounds repeat in each of its rows: format each
    distinct value once (NULL stays NULL) and pick the strings by index."""
    distinct = pc.unique(utc)
    if len(distinct) * 2 > len(utc):
        return pc.strftime(utc, format=_RFC3339)
    return pc.take(pc.strftime(distinct, format=_RFC3339), pc.index_in(utc, value_set=distinct))


@functools.lru_cache(maxsize=256)
def _converted_type(kind: pa.DataType, timestamps: str) -> pa.DataType:
    empty = pa.array([], type=kind)
    return _convert(empty, timestamps).type


def _default(value: object) -> object:
    """Values nested in structs/lists that the column pass did not reach."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _dump_json(value: object) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _dump_msgpack(value: object) -> bytes:
    return msgpack.packb(value, default=_default, use_bin_type=True)


_DUMPERS: dict[str, Callable[[object], bytes]] = {"json": _dump_json, "msgpack": _dump_msgpack}
