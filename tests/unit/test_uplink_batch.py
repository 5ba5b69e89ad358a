"""Batch forming and encoding (arros_mqtt/uplink/batch.py): per topic in order, JSON and Arrow IPC."""

from __future__ import annotations

import base64
import json

import pyarrow as pa

from arros_mqtt.uplink.batch import encode_arrow, encode_json, runs
from arros_mqtt.uplink.buffer import Record


def record(seq: int, topic: str, payload: bytes = b"{}") -> Record:
    return Record(seq=seq, received_ms=1_700_000_000_000 + seq, qos=1, topic=topic, payload=payload)


def test_runs_group_by_topic_in_order_capped_and_sorted_by_first_record():
    records = [record(n, f"t{n % 2}") for n in range(7)]
    batches = runs(records, 3)
    assert [[r.seq for r in batch] for batch in batches] == [[0, 2, 4], [1, 3, 5], [6]]


def test_json_parses_json_payloads_and_base64s_the_rest():
    batch = [record(0, "t", b'{"n": 1}'), record(1, "t", b"\xff\x00"), record(2, "t", b"42")]
    assert json.loads(encode_json(batch)) == [{"n": 1}, base64.b64encode(b"\xff\x00").decode(), 42]


def test_arrow_is_one_ipc_stream_with_the_payloads():
    table = pa.ipc.open_stream(encode_arrow([record(3, "t", b"a"), record(4, "t", b"\xff")])).read_all()
    assert table.column("payload").to_pylist() == [b"a", b"\xff"]
    assert table.column("seq").to_pylist() == [3, 4]
    assert table.schema.field("received").type == pa.timestamp("ms", tz="UTC")
