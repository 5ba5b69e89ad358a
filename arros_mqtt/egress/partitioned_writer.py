"""The Parquet files of one archive folder: one open file per hour partition, rolled by rows and age.

A file is written under a hidden temporary name and renamed into place only once its footer is
written and synced, so a reader listing `*.parquet` never sees a partial file and a crash leaves
only temporary files behind. A closed file is never opened again: later rows go to a new file.
Rows are buffered per open file up to one row group (`ROW_GROUP_ROWS`), so small micro-batches
still make row groups big enough to compress and skip well. A table whose schema (or Arros
metadata) differs from the open file's starts a new file.
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
import pyarrow.parquet as pq

from arros_mqtt.egress.archive_layout import partition_path, temp_name
from arros_mqtt.egress.partition_time import split_by_hour

log = logging.getLogger(__name__)
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
        self.writer = pq.ParquetWriter(self.temp, schema, compression=compression)
        self.rows = 0
        self.opened = self.last_write = time.monotonic()
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def append(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        self.last_write = time.monotonic()
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._write_pending()

    def commit(self) -> Path:
        """Write what is buffered, the footer, sync, and rename into place."""
        self._write_pending()
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
        self._open: dict[int, _OpenFile] = {}

    def write(self, table: pa.Table, hours: np.ndarray) -> None:
        """Append rows; `hours[i]` is the epoch hour (UTC) of row i."""
        for hour, rows in split_by_hour(table, hours):
            self._append(hour, rows)

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

    def _append(self, hour: int, rows: pa.Table) -> None:
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
                file.append(left.slice(0, take))
                left = left.slice(take)
                if file.rows >= self.policy.rows:
                    self._commit(hour)
        except Exception as exc:
            failed = self._open.pop(hour, None)
            lost = left.num_rows + (failed.rows if failed else 0)
            if failed is not None:
                failed.discard()
            self._lost(lost, exc)

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
            self._lost(file.rows, exc)
            return
        self.files_written += 1
        self.rows_written += file.rows

    def _lost(self, rows: int, exc: Exception) -> None:
        self.rows_lost += rows
        log.error("archive %s: writing failed, %d rows not archived: %s: %s", self.folder, rows,
                  type(exc).__name__, exc)
