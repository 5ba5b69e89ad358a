"""The fleet of telemetry_publisher.py (same rows, same command line) at 10k msg/s and more: QoS 1
PUBLISH packets built ahead of time and written to a raw MQTT 3.1.1 socket in chunks of 1/100 s, at
most `MAX_INFLIGHT` unacknowledged, PUBACKs read on a thread of its own. A paho publisher tops out near
7.4k msg/s of QoS 1 on this 2-core machine. No reconnects: for runs where the broker stays up (the
kill -9 tests); it prints the rate it offered and the rate acknowledged.

    python -m tests.peers.wire_publisher --port 1883 --prefix t1 --count 200000 --rate 10000
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
import uuid

import orjson

from benchmarks.mqtt_wire import CONNACK, PUBACK, _split, _string, remaining_length
from tests.peers.telemetry_publisher import parse_args, row

MAX_INFLIGHT = 5_000  # published, not yet acknowledged; far below the 65,535 packet ids
CHUNKS_PER_SECOND = 100


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    body = _string(topic.encode()) + struct.pack("!H", packet_id) + payload
    return bytes([0x32]) + remaining_length(len(body)) + body


class WirePublisher:
    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = _string(b"MQTT") + bytes([4, 0x00]) + struct.pack("!H", 60) + _string(client_id.encode())
        self.sock.sendall(bytes([0x10]) + remaining_length(len(body)) + body)
        head = self.sock.recv(4)
        if len(head) < 4 or head[0] >> 4 != CONNACK or head[3] != 0:
            raise ConnectionError(f"broker refused the connection: {head!r}")
        self.sock.settimeout(None)
        self.acked = 0
        self.closed = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read_acks, daemon=True).start()

    def _read_acks(self) -> None:
        buffer = bytearray()
        while data := self._recv():
            buffer += data
            offset, acks = 0, 0
            while (parsed := _split(buffer, offset)) is not None:
                header, _start, end = parsed
                acks += header >> 4 == PUBACK
                offset = end
            del buffer[:offset]
            with self._cond:
                self.acked += acks
                self._cond.notify_all()
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(1 << 16)
        except OSError:
            return b""

    def send(self, packets: list[bytes], sent_before: int) -> None:
        """Write `packets`, waiting while `MAX_INFLIGHT` are unacknowledged."""
        start = 0
        while start < len(packets):
            sent = sent_before + start
            with self._cond:
                self._cond.wait_for(lambda sent=sent: self.closed or sent - self.acked < MAX_INFLIGHT)
                if self.closed:
                    raise ConnectionError("the broker closed the connection")
                room = MAX_INFLIGHT - (sent - self.acked)
            stop = min(len(packets), start + room)
            self.sock.sendall(b"".join(packets[start:stop]))
            start = stop

    def wait_acked(self, total: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.closed or self.acked >= total, timeout)
            return total - self.acked


def main() -> int:
    args, start_ms = parse_args()
    packets = []
    for i in range(args.count):
        machine, values = row(i, start_ms, args.rate, args.machines)
        packets.append(publish_packet(f"{args.prefix}/{machine}/telemetry", orjson.dumps(values), i % 65535 + 1))
    last_ts = start_ms + (args.count - 1) * 1000 // args.rate
    packets.append(publish_packet(f"{args.prefix}/zz/telemetry",
                                  orjson.dumps({"ts": last_ts + 60_000, "seq": -1, "temp": 0.0}),
                                  args.count % 65535 + 1))
    publisher = WirePublisher(args.port, f"fleet-{uuid.uuid4().hex[:8]}")
    chunk = max(1, args.rate // CHUNKS_PER_SECOND)
    began = time.monotonic()
    for start in range(0, args.count, chunk):
        publisher.send(packets[start:min(start + chunk, args.count)], start)
        ahead = (start + chunk) / args.rate - (time.monotonic() - began)
        if ahead > 0:
            time.sleep(ahead)
    sending = time.monotonic() - began
    publisher.send(packets[args.count:], args.count)
    pending = publisher.wait_acked(len(packets), 120)
    elapsed = time.monotonic() - began
    print(f"published {len(packets)} in {elapsed:.1f}s: {args.count / sending:,.0f} msg/s offered (asked "
          f"{args.rate:,}), {len(packets) / elapsed:,.0f} msg/s acknowledged, unacknowledged {pending}", flush=True)
    publisher.sock.sendall(bytes([0xE0, 0]))
    publisher.sock.close()
    return 0 if pending == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
