"""Uplinks through crashes and long outages: `arros run` as a process (killed with SIGKILL while the
buffer drains to the cloud), a local Mosquitto, a second one as the cloud broker (stopped and started
by its PID).

The guarantee checked: every result reaches the cloud at least once and, counting only each result's
first arrival, in order per topic. Repeats are possible after a kill (QoS 1): the results the cloud
confirmed after the cursor was last written (at most ~50 ms of them) and the ones in flight (at most
`WINDOW`), plus any results the restarted engine publishes again from its own log."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest

from arros_mqtt.uplink.forwarder import WINDOW
from tests.fault_support import stop_arros
from tests.integration.test_uplink_live import (
    DEVICES,
    CloudSubscriber,
    expected,
    first_arrivals,
    persistent_cloud,
    publish_inputs,
    service_config,
    wait_until,
)
from tests.support import HOST, new_client, start_arros, start_mosquitto, unique, wait_for_log


class HealthWatcher:
    """The retained `{prefix}/health` message on the local broker, last one kept."""

    def __init__(self, port: int, topic: str) -> None:
        self.latest: dict = {}
        self.client = new_client(port)
        self.client.on_message = lambda _c, _u, message: setattr(self, "latest", orjson.loads(message.payload))
        self.client.on_connect = lambda client, *_: client.subscribe(topic, 0)
        self.client.connect(HOST, port)
        self.client.loop_start()

    def uplink(self) -> dict:
        return self.latest.get("uplinks", {}).get("cloud", {})

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start(directory: Path, config: Path, name: str):
    process = start_arros("run", "-c", str(config), log=directory / f"{name}.log")
    wait_for_log(directory / f"{name}.log", "uplink cloud: connected", "subscribed to", process=process)
    return process


def test_kill_9_while_the_backlog_drains_loses_nothing(tmp_path):
    count = 3000
    prefix = unique()
    local = start_mosquitto(tmp_path)
    cloud = persistent_cloud(tmp_path / "cloud")
    config = tmp_path / "arros.toml"
    config.write_text(f'[broker]\nurl = "{local.url}"\n' + service_config(
        prefix, cloud, tmp_path / "state", control='status_interval = "200ms"', max_rate="600"))
    watcher = HealthWatcher(local.port, f"{prefix}/arros/health")
    arros = start(tmp_path, config, "run-0")
    try:
        subscriber = CloudSubscriber(cloud.port, "site-7/#")
        assert wait_until(lambda: watcher.uplink().get("connected") is True)
        cloud.stop()
        publish_inputs(local.port, mqtt.MQTTv5, prefix, 0, count)
        assert wait_until(lambda: watcher.uplink().get("buffered_messages", 0) >= count, timeout=60)
        cloud.start()
        assert wait_until(lambda: subscriber.count >= count // 3, timeout=60)  # draining, at 600/s
        arros.send_signal(signal.SIGKILL)
        assert arros.wait(30) == -signal.SIGKILL
        at_kill = subscriber.count
        assert at_kill < count  # the kill landed in the drain
        arros = start(tmp_path, config, "run-1")
        assert wait_until(lambda: len({n for ns in subscriber.got.values() for n in ns}) >= count, timeout=90)
        got = subscriber.wait_for(count)
        assert first_arrivals(got) == expected(prefix, count)
        repeats = sum(Counter(ns)[n] - 1 for ns in got.values() for n in set(ns))
        print(f"kill -9 at {at_kill}/{count} sent: {repeats} results repeated")
        assert repeats <= WINDOW + 600  # in flight + ~50 ms of confirmations + slack for the engine's own replay
        subscriber.close()
    finally:
        watcher.close()
        if arros.poll() is None:
            stop_arros(arros)
        cloud.stop()
        local.stop()


@pytest.mark.slow
def test_a_60s_outage_at_1k_results_per_second(tmp_path):
    """The issue's run: the cloud is down for 60 s while 1,000 results/s go up; each arrives once, in order
    per topic (QoS 2 upstream)."""
    rate, seconds = 1000, 60
    count = rate * (seconds + 10)
    prefix = unique()
    local = start_mosquitto(tmp_path)
    cloud = persistent_cloud(tmp_path / "cloud")
    config = tmp_path / "arros.toml"
    config.write_text(f'[broker]\nurl = "{local.url}"\n' + service_config(prefix, cloud, tmp_path / "state",
                                                                           qos="2"))
    arros = start(tmp_path, config, "run-0")
    try:
        subscriber = CloudSubscriber(cloud.port, "site-7/#")
        time.sleep(1)
        publisher = threading.Thread(target=paced_inputs, args=(local.port, prefix, count, rate))
        publisher.start()
        time.sleep(5)
        cloud.stop()
        time.sleep(seconds)
        cloud.start()
        publisher.join(120)
        got = subscriber.wait_for(count, timeout=180)
        assert first_arrivals(got) == expected(prefix, count), differences(got, expected(prefix, count))
        repeated = sum(len(ns) - len(set(ns)) for ns in got.values())
        print(f"60 s outage at {rate}/s: {count} results, {repeated} repeated, "
              f"{subscriber.redelivered} retransmitted by the cloud broker on its own session")
        assert repeated == 0  # QoS 2 upstream and to the subscriber
        subscriber.close()
    finally:
        if arros.poll() is None:
            stop_arros(arros)
        cloud.stop()
        local.stop()


def differences(got: dict[str, list[int]], want: dict[str, list[int]]) -> dict[str, dict]:
    """Per topic: what is missing, what came more than once, whether first arrivals are in order."""
    out = {}
    for topic, ns in want.items():
        seen = got.get(topic, [])
        counts = Counter(seen)
        out[topic] = {"missing": sorted(set(ns) - set(seen))[:20],
                      "repeated": [n for n, c in counts.items() if c > 1][:20],
                      "in_order": first_arrivals({topic: seen})[topic] == sorted(set(seen))}
    return out


def paced_inputs(port: int, prefix: str, count: int, rate: int) -> None:
    """`rate` QoS 1 messages per second from one client, paced per tenth of a second."""
    client = new_client(port)
    client.max_inflight_messages_set(1000)
    client.connect(HOST, port)
    client.loop_start()
    began = time.monotonic()
    infos = []
    for n in range(count):
        infos.append(client.publish(f"{prefix}/in/d{n % DEVICES}", orjson.dumps({"n": n}), qos=1))
        if n % (rate // 10) == 0 and (pause := began + n / rate - time.monotonic()) > 0:
            time.sleep(pause)
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
