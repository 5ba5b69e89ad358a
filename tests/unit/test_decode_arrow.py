"""Arrow IPC in (streams and files from pyarrow) and out (`format = "arrow"`, read back with pyarrow)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from arros_mqtt.config import parse_config
from arros_mqtt.decode import decoder_for
from arros_mqtt.egress.encode import encode_results

SCHEMA = {"ts": "timestamp[ms, tz=UTC]", "temp": "float64", "rpm": "int64", "status": "string"}


def ipc(table: pa.Table, file: bool = False) -> bytes:
    sink = pa.BufferOutputStream()
    writer = pa.ipc.new_file(sink, table.schema) if file else pa.ipc.new_stream(sink, table.schema)
    with writer:
        for batch in table.to_batches(max_chunksize=3):
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def stream(schema: dict | None = SCHEMA):
    spec = {"topic": "a/{device}", "format": "arrow"}
    if schema is not None:
        spec["schema"] = schema
    return parse_config({"streams": {"s": spec}}).streams["s"]


def decode(payloads: list[bytes], schema: dict | None = SCHEMA):
    decoder = decoder_for(stream(schema))
    return decoder.decode([f"a/d{i}" for i in range(len(payloads))], payloads, list(range(len(payloads))))


def producer_table(n: int, offset: int = 0) -> pa.Table:
    return pa.table({
        "ts": pa.array([1_700_000_000_000 + offset + i for i in range(n)], pa.int64()).cast(pa.timestamp("ms", "UTC")),
        "temp": pa.array([float(offset + i) / 2 for i in range(n)]),
        "rpm": pa.array([offset + i for i in range(n)], pa.int32()),  # cast to the declared int64
        "status": pa.array(["run", None, "idle"] * (n // 3) + ["run"] * (n % 3)).dictionary_encode(),
        "extra": pa.array([1] * n),
    })


def test_streams_and_files_become_rows_cast_to_the_schema():
    tables = [producer_table(7), producer_table(1, 100), producer_table(10, 200)]
    payloads = [ipc(tables[0]), ipc(tables[1], file=True), ipc(tables[2])]
    table, bad = decode(payloads)
    assert not bad
    expected = pa.concat_tables([t.drop_columns(["extra"]).cast(pa.schema([
        ("ts", pa.timestamp("ms", "UTC")), ("temp", pa.float64()), ("rpm", pa.int64()), ("status", pa.string())]))
        for t in tables])
    assert table.select(["ts", "temp", "rpm", "status"]).equals(expected)
    assert table.column("device").to_pylist() == ["d0"] * 7 + ["d1"] + ["d2"] * 10


def test_a_declared_column_the_message_lacks_is_null():
    table, bad = decode([ipc(pa.table({"temp": [1.5]}))])
    assert not bad and table.select(["ts", "temp", "rpm"]).to_pylist() == [{"ts": None, "temp": 1.5, "rpm": None}]


@pytest.mark.parametrize(("payload", "words"), [
    (b"", "not an Arrow IPC stream"),
    (b"{\"temp\": 1}", "not an Arrow IPC stream"),
    (b"ARROW1\x00\x00garbage", "not an Arrow IPC stream"),
    (ipc(pa.table({"temp": ["hot"]})), "field 'temp'"),
    (ipc(pa.table({"rpm": pa.array([2**64 - 1], pa.uint64())})), "field 'rpm'"),
    (ipc(pa.table({"temp": [1.5]}).slice(0, 0)), "no rows"),
])
def test_bad_messages_are_dead_letters(payload, words):
    good = [ipc(producer_table(3, i)) for i in range(0, 60, 3)]
    table, bad = decode([*good[:10], payload, *good[10:]])
    assert table.num_rows == 60 and len(bad) == 1 and words in bad[0].error, bad


def test_truncated_streams_are_dead_letters_not_crashes():
    payload = ipc(producer_table(9))
    for cut in range(0, len(payload), 17):
        table, bad = decode([payload[:cut]])
        assert table.num_rows + len(bad) >= 1


def test_arrow_out_one_ipc_stream_per_topic_read_back_with_pyarrow():
    sub = parse_config({"subscriptions": {"s": {"sql": "SELECT 1", "output": "out/{machine}", "format": "arrow",
                                                  "batch": True}}}).subscriptions["s"]
    result = pa.table({
        "machine": ["m1", "m2", "m1", "m3", "m1"],
        "ts": pa.array([dt.datetime(2025, 1, 1, 0, 0, i, tzinfo=dt.UTC) for i in range(5)], pa.timestamp("ms", "UTC")),
        "temp": [1.0, 2.0, 3.0, 4.0, 5.0],
    })
    messages = encode_results(result, sub, sub.output)
    assert [topic for topic, _ in messages] == ["out/m1", "out/m2", "out/m3"]
    read = {topic: pa.ipc.open_stream(payload).read_all() for topic, payload in messages}
    assert read["out/m1"].schema == result.schema  # typed: timestamps stay timestamps
    assert read["out/m1"].column("temp").to_pylist() == [1.0, 3.0, 5.0]
    assert pa.concat_tables(read.values()).sort_by("temp").equals(result.sort_by("temp"))
