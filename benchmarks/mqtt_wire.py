"""A bare MQTT 3.1.1 client for the benchmarks: a publisher and a receiver that cost almost nothing.

The publisher sends PUBLISH packets built ahead of time in large `sendall` chunks, so the load
generator is never what limits a measurement (paho would publish ~40k msgs/s from Python, slower
than the broker). The receiver reads its socket in large chunks and timestamps each chunk as it
arrives, for latency. QoS 0 only (QoS 1 PUBLISHes received are acknowledged); no reconnects, no
TLS: this is a measuring instrument for a broker on 127.0.0.1, not a client for users.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterable

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, DISCONNECT = 1, 2, 3, 4, 8, 9, 14


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def connect_packet(client_id: str, keepalive: int = 600) -> bytes:
    body = _string(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive) + _string(client_id.encode())
    return bytes([CONNECT << 4]) + remaining_length(len(body)) + body


def publish_packet(topic: bytes, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH."""
    body_length = 2 + len(topic) + len(payload)
    return b"".join((bytes([PUBLISH << 4]), remaining_length(body_length), _string(topic), payload))


def subscribe_packet(packet_id: int, filters: Iterable[str]) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(_string(f.encode()) + b"\x00" for f in filters)
    return bytes([SUBSCRIBE << 4 | 0x02]) + remaining_length(len(body)) + body


class WireClient:
    """One TCP connection speaking just enough MQTT 3.1.1 for QoS 0 load and measurement."""

    def __init__(self, host: str, port: int, client_id: str, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._buffer = bytearray()
        self.sock.sendall(connect_packet(client_id))
        kind, body = self._next_packet()
        if kind != CONNACK or body[1] != 0:
            raise ConnectionError(f"broker refused the connection: {body!r}")

    def send(self, data: bytes, chunk: int = 1 << 20) -> None:
        view = memoryview(data)
        for start in range(0, len(view), chunk):
            self.sock.sendall(view[start:start + chunk])

    def subscribe(self, filters: list[str]) -> None:
        self.sock.sendall(subscribe_packet(1, filters))
        while True:
            kind, _body = self._next_packet()
            if kind == SUBACK:
                return

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(bytes([DISCONNECT << 4, 0]))
        self.sock.close()

    def _next_packet(self) -> tuple[int, bytes]:
        while True:
            parsed = _split(self._buffer)
            if parsed is not None:
                header, start, end = parsed
                body = bytes(self._buffer[start:end])
                del self._buffer[:end]
                return header >> 4, body
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("broker closed the connection")
            self._buffer += data


def _split(buffer: bytearray, offset: int = 0) -> tuple[int, int, int] | None:
    """(first header byte, body start, body end) of the packet at `offset`; None if incomplete."""
    if len(buffer) - offset < 2:
        return None
    length, multiplier, position = 0, 1, offset + 1
    while True:
        if position >= len(buffer):
            return None
        byte = buffer[position]
        length += (byte & 0x7F) * multiplier
        multiplier *= 128
        position += 1
        if not byte & 0x80:
            break
    end = position + length
    return (buffer[offset], position, end) if end <= len(buffer) else None


class Receiver:
    """Collects (receive time in ns, topic, payload) of every PUBLISH on a thread of its own."""

    def __init__(self, host: str, port: int, filters: list[str], client_id: str = "bench-receiver") -> None:
        self.client = WireClient(host, port, client_id)
        self.client.subscribe(filters)
        self.messages: list[tuple[int, bytes, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-receiver", daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(self.messages) >= count

    def close(self) -> None:
        self._stop.set()
        self.client.close()
        self._thread.join(5)

    def _run(self) -> None:
        sock = self.client.sock
        sock.settimeout(0.2)
        buffer = self.client._buffer
        while not self._stop.is_set():
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            received = time.time_ns()
            buffer += data
            offset = 0
            while (parsed := _split(buffer, offset)) is not None:
                header, start, end = parsed
                if header >> 4 == PUBLISH:
                    topic_length = struct.unpack_from("!H", buffer, start)[0]
                    topic_end = start + 2 + topic_length
                    qos = (header >> 1) & 0x03
                    payload_start = topic_end + (2 if qos else 0)
                    if qos:
                        packet_id = buffer[topic_end:topic_end + 2]
                        sock.sendall(bytes([PUBACK << 4, 2]) + packet_id)
                    self.messages.append((received, bytes(buffer[start + 2:topic_end]),
                                          bytes(buffer[payload_start:end])))
                offset = end
            del buffer[:offset]
