"""Uplinks against real brokers: the local one (client mode on Mosquitto, and the embedded broker), and a
second Mosquitto as the cloud broker, stopped and started by its PID to take the link down.

Every result carries (device, n): what arrives upstream is checked per topic against what went in."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt

from tests.support import HOST, BrokerUnderTest, Mosquitto, new_client, start_mosquitto, unique

DEVICES = 4


def service_config(prefix: str, cloud: Mosquitto, state_dir: Path, control: str = "", **uplink: str) -> str:
    extra = "".join(f"{k} = {v}\n" for k, v in uplink.items())
    return f"""
[engine]
state_dir = "{state_dir}"

[control]
prefix = "{prefix}/arros"
{control}

[streams.s]
topic = "{prefix}/in/{{device}}"
schema = {{ n = "int64" }}

[subscriptions.derived]
sql = "SELECT device, n FROM s"
output = "{prefix}/derived/{{device}}"
qos = 1

[uplinks.cloud]
url = "{cloud.url}"
topics = ["{prefix}/derived/#"]
prefix = "site-7"
{extra}"""


def persistent_cloud(directory: Path) -> Mosquitto:
    """A cloud broker that keeps its subscribers' sessions and queued messages across a restart."""
    directory.mkdir(parents=True, exist_ok=True)
    return start_mosquitto(directory, extra=f"persistence true\npersistence_location {directory}/\n"
                                            "autosave_interval 1\n")


class CloudSubscriber:
    """A persistent QoS 2 session on the cloud broker: it reconnects after the broker's restart and the
    broker delivers what it queued meanwhile (at the QoS each message was published with)."""

    def __init__(self, port: int, topic: str) -> None:
        self.got: dict[str, list[int]] = defaultdict(list)
        self.count = 0
        self.redelivered = 0  # the broker's own retransmissions of a completed QoS 2 delivery (see _on_message)
        self._delivered: dict[int, tuple[str, bytes]] = {}  # packet id -> the last message under it
        self._lock = threading.Condition()
        self._subscribed = threading.Event()
        self.client = new_client(port, client_id=unique("cloud-sub-"), protocol=mqtt.MQTTv311, clean_session=False)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_connect = lambda client, *_: client.subscribe(topic, 2)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect(HOST, port)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, _client, _userdata, message) -> None:
        body = orjson.loads(message.payload)
        with self._lock:
            key = (message.topic, message.payload)
            if message.dup and self._delivered.get(message.mid) == key:
                # Mosquitto 2.0.11, restarted with persistence, may send again a QoS 2 message whose delivery
                # to us it had completed just before stopping (same packet id, DUP set): its retransmission on
                # its own session with us, not a second publication (tests/fault_support.DurableCollector)
                self.redelivered += 1
                return
            self._delivered[message.mid] = key
            self.got[message.topic].append(body["n"])
            self.count += 1
            self._lock.notify_all()

    def wait_for(self, count: int, timeout: float = 60.0) -> dict[str, list[int]]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.count < count and time.monotonic() < deadline:
                self._lock.wait(0.2)
        time.sleep(0.5)  # a duplicate would show now
        with self._lock:
            return {topic: list(ns) for topic, ns in self.got.items()}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_inputs(port: int, protocol: int, prefix: str, start: int, count: int, rate: float = 0) -> None:
    client = new_client(port, protocol=protocol)
    client.max_inflight_messages_set(100)
    client.connect(HOST, port)
    client.loop_start()
    infos = []
    for n in range(start, start + count):
        infos.append(client.publish(f"{prefix}/in/d{n % DEVICES}", orjson.dumps({"n": n}), qos=1))
        if rate:
            time.sleep(1 / rate)
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()


def expected(prefix: str, total: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for n in range(total):
        out[f"site-7/{prefix}/derived/d{n % DEVICES}"].append(n)
    return dict(out)


def first_arrivals(got: dict[str, list[int]]) -> dict[str, list[int]]:
    out = {}
    for topic, ns in got.items():
        seen: set[int] = set()
        out[topic] = [n for n in ns if not (n in seen or seen.add(n))]
    return out


def repeats(got: dict[str, list[int]]) -> int:
    return sum(len(ns) - len(set(ns)) for ns in got.values())


def wait_until(check, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_results_reach_the_cloud_in_order_through_an_outage(broker: BrokerUnderTest, tmp_path):
    """The cloud broker is down ~10 s while results keep coming; afterwards each has arrived once, in order per
    topic (QoS 2 upstream, docs/uplinks.md#guarantees)."""
    prefix = unique()
    cloud = persistent_cloud(tmp_path / "cloud")
    try:
        with broker.service(service_config(prefix, cloud, tmp_path / "state", qos="2"), tmp_path) as service:
            uplink = service.uplinks[0]
            assert wait_until(uplink.connected.is_set)
            subscriber = CloudSubscriber(cloud.port, "site-7/#")
            time.sleep(0.3)  # the uplink's local subscription is in place
            publish_inputs(broker.port, broker.protocol, prefix, 0, 500)
            assert sum(map(len, subscriber.wait_for(500).values())) == 500
            cloud.stop()
            assert wait_until(lambda: not uplink.connected.is_set())
            publish_inputs(broker.port, broker.protocol, prefix, 500, 1500, rate=200)  # ~8 s
            assert wait_until(lambda: uplink.buffer.pending >= 1500)
            status = uplink.status()
            assert not status["connected"] and status["buffered_messages"] >= 1500 and status["oldest_seconds"] > 1
            time.sleep(2)
            cloud.start()
            got = subscriber.wait_for(2000)
            assert first_arrivals(got) == expected(prefix, 2000)  # nothing lost, in order per topic
            assert repeats(got) == 0  # QoS 2 both ways: what was in flight at the cut is not delivered twice
            assert wait_until(lambda: uplink.buffer.pending == 0)
            assert uplink.status()["dropped"] == 0
            subscriber.close()
    finally:
        cloud.stop()


def outage_with_a_small_buffer(broker: BrokerUnderTest, tmp_path: Path, when_full: str, count: int):
    """The cloud goes down, `count` results arrive while the 64 KiB buffer holds a few hundred, the
    cloud comes back. Returns (what the cloud got per topic, the uplink's status, the peak of held messages)."""
    prefix = unique()
    cloud = persistent_cloud(tmp_path / "cloud")
    text = service_config(prefix, cloud, tmp_path / "state", buffer='"64KiB"', when_full=f'"{when_full}"')
    try:
        with broker.service(text, tmp_path) as service:
            uplink = service.uplinks[0]
            assert wait_until(uplink.connected.is_set)
            subscriber = CloudSubscriber(cloud.port, "site-7/#")
            time.sleep(0.3)
            cloud.stop()
            assert wait_until(lambda: not uplink.connected.is_set())
            # in embedded mode a full "stop" buffer holds the broker's loop: the publisher waits in a thread
            publisher = threading.Thread(target=publish_inputs,
                                         args=(broker.port, broker.protocol, prefix, 0, count))
            publisher.start()
            full = wait_until(lambda: uplink.buffer.dropped > 0 or not uplink.buffer.has_room(200), timeout=60)
            time.sleep(1.0)
            during = uplink.status()
            assert full and during["buffered_bytes"] <= 64 * 1024
            from arros_mqtt.ops.health import health
            from arros_mqtt.service.wiring import health_sources

            assert health(health_sources(service))["uplinks"]["cloud"]["buffered_messages"] == \
                during["buffered_messages"]
            cloud.start()
            publisher.join(60)
            assert not publisher.is_alive()
            assert wait_until(lambda: uplink.received + uplink.buffer.dropped >= count and uplink.buffer.pending == 0,
                              timeout=60)
            status = uplink.status()
            got = subscriber.wait_for(count - status["dropped"])
            subscriber.close()
            return got, status, during
    finally:
        cloud.stop()


def test_drop_oldest_drops_the_oldest_and_counts_exactly(broker: BrokerUnderTest, tmp_path):
    count = 3000
    got, status, during = outage_with_a_small_buffer(broker, tmp_path, "drop_oldest", count)
    arrived = sum(map(len, got.values()))
    assert status["dropped"] > 0 and arrived == count - status["dropped"]
    assert during["dropped"] > 0
    for topic, ns in got.items():
        assert ns == sorted(set(ns)), topic  # in order, no repeats
    # what was dropped is older than what was kept: the kept results are the newest ones of each topic
    kept = expected(broker_prefix(got), count)
    for topic, ns in got.items():
        assert ns == kept[topic][len(kept[topic]) - len(ns):], topic


def test_stop_holds_the_intake_and_loses_nothing(broker: BrokerUnderTest, tmp_path):
    count = 3000
    got, status, during = outage_with_a_small_buffer(broker, tmp_path, "stop", count)
    assert status["dropped"] == 0 and during["dropped"] == 0
    assert during["buffered_messages"] < count  # it stopped taking messages while full ...
    assert got == expected(broker_prefix(got), count)  # ... and resumed: every one arrived once, in order


def broker_prefix(got: dict[str, list[int]]) -> str:
    return next(iter(got)).split("/")[1]


def test_two_uplinks_of_the_same_topics_each_get_every_result(broker: BrokerUnderTest, tmp_path):
    prefix = unique()
    cloud = persistent_cloud(tmp_path / "cloud")
    text = service_config(prefix, cloud, tmp_path / "state") + f"""
[uplinks.backup]
url = "{cloud.url}"
topics = ["{prefix}/derived/#"]
prefix = "backup"
"""
    try:
        with broker.service(text, tmp_path) as service:
            assert wait_until(lambda: all(u.connected.is_set() for u in service.uplinks))
            subscriber = CloudSubscriber(cloud.port, "+/#")
            time.sleep(0.3)
            publish_inputs(broker.port, broker.protocol, prefix, 0, 200)
            got = subscriber.wait_for(400)
            site = expected(prefix, 200)
            assert got == {**site, **{topic.replace("site-7/", "backup/"): ns for topic, ns in site.items()}}
            subscriber.close()
    finally:
        cloud.stop()
