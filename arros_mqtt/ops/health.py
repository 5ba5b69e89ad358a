"""The service's health: backpressure, the write-ahead log, checkpoints and the output queue, as a
retained JSON message on `{prefix}/health` (every `[control] status_interval`) and as Prometheus metrics.

`backpressure` is true while ingestion is slowed down on purpose: the micro-batch buffer is full (the
MQTT client stops reading, unacknowledged messages stay at the broker), the log cannot be written, or
results wait for the broker beyond the output queue's limits. `lag` says how far behind Arros is: how
long the oldest message waiting for the engine, and the oldest result waiting for the broker, have
waited; past `[control] lagging_after` the status is `lagging`, and the message goes out at once rather
than at the next interval, so an overload is visible while it lasts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson


class BufferView(Protocol):
    """The micro-batch buffer as the report reads it."""

    blocked: bool
    full: bool
    pending: int
    max_pending: int
    blocked_seconds: float

    def oldest_seconds(self) -> float: ...


class LedgerView(Protocol):
    """Acknowledgements after durability (client mode with the log)."""

    unacknowledged: int
    duplicates: int


class LogView(Protocol):
    """The round driver's side of durability: the log, its checkpoints, the output queue, its errors."""

    error: str | None
    errors: int
    wal: Any  # WriteAheadLog | None: bytes, appended_seq, synced_seq
    checkpoints: Any  # CheckpointStore | None: latest
    outputs: Any  # OutputQueue | None: full, journal_error, queued, queued_bytes, spilled_bytes, inflight


@dataclass(frozen=True)
class HealthSources:
    """What the health report reads, each part behind the view it needs (wired by `Service`)."""

    buffer: BufferView
    log: LogView
    ledger: LedgerView | None
    archive_failed_seq: Callable[[], int | None]
    receiving: Callable[[], bool] | None  # None: the transport cannot tell (then it counts as connected)
    lagging_after: float = 1.0  # seconds of lag past which the status is "lagging"
    uplinks: Callable[[], dict[str, dict[str, Any]]] | None = None  # each uplink's status (uplink/forwarder.py)
    sparkplug: Callable[[], dict[str, dict[str, int]]] | None = None  # per Sparkplug stream: its decoder's counters


def health(sources: HealthSources) -> dict[str, Any]:
    journal, batcher, ledger = sources.log, sources.buffer, sources.ledger
    outputs = journal.outputs
    reasons = []
    if batcher.blocked or batcher.full:
        reasons.append("the engine is behind: the micro-batch buffer is full")
    if journal.error is not None:
        reasons.append(f"the write-ahead log cannot be written: {journal.error}")
    if outputs is not None and outputs.full:
        reasons.append("results wait for the broker beyond output_memory + output_spill")
    degraded = []
    failed = sources.archive_failed_seq()
    if failed is not None:
        degraded.append(f"archive write errors since log record {failed}; retried from the log")
    if outputs is not None and outputs.journal_error is not None:
        degraded.append(f"QoS 2 results wait: the output journal cannot be written: {outputs.journal_error}")
    if sources.receiving is not None and not sources.receiving():
        degraded.append("not connected to the broker")
    lag = lag_of(sources)
    lagging = lag["seconds"] >= sources.lagging_after
    if lagging:
        degraded.insert(0, f"lagging: {lag['seconds']:.1f}s behind (input {lag['input_seconds']:.1f}s, "
                           f"results {lag['results_seconds']:.1f}s)")
    wal, checkpoints = journal.wal, journal.checkpoints
    latest = checkpoints.latest if checkpoints is not None else None
    return {
        "status": "backpressure" if reasons else "lagging" if lagging else "degraded" if degraded else "ok",
        "backpressure": bool(reasons),
        "reasons": reasons + degraded,
        "lag": lag,
        "ingest": {"pending_messages": batcher.pending, "buffer_limit": batcher.max_pending,
                   "blocked_seconds": round(batcher.blocked_seconds, 3),
                   "unacknowledged": ledger.unacknowledged if ledger is not None else None,
                   "duplicates_dropped": ledger.duplicates if ledger is not None else 0},
        "wal": None if wal is None else {"bytes": wal.bytes, "last_record": wal.appended_seq,
                                         "synced_record": wal.synced_seq, "error": journal.error,
                                         "damaged_records": wal.damaged_records},
        "checkpoint": None if latest is None else {
            "record": latest.seq, "age_seconds": round(time.time() - latest.manifest.get("written_at", 0), 1)},
        "outputs": None if outputs is None else {"queued": outputs.queued, "queued_bytes": outputs.queued_bytes,
                                                 "spilled_bytes": outputs.spilled_bytes, "inflight": outputs.inflight},
        "uplinks": sources.uplinks() if sources.uplinks is not None else {},
        "sparkplug": sources.sparkplug() if sources.sparkplug is not None else {},
    }


def lag_of(sources: HealthSources) -> dict[str, float]:
    """Seconds the oldest input waiting for the engine and the oldest result waiting for the broker waited."""
    outputs = sources.log.outputs
    input_seconds = sources.buffer.oldest_seconds()
    results_seconds = outputs.lag_seconds() if outputs is not None else 0.0
    return {"seconds": round(max(input_seconds, results_seconds), 3), "input_seconds": round(input_seconds, 3),
            "results_seconds": round(results_seconds, 3)}


class HealthPublisher:
    """A pipeline ticker: publishes `health` retained on `{prefix}/health` every `interval` seconds, and
    at once when the status changes (ok -> lagging -> ok), checked every tick."""

    def __init__(self, sources: HealthSources, publish: Callable[[str, bytes, int, bool], None], prefix: str,
                 interval: float) -> None:
        self.sources = sources
        self.publish = publish
        self.topic = f"{prefix}/health"
        self.interval = interval
        self._next = 0.0
        self._status: str | None = None

    def tick(self, now: float) -> None:
        state = health(self.sources)
        if now >= self._next or state["status"] != self._status:
            self._next = now + self.interval
            self._status = state["status"]
            self.publish(self.topic, orjson.dumps(state), 0, True)
