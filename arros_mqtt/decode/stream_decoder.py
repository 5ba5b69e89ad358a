"""A stream's micro-batch of raw messages -> one Arrow table with the stream's full schema.

Declared columns come from the codec; topic captures, `_topic` and `_received_at` are added per
message with Arrow compute and spread to rows with one `take`. A codec may name a column whose nulls
take the arrival time (influx `_time` for lines without a timestamp).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from arros_mqtt.config import StreamConfig
from arros_mqtt.decode.codec import Codec


@dataclass(frozen=True)
class BadMessage:
    topic: str
    payload: bytes
    received_ms: int
    error: str


class StreamDecoder:
    def __init__(self, stream: StreamConfig, codec: Codec) -> None:
        self.stream = stream
        self.codec = codec
        self.schema = stream.full_schema()

    @property
    def extra_fields(self) -> dict[str, int]:
        """Rows per field the schema lacks (counted for inferred schemas only)."""
        return self.codec.extra_fields

    def decode(
        self, topics: list[str], payloads: list[bytes], received_ms: list[int]
    ) -> tuple[pa.Table, list[BadMessage]]:
        decoded = self.codec.decode(payloads)
        bad = [BadMessage(topics[f.index], payloads[f.index], received_ms[f.index], f.error) for f in decoded.failures]
        if decoded.table.num_rows == 0:
            return self.schema.empty_table(), bad
        topic_array = pa.array(topics, pa.string())
        per_message: dict[str, pa.Array] = {}
        if self.stream.topic is not None:
            per_message.update(self.stream.topic.capture_columns(topic_array))
        per_message["_topic"] = topic_array
        per_message["_received_at"] = pa.array(received_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
        index = decoded.message_index
        identity = len(index) == len(topics) and not bad
        columns = list(decoded.table.columns)
        columns += [array if identity else array.take(index) for array in per_message.values()]
        if (fill := self.codec.fill_from_received) is not None:
            position = self.schema.get_field_index(fill)
            arrival = pc.cast(columns[-1], columns[position].type, safe=False)
            columns[position] = pc.coalesce(columns[position], arrival)
        return pa.Table.from_arrays(columns, schema=self.schema), bad

    def tick(self, now: float) -> None:
        """Stateless formats have nothing time-driven."""
