"""The rules that turn a first micro-batch into a stream's schema (streams declared without `schema`).

The schema is inferred from the first micro-batch that has a readable payload, and is then fixed (unless
its first messages disagree with it: inferring_decoder.py re-infers): later payloads are cast to it like to
a declared one. So the rules lean towards types that later values still fit:

- numbers in json, msgpack and csv become `float64`: a gateway that writes `20.0` as `20` (JavaScript
  does) must not lock a column to `int64` and dead-letter the next `20.5`. Influx line protocol and
  Arrow say which numbers are integers, so they keep their types;
- strings that are all RFC 3339 timestamps with a zone (`2024-05-01T10:00:00Z`) and timestamps of any
  unit become `timestamp[us, tz=UTC]`; other strings stay strings;
- a field that is null in the whole first batch becomes `string`;
- a field whose values are of different kinds takes the kind most of them have (one odd value does not
  decide);
- objects become structs and arrays lists, by the same rules inside;
- a field named like a column Arros adds (`_topic`, `_received_at`, a topic capture) or with an empty
  name is left out of the schema, like any later field the schema lacks: counted, not decoded.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from arros_mqtt.config import METADATA_COLUMNS, StreamConfig

INFERRED_TIMESTAMP = pa.timestamp("us", tz="UTC")


def infer_from_rows(rows: list) -> pa.Schema | None:
    """The schema of Python rows (dicts from JSON objects or msgpack maps); fields in first-seen order."""
    dicts = [row for row in rows if isinstance(row, dict)]
    names: dict[str, None] = {}
    for row in dicts:  # once per stream, on its first micro-batch only
        names.update(dict.fromkeys(key for key in row if isinstance(key, str)))
    fields = [pa.field(name, _infer_values([row.get(name) for row in dicts])) for name in names]
    return pa.schema(fields) if fields else None


def settle(schema: pa.Schema, stream: StreamConfig, *, widen: bool) -> pa.Schema | None:
    """Apply the rules above to what a reader inferred; None when no column is left."""
    reserved = set(METADATA_COLUMNS) | {name for name, _ in (stream.topic.captures if stream.topic else ())}
    fields: dict[str, pa.Field] = {}
    for field in schema:
        if field.name and field.name not in reserved and field.name not in fields:
            fields[field.name] = field.with_type(widened(field.type) if widen else field.type)
    return pa.schema(list(fields.values())) if fields else None


def merged(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema from several partial ones (e.g. per CSV header); the first type seen wins a conflict."""
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        fields: dict[str, pa.Field] = {}
        for schema in schemas:
            for field in schema:
                fields.setdefault(field.name, field)
        return pa.schema(list(fields.values()))


def widened(kind: pa.DataType) -> pa.DataType:
    """Integers -> float64, any timestamp -> timestamp[us, UTC], null -> string; inside structs and lists."""
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return pa.float64()
    if pa.types.is_timestamp(kind):
        return INFERRED_TIMESTAMP
    if pa.types.is_null(kind):
        return pa.string()
    if pa.types.is_dictionary(kind):
        return widened(kind.value_type)
    if pa.types.is_struct(kind):
        return pa.struct([kind.field(i).with_type(widened(kind.field(i).type)) for i in range(kind.num_fields)])
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.list_(widened(kind.value_type))
    return kind


def looks_like_timestamps(strings: pa.Array) -> bool:
    """Every non-null value is an RFC 3339 timestamp with a zone (and there is at least one)."""
    values = strings.drop_null()
    if len(values) == 0 or not pc.all(pc.match_substring_regex(values, r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d")).as_py():
        return False
    try:
        pc.cast(values, INFERRED_TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _infer_values(values: list) -> pa.DataType:
    try:
        array = pa.array(values)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):  # mixed kinds: the most common decides
        try:
            array = pa.array(_most_common_kind(values))
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            return pa.string()
    if pa.types.is_string(array.type) and looks_like_timestamps(array):
        return INFERRED_TIMESTAMP
    return widened(array.type)


def _most_common_kind(values: list) -> list:
    """The values of the kind most of them have (numbers count as one kind; a tie: the first seen), so
    one hostile value among many does not decide a column's type."""
    def kind(value: object) -> str:
        return "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__

    present = [v for v in values if v is not None]
    counts: dict[str, int] = {}
    for value in present:
        counts[kind(value)] = counts.get(kind(value), 0) + 1
    best = max(counts, key=counts.__getitem__)  # dicts keep first-seen order: ties go to the first
    return [v for v in present if kind(v) == best]
