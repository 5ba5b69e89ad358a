"""Batches upstream: the records of one topic among those read at once as one message (docs/uplinks.md).

Batches are formed at send time from the on-disk buffer, so a restart forms them again from the
cursor: a record leaves the buffer only once the batch that carried it is confirmed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

from arros_mqtt.uplink.buffer import Record


def runs(records: Iterable[Record], max_messages: int) -> list[list[Record]]:
    """Group `records` (in buffer order) by topic, at most `max_messages` a batch, each topic's in order;
    the batches sorted by their first record, so the first unconfirmed batch holds the cursor's floor."""
    open_: dict[str, list[Record]] = {}
    batches: list[list[Record]] = []
    for record in records:
        batch = open_.get(record.topic)
        if batch is None or len(batch) >= max_messages:
            batch = open_[record.topic] = []
            batches.append(batch)
        batch.append(record)
    return sorted(batches, key=lambda batch: batch[0].seq)


def _json_value(payload: bytes) -> Any:
    """The payload parsed when it is JSON, else its base64 as a string."""
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return base64.b64encode(payload).decode("ascii")


def encode_json(batch: list[Record]) -> bytes:
    return json.dumps([_json_value(record.payload) for record in batch], separators=(",", ":")).encode()


def encode_arrow(batch: list[Record]) -> bytes:
    """One Arrow IPC stream: payload (binary), received (timestamp ms, UTC), qos (int8), seq (int64)."""
    import pyarrow as pa

    table = pa.table({
        "payload": pa.array([record.payload for record in batch], pa.binary()),
        "received": pa.array([record.received_ms for record in batch], pa.timestamp("ms", tz="UTC")),
        "qos": pa.array([record.qos for record in batch], pa.int8()),
        "seq": pa.array([record.seq for record in batch], pa.int64()),
    })
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


ENCODERS = {"json": encode_json, "arrow": encode_arrow}
