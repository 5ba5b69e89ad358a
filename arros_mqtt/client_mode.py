"""Client mode: Arros attaches to an existing broker as two MQTT clients (one in, one out)."""

from __future__ import annotations

import threading

from arros_mqtt.config import BrokerConfig, StreamConfig
from arros_mqtt.egress.mqtt_sink import MqttSink
from arros_mqtt.ingress.mqtt_source import MqttSource, Presence, Sink


class ClientTransport:
    """The `Transport` of client mode: paho source + paho sink on the configured broker."""

    def __init__(self, broker: BrokerConfig, streams: list[StreamConfig], presence: Presence | None = None) -> None:
        self.broker = broker
        self._streams = streams
        self._presence = presence
        self.sink = MqttSink(broker)
        self.source: MqttSource | None = None

    @property
    def description(self) -> str:
        return f"broker {self.broker.url}"

    @property
    def subscribed(self) -> threading.Event:
        assert self.source is not None, "start() first"
        return self.source.subscribed

    def start(self, deliver: Sink, connect_wait: float) -> None:
        self.source = MqttSource(self.broker, self._streams, deliver, self._presence)
        self.sink.start(wait=connect_wait)
        self.source.start()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.sink.publish(topic, payload, qos, retain)

    def stop_receiving(self) -> None:
        if self.source is not None:
            self.source.stop()

    def flush(self, timeout: float) -> bool:
        return self.sink.flush(timeout)

    @property
    def unacknowledged(self) -> int:
        return self.sink.sent - self.sink.acked

    def close(self) -> None:
        self.sink.stop(0)
