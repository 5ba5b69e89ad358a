"""Publishes result messages and dead letters to the broker on a client of its own."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt

from arros_mqtt.config import BrokerConfig
from arros_mqtt.mqtt_connection import connect, new_client

MAX_INFLIGHT = 1000


class MqttSink:
    def __init__(self, broker: BrokerConfig) -> None:
        self.broker = broker
        self.client = new_client(broker, suffix="-out", persistent=False)
        self.client.max_inflight_messages_set(MAX_INFLIGHT)
        self.client.on_publish = self._published
        self._lock = threading.Lock()
        self.sent = 0
        self.acked = 0
        self.dropped = 0  # QoS 0 messages published while disconnected (paho queues only QoS 1)
        self.connected = threading.Event()

    def start(self, wait: float = 10.0) -> None:
        """Connect, waiting up to `wait` seconds so the first results are not published into the void."""
        connect(self.client, self.broker, persistent=False, on_connect=lambda *_: self.connected.set())
        self.connected.wait(wait)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        with self._lock:
            self.sent += 1
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and qos == 0:
            with self._lock:
                self.sent -= 1
                self.dropped += 1

    def flush(self, timeout: float) -> bool:
        """Wait until every message was sent (QoS 0) or acknowledged (QoS 1); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.acked >= self.sent:
                    return True
            time.sleep(0.01)
        return False

    def stop(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    def _published(self, _client, _userdata, _mid, _reason_code, _properties) -> None:
        with self._lock:
            self.acked += 1
