"""The benchmark's own MQTT packet encoder, without a broker."""

from __future__ import annotations

from benchmarks import mqtt_wire


def test_wire_packets_round_trip() -> None:
    """The benchmark's own MQTT encoder: remaining lengths across the 1/2/3-byte boundaries."""
    for size in (0, 127, 128, 16_383, 16_384, 100_000):
        packet = mqtt_wire.publish_packet(b"t/1", b"x" * size)
        header, start, end = mqtt_wire._split(bytearray(packet))
        assert header >> 4 == mqtt_wire.PUBLISH and end == len(packet)
        assert packet[start:start + 5] == b"\x00\x03t/1" and end - start == 5 + size
    assert mqtt_wire._split(bytearray(mqtt_wire.publish_packet(b"t", b"x" * 200)[:-1])) is None
