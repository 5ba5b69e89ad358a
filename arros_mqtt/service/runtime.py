"""The running service: transport (broker) -> micro-batcher -> pipeline -> transport and sinks.

Threads: the transport's network side fills the batcher; connectors (`arros_mqtt/connectors/`) hand decoded
tables to `submit_table`; the engine thread decodes, queries and hands results to the sinks, and
calls `Pipeline.tick` a few times a second for time-driven work.
`stop()` drains in flow order so nothing received is left unprocessed and every result is handed to
the broker (and every closer, e.g. an archive, is flushed) before exit, within
`[durability] shutdown_timeout`. Every input goes through the write-ahead log first (`RoundDriver`); a
restart replays it, so a stop cut short by the timeout, or a crash, loses nothing acknowledged.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pyarrow as pa

from arros_mqtt.config import GROUP_REFUSES_AGGREGATES, Config, check_cluster, member_name
from arros_mqtt.control.membership import members_topic
from arros_mqtt.core.errors import ConfigError
from arros_mqtt.core.log_position import LogPosition
from arros_mqtt.durability.lock import StateDirLock
from arros_mqtt.egress.archive import Archive
from arros_mqtt.engine import PER_ROW, Engine, RunBounds
from arros_mqtt.ingress.acks import AckLedger
from arros_mqtt.ingress.batcher import MicroBatcher
from arros_mqtt.ops.health import HealthPublisher
from arros_mqtt.service.pipeline import Pipeline
from arros_mqtt.service.round_driver import RoundDriver
from arros_mqtt.service.wiring import (
    control_plane,
    default_transport,
    flight_server,
    health_sources,
    live_views,
    metrics_server,
    uplinks,
    web_console,
)
from arros_mqtt.transport.interface import Transport

log = logging.getLogger(__name__)
TICK_SECONDS = 0.2
MAX_PENDING_TABLES = 10_000  # connector tables waiting for the engine; past this `submit_table` blocks
CALLS_PER_ROUND = 100  # engine calls (control requests) run between two rounds of micro-batches


def build_engine(config: Config) -> Engine:
    """The engine with every config subscription planned (or pending, over a stream whose schema is
    inferred at run time): what `arros check` validates. In a `[cluster]` group only per-row ones run."""
    check_cluster(config)
    limits = config.engine
    engine = Engine(config.streams, config.tables, bounds=RunBounds(
        limits.max_result_rows, limits.max_result_bytes, limits.max_batch_seconds, limits.sql_memory))
    for name, subscription in config.subscriptions.items():
        try:
            added = engine.add_when_ready(subscription)
        except Exception as exc:
            raise ConfigError(config.source, f"subscriptions.{name}.sql", str(exc)) from None
        if config.cluster.group is not None and added is not None and added.shape.kind != PER_ROW:
            raise ConfigError(config.source, f"subscriptions.{name}.sql", GROUP_REFUSES_AGGREGATES)
    return engine


class Service:
    def __init__(self, config: Config, transport: Transport | None = None) -> None:
        self.config = config
        self.engine = build_engine(config)
        self.position = LogPosition()  # the write-ahead log record being processed
        self.transport = transport or default_transport(config, self.position)
        self.pipeline = Pipeline(config, self.engine, self.transport.publish)
        if hasattr(self.transport, "packet_limit"):
            self.pipeline.packet_limit = lambda: self.transport.packet_limit
        self.archive = Archive(config, self.position)
        self.pipeline.add_row_sink(self.archive.write_rows)
        self.pipeline.add_result_sink(self.archive.write_result)
        self.pipeline.add_ticker(self.archive.tick)
        engine_cfg = config.engine
        self.batcher = MicroBatcher(list(config.streams), engine_cfg.batch_max_rows, engine_cfg.batch_max_delay,
                                    max_bytes=engine_cfg.batch_max_bytes, mode=engine_cfg.batching,
                                    linger=engine_cfg.batch_linger)
        if hasattr(self.transport, "wait_for_room"):  # embedded mode: results bounded by output_memory
            self.pipeline.wait_for_room = lambda: self.transport.wait_for_room(self.batcher.unbounded)
        self._closers: list[Callable[[], None]] = []
        self._stopping = threading.Event()
        self._engine_calls: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self._engine_thread = threading.Thread(target=self._run_engine, name="arros-engine", daemon=True)
        self.add_closer(self.archive.close)
        self.ledger = None  # client mode with the log: PUBACK once a message's rows are durable
        if config.durability.wal and hasattr(self.transport, "use_ack_ledger"):
            self.ledger = AckLedger(self.transport.acknowledge)
            self.transport.use_ack_ledger(self.ledger)
        # the round driver: each round of micro-batches through the write-ahead log, then the stages
        self.journal = RoundDriver(config, self.engine, self.pipeline, self.archive, self.position, self.ledger,
                                   getattr(self.transport, "outputs", None),
                                   getattr(self.transport, "receiving", lambda: True))
        self.add_closer(self.journal.close)
        health_prefix = config.control.prefix if config.cluster.group is None \
            else members_topic(config.control.prefix, member_name(config))  # one health per member of a group
        self.pipeline.add_ticker(HealthPublisher(health_sources(self), self.transport.publish, health_prefix,
                                                 config.control.status_interval).tick)
        self._lock = StateDirLock(config.engine.state_dir, config.source) if config.durability.wal else None
        self._tables: queue.Queue[tuple[str, pa.Table]] = queue.Queue(MAX_PENDING_TABLES)
        self.connectors = None
        if config.connectors:
            from arros_mqtt.connectors.runner import ConnectorSet

            self.connectors = ConnectorSet(config, self.submit_table, self.transport.publish)
        self.live = live_views(self)  # for Flight SQL and the web console
        self.control = control_plane(self)
        self.uplinks = uplinks(self)  # built before health_sources reads them
        self.metrics = metrics_server(self)
        self.flight = flight_server(self)  # Arrow Flight SQL: stopped first
        self.web = web_console(self)

    def call_on_engine(self, call: Callable[[], Any]) -> Future:
        """Run `call` on the engine thread between micro-batches (the engine and DataFusion are used
        there without locks); the future holds its result or exception."""
        future: Future = Future()
        self._engine_calls.put((call, future))
        self.batcher.wake()
        return future

    def add_closer(self, close: Callable[[], None]) -> None:
        """Called on the engine thread after the last batch, before the transport closes."""
        self._closers.append(close)

    def submit_table(self, stream: str, table: pa.Table) -> None:
        """Thread-safe: decoded rows (the stream's full schema), processed in order on the engine thread."""
        self._tables.put((stream, table))
        self.batcher.wake()

    def start(self, connect_wait: float = 10.0) -> None:
        """Start all stages; waits up to `connect_wait` for the broker, then runs anyway (and retries).

        Before anything is received, the write-ahead log is replayed (a checkpoint restored first)."""
        if self._lock is not None:
            self._lock.acquire()
        self.archive.open()
        self.journal.recover()
        if self.metrics is not None:
            self.metrics.start()
        if self.web is not None and not self.web.start():
            self.web = None  # the default address is taken: run without the console (a warning said so)
        if self.flight is not None:
            self.flight.start()
        deadline = time.monotonic() + connect_wait
        self._engine_thread.start()
        # a group member reads the retained catalogue before its share of a stream arrives (the messages its
        # session queued while it was down), so they run the group's newest definitions (docs/cluster.md)
        control_first = self.control is not None and self.config.cluster.group is not None \
            and self.config.broker is not None
        if control_first:
            self.control.start(connect_wait)
            self.control.catalogue_read.wait(max(0.0, deadline - time.monotonic()))
        self.transport.start(self.batcher.add, max(0.0, deadline - time.monotonic()) if control_first
                             else connect_wait)
        if self.connectors is not None:
            self.connectors.start()
        if self.control is not None and not control_first:
            self.control.start(max(0.0, deadline - time.monotonic()))
        for uplink in self.uplinks:
            uplink.start()
        log.info("arros running: %d streams, %d subscriptions, %s", len(self.config.streams),
                 len(self.engine.subscriptions), self.transport.description)
        for name in self.engine.pending:
            log.info("subscription %s waits for the schema of a stream declared without one", name)

    def stop(self, timeout: float | None = None) -> None:
        """Stop receiving, process what was received, publish it, flush sinks, checkpoint, disconnect;
        within `timeout` (default `[durability] shutdown_timeout`) plus a second or two."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.config.durability.shutdown_timeout)

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        if self.flight is not None:
            self.flight.stop()
        if self.connectors is not None:
            self.connectors.stop(min(left(), 5.0))
        if self.control is not None:
            self.control.stop(min(left(), 5.0))
        self._drain(left)
        for uplink in self.uplinks:  # after the drain: the results are at the broker, the uplink takes them
            uplink.stop(min(left(), 5.0))
        self.transport.close()
        if self._lock is not None:
            self._lock.release()
        if self.metrics is not None:
            self.metrics.stop()
        if self.web is not None:
            self.web.stop()
        self._log_totals()

    def _drain(self, left: Callable[[], float]) -> None:
        """Nothing new in; the engine processes what it has; the broker takes every result; the final
        checkpoint is promoted once it has (`left()`: seconds left of the shutdown timeout)."""
        self.transport.stop_receiving()
        self._stopping.set()
        self.batcher.close()
        self._engine_thread.join(left())
        if self._engine_thread.is_alive():
            log.warning("the engine did not finish within the shutdown timeout; the write-ahead log has "
                        "the rest and the next start replays it")
            return
        if not self.transport.flush(left()):
            log.warning("stopped before the broker acknowledged every result (the next start publishes them again)")
        self.journal.finish()

    def _log_totals(self) -> None:
        if self.ledger is not None:
            log.info("%d messages acknowledged once logged, %d redelivered copies of logged messages dropped",
                     self.ledger.acked, self.ledger.duplicates)
        for name, stats in self.pipeline.stats.items():
            log.info("stream %s: %d messages, %d rows, %d dead letters", name, stats.messages, stats.rows,
                     stats.deadletters)
            if stats.extra_fields:
                log.info("stream %s: rows with fields its inferred schema lacks: %s", name, stats.extra_fields)

    def _run_engine(self) -> None:
        next_tick = time.monotonic() + TICK_SECONDS
        journal = self.journal
        while True:
            blocked = journal.blocked  # the log cannot be written, or outputs are full: take nothing new
            if blocked:
                self._guard(journal.retry)
                self._stopping.wait(0.05)
            batches = [] if blocked else self.batcher.take(timeout=TICK_SECONDS)
            if batches:
                self._guard(journal.run_batches, batches)
            tables = [] if blocked else self._take_tables()
            if tables:
                self._guard(journal.run_tables, tables)
            self._run_calls()
            now = time.monotonic()
            if now >= next_tick:
                wall = time.time()
                for stream in self.batcher.pending_streams():  # behind, not idle: keep windows open
                    self.engine.watermarks[stream].touch(wall)
                self._guard(journal.tick, wall)
                self._guard(self.pipeline.tick, wall)
                next_tick = now + TICK_SECONDS
            self._guard(journal.after_round)
            if self._stopping.is_set() and not batches and not tables and (self.batcher.pending == 0 or blocked):
                break
        while not self._engine_calls.empty():
            self._run_calls()
        for close in self._closers:
            self._guard(close)

    def _take_tables(self) -> list[tuple[str, pa.Table]]:
        """Connector tables waiting now, one concatenated table per stream (one query each)."""
        grouped: dict[str, list[pa.Table]] = {}
        while True:
            try:
                stream, table = self._tables.get_nowait()
            except queue.Empty:
                break
            grouped.setdefault(stream, []).append(table)
        return [(stream, pa.concat_tables(tables)) for stream, tables in grouped.items()]

    def _run_calls(self) -> None:
        """Up to CALLS_PER_ROUND calls, so a flood of them delays micro-batches by little."""
        for _ in range(CALLS_PER_ROUND):
            try:
                call, future = self._engine_calls.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)
        self.batcher.wake()  # more are waiting: come back without sleeping

    def _guard(self, step: Callable, *args: object) -> None:
        try:
            step(*args)
        except Exception:  # our bug: log it loudly, keep the service alive
            log.exception("internal error in %s", getattr(step, "__qualname__", step))
