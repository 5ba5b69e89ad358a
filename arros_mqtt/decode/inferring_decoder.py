"""The decoder of a stream declared without a schema: the first micro-batch fixes the schema.

Until a micro-batch holds a payload the codec can read, there is no schema; such payloads are dead
letters (with the reason) and the next micro-batch tries again. Once inferred (rules in
`inference.py`), the schema is fixed for the life of the process: `on_inferred` hears it (the pipeline
then plans the subscriptions that waited for it) and decoding goes on exactly as for a declared schema,
except that fields the schema lacks are counted in `extra_fields`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pyarrow as pa

from arros_mqtt.config import StreamConfig
from arros_mqtt.decode.codec import Codec
from arros_mqtt.decode.stream_decoder import BadMessage, StreamDecoder


class InferringStreamDecoder:
    def __init__(self, stream: StreamConfig, codec: type[Codec],
                 on_inferred: Callable[[StreamConfig], None] | None = None) -> None:
        self.stream = stream
        self._codec = codec
        self._on_inferred = on_inferred
        self._decoder: StreamDecoder | None = None

    @property
    def schema(self) -> pa.Schema:
        return self.stream.full_schema()

    @property
    def extra_fields(self) -> dict[str, int]:
        return self._decoder.extra_fields if self._decoder is not None else {}

    def decode(
        self, topics: list[str], payloads: list[bytes], received_ms: list[int]
    ) -> tuple[pa.Table, list[BadMessage]]:
        if self._decoder is None:
            schema = self._codec.infer_schema(payloads, self.stream)
            if schema is None:
                error = (f"no schema could be inferred: no payload of this micro-batch is readable "
                         f"{self.stream.format} with at least one field")
                bad = [BadMessage(t, p, r, error) for t, p, r in zip(topics, payloads, received_ms, strict=True)]
                return self.schema.empty_table(), bad
            self.stream = replace(self.stream, schema=schema)
            self._decoder = StreamDecoder(self.stream, self._codec.for_stream(self.stream, track_extras=True))
            if self._on_inferred is not None:
                self._on_inferred(self.stream)
        return self._decoder.decode(topics, payloads, received_ms)

    def adopt(self, schema: pa.Schema) -> None:
        """Take a schema inferred by an earlier run (from its checkpoint or write-ahead log), so a restart
        decodes and replays with the same columns; no-op once a schema is known."""
        if self._decoder is None:
            self.stream = replace(self.stream, schema=schema)
            self._decoder = StreamDecoder(self.stream, self._codec.for_stream(self.stream, track_extras=True))
            if self._on_inferred is not None:
                self._on_inferred(self.stream)

    def tick(self, now: float) -> None:
        """Stateless formats have nothing time-driven."""
