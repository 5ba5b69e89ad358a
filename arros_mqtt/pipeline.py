"""One micro-batch through the stages: decode -> engine -> encode -> publish.

Transport-agnostic: client mode and the embedded broker both feed `RawBatch`es in and give a
`publish` function for what comes out. Counters live here so status and logs see the same numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from arros_mqtt.config import Config
from arros_mqtt.decode import CODECS, StreamDecoder
from arros_mqtt.decode.batcher import RawBatch
from arros_mqtt.egress.deadletter import deadletter_payload, deadletter_topic
from arros_mqtt.egress.encode import encode_results
from arros_mqtt.engine import Engine

log = logging.getLogger(__name__)
Publish = Callable[[str, bytes, int, bool], None]  # (topic, payload, qos, retain)


@dataclass
class StreamStats:
    messages: int = 0
    rows: int = 0
    deadletters: int = 0


class Pipeline:
    def __init__(self, config: Config, engine: Engine, publish: Publish) -> None:
        self.config = config
        self.engine = engine
        self.publish = publish
        self.decoders = {
            name: StreamDecoder(stream, CODECS[stream.format](stream.schema))
            for name, stream in config.streams.items() if stream.schema is not None
        }
        self.stats = {name: StreamStats() for name in config.streams}

    def process(self, batch: RawBatch) -> None:
        stats = self.stats[batch.stream]
        stats.messages += len(batch)
        table, bad = self.decoders[batch.stream].decode(batch.topics, batch.payloads, batch.received_ms)
        stats.rows += table.num_rows
        if bad:
            self._deadletter(batch.stream, bad)
        for result in self.engine.process(batch.stream, table):
            sub = result.subscription.config
            if sub.output is None:
                continue
            try:
                messages = encode_results(result.table, sub, sub.output)
            except Exception as exc:  # a value our encoders cannot express: count it, keep going
                result.subscription.stats.errors += 1
                result.subscription.stats.last_error = f"cannot encode results: {exc}"
                log.warning("subscription %s: cannot encode results: %s", sub.name, exc)
                continue
            for topic, payload in messages:
                self.publish(topic, payload, sub.qos, sub.retain)

    def _deadletter(self, stream: str, bad: list) -> None:
        stats = self.stats[stream]
        stats.deadletters += len(bad)
        topic = deadletter_topic(self.config.control.prefix, stream)
        for message in bad:
            self.publish(topic, deadletter_payload(message, stream), 0, False)
        log.debug("%d dead letters on %s, first: %s", len(bad), stream, bad[0].error)
