"""The Parquet archive (docs/results.md): decoded rows of `archive = true` streams and result rows of
`archive = true` subscriptions, partitioned by hour of event time under `[archive] dir`.

The pipeline calls `write_rows` and `write_result` with each micro-batch, `tick` a few times a second
(files open for `roll_interval` are closed, retention is applied once a minute) and `close` at stop,
all on the engine thread. Each file records in its key/value metadata which stream or subscription
wrote it (`arros.stream` / `arros.subscription`, `arros.sql`), the time it is partitioned by
(`arros.partitioned_by`) and the Arros version (`arros.version`).

With the write-ahead log, `position` is the log record being processed: files record which log rows
they hold, rows of results without a time column go by the record's time (so a replay puts them in
the same hour), and after a crash the log's rows not in a closed file are archived again
(`replaying`), exactly once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pyarrow as pa

from arros_mqtt import __version__
from arros_mqtt.config import Config
from arros_mqtt.core.errors import ConfigError
from arros_mqtt.core.log_position import LogPosition
from arros_mqtt.egress.archive_layout import STREAMS, SUBSCRIPTIONS, TEMP_GLOB, archive_folders
from arros_mqtt.egress.partition_time import PartitionTime, result_partition_time, stream_partition_time
from arros_mqtt.egress.partitioned_writer import PartitionedWriter, RollPolicy
from arros_mqtt.egress.retention import expire_partitions
from arros_mqtt.engine import Result

log = logging.getLogger(__name__)
RETENTION_CHECK_SECONDS = 60.0


class Archive:
    def __init__(self, config: Config, position: LogPosition | None = None) -> None:
        self.config = config
        self.position = position or LogPosition()
        self.replaying = False  # True while the log is replayed after a restart: skip rows already archived
        self.root = Path(config.archive.dir)
        archive = config.archive
        self.policy = RollPolicy(archive.roll_rows, archive.roll_interval, archive.compression)
        self._stream_times = {name: stream_partition_time(s) for name, s in config.streams.items() if s.archive}
        self._writers: dict[tuple[str, str], PartitionedWriter] = {}
        # per subscription: (result schema, sql) -> how its results are partitioned and labelled
        self._result_layout: dict[str, tuple[pa.Schema, str, PartitionTime, dict[str, str]]] = {}
        self._next_retention = 0.0
        self.uploader = None  # [archive] upload: each rolled file to object storage (egress/archive_upload.py)
        if archive.upload is not None:
            from arros_mqtt.egress.archive_upload import ArchiveUploader

            self.uploader = ArchiveUploader(archive, self.root, config.engine.state_dir)

    def open(self) -> None:
        """Create the folder when something is archived; remove temporary files a crash left behind."""
        if not self._stream_times and not any(s.archive for s in self.config.subscriptions.values()):
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(self.config.source, "archive.dir",
                              f"cannot create {str(self.root)!r}: {exc.strerror}") from None
        stale = [p for folders in archive_folders(self.root).values() for folder in folders.values()
                 for p in folder.glob(f"date=*/hour=*/{TEMP_GLOB}")]
        for path in stale:
            path.unlink(missing_ok=True)
        if self.uploader is not None:
            self.uploader.start()
        if stale:
            log.warning("archive: removed %d unfinished files left by a previous run (%s)", len(stale),
                        "their rows are archived again from the write-ahead log" if self.config.durability.wal
                        else "their rows were not archived")

    def write_rows(self, stream: str, table: pa.Table) -> None:
        """Row sink: a micro-batch of decoded rows (with metadata columns) of `stream`."""
        partition_time = self._stream_times.get(stream)
        if partition_time is None or table.num_rows == 0:
            return
        metadata = {"arros.stream": stream, "arros.partitioned_by": partition_time.description,
                    "arros.version": __version__}
        hours = partition_time.hours(table, self._now_ms())
        self._writer(STREAMS, stream).write(table.replace_schema_metadata(metadata), hours, self.position.seq,
                                            self.replaying)

    def write_result(self, result: Result) -> None:
        """Result sink: the rows one subscription produced from one micro-batch (or a tick)."""
        subscription = result.subscription
        if not subscription.config.archive or result.table.num_rows == 0:
            return
        name, table = subscription.name, result.table
        layout = self._result_layout.get(name)
        if layout is None or not layout[0].equals(table.schema) or layout[1] != subscription.config.sql:
            stream = self.config.streams.get(subscription.shape.stream)
            partition_time = result_partition_time(table.schema, stream.event_time if stream else None)
            metadata = {"arros.subscription": name, "arros.sql": subscription.config.sql,
                        "arros.partitioned_by": partition_time.description, "arros.version": __version__}
            layout = (table.schema, subscription.config.sql, partition_time, metadata)
            self._result_layout[name] = layout
        _, _, partition_time, metadata = layout
        hours = partition_time.hours(table, self._now_ms())
        self._writer(SUBSCRIPTIONS, name).write(table.replace_schema_metadata(metadata), hours, self.position.seq,
                                                self.replaying)

    def tick(self, now: float) -> None:
        """Roll files open too long; apply retention once a minute (`now` is wall-clock time)."""
        monotonic = time.monotonic()
        for writer in self._writers.values():
            writer.roll_due(monotonic)
        retention = self.config.archive.retention
        if retention is not None and now >= self._next_retention and self.root.is_dir():
            self._next_retention = now + RETENTION_CHECK_SECONDS
            keep = set().union(*(w.open_partitions for w in self._writers.values()))
            expire_partitions(self.root, retention, now, keep)

    def oldest_open_seq(self, kind: str = STREAMS) -> int | None:
        """The oldest log record with `kind` rows not yet in a closed file (the log must keep it)."""
        return min((s for (k, _), w in self._writers.items() if k == kind
                    if (s := w.oldest_open_seq) is not None), default=None)

    def failed_seq(self, kind: str = STREAMS) -> int | None:
        """The oldest log record with `kind` rows lost to a write error (to archive again), if any."""
        return min((w.failed_seq for (k, _), w in self._writers.items() if k == kind and w.failed_seq is not None),
                   default=None)

    def clear_failures(self, kind: str = STREAMS) -> None:
        for (writer_kind, _), writer in self._writers.items():
            if writer_kind == kind:
                writer.failed_seq = None

    def commit(self, kind: str) -> None:
        """Close every open file of `kind` (results, at each checkpoint: a restart cannot make them again)."""
        for (writer_kind, _), writer in self._writers.items():
            if writer_kind == kind:
                writer.close()

    def end_replay(self) -> None:
        self.replaying = False
        for writer in self._writers.values():
            writer.end_replay()

    def close(self) -> None:
        """Write and rename every open file (at stop, after the last micro-batch)."""
        for (kind, name), writer in self._writers.items():
            writer.close()
            lost = f", {writer.rows_lost} rows lost to write errors" if writer.rows_lost else ""
            log.info("archive %s/%s: %d rows written, %d files%s", kind, name, writer.rows_written,
                     writer.files_written, lost)
        if self.uploader is not None:
            self.uploader.stop()

    def _writer(self, kind: str, name: str) -> PartitionedWriter:
        writer = self._writers.get((kind, name))
        if writer is None:
            writer = self._writers[(kind, name)] = PartitionedWriter(self.root / kind / name, self.policy)
            writer.on_commit = self.uploader.enqueue if self.uploader is not None else None
        return writer

    def _now_ms(self) -> int:
        return self.position.time_ms or time.time_ns() // 1_000_000
