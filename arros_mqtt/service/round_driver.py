"""The round driver: every input of the engine goes through the write-ahead log first, then the stages;
after a restart the log replays.

On the engine thread, per round: decode the micro-batches, append their rows (and dead letters) to the
log, sync it (per `[durability] sync`), acknowledge the messages now durable, then run the rows through
the pipeline with `position` set to their record, so outputs and archive files know where they came
from. Idle-timeout watermark advances are logged too, so a replay closes windows at the same records.

Periodically the engine's state is checkpointed (`checkpoint.py`); result archives are closed at the
same moment, because results of records before the checkpoint cannot be made again. A checkpoint is
promoted once the broker confirmed every output of the records it covers; then the log before it
(and before the oldest stream row not yet in a closed archive file) is deleted.

At start, `recover` restores the newest checkpoint and replays the log after it: the rows of records
the archive may lack go to the archive (which skips rows a closed file holds), records after the
checkpoint go through the engine, and outputs of records up to the last confirmed one are not
published again. If the log cannot be written (disk full, read-only), the decoded batch is held, no
message is acknowledged, no new batch is taken (so the broker keeps the rest), and the append is
retried every second.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from arros_mqtt.config import METADATA_COLUMNS, Config
from arros_mqtt.core.log_position import LogPosition
from arros_mqtt.decode.inferring_decoder import InferringStreamDecoder
from arros_mqtt.decode.stream_decoder import BadMessage
from arros_mqtt.durability.checkpoint import CheckpointStore
from arros_mqtt.durability.wal import CONFIRMED, DEADLETTERS, ROWS, WATERMARK, WalError, WriteAheadLog
from arros_mqtt.egress.archive import Archive
from arros_mqtt.egress.archive_layout import STREAMS, SUBSCRIPTIONS
from arros_mqtt.egress.output_queue import OutputQueue
from arros_mqtt.engine import Engine
from arros_mqtt.ingress.acks import RECENT, AckLedger
from arros_mqtt.ingress.batcher import RawBatch
from arros_mqtt.service.pipeline import Pipeline

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0
LAZY_SYNC_SECONDS = 0.1  # with sync per micro-batch, records without messages wait this long for the next one's fsync
DEADLETTER_SCHEMA = pa.schema([("topic", pa.string()), ("payload", pa.binary()), ("received_ms", pa.int64()),
                               ("error", pa.string())])


@dataclass
class _Input:
    """One decoded micro-batch (or connector table) on its way through the log."""

    stream: str
    table: pa.Table
    bad: list[BadMessage]
    entries: list | None  # the ack ledger's entries of its messages (client mode with manual acks)
    messages: int
    started: float
    seq: int = 0
    deadletter_seq: int = 0
    time_ms: int = 0  # when it was logged: archive hours of results without a time column go by it


class RoundDriver:
    def __init__(self, config: Config, engine: Engine, pipeline: Pipeline, archive: Archive, position: LogPosition,
                 ledger: AckLedger | None = None, outputs: OutputQueue | None = None,
                 receiving: Callable[[], bool] = lambda: True) -> None:
        self.config = config
        self.durability = config.durability
        self.engine = engine
        self.pipeline = pipeline
        self.archive = archive
        self.position = position
        self.ledger = ledger
        self.outputs = outputs
        self.receiving = receiving  # False while the ingress is cut off from the broker
        state_dir = Path(config.engine.state_dir)
        self.wal = WriteAheadLog(state_dir / "wal") if self.durability.wal else None
        self.checkpoints = CheckpointStore(state_dir / "checkpoints") if self.durability.wal else None
        self.processed_seq = 0  # the last record run through the pipeline
        self.error: str | None = None  # why the log cannot be written right now
        self.errors = 0
        self.replayed_records = 0
        self.replayed_rows = 0
        self.replay_seconds = 0.0
        self._held: list[_Input] = []  # decoded, not yet in the log (it failed): retried, never acknowledged
        self._unsynced: list[list] = []  # ack entries of records appended but not yet synced
        self._next_retry = 0.0
        self._next_archive_retry = 0.0
        self._id_records: deque[tuple[int, int]] = deque()  # (seq, packet ids) of the records the ledger remembers
        self._id_count = 0
        self._last_sync = time.monotonic()
        self._confirmed_logged = 0

    # -- start (caller's thread, before the engine thread and the transport run) --

    def recover(self) -> None:
        """Restore the newest checkpoint and replay the log after it (see the module docstring)."""
        if self.wal is None or self.checkpoints is None:
            return
        started = time.monotonic()
        self.wal.open()
        first_seq = self.wal.first_seq()  # a checkpoint (or none: seq 0) is usable if the log holds what follows it
        checkpoint, restored = self.checkpoints.restore_newest(self.engine, time.time(),
                                                               lambda seq: first_seq <= seq + 1, self._adopt)
        state_seq, archive_from, confirmed = 0, 1, 0
        if checkpoint is not None:
            state_seq, archive_from, confirmed = checkpoint.seq, checkpoint.archive_from, checkpoint.confirmed
            log.info("checkpoint %d restored (%d subscriptions with state)", checkpoint.seq, len(restored))
        mids: list[np.ndarray] = []
        for record in self.wal.records(kinds=(CONFIRMED, ROWS), tables=False):
            if record.kind == CONFIRMED:
                confirmed = max(confirmed, record.header["through"])
            elif len(record.mids):
                mids.append(record.mids)
                self._remembered(record.seq, len(record.mids))
        if self.ledger is not None and mids:
            self.ledger.remember(np.concatenate(mids)[-RECENT:].tolist())
        if self.outputs is not None:
            confirmed = max(confirmed, self.outputs.recover())
            self.outputs.start_replay(confirmed)
        self._confirmed_logged = confirmed
        self.archive.replaying = True
        try:
            start = min(state_seq, archive_from - 1)
            for record in self.wal.records(after=start, kinds=(ROWS, DEADLETTERS, WATERMARK)):
                self._replay(record, state_seq)
        finally:
            self.archive.end_replay()
            if self.outputs is not None:
                self.outputs.end_replay()
        self.processed_seq = self.wal.appended_seq
        self.position.seq, self.position.time_ms = self.processed_seq, 0
        now = time.time()
        for watermark in self.engine.watermarks.values():
            watermark.touch(now)
        self.replay_seconds = time.monotonic() - started
        if self.replayed_records:
            log.info("write-ahead log: replayed %d records (%d rows) after record %d in %.1fs; outputs up to record "
                     "%d were published before", self.replayed_records, self.replayed_rows,
                     min(state_seq, archive_from - 1), self.replay_seconds, confirmed)

    def _replay(self, record, state_seq: int) -> None:
        self.position.seq, self.position.time_ms = record.seq, record.time_ms
        stream = record.stream
        if stream not in self.config.streams:
            log.warning("write-ahead log: record %d is for stream %s, which is no longer configured; skipped",
                        record.seq, stream)
            return
        self.replayed_records += 1
        if record.kind == ROWS:
            table = record.table
            known = self.engine.streams[stream].schema is not None
            if self.config.streams[stream].infers_schema and (record.seq > state_seq or not known):
                # records the checkpoint covers do not change its schema (a re-inference replans, empty)
                self._adopt(stream, _declared(table.schema, self.config.streams[stream]))
            expected = self.engine.streams[stream].full_schema()
            if not table.schema.equals(expected):
                try:
                    table = table.select(expected.names).cast(expected)
                except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
                    log.warning("write-ahead log: record %d no longer fits stream %s's schema; skipped",
                                record.seq, stream)
                    return
            self.replayed_rows += table.num_rows
            if record.seq > state_seq:
                self.pipeline.process_table(stream, table)
            else:
                self.archive.write_rows(stream, table)
        elif record.seq <= state_seq:
            return
        elif record.kind == DEADLETTERS:
            self.pipeline.deadletter(stream, _bad_messages(record.table))
        elif record.kind == WATERMARK:
            self.pipeline.emit(self.engine.advance(stream, record.header["value"]))

    def _adopt(self, stream: str, schema: pa.Schema) -> None:
        """A schema an earlier run inferred for a schema-less stream: decode and plan with it again."""
        decoder = self.pipeline.decoders.get(stream)
        if isinstance(decoder, InferringStreamDecoder):
            decoder.adopt(schema)

    # -- engine thread --

    @property
    def blocked(self) -> bool:
        """True while the engine should take no new micro-batch: the log fails, or outputs are full."""
        return bool(self._held) or (self.outputs is not None and self.outputs.full)

    def run_batches(self, batches: list[RawBatch]) -> None:
        """Decode, log, sync, acknowledge and process one round of micro-batches."""
        inputs = []
        for batch in batches:
            started = time.perf_counter()
            table, bad = self.pipeline.decode(batch)
            entries = self.ledger.take(batch.stream, len(batch)) if self.ledger is not None else None
            inputs.append(_Input(batch.stream, table, bad, entries, len(batch), started))
        self._run(inputs)

    def run_tables(self, tables: list[tuple[str, pa.Table]]) -> None:
        """Connector tables: logged, then processed like decoded micro-batches."""
        self._run([_Input(stream, table, [], None, 0, time.perf_counter()) for stream, table in tables])

    def retry(self) -> None:
        """Try the held inputs again (at most once a second)."""
        if self._held and time.monotonic() >= self._next_retry:
            held, self._held = self._held, []
            self._run(held)

    def tick(self, now: float) -> None:
        """Logged idle-timeout advances (before `Pipeline.tick`, which then finds nothing left to advance)."""
        watermarks = self.engine.watermarks
        if not self.receiving():  # cut off from the broker: rows are not missing, only not delivered
            for watermark in watermarks.values():
                watermark.touch(now)
            return
        for stream, watermark in watermarks.items():
            target = watermark.idle_target(now)
            if target is None:
                continue
            if self.wal is not None:
                try:
                    seq = self.wal.append(WATERMARK, {"stream": stream, "value": target, "t": int(now * 1000)})
                except WalError as exc:
                    self._failed(exc)
                    watermark.touch(now)  # an advance not in the log would not replay the same way
                    continue
                self._unsynced.append([])
            else:
                seq = self.processed_seq + 1
            self._processing(seq, int(now * 1000))
            self.pipeline.emit(self.engine.advance(stream, target))

    def after_round(self) -> None:
        """Sync on the interval, log the confirmed output position, checkpoint and promote when due."""
        if self.wal is None:
            return
        if self.outputs is not None:
            self.outputs.pump()  # QoS 2 results of the round: one journal fsync for all of them
        now = time.monotonic()
        if self._unsynced and self.durability.sync and now - self._last_sync >= self.durability.sync:
            self._sync()
        self._log_confirmed()
        if self._unsynced and self.durability.sync == 0.0 and now - self._last_sync >= LAZY_SYNC_SECONDS:
            self._sync()  # records that acknowledge nothing (confirmed positions, idle advances)
        self._maybe_promote()
        if now >= self._next_archive_retry and self.archive.failed_seq() is not None:
            self._next_archive_retry = now + RETRY_SECONDS * 5
            self._rearchive()
        if (self.checkpoints.pending is None and not self._held
                and now - self.checkpoints.last_written >= self.durability.checkpoint_interval):
            latest = self.checkpoints.latest
            if latest is not None and latest.seq >= self.processed_seq:  # nothing new (e.g. the broker is away):
                self.checkpoints.last_written = now  # a second one at that seq could not be promoted over it
            else:
                self.checkpoint()

    def checkpoint(self) -> None:
        """Close result archives and write the engine's state at the last processed record (pending)."""
        if self.checkpoints is None:
            return
        self.archive.commit(SUBSCRIPTIONS)
        archive_from = self.archive.oldest_open_seq(STREAMS) or self.processed_seq + 1
        try:
            inferred = {name: stream.infers_schema for name, stream in self.config.streams.items()}
            self.checkpoints.write(self.engine, self.processed_seq, archive_from, self._confirmed(), inferred)
        except OSError as exc:
            self.errors += 1
            log.error("checkpoint at record %d failed: %s", self.processed_seq, exc)
            self.checkpoints.last_written = time.monotonic()  # try again after an interval
            return
        self._maybe_promote()

    def close(self) -> None:
        """At stop, after the last batch and the closers: sync, final checkpoint (promoted by `finish`)."""
        if self.wal is None:
            return
        self._sync()
        if self.processed_seq and (self.checkpoints.latest is None or self.checkpoints.latest.seq < self.processed_seq):
            self.checkpoint()

    def finish(self) -> None:
        """After outputs were flushed: promote the final checkpoint if the broker confirmed its outputs."""
        if self.wal is None:
            return
        self._log_confirmed()
        self._sync()
        self._maybe_promote()
        if self.checkpoints.pending is not None:
            log.warning("the final checkpoint waits for the broker to confirm outputs; the next start replays "
                        "the log from record %d", self.checkpoints.latest.seq if self.checkpoints.latest else 0)
        self.wal.close()

    # -- internals --

    def _run(self, inputs: list[_Input]) -> None:
        logged = []
        for index, item in enumerate(inputs):
            try:
                self._append(item)
            except WalError as exc:
                self._failed(exc)
                self._held = inputs[index:] + self._held
                break
            logged.append(item)
        if logged and self.error is not None and not self._held:
            log.warning("write-ahead log writable again; %d held micro-batches logged", len(logged))
            self.error = None
        if self.wal is not None and self.durability.sync == 0.0:
            self._sync()
        elif self.wal is not None and self.durability.sync is None:
            self._acknowledge()
        with self.outputs.batched() if self.outputs is not None else contextlib.nullcontext():
            for item in logged:
                if item.bad:
                    self._processing(item.deadletter_seq or item.seq, item.time_ms)
                    self.pipeline.deadletter(item.stream, item.bad)
                self._processing(item.seq, item.time_ms)
                self.pipeline.process_table(item.stream, item.table)
                if item.messages:
                    self.pipeline.observe(item.stream, item.messages, time.perf_counter() - item.started)

    def _append(self, item: _Input) -> None:
        now = item.time_ms = _now_ms()
        if self.wal is None:
            item.seq = self.processed_seq + 1
            self.processed_seq = item.seq
            return
        if item.bad and not item.deadletter_seq:
            item.deadletter_seq = self.wal.append(DEADLETTERS, {"stream": item.stream, "t": now},
                                                  _deadletter_table(item.bad))
            self._unsynced.append([])
        mids = AckLedger.mids(item.entries) if item.entries else None
        item.seq = self.wal.append(ROWS, {"stream": item.stream, "t": now}, item.table, mids)
        self._unsynced.append(item.entries or [])
        if mids is not None and len(mids):
            self._remembered(item.seq, len(mids))

    def _remembered(self, seq: int, count: int) -> None:
        """Track the records holding the last `RECENT` packet ids: the log keeps them, so a restart
        still recognises redelivered copies of them whatever was checkpointed since."""
        records = self._id_records
        records.append((seq, count))
        self._id_count += count
        while self._id_count - records[0][1] >= RECENT:
            self._id_count -= records.popleft()[1]

    def _processing(self, seq: int, time_ms: int) -> None:
        self.processed_seq = max(self.processed_seq, seq)
        self.position.seq, self.position.time_ms = seq, time_ms

    def _sync(self) -> None:
        try:
            self.wal.sync()
        except WalError as exc:
            self._failed(exc)
            return
        self._last_sync = time.monotonic()
        self._acknowledge()

    def _acknowledge(self) -> None:
        unsynced, self._unsynced = self._unsynced, []
        if self.ledger is not None:
            self.ledger.durable([entry for entries in unsynced for entry in entries])

    def _confirmed(self) -> int:
        return self.outputs.confirmed(self.processed_seq) if self.outputs is not None else self.processed_seq

    def _log_confirmed(self) -> bool:
        confirmed = self._confirmed()
        if confirmed <= self._confirmed_logged:
            return False
        try:
            self.wal.append(CONFIRMED, {"through": confirmed, "t": _now_ms()})
        except WalError as exc:
            self._failed(exc)
            return False
        self._unsynced.append([])
        self._confirmed_logged = confirmed
        if self.outputs is not None:
            self.outputs.confirm(confirmed)
        return True

    def _maybe_promote(self) -> None:
        pending = self.checkpoints.pending
        if pending is None or self._confirmed() < pending.seq:
            return
        try:
            checkpoint = self.checkpoints.promote()
        except OSError as exc:
            self.errors += 1
            log.error("checkpoint %d could not be promoted: %s", pending.seq, exc)
            return
        keep_from = min(self.checkpoints.oldest_kept_seq() + 1, checkpoint.archive_from,  # the previous one too
                        self.archive.oldest_open_seq(STREAMS) or checkpoint.seq + 1,
                        self._id_records[0][0] if self._id_records else checkpoint.seq + 1)
        self.wal.truncate_before(keep_from)

    def _rearchive(self) -> None:
        """Stream rows lost to an archive write error (disk full) are archived again from the log, once
        the disk takes them: the same replay as after a crash, from the oldest record with lost rows."""
        failed = self.archive.failed_seq()
        self.archive.commit(STREAMS)  # what is written so far becomes closed files (or is lost, too)
        failed = min(failed, self.archive.failed_seq() or failed)
        self.archive.clear_failures()
        seq, time_ms = self.position.seq, self.position.time_ms
        self.archive.replaying = True
        try:
            for record in self.wal.records(after=failed - 1, kinds=(ROWS,)):
                if record.stream in self.config.streams and record.seq <= self.processed_seq:
                    self.position.seq, self.position.time_ms = record.seq, record.time_ms
                    self.archive.write_rows(record.stream, record.table)
            self.archive.commit(STREAMS)
        finally:
            self.archive.end_replay()
            self.position.seq, self.position.time_ms = seq, time_ms
        if self.archive.failed_seq() is None:
            log.warning("archive writable again: stream rows from log record %d on are archived", failed)

    def _failed(self, exc: WalError) -> None:
        self.errors += 1
        self._next_retry = time.monotonic() + RETRY_SECONDS
        if self.error is None:
            log.error("%s: holding the micro-batch, acknowledging nothing and taking no new messages until it "
                      "can be written (retrying every %.0fs)", exc, RETRY_SECONDS)
        self.error = str(exc)


def _declared(full: pa.Schema, stream) -> pa.Schema:
    """The declared part of a stream's full schema (without topic captures and metadata columns)."""
    added = {name for name, _ in stream.topic.captures} if stream.topic is not None else set()
    return pa.schema([f for f in full if f.name not in added and f.name not in METADATA_COLUMNS])


def _deadletter_table(bad: list[BadMessage]) -> pa.Table:
    return pa.table([[b.topic for b in bad], [b.payload for b in bad], [b.received_ms for b in bad],
                     [b.error for b in bad]], schema=DEADLETTER_SCHEMA)


def _bad_messages(table: pa.Table) -> list[BadMessage]:
    return [BadMessage(row["topic"], row["payload"], row["received_ms"], row["error"]) for row in table.to_pylist()]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
