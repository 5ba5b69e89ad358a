"""Archive files record which log rows they hold, so a replay after a crash archives each row once."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from arros_mqtt.egress.partitioned_writer import PartitionedWriter, RollPolicy

HOUR = 490_000


def record(seq: int, n: int = 30) -> tuple[pa.Table, np.ndarray]:
    """Rows of log record `seq`, spread over two hours (as rows arriving around an hour boundary)."""
    table = pa.table({"seq": pa.array([seq * 1000 + i for i in range(n)], pa.int64())})
    return table, np.array([HOUR + (i % 3 == 0) for i in range(n)])


def archived(folder) -> list[int]:
    files = sorted(folder.glob("date=*/hour=*/*.parquet"))
    return sorted(v for f in files for v in pq.read_table(f).column("seq").to_pylist())


def test_replay_after_a_crash_archives_every_row_exactly_once(tmp_path):
    policy = RollPolicy(rows=25, interval=3600, compression="zstd")
    writer = PartitionedWriter(tmp_path, policy)
    for seq in range(1, 8):
        writer.write(*record(seq), seq)
    assert writer.files_written >= 4  # rolled by rows, some of them in the middle of a record
    # kill -9: open files are lost (their temporary files deleted at the next start)
    for path in tmp_path.glob("date=*/hour=*/.*.tmp"):
        path.unlink()
    assert 0 < len(archived(tmp_path)) < 7 * 30
    oldest = writer.oldest_open_seq
    assert oldest is not None

    again = PartitionedWriter(tmp_path, policy)
    for seq in range(oldest, 10):  # the log from the oldest record not in a closed file, and beyond
        again.write(*record(seq), seq, replay=True)
    again.end_replay()
    again.close()
    expected = sorted(s * 1000 + i for s in range(1, 10) for i in range(30))
    assert archived(tmp_path) == expected


def test_replaying_rows_that_are_all_archived_writes_nothing(tmp_path):
    policy = RollPolicy(rows=1000, interval=3600, compression="zstd")
    writer = PartitionedWriter(tmp_path, policy)
    for seq in (1, 2, 3):
        writer.write(*record(seq), seq)
    writer.close()
    files = set(tmp_path.glob("date=*/hour=*/*.parquet"))
    again = PartitionedWriter(tmp_path, policy)
    for seq in (1, 2, 3):
        again.write(*record(seq), seq, replay=True)
    again.close()
    assert set(tmp_path.glob("date=*/hour=*/*.parquet")) == files and again.files_written == 0
