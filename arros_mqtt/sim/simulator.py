"""`arros simulate`: robot arms, AGVs and CNC machines publishing JSON telemetry to any MQTT broker.

Every device publishes `rate` readings per second. A fraction of readings (`late_fraction`) is held
back and published 0.2 s to `late_max` s later with its original timestamp, so subscriptions meet
out-of-order and late data as they do in a plant. The run is bounded by `seconds` and/or `count`
(or a `stop` event); held-back readings are published before it returns, so `count` is exact.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import orjson
import paho.mqtt.client as mqtt

from arros_mqtt.config import BrokerConfig, Config
from arros_mqtt.core.errors import ExternalError
from arros_mqtt.sim.devices import Agv, CncMachine, RobotArm
from arros_mqtt.transport.paho_client import connect, new_client
from arros_mqtt.transport.paho_internals import client_id_of

log = logging.getLogger(__name__)
Device = RobotArm | Agv | CncMachine


@dataclass(frozen=True)
class SimOptions:
    broker: str = "mqtt://127.0.0.1:1883"
    robots: int = 4
    agvs: int = 4
    cnc: int = 6
    rate: float = 5.0  # readings per second per device
    seconds: float | None = None
    count: int | None = None
    late_fraction: float = 0.02
    late_max: float = 8.0
    anomaly_rate: float = 0.01  # chance per device and reading that an anomaly starts
    qos: int = 0
    seed: int | None = None
    topic_prefix: str = ""  # prepended as `{prefix}/` to every topic (tests, several plants on one broker)


@dataclass
class SimStats:
    sent: int = 0
    late: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: {"robot": 0, "agv": 0, "cnc": 0})


def build_devices(options: SimOptions, rng: random.Random) -> list[Device]:
    """Robots r1.. in cells of 3, AGVs agv1.. (anywhere, partly charged), CNC machines m1.. on lines of 3."""
    robots = [RobotArm(f"cell{i // 3 + 1}", f"r{i + 1}") for i in range(options.robots)]
    agvs = [Agv(f"agv{i + 1}", x=round(rng.uniform(0, 50), 2), y=round(rng.uniform(0, 30), 2),
                battery=round(rng.uniform(20, 100), 1)) for i in range(options.agvs)]
    cnc = [CncMachine(f"line{i // 3 + 1}", f"m{i + 1}") for i in range(options.cnc)]
    return [*robots, *agvs, *cnc]


def kind_of(device: Device) -> str:
    return {RobotArm: "robot", Agv: "agv", CncMachine: "cnc"}[type(device)]


def broker_config(url: str, client_id: str) -> BrokerConfig:
    """MQTT 3.1.1, which every broker speaks (amqtt speaks nothing else); clean session."""
    base = Config().with_broker_url(url).broker
    assert base is not None
    return replace(base, client_id=client_id, protocol="3.1.1", clean_start=True)


def simulate(options: SimOptions, stop: threading.Event | None = None,
             on_message: Callable[[str, dict], None] | None = None) -> SimStats:
    """Publish until `seconds`, `count` or `stop`; returns what was sent. Raises ExternalError if the broker
    cannot be reached within 10 s. `on_message(topic, reading)` sees each reading as it is published."""
    rng = random.Random(options.seed)
    devices = build_devices(options, rng)
    if not devices:
        return SimStats()
    client = _connected_client(options)
    stats, held = SimStats(), []  # held: heap of (due, seq, topic, reading, kind)
    sequence = itertools.count()
    pending: list[mqtt.MQTTMessageInfo] = []
    prefix = f"{options.topic_prefix}/" if options.topic_prefix else ""

    def send(topic: str, reading: dict, kind: str) -> None:
        pending.append(client.publish(topic, orjson.dumps(reading), qos=options.qos))
        stats.sent += 1
        stats.by_kind[kind] += 1
        if on_message is not None:
            on_message(topic, reading)

    interval = 1.0 / options.rate
    start = time.monotonic()
    deadline = start + options.seconds if options.seconds is not None else float("inf")
    generated, step = 0, 0
    try:
        while (stop is None or not stop.is_set()) and time.monotonic() < deadline:
            now_ms = time.time_ns() // 1_000_000
            for device in devices:
                if options.count is not None and generated >= options.count:
                    break
                reading = {"ts": now_ms + rng.randint(0, 5), **device.step(rng, step, options.anomaly_rate)}
                generated += 1
                kind = kind_of(device)
                if rng.random() < options.late_fraction:
                    due = time.monotonic() + rng.uniform(0.2, options.late_max)
                    heapq.heappush(held, (due, next(sequence), prefix + device.topic, reading, kind))
                    stats.late += 1
                else:
                    send(prefix + device.topic, reading, kind)
            while held and held[0][0] <= time.monotonic():
                _, _, topic, reading, kind = heapq.heappop(held)
                send(topic, reading, kind)
            pending = [info for info in pending if not info.is_published()]
            if options.count is not None and generated >= options.count:
                break
            step += 1
            time.sleep(max(0.0, start + step * interval - time.monotonic()))
        for _, _, topic, reading, kind in sorted(held):  # the run is over: late ones go out now
            send(topic, reading, kind)
        for info in pending:
            info.wait_for_publish(10)
        _routed(client, prefix)
    finally:
        client.disconnect()
        client.loop_stop()
    return stats


def _routed(client: mqtt.Client, prefix: str, timeout: float = 3.0) -> bool:
    """Wait until the broker routed everything we published: a message to ourselves comes back after it.

    amqtt 0.12.1 discards acknowledged messages still queued inside it when their publisher disconnects;
    a broker whose ACL refuses this echo just costs `timeout`.
    """
    echoed = threading.Event()
    topic = f"{prefix}arros-sim/{client_id_of(client)}/routed"
    client.on_message = lambda *_: echoed.set()
    client.subscribe(topic, 1)
    client.publish(topic, b"", qos=1)
    return echoed.wait(timeout)


def _connected_client(options: SimOptions) -> mqtt.Client:
    broker = broker_config(options.broker, f"arros-sim-{random.randrange(16 ** 8):08x}")
    client = new_client(broker, persistent=False)
    client.max_inflight_messages_set(1000)
    connected = threading.Event()
    connect(client, broker, persistent=False, on_connect=lambda *_: connected.set())
    if not connected.wait(10):
        client.disconnect()
        client.loop_stop()
        raise ExternalError(f"cannot reach the broker at {broker.url} (is it running? try --broker URL)")
    return client
