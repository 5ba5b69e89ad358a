"""The Parquet files of one archive folder: one open file per hour partition, rolled by rows and age.

A file is written under a hidden temporary name and renamed into place only once its footer is
written and synced, so a reader listing `*.parquet` never sees a partial file and a crash leaves
only temporary files behind. A closed file is never opened again: later rows go to a new file.
Rows are buffered per open file up to one row group (`ROW_GROUP_ROWS`), so small micro-batches
still make row groups big enough to compress and skip well. A table whose schema (or Arros
metadata) differs from the open file's starts a new file.

Each file also records which rows of the write-ahead log it holds, per hour partition: from
`arros.log_from` to `arros.log_to` (exclusive), each `seq:offset`, offset counting that record's rows
of the file's hour. A file holds a contiguous run of them, so after a crash the rows of the log not
in any closed file are found exactly and archived again (`write(..., replay=True)`), never twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from arros_mqtt.egress.archive_layout import FILE_SUFFIX, partition_path, temp_name
from arros_mqtt.egress.partition_time import split_by_hour

log = logging.getLogger(__name__)
Position = tuple[int, int]  # (log seq, offset among that record's rows of one hour)
ROW_GROUP_ROWS = 65_536  # ~1-5 MB of telemetry per row group: big enough for zstd and statistics
MAX_OPEN_FILES = 32  # per folder; a backfill touching more hours closes the least recently written


@dataclass(frozen=True)
class RollPolicy:
    rows: int  # a file holds at most this many rows
    interval: float  # seconds a file stays open at most
    compression: str


class _OpenFile:
    def __init__(self, directory: Path, schema: pa.Schema, compression: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.path = directory / f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
        self.temp = directory / temp_name(self.path.name)
        self.schema = schema
        import pyarrow.parquet as pq  # here: a config that archives nothing never loads Parquet (idle RSS)

        self.writer = pq.ParquetWriter(self.temp, schema, compression=compression)
        self.rows = 0
        self.opened = self.last_write = time.monotonic()
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.first: Position | None = None  # the log rows it holds: [first, end)
        self.end: Position = (0, 0)

    def append(self, table: pa.Table, seq: int, offset: int) -> None:
        if self.first is None:
            self.first = (seq, offset)
        self.end = (seq, offset + table.num_rows)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        self.last_write = time.monotonic()
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._write_pending()

    def commit(self) -> Path:
        """Write what is buffered, the footer, sync, and rename into place."""
        self._write_pending()
        if self.first is not None:
            self.writer.add_key_value_metadata({"arros.log_from": "{}:{}".format(*self.first),
                                                "arros.log_to": "{}:{}".format(*self.end)})
        self.writer.close()
        fd = os.open(self.temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.temp, self.path)
        return self.path

    def discard(self) -> None:
        with contextlib.suppress(Exception):  # thrown away because writing it failed already
            self.writer.close()
        self.temp.unlink(missing_ok=True)

    def _write_pending(self) -> None:
        if self._pending:
            self.writer.write_table(pa.concat_tables(self._pending), row_group_size=ROW_GROUP_ROWS)
            self._pending, self._pending_rows = [], 0


class PartitionedWriter:
    """Writes one stream's or one subscription's rows under `folder`, partitioned by hour.

    Not thread-safe: the archive calls it from the engine thread only. Write failures (disk full,
    permissions) are logged with the number of rows lost and counted; they never raise into the
    pipeline, and the other partitions and folders carry on.
    """

    def __init__(self, folder: Path, policy: RollPolicy) -> None:
        self.folder = folder
        self.policy = policy
        self.files_written = 0
        self.rows_written = 0
        self.rows_lost = 0
        self.failed_seq: int | None = None  # the oldest log record with rows lost to a write error
        self._open: dict[int, _OpenFile] = {}
        self._closed_coverage: dict[int, list[tuple[Position, Position]]] = {}  # read from disk while replaying

    def write(self, table: pa.Table, hours: np.ndarray, seq: int = 0, replay: bool = False) -> None:
        """Append the rows of log record `seq`; `hours[i]` is the epoch hour (UTC) of row i. With `replay`,
        rows that a closed or open file already holds are skipped."""
        for hour, rows in split_by_hour(table, hours):
            if not replay:
                self._append(hour, rows, seq, 0)
                continue
            covered = self._covered(hour, seq, rows.num_rows)
            start = 0
            for stop in [*np.flatnonzero(np.diff(covered.astype(np.int8))) + 1, rows.num_rows]:
                if not covered[start]:
                    self._append(hour, rows.slice(start, stop - start), seq, start)
                start = stop

    def end_replay(self) -> None:
        self._closed_coverage.clear()

    @property
    def oldest_open_seq(self) -> int | None:
        """The oldest log record with rows in a file not yet closed (or lost): the log must keep it."""
        seqs = [f.first[0] for f in self._open.values() if f.first is not None]
        if self.failed_seq is not None:
            seqs.append(self.failed_seq)
        return min(seqs, default=None)

    def roll_due(self, now: float) -> None:
        """Close files open for `policy.interval` seconds or longer (`now` is time.monotonic())."""
        for hour in [h for h, f in self._open.items() if now - f.opened >= self.policy.interval]:
            self._commit(hour)

    def close(self) -> None:
        for hour in list(self._open):
            self._commit(hour)

    @property
    def open_partitions(self) -> set[Path]:
        return {f.path.parent for f in self._open.values()}

    @property
    def open_rows(self) -> int:
        return sum(f.rows for f in self._open.values())

    def _covered(self, hour: int, seq: int, count: int) -> np.ndarray:
        """Which of record `seq`'s `count` rows of `hour` some file already holds."""
        intervals = self._closed_coverage.get(hour)
        if intervals is None:
            intervals = self._closed_coverage[hour] = _file_coverage(self.folder / partition_path(hour))
        open_file = self._open.get(hour)
        if open_file is not None and open_file.first is not None:
            intervals = [*intervals, (open_file.first, open_file.end)]
        covered = np.zeros(count, dtype=bool)
        for (first_seq, first_offset), (end_seq, end_offset) in intervals:
            if first_seq > seq or end_seq < seq:
                continue
            low = first_offset if first_seq == seq else 0
            high = end_offset if end_seq == seq else count
            covered[low:high] = True
        return covered

    def _append(self, hour: int, rows: pa.Table, seq: int, offset: int) -> None:
        left = rows
        try:
            while left.num_rows:
                file = self._open.get(hour)
                if file is not None and not file.schema.equals(left.schema, check_metadata=True):
                    self._commit(hour)
                    file = None
                if file is None:
                    file = self._start(hour, left.schema)
                take = min(left.num_rows, self.policy.rows - file.rows)
                file.append(left.slice(0, take), seq, offset + rows.num_rows - left.num_rows)
                left = left.slice(take)
                if file.rows >= self.policy.rows:
                    self._commit(hour)
        except Exception as exc:
            failed = self._open.pop(hour, None)
            lost = left.num_rows + (failed.rows if failed else 0)
            if failed is not None:
                failed.discard()
            self._lost(lost, exc, failed.first[0] if failed is not None and failed.first else seq)

    def _start(self, hour: int, schema: pa.Schema) -> _OpenFile:
        if len(self._open) >= MAX_OPEN_FILES:
            self._commit(min(self._open, key=lambda h: self._open[h].last_write))
        file = _OpenFile(self.folder / partition_path(hour), schema, self.policy.compression)
        self._open[hour] = file
        return file

    def _commit(self, hour: int) -> None:
        file = self._open.pop(hour)
        try:
            file.commit()
        except Exception as exc:
            file.discard()
            self._lost(file.rows, exc, file.first[0] if file.first else None)
            return
        self.files_written += 1
        self.rows_written += file.rows

    def _lost(self, rows: int, exc: Exception, seq: int | None) -> None:
        self.rows_lost += rows
        if seq is not None and seq > 0:
            self.failed_seq = seq if self.failed_seq is None else min(self.failed_seq, seq)
        log.error("archive %s: writing failed, %d rows not archived: %s: %s", self.folder, rows,
                  type(exc).__name__, exc)


def _file_coverage(partition: Path) -> list[tuple[Position, Position]]:
    """The log rows each closed file of one hour partition holds (files without the keys hold none)."""
    import pyarrow.parquet as pq

    found = []
    for path in partition.glob(f"*{FILE_SUFFIX}"):
        try:
            metadata = pq.read_metadata(path).metadata or {}
        except (OSError, pa.ArrowInvalid) as exc:
            log.warning("archive: cannot read %s: %s", path, exc)
            continue
        first, end = metadata.get(b"arros.log_from"), metadata.get(b"arros.log_to")
        if first and end:
            found.append((_position(first), _position(end)))
    return found


def _position(text: bytes) -> Position:
    seq, offset = text.decode().split(":")
    return int(seq), int(offset)
