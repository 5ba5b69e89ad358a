"""Publishes result messages and dead letters to the broker on a client of its own.

Messages go through an `OutputQueue` (durability/outbox.py): while the broker is unreachable they wait
there (in memory, then spilled to disk) instead of being dropped, and are published in order after the
reconnect. Each is tagged with the write-ahead log position (`position`) that produced it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from arros_mqtt.config import BrokerConfig
from arros_mqtt.durability.outbox import OutputQueue
from arros_mqtt.durability.position import LogPosition
from arros_mqtt.mqtt_connection import connect, new_client, send_at_once

MAX_INFLIGHT = 1000
DEFAULT_MEMORY_BYTES = 64 * 1024 * 1024


class MqttSink:
    def __init__(self, broker: BrokerConfig, memory_bytes: int = DEFAULT_MEMORY_BYTES, spill_bytes: int = 0,
                 spill_dir: Path | None = None, position: LogPosition | None = None) -> None:
        self.broker = broker
        self.position = position or LogPosition()
        self.client = new_client(broker, suffix="-out", persistent=False)
        self.client.max_inflight_messages_set(MAX_INFLIGHT)
        send_at_once(self.client)  # results leave as they are made, not when Nagle's timer lets them
        self.outputs = OutputQueue(self.client, memory_bytes, spill_bytes, spill_dir, MAX_INFLIGHT)
        self.client.on_publish = lambda _client, _userdata, mid, _reason, _properties: self.outputs.acked(mid)
        self.connected = threading.Event()

    @property
    def sent(self) -> int:
        return self.outputs.put_count

    @property
    def acked(self) -> int:
        return self.outputs.acknowledged

    def start(self, wait: float = 10.0) -> None:
        """Connect, waiting up to `wait` seconds so the first results are not queued needlessly."""
        connect(self.client, self.broker, persistent=False, on_connect=self._connected)
        self.connected.wait(wait)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.outputs.put(self.position.seq, topic, payload, qos, retain)

    def flush(self, timeout: float) -> bool:
        """Wait until every message was sent (QoS 0) or acknowledged (QoS 1); False on timeout."""
        return self.outputs.wait_empty(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    def _connected(self, _client, _session_present: bool) -> None:
        self.connected.set()
        self.outputs.pump()
