"""The running service in client mode: MQTT source -> micro-batcher -> pipeline -> MQTT sink.

Three threads: paho's ingress network thread (fills the batcher), the engine thread (decodes,
queries, publishes) and paho's egress network thread. `stop()` drains in that order so nothing
received is left unprocessed and every result is handed to the broker before exit.
"""

from __future__ import annotations

import logging
import threading

from arros_mqtt.config import Config
from arros_mqtt.decode.batcher import MicroBatcher
from arros_mqtt.egress.mqtt_sink import MqttSink
from arros_mqtt.engine import Engine
from arros_mqtt.errors import ConfigError
from arros_mqtt.ingress.mqtt_source import MqttSource
from arros_mqtt.pipeline import Pipeline

log = logging.getLogger(__name__)


def build_engine(config: Config) -> Engine:
    """The engine with every config subscription planned: what `arros check` validates."""
    engine = Engine(config.streams, config.tables)
    for name, subscription in config.subscriptions.items():
        try:
            engine.add(subscription)
        except Exception as exc:
            raise ConfigError(config.source, f"subscriptions.{name}.sql", str(exc)) from None
    return engine


class Service:
    def __init__(self, config: Config) -> None:
        if config.broker is None:
            raise ConfigError(config.source, "broker", "the embedded broker is not available yet: "
                              "add a [broker] table or pass --broker mqtt://host:1883")
        self.config = config
        self.engine = build_engine(config)
        self.sink = MqttSink(config.broker)
        self.pipeline = Pipeline(config, self.engine, self.sink.publish)
        engine_cfg = config.engine
        self.batcher = MicroBatcher(list(config.streams), engine_cfg.batch_max_rows, engine_cfg.batch_max_delay)
        self.source = MqttSource(config.broker, list(config.streams.values()), self.batcher.add)
        self._stopping = threading.Event()
        self._engine_thread = threading.Thread(target=self._run_engine, name="arros-engine", daemon=True)

    def start(self, connect_wait: float = 10.0) -> None:
        """Start all stages; waits up to `connect_wait` for the broker, then runs anyway (and retries)."""
        for stream in self.config.streams.values():
            if stream.archive:
                log.warning("stream %s: archive = true is not implemented yet; rows are not archived", stream.name)
        self.sink.start(wait=connect_wait)
        self._engine_thread.start()
        self.source.start()
        log.info("arros running: %d streams, %d subscriptions, broker %s", len(self.config.streams),
                 len(self.engine.subscriptions), self.config.broker.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop receiving, process what was received, publish it, disconnect."""
        self.source.stop()
        self._stopping.set()
        self.batcher.close()
        self._engine_thread.join(timeout)
        if not self.sink.flush(timeout):
            log.warning("stopped with %d results not acknowledged by the broker", self.sink.sent - self.sink.acked)
        self.sink.stop(0)
        for name, stats in self.pipeline.stats.items():
            log.info("stream %s: %d messages, %d rows, %d dead letters", name, stats.messages, stats.rows,
                     stats.deadletters)

    def _run_engine(self) -> None:
        while True:
            batches = self.batcher.take(timeout=0.2)
            for batch in batches:
                try:
                    self.pipeline.process(batch)
                except Exception:  # our bug: log it loudly, keep the service alive
                    log.exception("internal error processing a batch of %s (%d messages)", batch.stream, len(batch))
            if self._stopping.is_set() and not batches and self.batcher.pending == 0:
                return
