"""A result queue that can never send (no broker, never connected) says when it is full; nothing is lost."""

from __future__ import annotations

import time

from arros_mqtt.config import BrokerConfig
from arros_mqtt.egress.mqtt_sink import MqttSink
from tests.support import unique


def test_a_full_queue_says_so(tmp_path):
    sink = MqttSink(BrokerConfig(url="mqtt://127.0.0.1:1", client_id=unique("arros-")), memory_bytes=1_000,
                    spill_bytes=5_000, spill_dir=tmp_path / "outbox")
    while not sink.outputs.full:
        sink.publish("a/b", b"x" * 100, qos=1)
    assert 5_000 < sink.outputs.queued_bytes < 7_000
    time.sleep(0)  # never connected: nothing was lost, nothing sent
    assert sink.outputs.sent == 0 and sink.outputs.queued == sink.outputs.put_count
