"""paho's client reading its socket in large chunks and taking QoS 0 (and QoS 1) PUBLISH packets in bulk:
the ingress client's receive path.

paho reads each packet with ~3 `recv` calls (the type byte, the length bytes one at a time, the
body), goes back to `select` after each, and builds an `MQTTMessage` (with a `Condition`) for each;
at tens of thousands of small messages a second that is most of the network thread's time. Here:

- paho's small reads are served from a 256 KB buffer filled by one `recv`;
- `loop_read` first takes every complete QoS 0 PUBLISH at the head of the buffer itself (a few byte
  operations each) and hands them to `on_publishes` as lists, then lets paho parse the next packet,
  and repeats while buffered bytes remain (nothing already read waits for the next `select`); with
  `on_publishes_with_ids` set instead, QoS 1 PUBLISHes are taken too, with their packet ids and DUP
  flags, and that callback acknowledges them (`send_pubacks`, one write for many);
- between those rounds it writes what is queued (the ledger's PUBACKs): while a broker streams a
  backlog the buffer never runs dry, and without this not one PUBACK left in the seconds before a
  crash, so the broker redelivered every message of them (see `ingress/acks.py`).

`on_message` is called without paho's matching against per-filter callbacks (the ingress client has
none). Everything else stays paho's own: CONNACK, SUBACK, PINGRESP, QoS 2 PUBLISHes (and QoS 1 ones
without `on_publishes_with_ids`),
MQTT 5 PUBLISHes that carry properties, anything malformed, packets split across reads, keepalive
and reconnects. A new socket (reconnect) starts with an empty buffer. The buffer, the read loop and the
direct `on_message` touch paho's private state: they are `ReadHooks` (paho_internals.py).
"""

from __future__ import annotations

from collections.abc import Callable

import paho.mqtt.client as mqtt

from arros_mqtt.transport.paho_internals import ReadHooks

READ_SIZE = 256 * 1024
OnPublishes = Callable[[list[bytes], list[bytes]], None]  # (topics, payloads) of QoS 0 PUBLISHes, in order
# (topics, payloads, packet ids, DUP flags) of QoS 0 and 1 PUBLISHes, in order; packet id 0 = QoS 0. The
# callback owns the QoS 1 acknowledgements (`send_pubacks`): paho sends none for these.
OnPublishesWithIds = Callable[[list[bytes], list[bytes], list[int], list[bool]], None]


class BulkReadClient(ReadHooks):
    read_size = READ_SIZE

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.on_publishes: OnPublishes | None = None
        self.on_publishes_with_ids: OnPublishesWithIds | None = None  # set: QoS 1 is taken in bulk too
        self._v5 = self.protocol == mqtt.MQTTv5  # fixed for the client's life (`reinitialise` runs this again)

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        bulk = self.on_publishes_with_ids is not None or self.on_publishes is not None
        return self.read_buffered(max_packets, self._take_publishes if bulk else None,
                                  write_between=True)  # PUBACKs go out between reads

    def _take_publishes(self, data: bytes, position: int) -> None:
        """Complete QoS 0 (and with `on_publishes_with_ids`, QoS 1) PUBLISHes from `position` of the buffer ->
        that callback (else `on_publishes`); stops at anything else."""
        with_ids, deliver = self.on_publishes_with_ids, self.on_publishes
        qos1 = with_ids is not None
        end = len(data)
        v5 = self._v5
        topics: list[bytes] = []
        payloads: list[bytes] = []
        mids: list[int] = []
        dups: list[bool] = []
        max_qos = 1 if qos1 else 0
        while position + 4 <= end and data[position] & 0xF0 == 0x30:  # PUBLISH (RETAIN any)
            first = data[position]
            qos = first >> 1 & 3
            if qos > max_qos or (qos == 0 and first & 0x08):  # QoS 2, or DUP on QoS 0 (malformed): paho's turn
                break
            length, shift, cursor = 0, 0, position + 1
            while cursor < end and shift <= 21:
                byte = data[cursor]
                length |= (byte & 0x7F) << shift
                cursor += 1
                if not byte & 0x80:
                    break
                shift += 7
            else:
                break  # length incomplete (or malformed): paho's turn
            packet_end = cursor + length
            if packet_end > end or length < 2:
                break
            topic_end = cursor + 2 + (data[cursor] << 8 | data[cursor + 1])
            payload_start = topic_end
            mid = 0
            if qos:  # the packet id follows the topic
                if topic_end + 2 > packet_end:
                    break
                mid = data[topic_end] << 8 | data[topic_end + 1]
                if mid == 0:
                    break
                payload_start += 2
            if v5:  # only PUBLISHes without properties (a single 0 property length byte)
                if payload_start >= packet_end or data[payload_start] != 0:
                    break
                payload_start += 1
            if payload_start > packet_end:
                break
            topics.append(data[cursor + 2:topic_end])
            payloads.append(data[payload_start:packet_end])
            mids.append(mid)
            dups.append(bool(first & 0x08))
            position = packet_end
        if not topics:
            return
        self.parsed_to(position)
        with self.callback_lock:
            if with_ids is not None:
                with_ids(topics, payloads, mids, dups)
            elif deliver is not None:
                deliver(topics, payloads)
