"""The decoder of a stream declared without a schema: the first micro-batch fixes the schema.

Until a micro-batch holds a payload the codec can read, there is no schema; such payloads are dead
letters (with the reason) and the next micro-batch tries again. Once inferred (rules in
`inference.py`), decoding goes on exactly as for a declared schema, except that fields the schema lacks
are counted in `extra_fields`; `on_inferred` hears the schema (the pipeline then plans the subscriptions
that waited for it).

A hostile (or just odd) first message must not fix the schema for good: while the schema is young (its
first `YOUNG_MESSAGES` messages), the decoder keeps a bounded sample of them, and when more of them
disagree with it (dead letters, or rows carrying fields it lacks) than agree, at least
`MIN_DISAGREEING`, it infers again from the sample and tells `on_inferred` the new schema (at most
`MAX_REINFERS` times, so no sender can make it flip forever). `reset()` forgets the schema: the next
micro-batch infers it afresh (the control op `reset_schema`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import pyarrow as pa

from arros_mqtt.config import StreamConfig
from arros_mqtt.decode.codec import Codec
from arros_mqtt.decode.inference import merged
from arros_mqtt.decode.stream_decoder import BadMessage, StreamDecoder

log = logging.getLogger(__name__)
YOUNG_MESSAGES = 1000  # messages after an inference during which disagreement re-infers
MIN_DISAGREEING = 10
MAX_REINFERS = 3
SAMPLE_MESSAGES = 200  # payloads kept (the latest) to re-infer from
SAMPLE_BYTES = 1 << 20


class InferringStreamDecoder:
    def __init__(self, stream: StreamConfig, codec: type[Codec],
                 on_inferred: Callable[[StreamConfig], None] | None = None) -> None:
        self.stream = stream
        self._declared = stream
        self._codec = codec
        self._on_inferred = on_inferred
        self._decoder: StreamDecoder | None = None
        self.reinfers = 0
        self._young = _Young()

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
            schema = self._codec.infer_schema(payloads, self._declared)
            if schema is None:
                error = (f"no schema could be inferred: no payload of this micro-batch is readable "
                         f"{self.stream.format} with at least one field")
                bad = [BadMessage(t, p, r, error) for t, p, r in zip(topics, payloads, received_ms, strict=True)]
                return self.schema.empty_table(), bad
            self._use(schema)
        extras_before = sum(self._decoder.extra_fields.values())
        table, bad = self._decoder.decode(topics, payloads, received_ms)
        if self._young.active:
            with_extras = sum(self._decoder.extra_fields.values()) - extras_before
            if self._young.observe(payloads, min(len(bad) + with_extras, len(payloads)), len(payloads)):
                return self._reinfer(topics, payloads, received_ms) or (table, bad)
        return table, bad

    def adopt(self, schema: pa.Schema) -> None:
        """Take a schema inferred by an earlier run (from its checkpoint or write-ahead log), so a restart
        decodes and replays with the same columns; no-op when it is the schema in use. A log record of
        another schema is where that run inferred it again (or was reset): replay follows it."""
        if self._decoder is None or not schema.equals(self.stream.schema):
            self._use(schema, young=False)

    def reset(self) -> None:
        """Forget the inferred schema: the next micro-batch infers it afresh."""
        self.stream, self._decoder, self.reinfers, self._young = self._declared, None, 0, _Young()

    def tick(self, now: float) -> None:
        """Stateless formats have nothing time-driven."""

    def _use(self, schema: pa.Schema, young: bool = True) -> None:
        self.stream = replace(self._declared, schema=schema)
        self._decoder = StreamDecoder(self.stream, self._codec.for_stream(self.stream, track_extras=True))
        self._young = _Young() if young and self.reinfers < MAX_REINFERS else _Young(active=False)
        if self._on_inferred is not None:
            self._on_inferred(self.stream)

    def _reinfer(self, topics: list[str], payloads: list[bytes],
                 received_ms: list[int]) -> tuple[pa.Table, list[BadMessage]] | None:
        """Most of the schema's first messages disagree with it: infer again from them (the new types
        first, the old schema's other fields kept) and decode this batch again; None if nothing changed."""
        sample = self._young.sample
        schema = self._codec.infer_schema(sample, self._declared)
        if schema is None:
            return None
        schema = merged([schema, self.stream.schema])
        if schema.equals(self.stream.schema):
            self._young = _Young(active=False)
            return None
        self.reinfers += 1
        log.warning("stream %s: most of the first messages disagree with the schema inferred from its first "
                    "micro-batch; inferred again from %d messages: %s", self.stream.name, len(sample),
                    ", ".join(f"{f.name} {f.type}" for f in schema))
        self._use(schema)
        return self._decoder.decode(topics, payloads, received_ms)


class _Young:
    """The first messages of a schema: how many agreed, how many did not, and a bounded sample."""

    def __init__(self, active: bool = True) -> None:
        self.active = active
        self.seen = self.disagreeing = 0
        self.sample: list[bytes] = []
        self._sample_bytes = 0

    def observe(self, payloads: list[bytes], disagreeing: int, total: int) -> bool:
        """Count a batch; True when it is time to re-infer."""
        self.seen += total
        self.disagreeing += disagreeing
        for payload in payloads[-SAMPLE_MESSAGES:]:
            if len(payload) <= SAMPLE_BYTES // SAMPLE_MESSAGES:
                self.sample.append(payload)
                self._sample_bytes += len(payload)
        while len(self.sample) > SAMPLE_MESSAGES or self._sample_bytes > SAMPLE_BYTES:
            self._sample_bytes -= len(self.sample.pop(0))
        if self.disagreeing >= MIN_DISAGREEING and self.disagreeing * 2 > self.seen:
            return True
        if self.seen >= YOUNG_MESSAGES:
            self.active, self.sample = False, []
        return False
