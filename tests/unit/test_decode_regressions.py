"""What fuzzing found, pinned down: each case once crashed the process or decoded differently in a
micro-batch than alone."""

from __future__ import annotations

import msgpack
import pyarrow as pa

from arros_mqtt.config import parse_config
from arros_mqtt.decode import decoder_for

SCHEMA = {"ts": "timestamp[ms]", "rpm": "int64", "status": "string"}


def decode(fmt: str, payloads: list[bytes]):
    stream = parse_config({"streams": {"s": {"topic": "t/{d}", "format": fmt, "schema": SCHEMA}}}).streams["s"]
    return decoder_for(stream).decode(["t/x"] * len(payloads), payloads, [0] * len(payloads))


def test_json_invalid_utf8_is_a_dead_letter_in_a_batch_too():
    table, bad = decode("json", [b'{"rpm": 1}', b'{"\x80": null, "rpm": 2}'])
    assert table.column("rpm").to_pylist() == [1] and len(bad) == 1


def test_msgpack_batch_does_not_truncate_or_invent_rows():
    payloads = [msgpack.packb({"rpm": 1}), msgpack.packb({"rpm": 3.5}), msgpack.packb(""), msgpack.packb({"ts": 1.5}),
                msgpack.packb({"rpm": 4.0})]
    table, bad = decode("msgpack", payloads)
    assert table.column("rpm").to_pylist() == [1, 4]
    assert sorted(b.payload for b in bad) == sorted(payloads[1:4])
    assert any("'rpm'" in b.error for b in bad)


def test_arrow_stream_without_columns_is_a_dead_letter():
    sink = pa.BufferOutputStream()
    empty = pa.RecordBatch.from_pydict({"x": [1, 2]}).select([])
    with pa.ipc.new_stream(sink, empty.schema) as writer:
        writer.write_batch(empty)
    columnless = sink.getvalue().to_pybytes()
    good = pa.BufferOutputStream()
    with pa.ipc.new_stream(good, pa.schema([("rpm", pa.int64())])) as writer:
        writer.write_table(pa.table({"rpm": [7]}))
    table, bad = decode("arrow", [columnless, good.getvalue().to_pybytes(), columnless])
    assert table.column("rpm").to_pylist() == [7] and len(bad) == 2 and "no columns" in bad[0].error


def test_sparkplug_values_arrow_cannot_hold_are_dead_letters_not_a_lost_batch():
    from arros_mqtt.decode import build_decoder
    from arros_mqtt.vendor import sparkplug_b_pb2 as pb

    def birth(name: bytes | str, timestamp: int) -> bytes:
        message = pb.Payload(timestamp=timestamp, seq=0)
        message.metrics.add(name="bdSeq", datatype=8, long_value=0)
        metric = message.metrics.add(datatype=10, double_value=1.5)
        metric.name = name
        return message.SerializeToString()

    stream = parse_config({"streams": {"plc": {"topic": "spBv1.0/#", "format": "sparkplug"}}}).streams["plc"]
    decoder = build_decoder(stream, lambda *args: None)
    too_late = birth("temp", 2**64 - 1)  # uint64 in protobuf, past int64 milliseconds in Arrow
    not_utf8 = birth("temp", 1_700_000_000_000).replace(b"temp", b"\xff\xfe\xfd\xfc")
    good = birth("temp", 1_700_000_000_000)
    table, bad = decoder.decode(["spBv1.0/g/NBIRTH/n1", "spBv1.0/g/NBIRTH/n2", "spBv1.0/g/NBIRTH/n3"],
                                [too_late, not_utf8, good], [0, 0, 0])
    assert sorted(b.payload for b in bad) == sorted([too_late, not_utf8])
    assert all("does not fit" in b.error for b in bad)
    assert set(table.column("edge_node_id").to_pylist()) == {"n3"} and "temp" in table.column("metric").to_pylist()
