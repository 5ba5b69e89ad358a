"""Publishes result messages and dead letters to the broker on a client of its own.

Messages go through an `OutputQueue` (egress/output_queue.py): while the broker is unreachable they wait
there (in memory, then spilled to disk) instead of being dropped, and are published in order after the
reconnect. Each is tagged with the write-ahead log position (`position`) that produced it.

With `journal_dir` (the write-ahead log on), QoS 2 results are published exactly once, also across a
crash: the client keeps a persistent session (the broker must remember which QoS 2 packet ids it has
until their PUBREL) and is an `ExactlyOnceClient` driven by the output journal under `journal_dir`.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from arros_mqtt.config import BrokerConfig
from arros_mqtt.core.log_position import LogPosition
from arros_mqtt.egress.exactly_once_client import ExactlyOnceClient, Releaser
from arros_mqtt.egress.output_journal import OutputJournal
from arros_mqtt.egress.output_queue import OutputQueue
from arros_mqtt.egress.packet_size import packet_limit
from arros_mqtt.transport.bulk_ack import BulkAckClient
from arros_mqtt.transport.bulk_write import BulkWriteClient
from arros_mqtt.transport.paho_client import connect, new_client, send_at_once

MAX_INFLIGHT = 1000
DEFAULT_MEMORY_BYTES = 64 * 1024 * 1024


class ResultClient(BulkAckClient, BulkWriteClient):
    """Results written in bulk (`BulkWriteClient`), their PUBACKs taken in bulk (`BulkAckClient`)."""


class ExactlyOnceResultClient(ExactlyOnceClient, ResultClient):
    """QoS 2 under the output journal (`ExactlyOnceClient`), the rest as `ResultClient`."""


class MqttSink:
    def __init__(self, broker: BrokerConfig, memory_bytes: int = DEFAULT_MEMORY_BYTES, spill_bytes: int = 0,
                 spill_dir: Path | None = None, position: LogPosition | None = None,
                 journal_dir: Path | None = None) -> None:
        self.position = position or LogPosition()
        self.journal = OutputJournal(journal_dir) if journal_dir is not None else None
        if self.journal is not None:  # the session must outlive a crash, whatever clean_start says for ingress
            broker = dataclasses.replace(broker, clean_start=False)
        self.broker = broker
        self.persistent = self.journal is not None
        self.client = new_client(broker, suffix="-out", persistent=self.persistent,
                                 client_class=ExactlyOnceResultClient if self.journal is not None
                                 else ResultClient)
        # The output queue keeps at most MAX_INFLIGHT messages in flight; paho's own limit would only cost: on
        # every PUBACK it walks all its in-flight messages for a queued one (O(in flight) per acknowledgement,
        # the QoS 1 result path's limit at ~4k msg/s). 0 = no limit of paho's, so that walk never runs.
        self.client.max_inflight_messages_set(0)
        send_at_once(self.client)  # results leave as they are made, not when Nagle's timer lets them
        self.outputs = OutputQueue(self.client, memory_bytes, spill_bytes, spill_dir, MAX_INFLIGHT, self.journal)
        self.releaser = Releaser(self.client, self.journal) if self.journal is not None else None
        self.client.on_publish = lambda _client, _userdata, mid, _reason, _properties: self.outputs.acked(mid)
        self.client.on_pubacks = self.outputs.acked_many
        self.connected = threading.Event()
        self.outputs.packet_limit = packet_limit(broker.max_packet_size, None)

    @property
    def packet_limit(self) -> int:
        """The largest PUBLISH the broker takes (its CONNACK's Maximum Packet Size, `[broker] max_packet_size`)."""
        return self.outputs.packet_limit

    @property
    def sent(self) -> int:
        return self.outputs.put_count

    @property
    def acked(self) -> int:
        return self.outputs.acknowledged

    def start(self, wait: float = 10.0) -> None:
        """Connect, waiting up to `wait` seconds so the first results are not queued needlessly."""
        if self.releaser is not None:
            self.releaser.start()
        connect(self.client, self.broker, persistent=self.persistent, on_connect=self._connected,
                on_connack=self._connack)
        self.connected.wait(wait)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.outputs.put(self.position.seq, topic, payload, qos, retain)

    def flush(self, timeout: float) -> bool:
        """Wait until every message was sent (QoS 0) or acknowledged (QoS 1 and 2); False on timeout."""
        self.outputs.pump()
        return self.outputs.wait_empty(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        self.client.disconnect()
        self.client.loop_stop()
        if self.releaser is not None:
            self.releaser.stop()
        if self.journal is not None:
            self.journal.close()

    def _connack(self, properties) -> None:
        announced = getattr(properties, "MaximumPacketSize", None) if properties is not None else None
        self.outputs.packet_limit = packet_limit(self.broker.max_packet_size, announced)

    def _connected(self, _client, _session_present: bool) -> None:
        self.connected.set()
        self.outputs.connected()
