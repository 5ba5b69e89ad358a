"""Arros as an amqtt 0.12 broker plugin: every permitted PUBLISH on a stream topic goes to the engine,
and results go back out through the broker itself.

amqtt runs each hook as a fire-and-forget task and hides its failures below DEBUG, so the hook does
the least possible (match the topic, hand the payload to the micro-batcher) and logs its own errors;
decoding and SQL run on Arros's engine thread. The hook listens to `broker_message_broadcast`, which
amqtt fires after its topic ACL plugins allowed the message (`broker_message_received` fires before
any check): a client the ACL forbids to publish telemetry cannot feed the engine either.

Results are published from the engine thread: `publish` appends to a queue and wakes one drain task
on the broker's loop, which hands each message to `context.broadcast_message` (and `retain_message`
for retained results). A task per message, as `asyncio.run_coroutine_threadsafe` would make, costs
more than the broker's own routing.

Both hand-overs are bounded: the drain hands amqtt a chunk only while fewer than `MAX_BACKLOG` messages
wait in amqtt's broadcast queue (it awaits, the loop goes on), and `wait_for_room` lets the engine
thread wait, between slices of a result, until the outbox holds less than `[durability] output_memory`
(the broker's loop is never blocked for it). Without these a round's 100,000 results of 2 kB sat in the
outbox and amqtt's queue at once (+1 GB RSS).

`WillAclPlugin` closes a hole of amqtt 0.12: a client's Last Will is broadcast (and retained) at an
abnormal disconnect without any topic ACL check, so a device could forge an alert or a catalogue entry.
It drops, at CONNECT, a will whose topic the topic ACL plugins would refuse the client to publish
(what Mosquitto does with such a will too: the connection stands, the will is never sent).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amqtt.broker import BrokerContext
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin
from paho.mqtt.client import topic_matches_sub

from arros_mqtt.transport.stream_router import Sink, StreamRouter

log = logging.getLogger(__name__)
DRAIN_CHUNK = 500  # messages handed to the broker before the drain task lets other tasks run
MAX_BACKLOG = 1000  # messages amqtt may have waiting for its routing before the drain waits
BACKLOG_POLL = 0.002  # seconds between looks at amqtt's backlog while it is over MAX_BACKLOG
MESSAGE_OVERHEAD = 64  # bytes counted per queued message besides topic and payload
_MAX_CACHED_TOPICS = 100_000  # topics whose in-process receivers are remembered (then the cache starts over)


@dataclass(frozen=True)
class _Will:
    """A will as `on_broker_message_broadcast` reads a message."""

    topic: str
    data: bytes


class ArrosBrokerPlugin(BasePlugin[BrokerContext]):
    """Installed by `EmbeddedTransport`; inert (passes nothing on) until `attach` is called."""

    @dataclass
    class Config:
        """No options: the streams and the engine come from Arros's own config file."""

    def __init__(self, context: BrokerContext) -> None:
        super().__init__(context)
        self._router: StreamRouter | None = None
        self._deliver: Sink | None = None
        self._local: dict[tuple[str, int], Callable[[str, bytes], None]] = {}  # (filter, owner) -> receiver
        self._local_for: dict[str, list[Callable[[str, bytes], None]]] = {}  # topic -> its receivers (a cache)
        self._outbox: deque[tuple[str, bytes, int, bool]] = deque()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified when the drain took messages
        self._outbox_bytes = 0
        self._backlog: Callable[[], int] = lambda: 0  # amqtt's unrouted messages (amqtt_internals.backlog)
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Future[None] | None = None
        self.queued = 0  # messages given to `publish`
        self.broadcast = 0  # ... of which handed to the broker
        self.errors = 0

    def attach(self, router: StreamRouter, deliver: Sink, loop: asyncio.AbstractEventLoop,
               backlog: Callable[[], int] | None = None) -> None:
        self._router, self._deliver, self._loop = router, deliver, loop
        if backlog is not None:
            self._backlog = backlog

    @property
    def outbox_bytes(self) -> int:
        return self._outbox_bytes

    def wait_for_room(self, limit: int, timeout: float) -> bool:
        """On the engine thread (never the broker's loop): until the outbox holds less than `limit` bytes;
        False after `timeout` seconds."""
        with self._room:
            return self._room.wait_for(lambda: self._outbox_bytes < limit, timeout)

    def detach(self) -> None:
        """Stop passing messages to the engine (at shutdown); publishing still works."""
        self._deliver = None

    def subscribe_local(self, topic_filter: str, receive: Callable[[str, bytes], None] | None,
                        owner: int = 0) -> None:
        """An in-process receiver (the control plane, uplinks) for client PUBLISHes and the broker's own
        (results) matching `topic_filter`; None removes it. `owner` tells apart receivers of one filter (two
        uplinks of the same topics). Called on the broker's loop: `receive` must be quick (or it holds up
        the broker)."""
        if receive is None:
            self._local.pop((topic_filter, owner), None)
        else:
            self._local[(topic_filter, owner)] = receive
        self._local_for = {}

    async def on_broker_message_broadcast(self, *, client_id: str, message: Any) -> None:
        deliver, router = self._deliver, self._router
        try:
            topic = message.topic
            payload = bytes(message.data)
            for receive in self._receivers(topic):
                receive(topic, payload)
            if deliver is None or router is None:
                return
            received = time.time_ns() // 1_000_000
            for name in router.streams_for(topic):
                # May block the broker's loop while the engine is a full buffer behind (transport/embedded_broker.py).
                deliver(name, topic, payload, received)
        except Exception:  # amqtt would hide it: say it ourselves
            self.errors += 1
            log.exception("embedded broker: message from %s on %s not handed to the engine", client_id,
                          getattr(message, "topic", "?"))

    def _receivers(self, topic: str) -> list[Callable[[str, bytes], None]]:
        receivers = self._local_for.get(topic)
        if receivers is None:  # matching filters in Python per message cost 8% of the broker's loop
            receivers = [receive for (topic_filter, _), receive in list(self._local.items())
                         if topic_matches_sub(topic_filter, topic)]
            if len(self._local_for) >= _MAX_CACHED_TOPICS:
                self._local_for = {}
            self._local_for[topic] = receivers
        return receivers

    async def receive_will(self, client_id: str, topic: str, payload: bytes) -> None:
        """A Last Will the broker sends (amqtt_internals.ArrosBroker): to the engine like any PUBLISH, so a
        Sparkplug edge node's NDEATH (its will) is seen in embedded mode too."""
        await self.on_broker_message_broadcast(client_id=client_id, message=_Will(topic, payload))

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Thread-safe: queue a message for the broker's loop; never waits for the loop."""
        with self._lock:
            self._outbox.append((topic, payload, qos, retain))
            self._outbox_bytes += len(topic) + len(payload) + MESSAGE_OVERHEAD
            self.queued += 1
            wake = not self._wake_pending
            self._wake_pending = True
        if wake and self._loop is not None:
            self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain())  # referenced, so it is not collected mid-run

    async def _drain(self) -> None:
        while True:
            while self._backlog() >= MAX_BACKLOG:  # amqtt routes slower than we hand over: let it catch up
                await asyncio.sleep(BACKLOG_POLL)
            with self._lock:
                if not self._outbox:
                    self._wake_pending = False
                    return
                chunk = [self._outbox.popleft() for _ in range(min(DRAIN_CHUNK, len(self._outbox)))]
                self._outbox_bytes -= sum(len(t) + len(p) + MESSAGE_OVERHEAD for t, p, _, _ in chunk)
                self._room.notify_all()
            for topic, payload, qos, retain in chunk:
                try:
                    # QoS 1 results go out at each subscriber's QoS (amqtt's rule for client messages too);
                    # QoS 0 results are forced to 0, as MQTT's min(publish QoS, subscription QoS) wants.
                    await self.context.broadcast_message(topic, payload, qos=0 if qos == 0 else None)
                    if retain:
                        await self.context.retain_message(topic, payload, qos)
                    for receive in self._receivers(topic):  # amqtt fires no hook for the broker's own messages
                        receive(topic, payload)
                except Exception:
                    self.errors += 1
                    log.exception("embedded broker: could not publish to %s", topic)
            with self._lock:
                self.broadcast += len(chunk)
            await asyncio.sleep(0)


class WillAclPlugin(BaseAuthPlugin):
    """Strips a Last Will the topic ACL refuses; never decides a login itself (`authenticate` says None).

    An auth hook because amqtt awaits it at CONNECT, before the session can ever send its will. It asks the
    broker's topic plugins through its plugin manager, handed over by `attach` before the broker starts
    (a plugin's context has no public way to it)."""

    @dataclass
    class Config:
        """No options: the topic ACL plugins of the same broker decide."""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._plugins: Any = None  # amqtt's PluginManager

    def attach(self, plugins_manager: Any) -> None:
        self._plugins = plugins_manager

    async def authenticate(self, *, session: Any) -> bool | None:
        topic = session.will_topic
        if not session.will_flag or not topic:
            return None
        if self._plugins is not None:
            if not self._plugins.is_topic_filtering_enabled():
                return None
            results = await self._plugins.map_plugin_topic(session=session, topic=topic, action=Action.PUBLISH)
            if all(results.values()):  # amqtt's own rule for a PUBLISH
                return None
        log.warning("embedded broker: client %s (user %s) may not publish to %s: its Last Will is dropped",
                    session.client_id, session.username, topic)
        session.will_flag = False
        session.will_topic = session.will_message = None
        session.will_retain = False
        return None
