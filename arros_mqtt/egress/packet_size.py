"""How big a PUBLISH is on the wire, and the largest one the broker takes.

A broker disconnects a client that sends a packet over its Maximum Packet Size (Mosquitto's
`max_packet_size`; MQTT 5 announces it in the CONNACK, MQTT 3.1.1 cannot, so `[broker]
max_packet_size` says it). Arros never sends such a packet: a result that would be one is a dead
letter instead (service/pipeline.py), and the output queue refuses any other (egress/output_queue.py).
"""

from __future__ import annotations

MQTT_MAX_PACKET = 268_435_455 + 5  # the largest remaining length MQTT can encode, plus the fixed header
PROPERTIES_ALLOWANCE = 16  # MQTT 5 properties of our PUBLISHes (none today; a margin for a topic alias etc.)


def publish_packet_size(topic: str, payload: bytes, qos: int) -> int:
    """Bytes of the whole PUBLISH packet (fixed header, topic, packet id, properties, payload), an upper bound."""
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + PROPERTIES_ALLOWANCE + len(payload)
    return 1 + _varint_length(remaining) + remaining


def packet_limit(configured: int, announced: int | None) -> int:
    """The largest packet to send: the smaller of `[broker] max_packet_size` (0: none) and the CONNACK's."""
    limits = [MQTT_MAX_PACKET]
    if configured > 0:
        limits.append(configured)
    if announced:
        limits.append(announced)
    return min(limits)


def _varint_length(value: int) -> int:
    length = 1
    while value >= 128:
        value //= 128
        length += 1
    return length
