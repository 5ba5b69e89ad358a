"""paho's client with the sender side of QoS 2 under the output journal's control (exactly once).

paho-mqtt 2 picks packet ids itself and answers a PUBREC with a PUBREL at once. Publishing exactly once
across a crash needs both in our hands (egress/output_journal.py): the id is chosen before the
PUBLISH is recorded, and the PUBREL leaves only after its release is synced. Narrow overrides of paho's
hooks (`QoS2Hooks`, paho_internals.py) do it: `next_mid` hands out ids reserved ahead and never one paho
still holds (a previous run's pending ids are preloaded, so the broker's session never sees an id reused
while it waits for its PUBREL); `handle_pubrec` passes the id to `on_pubrec` instead of answering;
`release` sends the PUBRELs;
`preload` puts a previous run's pending messages into paho's out-queue before it connects, so paho's
own reconnect logic re-sends them: PUBLISH with DUP, or only the PUBREL for released ones.

Why a subclass and not a QoS 2 sender of our own on a socket: TLS, authentication, MQTT 5, keepalive,
reconnect with backoff and QoS 1 flow control stay paho's tested code; the overrides touch only the
QoS 2 sender state, and the fault tests exercise them against a real Mosquitto.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt

from arros_mqtt.egress.output_journal import Entry, OutputJournal
from arros_mqtt.transport.paho_internals import QoS2Hooks, out_message_lock

log = logging.getLogger(__name__)
MAX_MID = 65535


class ExactlyOnceClient(QoS2Hooks):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.on_pubrec: Callable[[int], None] | None = None  # (packet id): send its PUBREL via `release`
        self._reserved: set[int] = set()  # ids chosen for messages not handed to `publish` yet
        self._next_mid: int | None = None

    # -- packet ids --

    def reserve_mid(self) -> int:
        """A free packet id for the next QoS 2 message; `publish_with` uses it."""
        with self.mid_lock:
            mid = self._free_mid()
            self._reserved.add(mid)
            return mid

    def unreserve_mid(self, mid: int) -> None:
        with self.mid_lock:
            self._reserved.discard(mid)

    def publish_with(self, mid: int, topic: str, payload: bytes, qos: int, retain: bool) -> mqtt.MQTTMessageInfo:
        """`publish` with the packet id `mid` (from `reserve_mid`). Hold `out_message_lock` around it."""
        self._next_mid = mid
        try:
            return self.publish(topic, payload, qos=qos, retain=retain)
        finally:
            self._next_mid = None
            self._reserved.discard(mid)

    def next_mid(self) -> int:
        with self.mid_lock:
            if self._next_mid is not None:
                return self._next_mid
            return self._free_mid()

    def _free_mid(self) -> int:
        in_flight = self.out_messages
        for _ in range(MAX_MID):
            self.last_mid = mid = self.last_mid % MAX_MID + 1
            if mid not in in_flight and mid not in self._reserved:
                return mid
        raise RuntimeError("all 65,535 MQTT packet ids are in flight")

    # -- QoS 2 flow --

    def preload(self, entries: Iterable[Entry]) -> None:
        """A previous run's pending messages, re-sent by paho once connected (call before connecting)."""
        with out_message_lock(self):
            for entry in entries:
                message = mqtt.MQTTMessage(entry.mid, entry.topic.encode())
                message.payload = entry.payload
                message.qos = 2
                message.retain = entry.retain
                message.dup = True
                message.state = mqtt.mqtt_ms_wait_for_pubcomp if entry.released else mqtt.mqtt_ms_wait_for_pubrec
                self.out_messages[entry.mid] = message

    def release(self, mids: Iterable[int]) -> None:
        """Send the PUBRELs of these ids (their release is durable)."""
        in_flight = self.out_messages
        with out_message_lock(self):
            for mid in mids:
                message = in_flight.get(mid)
                if message is None:
                    continue
                if message.state == mqtt.mqtt_ms_wait_for_pubrec:
                    message.state = mqtt.mqtt_ms_wait_for_pubcomp
                    self.send_pubrel(mid)
                elif message.state == mqtt.mqtt_ms_publish:  # reset by a reconnect, CONNACK not yet handled
                    message.state = mqtt.mqtt_ms_resend_pubrel

    def handle_pubrec(self, mid: int) -> mqtt.MQTTErrorCode:
        with out_message_lock(self):
            message = self.out_messages.get(mid)
            if message is None:
                return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
            message.timestamp = mqtt.time_func()
            if message.state == mqtt.mqtt_ms_wait_for_pubcomp or self.on_pubrec is None:  # released already
                message.state = mqtt.mqtt_ms_wait_for_pubcomp
                return self.send_pubrel(mid)
        self.on_pubrec(mid)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS


class Releaser:
    """A thread that records releases in the journal, one fsync per group of PUBRECs, then sends the
    PUBRELs: PUBRECs arriving during an fsync make the next group."""

    def __init__(self, client: ExactlyOnceClient, journal: OutputJournal) -> None:
        self.client = client
        self.journal = journal
        self._mids: list[int] = []
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="arros-qos2-release", daemon=True)
        client.on_pubrec = self.pubrec

    def start(self) -> None:
        self._thread.start()

    def pubrec(self, mid: int) -> None:
        with self._wake:
            self._mids.append(mid)
            self._wake.notify()

    def stop(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._mids or self._stopped)
                if self._stopped:
                    return
                mids, self._mids = self._mids, []
            try:
                self.journal.released(mids)
                self.journal.sync()
            except OSError as exc:  # the PUBRELs wait: the broker keeps the ids; retried on the next PUBREC
                log.error("output journal: cannot record the release of %d QoS 2 messages: %s", len(mids), exc)
                with self._wake:
                    self._mids = mids + self._mids
                    self._wake.wait(1.0)
                continue
            self.client.release(mids)
