"""One uplink: local messages on `topics` -> the on-disk buffer -> the cloud broker, in order, through outages.

Intake: in client mode a paho client of its own on the local broker (`{client_id}`, the uplink's
client id with `-local`), subscribed to `topics` at QoS 1 with a persistent session and manual
acknowledgements: a local QoS 1 message is acknowledged only once it is in the buffer (and fsynced,
in groups every few milliseconds), so a crash before that leaves it at the local broker, which sends it
again. In embedded mode the broker's in-process client hands over every matching message (devices'
and Arros's own results) on the broker's loop.

Forwarding: a thread takes records from the buffer and publishes them on the cloud client at the
uplink's QoS, at most `WINDOW` unconfirmed at once and at most `max_rate` per second. paho keeps
what it was given across reconnects and sends it again first, in order, so order per topic holds.
When the cloud broker confirms (PUBACK / PUBCOMP; for QoS 0 once written) the buffer's cursor moves
past the longest confirmed prefix and is written to disk, so a restart sends from there: what was
confirmed but not yet in the cursor file is sent again (at least once, not exactly once).

When the buffer is full: `drop_oldest` drops its oldest segment (counted); `stop` stops taking local
messages: client mode holds them unacknowledged (MQTT 5 Receive Maximum caps how many the broker
sends before we acknowledge), embedded mode holds the broker's loop, until the cloud takes some.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from arros_mqtt.config import BrokerConfig, UplinkConfig
from arros_mqtt.transport.paho_client import connect, new_client
from arros_mqtt.uplink.batch import ENCODERS, runs
from arros_mqtt.uplink.buffer import UplinkBuffer

log = logging.getLogger(__name__)
WINDOW = 256  # records handed to the cloud client and not yet confirmed
TAKE = 64  # records read from the buffer at once
SYNC_SECONDS = 0.005  # intake: appended records are fsynced (then acknowledged locally) this often
HELD_MAX = 1000  # stop mode, client mode: local messages held unacknowledged while the buffer is full


class Uplink:
    def __init__(self, config: UplinkConfig, state_dir: str | Path, local_broker: BrokerConfig | None,
                 local_client: Any = None) -> None:
        """`local_broker`: client mode's [broker]; `local_client`: embedded mode's in-process client."""
        self.config = config
        self.name = config.name
        self.buffer = UplinkBuffer(Path(state_dir) / "uplinks" / config.name, config.buffer,
                                   drop_oldest=config.when_full == "drop_oldest")
        self.sent = 0  # confirmed by the cloud broker since start
        self.received = 0  # local messages taken into the buffer since start
        self.connected = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        # mid -> (first seq, its received ms, records in the message)
        self._inflight: collections.OrderedDict[int, tuple[int, int, int]] = collections.OrderedDict()
        self._next_seq = 0  # after the last record handed to the cloud client
        self._early: set[int] = set()  # mids confirmed before `publish` returned them to us
        self._unacked = threading.Condition(self._lock)
        self._prefix = config.prefix.rstrip("/") + "/" if config.prefix else ""
        self._cloud = new_client(config.broker, persistent=False)
        self._cloud.max_inflight_messages_set(WINDOW)
        self._cloud.on_publish = self._on_publish
        self._forwarder = threading.Thread(target=self._forward, name=f"arros-uplink-{self.name}", daemon=True)
        self._intake = _Intake(self, local_broker, local_client)

    # -- lifecycle --

    def start(self) -> None:
        self._connect_cloud()
        self._forwarder.start()
        self._intake.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking local messages (unacknowledged ones stay at the local broker), give the cloud what
        is in flight up to `timeout`, write the cursor; the rest waits in the buffer for the next start."""
        self._intake.stop()
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._inflight and self.connected.is_set() and time.monotonic() < deadline:
                self._unacked.wait(0.05)
        self._stopping.set()
        self._forwarder.join(timeout)
        self._cloud.disconnect()
        self._cloud.loop_stop()
        self.buffer.close()

    def _connect_cloud(self) -> None:
        """MQTT 5: a clean session at the first connect, kept across reconnects (QoS 2 resumes where it
        was); MQTT 3.1.1: a clean session each time (paho sends unconfirmed messages again either way)."""
        broker = self.config.broker

        def connected(_client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
            if reason_code.is_failure:
                log.warning("uplink %s: %s refused the connection: %s", self.name, broker.url, reason_code)
                return
            log.info("uplink %s: connected to %s", self.name, broker.url)
            self.connected.set()

        def disconnected(_client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
            if self.connected.is_set() and not self._stopping.is_set():
                log.warning("uplink %s: lost %s (%s); buffering", self.name, broker.url, reason_code)
            self.connected.clear()

        self._cloud.on_connect, self._cloud.on_disconnect = connected, disconnected
        properties = None
        if broker.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = int(broker.session_expiry)
        self._cloud.connect_async(broker.host, broker.port, keepalive=broker.keepalive,
                                  clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY, properties=properties)
        self._cloud.loop_start()

    # -- the forwarding thread --

    def _forward(self) -> None:
        budget = _RateLimit(self.config.max_rate)
        batching = self.config.batch != "none"
        while not self._stopping.is_set():
            with self._lock:
                room = WINDOW - len(self._inflight)
            if room <= 0 or not self.connected.is_set():
                self._stopping.wait(0.01)
                continue
            if batching and (wait := self._batch_wait()) > 0:
                self._stopping.wait(wait)
                continue
            count = min(room, TAKE, budget.allowance())
            records = self.buffer.take(count * self.config.batch_max_messages if batching else count)
            if not records:
                self.buffer.wait_for_records(0.05)
                continue
            if batching:
                encode = ENCODERS[self.config.batch]
                batches = runs(records, self.config.batch_max_messages)
                for batch in batches:
                    self._publish(batch[0].topic, encode(batch), batch[0], batch[-1], len(batch))
                budget.spend(len(batches))
            else:
                for record in records:
                    self._publish(record.topic, record.payload, record, record, 1)
                budget.spend(len(records))
        self.buffer.flush_cursor()

    def _batch_wait(self) -> float:
        """Seconds to let a batch fill: 0 once `batch_max_messages` are unread or the oldest unread
        record has waited `batch_max_delay`."""
        if self.buffer.unread >= self.config.batch_max_messages:
            return 0.0
        oldest = self.buffer.unread_ms()
        if oldest is None:
            return 0.0  # nothing unread: take() waits for records
        left = self.config.batch_max_delay - (time.time() - oldest / 1000)
        return min(0.05, left) if left > 0 else 0.0

    def _publish(self, topic: str, payload: bytes, first: Any, last: Any, count: int) -> None:
        """Records `first`..`last` (`count` of them) as one message. Not under our lock: paho calls
        `_on_publish` holding its own, which `publish` takes too."""
        info = self._cloud.publish(self._prefix + topic, payload, self.config.qos)
        with self._lock:
            self._next_seq = last.seq + 1
            if info.mid not in self._early:
                self._inflight[info.mid] = (first.seq, first.received_ms, count)
                return
            self._early.discard(info.mid)  # confirmed before we got here
            self.sent += count
            floor = next(iter(self._inflight.values()))[0] if self._inflight else self._next_seq
        self.buffer.confirm(floor)

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, _reason: Any = None, _props: Any = None) -> None:
        """The cloud broker confirmed `mid`: the cursor moves to the first record still unconfirmed
        (records are handed out in order, so everything before it is confirmed)."""
        with self._lock:
            if (done := self._inflight.pop(mid, None)) is None:
                self._early.add(mid)
                return
            self.sent += done[2]
            floor = next(iter(self._inflight.values()))[0] if self._inflight else self._next_seq
            self._unacked.notify_all()
        self.buffer.confirm(floor)

    # -- health --

    def status(self) -> dict[str, Any]:
        with self._lock:
            oldest = next(iter(self._inflight.values()))[1] if self._inflight else None
        if oldest is None:
            oldest = self.buffer.unread_ms()
        return {
            "connected": self.connected.is_set(), "url": self.config.broker.url,
            "buffered_messages": self.buffer.pending, "buffered_bytes": self.buffer.bytes,
            "oldest_seconds": round(max(0.0, time.time() - oldest / 1000), 3) if oldest is not None else 0.0,
            "dropped": self.buffer.dropped, "sent": self.sent, "received": self.received,
            "held": self._intake.held, "when_full": self.config.when_full,
        }


class _RateLimit:
    """A token bucket of `rate` messages per second (0: no limit), bursts up to a tenth of a second's."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = max(1.0, rate / 10)
        self.at = time.monotonic()

    def allowance(self) -> int:
        if self.rate <= 0:
            return TAKE
        while True:
            now = time.monotonic()
            self.tokens = min(max(1.0, self.rate / 10), self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                return int(self.tokens)
            time.sleep((1 - self.tokens) / self.rate)

    def spend(self, count: int) -> None:
        if self.rate > 0:
            self.tokens -= count


class _Intake:
    """Local messages into the buffer: a paho client on the local broker, or the embedded broker's own."""

    def __init__(self, uplink: Uplink, local_broker: BrokerConfig | None, local_client: Any) -> None:
        self.uplink = uplink
        self.buffer = uplink.buffer
        self.topics = uplink.config.topics
        self.embedded = local_client is not None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._to_ack: list[tuple[int, int]] = []  # (connection, mid): acknowledged on that connection only
        self._connection = 0
        self._appended = 0
        self._held: collections.deque[Any] = collections.deque()
        self._room = threading.Condition(self._lock)
        self._syncer = threading.Thread(target=self._sync, name=f"arros-uplink-{uplink.name}-sync", daemon=True)
        if self.embedded:
            self.client = local_client
            self.broker = None
        else:
            assert local_broker is not None
            self.broker = BrokerConfig(**{**local_broker.__dict__,
                                          "client_id": f"{uplink.config.broker.client_id}-local"})
            self.client = new_client(self.broker, persistent=True)
            self.client.manual_ack_set(True)
        self.client.on_message = self._on_message

    @property
    def held(self) -> int:
        return len(self._held)

    def start(self) -> None:
        self._syncer.start()
        if self.embedded:
            self.client.subscribe([(topic, 1) for topic in self.topics])
        else:
            connect(self.client, self.broker, persistent=True, receive_maximum=HELD_MAX, on_connect=self._on_connect)

    def _on_connect(self, client: Any, _session_present: bool) -> None:
        """A new connection: packet ids of the old one mean nothing now (the broker sends those again)."""
        with self._lock:
            self._connection += 1
            self._to_ack = []
            self._held.clear()
        client.subscribe([(topic, 1) for topic in self.topics])

    def stop(self) -> None:
        self._stopping.set()
        with self._room:
            self._room.notify_all()
        self.client.disconnect()
        if not self.embedded:
            self.client.loop_stop()
        self._syncer.join(2.0)
        self.buffer.sync()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        qos = getattr(message, "qos", 0)
        mid = getattr(message, "mid", 0) if not self.embedded else 0
        topic, payload = message.topic, bytes(message.payload)
        with self._room:
            if not self._held and self.buffer.append(topic, payload, qos):
                self.uplink.received += 1
                self._appended += 1
                if qos > 0 and not self.embedded:
                    self._to_ack.append((self._connection, mid))
                return
            if self.embedded:  # stop, embedded: hold the broker's loop until the cloud takes some
                while not self._stopping.is_set() and not self.buffer.append(topic, payload, qos):
                    self._room.wait(0.05)
                self.uplink.received += 1
                self._appended += 1
                return
            self._held.append((topic, payload, qos, mid))
            while len(self._held) >= HELD_MAX and not self._stopping.is_set():  # MQTT 3.1.1: no Receive Maximum
                self._room.wait(0.05)

    def _sync(self) -> None:
        """Every few ms: held messages into the buffer if there is room, fsync, acknowledge locally."""
        synced = 0
        while not self._stopping.wait(SYNC_SECONDS):
            with self._room:
                while self._held and self.buffer.append(*self._held[0][:3]):
                    _, _, qos, mid = self._held.popleft()
                    self.uplink.received += 1
                    self._appended += 1
                    if qos > 0 and not self.embedded:
                        self._to_ack.append((self._connection, mid))
                self._room.notify_all()
                to_ack, self._to_ack = self._to_ack, []
                appended, connection = self._appended, self._connection
            if appended != synced:
                self.buffer.sync()
                synced = appended
            for on, mid in to_ack:
                if on == connection:
                    self.client.ack(mid, 1)
