"""paho's client writing its queued PUBLISH and acknowledgement packets together: the result client's send path.

paho's network thread writes each queued packet with its own `send` and, after each QoS 0 PUBLISH,
builds a `ReasonCode` and a `Properties` for the `on_publish` callback; with a result message per row
that was a third of a core at 5k results/s here, competing for the GIL with the engine thread (and so
adding to every result's latency). Here the PUBLISH, PUBACK, PUBREC, PUBREL and PUBCOMP packets at the
head of the queue (up to `WRITE_SIZE` bytes) leave in one `send`, and `on_publish` of QoS 0 messages
gets one shared `ReasonCode`/`Properties` per write. Callbacks still run once per message, in order,
after its bytes are written (QoS 1 and 2 messages get theirs on the broker's answer, as in paho).

`publishing()` is the other half: paho wakes its network thread with one byte on a socket pair per
queued packet (a system call each); inside the block, packets are queued without it and one wake-up
follows at the end, so a round of results costs one.

Everything else (CONNECT, SUBSCRIBE, PINGREQ, DISCONNECT, ...) is written by paho's own writer. The hooks
into paho's queue, socket and wake-up are `WriteHooks` (paho_internals.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from arros_mqtt.transport.paho_internals import OutPacket, WriteHooks

WRITE_SIZE = 256 * 1024
_BULK = frozenset({mqtt.PUBLISH, mqtt.PUBACK, mqtt.PUBREC, mqtt.PUBREL, mqtt.PUBCOMP})


def _is_qos0_publish(packet: OutPacket) -> bool:
    return packet["command"] & 0xF0 == mqtt.PUBLISH and packet["qos"] == 0


def _bulk(packet: OutPacket) -> bool:
    return packet["command"] & 0xF0 in _BULK


class BulkWriteClient(WriteHooks):
    @contextmanager
    def publishing(self) -> Iterator[None]:
        """Queue several packets (e.g. `publish` in a loop) with one wake-up of the network thread.
        Other threads queueing meanwhile wake it as usual."""
        self.quiet_thread, self.wake_owed = threading.get_ident(), False
        try:
            yield
        finally:
            self.quiet_thread = None
            if self.wake_owed:
                self.wake()

    def write_queued(self) -> mqtt.MQTTErrorCode:
        queue = self.out_queue
        while queue:
            if not _bulk(queue[0]):
                return self.paho_packet_write()
            batch = []
            size = 0
            while queue and size < WRITE_SIZE and _bulk(queue[0]):
                packet = queue.popleft()
                batch.append(packet)
                size += packet["to_process"]
            data = b"".join(p["packet"][p["pos"]:] if p["pos"] else p["packet"] for p in batch)
            try:
                written = self.sock_send(data)
            except (AttributeError, ValueError):
                queue.extendleft(reversed(batch))
                return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
            except BlockingIOError:
                queue.extendleft(reversed(batch))
                return mqtt.MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                queue.extendleft(reversed(batch))
                self.log_error("failed to send on socket: %s", err)
                return mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST
            if written <= 0:
                queue.extendleft(reversed(batch))
                break
            done = self._account(batch, written)
            self._published([packet for packet in batch[:done] if _is_qos0_publish(packet)])
        self.wrote()
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _account(self, batch: list[OutPacket], written: int) -> int:
        """Advance the packets by `written` bytes; the unfinished ones go back to the queue's head.
        Returns how many were written whole."""
        for index, packet in enumerate(batch):
            step = min(written, packet["to_process"])
            packet["to_process"] -= step
            packet["pos"] += step
            written -= step
            if packet["to_process"]:
                self.out_queue.extendleft(reversed(batch[index:]))
                return index
        return len(batch)

    def _published(self, packets: list[OutPacket]) -> None:
        if not packets:
            return
        on_publish = self.current_on_publish()
        if on_publish is not None:
            v1 = self.callback_api_version == mqtt.CallbackAPIVersion.VERSION1
            reason, properties = ReasonCode(PacketTypes.PUBACK), Properties(PacketTypes.PUBACK)
            userdata = self.user_data_get()
            with self.callback_lock:
                for packet in packets:
                    try:
                        if v1:
                            on_publish(self, userdata, packet["mid"])
                        else:
                            on_publish(self, userdata, packet["mid"], reason, properties)
                    except Exception as err:
                        self.log_error("Caught exception in on_publish: %s", err)
                        if not self.suppress_exceptions:
                            raise
        self.set_published(packets)
