"""The uplink buffer on disk: order, confirmation, restarts, torn records, full buffers (both policies)."""

from __future__ import annotations

import os

from arros_mqtt.uplink.buffer import UplinkBuffer, encode


def fill(buffer: UplinkBuffer, count: int, start: int = 0, size: int = 100) -> None:
    for i in range(start, start + count):
        assert buffer.append(f"t/{i % 3}", str(i).encode().ljust(size, b"."), 1, 1_000 + i)


def drain(buffer: UplinkBuffer, limit: int = 1000) -> list[int]:
    out = []
    while records := buffer.take(limit):
        out.extend(int(r.payload.rstrip(b".")) for r in records)
    return out


def test_records_come_out_in_order_and_confirmed_ones_are_not_sent_again_after_a_restart(tmp_path):
    buffer = UplinkBuffer(tmp_path, 1 << 20)
    fill(buffer, 5000)
    taken = drain(buffer, 333)
    assert taken == list(range(5000))
    buffer.confirm(3000, persist_after=0)
    buffer.close()
    reopened = UplinkBuffer(tmp_path, 1 << 20)
    assert reopened.pending == 2000
    assert drain(reopened) == list(range(3000, 5000))
    fill(reopened, 10, start=5000)
    assert drain(reopened) == list(range(5000, 5010))


def test_unconfirmed_records_are_sent_again_after_a_crash_and_a_torn_tail_is_cut(tmp_path):
    buffer = UplinkBuffer(tmp_path, 1 << 20)
    fill(buffer, 100)
    assert len(drain(buffer)) == 100
    buffer.confirm(40, persist_after=0)
    # a crash: no close; the last record half written
    last = sorted(tmp_path.glob("*.seg"))[-1]
    with open(last, "ab") as handle:
        handle.write(encode(100, 0, 1, "t/x", b"torn")[:-3])
    reopened = UplinkBuffer(tmp_path, 1 << 20)
    assert drain(reopened) == list(range(40, 100))
    fill(reopened, 1, start=100)
    assert drain(reopened) == [100]


def test_drop_oldest_counts_exactly_what_was_never_handed_out(tmp_path):
    buffer = UplinkBuffer(tmp_path, 256 * 1024)  # 16 KiB segments
    fill(buffer, 10_000)
    kept = drain(buffer)
    assert buffer.dropped + len(kept) == 10_000
    assert kept == list(range(10_000 - len(kept), 10_000))
    assert buffer.bytes <= 256 * 1024
    assert sum(p.stat().st_size for p in tmp_path.glob("*.seg")) == buffer.bytes


def test_stop_refuses_appends_when_full_and_takes_them_again_once_confirmed(tmp_path):
    buffer = UplinkBuffer(tmp_path, 64 * 1024, drop_oldest=False)
    appended = 0
    while buffer.append("t", str(appended).encode().ljust(100, b"."), 1):
        appended += 1
    assert buffer.dropped == 0
    taken = drain(buffer)
    assert taken == list(range(appended))
    assert not buffer.append("t", b"x" * 100, 1)  # handed out is not confirmed: still full
    buffer.confirm(appended)
    assert buffer.append("t", b"x" * 100, 1)


def test_a_message_larger_than_the_buffer_is_dropped_and_counted(tmp_path):
    buffer = UplinkBuffer(tmp_path, 64 * 1024, drop_oldest=False)
    assert buffer.append("t", os.urandom(70 * 1024), 1)
    assert buffer.dropped == 1 and buffer.pending == 0
