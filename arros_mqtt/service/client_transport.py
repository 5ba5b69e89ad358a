"""Client mode: Arros attaches to an existing broker as two MQTT clients (one in, one out)."""

from __future__ import annotations

import threading
from pathlib import Path

from arros_mqtt.config import BrokerConfig, DurabilityConfig, StreamConfig
from arros_mqtt.core.log_position import LogPosition
from arros_mqtt.egress.mqtt_sink import MqttSink
from arros_mqtt.egress.output_queue import OutputQueue
from arros_mqtt.ingress.acks import AckLedger
from arros_mqtt.ingress.mqtt_source import MqttSource, Sink
from arros_mqtt.transport.presence import Presence


class ClientTransport:
    """The `Transport` of client mode: paho source + paho sink on the configured broker.

    Client ids: `{client_id}` receives (persistent session), `{client_id}-out` publishes results,
    `{client_id}-control` serves the control topic.
    """

    def __init__(self, broker: BrokerConfig, streams: list[StreamConfig], presence: Presence | None = None,
                 durability: DurabilityConfig | None = None, state_dir: str | None = None,
                 position: LogPosition | None = None, share_group: str | None = None) -> None:
        self.broker = broker
        self._share_group = share_group  # [cluster] group: streams subscribed as $share/{group}/...
        self._streams = streams
        self._presence = presence
        durability = durability or DurabilityConfig()
        outbox = Path(state_dir) / "outbox" if state_dir is not None else None
        self.sink = MqttSink(broker, durability.output_memory, durability.output_spill,
                             outbox / "spill" if outbox is not None else None, position,
                             journal_dir=outbox if outbox is not None and durability.wal else None)
        self.source: MqttSource | None = None
        self._ledger: AckLedger | None = None

    @property
    def description(self) -> str:
        return f"broker {self.broker.url}"

    @property
    def subscribed(self) -> threading.Event:
        assert self.source is not None, "start() first"
        return self.source.subscribed

    @property
    def outputs(self) -> OutputQueue:
        return self.sink.outputs

    @property
    def packet_limit(self) -> int:
        """The largest PUBLISH the broker takes (its CONNACK's Maximum Packet Size, `[broker] max_packet_size`)."""
        return self.sink.packet_limit

    def use_ack_ledger(self, ledger: AckLedger) -> None:
        """Acknowledge messages when the ledger says (their rows are durable), not on receipt."""
        self._ledger = ledger

    def acknowledge(self, mids: list[int]) -> None:
        if self.source is not None:
            self.source.acknowledge(mids)

    def receiving(self) -> bool:
        """True while the ingress client is connected."""
        return self.source is not None and self.source.client.is_connected()

    def start(self, deliver: Sink, connect_wait: float) -> None:
        self.source = MqttSource(self.broker, self._streams, deliver, self._presence, self._ledger,
                                  self._share_group)
        self.sink.start(wait=connect_wait)
        self.source.start()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.sink.publish(topic, payload, qos, retain)

    def stop_receiving(self) -> None:
        """With an ack ledger: stop taking messages but stay connected for the last acknowledgements."""
        if self.source is not None:
            if self._ledger is not None:
                self.source.pause()
            else:
                self.source.stop()

    def flush(self, timeout: float) -> bool:
        return self.sink.flush(timeout)

    @property
    def unacknowledged(self) -> int:
        return self.sink.sent - self.sink.acked

    def close(self) -> None:
        if self.source is not None and self._ledger is not None:
            self.source.stop()
        self.sink.stop(0)
