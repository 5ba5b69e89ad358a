"""The ingress client's bulk receive path against a real Mosquitto: every message exactly once and in
order, whichever path (bulk QoS 0, or paho for QoS 1, MQTT 5 properties, packets larger than a read)
took it."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from arros_mqtt.transport.bulk_read import READ_SIZE, BulkReadClient
from tests.support import new_client, unique


class Received:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, str]] = []  # (topic, payload, path)
        self.lock = threading.Lock()

    def bulk(self, topics: list[bytes], payloads: list[bytes]) -> None:
        with self.lock:
            self.messages += [(t.decode(), p, "bulk") for t, p in zip(topics, payloads, strict=True)]

    def one(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload, f"paho-qos{message.qos}"))

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)


def start_pair(mosquitto, subscriber: BulkReadClient, prefix: str, protocol: int,
               inflight: int = 20) -> tuple[threading.Event, mqtt.Client]:
    """Start `subscriber` (subscribing to `{prefix}/#` at QoS 1) and a paho publisher (`inflight`: its QoS 1
    window, paho's default 20; 0 = none) on the test broker."""
    subscribed = threading.Event()
    subscriber.on_subscribe = lambda *_: subscribed.set()
    subscriber.on_connect = lambda client, *_: client.subscribe(f"{prefix}/#", qos=1)
    subscriber.connect("127.0.0.1", mosquitto.port)
    subscriber.loop_start()
    publisher = new_client(mosquitto.port, protocol=protocol)
    publisher.max_queued_messages_set(0)
    publisher.max_inflight_messages_set(inflight)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    return subscribed, publisher


def stop(*clients: mqtt.Client) -> None:
    for client in clients:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_every_message_once_in_order_across_paths(mosquitto, protocol):
    prefix = unique("bulk")
    received = Received()
    subscriber = BulkReadClient(CallbackAPIVersion.VERSION2, client_id=unique("bulk-sub-"), protocol=protocol)
    subscriber.on_publishes = received.bulk
    subscriber.on_message = received.one
    subscribed, publisher = start_pair(mosquitto, subscriber, prefix, protocol)
    try:
        assert subscribed.wait(10)
        expected: list[tuple[str, bytes, int, Properties | None]] = []
        for i in range(3000):
            expected.append((f"{prefix}/m{i % 7}", b'{"seq":%d,"temp":21.5}' % i, 0, None))
            if i % 500 == 250:  # QoS 1 between QoS 0 messages
                expected.append((f"{prefix}/q1", b"qos1-%d" % i, 1, None))
            if i == 1200:  # larger than one read: split across reads, parsed by paho
                expected.append((f"{prefix}/big", bytes(range(256)) * (READ_SIZE // 256 + 300), 0, None))
            if i == 1800 and protocol == mqtt.MQTTv5:  # properties: paho's path
                properties = Properties(PacketTypes.PUBLISH)
                properties.UserProperty = ("device", "d1")
                expected.append((f"{prefix}/props", b"with-properties", 0, properties))
        for topic, payload, qos, properties in expected:
            publisher.publish(topic, payload, qos=qos, properties=properties)
        received.wait_for(len(expected))
        time.sleep(0.3)  # a duplicate would arrive now
    finally:
        stop(publisher, subscriber)
    assert [(t, p) for t, p, _ in received.messages] == [(t, p) for t, p, _, _ in expected]
    paths = {path for _, _, path in received.messages}
    assert {"bulk", "paho-qos1", "paho-qos0"} <= paths  # the big one (and v5 properties) went through paho
    assert sum(path == "bulk" for _, _, path in received.messages) >= 2900


def test_a_client_without_bulk_callback_is_plain_paho(mosquitto):
    prefix = unique("plain")
    received = Received()
    subscriber = BulkReadClient(CallbackAPIVersion.VERSION2, client_id=unique("plain-sub-"))
    subscriber.on_message = received.one
    subscribed = threading.Event()
    subscriber.on_subscribe = lambda *_: subscribed.set()
    subscriber.on_connect = lambda client, *_: client.subscribe(f"{prefix}/#")
    subscriber.connect("127.0.0.1", mosquitto.port)
    subscriber.loop_start()
    publisher = new_client(mosquitto.port)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    try:
        assert subscribed.wait(10)
        for i in range(500):
            publisher.publish(f"{prefix}/x", b"%d" % i)
        received.wait_for(500)
    finally:
        stop(publisher, subscriber)
    assert [p for _, p, _ in received.messages] == [b"%d" % i for i in range(500)]


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_qos1_taken_in_bulk_once_in_order_and_acknowledged(mosquitto, protocol):
    """With `on_publishes_with_ids`, QoS 1 PUBLISHes come in bulk with their packet ids, in order among
    QoS 0 ones; the callback's `send_pubacks` completes every one at the publisher."""
    prefix = unique("bulk1")
    received: list[tuple[str, bytes, int]] = []  # (topic, payload, packet id; 0 = QoS 0)
    lock = threading.Lock()
    subscriber = BulkReadClient(CallbackAPIVersion.VERSION2, client_id=unique("bulk1-sub-"), protocol=protocol)

    def bulk(topics, payloads, mids, dups):
        with lock:
            received.extend((t.decode(), p, m) for t, p, m in zip(topics, payloads, mids, strict=True))
        subscriber.send_pubacks([m for m in mids if m])

    subscriber.on_publishes_with_ids = bulk
    subscriber.on_message = lambda _c, _u, message: received.append((message.topic, message.payload, -1))
    subscribed, publisher = start_pair(mosquitto, subscriber, prefix, protocol, inflight=0)
    try:
        assert subscribed.wait(10)
        expected = [(f"{prefix}/m{i % 5}", b'{"seq":%d}' % i, 1 if i % 3 else 0) for i in range(3000)]
        infos = [publisher.publish(topic, payload, qos=qos) for topic, payload, qos in expected]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(info.is_published() for info in infos):
            time.sleep(0.05)
        assert all(info.is_published() for info in infos), "a QoS 1 message was not acknowledged"
        time.sleep(0.3)  # a duplicate would arrive now
    finally:
        stop(publisher, subscriber)
    assert [(t, p) for t, p, _ in received] == [(t, p) for t, p, _ in expected]
    bulk_qos1 = [m for _, _, m in received if m > 0]
    assert len(bulk_qos1) > 1000  # most QoS 1 went the bulk path (paho's shows -1: a read's first or split packet)
