"""JSON payloads: one object or an array of objects per message.

The fast path joins a micro-batch with newlines and hands it to pyarrow's JSON reader with the
declared schema (~1M rows/s here, against ~0.3M for json.loads + from_pylist). pyarrow's reader takes
RFC 3339 strings for timestamp columns but not integers, so a schema with timestamps has a second
variant that reads them as int64 (epoch in the column's unit) and casts; the variant that worked last
is tried first.
"""

from __future__ import annotations

import io

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from arros_mqtt.decode.codec import Codec, conform_rows
from arros_mqtt.errors import DecodeError


class JsonCodec(Codec):
    def __init__(self, schema: pa.Schema) -> None:
        super().__init__(schema)
        self._variants = _read_variants(schema)
        self._read_options = pa_json.ReadOptions(use_threads=False, block_size=1 << 24)

    def read_batch(self, payloads: list[bytes]) -> tuple[pa.Table, list[int] | None]:
        joined = b"\n".join(payloads)
        counts = None
        if joined[:1] == b"[" or b"\n[" in joined:
            lines, counts = _expand_arrays(payloads)
            joined = b"\n".join(lines)
        table = self._read(joined)
        expected = len(payloads) if counts is None else sum(counts)
        if table.num_rows != expected:
            raise DecodeError(f"{table.num_rows} rows from {expected} objects")
        return table, counts

    def read_one(self, payload: bytes) -> pa.Table:
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"invalid JSON: {exc}") from None
        return conform_rows(value if isinstance(value, list) else [value], self.schema)

    def _read(self, data: bytes) -> pa.Table:
        error: Exception | None = None
        for position, (read_schema, needs_cast) in enumerate(self._variants):
            options = pa_json.ParseOptions(explicit_schema=read_schema, unexpected_field_behavior="ignore")
            try:
                table = pa_json.read_json(io.BytesIO(data), read_options=self._read_options, parse_options=options)
            except pa.ArrowInvalid as exc:
                error = exc
                continue
            if position:  # remember what worked: devices rarely change their timestamp format
                self._variants.insert(0, self._variants.pop(position))
            return _cast_table(table, self.schema) if needs_cast else table
        raise DecodeError(str(error))


def _read_variants(schema: pa.Schema) -> list[tuple[pa.Schema, bool]]:
    variants = [(schema, False)]
    if any(pa.types.is_timestamp(f.type) for f in schema):
        as_ints = pa.schema([f.with_type(pa.int64()) if pa.types.is_timestamp(f.type) else f for f in schema])
        variants.append((as_ints, True))
    return variants


def _cast_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = [pc.cast(table.column(f.name), f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _expand_arrays(payloads: list[bytes]) -> tuple[list[bytes], list[int]]:
    """Arrays of objects become one line per object; counts say how many rows each payload gave."""
    lines: list[bytes] = []
    counts: list[int] = []
    for payload in payloads:
        if payload.lstrip()[:1] != b"[":
            lines.append(payload)
            counts.append(1)
            continue
        items = orjson.loads(payload)
        if not all(isinstance(item, dict) for item in items):
            raise DecodeError("array holds something other than objects")
        lines.extend(orjson.dumps(item) for item in items)
        counts.append(len(items))
    return lines, counts
