"""A raw paho operator for control-topic tests: publishes requests, collects replies by correlation.

Deliberately not `arros_mqtt.control.client`: the protocol is checked with a plain MQTT client.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support import HOST, new_client, unique


def control_config(prefix: str, state_dir: Path, extra_control: str = "", subscriptions: str = "",
                   base_sql: str = "SELECT machine, temp FROM telemetry") -> str:
    """Streams under `{prefix}/`, control under `{prefix}/arros`, one config-file subscription `base`."""
    return f"""
[broker]
client_id = "{unique("arros-")}"
[engine]
batch_max_rows = 1000
batch_max_delay = "20ms"
state_dir = "{state_dir}"
[control]
prefix = "{prefix}/arros"
status_interval = "300ms"
{extra_control}
[streams.telemetry]
topic = "{prefix}/factory/{{line}}/{{machine}}/telemetry"
schema = {{ ts = "timestamp[ms]", temp = "float64", rpm = "int64" }}
[tables.machines]
path = "examples/factory/machines.csv"
[subscriptions.base]
sql = "{base_sql}"
output = "{prefix}/base/{{machine}}"
{subscriptions}
"""


class Operator:
    """Requests to `{control_prefix}/control`; replies collected on every topic it subscribes to."""

    def __init__(self, port: int, control_prefix: str, protocol: int = mqtt.MQTTv5,
                 topics: tuple[str, ...] = ()) -> None:
        self.prefix = control_prefix
        self.protocol = protocol
        self.reply_topic = f"{control_prefix}/control/replies/{unique('op-')}"
        self.messages: list[tuple[str, bytes, bytes | None]] = []  # (topic, payload, correlation data)
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.client = new_client(port, protocol=protocol)
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(HOST, port)
        self.client.subscribe([(t, 1) for t in (self.reply_topic, f"{control_prefix}/control/replies", *topics)])
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK"

    def _on_message(self, _client, _userdata, message) -> None:
        correlation = getattr(message.properties, "CorrelationData", None) if message.properties else None
        with self._cond:
            self.messages.append((message.topic, message.payload, correlation))
            self._cond.notify_all()

    def send(self, body: dict | bytes, correlation: bytes | None = None, response_topic: str | None = None,
             qos: int = 1) -> None:
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        properties = None
        if self.protocol == mqtt.MQTTv5 and (correlation is not None or response_topic is not None):
            properties = Properties(PacketTypes.PUBLISH)
            if response_topic is not None:
                properties.ResponseTopic = response_topic
            if correlation is not None:
                properties.CorrelationData = correlation
        self.client.publish(f"{self.prefix}/control", payload, qos=qos, properties=properties).wait_for_publish(10)

    def request(self, body: dict | bytes, timeout: float = 15.0) -> dict:
        """MQTT 5 request/response: the reply with our correlation data, on our reply topic."""
        correlation = uuid.uuid4().bytes
        self.send(body, correlation=correlation, response_topic=self.reply_topic)
        topic, payload = self.wait(lambda m: m[2] == correlation, timeout)
        assert topic == self.reply_topic
        return orjson.loads(payload)

    def wait(self, match, timeout: float = 15.0) -> tuple[str, bytes]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.messages:
                    if match(message):
                        return message[0], message[1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no matching reply")
                self._cond.wait(remaining)

    def on_topic(self, topic: str) -> list[bytes]:
        with self._cond:
            return [payload for t, payload, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
