"""The codec contract and the bisection that isolates bad payloads without per-message cost.

A codec decodes a whole micro-batch at once (`read_batch`). When that fails, the batch is split in
halves until the failing payloads stand alone; each is then decoded on its own (`read_one`), which
may be lenient (cast what can be cast) and otherwise says exactly what is wrong. Good batches pay for
one call; a batch with k bad payloads pays O(k log n) calls.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arros_mqtt.config import StreamConfig
from arros_mqtt.core.errors import DecodeError


@dataclass(frozen=True)
class DecodeFailure:
    index: int  # position of the payload in the micro-batch
    error: str


@dataclass(frozen=True)
class Decoded:
    """Rows of the declared columns, and for each row the index of the message it came from."""

    table: pa.Table
    message_index: pa.Array
    failures: list[DecodeFailure]


class Codec(ABC):
    """Decodes payloads into a table with exactly the declared `schema`.

    With `track_extras` (streams whose schema was inferred) a codec counts, per field name, the rows
    that carried a field the schema lacks, in `extra_fields`: such values are not decoded, but they do
    not vanish from view either.
    """

    empty_is_error = True  # a payload that yields no rows is a dead letter (unless the codec filters rows)
    fill_from_received: str | None = None  # a column whose nulls take the message's arrival time

    def __init__(self, schema: pa.Schema, *, track_extras: bool = False) -> None:
        self.schema = schema
        self.track_extras = track_extras
        self.extra_fields: Counter[str] = Counter()

    @classmethod
    def for_stream(cls, stream: StreamConfig, schema: pa.Schema | None = None, *, track_extras: bool = False) -> Codec:
        """The codec for `stream` (its format options), reading `schema` (default: the declared one)."""
        return cls(schema if schema is not None else stream.schema, track_extras=track_extras)

    @classmethod
    def infer_schema(cls, payloads: list[bytes], stream: StreamConfig) -> pa.Schema | None:
        """The columns seen in a first micro-batch (payloads that cannot be read are skipped); None if none."""
        raise NotImplementedError(f"{cls.__name__} cannot infer a schema")

    @abstractmethod
    def read_batch(self, payloads: list[bytes]) -> tuple[pa.Table, list[int] | None]:
        """All payloads at once: the table and rows per payload (None: one each). Raises on any problem."""

    @abstractmethod
    def read_one(self, payload: bytes) -> pa.Table:
        """One payload, as leniently as the format allows; DecodeError says what is wrong."""

    def decode(self, payloads: list[bytes]) -> Decoded:
        tables: list[pa.Table] = []
        indexes: list[np.ndarray] = []
        failures: list[DecodeFailure] = []
        self._decode_span(payloads, 0, len(payloads), tables, indexes, failures)
        if not tables:
            return Decoded(self.schema.empty_table(), pa.array([], pa.int32()), failures)
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        return Decoded(table, pa.array(np.concatenate(indexes), pa.int32()), failures)

    def _decode_span(self, payloads, lo, hi, tables, indexes, failures) -> None:
        if hi <= lo:
            return
        if hi - lo == 1:
            self._decode_single(payloads[lo], lo, tables, indexes, failures)
            return
        try:
            table, counts = self.read_batch(payloads[lo:hi])
            if counts is not None and self.empty_is_error and 0 in counts:
                raise DecodeError("a payload holds no rows")  # let read_one say which
        except Exception:  # any failure: isolate the culprits by halves
            mid = (lo + hi) // 2
            self._decode_span(payloads, lo, mid, tables, indexes, failures)
            self._decode_span(payloads, mid, hi, tables, indexes, failures)
            return
        tables.append(table)
        span = np.arange(lo, hi, dtype=np.int32)
        indexes.append(span if counts is None else np.repeat(span, counts))

    def _decode_single(self, payload, index, tables, indexes, failures) -> None:
        try:
            table = self.read_one(payload)
        except DecodeError as exc:
            failures.append(DecodeFailure(index, str(exc)))
            return
        except Exception as exc:  # a decoder bug on odd input must not stop the stream
            failures.append(DecodeFailure(index, f"cannot decode: {exc}"))
            return
        if table.num_rows == 0:
            if self.empty_is_error:
                failures.append(DecodeFailure(index, "payload holds no rows"))
            return
        tables.append(table)
        indexes.append(np.full(table.num_rows, index, dtype=np.int32))


def conform_rows(rows: list, schema: pa.Schema) -> pa.Table:
    """Python rows (dicts) -> the declared schema, casting what can be cast safely.

    The lenient path for a single payload: numbers given as strings, integers for timestamps (in the
    column's unit) and RFC 3339 strings for timestamps all work; what cannot be cast is an error that
    names the field.
    """
    if not rows:
        return schema.empty_table()
    for row in rows:
        if not isinstance(row, dict):
            raise DecodeError(f"expected an object (or an array of objects), got {_type_name(row)}")
    columns = []
    for field in schema:
        values = list(map(dict.get, rows, itertools.repeat(field.name)))  # C-level, no bytecode per row
        columns.append(_cast_values(values, field))
    return pa.Table.from_arrays(columns, schema=schema)


def _cast_values(values: list, field: pa.Field) -> pa.Array:
    """Infer, then cast safely: 3.5 never becomes the int 3, "12" may become 12.

    Nested types (structs, lists) are built straight from the values when a cast cannot map them.
    """
    target = field.type
    try:
        inferred = pa.array(values)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        inferred = None
    if inferred is not None:
        if inferred.type == target:
            return inferred
        try:
            if pa.types.is_timestamp(target) and pa.types.is_string(inferred.type):
                return _parse_timestamps(inferred, target)
            return pc.cast(inferred, target, safe=True)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            if not pa.types.is_nested(target):
                raise DecodeError(
                    f"field {field.name!r}: cannot cast {_sample(values)} ({inferred.type}) to {target}"
                ) from None
    try:
        return pa.array(values, type=target)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        raise DecodeError(f"field {field.name!r}: {_sample(values)} does not fit {target}") from None


def _parse_timestamps(strings: pa.Array, target: pa.DataType) -> pa.Array:
    parsed = pc.cast(strings, pa.timestamp(target.unit, tz="UTC"))
    return pc.cast(parsed, target)


def _sample(values: list) -> str:
    shown = [v for v in values if v is not None][:1]
    return repr(shown[0])[:60] if shown else "null"


def _type_name(value: object) -> str:
    return {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "an array",
            type(None): "null", bytes: "binary data"}.get(type(value), type(value).__name__)
