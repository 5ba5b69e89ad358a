"""Micro-batching: raw messages accumulate per stream until `batch_max_rows` or `batch_max_delay`.

Producers (the MQTT network thread) call `add`; the engine thread calls `take` for the streams that
are due. The buffer is bounded: past `max_pending` messages `add` blocks, which stops the network
thread reading its socket, so a slow engine slows the broker's delivery instead of growing memory.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class RawBatch:
    stream: str
    topics: list[str] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    received_ms: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.payloads)


class MicroBatcher:
    def __init__(self, streams: list[str], max_rows: int, max_delay: float, max_pending: int | None = None) -> None:
        self.max_rows = max_rows
        self.max_delay = max_delay
        self.max_pending = max_pending or max(4 * max_rows, 100_000)
        self._buffers = {name: RawBatch(name) for name in streams}
        self._opened: dict[str, float] = {}  # stream -> monotonic time of its oldest buffered message
        self._pending = 0
        self.blocked_seconds = 0.0  # time producers spent waiting for room (backpressure)
        self.blocked = False  # a producer is waiting right now
        self._closed = False
        self._woken = False
        self._cond = threading.Condition()

    def add(self, stream: str, topic: str, payload: bytes, received_ms: int) -> None:
        with self._cond:
            if self._pending >= self.max_pending and not self._closed:
                started = time.monotonic()
                self.blocked = True
                while self._pending >= self.max_pending and not self._closed:
                    self._cond.wait(0.1)
                self.blocked = False
                self.blocked_seconds += time.monotonic() - started
            buffer = self._buffers[stream]
            buffer.topics.append(topic)
            buffer.payloads.append(payload)
            buffer.received_ms.append(received_ms)
            self._pending += 1
            if len(buffer.payloads) == 1:
                self._opened[stream] = time.monotonic()
                self._cond.notify_all()  # a waiting `take` learns when this batch falls due
            elif len(buffer.payloads) >= self.max_rows:
                self._cond.notify_all()

    def add_many(self, stream: str, topics: list[str], payloads: list[bytes], received_ms: int) -> None:
        """`add` for messages received together (one socket read): one lock round for all of them."""
        with self._cond:
            while self._pending >= self.max_pending and not self._closed:
                self._cond.wait(0.1)
            buffer = self._buffers[stream]
            was_empty = not buffer.payloads
            buffer.topics += topics
            buffer.payloads += payloads
            buffer.received_ms += [received_ms] * len(payloads)
            self._pending += len(payloads)
            if was_empty:
                self._opened[stream] = time.monotonic()
            if was_empty or len(buffer.payloads) >= self.max_rows:
                self._cond.notify_all()

    def take(self, timeout: float) -> list[RawBatch]:
        """The batches that are due, waiting at most `timeout` for one; after `close`, all that is left."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                due = [s for s, opened in self._opened.items()
                       if self._closed or now - opened >= self.max_delay or len(self._buffers[s]) >= self.max_rows]
                if due or now >= deadline or self._woken:
                    self._woken = False
                    return [self._cut(stream, now) for stream in due]
                next_due = min((opened + self.max_delay for opened in self._opened.values()), default=deadline)
                self._cond.wait(max(0.0, min(next_due, deadline) - now))

    def wake(self) -> None:
        """Make a waiting `take` return now (with what is due): other work arrived for its caller."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def close(self) -> None:
        """No more waiting: `take` returns everything buffered, `add` no longer blocks."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        return self._pending

    def pending_streams(self) -> list[str]:
        """Streams with messages waiting: not idle, however old their last processed row is."""
        with self._cond:
            return list(self._opened)

    def _cut(self, stream: str, now: float) -> RawBatch:
        buffer = self._buffers[stream]
        n = self.max_rows
        if len(buffer) <= n:
            batch, buffer = buffer, RawBatch(stream)
            self._buffers[stream] = buffer
        else:
            batch = RawBatch(stream, buffer.topics[:n], buffer.payloads[:n], buffer.received_ms[:n])
            del buffer.topics[:n], buffer.payloads[:n], buffer.received_ms[:n]
        if buffer.payloads:
            self._opened[stream] = now
        else:
            del self._opened[stream]
        self._pending -= len(batch)
        self._cond.notify_all()
        return batch
