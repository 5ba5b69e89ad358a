"""A bare MQTT 3.1.1 client for the benchmarks: a publisher and a receiver that cost almost nothing.

The publisher sends PUBLISH packets built ahead of time in large `sendall` chunks, so the load
generator is never what limits a measurement (paho would publish ~40k msgs/s from Python, slower
than the broker); at QoS 1 `QosOneSender` keeps a window of unacknowledged packets and counts the
PUBACKs coming back by their size, without parsing each. The receiver reads its socket in large
chunks, timestamps each chunk as it arrives (for latency) and, subscribed at QoS 1, acknowledges
every PUBLISH of a chunk in one write. No QoS 2 of its own, no reconnects, no TLS: this is a
measuring instrument for a broker on 127.0.0.1, not a client for users.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator

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


PUBACK_SIZE = 4  # an MQTT 3.1.1 PUBACK: header, remaining length 2, packet id
MAX_PACKET_ID = 65_535


def publish_packet(topic: bytes, payload: bytes, qos: int = 0, packet_id: int = 0) -> bytes:
    """A QoS 0 PUBLISH, or QoS 1 with `packet_id` (1..65,535)."""
    ident = struct.pack("!H", packet_id) if qos else b""
    body_length = 2 + len(topic) + len(ident) + len(payload)
    return b"".join((bytes([PUBLISH << 4 | qos << 1]), remaining_length(body_length), _string(topic), ident, payload))


def nth_packet_id(index: int) -> int:
    """The packet id of the index-th QoS 1 PUBLISH of a connection: ids wrap after 65,535, so a sender
    must keep fewer than that unacknowledged (`QosOneSender.window`)."""
    return index % MAX_PACKET_ID + 1


def subscribe_packet(packet_id: int, filters: Iterable[str], qos: int = 0) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(_string(f.encode()) + bytes([qos]) for f in filters)
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

    def subscribe(self, filters: list[str], qos: int = 0) -> None:
        self.sock.sendall(subscribe_packet(1, filters, qos))
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


class QosOneSender:
    """Writes QoS 1 PUBLISH packets to a `WireClient` with at most `window` of them unacknowledged.

    A thread counts the PUBACKs coming back by their size (4 bytes each in MQTT 3.1.1, and the broker
    sends a publisher nothing else): acknowledgements cost a `recv` per chunk, not Python per packet,
    so QoS 1 does not make the publisher the limit of a measurement. The window stays below the
    65,535 packet ids, so an id is reused only once its first use was acknowledged.
    """

    def __init__(self, client: WireClient, window: int = 20_000, stall: float = 60.0) -> None:
        if not 0 < window < MAX_PACKET_ID:
            raise ValueError(f"window must be 1..{MAX_PACKET_ID - 1}")
        self.client = client
        self.window = window
        self.stall = stall
        self.sent = 0
        self.acked = 0
        self.failure: str | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._count_acks, name="bench-pubacks", daemon=True)
        self._thread.start()

    def send(self, packets: list[bytes]) -> None:
        """Write `packets` in order (ids from `nth_packet_id(self.sent)` on), waiting while the window is full."""
        start = 0
        while start < len(packets):
            with self._cond:
                if not self._cond.wait_for(lambda: self.failure or self.sent - self.acked < self.window,
                                           self.stall):
                    raise TimeoutError(f"no PUBACK for {self.stall}s with {self.sent - self.acked} unacknowledged")
                if self.failure:
                    raise ConnectionError(self.failure)
                room = self.window - (self.sent - self.acked)
            stop = min(len(packets), start + room)
            self.client.send(b"".join(packets[start:stop]))
            with self._cond:
                self.sent += stop - start
            start = stop

    def wait_acked(self, timeout: float) -> int:
        """How many are still unacknowledged after at most `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self.failure or self.acked >= self.sent, timeout)
            return self.sent - self.acked

    def _count_acks(self) -> None:
        pending = bytearray(self.client._buffer)  # whatever arrived after the CONNACK
        while self.failure is None:
            try:
                data = self.client.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            pending += data
            whole = len(pending) - len(pending) % PUBACK_SIZE
            count = whole // PUBACK_SIZE
            with self._cond:
                if not data:
                    self.failure = "the broker closed the connection"
                elif pending[0:whole:PUBACK_SIZE].count(PUBACK << 4) != count:
                    self.failure = "the broker sent the publisher something other than PUBACKs"
                self.acked += count
                self._cond.notify_all()
            del pending[:whole]


class Receiver:
    """Collects (receive time in ns, topic, payload) of every PUBLISH on a thread of its own.

    Subscribed at QoS 1 (the default: what a consumer of QoS 1 results does), it acknowledges every
    PUBLISH of a socket read in one write, so acknowledging costs one syscall per chunk.
    """

    def __init__(self, host: str, port: int, filters: list[str], client_id: str = "bench-receiver",
                 qos: int = 1) -> None:
        self.client = WireClient(host, port, client_id)
        self.client.subscribe(filters, qos)
        self.messages: list[tuple[int, bytes, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-receiver", daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float, stall: float | None = None,
                 poll: Callable[[], None] | None = None) -> bool:
        """Until `count` messages arrived; False after `timeout` seconds, or `stall` seconds without a new
        one (a slow sender is waited for as long as it makes progress). `poll` runs on each check."""
        deadline = time.monotonic() + timeout
        seen, changed = -1, time.monotonic()
        while len(self.messages) < count and time.monotonic() < deadline:
            if len(self.messages) != seen:
                seen, changed = len(self.messages), time.monotonic()
            elif stall is not None and time.monotonic() - changed > stall:
                break
            if poll is not None:
                poll()
            time.sleep(0.02)
        return len(self.messages) >= count

    def close(self) -> None:
        self._stop.set()
        self.client.close()
        self._thread.join(5)

    def _run(self) -> None:
        sock = self.client.sock
        sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            acks = self._take(data, time.time_ns())
            if acks:
                try:
                    sock.sendall(acks)
                except OSError:
                    return

    def _take(self, data: bytes, received: int) -> bytes:
        """Appends the complete PUBLISHes in the buffer to `messages`; returns the PUBACKs they need."""
        buffer = self.client._buffer
        buffer += data
        acks, offset = [], 0
        while (parsed := _split(buffer, offset)) is not None:
            header, start, end = parsed
            if header >> 4 == PUBLISH:
                topic_end = start + 2 + struct.unpack_from("!H", buffer, start)[0]
                payload_start = topic_end
                if (header >> 1) & 0x03:
                    payload_start += 2
                    acks.append(bytes([PUBACK << 4, 2]) + buffer[topic_end:payload_start])
                self.messages.append((received, bytes(buffer[start + 2:topic_end]), bytes(buffer[payload_start:end])))
            offset = end
        del buffer[:offset]
        return b"".join(acks)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic GC off while a `Receiver` in this process stamps arrivals: a full collection with
    50k messages held took ~20 ms, which was counted as Arros's latency (and slows the receiver)."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
