"""Real things for tests: a Mosquitto on a free 127.0.0.1 port, paho clients that collect and
publish, the service itself (in-process or as the `arros` command), and `BrokerUnderTest`, which runs
the same test against client mode on Mosquitto and against the embedded broker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from arros_mqtt.testing import (  # noqa: F401 - re-exported for tests
    HOST,
    Mosquitto,
    free_port,
    mosquitto_config,
    run_as_me,
    start_mosquitto,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parent.parent


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def new_client(port: int, client_id: str = "", protocol: int = mqtt.MQTTv5, **kwargs) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or unique("test-"), protocol=protocol,
                         **kwargs)
    return client


@dataclass
class Collector:
    """A real subscriber that keeps every message it receives on `topics`."""

    port: int
    topics: list[str]
    qos: int = 1
    protocol: int = mqtt.MQTTv5
    auth: tuple[str, str] | None = None  # (username, password)
    messages: list[tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._subscribed = threading.Event()
        self.client = new_client(self.port, protocol=self.protocol)
        if self.auth:
            self.client.username_pw_set(*self.auth)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect(HOST, self.port)
        self.client.subscribe([(t, self.qos) for t in self.topics])
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("collector did not get SUBACK")

    def _on_message(self, _client, _userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload))
            self._lock.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[tuple[str, bytes]]:
        """Wait until `count` messages arrived (or timeout), then a short grace for extra ones."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.messages) < count and time.monotonic() < deadline:
                self._lock.wait(0.1)
        time.sleep(0.3)  # anything beyond `count` would be a duplicate: let it show
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(port: int, messages: list[tuple[str, bytes]], qos: int = 1, protocol: int = mqtt.MQTTv5,
                auth: tuple[str, str] | None = None, sync: bool = False) -> None:
    """Publish and wait until the broker acknowledged every QoS 1 message.

    `sync`: before disconnecting, also wait until the broker routed them all (a message to ourselves
    comes back after them). amqtt 0.12.1 discards acknowledged messages still queued inside it when
    their publisher disconnects.
    """
    client = new_client(port, protocol=protocol)
    if auth:
        client.username_pw_set(*auth)
    client.max_inflight_messages_set(1000)
    echoed = threading.Event()
    sentinel = unique("sync/")
    client.on_message = lambda *_: echoed.set()
    client.connect(HOST, port)
    client.loop_start()
    if sync:
        client.subscribe(sentinel, 1)
    infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(30)
    if sync:
        client.publish(sentinel, b"", qos=1)
        if not echoed.wait(30):
            raise TimeoutError("the broker did not route the published messages")
    client.disconnect()
    client.loop_stop()


def mosquitto_pub_lines(port: int, topic: str, lines: list[bytes], qos: int = 1) -> None:
    """`mosquitto_pub -l`: one message per line on stdin."""
    subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), "-t", topic, "-q", str(qos), "-l"],
                   input=b"\n".join(lines) + b"\n", check=True, timeout=60)


@contextlib.contextmanager
def running_service(config_text: str, directory: Path, broker_url: str | None = None,
                    listen: str | None = None) -> Iterator:
    """The service in-process, from a config text, attached to `broker_url`, or running the embedded
    broker on `listen` (its [broker] table, if any, ignored)."""
    from arros_mqtt.config import load_config
    from arros_mqtt.service.runtime import Service

    path = directory / f"{unique('arros-')}.toml"
    path.write_text(config_text)
    config = load_config(path)
    if broker_url is not None:
        config = config.with_broker_url(broker_url)
    elif listen is not None:  # embedded mode, even for a config written for client mode
        config = replace(config, broker=None, embedded=replace(config.embedded, listen=listen))
    if "state_dir" not in config_text:  # never restore run-time subscriptions left in ./arros-state
        config = replace(config, engine=replace(config.engine, state_dir=str(directory / unique("state-"))))
    if "[web]" not in config_text:  # tests run in parallel: none holds the console's default port 8080
        config = replace(config, web=replace(config.web, enabled=False))
    service = Service(config)
    service.start()
    wait_subscribed(service)
    try:
        yield service
    finally:
        service.stop()


@dataclass
class BrokerUnderTest:
    """Where a test's devices and subscribers connect, and how the service attaches there.

    `mosquitto`: a shared Mosquitto, Arros in client mode (MQTT 5). `embedded`: Arros runs amqtt on a
    free port for the duration of `service()` (clients speak MQTT 3.1.1, all amqtt supports), so
    collectors and publishers must connect inside the `with broker.service(...)` block.
    """

    kind: str
    port: int
    protocol: int
    url: str | None = None  # client mode only

    def service(self, config_text: str, directory: Path):
        if self.kind == "embedded":
            return running_service(config_text, directory, listen=f"{HOST}:{self.port}")
        return running_service(config_text, directory, self.url)

    def collector(self, topics: list[str], qos: int = 1) -> Collector:
        return Collector(self.port, topics, qos=qos, protocol=self.protocol)

    def publish_all(self, messages: list[tuple[str, bytes]], qos: int = 1) -> None:
        publish_all(self.port, messages, qos=qos, protocol=self.protocol, sync=self.kind == "embedded")


def wait_subscribed(service, timeout: float = 10.0) -> None:
    """Until the broker acknowledged the service's SUBSCRIBE."""
    if not service.transport.subscribed.wait(timeout):
        raise TimeoutError("the service did not subscribe")


def arros_command(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arros_mqtt", *args], capture_output=True, text=True,
                          timeout=kwargs.pop("timeout", 60), cwd=kwargs.pop("cwd", ROOT), **kwargs)


def start_arros(*args: str, log: Path) -> subprocess.Popen:
    handle = open(log, "wb")  # noqa: SIM115 - lives as long as the process
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "arros_mqtt", *args], stdout=handle, stderr=subprocess.STDOUT,
                            cwd=ROOT, env=env)


def wait_for_log(path: Path, *texts: str, process: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    """Until one of `texts` is in the log of a process we started; fails early if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and any(text in path.read_text(errors="replace") for text in texts):
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"arros exited ({process.returncode}):\n{path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"none of {texts} in {path} after {timeout}s")


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    return process.wait(timeout)


@contextlib.contextmanager
def connected_result_client(mosquitto, protocol: str, client_class: type, on_publish=None,
                            inflight: int | None = None):
    """A started result client of `client_class` (`new_client` from `[broker]`, suffix -out) connected to
    the test broker; disconnected at the end. `inflight`: paho's QoS 1/2 window (0: none, as the result
    sink sets it; None: paho's default)."""
    from arros_mqtt.config import BrokerConfig
    from arros_mqtt.transport.paho_client import new_client as new_broker_client

    client = new_broker_client(BrokerConfig(url=mosquitto.url, client_id=unique("result-"), protocol=protocol),
                               suffix="-out", persistent=False, client_class=client_class)
    client.on_publish = on_publish
    if inflight is not None:
        client.max_inflight_messages_set(inflight)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    try:
        assert connected.wait(10)
        yield client
    finally:
        client.disconnect()
        client.loop_stop()
