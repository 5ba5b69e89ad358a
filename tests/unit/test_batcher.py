"""Micro-batching by rows and by delay; bounded buffering."""

from __future__ import annotations

import threading
import time

from arros_mqtt.ingress.batcher import MicroBatcher


def fill(batcher: MicroBatcher, stream: str, n: int) -> None:
    for i in range(n):
        batcher.add(stream, f"t/{i}", b"{}", i)


def test_batch_closes_at_max_rows_without_waiting_for_the_delay():
    batcher = MicroBatcher(["a"], max_rows=100, max_delay=3600)
    fill(batcher, "a", 250)
    batches = batcher.take(timeout=0)
    assert [len(b) for b in batches] == [100]
    assert [len(b) for b in batcher.take(timeout=0)] == [100]
    assert batcher.take(timeout=0) == []  # 50 left, younger than an hour
    assert batcher.pending == 50


def test_batch_closes_after_max_delay():
    batcher = MicroBatcher(["a", "b"], max_rows=1000, max_delay=0.05)
    fill(batcher, "a", 10)
    assert batcher.take(timeout=0) == []
    batches = batcher.take(timeout=5)  # returns once the oldest row is 50 ms old, not after 5 s
    assert [(b.stream, len(b)) for b in batches] == [("a", 10)]
    assert batches[0].topics[:2] == ["t/0", "t/1"] and batches[0].received_ms[-1] == 9


def test_close_returns_everything():
    batcher = MicroBatcher(["a", "b"], max_rows=1000, max_delay=3600)
    fill(batcher, "a", 3)
    fill(batcher, "b", 4)
    batcher.close()
    assert sorted((b.stream, len(b)) for b in batcher.take(timeout=0)) == [("a", 3), ("b", 4)]


def test_add_blocks_when_full_until_the_engine_takes():
    batcher = MicroBatcher(["a"], max_rows=10, max_delay=3600, max_pending=20)
    done = threading.Event()

    def producer():
        fill(batcher, "a", 50)
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    time.sleep(0.2)
    assert not done.is_set() and batcher.pending == 20  # bounded: the producer waits
    taken = 0
    while taken < 50:
        taken += sum(len(b) for b in batcher.take(timeout=1))
    thread.join(5)
    assert done.is_set() and taken == 50


def test_pending_streams_and_a_prompt_take():
    """A message into an empty buffer wakes a waiting `take`: it returns the batch once its delay is due,
    not at the end of its own (long) timeout."""
    batcher = MicroBatcher(["a", "b"], max_rows=100, max_delay=0.05)
    taken: list = []
    waiter = threading.Thread(target=lambda: taken.extend(batcher.take(timeout=30)))
    waiter.start()
    time.sleep(0.1)
    batcher.add("b", "t/b", b"{}", 1)
    assert batcher.pending_streams() == ["b"]
    waiter.join(10)
    assert not waiter.is_alive() and [len(b) for b in taken] == [1]
    assert batcher.pending_streams() == []


def test_add_many_is_add_in_order():
    batcher = MicroBatcher(["a"], max_rows=3, max_delay=60)
    batcher.add("a", "t/0", b"0", 5)
    batcher.add_many("a", ["t/1", "t/2", "t/3", "t/4"], [b"1", b"2", b"3", b"4"], 7)
    assert batcher.pending == 5
    (first,) = batcher.take(timeout=1)  # full: due without waiting for the delay
    assert (first.topics, first.payloads, first.received_ms) == (["t/0", "t/1", "t/2"], [b"0", b"1", b"2"], [5, 7, 7])
    batcher.close()
    (rest,) = batcher.take(timeout=1)
    assert rest.payloads == [b"3", b"4"] and batcher.pending == 0


def test_adaptive_batch_is_whatever_has_arrived_when_the_engine_asks():
    """Adaptive: no timer; a take gets what is buffered (bounded by max_rows), however young."""
    batcher = MicroBatcher(["a", "b"], max_rows=100, max_delay=3600, mode="adaptive")
    assert batcher.take(timeout=0) == []
    fill(batcher, "a", 1)
    assert [(b.stream, len(b)) for b in batcher.take(timeout=0)] == [("a", 1)]
    fill(batcher, "a", 250)  # arrived while the engine worked: the batches grow
    fill(batcher, "b", 7)
    assert sorted((b.stream, len(b)) for b in batcher.take(timeout=0)) == [("a", 100), ("b", 7)]
    assert [len(b) for b in batcher.take(timeout=0)] == [100]
    assert [len(b) for b in batcher.take(timeout=0)] == [50]
    assert batcher.pending == 0 and batcher.pending_bytes == 0


def test_adaptive_waiting_take_returns_with_the_first_message():
    """An idle engine waiting in `take` gets a new message at once, not at its delay or timeout (an
    hour each here: the join's bounded wait would fail if it waited for either)."""
    batcher = MicroBatcher(["a"], max_rows=100, max_delay=3600, mode="adaptive")
    taken: list = []
    waiter = threading.Thread(target=lambda: taken.extend(batcher.take(timeout=3600)), daemon=True)
    waiter.start()
    time.sleep(0.1)
    batcher.add("a", "t/a", b"{}", 1)
    waiter.join(10)
    assert not waiter.is_alive() and [len(b) for b in taken] == [1]


def test_adaptive_batch_lingers_when_the_engine_is_idle():
    """With a linger, a batch an idle engine asks for is due once its oldest message has waited that
    long (or the batch is full), not before: at low rates a few messages share a round."""
    batcher = MicroBatcher(["a"], max_rows=10, max_delay=3600, mode="adaptive", linger=30)
    fill(batcher, "a", 3)
    assert batcher.take(timeout=0) == []  # younger than the linger
    fill(batcher, "a", 7)
    assert [len(b) for b in batcher.take(timeout=0)] == [10]  # full: due at once
    batcher = MicroBatcher(["a"], max_rows=10, max_delay=3600, mode="adaptive", linger=0.3)
    fill(batcher, "a", 1)
    started = time.monotonic()
    assert [len(b) for b in batcher.take(timeout=30)] == [1]
    assert time.monotonic() - started >= 0.25


def test_batches_are_bounded_by_payload_bytes():
    batcher = MicroBatcher(["a"], max_rows=1000, max_delay=3600, max_bytes=1000, max_pending_bytes=100_000,
                           mode="adaptive")
    batcher.add_many("a", [f"t/{i}" for i in range(10)], [bytes(300)] * 10, 1)
    assert batcher.pending_bytes == 3000
    sizes = []
    while batcher.pending:
        (batch,) = batcher.take(timeout=0)
        assert batch.bytes == sum(map(len, batch.payloads)) <= 1000
        sizes.append(len(batch))
    assert sizes == [3, 3, 3, 1] and batcher.pending_bytes == 0
    batcher.add("a", "t/big", bytes(5000), 2)  # larger than a batch may be: a batch of its own
    batcher.add("a", "t/small", b"{}", 3)
    assert [b.payloads for b in batcher.take(timeout=0)] == [[bytes(5000)]]
    assert [b.payloads for b in batcher.take(timeout=0)] == [[b"{}"]]


def test_delay_batch_is_due_once_it_holds_max_bytes():
    batcher = MicroBatcher(["a"], max_rows=1000, max_delay=3600, max_bytes=1000)
    batcher.add_many("a", ["t/0", "t/1"], [bytes(400)] * 2, 1)
    assert batcher.take(timeout=0) == []  # 800 bytes, an hour young: not due
    batcher.add("a", "t/2", bytes(400), 2)
    assert [len(b) for b in batcher.take(timeout=0)] == [2]  # due, cut at 1000 bytes


def test_buffer_is_bounded_by_payload_bytes():
    """Large payloads (arrays of readings) fill the byte bound long before the message bound: the
    producer waits there, so memory stays bounded whatever the payload size."""
    batcher = MicroBatcher(["a"], max_rows=10_000, max_delay=3600, max_bytes=1000, max_pending_bytes=3000,
                           mode="adaptive")
    done = threading.Event()

    def producer():
        for i in range(40):
            batcher.add_many("a", [f"t/{i}"] * 2, [bytes(500)] * 2, i)
        done.set()

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    time.sleep(0.2)
    assert not done.is_set() and batcher.full and 3000 <= batcher.pending_bytes <= 3000 + 1000
    assert batcher.pending < 10
    taken = 0
    while taken < 80:
        for batch in batcher.take(timeout=1):
            assert batch.bytes <= 1000
            taken += len(batch)
    thread.join(5)
    assert done.is_set() and batcher.pending_bytes == 0
