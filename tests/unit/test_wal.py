"""The write-ahead log on disk: records read back as written, a torn unsynced tail is cut off, a corrupt
synced record is skipped (counted) while every record after it is kept, old files go."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

from arros_mqtt.durability.wal import CONFIRMED, DEADLETTERS, ROWS, WATERMARK, WriteAheadLog


def rows(n: int, start: int = 0) -> pa.Table:
    return pa.table({"seq": pa.array(range(start, start + n), pa.int64()), "machine": [f"m{i % 3}" for i in range(n)]})


def test_records_read_back_in_order_with_tables_and_packet_ids(tmp_path):
    wal = WriteAheadLog(tmp_path)
    wal.open()
    assert wal.append(ROWS, {"stream": "s", "t": 5}, rows(4), np.array([7, 8, 9, 65535])) == 1
    assert wal.append(DEADLETTERS, {"stream": "s", "t": 6}, pa.table({"topic": ["a"]})) == 2
    assert wal.append(WATERMARK, {"stream": "s", "value": 1000, "t": 7}) == 3
    assert wal.append(CONFIRMED, {"through": 2, "t": 8}) == 4
    assert wal.sync() == 4
    wal.close()

    again = WriteAheadLog(tmp_path)
    again.open()
    records = list(again.records())
    assert [(r.seq, r.kind, r.stream) for r in records] == [(1, ROWS, "s"), (2, DEADLETTERS, "s"), (3, WATERMARK, "s"),
                                                           (4, CONFIRMED, None)]
    assert records[0].table.equals(rows(4)) and records[0].mids.tolist() == [7, 8, 9, 65535]
    assert records[2].header["value"] == 1000 and records[0].time_ms == 5
    assert [r.seq for r in again.records(after=2, kinds=(ROWS, WATERMARK))] == [3]
    assert again.next_seq == 5


def crash(wal: WriteAheadLog) -> None:
    """What kill -9 leaves: the file as written so far, no final sync (the process just stops)."""
    for fd in (wal._fd, getattr(wal, "_marker_fd", None)):
        if fd is not None:
            os.close(fd)
    wal._fd = wal._marker_fd = None


def test_a_torn_unsynced_last_frame_is_cut_off_and_writing_goes_on(tmp_path):
    wal = WriteAheadLog(tmp_path)
    wal.open()
    for i in range(2):
        wal.append(ROWS, {"stream": "s", "t": i}, rows(10, 10 * i))
    wal.sync()
    wal.append(ROWS, {"stream": "s", "t": 2}, rows(10, 20))  # never synced: its messages were not acknowledged
    crash(wal)
    segment = wal.segments()[0]
    data = segment.read_bytes()
    segment.write_bytes(data[:-7])  # a crash in the middle of the last write

    again = WriteAheadLog(tmp_path)
    again.open()
    assert [r.seq for r in again.records()] == [1, 2] and again.damaged_records == 0
    assert again.append(ROWS, {"stream": "s", "t": 9}, rows(1, 99)) == 3
    again.close()
    assert [(r.seq, r.table.column("seq")[0].as_py()) for r in WriteAheadLog(tmp_path).records()] == [
        (1, 0), (2, 10), (3, 99)]


def synced_log(tmp_path, n: int = 10) -> tuple[WriteAheadLog, bytes]:
    wal = WriteAheadLog(tmp_path)
    wal.open()
    for i in range(n):
        wal.append(ROWS, {"stream": "s", "t": i}, rows(50, 50 * i))
        wal.sync()  # acknowledged, one by one
    crash(wal)
    return wal, wal.segments()[0].read_bytes()


@pytest.mark.parametrize("marker", [True, False])
def test_a_byte_flip_in_a_synced_record_skips_that_record_and_keeps_every_later_one(tmp_path, caplog, marker):
    wal, data = synced_log(tmp_path)
    damaged = bytearray(data)
    damaged[int(len(data) * 0.4)] ^= 0xFF
    wal.segments()[0].write_bytes(bytes(damaged))
    if not marker:  # without the synced marker, "a good frame follows" still tells it from a torn tail
        (tmp_path / "synced").unlink()

    again = WriteAheadLog(tmp_path)
    again.open()
    seqs = [r.seq for r in again.records()]
    assert len(seqs) == 9 and seqs[-1] == 10 and seqs == sorted(seqs), seqs
    assert again.damaged_records == 1 and len(again.damaged_ranges) == 1
    assert "CORRUPT" in caplog.text and "torn" not in caplog.text
    assert again.segments()[0].read_bytes() == bytes(damaged), "the damaged bytes are left in place"
    assert again.append(ROWS, {"stream": "s", "t": 99}, rows(1)) == 11


@pytest.mark.parametrize("where", ["magic", "length", "body"])
def test_damage_to_any_part_of_a_frame_costs_only_that_frame(tmp_path, where):
    wal, data = synced_log(tmp_path, 5)
    starts = [offset for offset in range(len(data)) if data.startswith(b"AWL1", offset)]
    offset = starts[2] + {"magic": 1, "length": 5, "body": 40}[where]
    damaged = bytearray(data)
    damaged[offset] ^= 0x5A
    wal.segments()[0].write_bytes(bytes(damaged))
    again = WriteAheadLog(tmp_path)
    again.open()
    assert [r.seq for r in again.records()] == [1, 2, 4, 5]


def test_a_corrupt_synced_last_frame_is_not_cut_as_torn_and_its_seq_is_not_reused(tmp_path, caplog):
    wal, data = synced_log(tmp_path, 4)
    damaged = bytearray(data)
    damaged[-10] ^= 0xFF  # inside the last frame, which was synced
    wal.segments()[0].write_bytes(bytes(damaged))
    again = WriteAheadLog(tmp_path)
    again.open()
    assert [r.seq for r in again.records()] == [1, 2, 3]
    assert "CORRUPT" in caplog.text and "torn" not in caplog.text
    assert again.segments()[0].stat().st_size == len(data), "acknowledged bytes were cut"
    assert again.append(ROWS, {"stream": "s", "t": 9}, rows(1)) == 5, "the lost record's seq was given out again"


def test_old_files_are_deleted_whole_and_reading_skips_them(tmp_path):
    wal = WriteAheadLog(tmp_path, segment_bytes=2000)
    wal.open()
    for i in range(20):
        wal.append(ROWS, {"stream": "s", "t": i}, rows(20, 20 * i))
    assert len(wal.segments()) > 3
    removed = wal.truncate_before(12)
    assert removed > 0
    remaining = [r.seq for r in wal.records()]
    assert remaining[0] <= 12 and remaining[-1] == 20 and remaining == list(range(remaining[0], 21))
    assert [r.seq for r in wal.records(after=15)] == [16, 17, 18, 19, 20]
    assert wal.bytes == sum(p.stat().st_size for p in wal.segments())
