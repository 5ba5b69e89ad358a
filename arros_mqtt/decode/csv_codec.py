"""CSV payloads: one or more lines per message, quoted as RFC 4180, read per micro-batch by pyarrow.

Without `header`, each line holds the declared columns in schema order. With `header = true` each
message starts with a line of column names: columns are matched by name, a declared column the header
lacks is null, and undeclared ones are skipped (counted when the schema was inferred).

A micro-batch is joined into one text and read by pyarrow's CSV reader in one call; the rows of each
message are the non-empty lines it holds, counted with Arrow string kernels. Messages whose headers
differ are read in groups, one call per distinct header. A quoted value spanning lines (a line with
an odd number of `"`) makes line counting unreliable: such a batch fails the fast path and the
bisection reads those messages one by one. An empty field is null; `""` is the empty string.
Timestamp columns take epoch integers (in the column's unit) or ISO 8601 strings.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from arros_mqtt.config import StreamConfig
from arros_mqtt.core.errors import DecodeError
from arros_mqtt.decode.codec import Codec
from arros_mqtt.decode.inference import merged, settle
from arros_mqtt.decode.timestamps import parse_timestamps

_COLUMN_IN_ERROR = re.compile(r"column #(\d+)")


class CsvCodec(Codec):
    def __init__(self, schema: pa.Schema, *, header: bool = False, track_extras: bool = False) -> None:
        super().__init__(schema, track_extras=track_extras)
        self.header = header
        self._read_types = {f.name: pa.string() if pa.types.is_timestamp(f.type) else f.type for f in schema}

    @classmethod
    def for_stream(cls, stream: StreamConfig, schema: pa.Schema | None = None, *, track_extras: bool = False) -> Codec:
        return cls(schema if schema is not None else stream.schema, header=stream.header, track_extras=track_extras)

    @classmethod
    def infer_schema(cls, payloads: list[bytes], stream: StreamConfig) -> pa.Schema | None:
        """pyarrow's CSV type inference per header group (a group that fails: payload by payload)."""
        try:
            groups = [[payloads[i] for i in members] for members in _header_groups(pa.array(payloads)).values()]
        except (pa.ArrowException, DecodeError):
            groups = [[payload] for payload in payloads]
        schemas = []
        for group in groups:
            texts = [group[0].partition(b"\n")[0] + b"\n" + b"\n".join(_bodies(group))]
            for text in texts if _inferred(texts[0]) else group:
                if (schema := _inferred(text)) is not None:
                    schemas.append(schema)
        return settle(merged(schemas), stream, widen=True) if schemas else None

    def read_batch(self, payloads: list[bytes]) -> tuple[pa.Table, list[int] | None]:
        array = pa.array(payloads, pa.binary())
        counts = _rows_per_payload(array, skip_first=self.header)
        if not self.header:
            table = self._read(b"\n".join(payloads), self.schema.names, multiline=False)
            self._check_rows(table, counts)
            return table, counts.tolist()
        groups = _header_groups(array)
        if len(groups) == 1:
            header, members = next(iter(groups.items()))
            table = self._read(header + b"\n" + b"\n".join(_bodies(payloads)), None, multiline=False)
            self._check_rows(table, counts)
            self._count_extras(header, table.num_rows)
            return table, counts.tolist()
        tables, order = [], []
        for header, members in groups.items():
            table = self._read(header + b"\n" + b"\n".join(_bodies([payloads[i] for i in members])), None, False)
            self._check_rows(table, counts[members])
            tables.append(table)
            order.append(np.repeat(np.asarray(members), counts[members]))
        for (header, _), table in zip(groups.items(), tables, strict=True):
            self._count_extras(header, table.num_rows)
        in_arrival_order = np.argsort(np.concatenate(order), kind="stable")
        return pa.concat_tables(tables).take(pa.array(in_arrival_order)), counts.tolist()

    def read_one(self, payload: bytes) -> pa.Table:
        if payload.count(b'"') % 2:
            raise DecodeError("invalid CSV: a quoted value is not closed")
        if not payload.strip():
            return self.schema.empty_table()
        if self.header:
            header, _, body = payload.partition(b"\n")
            header = header.rstrip(b"\r")
            if not header.strip():
                raise DecodeError("the first line must name the columns (header = true)")
            try:
                header.decode()
            except UnicodeDecodeError:
                raise DecodeError("the header line is not UTF-8 text") from None
            table = self._read(header + b"\n" + body, None, multiline=True)
            self._count_extras(header, table.num_rows)
            return table
        return self._read(payload, self.schema.names, multiline=True)

    def _read(self, data: bytes, column_names: list[str] | None, multiline: bool) -> pa.Table:
        read = pa_csv.ReadOptions(use_threads=False, block_size=max(1 << 20, len(data) + 1),
                                  column_names=column_names)
        parse = pa_csv.ParseOptions(newlines_in_values=multiline)
        try:
            table = pa_csv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse,
                                    convert_options=_convert(self._read_types, self.schema.names))
        except pa.ArrowInvalid as exc:
            raise DecodeError(_explain(str(exc), column_names or _header_names(data))) from None
        columns = []
        for field in self.schema:
            column = table.column(field.name)
            if pa.types.is_timestamp(field.type):
                try:
                    column = parse_timestamps(column, field.type)
                except pa.ArrowInvalid as exc:
                    raise DecodeError(f"field {field.name!r}: {exc}") from None
            columns.append(column)
        return pa.Table.from_arrays(columns, schema=self.schema)

    def _check_rows(self, table: pa.Table, counts: np.ndarray) -> None:
        if table.num_rows != int(counts.sum()):
            raise DecodeError(f"{table.num_rows} rows read from {int(counts.sum())} lines")

    def _count_extras(self, header: bytes, rows: int) -> None:
        if self.track_extras and rows:
            for name in _header_names(header):
                if name not in self._read_types:
                    self.extra_fields[name] += rows


def _convert(types: dict[str, pa.DataType] | None = None, names: list[str] | None = None) -> pa_csv.ConvertOptions:
    return pa_csv.ConvertOptions(column_types=types, include_columns=names, include_missing_columns=names is not None,
                                 null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False)


def _lines(array: pa.Array) -> tuple[pa.ListArray, pa.Array]:
    lines = pc.split_pattern(array, "\n")
    return lines, pc.list_flatten(lines)


def _rows_per_payload(array: pa.Array, skip_first: bool) -> np.ndarray:
    """Non-empty lines per payload (minus the header line); raises if a quoted value may span lines."""
    lines, flat = _lines(array)
    if pc.any(pc.equal(pc.bit_wise_and(pc.count_substring(flat, '"'), 1), 1)).as_py():
        raise DecodeError("a quoted value spans lines")
    filled = pc.and_(pc.greater(pc.binary_length(flat), 0), pc.not_equal(flat, b"\r"))
    parents = pc.list_parent_indices(lines).to_numpy()
    weights = filled.to_numpy(zero_copy_only=False).astype(np.int64)
    if skip_first:
        offsets = lines.offsets.to_numpy()[:-1]
        weights[offsets] = 0  # every payload has at least one (maybe empty) line
    return np.bincount(parents, weights=weights, minlength=len(array)).astype(np.int64)


def _header_groups(array: pa.Array) -> dict[bytes, list[int]]:
    """First line of each payload (without a trailing CR) -> the payloads that start with it."""
    first = pc.list_element(pc.split_pattern(array, "\n", max_splits=1), 0)
    first = pc.replace_substring_regex(first, "\r$", "")
    if pc.any(pc.equal(pc.binary_length(first), 0)).as_py():
        raise DecodeError("the first line must name the columns (header = true)")
    encoded = first.dictionary_encode()
    indices = encoded.indices.to_numpy()
    return {value.as_py(): np.flatnonzero(indices == i).tolist() for i, value in enumerate(encoded.dictionary)}


def _bodies(payloads: list[bytes]) -> list[bytes]:
    return [payload.partition(b"\n")[2] for payload in payloads]


def _inferred(text: bytes) -> pa.Schema | None:
    try:
        schema = pa_csv.read_csv(io.BytesIO(text), parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                                 convert_options=_convert()).schema
        schema.names  # noqa: B018 - raises on names that are not UTF-8
    except (pa.ArrowException, UnicodeDecodeError):
        return None
    return schema


def _header_names(data: bytes) -> list[str]:
    header = data.partition(b"\n")[0]
    try:
        return pa_csv.read_csv(io.BytesIO(header + b"\n"), convert_options=_convert()).column_names
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return []


def _explain(message: str, names: list[str]) -> str:
    """pyarrow's CSV message, with the column named instead of numbered."""
    text = " ".join(message.split())
    if match := _COLUMN_IN_ERROR.search(text):
        index = int(match.group(1))
        if index < len(names):
            text = f"field {names[index]!r}: {text}"
    return f"invalid CSV: {text}"[:400]
