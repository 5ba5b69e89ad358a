"""Client mode ingress: subscribe to every stream's topic filter and hand raw messages on.

The paho callback does the least possible per message: note the arrival time and append to the
stream's buffer. Everything else happens per micro-batch on the engine thread.

With an `AckLedger` (the write-ahead log is on), paho does not acknowledge messages itself: the ledger
sends each PUBACK once the message's rows are in the log, and drops redelivered copies of messages
already logged. `pause` then stops taking messages without disconnecting, so the acknowledgements of
the last micro-batches still reach the broker; what arrives after it is left unacknowledged and is
redelivered to the next run from the persistent session.
"""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as mqtt

from arros_mqtt.config import BrokerConfig, StreamConfig
from arros_mqtt.ingress.acks import AckLedger
from arros_mqtt.transport.bulk_read import BulkReadClient
from arros_mqtt.transport.paho_client import connect, new_client
from arros_mqtt.transport.presence import Presence
from arros_mqtt.transport.stream_router import ROUTE_CACHE_SIZE, Sink, StreamRouter

log = logging.getLogger(__name__)
__all__ = ["MqttSource", "Sink"]
RECEIVE_MAXIMUM = 65_535  # MQTT 5: unacknowledged QoS 1 messages the broker may have in flight to us


def shared_filter(group: str | None, topic_filter: str) -> str:
    """The filter a member of `group` subscribes (MQTT 5 shared subscription), or `topic_filter` alone."""
    return topic_filter if group is None else f"$share/{group}/{topic_filter}"


class MqttSource:
    def __init__(
        self, broker: BrokerConfig, streams: list[StreamConfig], sink: Sink, presence: Presence | None = None,
        ledger: AckLedger | None = None, share_group: str | None = None,
    ) -> None:
        """`share_group`: a `[cluster]` group; each filter is subscribed as `$share/{group}/{filter}`, so the
        broker hands each message to one member. Routing still uses the message's own topic."""
        self.broker = broker
        self._ledger = ledger
        self._paused = False
        self._presence = presence
        self._sink = sink
        # a MicroBatcher's `add` as the sink: its `add_many` takes the bulk path's lists whole
        self._sink_many = getattr(getattr(sink, "__self__", None), "add_many", None) or self._sink_each
        self._router = StreamRouter(streams)
        self._share_group = share_group
        self._subscriptions = {shared_filter(share_group, topic_filter): qos  # what we subscribe -> QoS
                               for topic_filter, qos in self._router.qos.items()}
        self._raw_routes: dict[bytes, tuple[str, tuple[str, ...]]] = {}  # topic bytes -> (topic, streams)
        self.subscribed = threading.Event()  # set once the broker acknowledged our SUBSCRIBE
        self.client = new_client(broker, client_class=BulkReadClient)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        if ledger is not None:
            self.client.manual_ack_set(True)
        self.client.on_publishes_with_ids = self._on_publishes
        if presence is not None:
            self.client.will_set(presence.topic, presence.offline, qos=presence.qos, retain=True)

    def start(self) -> None:
        connect(self.client, self.broker, on_connect=self._subscribe,
                receive_maximum=RECEIVE_MAXIMUM if self._ledger is not None else None)

    def pause(self) -> None:
        """Take no more messages (they stay unacknowledged); acknowledgements still go out."""
        self._paused = True

    def acknowledge(self, mids: list[int]) -> None:
        """PUBACKs for QoS 1 messages, in order (the ledger calls this; one write queued for paho's thread)."""
        self.client.send_pubacks(mids)

    def stop(self) -> None:
        """Stop receiving; the persistent session keeps what arrives meanwhile for the next start."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if self._paused:
            return
        received = time.time_ns() // 1_000_000
        topic = message.topic
        streams = self._router.streams_for(topic)
        if self._ledger is not None and not self._ledger.received(message.mid, message.qos, message.dup, streams):
            return
        for name in streams:
            self._sink(name, topic, message.payload, received)

    def _on_publishes(self, topics: list[bytes], payloads: list[bytes], mids: list[int], dups: list[bool]) -> None:
        """QoS 0 and 1 messages taken in bulk from the socket (`BulkReadClient`): the same as `_on_message`,
        handed on per stream as lists (one lock round in the micro-batcher instead of one per message).
        Without the ledger, their PUBACKs go out once they are handed on, as paho's would."""
        if self._paused:
            return
        received = time.time_ns() // 1_000_000
        routes, ledger = self._raw_routes, self._ledger
        by_stream: dict[str, tuple[list[str], list[bytes]]] = {}
        for raw, payload, mid, dup in zip(topics, payloads, mids, dups, strict=True):
            route = routes.get(raw)
            if route is None:
                route = self._raw_route(raw)
            topic, streams = route
            # every message holds its place in the acknowledgement order, QoS 0 ones too
            if ledger is not None and not ledger.received(mid, 1 if mid else 0, dup, streams):
                continue  # a copy of a logged message: the ledger acknowledged it again
            for name in streams:
                lists = by_stream.get(name)
                if lists is None:
                    lists = by_stream[name] = ([], [])
                lists[0].append(topic)
                lists[1].append(payload)
        for name, (stream_topics, stream_payloads) in by_stream.items():
            self._sink_many(name, stream_topics, stream_payloads, received)
        if ledger is None:
            self.client.send_pubacks([mid for mid in mids if mid])

    def _sink_each(self, stream: str, topics: list[str], payloads: list[bytes], received: int) -> None:
        for topic, payload in zip(topics, payloads, strict=True):
            self._sink(stream, topic, payload, received)

    def _raw_route(self, raw: bytes) -> tuple[str, tuple[str, ...]]:
        if len(self._raw_routes) >= ROUTE_CACHE_SIZE:
            self._raw_routes.clear()
        try:
            topic = raw.decode()
        except UnicodeDecodeError:  # brokers refuse such topics; never let one stop the network thread
            log.warning("dropped a message with a topic that is not UTF-8: %r", raw[:100])
            return "", ()
        route = self._raw_routes[raw] = (topic, self._router.streams_for(topic))
        return route

    def _subscribe(self, client: mqtt.Client, session_present: bool) -> None:
        # Subscribing again to the same filters replaces them: never a duplicate subscription.
        if self._subscriptions:
            client.subscribe(list(self._subscriptions.items()))
            log.info("subscribed to %s", ", ".join(self._subscriptions))
        if session_present and self._share_group is not None and self._router.qos:
            # joined a group with the session of a lone instance: its unshared filters would go on delivering
            # every message to this member too (after the shared SUBSCRIBE: an overlap repeats, a gap loses)
            client.unsubscribe(list(self._router.qos))
        else:  # only connector-fed streams: nothing to wait for
            self.subscribed.set()
        if self._presence is not None:
            client.publish(self._presence.topic, self._presence.online, qos=self._presence.qos, retain=True)
