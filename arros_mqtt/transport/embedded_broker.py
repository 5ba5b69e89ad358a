"""Embedded mode: an amqtt broker in-process, with Arros as its plugin; devices connect straight to it.

The broker's asyncio loop runs in a thread of its own ("arros-broker"). Messages flow:
device -> amqtt -> `ArrosBrokerPlugin` hook -> `MicroBatcher.add` -> engine thread -> `publish` ->
plugin queue -> broker loop -> subscribers.

Backpressure: `MicroBatcher.add` blocks only while the engine is a whole buffer (4 x batch_max_rows, at
least 100k messages, or 4 x batch_max_bytes, at least 16 MiB, of payload) behind. The hook then blocks
the broker's loop until the engine takes its next batch (a batch's processing time: milliseconds), so
amqtt stops reading sockets and devices' TCP windows fill: the same backpressure paho's network thread
gives in client mode. It cannot deadlock: the engine waits for the loop only in `wait_for_room` (results
past `output_memory`), and then the batcher's `add` does not block (`MicroBatcher.unbounded`); `stop`
closes the batcher, after which `add` never blocks. amqtt offers no other backpressure: it
does not wait for hooks, so a hook that awaited instead would only pile up tasks without slowing any
client.

amqtt 0.12 speaks MQTT 3.1.1 only (clients asking for MQTT 5 are refused), routes a few thousand
messages/s (see docs/brokers.md), and keeps nothing across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from arros_mqtt.config import EmbeddedConfig, StreamConfig
from arros_mqtt.core.errors import ConfigError, ExternalError
from arros_mqtt.transport.amqtt_internals import ArrosBroker, backlog, delivering
from arros_mqtt.transport.amqtt_plugin import ArrosBrokerPlugin, WillAclPlugin
from arros_mqtt.transport.presence import Presence
from arros_mqtt.transport.stream_router import Sink, StreamRouter

log = logging.getLogger(__name__)
PLUGIN_PATH = f"{ArrosBrokerPlugin.__module__}.{ArrosBrokerPlugin.__name__}"
WILL_ACL_PATH = f"{WillAclPlugin.__module__}.{WillAclPlugin.__name__}"  # Last Wills obey the topic ACL
ANONYMOUS_AUTH = "amqtt.plugins.authentication.AnonymousAuthPlugin"
ROOM_WAIT = 10.0  # seconds the engine waits at most for the outbox to go below output_memory
SETTLE_SECONDS = 0.05  # a drained broker must stay drained this long (its routing step is a task of its own)


def amqtt_config(embedded: EmbeddedConfig, source: str = "<config>") -> dict[str, Any]:
    """The amqtt broker config: `[embedded] broker_config` (or anonymous access) + our listener + plugin.

    `listen` always binds the default listener; the YAML may add listeners (TLS, websockets), plugins
    (auth, topic ACLs) and broker settings. Its `plugins:` must name an auth plugin: amqtt refuses every
    client without one.
    """
    if embedded.broker_config is None:
        config: dict[str, Any] = {"plugins": {ANONYMOUS_AUTH: {"allow_anonymous": True}}}
    else:
        config = _read_yaml(embedded.broker_config, source)
    config = copy.deepcopy(config)
    listeners = config.setdefault("listeners", {}) or {}
    config["listeners"] = listeners
    default = listeners.setdefault("default", {}) or {}
    listeners["default"] = default
    default.setdefault("type", "tcp")
    default["bind"] = embedded.listen
    plugins = config.get("plugins")
    if isinstance(plugins, list):  # amqtt's legacy list form
        plugins = {k: v for item in plugins for k, v in ({item: {}} if isinstance(item, str) else item).items()}
    if not isinstance(plugins, dict) or not any(_is_auth_plugin(path) for path in plugins):
        raise ConfigError(embedded.broker_config or source, "plugins",
                          "name an auth plugin (e.g. amqtt.plugins.authentication.AnonymousAuthPlugin or "
                          "FileAuthPlugin): amqtt refuses every client without one")
    config["plugins"] = {**plugins, WILL_ACL_PATH: {}, PLUGIN_PATH: {}}
    return config


def _read_yaml(path: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(source, "embedded.broker_config", f"cannot read {path!r}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "", "expected a mapping of amqtt broker settings")
    return data


def _is_auth_plugin(path: str) -> bool:
    from amqtt.plugins.base import BaseAuthPlugin
    from amqtt.utils import import_string

    try:
        return issubclass(import_string(path), BaseAuthPlugin)
    except (ImportError, TypeError):
        return False  # amqtt itself reports the bad path when it loads the plugins


@dataclass(frozen=True)
class LocalMessage:
    """A client PUBLISH as the control plane reads it from paho (MQTT 3.1.1: no properties)."""

    topic: str
    payload: bytes
    properties: None = None


class BrokerLocalClient:
    """The part of a paho client the control plane uses, served by the embedded broker itself.

    Requests arrive from the plugin's hook, so after amqtt's auth and topic ACL plugins: the broker's
    ACL decides who may publish to the control topic, as with Mosquitto. Replies, catalogue and statuses
    go out as the broker's own messages (no login and no publish ACL: Arros is the broker).
    """

    def __init__(self, transport: EmbeddedTransport) -> None:
        self._transport = transport
        self._filters: set[str] = set()
        self.on_message: Callable[[Any, Any, LocalMessage], None] | None = None
        self.on_subscribe: Callable[..., None] | None = None

    def subscribe(self, topics: list[tuple[str, int]] | str, qos: int = 0) -> None:
        plugin = self._transport.plugin
        assert plugin is not None, "the embedded broker is not running"
        for topic_filter, _ in [(topics, qos)] if isinstance(topics, str) else topics:
            plugin.subscribe_local(topic_filter, self._receive, id(self))
            self._filters.add(topic_filter)
        if self.on_subscribe is not None:
            self.on_subscribe(self, None, None, None, None)

    def unsubscribe(self, topic_filter: str) -> None:
        self._filters.discard(topic_filter)
        if self._transport.plugin is not None:
            self._transport.plugin.subscribe_local(topic_filter, None, id(self))

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, properties: Any = None) -> None:
        self._transport.publish(topic, payload, qos, retain)

    def disconnect(self) -> None:
        for topic_filter in list(self._filters):
            self.unsubscribe(topic_filter)

    def loop_stop(self) -> None:
        """Nothing runs on its own: the broker's loop calls `on_message`."""

    def _receive(self, topic: str, payload: bytes) -> None:
        if self.on_message is not None:
            self.on_message(self, None, LocalMessage(topic, payload))


class EmbeddedTransport:
    """The `Transport` of embedded mode: an amqtt broker on `[embedded] listen`, run in a thread."""

    def __init__(self, embedded: EmbeddedConfig, streams: list[StreamConfig], source: str = "<config>",
                 presence: Presence | None = None, output_memory: int = 64 * 1024 * 1024) -> None:
        self.embedded = embedded
        self.output_memory = output_memory  # results waiting for the broker's loop before the engine waits
        self._presence = presence  # retained online message at start, offline at a clean close
        self.amqtt_config = amqtt_config(embedded, source)
        self._router = StreamRouter(streams)
        self.subscribed = threading.Event()  # set once the broker listens: the plugin sees every PUBLISH
        self.plugin: ArrosBrokerPlugin | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._shutdown: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="arros-broker", daemon=True)

    @property
    def description(self) -> str:
        return f"embedded broker on {self.embedded.listen}"

    def local_client(self) -> BrokerLocalClient:
        """A client for in-process users of the broker (the control plane); use it after `start`."""
        return BrokerLocalClient(self)

    def start(self, deliver: Sink, connect_wait: float) -> None:
        """Start the broker; raises ExternalError when it cannot listen (e.g. the port is taken)."""
        for name in ("amqtt", "transitions"):  # both log every client connection at INFO
            chatty = logging.getLogger(name)
            if chatty.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
                chatty.setLevel(logging.WARNING)
        self._check_port_free()
        self._deliver = deliver
        self._thread.start()
        self._started.wait(max(connect_wait, 10.0))
        if self._failure is not None:
            raise ExternalError(f"embedded broker cannot listen on {self.embedded.listen}: {self._failure}")
        if not self._started.is_set():
            raise ExternalError(f"embedded broker did not start on {self.embedded.listen}")

    def _check_port_free(self) -> None:
        """A one-line error for the common failure (amqtt would log a traceback for it)."""
        host, _, port = self.embedded.listen.rpartition(":")
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
                probe.bind((host.strip("[]"), int(port)))
        except OSError as exc:
            raise ExternalError(f"embedded broker cannot listen on {self.embedded.listen}: {exc.strerror} "
                                "(another broker there? change [embedded] listen, or attach to it with "
                                "--broker mqtt://HOST:PORT)") from None

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        if self.plugin is not None:
            self.plugin.publish(topic, payload, qos, retain)

    def wait_for_room(self, unblocked: Callable[[], contextlib.AbstractContextManager]) -> None:
        """On the engine thread, between slices of a result: wait until the outbox holds less than
        `output_memory` (the broker's loop takes it), at most ROOM_WAIT seconds (a loop that stopped
        draining must not stop the engine). `unblocked()` is held while waiting: the micro-batcher
        then never blocks the loop, so the two cannot wait for each other."""
        plugin = self.plugin
        if plugin is None or plugin.outbox_bytes < self.output_memory or not self._thread.is_alive():
            return
        with unblocked():
            if not plugin.wait_for_room(self.output_memory, ROOM_WAIT):
                log.warning("embedded broker: %d bytes of results wait for the broker's loop after %.0f s; "
                            "going on", plugin.outbox_bytes, ROOM_WAIT)

    def stop_receiving(self) -> None:
        """Devices stay connected until `close`, but nothing new reaches the engine."""
        if self.plugin is not None:
            self.plugin.detach()

    def flush(self, timeout: float) -> bool:
        """Wait until the broker delivered every published message (QoS 1: acknowledged); False on timeout."""
        if self._loop is None or not self._thread.is_alive():
            return True
        future = asyncio.run_coroutine_threadsafe(self._drained(), self._loop)
        try:
            future.result(timeout)
            return True
        except TimeoutError:
            future.cancel()
            return False

    def close(self) -> None:
        if self._presence is not None and self.plugin is not None and self._thread.is_alive():
            self.publish(self._presence.topic, self._presence.offline, self._presence.qos, retain=True)
            self.flush(2.0)
        if self._loop is not None and self._shutdown is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._shutdown.set)
        self._thread.join(15)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to `start`, or logged if the broker dies later
            self._failure = exc
            if self._started.is_set():
                log.exception("embedded broker stopped unexpectedly")
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._shutdown = asyncio.Event()
        self._broker = ArrosBroker(self.amqtt_config, loop=self._loop)
        self.plugin = next(p for p in self._broker.plugins_manager.plugins if isinstance(p, ArrosBrokerPlugin))
        self.plugin.attach(self._router, self._deliver, self._loop, lambda: backlog(self._broker))
        for will_acl in (p for p in self._broker.plugins_manager.plugins if isinstance(p, WillAclPlugin)):
            will_acl.attach(self._broker.plugins_manager)
        await self._broker.start()
        if self._presence is not None:
            self.plugin.publish(self._presence.topic, self._presence.online, self._presence.qos, retain=True)
        self.subscribed.set()
        self._started.set()
        log.info("embedded MQTT broker (amqtt, MQTT 3.1.1) listening on %s", self.embedded.listen)
        await self._shutdown.wait()
        await self._broker.shutdown()

    async def _drained(self) -> None:
        """Until our queue is handed over and the broker's broadcast queue and delivery tasks are done."""
        plugin, broker = self.plugin, self._broker
        assert plugin is not None
        settled_since: float | None = None
        while True:
            busy = plugin.broadcast < plugin.queued or delivering(broker)
            now = self._loop.time()
            if busy:
                settled_since = None
            elif settled_since is None:
                settled_since = now
            elif now - settled_since >= SETTLE_SECONDS:
                return
            await asyncio.sleep(0.01)
