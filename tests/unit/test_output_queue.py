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


def test_lag_is_the_age_of_the_oldest_result_waiting(tmp_path):
    sink = MqttSink(BrokerConfig(url="mqtt://127.0.0.1:1", client_id=unique("arros-")), memory_bytes=1_000,
                    spill_bytes=1_000_000, spill_dir=tmp_path / "outbox")
    queue = sink.outputs
    assert queue.lag_seconds() == 0.0
    first = time.monotonic()
    for _ in range(2_000):  # past memory_bytes: most of them spill, the lag still counts them
        sink.publish("a/b", b"x" * 100, qos=1)
    assert queue.spilled_bytes > 0
    later = time.monotonic() + 7.0
    assert 7.0 - 0.02 <= queue.lag_seconds(now=later) <= later - first + 0.02
