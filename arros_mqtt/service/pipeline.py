"""One micro-batch through the stages: decode -> engine -> sinks.

Transport-agnostic: client mode and the embedded broker feed `RawBatch`es in (connectors feed
decoded tables through `process_table`) and give a `publish` function for what comes out. Other
sinks (archives) attach with `add_row_sink` (decoded stream rows) and `add_result_sink`
(subscription results), and `add_ticker` for their time-driven work. Counters live here so status
and logs see the same numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from arros_mqtt.config import Config, StreamConfig
from arros_mqtt.decode import InferringStreamDecoder, build_decoder
from arros_mqtt.decode.stream_decoder import BadMessage
from arros_mqtt.egress.deadletter import (
    deadletter_oversized,
    deadletter_payload,
    deadletter_rows,
    deadletter_topic,
)
from arros_mqtt.egress.encode import encode_slices
from arros_mqtt.egress.packet_size import MQTT_MAX_PACKET, publish_packet_size
from arros_mqtt.engine import WINDOWED, Engine, Result
from arros_mqtt.ingress.batcher import RawBatch

log = logging.getLogger(__name__)
Publish = Callable[[str, bytes, int, bool], None]  # (topic, payload, qos, retain)
RowSink = Callable[[str, pa.Table], None]  # (stream, decoded rows with metadata columns)
BatchObserver = Callable[[str, int, float], None]  # (stream, messages, seconds to decode, query and publish)
ResultSink = Callable[[Result], None]
Ticker = Callable[[float], None]  # (wall-clock now)
DeadLetterSink = Callable[[str, list[BadMessage]], None]  # (stream, payloads that could not be decoded)
ResultGate = Callable[[Result], bool]  # False: the result is not handed to any sink


@dataclass
class StreamStats:
    messages: int = 0
    rows: int = 0
    deadletters: int = 0
    extra_fields: dict[str, int] = field(default_factory=dict)  # rows per field an inferred schema lacks


class Pipeline:
    def __init__(self, config: Config, engine: Engine, publish: Publish) -> None:
        self.config = config
        self.engine = engine
        self.publish = publish
        self.packet_limit: Callable[[], int] = lambda: MQTT_MAX_PACKET  # the broker's (client mode: the sink's)
        self.wait_for_room: Callable[[], None] = lambda: None  # between slices of a result (embedded mode)
        # subscriptions without `qos`: windows go exactly once (QoS 2 through the output journal) where
        # that holds (client mode with the log), everything else QoS 1
        self.window_qos = 2 if config.durability.wal and config.broker is not None else 1
        self.decoders = {
            name: build_decoder(stream, publish, self._schema_inferred)
            for name, stream in config.streams.items() if stream.topic is not None
        }
        self.stats = {name: StreamStats() for name in config.streams}
        self._row_sinks: list[RowSink] = []
        self._result_sinks: list[ResultSink] = [self._publish_result]
        self._tickers: list[Ticker] = []
        self._batch_observers: list[BatchObserver] = []
        self._result_gates: list[ResultGate] = []
        self._late_sinks: list[ResultSink] = [self._publish_result]  # late rows (Result.late) go only here
        self._deadletter_sinks: list[DeadLetterSink] = []

    def add_row_sink(self, sink: RowSink) -> None:
        self._row_sinks.append(sink)

    def add_result_sink(self, sink: ResultSink) -> None:
        """Called with each result after it was published (sinks run in the order they were added)."""
        self._result_sinks.append(sink)

    def add_deadletter_sink(self, sink: DeadLetterSink) -> None:
        """Called with each micro-batch's dead letters after they were published (the live views)."""
        self._deadletter_sinks.append(sink)

    def add_ticker(self, ticker: Ticker) -> None:
        self._tickers.append(ticker)

    def add_result_gate(self, gate: ResultGate) -> None:
        """Asked before a result reaches the sinks; one that says False stops it (output limits)."""
        self._result_gates.append(gate)

    def add_batch_observer(self, observer: BatchObserver) -> None:
        """Called after each micro-batch of raw messages went through every stage (metrics)."""
        self._batch_observers.append(observer)

    def process(self, batch: RawBatch) -> None:
        """Decode a micro-batch of raw messages and run it through the engine."""
        started = time.perf_counter()
        table, bad = self.decode(batch)
        self.deadletter(batch.stream, bad)
        self.process_table(batch.stream, table)
        self.observe(batch.stream, len(batch), time.perf_counter() - started)

    def decode(self, batch: RawBatch) -> tuple[pa.Table, list[BadMessage]]:
        """The rows of a micro-batch and the messages that could not be decoded (the first stage of `process`)."""
        stats = self.stats[batch.stream]
        stats.messages += len(batch)
        decoder = self.decoders[batch.stream]
        table, bad = decoder.decode(batch.topics, batch.payloads, batch.received_ms)
        if len(decoder.extra_fields) != len(stats.extra_fields):
            new = sorted(decoder.extra_fields.keys() - stats.extra_fields.keys())
            log.warning("stream %s: field(s) %s not in the schema inferred from its first micro-batch: not decoded, "
                        "counted in status (declare a schema to read them)", batch.stream, ", ".join(new))
        if decoder.extra_fields:
            stats.extra_fields = dict(decoder.extra_fields)
        return table, bad

    def observe(self, stream: str, messages: int, seconds: float) -> None:
        for observe in self._batch_observers:
            observe(stream, messages, seconds)

    def process_table(self, stream: str, table: pa.Table) -> None:
        """Rows already decoded (with the stream's full schema): those out of the stream's event-time bounds
        to the dead-letter topic, the others to the sinks, then the engine."""
        self.stats[stream].rows += table.num_rows
        if table.num_rows == 0:
            return
        table, rejected = self.engine.admit(stream, table)
        for rows, reason in rejected:
            self.deadletter_rows(stream, rows, reason)
        if table.num_rows == 0:
            return
        for row_sink in self._row_sinks:
            try:
                row_sink(stream, table)
            except Exception:  # a failing sink must not keep the rows from the engine
                log.exception("stream %s: row sink failed", stream)
        self.emit(self.engine.process(stream, table))

    def tick(self, now: float) -> None:
        """Called on the engine thread every few hundred ms: time-driven work (idle windows, rolls)."""
        for decoder in self.decoders.values():
            decoder.tick(now)
        self.emit(self.engine.tick(now))
        for ticker in self._tickers:
            try:
                ticker(now)
            except Exception:
                log.exception("ticker %s failed", getattr(ticker, "__qualname__", ticker))

    def _schema_inferred(self, stream: StreamConfig) -> None:
        """A schema-less stream has its schema: plan the subscriptions that waited; report their SQL errors."""
        columns = ", ".join(f"{f.name} {f.type}" for f in stream.schema)
        log.info("stream %s: schema inferred: %s", stream.name, columns)
        for name, error in self.engine.set_stream_schema(stream.name, stream).items():
            log.error("subscription %s cannot run on the inferred schema of %s: %s", name, stream.name, error)

    def reset_schema(self, stream: str) -> bool:
        """Forget a schema-less stream's inferred schema: the next micro-batch infers it again and its
        subscriptions wait for that. False when the stream has no inferred schema to forget."""
        decoder = self.decoders.get(stream)
        if not isinstance(decoder, InferringStreamDecoder):
            return False
        decoder.reset()
        self.engine.forget_stream_schema(stream, self.config.streams[stream])
        self.stats[stream].extra_fields = {}
        log.warning("stream %s: inferred schema reset; the next micro-batch infers it again", stream)
        return True

    def add_late_sink(self, sink: ResultSink) -> None:
        """Receives late stream rows (`Result.late`), which have the stream's columns, not the query's."""
        self._late_sinks.append(sink)

    def emit(self, results: list[Result]) -> None:
        """Hand results to the sinks (through the gates)."""
        for result in results:
            if result.error is not None:
                self.deadletter_rows(result.subscription.shape.stream, result.table, result.error,
                                     result.subscription.name)
                continue
            if not all(admit(result) for admit in self._result_gates):
                continue
            for sink in self._late_sinks if result.late else self._result_sinks:
                try:
                    sink(result)
                except Exception as exc:  # one failing sink must not starve the others
                    result.subscription.stats.errors += 1
                    result.subscription.stats.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("subscription %s: result sink failed: %s", result.subscription.name, exc)

    def _publish_result(self, result: Result) -> None:
        sub = result.subscription.config
        template = sub.late_output if result.late else sub.output
        if template is None:
            return
        qos = sub.qos
        if qos is None:
            qos = self.window_qos if result.subscription.shape.kind == WINDOWED else 1
        limit = self.packet_limit()
        published = 0
        for messages in encode_slices(result.table, sub, template):  # bounded memory: a slice at a time
            for topic, payload in messages:
                if len(payload) + len(topic) + 64 >= limit and publish_packet_size(topic, payload, qos) > limit:
                    self._deadletter_oversized(result, topic, payload, limit)
                    continue
                self.publish(topic, payload, qos, sub.retain)
                published += 1
            del messages
            self.wait_for_room()
        result.subscription.stats.messages_out += published
        result.subscription.stats.last_emit = time.time()

    def _deadletter_oversized(self, result: Result, topic: str, payload: bytes, limit: int) -> None:
        """A result the broker would refuse (and drop our connection for): a dead letter with its head."""
        subscription = result.subscription
        stream = subscription.shape.stream
        subscription.stats.messages_too_large += 1
        subscription.stats.errors += 1
        subscription.stats.last_error = f"a result of {len(payload)} bytes to {topic} is over the broker's " \
                                        f"maximum packet size ({limit} bytes): dead-lettered"
        letter = deadletter_oversized(stream, subscription.name, topic, payload, limit)
        self.publish(deadletter_topic(self.config.control.prefix, stream), letter, 0, False)
        log.warning("subscription %s: %s", subscription.name, subscription.stats.last_error)

    def deadletter(self, stream: str, bad: list[BadMessage]) -> None:
        if not bad:
            return
        stats = self.stats[stream]
        stats.deadletters += len(bad)
        topic = deadletter_topic(self.config.control.prefix, stream)
        for message in bad:
            self.publish(topic, deadletter_payload(message, stream), 0, False)
        for sink in self._deadletter_sinks:
            sink(stream, bad)
        log.debug("%d dead letters on %s, first: %s", len(bad), stream, bad[0].error)

    def deadletter_rows(self, stream: str, rows: pa.Table, error: str, subscription: str | None = None) -> None:
        """Decoded rows that could not go on: a subscription's run-time error (counted in its `rows_failed`),
        an event time out of bounds (counted in the stream's `deadletters`)."""
        if subscription is None:
            self.stats[stream].deadletters += rows.num_rows
        letter = deadletter_rows(rows, stream, subscription, error)
        self.publish(deadletter_topic(self.config.control.prefix, stream), letter, 0, False)
        if self._deadletter_sinks:
            topic = rows.column("_topic")[0].as_py() if "_topic" in rows.column_names and rows.num_rows else ""
            bad = [BadMessage(topic or "", letter, int(time.time() * 1000), error)]
            for sink in self._deadletter_sinks:
                sink(stream, bad)
        log.debug("%d rows of %s dead-lettered (%s): %s", rows.num_rows, stream, subscription, error)
