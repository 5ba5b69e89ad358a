"""Arrow IPC payloads: each message is an Arrow IPC stream (the file format is accepted too).

Arrow-native producers send typed columns, so there is nothing to parse: each message's batches are
opened zero-copy, and the micro-batch is concatenated and cast to the stream's schema column by
column (a declared column the message lacks is null; undeclared ones are dropped, and counted when
the schema was inferred). Messages with the same schema are cast once together.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from arros_mqtt.config import StreamConfig
from arros_mqtt.decode.codec import Codec
from arros_mqtt.decode.inference import merged, settle
from arros_mqtt.errors import DecodeError

_FILE_MAGIC = b"ARROW1"


class ArrowCodec(Codec):
    @classmethod
    def infer_schema(cls, payloads: list[bytes], stream: StreamConfig) -> pa.Schema | None:
        """The producers' own schema (several in a batch: unified), types kept as they are."""
        schemas = []
        for payload in payloads:
            try:
                schemas.append(_open(payload).schema)
            except DecodeError:
                continue
        return settle(merged(schemas), stream, widen=False) if schemas else None

    def read_batch(self, payloads: list[bytes]) -> tuple[pa.Table, list[int] | None]:
        tables = [_open(payload) for payload in payloads]
        counts = [table.num_rows for table in tables]
        runs: list[pa.Table] = []
        start = 0
        for end in range(1, len(tables) + 1):  # consecutive messages with one schema are cast together
            if end == len(tables) or not tables[end].schema.equals(tables[start].schema):
                runs.append(self._conform(pa.concat_tables(tables[start:end])))
                start = end
        table = runs[0] if len(runs) == 1 else pa.concat_tables(runs)
        if table.num_rows != sum(counts):
            raise DecodeError(f"{table.num_rows} rows from messages that hold {sum(counts)}")
        for message in tables:
            self._count_extras(message)
        return table, counts

    def read_one(self, payload: bytes) -> pa.Table:
        table = _open(payload)
        conformed = self._conform(table)
        self._count_extras(table)
        return conformed

    def _count_extras(self, table: pa.Table) -> None:
        if self.track_extras and table.num_rows:
            for name in table.column_names:
                if name not in self.schema.names:
                    self.extra_fields[name] += table.num_rows

    def _conform(self, table: pa.Table) -> pa.Table:
        columns = []
        for field in self.schema:
            if field.name not in table.column_names:
                columns.append(pa.nulls(table.num_rows, field.type))
                continue
            column = table.column(field.name)
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            if column.type != field.type:
                try:
                    column = pc.cast(column, field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                    raise DecodeError(f"field {field.name!r}: cannot cast {column.type} to {field.type}: "
                                      f"{str(exc).splitlines()[0][:200]}") from None
            columns.append(column)
        return pa.Table.from_arrays(columns, schema=self.schema)


def _open(payload: bytes) -> pa.Table:
    """One message's batches, zero-copy, validated (offsets, UTF-8: the bytes come from the network)."""
    buffer = pa.py_buffer(payload)
    try:
        reader = pa.ipc.open_file(buffer) if payload[:6] == _FILE_MAGIC else pa.ipc.open_stream(buffer)
        table = reader.read_all()
        table.validate(full=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DecodeError(f"not an Arrow IPC stream: {str(exc).splitlines()[0][:200]}") from None
    if table.num_columns == 0:  # rows of nothing (and concatenating such tables loses their row count)
        raise DecodeError("the Arrow IPC stream has no columns")
    return table
