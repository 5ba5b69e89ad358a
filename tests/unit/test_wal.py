"""The write-ahead log on disk: records read back as written, a torn last frame is cut off, old files go."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

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


def test_a_torn_last_frame_is_cut_off_and_writing_goes_on(tmp_path):
    wal = WriteAheadLog(tmp_path)
    wal.open()
    for i in range(3):
        wal.append(ROWS, {"stream": "s", "t": i}, rows(10, 10 * i))
    wal.close()
    segment = wal.segments()[0]
    data = segment.read_bytes()
    segment.write_bytes(data[:-7])  # a crash in the middle of the last write

    again = WriteAheadLog(tmp_path)
    again.open()
    assert [r.seq for r in again.records()] == [1, 2]
    assert again.append(ROWS, {"stream": "s", "t": 9}, rows(1, 99)) == 3
    again.close()
    assert [(r.seq, r.table.column("seq")[0].as_py()) for r in WriteAheadLog(tmp_path).records()] == [
        (1, 0), (2, 10), (3, 99)]


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
