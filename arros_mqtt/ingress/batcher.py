"""Micro-batching: raw messages accumulate per stream until the engine takes them.

Producers (the MQTT network thread) call `add`/`add_many`; the engine thread calls `take` when it is
free. Two ways a batch closes:

- adaptive (the default): whatever has arrived is due as soon as the engine asks, once its oldest
  message has waited `linger` (2 ms by default): under load batches grow by themselves (everything
  that arrived while the engine worked on the previous one, which took longer than the linger), and
  at low load a few messages share a round instead of one each (at 1,000 msgs/s into one filter the
  2 ms linger cut the CPU by a third: per-round work, the log's fsync above all, dominates there);
- delay: a batch is due once its oldest message is `max_delay` old (bigger batches at low load: less
  CPU per message, more latency).

Either way a batch holds at most `max_rows` messages and `max_bytes` payload bytes (at least one
message), so decoding one batch of large payloads (arrays of readings) needs bounded memory. The
buffer is bounded too: past `max_pending` messages or `max_pending_bytes` payload bytes `add` blocks,
which stops the network thread reading its socket, so a slow engine slows the broker's delivery
instead of growing memory (one socket read may overshoot the bound).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

ADAPTIVE, DELAY = "adaptive", "delay"
PENDING_BATCHES = 4  # the buffer holds this many full batches (in messages and in bytes) ...
MIN_PENDING = 100_000  # ... and at least this many messages ...
MIN_PENDING_BYTES = 16 * 1024 * 1024  # ... and payload bytes


@dataclass
class RawBatch:
    stream: str
    topics: list[str] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    received_ms: list[int] = field(default_factory=list)
    bytes: int = 0  # payload bytes

    def __len__(self) -> int:
        return len(self.payloads)


class MicroBatcher:
    def __init__(self, streams: list[str], max_rows: int, max_delay: float, max_pending: int | None = None,
                 max_bytes: int = 1024 * 1024, max_pending_bytes: int | None = None,
                 mode: str = DELAY, linger: float = 0.0) -> None:
        if mode not in (ADAPTIVE, DELAY):
            raise ValueError(f"unknown batching mode {mode!r}")
        self.max_rows = max_rows
        self.max_delay = max_delay
        self.max_bytes = max_bytes
        self.delay = linger if mode == ADAPTIVE else max_delay  # a batch is due once its oldest message is this old
        self.max_pending = max_pending or max(PENDING_BATCHES * max_rows, MIN_PENDING)
        self.max_pending_bytes = max_pending_bytes or max(PENDING_BATCHES * max_bytes, MIN_PENDING_BYTES)
        self._buffers = {name: RawBatch(name) for name in streams}
        self._opened: dict[str, float] = {}  # stream -> monotonic time of its oldest buffered message
        self._pending = 0
        self._pending_bytes = 0
        self.blocked_seconds = 0.0  # time producers spent waiting for room (backpressure)
        self.blocked = False  # a producer is waiting right now
        self._closed = False
        self._unbounded = 0  # inside `unbounded()`: `add` does not block
        self._woken = False
        self._cond = threading.Condition()

    def add(self, stream: str, topic: str, payload: bytes, received_ms: int) -> None:
        self.add_many(stream, [topic], [payload], received_ms)

    def add_many(self, stream: str, topics: list[str], payloads: list[bytes], received_ms: int) -> None:
        """Messages received together (one socket read), in order: one lock round for all of them."""
        size = sum(map(len, payloads))
        with self._cond:
            if self._full():
                self._wait_for_room()
            buffer = self._buffers[stream]
            was_empty = not buffer.payloads
            buffer.topics += topics
            buffer.payloads += payloads
            buffer.received_ms += [received_ms] * len(payloads)
            buffer.bytes += size
            self._pending += len(payloads)
            self._pending_bytes += size
            if was_empty:
                self._opened[stream] = time.monotonic()
            if was_empty or len(buffer.payloads) >= self.max_rows or buffer.bytes >= self.max_bytes:
                self._cond.notify_all()  # a waiting `take` learns that (or when) this batch falls due

    def take(self, timeout: float) -> list[RawBatch]:
        """The batches that are due, waiting at most `timeout` for one; after `close`, all that is left."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                due = [s for s in self._opened if self._due(s, now)]
                if due or now >= deadline or self._woken:
                    self._woken = False
                    return [self._cut(stream, now) for stream in due]
                next_due = min((opened + self.delay for opened in self._opened.values()), default=deadline)
                self._cond.wait(max(0.0, min(next_due, deadline) - now))

    def wake(self) -> None:
        """Make a waiting `take` return now (with what is due): other work arrived for its caller."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    @contextlib.contextmanager
    def unbounded(self) -> Iterator[None]:
        """While the engine waits for the producers' thread (embedded mode: for the broker's loop to take
        results), `add` does not block, else each would wait for the other."""
        with self._cond:
            self._unbounded += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._unbounded -= 1

    def close(self) -> None:
        """No more waiting: `take` returns everything buffered, `add` no longer blocks."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @property
    def full(self) -> bool:
        """The buffer is at a bound: producers wait (backpressure)."""
        return self._full()

    def oldest_seconds(self) -> float:
        """How long the oldest buffered message has waited for the engine (0 when none waits)."""
        with self._cond:
            opened = min(self._opened.values(), default=None)
        return 0.0 if opened is None else max(0.0, time.monotonic() - opened)

    def pending_streams(self) -> list[str]:
        """Streams with messages waiting: not idle, however old their last processed row is."""
        with self._cond:
            return list(self._opened)

    def _full(self) -> bool:
        return (self._pending >= self.max_pending or self._pending_bytes >= self.max_pending_bytes) \
            and not self._closed and not self._unbounded

    def _wait_for_room(self) -> None:
        started = time.monotonic()
        self.blocked = True
        while self._full():
            self._cond.wait(0.1)
        self.blocked = False
        self.blocked_seconds += time.monotonic() - started

    def _due(self, stream: str, now: float) -> bool:
        if self._closed:
            return True
        buffer = self._buffers[stream]
        return (now - self._opened[stream] >= self.delay or len(buffer) >= self.max_rows
                or buffer.bytes >= self.max_bytes)

    def _cut(self, stream: str, now: float) -> RawBatch:
        buffer = self._buffers[stream]
        n = self._batch_length(buffer)
        if n == len(buffer):
            batch, buffer = buffer, RawBatch(stream)
            self._buffers[stream] = buffer
        else:
            batch = RawBatch(stream, buffer.topics[:n], buffer.payloads[:n], buffer.received_ms[:n])
            batch.bytes = sum(map(len, batch.payloads))
            del buffer.topics[:n], buffer.payloads[:n], buffer.received_ms[:n]
            buffer.bytes -= batch.bytes
        if buffer.payloads:
            self._opened[stream] = now
        else:
            del self._opened[stream]
        self._pending -= len(batch)
        self._pending_bytes -= batch.bytes
        self._cond.notify_all()
        return batch

    def _batch_length(self, buffer: RawBatch) -> int:
        """Messages of the next batch: at most `max_rows` and `max_bytes` (but at least one)."""
        n = min(len(buffer), self.max_rows)
        if buffer.bytes <= self.max_bytes:
            return n
        return max(1, bisect.bisect_right(list(itertools.accumulate(map(len, buffer.payloads[:n]))), self.max_bytes))
